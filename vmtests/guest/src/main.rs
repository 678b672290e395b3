//! The guest test program of the QEMU rig (`vmtests::rig`). It runs inside
//! the guest as `vmtests-guest MOUNTPOINT [CASE,CASE,...]`, works under
//! `MOUNTPOINT/vmtest/` (removed first if present) and prints, on stdout:
//!
//! ```text
//! VMTEST PLAN create write_read ...
//! VMTEST create PASS
//! VMTEST rename FAIL <reason on one line>
//! ...
//! VMTEST DONE <passed> <failed>
//! ```
//!
//! and after each case `VMTIME <case> <milliseconds>` (guest clock; for
//! information, never judged).
//!
//! Each case checks real results and returns an error naming the first
//! mismatch; a failing or panicking case does not stop the others. The
//! files listed in `pattern::leftovers` stay behind for the host to check.
//!
//! Without a case list the ten general cases run. Other cases run only
//! when named: the mmap cases (`mapcases`, on the files the host prepared
//! in `MOUNTPOINT/pre/`), the crash workload and its check (`crash`), the
//! read benchmark (`bench`) and the demo (`demo`). Facts for the host to
//! judge are printed as `VMINFO <case> ...`, `VMCRASH`, `VMBENCH` and
//! `VMDEMO` lines.

// The host side uses `leftovers`; the guest only writes what it lists.
#[allow(dead_code)]
mod pattern;

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use pattern::*;

/// A case's outcome: `Err` carries the reason of the failure.
type Outcome = Result<(), String>;

/// Fails the case with a formatted reason unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

mod bench;
mod crash;
mod demo;
mod mapcases;

/// Adds the operation and path to an I/O error.
trait Ctx<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T, String>;
}

impl<T> Ctx<T> for std::io::Result<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T, String> {
        self.map_err(|e| format!("{what} {}: {e}", path.display()))
    }
}

/// A case: runs under the given `vmtest` directory.
type Case = fn(&Path) -> Outcome;

/// Every case, in the order they run.
const CASES: &[(&str, Case)] = &[
    ("create", case_create),
    ("write_read", case_write_read),
    ("rename", case_rename),
    ("readdir_10k", case_readdir_10k),
    ("xattr", case_xattr),
    ("hardlink", case_hardlink),
    ("symlink", case_symlink),
    ("truncate", case_truncate),
    ("fsync", case_fsync),
    ("mmap", case_mmap),
];

