//! The requests xfstests found missing (issue 12, docs/XFSTESTS.md), each
//! run on a kernel loop mount and on our host mount and compared:
//!
//! - renameat2 RENAME_WHITEOUT leaves a 0:0 character device with mode 0
//!   (generic/078, generic/626);
//! - chattr +S, +D and the DAX xflag (`xfs_io -c "chattr +x"`) are kept and
//!   inherited by new files and directories as ext4 does, survive mv, and
//!   FS_IOC_FSSETXATTR leaves flags it has no bit for (generic/607);
//! - FS_IOC_GETFSLABEL / FS_IOC_SETFSLABEL (generic/492);
//! - FITRIM through `fstrim` on the mount point: the kernel's argument
//!   rules, EPERM for users, and most of a fresh file system trimmed
//!   (generic/260, generic/288); a read-only mount refuses (generic/537).

mod common;

use common::compare::{Seen, compare};
use common::{HostMount, Scratch, mkfs};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801C_581F;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401C_5820;
const FS_IOC_GETFSLABEL: libc::c_ulong = 0x8100_9431;
const FS_IOC_SETFSLABEL: libc::c_ulong = 0x4100_9432;
const FITRIM: libc::c_ulong = 0xC018_5879;

const FL_SYNC: u32 = 0x8;
const FL_DIRSYNC: u32 = 0x1_0000;
const FL_NODUMP: u32 = 0x40;
const XFLAG_SYNC: u32 = 0x20;
const XFLAG_DAX: u32 = 0x8000;

/// The unprivileged user some steps run as (nobody).
const NOBODY: u32 = 65534;

/// Runs `ioctl(fd of p, cmd, buf)`; the errno on failure.
fn ioctl(p: &Path, cmd: libc::c_ulong, buf: &mut [u8]) -> Result<(), i32> {
    let f = std::fs::File::open(p).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    // SAFETY: `buf` is live and at least as large as the command's
    // argument (each caller sizes it for `cmd`).
    let r = unsafe { libc::ioctl(f.as_raw_fd(), cmd, buf.as_mut_ptr()) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)) }
}

fn shown<T: std::fmt::Debug>(r: Result<T, i32>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("errno {e}"),
    }
}

fn get_flags(p: &Path) -> u32 {
    let mut b = [0u8; 8];
    ioctl(p, FS_IOC_GETFLAGS, &mut b).unwrap();
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

fn set_flags(p: &Path, flags: u32) -> Result<(), i32> {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&flags.to_le_bytes());
    ioctl(p, FS_IOC_SETFLAGS, &mut b)
}

fn xflags(p: &Path) -> u32 {
    let mut b = [0u8; 28];
    ioctl(p, FS_IOC_FSGETXATTR, &mut b).unwrap();
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

/// `xfs_io -c "chattr +x"` / `-x`: FSGETXATTR, change the bits, FSSETXATTR.
fn chattr_x(p: &Path, add: u32, remove: u32) -> Result<(), i32> {
    let mut b = [0u8; 28];
    ioctl(p, FS_IOC_FSGETXATTR, &mut b)?;
    let x = (u32::from_le_bytes(b[..4].try_into().unwrap()) | add) & !remove;
    b[..4].copy_from_slice(&x.to_le_bytes());
    ioctl(p, FS_IOC_FSSETXATTR, &mut b)
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> Result<(), i32> {
    let (a, b) = (CString::new(from.as_os_str().as_bytes()).unwrap(), CString::new(to.as_os_str().as_bytes()).unwrap());
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)) }
}

