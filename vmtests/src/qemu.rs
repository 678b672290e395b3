//! One QEMU boot under TCG against a vhost-user-fs socket, with the serial
//! console captured to a file and a hang guard.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A guest boot: kernel, initramfs, the vhost-user socket and what the
/// guest's `/init` reads from the kernel command line.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The QEMU binary (`qemu-system-x86_64` on `PATH` by default).
    pub qemu: PathBuf,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The daemon's vhost-user socket.
    pub socket: PathBuf,
    /// The virtio-fs tag (QEMU device property and `vmtest.tag=`).
    pub tag: String,
    /// Mount options for the guest (`vmtest.opts=`, comma-separated).
    pub mount_opts: Option<String>,
    /// Cases to run (`vmtest.cases=`); all when `None`.
    pub cases: Option<Vec<String>>,
    /// Guest RAM in MiB (also the size of the shared memfd backend).
    pub memory_mib: u32,
    /// The hang guard: QEMU is killed after this long.
    pub timeout: Duration,
    /// Where the serial console (QEMU's stdout) goes.
    pub console_log: PathBuf,
}

/// How a boot ended.
#[derive(Debug)]
pub struct BootOutcome {
    /// QEMU's exit status; `None` when the hang guard killed it.
    pub status: Option<ExitStatus>,
    /// Whether the hang guard killed QEMU.
    pub timed_out: bool,
    /// Wall time from starting QEMU to its exit.
    pub elapsed: Duration,
    /// The serial console (guest kernel and `/init` output).
    pub console: String,
    /// QEMU's own standard error.
    pub stderr: String,
}

impl Boot {
    /// The kernel command line.
    pub fn append(&self) -> String {
        for (what, v) in [("tag", Some(&self.tag)), ("mount options", self.mount_opts.as_ref())] {
            assert!(
                v.is_none_or(|v| !v.is_empty() && !v.contains(char::is_whitespace)),
                "{what} {v:?} cannot go on the kernel command line"
            );
        }
        let mut s = format!("console=ttyS0 panic=-1 loglevel=4 vmtest.tag={}", self.tag);
        if let Some(o) = &self.mount_opts {
            s += &format!(" vmtest.opts={o}");
        }
        if let Some(c) = &self.cases {
            assert!(c.iter().all(|c| !c.is_empty() && !c.contains([',', ' '])), "bad case names {c:?}");
            s += &format!(" vmtest.cases={}", c.join(","));
        }
        s
    }

    /// The QEMU command: TCG, a shared memfd for guest RAM (the daemon maps
    /// it), vhost-user-fs-pci on the socket, no network, serial console on
    /// stdout.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.qemu);
        let mem = format!("{}M", self.memory_mib);
        c.args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", &mem])
            .args(["-object", &format!("memory-backend-memfd,id=mem,size={mem},share=on")])
            .args(["-numa", "node,memdev=mem"])
            .arg("-chardev")
            .arg(format!("socket,id=char0,path={}", self.socket.display()))
            .args(["-device", &format!("vhost-user-fs-pci,chardev=char0,tag={},queue-size=1024", self.tag)])
            .args(["-nic", "none", "-nographic", "-no-reboot", "-kernel"])
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &self.append()]);
        c
    }

    /// Boots and waits for QEMU to exit (the guest powers off, or panics
    /// and `-no-reboot` ends QEMU), killing it after [`Boot::timeout`].
    /// `Err` when QEMU cannot be started.
    pub fn run(&self) -> std::io::Result<BootOutcome> {
        let console = std::fs::File::create(&self.console_log)?;
        let stderr_path = self.console_log.with_extension("qemu-stderr");
        let stderr = std::fs::File::create(&stderr_path)?;
        let start = Instant::now();
        let mut child = self.command().stdin(Stdio::null()).stdout(console).stderr(stderr).spawn()?;
        let (status, timed_out) = loop {
            if let Some(s) = child.try_wait()? {
                break (Some(s), false);
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let elapsed = start.elapsed();
        let read = crate::rig::read_lossy;
        Ok(BootOutcome { status, timed_out, elapsed, console: read(&self.console_log), stderr: read(&stderr_path) })
    }
}
