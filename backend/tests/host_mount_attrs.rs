//! Attributes the daemon changes without being asked (ctime on a flags
//! change, set-user-id and set-group-id dropped by a non-owner's write,
//! buffered or O_DIRECT, size by fallocate, nlink and ctime on link, unlink
//! and rename) are what `stat` shows at once, in every cache policy and
//! with the writeback cache: after the same steps, `stat` through the host
//! mount equals `stat` on a kernel loop mount of the same image.

mod common;

use common::{HostMount, KernelMount, Scratch, assert_fsck_clean, mkfs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What is compared after each step: mode, size, nlink, and whether ctime
/// moved since the stat before the step.
type Seen = (String, u32, u64, u64, bool);

fn ctime(p: &Path) -> (i64, i64) {
    let m = std::fs::metadata(p).unwrap();
    (m.ctime(), m.ctime_nsec())
}

/// Runs `step` on `file` (stat'ed before, so that its attributes are
/// cached) and records what `stat` shows afterwards.
fn observe(seen: &mut Vec<Seen>, what: &str, file: &Path, step: impl FnOnce()) {
    observe_as(seen, what, file, file, step)
}

/// [`observe`] of a step after which the file is at `after`.
fn observe_as(seen: &mut Vec<Seen>, what: &str, file: &Path, after: &Path, step: impl FnOnce()) {
    let before = ctime(file);
    // Let the clock tick so that a ctime update is visible as a change.
    std::thread::sleep(Duration::from_millis(15));
    step();
    let m = std::fs::metadata(after).unwrap();
    seen.push((what.to_string(), m.mode(), m.size(), m.nlink(), (m.ctime(), m.ctime_nsec()) != before));
}

/// `dd` writing 4 KiB at offset 0 of `file` as user nobody (not the owner,
/// no CAP_FSETID), with `flags` (e.g. "oflag=direct").
fn write_as_nobody(file: &Path, flags: &[&str]) {
    let st = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=4096", "count=1", "conv=notrunc", "status=none"])
        .args(flags)
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(st.success(), "dd as nobody on {}", file.display());
}

/// The steps, in directory `dir` of a fresh file system.
fn steps(dir: &Path) -> Vec<Seen> {
    let mut seen = Vec::new();
    // chattr +d: the flags change moves ctime.
    let f = dir.join("flags");
    std::fs::write(&f, b"x").unwrap();
    observe(&mut seen, "chattr", &f, || {
        assert!(Command::new("chattr").arg("+d").arg(&f).status().unwrap().success());
    });
    // A non-owner's write drops set-user-id and set-group-id, buffered and O_DIRECT.
    for (name, flags) in [("suid-buffered", &[][..]), ("suid-direct", &["oflag=direct"][..])] {
        let f = dir.join(name);
        std::fs::write(&f, vec![1u8; 8192]).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o6777)).unwrap();
        observe(&mut seen, name, &f, || write_as_nobody(&f, flags));
    }
    // fallocate extends the file.
    let f = dir.join("falloc");
    std::fs::write(&f, b"x").unwrap();
    observe(&mut seen, "fallocate", &f, || {
        let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        // SAFETY: plain syscall on an open descriptor.
        let r = unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&file), 0, 0, 1 << 20) };
        assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
    });
    // Link changes: nlink and ctime of the inode.
    let f = dir.join("linked");
    std::fs::write(&f, b"x").unwrap();
    observe(&mut seen, "link", &f, || std::fs::hard_link(&f, dir.join("second")).unwrap());
    observe(&mut seen, "unlink", &f, || std::fs::remove_file(dir.join("second")).unwrap());
    let g = dir.join("renamed");
    observe_as(&mut seen, "rename", &f, &g, || std::fs::rename(&f, &g).unwrap());
    seen
}

#[test]
fn unasked_attribute_changes_show_at_once_in_every_cache_mode() {
    if !HostMount::usable_or_skip("attributes the daemon changes") {
        return;
    }
    let s = Scratch::new("attrs-unasked");
    std::fs::set_permissions(s.join(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (kimg, kmnt) = (s.join("k.img"), s.join("kmnt"));
    mkfs(&kimg, "32M", &["-t", "ext4"]);
    let Some(k) = KernelMount::or_skip(&kimg, &kmnt, "", "attributes the daemon changes") else { return };
    let expected = steps(k.path());
    k.unmount().unwrap();
    let mut wrong = Vec::new();
    for args in [
        &["--cache", "never"][..],
        &["--cache", "auto"][..],
        &["--cache", "always"][..],
        &["--writeback"][..],
        &["--cache", "always", "--writeback"][..],
    ] {
        let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
        mkfs(&img, "32M", &["-t", "ext4"]);
        let m = HostMount::new(&img, &mnt, args).unwrap();
        let got = steps(m.path());
        m.unmount().unwrap();
        for (g, e) in got.iter().zip(&expected) {
            // With the writeback cache the client keeps a regular file's
            // ctime itself and ignores the daemon's (fuse_get_cache_mask):
            // changes whose ctime the client does not move itself (the
            // flags ioctl, an O_DIRECT write) cannot show it. Known
            // difference, left out here.
            let client_ctime = args.contains(&"--writeback") && ["chattr", "suid-direct"].contains(&e.0.as_str());
            let (g4, e4) = if client_ctime { (false, false) } else { (g.4, e.4) };
            if (g.1 & 0o7777, g.2, g.3, g4) != (e.1 & 0o7777, e.2, e.3, e4) {
                wrong.push(format!("{} with {args:?}: {g:?}, the kernel {e:?}", e.0));
            }
        }
        assert_fsck_clean(&img);
    }
    assert!(wrong.is_empty(), "(what, mode, size, nlink, ctime moved) differ from the kernel's:\n{}", wrong.join("\n"));
}