/// Cases that run only when named (`vmtest.cases=`): the mmap cases need
/// the files the host prepares in `pre/`; the crash workload never ends
/// (the host kills the guest), its check runs after the recovery; the
/// benchmark and the demo need their own files.
const NAMED_CASES: &[(&str, Case)] = &[
    ("map_dax_attr", mapcases::case_dax_attr),
    ("map_inline", mapcases::case_inline),
    ("map_sizes", mapcases::case_sizes),
    ("map_sparse_extents", mapcases::case_sparse_extents),
    ("map_grow", mapcases::case_grow),
    ("map_coherence", mapcases::case_coherence),
    ("map_truncate", mapcases::case_truncate),
    ("map_reclaim", mapcases::case_reclaim),
    ("map_eof_tail", mapcases::case_eof_tail),
    ("map_hole_store", mapcases::case_hole_store),
    ("map_read_only_image", mapcases::case_read_only_image),
    ("crash_workload", crash::case_workload),
    ("crash_check", crash::case_check),
    ("bench_seqread", bench::case_seqread),
    ("demo_inline_dax", demo::case_inline_dax),
];

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(mnt) = args.next().map(PathBuf::from) else {
        println!("VMTEST DONE 0 1");
        eprintln!("usage: vmtests-guest MOUNTPOINT [CASE,CASE,...]");
        std::process::exit(2);
    };
    let only: Option<Vec<String>> =
        args.next().map(|s| s.to_string_lossy().split(',').filter(|c| !c.is_empty()).map(String::from).collect());
    let cases: Vec<_> = match &only {
        None => CASES.iter().collect(),
        Some(o) => o.iter().filter_map(|c| CASES.iter().chain(NAMED_CASES).find(|(name, _)| name == c)).collect(),
    };
    let unknown: Vec<&String> =
        only.iter().flatten().filter(|c| !CASES.iter().chain(NAMED_CASES).any(|(n, _)| n == c)).collect();
    say(&format!("VMTEST PLAN {}", cases.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ")));

    let root = mnt.join("vmtest");
    let (mut passed, mut failed) = (0, 0);
    if !unknown.is_empty() {
        say(&format!("VMTEST setup FAIL unknown cases {unknown:?}"));
        failed += 1;
    }
    let setup = (|| -> std::io::Result<()> {
        if fs::symlink_metadata(&root).is_ok() {
            fs::remove_dir_all(&root)?;
        }
        fs::create_dir_all(root.join("keep"))
    })();
    match setup {
        Ok(()) => {}
        // A read-only share: cases that write fail on their own.
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => say(&format!("VMINFO setup read-only share: {e}")),
        Err(e) => {
            say(&format!("VMTEST setup FAIL preparing {}: {}", root.display(), one_line(&e.to_string())));
            failed += 1;
        }
    }
    for (name, case) in cases {
        let start = std::time::Instant::now();
        let result =
            std::panic::catch_unwind(|| case(&root)).unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))));
        let ms = start.elapsed().as_millis();
        match result {
            Ok(()) => {
                passed += 1;
                say(&format!("VMTEST {name} PASS"));
            }
            Err(e) => {
                failed += 1;
                say(&format!("VMTEST {name} FAIL {}", one_line(&e)));
            }
        }
        say(&format!("VMTIME {name} {ms}"));
    }
    say(&format!("VMTEST DONE {passed} {failed}"));
}

/// Prints one whole line and flushes it, so kernel messages on the same
/// console interleave between lines rather than inside them.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " | ")
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

/// A fresh directory `root/name` for one case.
fn case_dir(root: &Path, name: &str) -> Result<PathBuf, String> {
    let d = root.join(name);
    fs::create_dir(&d).ctx("mkdir", &d)?;
    Ok(d)
}

/// The first offset where `got` and `want` differ, as a message.
fn compare(what: &str, got: &[u8], want: &[u8]) -> Outcome {
    if got.len() != want.len() {
        return Err(format!("{what}: {} bytes, expected {}", got.len(), want.len()));
    }
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!("{what}: byte {i} is {:#04x}, expected {:#04x}", got[i], want[i])),
    }
}

fn read_file(p: &Path) -> Result<Vec<u8>, String> {
    fs::read(p).ctx("read", p)
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths")
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// create: O_CREAT|O_EXCL with a mode, EEXIST on the second try, the name
/// in readdir, a nested directory, unlink and ENOENT after it.
fn case_create(root: &Path) -> Outcome {
    let d = case_dir(root, "create")?;
    let p = d.join("new");
    let f = OpenOptions::new().write(true).create_new(true).mode(0o640).open(&p).ctx("create", &p)?;
    let m = f.metadata().ctx("fstat", &p)?;
    ensure!(m.is_file() && m.len() == 0, "new file: is_file {} len {}", m.is_file(), m.len());
    ensure!(m.permissions().mode() & 0o7777 == 0o640, "mode {:o}, expected 640", m.permissions().mode() & 0o7777);
    drop(f);
    match OpenOptions::new().write(true).create_new(true).open(&p) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        other => return Err(format!("second O_EXCL create: {other:?}, expected EEXIST")),
    }
    let names: Vec<_> = fs::read_dir(&d)
        .ctx("readdir", &d)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .ctx("readdir", &d)?;
    ensure!(names.len() == 1 && names[0] == "new", "readdir shows {names:?}");
    let sub = d.join("sub");
    fs::create_dir(&sub).ctx("mkdir", &sub)?;
    fs::write(sub.join("x"), b"x").ctx("create", &sub.join("x"))?;
    ensure!(fs::metadata(&sub).ctx("stat", &sub)?.is_dir(), "sub is not a directory");
    fs::remove_file(&p).ctx("unlink", &p)?;
    match fs::metadata(&p) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => Err(format!("stat after unlink: {other:?}, expected ENOENT")),
    }
}

