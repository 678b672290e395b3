//! Shared support for the backend integration tests and benchmarks: scratch
//! directories, mke2fs and e2fsck, loud skips, and the three ways of mounting
//! an ext4 image: the kernel (loop mount), our daemon (`ext4-virtiofsd mount`)
//! and fuse2fs.
//!
//! Used from tests as `mod common;` and from `benches/host_mount.rs` as
//! `#[path = "../tests/common/mod.rs"] mod common;`.
#![allow(dead_code)]

pub mod client;
pub mod compare;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a FUSE daemon may take to make its mount appear.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a FUSE daemon may take to close its image and exit after the
/// mount point is unmounted.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

#[allow(unused_imports)]
pub use testkit::{Rng, Scratch, assert_fsck_clean, is_root, run, skip};

/// Whether FUSE mounts can be made here: root and a usable /dev/fuse.
pub fn fuse_usable() -> Result<(), String> {
    if !is_root() {
        return Err("not running as root, cannot mount FUSE file systems".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map(drop)
        .map_err(|e| format!("cannot open /dev/fuse: {e}"))
}

/// Whether `program` is found on `PATH` (or is a path that exists).
pub fn have_program(program: &str) -> bool {
    find_program(program).is_some()
}

/// The full path of `program` on `PATH`, falling back to `$CARGO_HOME/bin`
/// and `~/.cargo/bin` (where `cargo install` puts tools such as pjdfstest).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(h).join("bin"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(program)).find(|p| p.is_file())
}

/// Creates the image file `img` of `size` (e.g. "256M") with mke2fs and extra
/// arguments such as `["-t", "ext4"]`.
pub fn mkfs(img: &Path, size: &str, args: &[&str]) {
    let _ = std::fs::remove_file(img);
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"]).args(args).arg(img).arg(size);
    run(&mut cmd);
}

/// The file system type mounted exactly at `dir` (the last mount there), from
/// /proc/self/mountinfo, e.g. "ext4" or "fuse.ext4-virtiofsd".
pub fn mounted_fstype(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        if fields.len() > 4 && sep + 1 < fields.len() && Path::new(&unescape_mountinfo(fields[4])) == dir {
            found = Some(fields[sep + 1].to_string());
        }
    }
    found
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo paths.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `umount [extra] dir`, retrying briefly while the mount is busy (a
/// process that just exited may still hold it).
fn umount(dir: &Path, extra: &[&str]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let out =
            Command::new("umount").args(extra).arg(dir).output().map_err(|e| format!("cannot run umount: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !err.contains("busy") || Instant::now() > deadline {
            return Err(format!("umount {} failed: {err}", dir.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A kernel loop mount of an image, unmounted on drop.
pub struct KernelMount {
    dir: PathBuf,
    mounted: bool,
}

impl KernelMount {
    /// Mounts `img` on `dir` (created if missing) with `mount -o loop[,opts]`,
    /// or returns mount's complaint.
    pub fn new(img: &Path, dir: &Path, opts: &str) -> Result<KernelMount, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let opts = if opts.is_empty() { "loop".to_string() } else { format!("loop,{opts}") };
        let out = Command::new("mount").arg("-o").arg(&opts).arg(img).arg(dir).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("mount -o {opts} {}: {}", img.display(), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(KernelMount { dir: dir.to_path_buf(), mounted: true })
    }

    /// Like [`KernelMount::new`], but without root or when loop mounts fail
    /// it reports a loud skip for `what` and returns `None`.
    pub fn or_skip(img: &Path, dir: &Path, opts: &str, what: &str) -> Option<KernelMount> {
        if !is_root() {
            skip(what, "not running as root, cannot loop-mount images");
            return None;
        }
        match Self::new(img, dir, opts) {
            Ok(m) => Some(m),
            Err(e) => {
                skip(what, &e);
                None
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Unmounts, reporting failure.
    pub fn unmount(mut self) -> Result<(), String> {
        self.mounted = false;
        umount(&self.dir, &[])
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        if self.mounted && umount(&self.dir, &[]).is_err() {
            let _ = umount(&self.dir, &["-l"]);
        }
    }
}

/// A FUSE daemon running in the foreground with its mount: the common part
/// of [`HostMount`] and [`Fuse2fsMount`]. The daemon's stdout and stderr are
/// collected for error messages.
pub struct FuseMount {
    dir: PathBuf,
    name: String,
    child: Option<Child>,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl FuseMount {
    /// Spawns `cmd` (a daemon that mounts on `dir` and stays in the
    /// foreground) and waits up to 20 s for a mount of type `fstype` to appear
    /// at `dir`. Fails with the daemon's output if it exits first or times out.
    pub fn spawn(mut cmd: Command, dir: &Path, fstype: &str) -> Result<FuseMount, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let name = format!("{:?}", cmd.get_program());
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot spawn {cmd:?}: {e}"))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let streams: [Box<dyn Read + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for mut stream in streams {
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }));
        }
        let mut m = FuseMount { dir: dir.to_path_buf(), name, child: Some(child), output, readers };
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if mounted_fstype(dir).as_deref() == Some(fstype) {
                return Ok(m);
            }
            if let Some(status) = m.child.as_mut().unwrap().try_wait().map_err(|e| e.to_string())? {
                m.child = None;
                return Err(format!("{} exited ({status}) before mounting {}:\n{}", m.name, dir.display(), m.output()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not mount {} within {MOUNT_TIMEOUT:?}:\n{}",
                    m.name,
                    dir.display(),
                    m.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The daemon's output (stdout and stderr interleaved) so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Runs `umount` on the mount point and waits (up to 60 s) for the daemon
    /// to exit; Ok only if both succeed and the daemon's status is 0, which
    /// for our daemon means the image was closed cleanly.
    pub fn unmount(mut self) -> Result<(), String> {
        umount(&self.dir, &[]).map_err(|e| format!("{e}\n{} output:\n{}", self.name, self.output()))?;
        let status = self.wait_exit(EXIT_TIMEOUT);
        let status = status.map_err(|e| format!("{e}\n{} output:\n{}", self.name, self.output()))?;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if !status.success() {
            return Err(format!("{} exited with {status} after unmount:\n{}", self.name, self.output()));
        }
        Ok(())
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let child = self.child.as_mut().expect("daemon already reaped");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return Err(format!("{} did not exit within {timeout:?} after unmount; killed", self.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FuseMount {
    /// Best effort after a failure: lazy unmount, a short wait, then kill.
    fn drop(&mut self) {
        if self.child.is_some() {
            if mounted_fstype(&self.dir).is_some_and(|t| t.starts_with("fuse")) {
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
            // On timeout wait_exit kills it.
            let _ = self.wait_exit(Duration::from_secs(2));
        }
    }
}

/// True when `ready` is Ok; otherwise reports a loud skip for `what`.
fn usable_or_skip(ready: Result<(), String>, what: &str) -> bool {
    match ready {
        Ok(()) => true,
        Err(why) => {
            skip(what, &why);
            false
        }
    }
}

impl std::ops::Deref for HostMount {
    type Target = FuseMount;
    fn deref(&self) -> &FuseMount {
        &self.0
    }
}

impl std::ops::Deref for Fuse2fsMount {
    type Target = FuseMount;
    fn deref(&self) -> &FuseMount {
        &self.0
    }
}

/// Our daemon serving an image on a host mount point:
/// `ext4-virtiofsd mount IMG DIR [args]` (fstype `fuse.ext4-virtiofsd`).
pub struct HostMount(FuseMount);

impl HostMount {
    /// The fstype our daemon's mounts show in /proc/self/mountinfo.
    pub const FSTYPE: &'static str = "fuse.ext4-virtiofsd";

    /// Starts the daemon on `img` at `dir` (created if missing) with extra
    /// arguments such as `["--cache", "never"]` or `["--read-only"]`, and
    /// waits for the mount. `RUST_LOG` passes through to the daemon.
    pub fn new(img: &Path, dir: &Path, args: &[&str]) -> Result<HostMount, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ext4-virtiofsd"));
        cmd.arg("mount").arg(img).arg(dir).args(args);
        FuseMount::spawn(cmd, dir, Self::FSTYPE).map(HostMount)
    }

    /// Whether host mounts can be made here; otherwise reports a loud skip
    /// for `what` and returns false.
    pub fn usable_or_skip(what: &str) -> bool {
        usable_or_skip(fuse_usable(), what)
    }

    /// Unmounts and waits for the daemon to exit with status 0 (a clean close
    /// of the image); otherwise an error with the daemon's output.
    pub fn unmount(self) -> Result<(), String> {
        self.0.unmount()
    }
}

/// fuse2fs (e2fsprogs' FUSE driver) serving an image, as a point of
/// comparison: `fuse2fs -f IMG DIR -o allow_other[,opts]` in the foreground,
/// so that [`Fuse2fsMount::unmount`] can wait for it to finish writing.
/// As root with `allow_other`, every user can use the mount and fuse2fs
/// checks permissions itself (like our daemon); root can write everywhere.
pub struct Fuse2fsMount(FuseMount);

impl Fuse2fsMount {
    /// Starts fuse2fs on `img` at `dir` with `-o allow_other` plus `opts`
    /// (comma-separated, may be empty), and waits for the mount.
    pub fn new(img: &Path, dir: &Path, opts: &str) -> Result<Fuse2fsMount, String> {
        let mut o = String::from("allow_other");
        if !opts.is_empty() {
            o.push(',');
            o.push_str(opts);
        }
        let mut cmd = Command::new("fuse2fs");
        cmd.arg("-f").arg(img).arg(dir).arg("-o").arg(o);
        FuseMount::spawn(cmd, dir, "fuse.ext4").map(Fuse2fsMount)
    }

    /// Whether fuse2fs mounts can be made here (root, /dev/fuse, fuse2fs
    /// installed); otherwise reports a loud skip for `what` and returns false.
    pub fn usable_or_skip(what: &str) -> bool {
        let r = fuse_usable().and_then(|()| {
            if have_program("fuse2fs") { Ok(()) } else { Err("fuse2fs is not installed (scripts/setup.sh)".into()) }
        });
        usable_or_skip(r, what)
    }

    /// Unmounts and waits for fuse2fs to exit with status 0.
    pub fn unmount(self) -> Result<(), String> {
        self.0.unmount()
    }
}
