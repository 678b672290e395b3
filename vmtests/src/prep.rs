//! Preparation of everything a guest boot needs, done by the rig itself on
//! a fresh machine and cached under [`cache_dir`] (`target/vmrig/`):
//!
//! - the Debian packages `qemu-system-x86` and `busybox-static`
//!   (`apt-get install` when missing, as root);
//! - a Debian bookworm cloud kernel (`linux-image-6.1.0-N-cloud-amd64`, the
//!   newest N `apt-cache search` offers; `apt-get download` + `dpkg-deb -x`):
//!   its `vmlinuz` and the modules virtio-fs needs, in an order computed
//!   from each module's `depends=`;
//! - the guest test program (`vmtests/guest`, its own workspace), built
//!   static into its own target directory;
//! - an initramfs (newc cpio, uncompressed): busybox, the modules, the
//!   guest program and [`INIT`].
//!
//! - on demand ([`crate::sid::prepare_qemu11`]): a Debian sid chroot with QEMU 11
//!   (`debootstrap --variant=minbase --include=qemu-system-x86`), the QEMU
//!   that speaks the vhost-user shared memory protocol (the DAX window),
//!   with the kernel and initramfs copied inside it.
//!
//! Whatever cannot be had (not root, not Debian, no package download) is an
//! `Err` with the reason, for the caller to report as a loud skip; a guest
//! program that does not compile is a bug and panics.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::cpio::Newc;

/// The modules virtio-fs over virtio-pci needs. Their dependencies are
/// added and ordered from the modules' own `depends=` strings.
pub const MODULES: &[&str] = &["virtio_pci", "virtiofs"];

/// Debian packages the rig installs when missing (QEMU 11's chroot needs
/// `debootstrap` as well, see [`crate::sid`]).
pub const PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static"];

/// The guest's `/init`: mounts proc, sys and dev, loads the modules in
/// `/modules/order`, mounts the virtio-fs tag at `/mnt` (kernel command
/// line `vmtest.tag=TAG`, mount options `vmtest.opts=A,B`, cases
/// `vmtest.cases=C,D`), runs `/bin/vmtests-guest /mnt`, unmounts and powers
/// off. Lines starting with `VMRIG` report its own steps.
pub const INIT: &str = r#"#!/bin/busybox sh
# /init of the vmtests rig (written by vmtests/src/prep.rs).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
    insmod /modules/$m.ko || echo "VMRIG insmod $m failed"
done
tag=myfs; opts=; cases=
for w in $(cat /proc/cmdline); do
    case "$w" in
        vmtest.tag=*) tag="${w#vmtest.tag=}" ;;
        vmtest.opts=*) opts="${w#vmtest.opts=}" ;;
        vmtest.cases=*) cases="${w#vmtest.cases=}" ;;
    esac
done
if mount -t virtiofs ${opts:+-o "$opts"} "$tag" /mnt; then
    echo "VMRIG mounted $tag${opts:+ with $opts}"
    grep virtiofs /proc/mounts | sed 's/^/VMRIG mounts /'
    dmesg | grep -i -e virtio_fs -e virtiofs -e dax | grep -vi 'command line' | sed 's/^/VMRIG dmesg /'
    /bin/vmtests-guest /mnt $cases
    echo "VMRIG guest exit $?"
    sync
    umount /mnt || echo "VMRIG umount failed"
else
    echo "VMRIG mount failed"
fi
echo "VMRIG poweroff"
poweroff -f
"#;

/// What a boot needs, all inside the cache.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The guest kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs (newc cpio).
    pub initramfs: PathBuf,
    /// The Debian package the kernel came from.
    pub kernel_package: String,
    /// The static guest test program (also inside the initramfs).
    pub guest: PathBuf,
}

/// The cache folder: `$VMRIG_CACHE`, else `target/vmrig` of the workspace
/// (ignored by git with the rest of `target/`).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("VMRIG_CACHE") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/vmrig"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("vmtests lives in the workspace").to_path_buf()
}

/// Prepares (or finds in the cache) kernel, modules, guest program and
/// initramfs, once per process (later calls return the first outcome).
/// Serialised between processes by a lock file in the cache. `Err` names a
/// missing prerequisite (report it as a skip).
pub fn prepare() -> Result<Prepared, String> {
    static ONCE: std::sync::OnceLock<Result<Prepared, String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(prepare_now).clone()
}

