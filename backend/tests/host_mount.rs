//! The host mount's life cycle and modes: SIGTERM and SIGINT end it with a
//! clean image (journal checkpointed, needs_recovery cleared, files
//! unlinked while open freed), also while a file is still open on it; a
//! read-only mount never changes a byte of the image; every cache policy
//! and the writeback cache serve the same data; many threads at once work.
//! Each image is judged by `e2fsck -fn` and read back with the ext4 crate.

mod common;

use common::{HostMount, Scratch, assert_fsck_clean, mkfs, mounted_fstype};
use ext4::{Ext4, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Reads `path` from the image with our reader (read-only, in memory).
fn image_file(img: &Path, path: &str) -> Vec<u8> {
    let fs = Ext4::open(img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
    assert!(fs.recovery_report().is_none(), "the image was left needing journal recovery");
    let ino = fs.resolve_path(path.as_bytes(), false).unwrap_or_else(|e| panic!("{path}: {e}"));
    let inode = fs.read_inode(ino).unwrap();
    let mut buf = vec![0u8; inode.size() as usize];
    fs.read(&inode, 0, &mut buf).unwrap();
    buf
}

/// Whether debugfs lists `needs_recovery` among the features.
fn needs_recovery(img: &Path) -> bool {
    let out = Command::new("dumpe2fs").arg("-h").arg(img).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("Filesystem features") && l.contains("needs_recovery"))
}

#[test]
fn signals_end_the_mount_with_a_clean_image() {
    if !HostMount::usable_or_skip("host mount signal handling") {
        return;
    }
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let s = Scratch::new("mount-sig");
        let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
        mkfs(&img, "128M", &["-t", "ext4"]);
        std::fs::create_dir(&mnt).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ext4-virtiofsd"))
            .arg("mount")
            .arg(&img)
            .arg(&mnt)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while mounted_fstype(&mnt).as_deref() != Some(HostMount::FSTYPE) {
            assert!(Instant::now() < deadline, "no mount appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(mnt.join("kept"), &data).unwrap();
        std::fs::create_dir(mnt.join("dir")).unwrap();
        // Unlinked while open: an orphan until the daemon lets go of it.
        let mut orphan = std::fs::File::create(mnt.join("orphan")).unwrap();
        orphan.write_all(&vec![1u8; 1 << 20]).unwrap();
        std::fs::remove_file(mnt.join("orphan")).unwrap();
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        // The open file keeps the mount busy: it is detached and ends with
        // its last user.
        std::thread::sleep(Duration::from_millis(300));
        orphan.seek(SeekFrom::Start(0)).unwrap();
        drop(orphan);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "daemon did not exit after signal {sig}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "daemon exit status after signal {sig}: {status}");
        assert_ne!(mounted_fstype(&mnt).as_deref(), Some(HostMount::FSTYPE), "still mounted");
        assert!(!needs_recovery(&img), "needs_recovery still set after signal {sig}");
        assert_fsck_clean(&img);
        assert!(image_file(&img, "/kept") == data, "file contents after signal {sig}");
    }
}

/// SIGTERM while a process keeps its working directory inside the mount:
/// the mount is detached lazily and the daemon keeps serving that user,
/// but the image is committed, checkpointed and marked clean at once, so
/// a SIGKILL afterwards leaves an image that needs no journal replay.
#[test]
fn sigterm_while_busy_closes_the_image_at_once() {
    if !HostMount::usable_or_skip("host mount SIGTERM while busy") {
        return;
    }
    let s = Scratch::new("mount-busy");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "128M", &["-t", "ext4"]);
    std::fs::create_dir(&mnt).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_ext4-virtiofsd"))
        .arg("mount")
        .arg(&img)
        .arg(&mnt)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut polls = 0;
    while mounted_fstype(&mnt).as_deref() != Some(HostMount::FSTYPE) {
        polls += 1;
        assert!(polls < 1000, "no mount appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut f = std::fs::File::create(mnt.join("kept")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert!(needs_recovery(&img), "a mounted image with committed changes needs recovery");
    let mut sleeper = Command::new("sleep").arg("1000").current_dir(&mnt).spawn().unwrap();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    let mut polls = 0;
    while needs_recovery(&img) {
        polls += 1;
        assert!(polls < 600, "needs_recovery still set after SIGTERM with a user left");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon keeps serving the remaining user");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(!needs_recovery(&img), "killed after the close: no journal replay needed");
    assert_fsck_clean(&img);
    assert!(image_file(&img, "/kept") == data, "file contents after SIGTERM and SIGKILL");
}

#[test]
fn a_read_only_mount_never_writes_the_image() {
    if !HostMount::usable_or_skip("read-only host mount") {
        return;
    }
    let s = Scratch::new("mount-ro");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    let src = s.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), b"contents").unwrap();
    mkfs(&img, "64M", &["-t", "ext4", "-d", src.to_str().unwrap()]);
    let before = std::fs::read(&img).unwrap();
    let m = HostMount::new(&img, &mnt, &["--read-only"]).unwrap();
    assert_eq!(std::fs::read(mnt.join("d/f")).unwrap(), b"contents");
    let err = std::fs::write(mnt.join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = std::fs::OpenOptions::new().write(true).open(mnt.join("d/f")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(std::fs::remove_file(mnt.join("d/f")).unwrap_err().raw_os_error(), Some(libc::EROFS));
    m.unmount().unwrap();
    assert!(std::fs::read(&img).unwrap() == before, "a read-only mount changed the image");
}

#[test]
fn every_cache_mode_serves_the_same_data() {
    if !HostMount::usable_or_skip("host mount cache modes") {
        return;
    }
    for args in [&["--cache", "never"][..], &["--cache", "auto"], &["--cache", "always"], &["--writeback"]] {
        let s = Scratch::new("mount-cache");
        let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
        mkfs(&img, "64M", &["-t", "ext4", "-O", "inline_data"]);
        let m = HostMount::new(&img, &mnt, args).unwrap();
        let f = mnt.join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&f).unwrap();
        file.write_at(b"abc", 3).unwrap();
        file.write_at(b"tail", 20_000).unwrap();
        let mut back = vec![0u8; 20_004];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back[..10], b"012abc6789", "{args:?}");
        assert!(back[10..20_000].iter().all(|&b| b == 0), "{args:?}: the hole reads as zeros");
        let mut app = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        app.write_all(b"+end").unwrap();
        drop((file, app));
        std::fs::rename(&f, mnt.join("g")).unwrap();
        let got = std::fs::read(mnt.join("g")).unwrap();
        assert_eq!(got.len(), 20_008, "{args:?}");
        assert_eq!(&got[20_000..], b"tail+end", "{args:?}: O_APPEND goes to the end");
        // A writer that does not own the file: writes, fsync and touch work
        // (with the writeback cache the kernel sends its times explicitly).
        let shared = mnt.join("shared");
        std::fs::write(&shared, b"").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o777)).unwrap();
        let script = format!("echo data | dd of={0} conv=notrunc,fsync status=none && touch {0}", shared.display());
        let out = Command::new("su").args(["nobody", "-s", "/bin/sh", "-c", &script]).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: non-owner write/fsync/touch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&shared).unwrap(), b"data\n", "{args:?}");
        m.unmount().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_fsck_clean(&img);
        assert!(image_file(&img, "/g") == got, "{args:?}: the image holds what the mount showed");
        assert_eq!(image_file(&img, "/shared"), b"data\n", "{args:?}");
    }
}

