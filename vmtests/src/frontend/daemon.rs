//! A vhost-user daemon started for a frontend test: started, waited for
//! (its socket), stopped; its log kept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A started daemon; killed on drop if still running.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its standard output and error.
    pub log: PathBuf,
    /// The socket it listens on.
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts `cmd` (stdout and stderr into `log`) and waits up to 20 s for
    /// the socket `socket` to appear. `Err` with the log when it exits first
    /// or never creates it.
    pub fn start(mut cmd: Command, socket: &Path, log: &Path) -> Result<Daemon, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(socket);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let mut d = Daemon { child, log: log.to_path_buf(), socket: socket.to_path_buf() };
        let start = Instant::now();
        loop {
            use std::os::unix::fs::FileTypeExt;
            if std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
                return Ok(d);
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(format!("{cmd:?} exited ({status}) before creating its socket:\n{}", d.log_text()));
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!("{cmd:?} did not create {} within 20 s:\n{}", socket.display(), d.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        crate::rig::read_lossy(&self.log)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for it to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for it to exit, then SIGTERM (5 s), then
    /// SIGKILL. Returns its status and whether it had to be signalled.
    pub fn stop(&mut self, limit: Duration) -> (Option<ExitStatus>, bool) {
        if let Some(s) = self.wait_exit(limit) {
            return (Some(s), false);
        }
        self.terminate()
    }

    /// SIGTERM now, SIGKILL after 5 s.
    pub fn terminate(&mut self) -> (Option<ExitStatus>, bool) {
        if let Ok(Some(s)) = self.child.try_wait() {
            return (Some(s), false);
        }
        // SAFETY: kill(2) on our own unreaped child (try_wait said running).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if let Some(s) = self.wait_exit(Duration::from_secs(5)) {
            return (Some(s), true);
        }
        let _ = self.child.kill();
        (self.child.wait().ok(), true)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Builds `ext4-virtiofsd` (dev profile, `cargo build -q -p ext4-virtiofsd`)
/// and returns the path of the binary.
pub fn ext4_virtiofsd_binary() -> PathBuf {
    build_ext4_virtiofsd(false)
}

/// The daemon for benchmarks: `$BENCH_OURS_BIN` when set, else a release
/// build of the workspace's.
pub fn ext4_virtiofsd_release_binary() -> PathBuf {
    match std::env::var_os("BENCH_OURS_BIN") {
        Some(p) => PathBuf::from(p),
        None => build_ext4_virtiofsd(true),
    }
}

/// Builds the workspace's daemon (debug or release) and returns its path.
fn build_ext4_virtiofsd(release: bool) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args(["build", "-q", "-p", "ext4-virtiofsd", "--bin", "ext4-virtiofsd"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.env("CARGO_TARGET_DIR", &target).status().expect("run cargo build");
    assert!(status.success(), "building ext4-virtiofsd failed");
    target.join(if release { "release" } else { "debug" }).join("ext4-virtiofsd")
}

/// `ext4-virtiofsd serve` on `image` at `socket` with tag `tag`, `queues`
/// request queues, and `--keep-running` when asked; log level info.
pub fn ext4_serve(bin: &Path, image: &Path, socket: &Path, tag: &str, queues: usize, keep_running: bool) -> Command {
    let mut c = Command::new(bin);
    c.arg("serve").arg("--image").arg(image).arg("--socket-path").arg(socket).args(["--tag", tag]);
    c.args(["--num-request-queues", &queues.to_string(), "--log-level", "info"]);
    if keep_running {
        c.arg("--keep-running");
    }
    c
}