/// write+read back: sizes 0, 1, 4095, 4096, 4097, 64 KiB, 1 MiB (whole
/// reads, positioned reads, an overwrite in the middle, appends) and the
/// kept file `keep/known.bin`.
fn case_write_read(root: &Path) -> Outcome {
    let d = case_dir(root, "rw")?;
    for (i, size) in [0usize, 1, 4095, 4096, 4097, 65536, 1 << 20].into_iter().enumerate() {
        let p = d.join(format!("f{size}"));
        let data = pattern(100 + i as u64, size);
        fs::write(&p, &data).ctx("write", &p)?;
        let len = fs::metadata(&p).ctx("stat", &p)?.len();
        ensure!(len == size as u64, "{}: size {len}, expected {size}", p.display());
        compare(&format!("read back {size}"), &read_file(&p)?, &data)?;
        if size > 0 {
            let f = File::open(&p).ctx("open", &p)?;
            let off = size / 2;
            let mut buf = vec![0u8; size - off + 10];
            let n = f.read_at(&mut buf, off as u64).ctx("pread", &p)?;
            compare(&format!("pread {size} at {off}"), &buf[..n], &data[off..])?;
        }
    }
    // Overwrite in the middle of the 1 MiB file, across a page boundary.
    let p = d.join(format!("f{}", 1 << 20));
    let mut want = read_file(&p)?;
    let patch = pattern(200, 10_000);
    let at = 4096 * 7 - 123;
    OpenOptions::new().write(true).open(&p).ctx("open", &p)?.write_all_at(&patch, at as u64).ctx("pwrite", &p)?;
    want[at..at + patch.len()].copy_from_slice(&patch);
    compare("after overwrite", &read_file(&p)?, &want)?;
    // Appends.
    let p = d.join("append");
    for chunk in [&b"first "[..], b"second ", b"third"] {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&p)
            .ctx("open append", &p)?
            .write_all(chunk)
            .ctx("append", &p)?;
    }
    compare("appended", &read_file(&p)?, b"first second third")?;
    // The kept file.
    let p = root.join("keep/known.bin");
    let data = pattern(KNOWN_SEED, KNOWN_LEN);
    let mut f = File::create(&p).ctx("create", &p)?;
    for chunk in data.chunks(100_000) {
        f.write_all(chunk).ctx("write", &p)?;
    }
    drop(f);
    let mut got = Vec::new();
    File::open(&p).ctx("open", &p)?.read_to_end(&mut got).ctx("read", &p)?;
    compare("keep/known.bin", &got, &data)
}

/// rename: a file to a new name, over an existing file, a directory with
/// its contents, across directories; the old names are gone.
fn case_rename(root: &Path) -> Outcome {
    let d = case_dir(root, "rename")?;
    let data = pattern(RENAME_SEED, RENAME_LEN);
    let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
    fs::write(&a, &data).ctx("write", &a)?;
    fs::rename(&a, &b).ctx("rename a->b", &a)?;
    ensure!(!a.exists(), "a still exists after rename");
    compare("b after rename", &read_file(&b)?, &data)?;
    fs::write(&c, b"old contents").ctx("write", &c)?;
    let c_ino = fs::metadata(&b).ctx("stat", &b)?.ino();
    fs::rename(&b, &c).ctx("rename b over c", &b)?;
    ensure!(!b.exists(), "b still exists after rename over c");
    ensure!(fs::metadata(&c).ctx("stat", &c)?.ino() == c_ino, "c has not taken b's inode");
    compare("c after rename over it", &read_file(&c)?, &data)?;
    let (d1, d2) = (d.join("d1"), d.join("d2"));
    fs::create_dir(&d1).ctx("mkdir", &d1)?;
    fs::write(d1.join("inner"), b"inner").ctx("write", &d1)?;
    fs::rename(&d1, &d2).ctx("rename dir", &d1)?;
    ensure!(!d1.exists(), "d1 still exists");
    compare("d2/inner", &read_file(&d2.join("inner"))?, b"inner")?;
    let kept = root.join("keep/renamed");
    fs::rename(&c, &kept).ctx("rename across directories", &c)?;
    compare("keep/renamed", &read_file(&kept)?, &data)?;
    let left: Vec<_> = fs::read_dir(&d).ctx("readdir", &d)?.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    ensure!(left == ["d2"], "rename dir holds {left:?}, expected [d2]");
    Ok(())
}

