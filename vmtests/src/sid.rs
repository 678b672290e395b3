//! QEMU 11 for the DAX guests: bookworm's QEMU 7.2 has no virtio-fs cache
//! window, Debian sid's QEMU 11 speaks the vhost-user shared memory
//! protocol (`GET_SHMEM_CONFIG`, `SHMEM_MAP`/`SHMEM_UNMAP`). It cannot be
//! installed on bookworm, so the rig bootstraps a minimal sid tree
//! (`debootstrap --variant=minbase --include=qemu-system-x86 sid DIR
//! MIRROR`, about 35 s and 410 MB) into `CACHE/qemu11-sid` and runs QEMU
//! with `chroot DIR`. Everything QEMU opens by path (kernel, initramfs,
//! the vhost-user socket) must be inside DIR: [`Qemu11`] copies the kernel
//! and initramfs in and hands out socket folders there.
//!
//! The tree is kept while `DIR/.complete` exists and its QEMU runs and
//! offers `vhost-user-test-device-pci`; otherwise it is built again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::prep::{FileLock, Prepared, cache_dir, ensure_packages, output, text};

/// The generic vhost-user device QEMU 11 drives a virtio-fs backend with
/// (virtio-id 26) when the backend brings its own config and shared memory.
pub const TEST_DEVICE: &str = "vhost-user-test-device-pci";

/// A ready sid chroot with QEMU 11, and the boot files inside it.
#[derive(Debug, Clone)]
pub struct Qemu11 {
    /// The chroot (host path).
    pub root: PathBuf,
    /// `qemu-system-x86_64 --version`'s first line.
    pub version: String,
    /// The guest kernel, copied inside [`Qemu11::root`] (host path).
    pub kernel: PathBuf,
    /// The initramfs, copied inside [`Qemu11::root`] (host path).
    pub initrd: PathBuf,
}

impl Qemu11 {
    /// `host` as the chrooted QEMU sees it. Panics when `host` is not
    /// inside the chroot (a rig bug: QEMU could not open it).
    pub fn inside(&self, host: &Path) -> PathBuf {
        let rel = host
            .strip_prefix(&self.root)
            .unwrap_or_else(|_| panic!("{} is outside the QEMU 11 chroot {}", host.display(), self.root.display()));
        Path::new("/").join(rel)
    }

    /// A fresh folder inside the chroot for one run's vhost-user socket
    /// (`vmrig/run/PID-N`), removed when the returned guard drops.
    pub fn run_dir(&self) -> RunDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = self.root.join("vmrig/run").join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        RunDir(dir)
    }
}

/// A socket folder inside the chroot, removed on drop.
#[derive(Debug)]
pub struct RunDir(pub PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sid chroot with QEMU 11, built when missing or broken, with the
/// prepared kernel and initramfs copied in; once per process. `Err` names
/// the missing prerequisite (report it as a skip).
pub fn prepare_qemu11(prep: &Prepared) -> Result<Qemu11, String> {
    static ONCE: std::sync::OnceLock<Result<Qemu11, String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| prepare_now(prep)).clone()
}

