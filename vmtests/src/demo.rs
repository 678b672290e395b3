//! The demo (`cargo run --release -p vmtests --bin demo`): on a fresh
//! machine, prepares what is missing (cached in `target/vmrig/`: Debian
//! packages, kernel, busybox initramfs, the sid chroot with QEMU 11),
//! builds an ext4 image from a small embedded tree of inline files, serves
//! it with a DAX window, boots a QEMU 11 guest that memory-maps the inline
//! file `hello.txt` through DAX (`-o dax=always`), and shows what happened:
//! the image before (inline data), the guest's mount and window, the bytes
//! it read through the mapping and the word it stored, the daemon's
//! conversion line and counters, the image after (an extent-mapped file
//! with the stored bytes) and e2fsck's verdict. `tests/dax_guest.rs` runs
//! the same code path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pattern::{DEMO_FILE, DEMO_TEXT, demo_after};
use crate::rig::{self, GuestRun};

/// The embedded tree: (path, contents); every file is small enough to be
/// stored inline in its inode.
pub const TREE: &[(&str, &str)] = &[
    (DEMO_FILE, DEMO_TEXT),
    ("notes/why.txt", "ext4 image + vhost-user + DAX\n"),
    ("notes/how.txt", "SETUPMAPPING converts inline data\n"),
    ("empty", ""),
];

/// What the demo saw; `ok()` when everything it promises happened.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every guest case passed (the bytes read and stored were right).
    pub guest_passed: bool,
    /// The guest mounted with `dax=always` and its dmesg shows the window.
    pub dax_window: bool,
    /// The daemon logged the inline conversion at map setup.
    pub converted_in_daemon: bool,
    /// The daemon counted SETUPMAPPINGs.
    pub setupmappings: u64,
    /// The file is extent-mapped in the image afterwards, with the stored bytes.
    pub converted_in_image: bool,
    /// `e2fsck -fn` found nothing wrong.
    pub fsck_clean: bool,
}

impl Outcome {
    /// Whether everything the demo shows happened.
    pub fn ok(&self) -> bool {
        self.guest_passed
            && self.dax_window
            && self.converted_in_daemon
            && self.setupmappings > 0
            && self.converted_in_image
            && self.fsck_clean
    }
}

