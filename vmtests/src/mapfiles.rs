//! The image the mmap cases run on: the files of
//! [`pattern::pre_files`] in `pre/`, written on the host before boot with
//! e2fsprogs (`mke2fs -d` for the inline, plain and sparse files; debugfs
//! for a file written into fragmented free space, so it really has several
//! extents), checked with debugfs before the guest sees them, and the
//! host-side checks after the run.

use std::path::Path;
use std::process::Command;

use crate::leftovers::{ImageView, ShareView};
use crate::pattern::{self, Layout, PRE_DIR, PreFile};

/// ext4's inode flags as debugfs prints them (`Flags: 0x...`).
const INLINE_DATA_FL: u32 = 0x1000_0000;
/// `FS_DAX_FL`: the per-inode DAX flag (`chattr +x`).
pub const DAX_FL: u32 = 0x0200_0000;

/// Builds `image` (`size_mib`, 4 KiB blocks, `inline_data`) holding the
/// mmap cases' files, with the DAX inode flag on the flagged ones when
/// `dax_flags`; `work` is a scratch folder. Panics when e2fsprogs does not
/// produce what the cases need (inline files inline, the fragmented file
/// in at least 3 extents, every file's bytes right).
pub fn build(image: &Path, work: &Path, size_mib: u32, dax_flags: bool) {
    let tree = work.join("tree");
    let pre = tree.join(PRE_DIR);
    std::fs::create_dir_all(&pre).expect("mkdir tree/pre");
    let files = pattern::pre_files();
    for f in files.iter().filter(|f| !matches!(f.layout, Layout::Fragmented(_))) {
        write_host_file(&pre.join(f.name), f);
    }
    testkit::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data,metadata_csum", "-d"])
            .arg(&tree)
            .arg(image)
            .arg(format!("{size_mib}M")),
    );
    // Fragment free space: 16 files of 64 KiB, every other one removed;
    // debugfs then allocates the fragmented file's blocks in the gaps.
    let mut script = String::new();
    for i in 0..16 {
        let gap = work.join(format!("gap{i}"));
        std::fs::write(&gap, pattern::pattern(900 + i, 64 << 10)).expect("write gap file");
        script += &format!("write {} {PRE_DIR}/gap{i}\n", gap.display());
    }
    for i in (1..16).step_by(2) {
        script += &format!("rm {PRE_DIR}/gap{i}\n");
    }
    for f in files.iter().filter(|f| matches!(f.layout, Layout::Fragmented(_))) {
        let host = work.join(f.name);
        std::fs::write(&host, f.contents()).expect("write the fragmented file's bytes");
        script += &format!("write {} {PRE_DIR}/{}\n", host.display(), f.name);
    }
    debugfs_script(image, work, &script);
    if dax_flags {
        set_dax_flags(image, work);
    }

    let view = ImageView(image.to_path_buf());
    for f in &files {
        let path = format!("{PRE_DIR}/{}", f.name);
        let got = view.read(&path).unwrap_or_else(|e| panic!("{path} in the prepared image: {e}"));
        assert!(got == f.contents(), "{path} in the prepared image has the wrong bytes ({} bytes)", got.len());
        let flags = inode_flags(image, &path);
        if matches!(f.layout, Layout::Data(n) if n <= 61) {
            assert!(flags & INLINE_DATA_FL != 0, "{path} is not inline (flags {flags:#x})");
        }
        assert_eq!(flags & DAX_FL != 0, dax_flags && f.dax_flag, "{path}: DAX flag (flags {flags:#x})");
        if !matches!(f.layout, Layout::Data(_)) {
            let n = extent_count(image, &path);
            assert!(n >= 3, "{path} has {n} extents; the case needs several");
        }
    }
    testkit::assert_fsck_clean(image);
}

/// Writes a prepared file on the host; sparse files get real holes.
fn write_host_file(p: &Path, f: &PreFile) {
    use std::os::unix::fs::FileExt;
    match f.layout {
        Layout::Sparse(size, ranges) => {
            let file = std::fs::File::create(p).expect("create sparse file");
            file.set_len(size as u64).expect("set_len");
            let all = f.contents();
            for &(off, len) in ranges {
                file.write_all_at(&all[off..off + len], off as u64).expect("write sparse range");
            }
        }
        _ => std::fs::write(p, f.contents()).expect("write prepared file"),
    }
}

