//! Record locks and flock() end as on a kernel file system, through the
//! host mount, compared with a kernel loop mount of the same image in the
//! same test: open file description locks with the last close of their
//! description (also one shared with a child after fork), POSIX locks at
//! any close by their process (not by a child's close of a shared
//! descriptor), flock() with the last close of its description. Each
//! scenario runs in a helper process (this test binary run again) that must
//! finish within a generous limit: a blocked F_OFD_SETLKW that never wakes
//! is a hang, reported as such. Afterwards no request of the mount waits.

mod common;

use common::{HostMount, KernelMount, Scratch, assert_fsck_clean, mkfs};
use std::ffi::CString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one scenario may take before it counts as a hang.
const HANG_GUARD: Duration = Duration::from_secs(20);

const SCENARIOS: [&str; 6] = ["ofd_close", "ofd_fork", "posix_any_close", "posix_fork", "flock", "flock_posix_apart"];

fn errno_name(r: i32) -> String {
    if r == 0 {
        return "ok".into();
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => "EAGAIN".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(e) => format!("errno {e}"),
        None => "error".into(),
    }
}

fn open(path: &Path) -> i32 {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
    assert!(fd >= 0, "open {}: {}", path.display(), std::io::Error::last_os_error());
    fd
}

/// fcntl lock command `cmd` of type `typ` over the whole file.
fn lock(fd: i32, cmd: i32, typ: i32) -> String {
    // SAFETY: flock is plain data; all zeros is valid (l_pid 0 as OFD locks need).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fd is open, fl a valid flock.
    errno_name(unsafe { libc::fcntl(fd, cmd, &mut fl) })
}

fn flock(fd: i32, op: i32) -> String {
    // SAFETY: plain syscall on an open descriptor.
    errno_name(unsafe { libc::flock(fd, op) })
}

fn close(fd: i32) {
    // SAFETY: closes a descriptor this process opened.
    unsafe { libc::close(fd) };
}