/// Runs the demo with daemon `bin`, narrating on `out`. `Err` when a
/// prerequisite is missing (the reason says which).
pub fn run(bin: &Path, out: &mut dyn Write) -> Result<Outcome, String> {
    let mut say = |s: &str| {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    say(&format!(
        "==> preparing the guest kit (cached in {}): kernel, busybox initramfs, QEMU 11 in a sid chroot",
        crate::prep::cache_dir().display()
    ));
    let prep = crate::prep::prepare()?;
    let q11 = crate::sid::prepare_qemu11(&prep)?;
    say(&format!("    kernel {}, {}", prep.kernel_package, q11.version));

    let scratch = testkit::Scratch::new("demo");
    let tree = scratch.join("tree");
    for (path, text) in TREE {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().expect("a file has a parent")).map_err(|e| e.to_string())?;
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
    }
    let image = scratch.join("demo.img");
    let o = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data,metadata_csum", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("64M")
        .output()
        .map_err(|e| format!("cannot run mke2fs: {e}"))?;
    if !o.status.success() {
        return Err(format!("mke2fs failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    say(&format!(
        "==> image {} built with mke2fs -O inline_data -d from {} embedded files",
        image.display(),
        TREE.len()
    ));
    say(&format!("    {DEMO_FILE} before: {}", inode_summary(&image, DEMO_FILE)));

    say("==> serving it: ext4-virtiofsd serve --cache-size 64M; booting QEMU 11 (TCG), guest mounts -o dax=always");
    let mut run = GuestRun::new(&scratch.join("logs"));
    run.qemu11 = Some(q11);
    run.serve_args = vec!["--cache-size".into(), "64M".into()];
    run.mount_opts = Some("dax=always".into());
    run.cases = Some(vec!["demo_inline_dax".into()]);
    run.timeout = std::time::Duration::from_secs(300);
    let result = rig::run_ext4_image(&prep, bin, &image, &run);
    let mut outcome = Outcome { guest_passed: result.problems().is_empty(), ..Outcome::default() };
    let mounts = result.rig_lines("mounts");
    let window: Vec<String> = result.rig_lines("dmesg").into_iter().filter(|l| l.contains("Cache len")).collect();
    outcome.dax_window = mounts.iter().any(|m| m.contains("dax=always")) && !window.is_empty();
    say("==> the guest said:");
    for l in &window {
        say(&format!("    {l}"));
    }
    for l in result.boot.console.lines().filter_map(|l| l.find("VMDEMO ").map(|at| &l[at + "VMDEMO ".len()..])) {
        say(&format!("    {}", l.trim_end()));
    }
    for p in result.problems() {
        say(&format!("    PROBLEM: {p}"));
    }
    say("==> the daemon said:");
    for l in result.daemon_log.lines().filter(|l| l.contains("dax")) {
        say(&format!("    {l}"));
    }
    outcome.converted_in_daemon = result.daemon_log.contains("converted from inline data at map setup");
    outcome.setupmappings = result
        .daemon_log
        .lines()
        .rev()
        .find_map(|l| l.split("setupmappings=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);

    let after = crate::leftovers::ShareView::read(&crate::leftovers::ImageView(image.clone()), DEMO_FILE);
    let flags = crate::mapfiles::inode_flags(&image, DEMO_FILE);
    let extents = crate::mapfiles::extent_count(&image, DEMO_FILE);
    outcome.converted_in_image =
        flags & 0x1000_0000 == 0 && extents == 1 && after.as_deref().ok() == Some(demo_after().as_bytes());
    say(&format!("==> {DEMO_FILE} after: {}", inode_summary(&image, DEMO_FILE)));
    match &after {
        Ok(b) => say(&format!("    contents (debugfs cat): {:?}", String::from_utf8_lossy(b))),
        Err(e) => say(&format!("    contents: cannot read: {e}")),
    }

    let (clean, text) = testkit::fsck(&image);
    outcome.fsck_clean = clean;
    say(&format!("==> e2fsck -fn: {}", if clean { "clean" } else { "NOT CLEAN" }));
    for l in text.lines().filter(|l| l.contains("files") && l.contains("blocks")) {
        say(&format!("    {l}"));
    }
    say(&format!(
        "==> {}",
        if outcome.ok() { "demo OK: inline file converted at map setup and served through DAX" } else { "demo FAILED" }
    ));
    Ok(outcome)
}

/// One line about a file's inode: inline or its extents (debugfs).
fn inode_summary(image: &Path, path: &str) -> String {
    let flags = crate::mapfiles::inode_flags(image, path);
    if flags & 0x1000_0000 != 0 {
        return format!("inline data in the inode (flags {flags:#x})");
    }
    let ex = Command::new("debugfs").arg("-R").arg(format!("ex /{path}")).arg(image).output();
    let text = ex.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    // Leaf lines: "L/ D  E/ N  FIRST - LAST  PFIRST - PLAST  LEN" (L == D).
    let leaves: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let n: Vec<u64> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .filter_map(|w| w.parse().ok())
                .collect();
            (n.len() == 9 && n[0] == n[1])
                .then(|| format!("file blocks {}-{} at image block {}-{} ({} blocks)", n[4], n[5], n[6], n[7], n[8]))
        })
        .collect();
    format!("extent-mapped (flags {flags:#x}): {}", leaves.join("; "))
}

/// The daemon the demo serves with: `$EXT4_VIRTIOFSD_BIN`, else the
/// workspace's, built with the demo's own profile.
pub fn daemon_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("EXT4_VIRTIOFSD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut c = Command::new(cargo);
    c.current_dir(&root).args(["build", "-q", "-p", "ext4-virtiofsd", "--bin", "ext4-virtiofsd"]);
    if release {
        c.arg("--release");
    }
    let status = c.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building ext4-virtiofsd failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target.join(if release { "release" } else { "debug" }).join("ext4-virtiofsd"))
}
