//! The host mount's exit (issue 14): `umount` may return before the daemon
//! has closed the image, so a remount right after it must still find the
//! image usable; and a connection the kernel aborts must end the daemon
//! promptly with the image clean. Each wait is bounded by a generous hang
//! guard that fails the test with the daemon's output (not a timing
//! assertion).

mod common;

use common::{HostMount, Scratch, assert_fsck_clean, mkfs, mounted_fstype};
use ext4::{Ext4, OpenOptions};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hang guard for a mount to appear or a daemon to exit.
const GUARD: Duration = Duration::from_secs(60);

/// Starts `ext4-virtiofsd mount IMG MNT` and waits for the mount.
fn start(img: &Path, mnt: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ext4-virtiofsd"))
        .arg("mount")
        .arg(img)
        .arg(mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the daemon");
    let deadline = Instant::now() + GUARD;
    while mounted_fstype(mnt).as_deref() != Some(HostMount::FSTYPE) {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the daemon exited ({st}) before mounting:\n{}", stderr(&mut child));
        }
        assert!(Instant::now() < deadline, "no mount within {GUARD:?}:\n{}", stderr(&mut child));
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn stderr(child: &mut Child) -> String {
    let _ = child.kill();
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Waits for the daemon to exit; its status must be success (a clean close).
fn wait_clean_exit(mut child: Child, what: &str) {
    let deadline = Instant::now() + GUARD;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{what}: the daemon exited with {st}:\n{}", stderr(&mut child));
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the daemon did not exit within {GUARD:?}:\n{}", stderr(&mut child));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn umount(mnt: &Path, lazy: bool) {
    let mut cmd = Command::new("umount");
    if lazy {
        cmd.arg("-l");
    }
    let st = cmd.arg(mnt).status().expect("run umount");
    assert!(st.success(), "umount {mnt:?} failed");
}

#[test]
fn remount_right_after_umount_fifty_times() {
    if !HostMount::usable_or_skip("host mount remount loop") {
        return;
    }
    let s = Scratch::new("mount-remount");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "64M", &["-t", "ext4"]);
    std::fs::create_dir_all(&mnt).unwrap();
    let mut previous = Vec::new();
    for i in 0..50u32 {
        // The previous daemon may still be closing the image: the new one
        // must mount all the same.
        let child = start(&img, &mnt);
        let data = format!("round {i}\n").repeat(100 + i as usize * 37);
        std::fs::write(mnt.join(format!("f{i}")), &data).unwrap();
        umount(&mnt, false);
        previous.push(child);
    }
    for (i, child) in previous.into_iter().enumerate() {
        wait_clean_exit(child, &format!("round {i}"));
    }
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    for i in 0..50u32 {
        let ino = fs.resolve_path(format!("/f{i}").as_bytes(), false).unwrap();
        let inode = fs.read_inode(ino).unwrap();
        let mut buf = vec![0u8; inode.size() as usize];
        fs.read(&inode, 0, &mut buf).unwrap();
        assert!(buf == format!("round {i}\n").repeat(100 + i as usize * 37).into_bytes(), "f{i} lost its data");
    }
}

/// The fusectl directory of the FUSE connection mounted at `mnt`.
fn connection_dir(mnt: &Path) -> std::path::PathBuf {
    let ctl = Path::new("/sys/fs/fuse/connections");
    if std::fs::read_dir(ctl).map(|mut d| d.next().is_none()).unwrap_or(true) {
        // Not mounted yet on this machine.
        let _ = Command::new("mount").args(["-t", "fusectl", "none"]).arg(ctl).status();
    }
    let dev = std::fs::metadata(mnt).unwrap().dev();
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff_ff00);
    ctl.join(minor.to_string())
}

#[test]
fn aborted_connection_ends_the_daemon_with_the_image_clean() {
    if !HostMount::usable_or_skip("host mount aborted connection") {
        return;
    }
    let s = Scratch::new("mount-abort");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "128M", &["-t", "ext4"]);
    std::fs::create_dir_all(&mnt).unwrap();
    let child = start(&img, &mnt);
    let conn = connection_dir(&mnt);
    if !conn.join("abort").exists() {
        common::skip("host mount aborted connection", &format!("no fusectl abort file at {}", conn.display()));
        umount(&mnt, false);
        wait_clean_exit(child, "unmount after the skip");
        return;
    }
    // Work in flight when the kernel ends the session: a writer that is
    // still writing when the abort comes (its write then fails: ENOTCONN).
    let writer = {
        let path = mnt.join("big");
        std::thread::spawn(move || {
            let Ok(mut f) = std::fs::File::create(&path) else { return };
            let chunk = vec![0x5au8; 1 << 20];
            for _ in 0..400 {
                if std::io::Write::write_all(&mut f, &chunk).is_err() {
                    return;
                }
            }
        })
    };
    std::fs::write(mnt.join("small"), b"before the abort").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(conn.join("abort"), b"1").unwrap();
    wait_clean_exit(child, "after the abort");
    let _ = writer.join();
    // The aborted mount stays until someone unmounts it.
    umount(&mnt, true);
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    assert!(fs.recovery_report().is_none(), "the image needed a journal replay after the abort");
    let ino = fs.resolve_path(b"/small", false).unwrap();
    let inode = fs.read_inode(ino).unwrap();
    let mut buf = vec![0u8; inode.size() as usize];
    fs.read(&inode, 0, &mut buf).unwrap();
    assert_eq!(buf, b"before the abort");
}