/// Forks a child that closes `fd` (its copy of the shared description) and
/// exits; waits for it.
fn child_closes(fd: i32) {
    // SAFETY: the child only calls async-signal-safe close and _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            libc::close(fd);
            libc::_exit(0);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

/// One scenario on `file`; the results of its steps, space-separated.
fn scenario(name: &str, file: &Path) -> String {
    use libc::{F_OFD_SETLK, F_OFD_SETLKW, F_SETLK, F_WRLCK, LOCK_EX, LOCK_NB};
    let mut r = Vec::new();
    match name {
        // An OFD lock ends with the last close of its description.
        "ofd_close" => {
            let (a, b) = (open(file), open(file));
            r.push(lock(a, F_OFD_SETLK, F_WRLCK));
            r.push(lock(b, F_OFD_SETLK, F_WRLCK));
            close(a);
            r.push(lock(b, F_OFD_SETLKW, F_WRLCK));
            close(b);
        }
        // A child's close of the shared description does not end it.
        "ofd_fork" => {
            let a = open(file);
            r.push(lock(a, F_OFD_SETLK, F_WRLCK));
            child_closes(a);
            let b = open(file);
            r.push(lock(b, F_OFD_SETLK, F_WRLCK));
            close(a);
            r.push(lock(b, F_OFD_SETLKW, F_WRLCK));
            close(b);
        }
        // A POSIX lock ends when its process closes any descriptor of the file.
        "posix_any_close" => {
            let (a, other) = (open(file), open(file));
            r.push(lock(a, F_SETLK, F_WRLCK));
            let b = open(file);
            r.push(lock(b, F_OFD_SETLK, F_WRLCK));
            close(other);
            r.push(lock(b, F_OFD_SETLKW, F_WRLCK));
            close(b);
            close(a);
        }
        // A child's close of an inherited descriptor leaves the parent's lock.
        "posix_fork" => {
            let a = open(file);
            r.push(lock(a, F_SETLK, F_WRLCK));
            child_closes(a);
            let b = open(file);
            r.push(lock(b, F_OFD_SETLK, F_WRLCK));
            close(a);
            r.push(lock(b, F_OFD_SETLKW, F_WRLCK));
            close(b);
        }
        // flock() ends with the last close of its description, not a child's.
        "flock" => {
            let (a, b) = (open(file), open(file));
            r.push(flock(a, LOCK_EX));
            r.push(flock(b, LOCK_EX | LOCK_NB));
            child_closes(a);
            r.push(flock(b, LOCK_EX | LOCK_NB));
            close(a);
            r.push(flock(b, LOCK_EX));
            close(b);
        }
        // flock() and record locks do not conflict.
        "flock_posix_apart" => {
            let (a, b) = (open(file), open(file));
            r.push(flock(a, LOCK_EX));
            r.push(lock(b, F_OFD_SETLK, F_WRLCK));
            close(a);
            close(b);
        }
        other => panic!("unknown scenario {other}"),
    }
    r.join(" ")
}

/// The helper side: runs the scenario named in the environment and prints
/// its result. A no-op in an ordinary test run.
#[test]
fn lock_scenario_helper() {
    let (Ok(name), Ok(file)) = (std::env::var("LOCK_SCENARIO"), std::env::var("LOCK_SCENARIO_FILE")) else {
        return;
    };
    println!("RESULT {}", scenario(&name, Path::new(&file)));
}

/// Runs scenario `name` on a new file in `dir` in a helper process; its
/// result, or "HANG" when it does not finish within [`HANG_GUARD`].
fn run_scenario(dir: &Path, name: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, b"0123456789").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_scenario_helper", "--nocapture", "--test-threads=1"])
        .env("LOCK_SCENARIO", name)
        .env("LOCK_SCENARIO_FILE", &file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return "HANG".into();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().find_map(|l| l.split_once("RESULT ").map(|(_, r)| r)) {
        Some(r) => r.trim().to_string(),
        None => format!("helper failed ({}): {text} {}", out.status, String::from_utf8_lossy(&out.stderr)),
    }
}

/// Requests of the FUSE connection behind `mnt` still waiting for an
/// answer, from the fusectl file system (mounted if it is not).
fn waiting_requests(mnt: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let conns = Path::new("/sys/fs/fuse/connections");
    if std::fs::read_dir(conns).ok()?.next().is_none() {
        let _ = Command::new("mount").args(["-t", "fusectl", "none"]).arg(conns).status();
    }
    let dev = std::fs::metadata(mnt).ok()?.dev();
    let minor = libc::minor(dev);
    std::fs::read_to_string(conns.join(minor.to_string()).join("waiting")).ok()?.trim().parse().ok()
}

#[test]
fn locks_end_at_close_as_on_the_kernel() {
    if !HostMount::usable_or_skip("lock release at close") {
        return;
    }
    let s = Scratch::new("locks-close");
    let (img, kimg, mnt, kmnt) = (s.join("fs.img"), s.join("k.img"), s.join("mnt"), s.join("kmnt"));
    mkfs(&img, "32M", &["-t", "ext4"]);
    std::fs::copy(&img, &kimg).unwrap();
    let Some(k) = KernelMount::or_skip(&kimg, &kmnt, "", "lock release at close") else { return };
    let expected: Vec<String> = SCENARIOS.iter().map(|n| run_scenario(k.path(), n)).collect();
    k.unmount().unwrap();
    assert!(expected.iter().all(|r| !r.contains("HANG") && !r.contains("helper")), "kernel: {expected:?}");

    let m = HostMount::new(&img, &mnt, &[]).unwrap();
    let got: Vec<String> = SCENARIOS.iter().map(|n| run_scenario(m.path(), n)).collect();
    let waiting = waiting_requests(m.path());
    let out = m.output();
    m.unmount().unwrap();
    for ((name, want), got) in SCENARIOS.iter().zip(&expected).zip(&got) {
        assert_eq!(got, want, "{name}: host mount vs kernel\ndaemon output:\n{out}");
    }
    if let Some(w) = waiting {
        assert_eq!(w, 0, "requests left waiting on the host mount");
    }
    assert_fsck_clean(&img);
}