/// Runs debugfs -w -f on a script; panics on any complaint.
fn debugfs_script(image: &Path, work: &Path, script: &str) {
    let path = work.join("debugfs.cmds");
    std::fs::write(&path, script).expect("write debugfs script");
    let o = Command::new("debugfs").arg("-w").arg("-f").arg(&path).arg(image).output().expect("run debugfs");
    let err = String::from_utf8_lossy(&o.stderr);
    let complaints: Vec<&str> = err.lines().filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty()).collect();
    assert!(o.status.success() && complaints.is_empty(), "debugfs -w -f {script:?}: {}", complaints.join(" | "));
}

/// `debugfs stat`'s text of `path`.
fn stat_text(image: &Path, path: &str) -> String {
    let o = Command::new("debugfs").arg("-R").arg(format!("stat /{path}")).arg(image).output().expect("run debugfs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The inode flags of `path` (debugfs `stat`).
pub fn inode_flags(image: &Path, path: &str) -> u32 {
    let stat = stat_text(image, path);
    stat.split("Flags: 0x")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no Flags in debugfs stat of {path}:\n{stat}"))
}

/// The number of leaf extents of `path` (debugfs `ex`); 0 for an inline file.
pub fn extent_count(image: &Path, path: &str) -> usize {
    let o = Command::new("debugfs").arg("-R").arg(format!("ex /{path}")).arg(image).output().expect("run debugfs");
    let text = String::from_utf8_lossy(&o.stdout);
    // Lines "LEVEL/DEPTH ENTRY/ENTRIES LOGICAL ..."; leaves have LEVEL == DEPTH.
    text.lines()
        .filter_map(|l| {
            let (level, rest) = l.trim().split_once('/')?;
            let depth = rest.split_whitespace().next()?;
            Some(level.trim() == depth.trim())
        })
        .filter(|&leaf| leaf)
        .count()
}

/// Sets the DAX inode flag on the flagged prepared files.
fn set_dax_flags(image: &Path, work: &Path) {
    let mut script = String::new();
    for f in pattern::pre_files().iter().filter(|f| f.dax_flag) {
        let path = format!("{PRE_DIR}/{}", f.name);
        let flags = inode_flags(image, &path) | DAX_FL;
        script += &format!("set_inode_field /{path} flags {flags:#x}\n");
    }
    debugfs_script(image, work, &script);
}

/// The host's view of the image after the mmap cases: every prepared file
/// that the cases leave unchanged still holds its bytes; `pre/inline_rw`
/// holds what the guest stored through its mapping and, when `converted`
/// (a DAX run: the daemon converted it at map setup), is no longer inline
/// but extent-mapped. Empty when all is right.
pub fn check_after(image: &Path, converted: bool) -> Vec<String> {
    let view = ImageView(image.to_path_buf());
    let mut bad = Vec::new();
    for f in pattern::pre_files() {
        let path = format!("{PRE_DIR}/{}", f.name);
        let want = if f.name == "inline_rw" { pattern::inline_rw_after() } else { f.contents() };
        match view.read(&path) {
            Ok(got) if got == want => {}
            Ok(got) => bad.push(format!("{path}: {} bytes, not the expected {}", got.len(), want.len())),
            Err(e) => bad.push(format!("{path}: {e}")),
        }
    }
    let path = format!("{PRE_DIR}/inline_rw");
    let flags = inode_flags(image, &path);
    let extents = extent_count(image, &path);
    if converted && (flags & INLINE_DATA_FL != 0 || extents != 1) {
        bad.push(format!("{path} was not converted: flags {flags:#x}, {extents} extents\n{}", stat_text(image, &path)));
    }
    bad
}

/// `debugfs stat` and `ex` of a path, for a report.
pub fn describe(image: &Path, path: &str) -> String {
    let ex = Command::new("debugfs").arg("-R").arg(format!("ex /{path}")).arg(image).output().expect("run debugfs");
    format!("{}{}", stat_text(image, path), String::from_utf8_lossy(&ex.stdout))
}
