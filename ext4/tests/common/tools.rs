//! The e2fsprogs tools (and the kernel, where usable) as oracles.

use std::path::Path;
use std::process::Command;

#[allow(unused_imports)]
pub use testkit::{assert_fsck_clean, fsck, run};

/// Builds `image` of `size` (e.g. "256M") from `src` with `mke2fs -d`, with
/// extra mke2fs arguments such as `["-t", "ext4", "-b", "1024", "-O", "inline_data"]`.
pub fn mkfs(image: &Path, size: &str, src: Option<&Path>, args: &[&str]) {
    let _ = std::fs::remove_file(image);
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"]);
    cmd.args(args);
    if let Some(src) = src {
        cmd.arg("-d").arg(src);
    }
    cmd.arg(image).arg(size);
    // A fixed UUID and hash seed would hide seed handling; keep them random,
    // but make mke2fs deterministic about the creation time.
    cmd.env("E2FSPROGS_FAKE_TIME", "1700000000");
    run(&mut cmd);
}

/// Runs `debugfs -R REQUEST IMAGE` and returns its standard output.
pub fn debugfs(image: &Path, request: &str) -> String {
    run(Command::new("debugfs").arg("-R").arg(request).arg(image))
}

/// Builds hash indexes for every directory large enough (`e2fsck -fyD`):
/// `mke2fs -d` writes only linear directories, the kernel indexes them as
/// they grow.
pub fn index_dirs(image: &Path) {
    let out = Command::new("e2fsck").arg("-fyD").arg(image).output().expect("run e2fsck -fyD");
    // Exit code 1 means "file system modified", which is the point.
    let code = out.status.code().unwrap_or(8);
    assert!(code <= 1, "e2fsck -fyD {image:?} failed ({code}):\n{}", String::from_utf8_lossy(&out.stdout));
}

/// Mounts `image` read-only with the kernel at `mnt` and runs `f` on the
/// mount point, or returns `None` (after a loud skip notice) when not root
/// or loop mounts do not work here.
pub fn with_kernel_mount<T>(image: &Path, mnt: &Path, what: &str, f: impl FnOnce(&Path) -> T) -> Option<T> {
    let m = super::kernel::Mount::or_skip(image, mnt, "ro", what)?;
    Some(f(m.path()))
}
