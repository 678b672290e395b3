//! The life of `ext4-virtiofsd serve` without a frontend: the socket is
//! created 0600 (0660 with --socket-group), a second daemon on the same
//! image is refused with a message naming the lock, SIGTERM ends the
//! daemon with exit 0 and the image clean, and a read-only daemon never
//! writes a byte. (Serving a real guest: vmtests/tests/ext4_guest.rs.)

mod common;

use common::{Scratch, assert_fsck_clean, mkfs};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ext4-virtiofsd");

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start(image: &Path, socket: &Path, extra: &[&str]) -> Daemon {
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--image")
        .arg(image)
        .arg("--socket-path")
        .arg(socket)
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut d = Daemon(child);
    let t = Instant::now();
    while !std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
        if let Ok(Some(s)) = d.0.try_wait() {
            panic!("daemon exited early: {s}");
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

fn sigterm_and_wait(d: &mut Daemon) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(d.0.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the daemon ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn image(s: &Scratch) -> PathBuf {
    let img = s.join("fs.img");
    mkfs(&img, "32M", &["-t", "ext4", "-b", "4096", "-O", "inline_data"]);
    img
}

fn needs_recovery(img: &Path) -> bool {
    let out = Command::new("dumpe2fs").arg("-h").arg(img).stderr(Stdio::null()).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("Filesystem features:") && l.contains("needs_recovery"))
}

#[test]
fn socket_mode_image_lock_and_sigterm() {
    let s = Scratch::new("serve-life");
    let img = image(&s);
    let sock = s.join("a.sock");
    let mut d = start(&img, &sock, &[]);
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    // A second daemon on the same image is refused, naming the conflict.
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--image")
        .arg(&img)
        .arg("--socket-path")
        .arg(s.join("b.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use") && err.contains("fs.img"), "{err}");
    assert!(!s.join("b.sock").exists());
    // SIGTERM while waiting for a frontend: exit 0, socket gone, image clean.
    let st = sigterm_and_wait(&mut d);
    assert!(st.success(), "{st}");
    assert!(!sock.exists(), "the socket was left behind");
    assert!(!needs_recovery(&img));
    assert_fsck_clean(&img);
}

#[test]
fn socket_group_and_read_only() {
    let s = Scratch::new("serve-ro");
    let img = image(&s);
    let before = std::fs::read(&img).unwrap();
    let sock = s.join("g.sock");
    // SAFETY: getgid has no preconditions.
    let gid = unsafe { libc::getgid() };
    let mut d = start(&img, &sock, &["--read-only", "--socket-group", &gid.to_string()]);
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o660);
    // Read-only daemons share the image.
    let mut d2 = start(&img, &s.join("g2.sock"), &["--read-only"]);
    assert!(sigterm_and_wait(&mut d2).success());
    assert!(sigterm_and_wait(&mut d).success());
    assert!(std::fs::read(&img).unwrap() == before, "a read-only daemon changed the image");
}