/// File type, permission bits, rdev, owner and link count of `p` (lstat).
fn node(p: &Path) -> String {
    match std::fs::symlink_metadata(p) {
        Ok(m) => {
            let kind = if m.file_type().is_char_device() {
                "char"
            } else if m.is_dir() {
                "dir"
            } else if m.is_file() {
                "file"
            } else {
                "other"
            };
            format!("{kind} mode {:o} rdev {} uid {} nlink {}", m.mode() & 0o7777, m.rdev(), m.uid(), m.nlink())
        }
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn whiteout_steps(dir: &Path) -> Seen {
    const WHITEOUT: u32 = libc::RENAME_WHITEOUT;
    let mut seen = Vec::new();
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    std::fs::write(&a, b"moved").unwrap();
    std::fs::write(&c, b"replaced").unwrap();
    seen.push(("rename a b whiteout".into(), shown(renameat2(&a, &b, WHITEOUT))));
    seen.push(("a after".into(), node(&a)));
    seen.push(("b after".into(), String::from_utf8_lossy(&std::fs::read(&b).unwrap()).into()));
    seen.push(("whiteout|exchange".into(), shown(renameat2(&b, &c, WHITEOUT | libc::RENAME_EXCHANGE))));
    seen.push(("whiteout|noreplace over c".into(), shown(renameat2(&b, &c, WHITEOUT | libc::RENAME_NOREPLACE))));
    seen.push(("rename b over c whiteout".into(), shown(renameat2(&b, &c, WHITEOUT))));
    seen.push(("b after".into(), node(&b)));
    seen.push(("c after".into(), String::from_utf8_lossy(&std::fs::read(&c).unwrap()).into()));
    // A directory, and a whiteout made by an unprivileged user (Linux 5.8+).
    let (d1, d2) = (dir.join("d1"), dir.join("d2"));
    std::fs::create_dir(&d1).unwrap();
    seen.push(("rename dir whiteout".into(), shown(renameat2(&d1, &d2, WHITEOUT))));
    seen.push(("d1 after".into(), node(&d1)));
    seen.push(("parent".into(), node(dir)));
    let home = dir.join("nobody");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::write(home.join("x"), b"x").unwrap();
    std::os::unix::fs::chown(home.join("x"), Some(NOBODY), Some(NOBODY)).unwrap();
    // No tool makes a whiteout: renameat2 from a child that is nobody.
    let (x, y) = (home.join("x"), home.join("y"));
    let (a, b) = (CString::new(x.as_os_str().as_bytes()).unwrap(), CString::new(y.as_os_str().as_bytes()).unwrap());
    // SAFETY: between fork and _exit the child calls only async-signal-safe
    // functions on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::setgid(NOBODY);
            libc::setuid(NOBODY);
            let r = libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), WHITEOUT);
            libc::_exit(if r == 0 { 0 } else { *libc::__errno_location() });
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    seen.push(("whiteout as nobody".into(), format!("exit {}", libc::WEXITSTATUS(status))));
    seen.push(("nobody's whiteout".into(), node(&x)));
    seen
}

#[test]
fn rename_whiteout_leaves_a_whiteout_as_the_kernel_does() {
    let Some(wrong) = compare("RENAME_WHITEOUT", whiteout_steps) else { return };
    assert!(wrong.is_empty(), "RENAME_WHITEOUT differs from the kernel's:\n{}", wrong.join("\n"));
}