fn prepare_now() -> Result<Prepared, String> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Err("the rig boots x86_64 guests with a static x86_64-unknown-linux-gnu program".into());
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(|e| format!("cannot create the cache {}: {e}", cache.display()))?;
    let _lock = FileLock::new(&cache.join("lock"))?;
    let start = Instant::now();
    ensure_packages(PACKAGES)?;
    let t_packages = start.elapsed();
    let (kernel_dir, kernel_package) = kernel(&cache)?;
    let t_kernel = start.elapsed();
    let guest = build_guest(&cache);
    let t_guest = start.elapsed();
    let initramfs = initramfs(&cache, &kernel_dir, &guest)?;
    eprintln!(
        "vmrig: prepared {} in {:.1} s (packages {:.1} s, kernel {:.1} s, guest program {:.1} s, initramfs {:.1} s)",
        cache.display(),
        start.elapsed().as_secs_f64(),
        t_packages.as_secs_f64(),
        (t_kernel - t_packages).as_secs_f64(),
        (t_guest - t_kernel).as_secs_f64(),
        (start.elapsed() - t_guest).as_secs_f64()
    );
    Ok(Prepared { kernel: kernel_dir.join("vmlinuz"), initramfs, kernel_package, guest })
}

/// An exclusive `flock` on a file, released on drop.
pub(crate) struct FileLock(std::fs::File);

impl FileLock {
    pub(crate) fn new(path: &Path) -> Result<FileLock, String> {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open the lock {}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns; no memory involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        // SAFETY: as in new; closing the file would release it as well.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Runs a command; `Err` when it cannot be started at all.
pub(crate) fn output(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))
}

/// A command's output on one line (skip notices are one line each).
pub(crate) fn text(o: &Output) -> String {
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    all.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

fn package_installed(name: &str) -> Result<bool, String> {
    let o = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .map_err(|e| format!("not a Debian system? {e}"))?;
    Ok(String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// `apt-get update -qq`, once per process.
fn apt_update() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let o = output(Command::new("apt-get").args(["update", "-qq"]))?;
        if o.status.success() { Ok(()) } else { Err(format!("apt-get update failed: {}", text(&o))) }
    })
    .clone()
}

