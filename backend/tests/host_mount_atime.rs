//! Access times through the host mount behave as the kernel's ext4 under
//! the same mount option: an image whose files, directories and symlinks
//! carry chosen atimes, mtimes and ctimes (set with debugfs) is read
//! through a kernel loop mount (`-o relatime|strictatime|noatime`, and
//! `strictatime,nodiratime`) and through `ext4-virtiofsd mount --atime
//! ...`; which atimes moved is the same on both, stat shows a new atime
//! at once, a descriptor opened with O_NOATIME keeps it, and what stat
//! showed is on the image after the unmount (debugfs), e2fsck-clean.

mod common;

use common::{HostMount, KernelMount, Scratch, assert_fsck_clean, mkfs, run};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// How a case is read.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    /// read(2) of the whole file.
    Read,
    /// read(2) through a descriptor opened with O_NOATIME.
    ReadNoatime,
    /// getdents of the whole directory.
    List,
    /// readlink(2).
    Readlink,
}

/// (path in the image, how it is read, atime, mtime, ctime as offsets
/// from now in seconds).
const CASES: [(&str, Access, i64, i64, i64); 9] = [
    ("/old", Access::Read, -2 * DAY, -3 * DAY, -3 * DAY),
    ("/before_mtime", Access::Read, -2 * HOUR, -HOUR, -3 * HOUR),
    ("/before_ctime", Access::Read, -2 * HOUR, -3 * HOUR, -HOUR),
    ("/fresh", Access::Read, -HOUR, -2 * HOUR, -2 * HOUR),
    ("/pinned", Access::ReadNoatime, -2 * DAY, -3 * DAY, -3 * DAY),
    ("/dir_old", Access::List, -2 * DAY, -3 * DAY, -3 * DAY),
    ("/dir_fresh", Access::List, -HOUR, -2 * HOUR, -2 * HOUR),
    ("/link_old", Access::Readlink, -2 * DAY, -3 * DAY, -3 * DAY),
    ("/link_fresh", Access::Readlink, -HOUR, -2 * HOUR, -2 * HOUR),
];

/// An image with every case, its times set with debugfs relative to `now`.
fn base_image(s: &Scratch, now: i64) -> std::path::PathBuf {
    let img = s.join("base.img");
    mkfs(&img, "32M", &["-t", "ext4"]);
    let data = s.join("data");
    std::fs::write(&data, vec![7u8; 10_000]).unwrap();
    let mut req = String::new();
    for (path, access, ..) in CASES {
        let name = &path[1..];
        match access {
            Access::Read | Access::ReadNoatime => req += &format!("write {} {name}\n", data.display()),
            Access::List => req += &format!("mkdir {name}\nwrite {} {name}/entry\n", data.display()),
            Access::Readlink => req += &format!("symlink {name} /a/target/{name}\n"),
        }
    }
    for (path, _, a, m, c) in CASES {
        for (field, off) in [("atime", a), ("mtime", m), ("ctime", c)] {
            req += &format!("set_inode_field {path} {field} @{}\n", now + off);
        }
    }
    let cmds = s.join("debugfs.cmds");
    std::fs::write(&cmds, req).unwrap();
    run(Command::new("debugfs").arg("-w").arg("-f").arg(&cmds).arg(&img));
    img
}

/// Reads every case under `root` and returns, per case, the atime stat
/// shows afterwards (seconds, nanoseconds).
fn access_all(root: &Path) -> Vec<(i64, i64)> {
    CASES
        .iter()
        .map(|&(path, access, ..)| {
            let p = root.join(&path[1..]);
            match access {
                Access::Read | Access::ReadNoatime => {
                    let mut o = std::fs::OpenOptions::new();
                    o.read(true);
                    if access == Access::ReadNoatime {
                        o.custom_flags(libc::O_NOATIME);
                    }
                    let mut buf = Vec::new();
                    o.open(&p).unwrap().read_to_end(&mut buf).unwrap();
                    assert_eq!(buf.len(), 10_000, "{path}");
                }
                Access::List => assert_eq!(std::fs::read_dir(&p).unwrap().count(), 1, "{path}"),
                Access::Readlink => {
                    std::fs::read_link(&p).unwrap();
                }
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            (m.atime(), m.atime_nsec())
        })
        .collect()
}

/// The atime seconds of `path` on the unmounted image, from debugfs.
fn debugfs_atime(img: &Path, path: &str) -> i64 {
    let out = run(Command::new("debugfs").arg("-R").arg(format!("stat {path}")).arg(img));
    let line = out.lines().find(|l| l.trim_start().starts_with("atime:")).expect("atime line");
    i64::from_str_radix(line.split_once("0x").unwrap().1.split(':').next().unwrap(), 16).unwrap()
}

#[test]
fn atime_policies_match_a_kernel_mount() {
    if !HostMount::usable_or_skip("atime through the host mount") {
        return;
    }
    let s = Scratch::new("host-atime");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let base = base_image(&s, now);
    let mut wrong = Vec::new();
    for policy in ["relatime", "strictatime", "noatime", "strictatime,nodiratime"] {
        let (kimg, kmnt) = (s.join("k.img"), s.join("kmnt"));
        std::fs::copy(&base, &kimg).unwrap();
        let Some(k) = KernelMount::or_skip(&kimg, &kmnt, policy, "atime through the host mount") else { return };
        let expected = access_all(k.path());
        k.unmount().unwrap();

        let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
        std::fs::copy(&base, &img).unwrap();
        let m = HostMount::new(&img, &mnt, &["--atime", policy]).unwrap();
        let got = access_all(m.path());
        m.unmount().unwrap();
        assert_fsck_clean(&img);

        for (i, &(path, _, a, ..)) in CASES.iter().enumerate() {
            let (moved_k, moved_o) = (expected[i].0 != now + a, got[i].0 != now + a);
            if moved_k != moved_o {
                wrong.push(format!("{policy} {path}: atime moved here {moved_o}, on the kernel {moved_k}"));
            }
            if moved_o && got[i].0 < now {
                wrong.push(format!("{policy} {path}: atime moved to {:?}, before the test began", got[i]));
            }
            let on_disk = debugfs_atime(&img, path);
            if on_disk != got[i].0 {
                wrong.push(format!("{policy} {path}: stat showed {}, the image holds {on_disk}", got[i].0));
            }
        }
    }
    assert!(wrong.is_empty(), "atimes differ from the kernel's:\n{}", wrong.join("\n"));
}

#[test]
fn read_only_mount_keeps_every_atime() {
    if !HostMount::usable_or_skip("atime on a read-only host mount") {
        return;
    }
    let s = Scratch::new("host-atime-ro");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let img = base_image(&s, now);
    let before = std::fs::read(&img).unwrap();
    let m = HostMount::new(&img, &s.join("mnt"), &["--read-only", "--atime", "strictatime"]).unwrap();
    let got = access_all(m.path());
    m.unmount().unwrap();
    for (i, &(path, _, a, ..)) in CASES.iter().enumerate() {
        assert_eq!(got[i], (now + a, 0), "{path}: atime on a read-only mount");
    }
    assert!(std::fs::read(&img).unwrap() == before, "a read-only mount wrote the image");
}