fn flag_steps(dir: &Path) -> Seen {
    let watched = FL_SYNC | FL_DIRSYNC | FL_NODUMP;
    let mut seen = Vec::new();
    let flags = |name: &str, p: &Path| (format!("flags of {name}"), format!("{:#x}", get_flags(p) & watched));
    // chattr +S +D +d on a directory; what its new children take.
    let d = dir.join("d");
    std::fs::create_dir(&d).unwrap();
    set_flags(&d, get_flags(&d) | watched).unwrap();
    std::fs::write(d.join("f"), b"x").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    seen.push(flags("d", &d));
    seen.push(flags("d/f", &d.join("f")));
    seen.push(flags("d/sub", &d.join("sub")));
    // +D means nothing on a regular file; +S does.
    let f = dir.join("plain");
    std::fs::write(&f, b"x").unwrap();
    seen.push(("chattr +D on a file".into(), shown(set_flags(&f, get_flags(&f) | FL_DIRSYNC))));
    seen.push(flags("plain after +D", &f));
    seen.push(("chattr +S on a file".into(), shown(set_flags(&f, get_flags(&f) | FL_SYNC))));
    seen.push(flags("plain after +S", &f));
    std::fs::write(&f, b"written synchronously").unwrap();
    seen.push(("read back".into(), String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into()));
    let xf = |name: &str, p: &Path| (format!("xflags of {name}"), format!("{:#x}", xflags(p)));
    // generic/607: the DAX xflag, inherited below where it is set, kept by mv.
    let a = dir.join("a");
    std::fs::create_dir_all(a.join("b")).unwrap();
    chattr_x(&a, XFLAG_DAX, 0).unwrap();
    std::fs::create_dir_all(a.join("b/c")).unwrap();
    std::fs::create_dir(a.join("d")).unwrap();
    std::fs::write(a.join("d/f"), b"").unwrap();
    std::fs::write(a.join("g"), b"").unwrap();
    for n in ["", "b", "b/c", "d", "d/f", "g"] {
        seen.push(xf(&format!("a/{n}"), &a.join(n)));
    }
    std::fs::rename(a.join("g"), dir.join("g")).unwrap();
    seen.push(xf("g moved out", &dir.join("g")));
    std::fs::copy(dir.join("g"), dir.join("g2")).unwrap();
    seen.push(xf("a copy outside", &dir.join("g2")));
    // FSSETXATTR: +S as an xflag; clearing DAX leaves +D (no xflag) alone.
    seen.push(("xfs_io chattr +S".into(), shown(chattr_x(&d, XFLAG_SYNC, 0))));
    seen.push(("xfs_io chattr -x".into(), shown(chattr_x(&d, 0, XFLAG_DAX))));
    seen.push(("flags of d after".into(), format!("{:#x}", get_flags(&d) & watched)));
    seen
}

#[test]
fn sync_dirsync_and_dax_flags_are_kept_and_inherited_as_the_kernel_does() {
    let Some(wrong) = compare("chattr +S +D +x", flag_steps) else { return };
    assert!(wrong.is_empty(), "inode flags differ from the kernel's:\n{}", wrong.join("\n"));
}

fn label(p: &Path) -> Result<String, i32> {
    let mut b = [0u8; 256];
    ioctl(p, FS_IOC_GETFSLABEL, &mut b)?;
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    Ok(String::from_utf8_lossy(&b[..end]).into())
}

fn set_label(p: &Path, l: &str) -> Result<(), i32> {
    let mut b = [0u8; 256];
    b[..l.len()].copy_from_slice(l.as_bytes());
    ioctl(p, FS_IOC_SETFSLABEL, &mut b)
}

fn label_steps(dir: &Path) -> Seen {
    let mut seen = vec![("label at first".into(), shown(label(dir)))];
    for l in ["label.492", "", &"o".repeat(16), &"o".repeat(17), &"l".repeat(255)] {
        seen.push((format!("set {} bytes", l.len()), shown(set_label(dir, l))));
        seen.push(("label".into(), shown(label(dir))));
    }
    std::fs::write(dir.join("f"), b"x").unwrap();
    seen.push(("through a file".into(), shown(label(&dir.join("f")))));
    seen
}

#[test]
fn the_volume_label_ioctls_work_as_the_kernels() {
    let Some(wrong) = compare("FS_IOC_GETFSLABEL / SETFSLABEL", label_steps) else { return };
    assert!(wrong.is_empty(), "the label ioctls differ from the kernel's:\n{}", wrong.join("\n"));
}

/// FITRIM on `dir`: the answer's `len`, or the errno.
fn fitrim(dir: &Path, start: u64, len: u64, min: u64) -> Result<u64, i32> {
    let mut b = [0u8; 24];
    for (i, v) in [start, len, min].into_iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    ioctl(dir, FITRIM, &mut b)?;
    Ok(u64::from_le_bytes(b[8..16].try_into().unwrap()))
}