/// readdir of a 10 000-entry directory: every name seen exactly once and
/// nothing else (left behind in `vmtest/big` for the host to count).
fn case_readdir_10k(root: &Path) -> Outcome {
    let d = root.join("big");
    fs::create_dir(&d).ctx("mkdir", &d)?;
    for i in 0..BIG_DIR_ENTRIES {
        let p = d.join(big_name(i));
        OpenOptions::new().write(true).create_new(true).open(&p).ctx("create", &p)?;
    }
    let want: HashSet<String> = (0..BIG_DIR_ENTRIES).map(big_name).collect();
    let mut seen = HashSet::new();
    for e in fs::read_dir(&d).ctx("opendir", &d)? {
        let name = e.ctx("readdir", &d)?.file_name().to_string_lossy().into_owned();
        ensure!(want.contains(&name), "unexpected entry {name:?}");
        ensure!(seen.insert(name.clone()), "entry {name:?} seen twice");
    }
    ensure!(seen.len() == want.len(), "saw {} of {} entries", seen.len(), want.len());
    let n = fs::metadata(&d).ctx("stat", &d)?.nlink();
    ensure!(n == 2, "big directory has {n} links, expected 2");
    Ok(())
}

fn getxattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (cp, cn) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks
    // for the value's length only.
    let len = unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        return Err(errno());
    }
    let mut buf = vec![0u8; len as usize + 1];
    // SAFETY: the buffer is valid for writes of buf.len() bytes.
    let len = unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(errno());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