fn prepare_now(prep: &Prepared) -> Result<Qemu11, String> {
    if !testkit::is_root() {
        return Err("QEMU 11 runs in a sid chroot: debootstrap and chroot need root".into());
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(|e| format!("cannot create the cache {}: {e}", cache.display()))?;
    let _lock = FileLock::new(&cache.join("lock"))?;
    ensure_packages(&["debootstrap"])?;
    let root = cache.join("qemu11-sid");
    let version = match chroot_qemu_version(&root) {
        Ok(v) => v,
        Err(why) => {
            if root.exists() {
                eprintln!("vmrig: rebuilding the sid chroot {}: {why}", root.display());
            }
            bootstrap(&cache, &root)?;
            chroot_qemu_version(&root).map_err(|e| format!("the fresh sid chroot is unusable: {e}"))?
        }
    };
    remove_stale_run_dirs(&root.join("vmrig/run"));
    let boot = root.join("vmrig/boot");
    std::fs::create_dir_all(&boot).map_err(|e| format!("mkdir {}: {e}", boot.display()))?;
    let kernel = boot.join("vmlinuz");
    let initrd = boot.join("initramfs.cpio");
    copy_if_changed(&prep.kernel, &kernel)?;
    copy_if_changed(&prep.initramfs, &initrd)?;
    Ok(Qemu11 { root, version, kernel, initrd })
}

/// The chroot's QEMU version when `.complete` is there, QEMU runs and it
/// offers [`TEST_DEVICE`].
fn chroot_qemu_version(root: &Path) -> Result<String, String> {
    if !root.join(".complete").exists() {
        return Err(format!("{} is missing or unfinished", root.display()));
    }
    let o = output(Command::new("chroot").arg(root).args(["qemu-system-x86_64", "--version"]))?;
    if !o.status.success() {
        return Err(format!("chroot qemu-system-x86_64 --version failed: {}", text(&o)));
    }
    let version = String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string();
    let o = output(Command::new("chroot").arg(root).args(["qemu-system-x86_64", "-device", "help"]))?;
    if !String::from_utf8_lossy(&o.stdout).contains(TEST_DEVICE) {
        return Err(format!("{version} has no {TEST_DEVICE}"));
    }
    Ok(version)
}

/// The Debian mirror of this machine's apt sources (deb822 `URIs:` or a
/// `deb URL ...` line, security archives left out), or `$VMRIG_SID_MIRROR`.
pub fn apt_mirror() -> Result<String, String> {
    if let Ok(m) = std::env::var("VMRIG_SID_MIRROR") {
        return Ok(m);
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let text: String = files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect::<Vec<_>>().join("\n");
    mirror_from_sources(&text)
        .ok_or_else(|| "no Debian mirror in /etc/apt/sources.list{,.d} (set VMRIG_SID_MIRROR)".into())
}

/// The first non-security `http(s)` URI of apt source text, either format.
fn mirror_from_sources(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| {
            let uris: Vec<&str> = if let Some(rest) = l.strip_prefix("URIs:") {
                rest.split_whitespace().collect()
            } else if l.starts_with("deb ") {
                l.split_whitespace().skip(1).filter(|w| !w.starts_with('[')).take(1).collect()
            } else {
                Vec::new()
            };
            uris
        })
        .find(|u| (u.starts_with("http://") || u.starts_with("https://")) && !u.contains("security"))
        .map(|u| u.trim_end_matches('/').to_string())
}

/// debootstraps sid into a work folder and renames it to `root`.
fn bootstrap(cache: &Path, root: &Path) -> Result<(), String> {
    let mirror = apt_mirror()?;
    let work = cache.join(format!("qemu11-sid.work-{}", std::process::id()));
    for old in [root, work.as_path()] {
        if old.exists() {
            remove_tree(old)?;
        }
    }
    let t = Instant::now();
    eprintln!("vmrig: debootstrap sid with qemu-system-x86 from {mirror} (about 35 s, 410 MB)");
    let o = output(
        Command::new("debootstrap")
            .args(["--variant=minbase", "--include=qemu-system-x86", "sid"])
            .arg(&work)
            .arg(&mirror),
    )?;
    if !o.status.success() {
        let log = std::fs::read_to_string(work.join("debootstrap/debootstrap.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        let _ = remove_tree(&work);
        return Err(format!("debootstrap sid from {mirror} failed: {} | log tail: {}", text(&o), tail.join(" | ")));
    }
    std::fs::write(work.join(".complete"), format!("debootstrap sid {mirror}\n")).map_err(|e| e.to_string())?;
    std::fs::rename(&work, root).map_err(|e| format!("rename into {}: {e}", root.display()))?;
    eprintln!("vmrig: sid chroot ready in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Removes a chroot tree; refuses when something is still mounted below
/// it (debootstrap mounts /proc and /sys while it runs), so a host mount
/// is never removed through it.
fn remove_tree(dir: &Path) -> Result<(), String> {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for m in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if Path::new(m).starts_with(&canon) {
            let o = output(Command::new("umount").arg("-l").arg(m))?;
            if !o.status.success() {
                return Err(format!("{m} is mounted inside {} and umount failed: {}", dir.display(), text(&o)));
            }
        }
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))
}

/// Socket folders of processes that are gone.
fn remove_stale_run_dirs(run: &Path) {
    let Ok(rd) = std::fs::read_dir(run) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Copies `from` to `to` unless `to` has the same size and a newer mtime.
fn copy_if_changed(from: &Path, to: &Path) -> Result<(), String> {
    let src = std::fs::metadata(from).map_err(|e| format!("{}: {e}", from.display()))?;
    if let Ok(dst) = std::fs::metadata(to) {
        if dst.len() == src.len() && dst.modified().ok() >= src.modified().ok() {
            return Ok(());
        }
    }
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    std::fs::copy(from, &tmp).map_err(|e| format!("copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).map_err(|e| format!("rename {}: {e}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_apt_sources() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/x\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(mirror_from_sources(deb822).as_deref(), Some("http://deb.debian.org/debian"));
        let one_line = "# deb http://old/ x\ndeb http://security.debian.org/ bookworm-security main\ndeb [arch=amd64] https://mirror.example/debian/ bookworm main\n";
        assert_eq!(mirror_from_sources(one_line).as_deref(), Some("https://mirror.example/debian"));
        assert_eq!(mirror_from_sources("deb-src http://x/debian bookworm main\n"), None);
    }
}