fn trim_steps(dir: &Path) -> Seen {
    // SAFETY: statvfs fills a zeroed struct for a NUL-terminated path.
    let size = unsafe {
        let mut v: libc::statvfs = std::mem::zeroed();
        let p = CString::new(dir.as_os_str().as_bytes()).unwrap();
        assert_eq!(libc::statvfs(p.as_ptr(), &mut v), 0);
        v.f_blocks * v.f_frsize
    };
    let mut seen = Vec::new();
    let errno_of =
        |name: &str, r: Result<u64, i32>| (name.to_string(), r.err().map_or("ok".into(), |e| format!("errno {e}")));
    // generic/260: most of a fresh file system is trimmed. (The kernel
    // then skips the groups it trimmed, so only errors are compared after.)
    let all = fitrim(dir, 0, u64::MAX, 0).unwrap_or(0);
    seen.push(("trimmed more than half".into(), (all > size / 2 && all <= size).to_string()));
    seen.push(errno_of("start beyond the end", fitrim(dir, size * 2, u64::MAX, 0)));
    seen.push(errno_of("start beyond the end, 1M", fitrim(dir, size * 2, 1 << 20, 0)));
    seen.push(errno_of("start 2^64-1", fitrim(dir, u64::MAX, u64::MAX, 0)));
    seen.push(errno_of("length 0", fitrim(dir, 0, 0, 0)));
    seen.push(errno_of("length 100", fitrim(dir, 0, 100, 0)));
    seen.push(errno_of("minlen above a group", fitrim(dir, 0, u64::MAX, 1 << 30)));
    seen.push(errno_of("length beyond the end", fitrim(dir, 0, size * 2, 0)));
    seen.push(errno_of("start 10M, length beyond the end", fitrim(dir, 10 << 20, size * 2, 0)));
    let st = Command::new("fstrim").arg(dir).uid(NOBODY).gid(NOBODY).output().unwrap();
    let said = String::from_utf8_lossy(&st.stderr);
    seen.push(("fstrim as nobody".into(), format!("{} {}", st.status.success(), said.contains("not permitted"))));
    seen
}

#[test]
fn fitrim_takes_the_kernels_arguments_and_trims_most_of_a_fresh_file_system() {
    let Some(wrong) = compare("FITRIM", trim_steps) else { return };
    assert!(wrong.is_empty(), "FITRIM differs from the kernel's:\n{}", wrong.join("\n"));
}

/// generic/537: a read-only mount refuses FITRIM (it cannot punch the
/// image); after a trim of the writable mount the image is smaller.
#[test]
fn fitrim_punches_the_image_and_a_read_only_mount_refuses() {
    let what = "FITRIM on the image";
    if !HostMount::usable_or_skip(what) {
        return;
    }
    let s = Scratch::new("fitrim-image");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "64M", &["-t", "ext4"]);
    let m = HostMount::new(&img, &mnt, &[]).unwrap();
    let big = mnt.join("big");
    std::fs::write(&big, vec![0x5Au8; 16 << 20]).unwrap();
    Command::new("sync").arg("-f").arg(&mnt).status().unwrap();
    std::fs::remove_file(&big).unwrap();
    Command::new("sync").arg("-f").arg(&mnt).status().unwrap();
    let before = std::fs::metadata(&img).unwrap().blocks() * 512;
    let trimmed = fitrim(&mnt, 0, u64::MAX, 0).unwrap();
    let after = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(trimmed >= 16 << 20, "{trimmed} bytes trimmed");
    assert!(before - after >= 16 << 20, "the image file gave back the freed 16 MiB: {before} → {after} bytes");
    m.unmount().unwrap();
    common::assert_fsck_clean(&img);
    let m = HostMount::new(&img, &mnt, &["--read-only"]).unwrap();
    assert_eq!(fitrim(&mnt, 0, u64::MAX, 0), Err(libc::EROFS));
    m.unmount().unwrap();
}

const FS_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587D;
/// EXT4_GOING_FLAGS_LOGFLUSH: what our server always does (a FUSE client
/// cannot pass the flags of this `_IOR` command).
const LOGFLUSH: u32 = 1;