#[test]
fn many_threads_at_once() {
    if !HostMount::usable_or_skip("concurrent host mount") {
        return;
    }
    let s = Scratch::new("mount-mt");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "256M", &["-t", "ext4"]);
    let m = HostMount::new(&img, &mnt, &[]).unwrap();
    std::thread::scope(|sc| {
        for t in 0..6u8 {
            let dir = mnt.join(format!("t{t}"));
            sc.spawn(move || {
                std::fs::create_dir(&dir).unwrap();
                for i in 0..150u32 {
                    let body = vec![t.wrapping_add(i as u8); i as usize * 97 % 20_000];
                    std::fs::write(dir.join(format!("f{i}")), &body).unwrap();
                    if i % 3 == 0 {
                        std::fs::rename(dir.join(format!("f{i}")), dir.join(format!("r{i}"))).unwrap();
                    }
                    if i % 10 == 0 {
                        assert!(std::fs::read_dir(&dir).unwrap().count() > 0);
                    }
                }
            });
        }
    });
    for t in 0..6u8 {
        let names = std::fs::read_dir(mnt.join(format!("t{t}"))).unwrap().count();
        assert_eq!(names, 150);
    }
    m.unmount().unwrap();
    assert_fsck_clean(&img);
    for t in 0..6u8 {
        let body = image_file(&img, &format!("/t{t}/r147"));
        assert_eq!(body, vec![t.wrapping_add(147); 147 * 97]);
    }
}

