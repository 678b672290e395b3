//! A whole guest run: start a vhost-user-fs daemon, wait for its socket,
//! boot the prepared guest against it (QEMU 7.2, or QEMU 11 in its sid
//! chroot), collect the `VMTEST` lines, stop the daemon.
//!
//! ```no_run
//! # use vmtests::rig::*;
//! let Some(prep) = prepared_or_skip("my test") else { return };
//! let logs = testkit::Scratch::new("vm");
//! let socket = logs.join("vhost.sock");
//! let mut daemon = std::process::Command::new("/usr/lib/qemu/virtiofsd");
//! daemon.arg(format!("--socket-path={}", socket.display())).args(["-o", "source=/srv/share"]);
//! let result = run_guest(&prep, daemon, &socket, &GuestRun::new(&logs.path));
//! result.assert_all_passed();
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::prep::Prepared;
use crate::qemu::{Boot, BootOutcome, KillSwitch, Vmm};
use crate::sid::Qemu11;

/// Options of one guest run.
#[derive(Debug, Clone)]
pub struct GuestRun {
    /// The virtio-fs tag (default `myfs`).
    pub tag: String,
    /// Guest mount options (e.g. `dax=always`); none by default.
    pub mount_opts: Option<String>,
    /// The cases to run; all by default.
    pub cases: Option<Vec<String>>,
    /// The hang guard for the whole boot (default 600 s; a normal run
    /// takes seconds). Not a timing assertion.
    pub timeout: Duration,
    /// Guest RAM in MiB (default 512).
    pub memory_mib: u32,
    /// Folder for `console.log`, `console.qemu-stderr` and `daemon.log`.
    pub logs: PathBuf,
    /// Boot QEMU 11 in its sid chroot (DAX window possible) instead of
    /// bookworm's QEMU 7.2 (the default).
    pub qemu11: Option<Qemu11>,
    /// Extra arguments for `ext4-virtiofsd serve` in [`run_ext4_image`]
    /// (e.g. `--cache-size 32M`).
    pub serve_args: Vec<String>,
    /// Crash test: when the console has shown this marker this many times,
    /// the daemon and then QEMU get SIGKILL.
    pub kill_at: Option<(String, usize)>,
}

impl GuestRun {
    /// The defaults, with logs written into `logs`.
    pub fn new(logs: &Path) -> GuestRun {
        GuestRun {
            tag: "myfs".into(),
            mount_opts: None,
            cases: None,
            timeout: Duration::from_secs(600),
            memory_mib: 512,
            logs: logs.to_path_buf(),
            qemu11: None,
            serve_args: Vec::new(),
            kill_at: None,
        }
    }
}

/// One case's outcome as the guest printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    /// `VMTEST <case> PASS`.
    Pass,
    /// `VMTEST <case> FAIL <reason>`.
    Fail(String),
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunResult {
    /// The cases the guest announced (`VMTEST PLAN ...`).
    pub plan: Vec<String>,
    /// The outcomes, in the order printed.
    pub cases: Vec<(String, CaseOutcome)>,
    /// `VMTEST DONE <passed> <failed>`, if the guest got that far.
    pub done: Option<(u32, u32)>,
    /// The boot (console text, QEMU status, hang guard, wall time).
    pub boot: BootOutcome,
    /// How the daemon ended; `stopped_by_rig` tells whether it had to be
    /// signalled after QEMU exited.
    pub daemon_status: Option<ExitStatus>,
    /// Whether the rig had to signal the daemon to stop it.
    pub stopped_by_rig: bool,
    /// The daemon's standard output and error.
    pub daemon_log: String,
    /// Where the console log is kept (inside [`GuestRun::logs`]).
    pub console_log: PathBuf,
}

impl RunResult {
    /// The lines `/init` printed with prefix `VMRIG <what> ` (e.g.
    /// `mounts`: the guest's virtiofs line of /proc/mounts; `dmesg`: its
    /// virtio-fs and DAX kernel messages), without the prefix.
    pub fn rig_lines(&self, what: &str) -> Vec<String> {
        let key = format!("VMRIG {what} ");
        self.boot
            .console
            .lines()
            .filter_map(|l| l.find(&key).map(|at| l[at + key.len()..].trim_end_matches('\r').to_string()))
            .collect()
    }

    /// The guest's `VMINFO <case> <text>` lines (facts a case reports for
    /// the host to judge), without the prefix.
    pub fn info_lines(&self) -> Vec<String> {
        self.boot
            .console
            .lines()
            .filter_map(|l| l.find("VMINFO ").map(|at| l[at + "VMINFO ".len()..].trim_end_matches('\r').to_string()))
            .collect()
    }
}

