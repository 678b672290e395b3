//! Where POSIX and Linux users look, the host mount behaves as the kernel's
//! ext4 (issue 12): each test runs the same steps on a kernel loop mount of
//! a fresh image and on our host mount of another (in several cache modes)
//! and compares what the steps saw.
//!
//! - execve needs execute permission only (a file with mode --x runs);
//! - a write, truncate or O_TRUNC open by a caller without CAP_FSETID drops
//!   set-user-id, and set-group-id when the group may execute or the caller
//!   is not in the file's group (generic/355); chown drops them too;
//! - such writes, truncates and chowns drop file capabilities
//!   (`security.capability`) too, where the kernel's ext4 does (generic/688);
//! - chattr moves ctime, and the new ctime is on disk (generic/277);
//! - a file opened O_DIRECT can be mapped shared (fsx, generic/091);
//! - statx reports the creation time and the `STATX_ATTR_*` flags of the
//!   inode, checked through the host mount and, for what the client kernel
//!   does not pass on, through FUSE_STATX requests made by hand.

mod common;

use common::client::Client;
use common::compare::{MODES, Seen, compare};
use common::{HostMount, KernelMount, Scratch, assert_fsck_clean, have_program, mkfs, skip};
use fuse_abi::linux::*;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// The unprivileged user the steps run as (nobody).
const NOBODY: u32 = 65534;

