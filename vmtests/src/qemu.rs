//! One QEMU boot under TCG against a vhost-user-fs socket, with the serial
//! console captured to a file, a hang guard and, for crash tests, a kill
//! switch on a console marker.
//!
//! Two QEMUs: bookworm's 7.2 (`vhost-user-fs-pci`, no DAX window) and
//! sid's 11 in a chroot (`vhost-user-test-device-pci` with virtio-id 26:
//! the backend supplies the config and the DAX window), see [`Vmm`].

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::sid::{Qemu11, TEST_DEVICE};

/// Which QEMU boots the guest.
#[derive(Debug, Clone)]
pub enum Vmm {
    /// Bookworm's QEMU 7.2 at this path: `vhost-user-fs-pci` with its own
    /// `tag=`; no DAX window.
    Qemu7(PathBuf),
    /// Sid's QEMU 11 in its chroot: `vhost-user-test-device-pci`,
    /// `virtio-id=26`; tag and DAX window come from the backend. Kernel,
    /// initramfs and socket must be inside the chroot.
    Qemu11(Qemu11),
}

impl Vmm {
    /// A short name for reports (`qemu7`, `qemu11`).
    pub fn name(&self) -> &'static str {
        match self {
            Vmm::Qemu7(_) => "qemu7",
            Vmm::Qemu11(_) => "qemu11",
        }
    }
}

/// Ends a boot early: when the console has shown `marker` `count` times,
/// `before` (e.g. the daemon's pid) gets SIGKILL, then QEMU.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    /// The console text to count.
    pub marker: String,
    /// How many times it must have appeared.
    pub count: usize,
    /// Processes to SIGKILL just before QEMU (the daemon: killed first, so
    /// every marker on the console was answered by it before it died).
    pub before: Vec<u32>,
}

/// A guest boot: kernel, initramfs, the vhost-user socket and what the
/// guest's `/init` reads from the kernel command line.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The QEMU to run.
    pub vmm: Vmm,
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
    /// Kill the guest (and the processes named) on a console marker.
    pub kill: Option<KillSwitch>,
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
    /// Whether the [`KillSwitch`] fired.
    pub killed: bool,
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
    /// it), the virtio-fs device on the socket, no network, serial console
    /// on stdout. QEMU 11 runs as `chroot ROOT qemu-system-x86_64` with
    /// the paths as seen inside the chroot.
    pub fn command(&self) -> Command {
        let (mut c, device) = match &self.vmm {
            Vmm::Qemu7(bin) => {
                (Command::new(bin), format!("vhost-user-fs-pci,chardev=char0,tag={},queue-size=1024", self.tag))
            }
            Vmm::Qemu11(q) => {
                let mut c = Command::new("chroot");
                c.arg(&q.root).arg("qemu-system-x86_64");
                (c, format!("{TEST_DEVICE},chardev=char0,virtio-id=26,num_vqs=2,config_size=40,vq_size=1024"))
            }
        };
        let path = |p: &Path| match &self.vmm {
            Vmm::Qemu7(_) => p.to_path_buf(),
            Vmm::Qemu11(q) => q.inside(p),
        };
        let mem = format!("{}M", self.memory_mib);
        c.args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", &mem])
            .args(["-object", &format!("memory-backend-memfd,id=mem,size={mem},share=on")])
            .args(["-numa", "node,memdev=mem"])
            .arg("-chardev")
            .arg(format!("socket,id=char0,path={}", path(&self.socket).display()))
            .args(["-device", &device])
            .args(["-nic", "none", "-nographic", "-no-reboot", "-kernel"])
            .arg(path(&self.kernel))
            .arg("-initrd")
            .arg(path(&self.initrd))
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
        let mut killed = false;
        let (status, timed_out) = loop {
            if let Some(s) = child.try_wait()? {
                break (Some(s), false);
            }
            if let Some(k) = &self.kill {
                if !killed && crate::rig::read_lossy(&self.console_log).matches(&k.marker).count() >= k.count {
                    for pid in &k.before {
                        // SAFETY: kill(2) on a pid the caller started and
                        // has not reaped (it is waiting for this boot).
                        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
                    }
                    let _ = child.kill();
                    killed = true;
                }
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
        Ok(BootOutcome {
            status,
            timed_out,
            elapsed,
            console: read(&self.console_log),
            stderr: read(&stderr_path),
            killed,
        })
    }
}