/// What the guest program reported on the console.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `VMTEST PLAN ...`: the cases it set out to run.
    pub plan: Vec<String>,
    /// The outcomes, in the order printed.
    pub cases: Vec<(String, CaseOutcome)>,
    /// `VMTEST DONE <passed> <failed>`.
    pub done: Option<(u32, u32)>,
}

/// The `VMTEST` lines of a console: plan, case outcomes and the final
/// counts. Kernel messages around (not inside) the lines are ignored.
pub fn parse_console(console: &str) -> Parsed {
    let (mut plan, mut cases, mut done) = (Vec::new(), Vec::new(), None);
    for line in console.lines() {
        let Some(at) = line.find("VMTEST ") else { continue };
        let rest = line[at + "VMTEST ".len()..].trim_end_matches('\r');
        let mut words = rest.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("PLAN"), ..) => plan = rest["PLAN".len()..].split_whitespace().map(String::from).collect(),
            (Some("DONE"), Some(p), Some(f)) => done = p.parse().ok().zip(f.trim().parse().ok()),
            (Some(case), Some("PASS"), None) => cases.push((case.to_string(), CaseOutcome::Pass)),
            (Some(case), Some("FAIL"), reason) => {
                cases.push((case.to_string(), CaseOutcome::Fail(reason.unwrap_or("").to_string())))
            }
            _ => {}
        }
    }
    Parsed { plan, cases, done }
}

impl RunResult {
    /// Every problem of the run: hang guard, a QEMU failure, missing
    /// `PLAN`/`DONE`, planned cases without an outcome, failed cases.
    /// Empty when every planned case passed.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.boot.timed_out {
            p.push(format!("QEMU killed by the hang guard after {:.0} s", self.boot.elapsed.as_secs_f64()));
        } else if !self.boot.status.is_some_and(|s| s.success()) {
            p.push(format!("QEMU exited with {:?}", self.boot.status));
        }
        if self.plan.is_empty() {
            p.push("the guest printed no VMTEST PLAN".into());
        }
        for case in &self.plan {
            if !self.cases.iter().any(|(c, _)| c == case) {
                p.push(format!("case {case}: no outcome"));
            }
        }
        for (case, outcome) in &self.cases {
            if let CaseOutcome::Fail(why) = outcome {
                p.push(format!("case {case} FAILED: {why}"));
            }
        }
        match self.done {
            None => p.push("the guest printed no VMTEST DONE".into()),
            Some((_, f)) if f > 0 && !self.cases.iter().any(|(_, o)| *o != CaseOutcome::Pass) => {
                p.push(format!("VMTEST DONE counts {f} failures"))
            }
            _ => {}
        }
        p
    }

    /// Panics unless the daemon ended by itself with status 0 when QEMU
    /// left (the rig did not have to stop it).
    pub fn assert_daemon_exited_by_itself(&self) {
        assert!(
            !self.stopped_by_rig && self.daemon_status.is_some_and(|s| s.success()),
            "the daemon did not exit 0 by itself when QEMU left: {:?}\n{}",
            self.daemon_status,
            self.daemon_log
        );
    }

    /// Panics, with the problems, the console and the daemon's log, unless
    /// every planned case passed.
    pub fn assert_all_passed(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "guest run failed:\n  {}\n--- console ({}) ---\n{}\n--- QEMU stderr ---\n{}\n--- daemon ---\n{}",
            problems.join("\n  "),
            self.console_log.display(),
            self.boot.console,
            self.boot.stderr,
            self.daemon_log
        );
    }
}

/// The prepared rig, or `None` after a loud skip naming `what` and the
/// missing prerequisite.
pub fn prepared_or_skip(what: &str) -> Option<Prepared> {
    match crate::prep::prepare() {
        Ok(p) => Some(p),
        Err(why) => {
            testkit::skip(what, &why);
            None
        }
    }
}

/// The prepared rig and, when `qemu11`, QEMU 11; `None` after a loud skip
/// naming `what` when either cannot be had.
pub fn guest_or_skip(what: &str, qemu11: bool) -> Option<(Prepared, Option<Qemu11>)> {
    let prep = prepared_or_skip(what)?;
    let q11 = if qemu11 { Some(qemu11_or_skip(what, &prep)?) } else { None };
    Some((prep, q11))
}

/// Makes a fresh, empty 256 MiB ext4 image at `path` for a guest to fill
/// (4 KiB blocks, inline_data, metadata_csum).
pub fn fresh_guest_image(path: &Path) {
    testkit::run(
        std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data,metadata_csum"])
            .arg(path)
            .arg("256M"),
    );
}

/// The `ext4-virtiofsd` binary the guest runs use: `$EXT4_VIRTIOFSD_BIN`
/// when set (a build kept aside, e.g. while the workspace is mid-edit),
/// else the workspace's, built first.
pub fn daemon_binary() -> PathBuf {
    match std::env::var_os("EXT4_VIRTIOFSD_BIN") {
        Some(p) => PathBuf::from(p),
        None => crate::frontend::daemon::ext4_virtiofsd_binary(),
    }
}

