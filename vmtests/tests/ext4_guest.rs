//! The first real guest on our daemon: QEMU 7.2 (TCG, `vhost-user-fs-pci`)
//! boots the Debian cloud kernel against `ext4-virtiofsd serve` on a fresh
//! ext4 image (inline_data on); every guest case must pass, the daemon
//! must exit by itself when QEMU goes (image closed clean), the files the
//! guest left must be in the image, and e2fsck must find nothing wrong.

use std::process::Command;

use testkit::Scratch;
use vmtests::leftovers::{self, ImageView};
use vmtests::rig::{self, GuestRun};

#[test]
fn every_guest_case_passes_on_ext4_virtiofsd() {
    let what = "ext4_guest: guest cases over ext4-virtiofsd serve";
    let Some(prep) = rig::prepared_or_skip(what) else { return };
    let bin = vmtests::frontend::daemon::ext4_virtiofsd_binary();
    let s = Scratch::new("vmext4");
    let image = s.join("guest.img");
    testkit::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data,metadata_csum"])
            .arg(&image)
            .arg("256M"),
    );
    let run = GuestRun::new(&s.join("logs"));
    let result = rig::run_ext4_image(&prep, &bin, &image, &run);
    result.assert_all_passed();
    assert!(!result.plan.is_empty(), "the guest planned no cases");
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