/// Sets owner, group and mode of `p` (chmod after chown: chown drops set-id bits).
fn own(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// What became of running `program` as `uid`:`gid` (std drops the
/// supplementary groups when root sets the uid).
fn run_as(program: &Path, uid: u32, gid: u32) -> String {
    match Command::new(program).uid(uid).gid(gid).status() {
        Ok(st) if st.success() => "ran".into(),
        Ok(st) => format!("exited {st}"),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn exec_steps(dir: &Path) -> Seen {
    let true_bin = std::fs::read("/bin/true").expect("/bin/true");
    // (name, mode, owner, group, run as uid, gid)
    let cases = [
        ("user --x", 0o100, NOBODY, NOBODY, NOBODY, NOBODY),
        ("group --x", 0o010, 0, NOBODY, NOBODY, NOBODY),
        ("other --x", 0o001, 0, 0, NOBODY, NOBODY),
        ("user rw- (no x)", 0o600, NOBODY, NOBODY, NOBODY, NOBODY),
        ("other r-- (no x)", 0o004, 0, 0, NOBODY, NOBODY),
        ("root, other --x", 0o001, NOBODY, NOBODY, 0, 0),
        ("root, no x", 0o644, NOBODY, NOBODY, 0, 0),
    ];
    let mut seen = Vec::new();
    for (i, (name, mode, uid, gid, ruid, rgid)) in cases.into_iter().enumerate() {
        let p = dir.join(format!("exe{i}"));
        std::fs::write(&p, &true_bin).unwrap();
        own(&p, uid, gid, mode);
        seen.push((name.to_string(), run_as(&p, ruid, rgid)));
    }
    seen
}

#[test]
fn execve_needs_only_execute_permission() {
    let Some(wrong) = compare("execve of --x files", exec_steps) else { return };
    assert!(wrong.is_empty(), "execve differs from the kernel's:\n{}", wrong.join("\n"));
}

/// `sh -c SCRIPT sh FILE` as nobody (not the owner, no CAP_FSETID).
fn sh_as_nobody(script: &str, file: &Path) {
    let st = Command::new("sh").arg("-c").arg(script).arg("sh").arg(file).uid(NOBODY).gid(NOBODY).status().unwrap();
    assert!(st.success(), "{script} as nobody on {}", file.display());
}

fn privilege_steps(dir: &Path) -> Seen {
    // What nobody does to a file (the shell's `>` opens O_TRUNC; truncate(1)
    // is an ftruncate; dd writes buffered or O_DIRECT; fallocate(1)
    // preallocates; xfs_io copy_range is a copy_file_range into it).
    let ops: [(&str, &str); 6] = [
        ("buffered write", r#"dd if=/dev/zero of="$1" bs=4096 count=1 conv=notrunc status=none"#),
        ("fallocate", r#"fallocate -o 0 -l 8192 "$1""#),
        ("direct write", r#"dd if=/dev/zero of="$1" bs=4096 count=1 conv=notrunc oflag=direct status=none"#),
        ("O_TRUNC open", r#": > "$1""#),
        ("ftruncate", r#"truncate -s 100 "$1""#),
        ("O_TRUNC open of an empty file", r#": > "$1""#),
    ];
    let src = dir.join("copy-source");
    std::fs::write(&src, vec![2u8; 4096]).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let copy = format!(r#"xfs_io -c "copy_range -s 0 -d 0 -l 4096 {}" "$1""#, src.display());
    let mut ops = ops.to_vec();
    if have_program("xfs_io") {
        ops.push(("copy_file_range", &copy));
    }
    let mut seen = Vec::new();
    let mut n = 0;
    // generic/355's modes on a root:root file (nobody not in its group),
    // then files of nobody's group (set-group-id without group execute stays).
    for (gid, mode) in [(0, 0o6666), (0, 0o6766), (0, 0o6676), (0, 0o6776), (NOBODY, 0o6666), (NOBODY, 0o6676)] {
        for &(what, script) in &ops {
            n += 1;
            let p = dir.join(format!("suid{n}"));
            let len = if what.contains("empty") { 0 } else { 8192 };
            std::fs::write(&p, vec![1u8; len]).unwrap();
            own(&p, 0, gid, mode);
            std::fs::metadata(&p).unwrap();
            sh_as_nobody(script, &p);
            let m = std::fs::metadata(&p).unwrap().mode() & 0o7777;
            seen.push((format!("{what} of {mode:o} (group {gid}) by nobody"), format!("{m:o}")));
        }
    }
    // chown by root drops set-user-id always, set-group-id with group execute.
    for mode in [0o6777, 0o6767] {
        let p = dir.join(format!("chown{mode:o}"));
        std::fs::write(&p, b"x").unwrap();
        own(&p, NOBODY, NOBODY, mode);
        std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
        let m = std::fs::metadata(&p).unwrap().mode() & 0o7777;
        seen.push((format!("chown of {mode:o} by root"), format!("{m:o}")));
    }
    seen
}

#[test]
fn unprivileged_writes_and_truncates_drop_set_id_bits_as_the_kernel_does() {
    if !have_program("xfs_io") {
        skip("set-id bits dropped by copy_file_range", "xfs_io not installed; the other writes still checked");
    }
    let Some(wrong) = compare("set-id bits dropped by unprivileged writes", privilege_steps) else { return };
    assert!(wrong.is_empty(), "modes differ from the kernel's:\n{}", wrong.join("\n"));
}

/// The file capabilities of `p` as getcap(8) prints them (without the path).
fn caps(p: &Path) -> String {
    let out = Command::new("getcap").arg(p).output().expect("getcap");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().strip_prefix(p.to_str().unwrap()).unwrap_or(&text).trim().to_string()
}

fn capability_steps(dir: &Path) -> Seen {
    // generic/688: nobody changes a mode 0777 file carrying a capability.
    let mut ops = vec![
        ("buffered write", r#"echo x >> "$1""#.to_string()),
        ("direct write", r#"dd if=/dev/zero of="$1" bs=4096 count=1 conv=notrunc oflag=direct status=none"#.into()),
        ("fallocate", r#"fallocate -o 0 -l 8192 "$1""#.into()),
        ("ftruncate", r#"truncate -s 100 "$1""#.into()),
        ("O_TRUNC open", r#": > "$1""#.into()),
    ];
    if have_program("xfs_io") {
        let src = dir.join("caps-source");
        std::fs::write(&src, vec![2u8; 4096]).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
        ops.push(("copy_file_range", format!(r#"xfs_io -c "copy_range -s 0 -d 0 -l 4096 {}" "$1""#, src.display())));
    }
    let mut seen = Vec::new();
    for (n, (what, script)) in ops.iter().enumerate() {
        let p = dir.join(format!("caps{n}"));
        std::fs::write(&p, vec![1u8; 8192]).unwrap();
        own(&p, 0, 0, 0o777);
        assert!(Command::new("setcap").arg("cap_setgid=ep").arg(&p).status().unwrap().success(), "setcap");
        let before = caps(&p);
        let st = Command::new("sh").arg("-c").arg(script).arg("sh").arg(&p).uid(NOBODY).gid(NOBODY).status().unwrap();
        seen.push((format!("{what} by nobody"), format!("exit {:?}, caps {before:?} -> {:?}", st.code(), caps(&p))));
    }
    // Neither nobody nor its owner may set capabilities; root's chown drops them.
    let p = dir.join("caps-chown");
    std::fs::write(&p, b"x").unwrap();
    own(&p, NOBODY, NOBODY, 0o777);
    let st = Command::new("setcap").arg("cap_setgid=ep").arg(&p).uid(NOBODY).gid(NOBODY).output().unwrap();
    seen.push(("setcap by the owner".into(), format!("exit {:?}, caps {:?}", st.status.code(), caps(&p))));
    assert!(Command::new("setcap").arg("cap_setgid=ep").arg(&p).status().unwrap().success(), "setcap");
    std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
    seen.push(("chown by root".into(), format!("caps {:?}", caps(&p))));
    seen
}

#[test]
fn unprivileged_writes_drop_file_capabilities_as_the_kernel_does() {
    if !have_program("setcap") || !have_program("getcap") {
        skip("file capabilities dropped by writes", "setcap/getcap not installed (Debian's libcap2-bin)");
        return;
    }
    let Some(wrong) = compare("file capabilities dropped by unprivileged writes", capability_steps) else { return };
    assert!(wrong.is_empty(), "file capabilities differ from the kernel's:\n{}", wrong.join("\n"));
}

fn ctime(p: &Path) -> (i64, i64) {
    let m = std::fs::metadata(p).unwrap();
    (m.ctime(), m.ctime_nsec())
}

/// generic/277: chattr (FS_IOC_SETFLAGS; FS_IOC_FSSETXATTR through xfs_io)
/// moves ctime, and the new ctime is what the image holds after remounting.
#[test]
fn chattr_moves_ctime_and_it_reaches_the_disk() {
    let what = "ctime of chattr";
    if !HostMount::usable_or_skip(what) {
        return;
    }
    let xfs_io = have_program("xfs_io");
    if !xfs_io {
        skip("ctime of FS_IOC_FSSETXATTR", "xfs_io not installed; FS_IOC_SETFLAGS (chattr) still checked");
    }
    let s = Scratch::new("fidelity-chattr");
    let files = ["setflags", "fssetxattr"];
    type Mount = Box<dyn FnOnce() -> Result<(), String>>;
    let run = |mount: &dyn Fn() -> Option<(std::path::PathBuf, Mount)>| -> Option<Vec<(bool, bool, bool)>> {
        let (dir, unmount) = mount()?;
        let mut after = Vec::new();
        for f in files {
            let p = dir.join(f);
            std::fs::write(&p, b"x").unwrap();
            let before = ctime(&p);
            std::thread::sleep(Duration::from_millis(15));
            let st = if f == "setflags" {
                Command::new("chattr").arg("+A").arg(&p).status().unwrap()
            } else if xfs_io {
                Command::new("xfs_io").args(["-c", "chattr +d"]).arg(&p).status().unwrap()
            } else {
                continue;
            };
            assert!(st.success(), "chattr on {}", p.display());
            after.push((before, ctime(&p)));
        }
        unmount().unwrap();
        let (dir, unmount) = mount()?;
        let mut seen = Vec::new();
        for (f, (before, after)) in files.iter().zip(after) {
            let disk = ctime(&dir.join(f));
            seen.push((after != before, disk != before, disk == after));
        }
        unmount().unwrap();
        Some(seen)
    };
    let (kimg, kmnt) = (s.join("k.img"), s.join("kmnt"));
    mkfs(&kimg, "32M", &["-t", "ext4"]);
    let Some(expected) = run(&|| {
        let k = KernelMount::or_skip(&kimg, &kmnt, "", what)?;
        Some((k.path().to_path_buf(), Box::new(move || k.unmount()) as Mount))
    }) else {
        return;
    };
    assert!(expected.iter().all(|&(shown, disk, same)| shown && disk && same), "the kernel's ext4: {expected:?}");
    for args in MODES {
        let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
        mkfs(&img, "32M", &["-t", "ext4"]);
        let got = run(&|| {
            let m = HostMount::new(&img, &mnt, args).unwrap();
            Some((m.path().to_path_buf(), Box::new(move || m.unmount()) as Mount))
        })
        .unwrap();
        // With the writeback cache the client keeps a regular file's ctime
        // and does not take the daemon's after an ioctl (known difference,
        // see host_mount_attrs): there only the disk's ctime is compared.
        let got: Vec<_> = if args.contains(&"--writeback") {
            got.iter().map(|&(_, disk, _)| (true, disk, true)).collect()
        } else {
            got
        };
        assert_eq!(got, expected, "(ctime shown moved, ctime on disk moved, disk's = shown) with {args:?}");
        assert_fsck_clean(&img);
    }
}

fn mmap_steps(dir: &Path) -> Seen {
    let mut seen = Vec::new();
    for (name, direct) in [("O_DIRECT", true), ("buffered", false)] {
        let p = dir.join(format!("map-{name}"));
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        let f = o.open(&p).unwrap();
        // SAFETY: a fresh mapping of 8 KiB of an open file, unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            seen.push((format!("shared mmap of a file opened {name}"), format!("errno {}", e.raw_os_error().unwrap())));
            continue;
        }
        // SAFETY: the mapping is 8 KiB long, readable and writable.
        let (first, msync) = unsafe {
            let m = std::slice::from_raw_parts_mut(addr.cast::<u8>(), 8192);
            let first = m[0];
            m[4096..4096 + 5].copy_from_slice(b"moved");
            (first, libc::msync(addr, 8192, libc::MS_SYNC))
        };
        // SAFETY: unmaps the mapping made above.
        assert_eq!(unsafe { libc::munmap(addr, 8192) }, 0);
        drop(f);
        let data = std::fs::read(&p).unwrap();
        seen.push((
            format!("shared mmap of a file opened {name}"),
            format!("read {first}, msync {msync}, file holds {:?}", String::from_utf8_lossy(&data[4096..4101])),
        ));
    }
    seen
}

#[test]
fn a_file_opened_o_direct_can_be_mapped_shared() {
    let Some(wrong) = compare("shared mmap of O_DIRECT files", mmap_steps) else { return };
    assert!(wrong.is_empty(), "mmap differs from the kernel's:\n{}", wrong.join("\n"));
}

/// What statx(2) tells of `p` with STATX_BASIC_STATS | STATX_BTIME: the
/// result mask, btime and the attributes with their mask.
fn statx(p: &Path) -> libc::statx {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: all-zero bytes are a valid statx.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_BASIC_STATS | libc::STATX_BTIME;
    // SAFETY: a NUL-terminated path and a statx buffer that outlive the call.
    let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, mask, &mut sx) };
    assert_eq!(r, 0, "statx {}: {}", p.display(), std::io::Error::last_os_error());
    sx
}

/// The `STATX_ATTR_*` flags ext4 reports (what FUSE_STATX answers with).
const EXT4_ATTRS: u64 = (libc::STATX_ATTR_APPEND
    | libc::STATX_ATTR_COMPRESSED
    | libc::STATX_ATTR_ENCRYPTED
    | libc::STATX_ATTR_IMMUTABLE
    | libc::STATX_ATTR_NODUMP
    | libc::STATX_ATTR_VERITY) as u64;

/// Files and the chattr flags they get on the kernel's mount.
const FLAGGED: [(&str, &str); 6] =
    [("plain", ""), ("immutable", "+i"), ("append", "+a"), ("nodump", "+d"), ("compressed", "+c"), ("all", "+iadc")];

/// generic/424's question, and btime: the image is written by the kernel
/// (files with chattr flags); then FUSE_STATX requests made by hand and
/// statx through our host mount of the same image must tell what the
/// kernel's statx told of the same inodes.
#[test]
fn statx_reports_btime_and_inode_attributes_as_the_kernel_does() {
    let what = "statx attributes";
    if !HostMount::usable_or_skip(what) {
        return;
    }
    let s = Scratch::new("fidelity-statx");
    let (img, kmnt, mnt) = (s.join("fs.img"), s.join("kmnt"), s.join("mnt"));
    mkfs(&img, "32M", &["-t", "ext4"]);
    let Some(k) = KernelMount::or_skip(&img, &kmnt, "", what) else { return };
    let mut kernel = Vec::new();
    for (name, flags) in FLAGGED {
        let p = k.path().join(name);
        std::fs::write(&p, b"data").unwrap();
        if !flags.is_empty() {
            assert!(Command::new("chattr").arg(flags).arg(&p).status().unwrap().success(), "chattr {flags}");
        }
        let sx = statx(&p);
        assert!(sx.stx_mask & libc::STATX_BTIME != 0, "the kernel's ext4 reports btime");
        assert_eq!(sx.stx_attributes_mask & EXT4_ATTRS, EXT4_ATTRS, "the kernel's ext4 supports these");
        kernel.push((name, sx.stx_ino, sx.stx_attributes & EXT4_ATTRS, (sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec)));
    }
    k.unmount().unwrap();

    // The daemon's answer, asked directly.
    let mut c = Client::new(&img);
    c.init();
    for &(name, ino, attrs, btime) in &kernel {
        let e = c.lookup(FUSE_ROOT_ID, name).unwrap();
        assert_eq!(e.attr.ino, ino);
        let req = fuse_statx_in { sx_mask: libc::STATX_BASIC_STATS | libc::STATX_BTIME, ..Default::default() };
        let body = c.ok(fuse_opcode::FUSE_STATX, e.nodeid, req.as_bytes());
        let out = fuse_statx_out::read_from_bytes(&body).expect("a fuse_statx_out");
        let sx = out.stat;
        assert_eq!(sx.mask & libc::STATX_BASIC_STATS, libc::STATX_BASIC_STATS, "{name}: basic stats");
        assert!(sx.mask & libc::STATX_BTIME != 0, "{name}: btime");
        assert_eq!((sx.btime.tv_sec, sx.btime.tv_nsec), btime, "{name}: btime");
        assert_eq!(sx.attributes_mask & EXT4_ATTRS, EXT4_ATTRS, "{name}: attributes mask");
        assert_eq!(sx.attributes, attrs, "{name}: attributes, the kernel's {attrs:#x}");
        assert_eq!((sx.ino, sx.size, sx.mode & 0o170000), (ino, 4, libc::S_IFREG as u16), "{name}: basic stats");
    }
    c.finish();

    // Through the host mount: the client kernel asks FUSE_STATX for btime.
    // Linux 6.18's fuse_do_statx copies btime and the basic stats from the
    // reply but not attributes (later kernels pass them on): attributes the
    // mount shows must be the kernel's, and their absence is reported.
    let m = HostMount::new(&img, &mnt, &[]).unwrap();
    let mut dropped = Vec::new();
    for &(name, ino, attrs, btime) in &kernel {
        let sx = statx(&m.path().join(name));
        assert_eq!(sx.stx_ino, ino);
        assert!(sx.stx_mask & libc::STATX_BTIME != 0, "{name}: btime through the host mount");
        assert_eq!((sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec), btime, "{name}: btime through the host mount");
        let shown = sx.stx_attributes & EXT4_ATTRS;
        assert_eq!(shown & !attrs, 0, "{name}: attributes {shown:#x} shown, the kernel's {attrs:#x}");
        if shown != attrs {
            dropped.push(format!("{name} ({attrs:#x})"));
        }
    }
    m.unmount().unwrap();
    if !dropped.is_empty() {
        skip(
            "statx attributes through the host mount",
            &format!(
                "this client kernel does not pass FUSE_STATX attributes on to statx(2) (answered, checked above): {}",
                dropped.join(", ")
            ),
        );
    }
    assert_fsck_clean(&img);
}