/// QEMU 11 in its sid chroot (built when missing), or `None` after a loud
/// skip naming `what` and the missing prerequisite.
pub fn qemu11_or_skip(what: &str, prep: &Prepared) -> Option<Qemu11> {
    match crate::sid::prepare_qemu11(prep) {
        Ok(q) => {
            eprintln!("vmrig: {} in {}", q.version, q.root.display());
            Some(q)
        }
        Err(why) => {
            testkit::skip(what, &why);
            None
        }
    }
}

/// `qemu-system-x86_64` on `PATH`, if any.
pub fn qemu_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("qemu-system-x86_64")).find(|p| p.exists())
}

/// A started daemon, killed on drop if still running.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `daemon` (stdout and stderr into `LOGS/daemon.log`) and waits up
/// to 20 s for it to create the socket at `socket`. Panics if it exits or
/// never creates the socket: a daemon that does not start is a failure.
fn start_daemon(mut daemon: Command, socket: &Path, logs: &Path) -> Daemon {
    let log = logs.join("daemon.log");
    let out = std::fs::File::create(&log).expect("create daemon.log");
    let err = out.try_clone().expect("dup daemon.log");
    let _ = std::fs::remove_file(socket);
    let child = daemon
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the daemon {daemon:?}: {e}"));
    let mut d = Daemon { child, log };
    let start = Instant::now();
    loop {
        use std::os::unix::fs::FileTypeExt;
        if std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
            return d;
        }
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!(
                "the daemon {daemon:?} exited ({status}) before creating {}:\n{}",
                socket.display(),
                read_lossy(&d.log)
            );
        }
        if start.elapsed() > Duration::from_secs(20) {
            panic!("the daemon {daemon:?} did not create {} within 20 s:\n{}", socket.display(), read_lossy(&d.log));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A log file's text for a report; a file that cannot be read says so
/// instead of looking empty.
pub fn read_lossy(p: &Path) -> String {
    match std::fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("(cannot read {}: {e})", p.display()),
    }
}

/// Waits up to `limit` for the daemon to exit by itself (a vhost-user
/// daemon ends when its frontend disconnects), then SIGTERM, then SIGKILL.
/// Returns its status and whether it had to be signalled.
fn stop_daemon(d: &mut Daemon, limit: Duration) -> (Option<ExitStatus>, bool) {
    let wait = |d: &mut Daemon, limit: Duration| {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = d.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    };
    if let Some(s) = wait(d, limit) {
        return (Some(s), false);
    }
    // SAFETY: kill(2) on the pid of a child this process started and has
    // not reaped (try_wait returned None), so the pid is still ours.
    unsafe { libc::kill(d.child.id() as libc::pid_t, libc::SIGTERM) };
    if let Some(s) = wait(d, Duration::from_secs(5)) {
        return (Some(s), true);
    }
    let _ = d.child.kill();
    (d.child.wait().ok(), true)
}

/// Starts the daemon (`daemon`, which must listen on `socket`), boots the
/// prepared guest against it, runs the guest program's cases and stops the
/// daemon. Panics when the daemon or QEMU cannot be started; everything
/// else (hangs, crashes, failed cases) is in the result.
pub fn run_guest(prep: &Prepared, daemon: Command, socket: &Path, run: &GuestRun) -> RunResult {
    std::fs::create_dir_all(&run.logs).expect("create the logs folder");
    let (vmm, kernel, initrd) = match &run.qemu11 {
        Some(q) => (Vmm::Qemu11(q.clone()), q.kernel.clone(), q.initrd.clone()),
        None => (
            Vmm::Qemu7(qemu_binary().expect("qemu-system-x86_64 is not on PATH (prepare installs it)")),
            prep.kernel.clone(),
            prep.initramfs.clone(),
        ),
    };
    let mut d = start_daemon(daemon, socket, &run.logs);
    let boot = Boot {
        vmm,
        kernel,
        initrd,
        socket: socket.to_path_buf(),
        tag: run.tag.clone(),
        mount_opts: run.mount_opts.clone(),
        cases: run.cases.clone(),
        memory_mib: run.memory_mib,
        timeout: run.timeout,
        console_log: run.logs.join("console.log"),
        kill: run.kill_at.as_ref().map(|(marker, count)| KillSwitch {
            marker: marker.clone(),
            count: *count,
            before: vec![d.child.id()],
        }),
    };
    let outcome = boot.run().unwrap_or_else(|e| panic!("cannot start QEMU {:?}: {e}", boot.command()));
    let (daemon_status, stopped_by_rig) = stop_daemon(&mut d, Duration::from_secs(10));
    let Parsed { plan, cases, done } = parse_console(&outcome.console);
    let times: Vec<String> = outcome
        .console
        .lines()
        .filter_map(|l| l.find("VMTIME ").map(|at| l[at + "VMTIME ".len()..].trim().replace(' ', "=") + "ms"))
        .collect();
    eprintln!(
        "vmrig: {} boot+run {:.1} s{}, {} of {} cases passed (case times {}), daemon {}, console {}",
        boot.vmm.name(),
        outcome.elapsed.as_secs_f64(),
        if outcome.killed { " (killed on its marker)" } else { "" },
        cases.iter().filter(|(_, o)| *o == CaseOutcome::Pass).count(),
        plan.len(),
        times.join(" "),
        match (daemon_status, stopped_by_rig) {
            (s, _) if outcome.killed => format!("killed by the kill switch ({s:?})"),
            (Some(s), false) => format!("exited by itself ({s})"),
            (s, _) => format!("stopped by the rig ({s:?})"),
        },
        boot.console_log.display()
    );
    RunResult {
        plan,
        cases,
        done,
        boot: outcome,
        daemon_status,
        stopped_by_rig,
        daemon_log: read_lossy(&d.log),
        console_log: boot.console_log,
    }
}