fn setxattr(p: &Path, name: &str, value: &[u8], flags: libc::c_int) -> std::io::Result<()> {
    let (cp, cn) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: both strings are NUL-terminated; the value is valid for reads
    // of value.len() bytes.
    let r = unsafe { libc::lsetxattr(cp.as_ptr(), cn.as_ptr(), value.as_ptr().cast(), value.len(), flags) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn removexattr(p: &Path, name: &str) -> std::io::Result<()> {
    let (cp, cn) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: both strings are NUL-terminated.
    let r = unsafe { libc::lremovexattr(cp.as_ptr(), cn.as_ptr()) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn listxattr(p: &Path) -> std::io::Result<Vec<String>> {
    let cp = cstr(p);
    // SAFETY: NUL-terminated path; a null buffer of size 0 asks for the length.
    let len = unsafe { libc::llistxattr(cp.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        return Err(errno());
    }
    let mut buf = vec![0u8; len as usize + 1];
    // SAFETY: the buffer is valid for writes of buf.len() bytes.
    let len = unsafe { libc::llistxattr(cp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(errno());
    }
    buf.truncate(len as usize);
    Ok(buf.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

/// xattrs: user.* set, get (exact value, small and 1000 bytes), list,
/// XATTR_CREATE on an existing name (EEXIST), XATTR_REPLACE on a missing
/// one (ENODATA), replace, remove, get after remove (ENODATA), on a file
/// and a directory; `keep/xattr` keeps `user.vmtest`.
fn case_xattr(root: &Path) -> Outcome {
    let d = case_dir(root, "xattr")?;
    let f = d.join("f");
    fs::write(&f, b"has xattrs").ctx("write", &f)?;
    let big = pattern(300, 1000);
    for target in [&f, &d] {
        let t = target.display();
        setxattr(target, "user.a", b"alpha", 0).map_err(|e| format!("set user.a on {t}: {e}"))?;
        setxattr(target, "user.big", &big, libc::XATTR_CREATE).map_err(|e| format!("set user.big on {t}: {e}"))?;
        compare("user.a", &getxattr(target, "user.a").map_err(|e| format!("get user.a on {t}: {e}"))?, b"alpha")?;
        compare("user.big", &getxattr(target, "user.big").map_err(|e| format!("get user.big on {t}: {e}"))?, &big)?;
        let names = listxattr(target).map_err(|e| format!("list on {t}: {e}"))?;
        ensure!(
            names.iter().any(|n| n == "user.a") && names.iter().any(|n| n == "user.big"),
            "list on {t} gives {names:?}"
        );
        let e = setxattr(target, "user.a", b"x", libc::XATTR_CREATE);
        ensure!(
            e.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EEXIST),
            "XATTR_CREATE on existing: {e:?}"
        );
        let e = setxattr(target, "user.missing", b"x", libc::XATTR_REPLACE);
        ensure!(
            e.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::ENODATA),
            "XATTR_REPLACE on missing: {e:?}"
        );
        setxattr(target, "user.a", b"replaced value", libc::XATTR_REPLACE)
            .map_err(|e| format!("replace on {t}: {e}"))?;
        compare(
            "user.a replaced",
            &getxattr(target, "user.a").map_err(|e| format!("get on {t}: {e}"))?,
            b"replaced value",
        )?;
        removexattr(target, "user.a").map_err(|e| format!("remove user.a on {t}: {e}"))?;
        let e = getxattr(target, "user.a");
        ensure!(e.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::ENODATA), "get after remove: {e:?}");
        let names = listxattr(target).map_err(|e| format!("list on {t}: {e}"))?;
        ensure!(!names.iter().any(|n| n == "user.a"), "user.a still listed on {t}: {names:?}");
    }
    let kept = root.join("keep/xattr");
    fs::write(&kept, b"").ctx("create", &kept)?;
    setxattr(&kept, XATTR_KEPT.0, XATTR_KEPT.1, 0).map_err(|e| format!("set {} on keep/xattr: {e}", XATTR_KEPT.0))?;
    compare("kept xattr", &getxattr(&kept, XATTR_KEPT.0).map_err(|e| format!("get kept: {e}"))?, XATTR_KEPT.1)
}

/// hard links: link counts up and down, one inode behind both names, data
/// written through one name read through the other; link to a directory
/// refused. `keep/hard1` and `keep/hard2` stay linked.
fn case_hardlink(root: &Path) -> Outcome {
    let keep = root.join("keep");
    let (h1, h2, h3) = (keep.join("hard1"), keep.join("hard2"), keep.join("hard3"));
    let data = pattern(HARD_SEED, HARD_LEN);
    fs::write(&h1, &data[..HARD_LEN / 2]).ctx("write", &h1)?;
    fs::hard_link(&h1, &h2).ctx("link", &h2)?;
    fs::hard_link(&h2, &h3).ctx("link", &h3)?;
    let (m1, m2) = (fs::metadata(&h1).ctx("stat", &h1)?, fs::metadata(&h2).ctx("stat", &h2)?);
    ensure!(m1.ino() == m2.ino(), "hard1 ino {} != hard2 ino {}", m1.ino(), m2.ino());
    ensure!(m1.nlink() == 3 && m2.nlink() == 3, "link counts {} {}, expected 3", m1.nlink(), m2.nlink());
    OpenOptions::new().append(true).open(&h2).ctx("open", &h2)?.write_all(&data[HARD_LEN / 2..]).ctx("append", &h2)?;
    compare("hard1 after append through hard2", &read_file(&h1)?, &data)?;
    fs::remove_file(&h3).ctx("unlink", &h3)?;
    let n = fs::metadata(&h1).ctx("stat", &h1)?.nlink();
    ensure!(n == 2, "link count {n} after unlink, expected 2");
    let d = case_dir(root, "hardlink")?;
    match fs::hard_link(&d, root.join("dirlink")) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
        other => Err(format!("link to a directory: {other:?}, expected EPERM")),
    }
}

/// The file system's block size (`statvfs` `f_bsize`).
fn block_size(p: &Path) -> Result<usize, String> {
    let c = cstr(p);
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path; st is valid for writes.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statvfs {}: {}", p.display(), errno()));
    }
    Ok(st.f_bsize as usize)
}

/// symlinks: readlink of short (fast, in the inode), 60-byte and long
/// targets (up to 4000 bytes; ENAMETOOLONG accepted from a target that
/// does not fit in a block), lstat vs stat, reading through a link, a
/// dangling link; `keep/link` points to `known.bin`.
fn case_symlink(root: &Path) -> Outcome {
    let d = case_dir(root, "symlink")?;
    fs::write(d.join("target"), b"through the link").ctx("write", &d.join("target"))?;
    let l = d.join("l");
    std::os::unix::fs::symlink("target", &l).ctx("symlink", &l)?;
    ensure!(fs::read_link(&l).ctx("readlink", &l)? == Path::new("target"), "readlink l");
    ensure!(fs::symlink_metadata(&l).ctx("lstat", &l)?.file_type().is_symlink(), "lstat l is not a symlink");
    ensure!(fs::metadata(&l).ctx("stat", &l)?.is_file(), "stat through l is not a file");
    compare("read through l", &read_file(&l)?, b"through the link")?;
    // ext4 keeps a target and its NUL in one block: longer ones are
    // ENAMETOOLONG (ext4_symlink), so those are only tried to get that.
    let block = block_size(&d)?;
    for len in [59usize, 60, 61, 200, 1000, 4000] {
        let target: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let p = d.join(format!("long{len}"));
        let made = std::os::unix::fs::symlink(&target, &p);
        if len >= block {
            match made {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => continue,
                Err(e) => return Err(format!("symlink with a {len}-byte target, block size {block}: {e}")),
            }
        }
        made.ctx("symlink", &p)?;
        let got = fs::read_link(&p).ctx("readlink", &p)?;
        ensure!(
            got.as_os_str().as_bytes() == target.as_bytes(),
            "readlink of a {len}-byte target gives {} bytes",
            got.as_os_str().len()
        );
        let size = fs::symlink_metadata(&p).ctx("lstat", &p)?.len();
        ensure!(size == len as u64, "lstat size {size} for a {len}-byte target");
    }
    let dangling = d.join("dangling");
    std::os::unix::fs::symlink("nowhere", &dangling).ctx("symlink", &dangling)?;
    ensure!(matches!(fs::metadata(&dangling), Err(e) if e.kind() == ErrorKind::NotFound), "dangling link resolves");
    let kept = root.join("keep/link");
    std::os::unix::fs::symlink(LINK_TARGET, &kept).ctx("symlink", &kept)?;
    ensure!(fs::read_link(&kept).ctx("readlink", &kept)? == Path::new(LINK_TARGET), "readlink keep/link");
    Ok(())
}

/// truncate: shrink keeps the prefix, extend reads zeros past the old end
/// (also in the partial block and page the shrink left), to zero and back.
fn case_truncate(root: &Path) -> Outcome {
    let p = root.join("keep/trunc.bin");
    let data = pattern(TRUNC_SEED, TRUNC_LEN);
    fs::write(&p, &data).ctx("write", &p)?;
    let f = OpenOptions::new().read(true).write(true).open(&p).ctx("open", &p)?;
    f.set_len(TRUNC_KEEP as u64).ctx("shrink", &p)?;
    ensure!(f.metadata().ctx("fstat", &p)?.len() == TRUNC_KEEP as u64, "size after shrink");
    compare("after shrink", &read_file(&p)?, &data[..TRUNC_KEEP])?;
    f.set_len(TRUNC_GROW as u64).ctx("extend", &p)?;
    let mut want = data[..TRUNC_KEEP].to_vec();
    want.resize(TRUNC_GROW, 0);
    compare("after extend", &read_file(&p)?, &want)?;
    drop(f);
    let d = case_dir(root, "truncate")?;
    let big = d.join("big");
    let data = pattern(400, 1 << 20);
    fs::write(&big, &data).ctx("write", &big)?;
    let f = OpenOptions::new().write(true).open(&big).ctx("open", &big)?;
    f.set_len(4097).ctx("shrink", &big)?;
    f.set_len(1 << 20).ctx("extend", &big)?;
    let mut want = data[..4097].to_vec();
    want.resize(1 << 20, 0);
    compare("1 MiB shrunk to 4097 and extended", &read_file(&big)?, &want)?;
    f.set_len(0).ctx("truncate to 0", &big)?;
    ensure!(read_file(&big)?.is_empty(), "not empty after truncate to 0");
    f.write_all_at(b"again", 0).ctx("write after truncate", &big)?;
    compare("written after truncate to 0", &read_file(&big)?, b"again")
}

/// fsync: fsync and fdatasync of a written file, fsync of a directory,
/// syncfs; each must succeed and the data stay readable.
fn case_fsync(root: &Path) -> Outcome {
    let d = case_dir(root, "fsync")?;
    let p = d.join("f");
    let data = pattern(500, 65536 + 3);
    let mut f = File::create(&p).ctx("create", &p)?;
    f.write_all(&data).ctx("write", &p)?;
    f.sync_all().ctx("fsync", &p)?;
    f.write_all(b"more").ctx("write", &p)?;
    f.sync_data().ctx("fdatasync", &p)?;
    File::open(&d).ctx("open dir", &d)?.sync_all().ctx("fsync dir", &d)?;
    // SAFETY: syncfs takes any open descriptor; f is open.
    ensure!(unsafe { libc::syncfs(f.as_raw_fd()) } == 0, "syncfs: {}", errno());
    let mut want = data;
    want.extend_from_slice(b"more");
    compare("after fsync", &read_file(&p)?, &want)
}

/// A shared mapping of a whole file, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(f: &File, len: usize, prot: libc::c_int) -> std::io::Result<Mapping> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint) of an
        // open descriptor; the result is checked against MAP_FAILED.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED { Err(errno()) } else { Ok(Mapping { ptr: ptr.cast(), len }) }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: ptr is a live mapping of len bytes owned by self, and the
        // borrow of self keeps it alive and unaliased in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    fn msync(&self) -> std::io::Result<()> {
        // SAFETY: the range is exactly the live mapping.
        if unsafe { libc::msync(self.ptr.cast(), self.len, libc::MS_SYNC) } == 0 { Ok(()) } else { Err(errno()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is exactly the live mapping, and no borrow of it
        // outlives self.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// mmap: MAP_SHARED write + msync, read back through read() while mapped
/// and after munmap and reopen; a read-only mapping sees data written with
/// write(). `keep/mmap.bin` keeps what the mapping wrote.
fn case_mmap(root: &Path) -> Outcome {
    let p = root.join("keep/mmap.bin");
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p).ctx("create", &p)?;
    f.set_len(MMAP_LEN as u64).ctx("set_len", &p)?;
    let want = mmap_contents();
    {
        let mut m = Mapping::new(&f, MMAP_LEN, libc::PROT_READ | libc::PROT_WRITE).ctx("mmap shared rw", &p)?;
        ensure!(m.bytes().iter().all(|&b| b == 0), "fresh mapping of a zero-filled file is not zero");
        m.bytes()[10..].copy_from_slice(&want[10..]);
        m.msync().ctx("msync", &p)?;
        let mut got = vec![0u8; MMAP_LEN];
        let n = File::open(&p).ctx("open", &p)?.read_at(&mut got, 0).ctx("pread while mapped", &p)?;
        compare("read() while mapped", &got[..n], &want)?;
    }
    drop(f);
    compare("read() after munmap and close", &read_file(&p)?, &want)?;
    // Reads through a mapping see write()'s data.
    let d = case_dir(root, "mmap")?;
    let q = d.join("written");
    let data = pattern(600, 3 * 4096 + 5);
    fs::write(&q, &data).ctx("write", &q)?;
    let f = File::open(&q).ctx("open", &q)?;
    let mut m = Mapping::new(&f, data.len(), libc::PROT_READ).ctx("mmap shared ro", &q)?;
    compare("read through a mapping", m.bytes(), &data)
}