fn errno_of<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn shutdown_steps(dir: &Path) -> Seen {
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::write(&a, b"fsynced").unwrap();
    std::fs::File::open(&a).unwrap().sync_all().unwrap();
    std::fs::write(&b, b"written").unwrap();
    let nobody = Command::new("sh")
        .arg("-c")
        .arg("exec 3<\"$1\" && python3 -c 'import fcntl; fcntl.ioctl(3, 0x8004587D, b\"\\1\\0\\0\\0\")'")
        .arg("sh")
        .arg(dir)
        .uid(NOBODY)
        .gid(NOBODY)
        .output();
    let mut seen = Vec::new();
    if let Ok(out) = nobody {
        seen.push((
            "shutdown as nobody".into(),
            String::from_utf8_lossy(&out.stderr).contains("PermissionError").to_string(),
        ));
    }
    let mut flags = LOGFLUSH.to_le_bytes();
    seen.push(("shutdown".into(), shown(ioctl(dir, FS_IOC_SHUTDOWN, &mut flags))));
    seen.push(("stat a".into(), errno_of(std::fs::metadata(&a).map(|m| m.len()))));
    seen.push(("read a".into(), errno_of(std::fs::read(&a))));
    seen.push(("opendir".into(), errno_of(std::fs::read_dir(dir))));
    seen.push(("readdir".into(), errno_of(std::fs::read_dir(dir).and_then(|d| d.collect::<Result<Vec<_>, _>>()))));
    seen.push(("create".into(), errno_of(std::fs::write(dir.join("c"), b"late"))));
    seen.push(("mkdir".into(), errno_of(std::fs::create_dir(dir.join("d")))));
    seen.push(("unlink".into(), errno_of(std::fs::remove_file(&b))));
    seen.push((
        "statfs".into(),
        errno_of(Command::new("stat").arg("-f").arg(dir).output().map(|o| o.status.success())),
    ));
    seen.push(("shutdown again".into(), shown(ioctl(dir, FS_IOC_SHUTDOWN, &mut flags))));
    seen
}

/// generic/507, 623 and the other shutdown tests: after FS_IOC_SHUTDOWN,
/// what still answers and what fails with EIO is what the kernel's ext4
/// does (reads from the client's caches aside: the kernel answers those
/// itself, so the steps read what it never cached).
#[test]
fn shutdown_refuses_what_the_kernels_ext4_refuses() {
    if !common::have_program("python3") {
        common::skip("shutdown as nobody", "python3 not installed");
    }
    let Some(wrong) = compare("FS_IOC_SHUTDOWN", shutdown_steps) else { return };
    assert!(wrong.is_empty(), "a shut-down file system differs from the kernel's:\n{}", wrong.join("\n"));
}

/// After a shutdown and an unmount the image is as a crash left it: the
/// next mount replays the journal, and everything that completed before
/// the shutdown (committed by it: LOGFLUSH) is there, e2fsck-clean.
#[test]
fn after_a_shutdown_the_next_mount_recovers_what_completed() {
    let what = "remount after FS_IOC_SHUTDOWN";
    if !HostMount::usable_or_skip(what) {
        return;
    }
    let s = Scratch::new("shutdown-remount");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "32M", &["-t", "ext4"]);
    let m = HostMount::new(&img, &mnt, &[]).unwrap();
    std::fs::write(mnt.join("a"), b"completed before the shutdown").unwrap();
    let mut flags = 0u32.to_le_bytes();
    ioctl(&mnt, FS_IOC_SHUTDOWN, &mut flags).unwrap();
    assert_eq!(std::fs::write(mnt.join("late"), b"x").map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)));
    m.unmount().unwrap();
    let out = Command::new("dumpe2fs").arg("-h").arg(&img).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("needs_recovery"), "the image is left as a crash leaves it");
    let m = HostMount::new(&img, &mnt, &[]).unwrap();
    assert_eq!(std::fs::read(mnt.join("a")).unwrap(), b"completed before the shutdown");
    assert!(!mnt.join("late").exists());
    m.unmount().unwrap();
    common::assert_fsck_clean(&img);
}