/// The C virtiofsd that bookworm's QEMU 7.2 ships (`qemu-system-common`),
/// or the Debian `virtiofsd` package's binary, whichever exists.
pub fn qemu_virtiofsd() -> Option<PathBuf> {
    ["/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// The command serving host directory `dir` with the C virtiofsd of QEMU
/// 7.2 (`bin`): page cache on (`cache=auto`, so shared writable mmap
/// works), xattrs on (off by default), chroot sandbox.
pub fn qemu_virtiofsd_command(bin: &Path, dir: &Path, socket: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg(format!("--socket-path={}", socket.display())).args(["-o", &format!("source={}", dir.display())]).args([
        "-o",
        "cache=auto",
        "-o",
        "xattr",
        "-o",
        "sandbox=chroot",
    ]);
    c
}

/// Our daemon's vhost-user mode serving `image`:
/// `ext4-virtiofsd serve --image IMG --socket-path SOCK --tag TAG
/// --log-level info` (info: the DAX counters line at the end of a
/// session; `tests/ext4_guest.rs` boots the guest against it).
pub fn ext4_serve_command(bin: &Path, image: &Path, socket: &Path, tag: &str) -> Command {
    let mut c = Command::new(bin);
    c.arg("serve").arg("--image").arg(image).arg("--socket-path").arg(socket).arg("--tag").arg(tag);
    c.args(["--log-level", "info"]);
    c
}

/// Runs the guest program against ext4 image `image` served by our daemon
/// `bin` (see [`ext4_serve_command`]), socket in `run.logs`. Afterwards check the image with
/// [`crate::leftovers::check`] on a [`crate::leftovers::ImageView`] and
/// `testkit::assert_fsck_clean`.
pub fn run_ext4_image(prep: &Prepared, bin: &Path, image: &Path, run: &GuestRun) -> RunResult {
    std::fs::create_dir_all(&run.logs).expect("create the logs folder");
    // QEMU 11 runs chrooted: its socket must be inside the chroot.
    let run_dir = run.qemu11.as_ref().map(Qemu11::run_dir);
    let socket = run_dir.as_ref().map_or_else(|| run.logs.join("vhost.sock"), |d| d.0.join("vhost.sock"));
    let mut daemon = ext4_serve_command(bin, image, &socket, &run.tag);
    daemon.args(&run.serve_args);
    run_guest(prep, daemon, &socket, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_parsing() {
        let console = "[    1.0] virtio-fs: tag <myfs>\r\nVMTEST PLAN a b c\r\nVMTEST a PASS\r\n[    2.0] random kernel line\nVMTEST b FAIL size 3, expected 4 | more\nVMTEST DONE 1 1\n";
        let Parsed { plan, cases, done } = parse_console(console);
        assert_eq!(plan, ["a", "b", "c"]);
        assert_eq!(
            cases,
            [("a".into(), CaseOutcome::Pass), ("b".into(), CaseOutcome::Fail("size 3, expected 4 | more".into()))]
        );
        assert_eq!(done, Some((1, 1)));
        let r = RunResult {
            plan,
            cases,
            done,
            boot: BootOutcome {
                status: None,
                timed_out: true,
                elapsed: Duration::from_secs(600),
                console: console.into(),
                stderr: String::new(),
                killed: false,
            },
            daemon_status: None,
            stopped_by_rig: true,
            daemon_log: String::new(),
            console_log: PathBuf::from("console.log"),
        };
        let p = r.problems().join("\n");
        for want in ["hang guard", "case c: no outcome", "case b FAILED: size 3"] {
            assert!(p.contains(want), "{want} not in {p}");
        }
    }
}
