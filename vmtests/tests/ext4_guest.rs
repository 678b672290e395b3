//! Real guests on our daemon: the Debian cloud kernel boots under QEMU 7.2
//! (TCG, `vhost-user-fs-pci`) and under QEMU 11 from a sid chroot
//! (`vhost-user-test-device-pci`, virtio-id 26, no DAX window here)
//! against `ext4-virtiofsd serve` on a fresh ext4 image (inline_data on);
//! every guest case must pass, the daemon must exit by itself when QEMU
//! goes (image closed clean), the files the guest left must be in the
//! image, and e2fsck must find nothing wrong.

use std::process::Command;

use testkit::Scratch;
use vmtests::leftovers::{self, ImageView};
use vmtests::rig::{self, GuestRun};

/// One boot running every guest case on a fresh image, then the host checks.
fn every_case(what: &str, qemu11: bool) {
    let Some(prep) = rig::prepared_or_skip(what) else { return };
    let q11 = if qemu11 {
        let Some(q) = rig::qemu11_or_skip(what, &prep) else { return };
        Some(q)
    } else {
        None
    };
    let bin = rig::daemon_binary();
    let s = Scratch::new("vmext4");
    let image = s.join("guest.img");
    testkit::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data,metadata_csum"])
            .arg(&image)
            .arg("256M"),
    );
    let mut run = GuestRun::new(&s.join("logs"));
    run.qemu11 = q11;
    let result = rig::run_ext4_image(&prep, &bin, &image, &run);
    result.assert_all_passed();
    assert_eq!(result.plan.len(), 10, "the guest planned {:?}", result.plan);
    assert!(
        !result.stopped_by_rig && result.daemon_status.is_some_and(|s| s.success()),
        "the daemon did not exit 0 by itself when QEMU left: {:?}\n{}",
        result.daemon_status,
        result.daemon_log
    );
    testkit::assert_fsck_clean(&image);
    let bad = leftovers::check(&ImageView(image.clone()));
    assert!(
        bad.is_empty(),
        "the files the guest left in the image are wrong:\n{}\ndaemon log:\n{}",
        bad.join("\n"),
        result.daemon_log
    );
}

#[test]
fn every_guest_case_passes_on_ext4_virtiofsd() {
    every_case("ext4_guest: guest cases over ext4-virtiofsd serve (QEMU 7.2)", false);
}

#[test]
fn every_guest_case_passes_under_qemu11() {
    every_case("ext4_guest: guest cases over ext4-virtiofsd serve (QEMU 11, sid chroot)", true);
}