/// pjdfstest's `link::link_count_max` cannot run on any FUSE mount (glibc's
/// pathconf(_PC_LINK_MAX) answers 127, "unknown", for FUSE's f_type), so
/// the same check runs here: ext4's 65 000 links, then EMLINK.
#[test]
fn link_count_max_gives_emlink() {
    if !HostMount::usable_or_skip("LINK_MAX through the host mount") {
        return;
    }
    let s = Scratch::new("mount-linkmax");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "256M", &["-t", "ext4"]);
    let m = HostMount::new(&img, &mnt, &[]).unwrap();
    let dir = mnt.join("d");
    std::fs::create_dir(&dir).unwrap();
    let f = dir.join("f");
    std::fs::write(&f, b"x").unwrap();
    for i in 1..65_000 {
        std::fs::hard_link(&f, dir.join(format!("l{i}"))).unwrap_or_else(|e| panic!("link {i}: {e}"));
    }
    let err = std::fs::hard_link(&f, dir.join("one-too-many")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMLINK));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&f).unwrap().nlink(), 65_000);
    m.unmount().unwrap();
    assert_fsck_clean(&img);
}

/// Operations pjdfstest does not reach, through the kernel: SEEK_DATA and
/// SEEK_HOLE, copy_file_range, fallocate (keep-size, punch), chattr +i/+a,
/// O_TMPFILE with linkat, and POSIX locks between two processes.
#[test]
fn file_operations_through_the_kernel() {
    if !HostMount::usable_or_skip("file operations through the host mount") {
        return;
    }
    let s = Scratch::new("mount-ops");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "64M", &["-t", "ext4", "-b", "4096"]);
    let m = HostMount::new(&img, &mnt, &[]).unwrap();
    let cpath = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    use std::os::fd::AsRawFd;

    // A sparse file: data at 0..4096 and at 1 MiB..1 MiB+4096.
    let sparse = mnt.join("sparse");
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&sparse).unwrap();
    f.write_at(&[1u8; 4096], 0).unwrap();
    f.write_at(&[2u8; 4096], 1 << 20).unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: lseek on a descriptor we own.
    let seek = |off: i64, whence: i32| unsafe { libc::lseek(fd, off, whence) };
    assert_eq!(seek(0, libc::SEEK_DATA), 0);
    assert_eq!(seek(0, libc::SEEK_HOLE), 4096);
    assert_eq!(seek(4096, libc::SEEK_DATA), 1 << 20);
    assert_eq!(seek(1 << 20, libc::SEEK_HOLE), (1 << 20) + 4096);
    assert_eq!(seek((1 << 20) + 4096, libc::SEEK_DATA), -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENXIO));

    // copy_file_range within the mount.
    let copy =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(mnt.join("copy")).unwrap();
    let (mut off_in, mut off_out) = (0i64, 0i64);
    // SAFETY: both descriptors are open; the offsets are our locals.
    let n = unsafe { libc::copy_file_range(fd, &mut off_in, copy.as_raw_fd(), &mut off_out, 8192, 0) };
    assert_eq!(n, 8192);
    let mut back = vec![0u8; 8192];
    copy.read_exact_at(&mut back, 0).unwrap();
    assert!(back[..4096].iter().all(|&b| b == 1) && back[4096..].iter().all(|&b| b == 0));
    drop(copy);

    // fallocate: keep-size preallocation, then a punched hole.
    // SAFETY: fallocate on a descriptor we own.
    assert_eq!(unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 4 << 20, 1 << 20) }, 0);
    assert_eq!(f.metadata().unwrap().len(), (1 << 20) + 4096, "keep-size leaves the size");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, 4096) }, 0);
    let mut first = vec![9u8; 4096];
    f.read_exact_at(&mut first, 0).unwrap();
    assert!(first.iter().all(|&b| b == 0), "the punched range reads as zeros");
    drop(f);

    // chattr +i and +a.
    let flagged = mnt.join("flagged");
    std::fs::write(&flagged, b"x").unwrap();
    common::run(Command::new("chattr").arg("+i").arg(&flagged));
    assert!(common::run(Command::new("lsattr").arg(&flagged)).starts_with("----i"));
    let err = std::fs::OpenOptions::new().append(true).open(&flagged).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    assert_eq!(std::fs::remove_file(&flagged).unwrap_err().raw_os_error(), Some(libc::EPERM));
    common::run(Command::new("chattr").arg("-i").arg("+a").arg(&flagged));
    std::fs::OpenOptions::new().append(true).open(&flagged).unwrap().write_all(b"y").unwrap();
    let err = std::fs::OpenOptions::new().write(true).open(&flagged).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "append-only: no plain write open");
    common::run(Command::new("chattr").arg("-a").arg(&flagged));
    assert_eq!(std::fs::read(&flagged).unwrap(), b"xy");

    // O_TMPFILE, then linkat through /proc/self/fd.
    // SAFETY: open with a valid path; the descriptor is closed below.
    let tfd = unsafe { libc::open(cpath(&mnt).as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600) };
    assert!(tfd >= 0, "O_TMPFILE: {}", std::io::Error::last_os_error());
    // SAFETY: writing from a valid buffer to our descriptor.
    assert_eq!(unsafe { libc::write(tfd, b"tmp".as_ptr().cast(), 3) }, 3);
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{tfd}")).unwrap();
    let named = mnt.join("named");
    // SAFETY: valid NUL-terminated paths.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            cpath(&named).as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    assert_eq!(r, 0, "linkat: {}", std::io::Error::last_os_error());
    // SAFETY: closing our descriptor.
    unsafe { libc::close(tfd) };
    assert_eq!(std::fs::read(&named).unwrap(), b"tmp");
    // A second one that is never linked disappears on close.
    // SAFETY: as above.
    let tfd = unsafe { libc::open(cpath(&mnt).as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600) };
    assert!(tfd >= 0);
    // SAFETY: closing our descriptor.
    unsafe { libc::close(tfd) };

    // POSIX locks: another process holds a write lock; ours is refused,
    // then granted once that process is gone.
    let lockfile = mnt.join("lockfile");
    std::fs::write(&lockfile, b"locked").unwrap();
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import fcntl,sys,time\nf=open({:?},'r+')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('held',flush=True)\nsys.stdin.read()",
            lockfile
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    let lf = std::fs::OpenOptions::new().read(true).write(true).open(&lockfile).unwrap();
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: fcntl with a valid flock structure on our descriptor.
    assert_eq!(unsafe { libc::fcntl(lf.as_raw_fd(), libc::F_SETLK, &fl) }, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN));
    let mut probe = fl;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fcntl(lf.as_raw_fd(), libc::F_GETLK, &mut probe) }, 0);
    assert_eq!(probe.l_pid as u32, holder.id(), "F_GETLK names the holder");
    drop(holder.stdin.take());
    holder.wait().unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fcntl(lf.as_raw_fd(), libc::F_SETLKW, &fl) }, 0, "granted once the holder is gone");
    drop(lf);

    m.unmount().unwrap();
    assert_fsck_clean(&img);
    assert_eq!(image_file(&img, "/named"), b"tmp");
}

