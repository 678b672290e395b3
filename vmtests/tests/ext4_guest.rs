//! The first real guest on our daemon: QEMU 7.2 (TCG, `vhost-user-fs-pci`)
//! boots the Debian cloud kernel against `ext4-virtiofsd serve` on a fresh
//! ext4 image (inline_data on); every guest case must pass, the daemon
//! must exit by itself when QEMU goes (image closed clean), the files the
//! guest left must be in the image, and e2fsck must find nothing wrong.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::Scratch;
use vmtests::leftovers::{self, ImageView};
use vmtests::rig::{self, GuestRun};

/// Builds the daemon (dev profile) and returns its path.
fn daemon_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-q", "-p", "ext4-virtiofsd", "--bin", "ext4-virtiofsd"])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building ext4-virtiofsd failed");
    target.join("debug/ext4-virtiofsd")
}

#[test]
fn every_guest_case_passes_on_ext4_virtiofsd() {
    let what = "ext4_guest: guest cases over ext4-virtiofsd serve";
    let Some(prep) = rig::prepared_or_skip(what) else { return };
    let bin = daemon_binary();
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