/// Installs those of `packages` that are missing (root only).
pub(crate) fn ensure_packages(packages: &[&str]) -> Result<(), String> {
    let mut missing = Vec::new();
    for p in packages {
        if !package_installed(p)? {
            missing.push(*p);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !testkit::is_root() {
        return Err(format!("Debian packages {missing:?} are missing and installing them needs root"));
    }
    eprintln!("vmrig: apt-get install {missing:?}");
    let install = || {
        output(
            Command::new("apt-get")
                .args(["install", "-y", "-qq"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    let mut o = install()?;
    if !o.status.success() {
        apt_update()?;
        o = install()?;
    }
    if !o.status.success() {
        return Err(format!("apt-get install {missing:?} failed: {}", text(&o)));
    }
    Ok(())
}

/// The version numbers of a cloud kernel image package name, e.g.
/// `linux-image-6.1.0-57-cloud-amd64` → [6, 1, 0, 57]; `None` for other
/// packages (meta packages, -dbg, -unsigned, the 6.12 backports naming).
fn cloud_kernel_version(name: &str) -> Option<Vec<u64>> {
    let mid = name.strip_prefix("linux-image-")?.strip_suffix("-cloud-amd64")?;
    let (release, abi) = mid.split_once('-')?;
    let mut v: Vec<u64> = release.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if v.len() != 3 {
        return None;
    }
    v.push(abi.parse().ok()?);
    Some(v)
}

/// The newest `linux-image-X.Y.Z-N-cloud-amd64` apt knows, or
/// `$VMRIG_KERNEL_PACKAGE`.
fn pick_kernel_package() -> Result<String, String> {
    if let Ok(p) = std::env::var("VMRIG_KERNEL_PACKAGE") {
        return Ok(p);
    }
    let search = || -> Result<Option<String>, String> {
        let o = output(Command::new("apt-cache").args(["search", "--names-only", "^linux-image-.*-cloud-amd64$"]))?;
        Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|n| cloud_kernel_version(n).map(|v| (v, n.to_string())))
            .max()
            .map(|(_, n)| n))
    };
    if let Some(p) = search()? {
        return Ok(p);
    }
    if !testkit::is_root() {
        return Err("apt knows no linux-image-*-cloud-amd64 package and apt-get update needs root".into());
    }
    apt_update()?;
    search()?.ok_or_else(|| "apt knows no linux-image-*-cloud-amd64 package, even after apt-get update".into())
}

/// The kernel directory in the cache (`vmlinuz`, `modules/NAME.ko`,
/// `modules/order`) and its package: the newest complete one already
/// cached, else downloaded.
fn kernel(cache: &Path) -> Result<(PathBuf, String), String> {
    let root = cache.join("kernel");
    std::fs::create_dir_all(&root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
    // Work folders of interrupted downloads (the cache lock is ours).
    for e in std::fs::read_dir(&root).map_err(|e| format!("readdir {}: {e}", root.display()))?.flatten() {
        if e.file_name().to_string_lossy().starts_with(".work-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let cached = std::fs::read_dir(&root)
        .map_err(|e| format!("readdir {}: {e}", root.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(".complete").exists())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            cloud_kernel_version(&n).map(|v| (v, n))
        })
        .max();
    let wanted = std::env::var("VMRIG_KERNEL_PACKAGE").ok();
    if let Some((_, name)) = cached {
        if wanted.as_ref().is_none_or(|w| *w == name) {
            return Ok((root.join(&name), name));
        }
    }
    if wanted.as_ref().is_some_and(|w| root.join(w).join(".complete").exists()) {
        let name = wanted.unwrap();
        return Ok((root.join(&name), name));
    }
    let package = pick_kernel_package()?;
    let dir = download_kernel(&root, &package)?;
    Ok((dir, package))
}

/// `apt-get download` + `dpkg-deb -x` of `package`; keeps only vmlinuz and
/// the needed modules, ordered.
fn download_kernel(root: &Path, package: &str) -> Result<PathBuf, String> {
    let t = Instant::now();
    let work = root.join(format!(".work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
    let o = output(Command::new("apt-get").args(["download", "-qq", package]).current_dir(&work))?;
    if !o.status.success() {
        let _ = std::fs::remove_dir_all(&work);
        return Err(format!("apt-get download {package} failed: {}", text(&o)));
    }
    let deb = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {package} left no .deb"))?;
    let x = work.join("x");
    let o = output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x))?;
    assert!(o.status.success(), "dpkg-deb -x {} failed: {}", deb.display(), text(&o));

    let boot = x.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .unwrap_or_else(|e| panic!("{package} has no /boot: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .unwrap_or_else(|| panic!("{package} has no /boot/vmlinuz-*"));
    let modroot = std::fs::read_dir(x.join("lib/modules"))
        .unwrap_or_else(|e| panic!("{package} has no /lib/modules: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .next()
        .unwrap_or_else(|| panic!("{package} has an empty /lib/modules"));
    // A kernel package without modules.builtin has nothing built in: every
    // needed module must then be a .ko, which the ordering below checks.
    let builtin: HashSet<String> = std::fs::read_to_string(modroot.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| Path::new(l).file_stem().map(|s| s.to_string_lossy().replace('-', "_")))
        .collect();
    let mut files = BTreeMap::new();
    collect_modules(&modroot.join("kernel"), &mut files);
    let order = module_order(MODULES, &builtin, &files)?;

    let staging = work.join("kernel");
    std::fs::create_dir_all(staging.join("modules")).map_err(|e| e.to_string())?;
    std::fs::copy(&vmlinuz, staging.join("vmlinuz")).map_err(|e| format!("copy vmlinuz: {e}"))?;
    for m in &order {
        std::fs::copy(&files[m], staging.join("modules").join(format!("{m}.ko")))
            .map_err(|e| format!("copy {m}: {e}"))?;
    }
    std::fs::write(staging.join("modules/order"), order.join("\n") + "\n").map_err(|e| e.to_string())?;
    std::fs::write(staging.join(".complete"), format!("{package}\n")).map_err(|e| e.to_string())?;
    let dest = root.join(package);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest).map_err(|e| format!("rename into {}: {e}", dest.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("vmrig: kernel {package} downloaded in {:.1} s; modules {}", t.elapsed().as_secs_f64(), order.join(" "));
    Ok(dest)
}

/// Every `NAME.ko` below `dir`, by module name (dashes as underscores).
fn collect_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            collect_modules(&p, out);
        } else if let Some(stem) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
            out.insert(stem.replace('-', "_"), p);
        }
    }
}

/// The `depends=` list in a module's `.modinfo` strings.
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|i| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect()
        })
        // No depends= field: a module that depends on nothing.
        .unwrap_or_default()
}

/// `wanted` and their dependencies, each after everything it depends on
/// (built-in modules need no loading). `Err` when a module is neither a
/// `.ko` nor built in (e.g. compressed modules).
fn module_order(
    wanted: &[&str],
    builtin: &HashSet<String>,
    files: &BTreeMap<String, PathBuf>,
) -> Result<Vec<String>, String> {
    fn visit(
        m: &str,
        builtin: &HashSet<String>,
        files: &BTreeMap<String, PathBuf>,
        active: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        if order.iter().any(|o| o == m) || builtin.contains(m) {
            return Ok(());
        }
        if active.iter().any(|a| a == m) {
            return Err(format!("module dependency cycle through {m}: {active:?}"));
        }
        let path = files.get(m).ok_or_else(|| format!("module {m} is neither an uncompressed .ko nor built in"))?;
        let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        active.push(m.to_string());
        for d in module_depends(&bytes) {
            visit(&d, builtin, files, active, order)?;
        }
        active.pop();
        order.push(m.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for m in wanted {
        visit(m, builtin, files, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// Builds `vmtests/guest` statically (release) into `CACHE/guest-target`.
fn build_guest(cache: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/Cargo.toml");
    let target_dir = cache.join("guest-target");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--quiet", "--target", triple, "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    testkit::run(&mut cmd);
    target_dir.join(triple).join("release/vmtests-guest")
}

/// Writes `CACHE/initramfs.cpio` unless the one there was built from the
/// same inputs (paths, sizes and mtimes, and the text of [`INIT`]).
fn initramfs(cache: &Path, kernel_dir: &Path, guest: &Path) -> Result<PathBuf, String> {
    let busybox = Path::new("/bin/busybox");
    let modules = kernel_dir.join("modules");
    let order_text = std::fs::read_to_string(modules.join("order")).map_err(|e| format!("read modules/order: {e}"))?;
    let order: Vec<&str> = order_text.lines().collect();
    let mut inputs = vec![busybox.to_path_buf(), guest.to_path_buf(), modules.join("order")];
    inputs.extend(order.iter().map(|m| modules.join(format!("{m}.ko"))));
    let mut key = String::from(INIT);
    for p in &inputs {
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        use std::os::unix::fs::MetadataExt;
        key += &format!("\n{} {} {}.{}", p.display(), m.len(), m.mtime(), m.mtime_nsec());
    }
    let out = cache.join("initramfs.cpio");
    let key_path = cache.join("initramfs.key");
    if out.exists() && std::fs::read_to_string(&key_path).ok().as_deref() == Some(key.as_str()) {
        return Ok(out);
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
    let tmp = cache.join(format!("initramfs.cpio.{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let mut a = Newc::new(std::io::BufWriter::new(file));
    let io = |e: std::io::Error| format!("write {}: {e}", tmp.display());
    for d in ["bin", "dev", "proc", "sys", "mnt", "tmp", "modules"] {
        a.dir(d, 0o755).map_err(io)?;
    }
    a.char_dev("dev/console", 0o600, 5, 1).map_err(io)?;
    a.file("bin/busybox", 0o755, &read(busybox)?).map_err(io)?;
    a.symlink("bin/sh", "busybox").map_err(io)?;
    a.file("bin/vmtests-guest", 0o755, &read(guest)?).map_err(io)?;
    a.file("modules/order", 0o644, order_text.as_bytes()).map_err(io)?;
    for m in &order {
        a.file(&format!("modules/{m}.ko"), 0o644, &read(&modules.join(format!("{m}.ko")))?).map_err(io)?;
    }
    a.file("init", 0o755, INIT.as_bytes()).map_err(io)?;
    a.finish().map_err(io)?;
    std::fs::rename(&tmp, &out).map_err(|e| format!("rename {}: {e}", out.display()))?;
    std::fs::write(&key_path, key).map_err(|e| format!("write {}: {e}", key_path.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_package_names() {
        assert_eq!(cloud_kernel_version("linux-image-6.1.0-57-cloud-amd64"), Some(vec![6, 1, 0, 57]));
        for other in [
            "linux-image-6.1.0-57-cloud-amd64-dbg",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.12-cloud-amd64",
            "linux-image-cloud-amd64",
            "linux-image-6.12.118+deb12-cloud-amd64",
        ] {
            assert_eq!(cloud_kernel_version(other), None, "{other}");
        }
        assert!(
            cloud_kernel_version("linux-image-6.1.0-9-cloud-amd64")
                < cloud_kernel_version("linux-image-6.1.0-10-cloud-amd64")
        );
    }

    #[test]
    fn modinfo_depends_and_order() {
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio_ring,virtio-pci-modern-dev\0name=x\0";
        assert_eq!(module_depends(ko), ["virtio_ring", "virtio_pci_modern_dev"]);
        assert!(module_depends(b"\0depends=\0name=fuse\0").is_empty());

        let s = testkit::Scratch::new("modorder");
        let mut files = BTreeMap::new();
        for (name, deps) in [("a", "b,c"), ("b", "c"), ("c", ""), ("d", "a,builtin_one")] {
            let p = s.join(format!("{name}.ko"));
            std::fs::write(&p, format!("\0depends={deps}\0name={name}\0")).unwrap();
            files.insert(name.to_string(), p);
        }
        let builtin = HashSet::from(["builtin_one".to_string()]);
        assert_eq!(module_order(&["d"], &builtin, &files).unwrap(), ["c", "b", "a", "d"]);
        assert!(module_order(&["missing"], &builtin, &files).is_err());
        std::fs::write(&files["c"], "\0depends=a\0").unwrap();
        assert!(module_order(&["a"], &builtin, &files).unwrap_err().contains("cycle"));
    }
}