/// `--no-subtype` mounts as plain `fuse` (the type xfstests' FSTYP=fuse
/// looks for; scripts/xfstests.sh uses it) and serves and closes the image
/// as the default type does.
#[test]
fn no_subtype_mounts_as_plain_fuse() {
    if !HostMount::usable_or_skip("host mount --no-subtype") {
        return;
    }
    let s = Scratch::new("mount-plain");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "64M", &["-t", "ext4"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ext4-virtiofsd"));
    cmd.arg("mount").arg(&img).arg(&mnt).arg("--no-subtype");
    let m = common::FuseMount::spawn(cmd, &mnt, "fuse").unwrap();
    assert_eq!(mounted_fstype(&mnt).as_deref(), Some("fuse"));
    std::fs::write(mnt.join("f"), b"plain").unwrap();
    m.unmount().unwrap();
    assert_fsck_clean(&img);
    assert_eq!(image_file(&img, "/f"), b"plain");
}

/// Device nodes on the mount open only with `--dev` (the default mount is
/// nodev, like nosuid without `--suid`); /proc/self/mountinfo shows both.
#[test]
fn device_nodes_open_only_with_dev() {
    if !HostMount::usable_or_skip("host mount --dev") {
        return;
    }
    let s = Scratch::new("mount-dev");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "64M", &["-t", "ext4"]);
    for (args, opens) in [(&[][..], false), (&["--dev", "--suid"][..], true)] {
        let m = HostMount::new(&img, &mnt, args).unwrap();
        let null = mnt.join("null");
        let _ = std::fs::remove_file(&null);
        let path = std::ffi::CString::new(null.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; makes /dev/null's twin (1:3).
        assert_eq!(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }, 0);
        // Opened and closed at once: an open file would keep the mount busy.
        let r = std::fs::OpenOptions::new().write(true).open(&null).map(drop);
        assert_eq!(r.is_ok(), opens, "{args:?}: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{args:?}");
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = std::fs::canonicalize(&mnt).unwrap();
        let line = info.lines().find(|l| l.split(' ').nth(4) == dir.to_str()).unwrap();
        let opts: Vec<&str> = line.split(' ').nth(5).unwrap().split(',').collect();
        assert_eq!(opts.contains(&"nodev"), !opens, "{args:?}: {line}");
        assert_eq!(opts.contains(&"nosuid"), !opens, "{args:?}: {line}");
        m.unmount().unwrap();
    }
    assert_fsck_clean(&img);
}
