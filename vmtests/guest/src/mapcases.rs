//! The mmap cases (`map_*`): shared mappings of files the host prepared in
//! the image (`pre/`, see `pattern::pre_files`) and of files the cases
//! make, compared with `read()` and with the contents both sides know.
//! Under a DAX mount (`-o dax=always|inode`) these pages come from the
//! virtio-fs cache window, i.e. from the daemon's SHMEM_MAPs of the image;
//! without DAX from the guest's page cache. The cases judge contents only;
//! the host judges from `VMINFO` lines, the daemon's counters and the
//! image whether DAX was used.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::pattern::{self, Layout, PRE_DIR, PreFile};
use crate::{Ctx, Mapping, Outcome, compare, cstr, errno, read_file, say};

/// The DAX mode of the mount of `mnt` as /proc/mounts shows it
/// (`always`, `inode`, `never`), or `None` when it shows none.
fn dax_mode(mnt: &Path) -> Option<String> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    let line = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some(&*mnt.to_string_lossy()))?;
    let opts = line.split_whitespace().nth(3)?;
    opts.split(',').find_map(|o| o.strip_prefix("dax=")).map(String::from)
}

/// The mount point: the case root is `MNT/vmtest`.
fn mnt_of(root: &Path) -> &Path {
    root.parent().expect("the case root has a parent")
}

fn pre(root: &Path, name: &str) -> PathBuf {
    mnt_of(root).join(PRE_DIR).join(name)
}

/// `statx` attributes of a path (`STATX_ATTR_*`).
fn statx_attributes(p: &Path) -> Result<u64, String> {
    let c = cstr(p);
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path; st is valid for writes.
    let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_BASIC_STATS, &mut st) };
    if r != 0 {
        return Err(format!("statx {}: {}", p.display(), errno()));
    }
    Ok(st.stx_attributes & st.stx_attributes_mask)
}

/// `STATX_ATTR_DAX`: the file's pages are served through DAX.
const STATX_ATTR_DAX: u64 = 0x0020_0000;

/// Whether `statx` shows the DAX attribute on `p`.
pub fn is_dax(p: &Path) -> Result<bool, String> {
    Ok(statx_attributes(p)? & STATX_ATTR_DAX != 0)
}

/// A mapping of `len` bytes of `p` (read-only or read-write).
fn map(p: &Path, len: usize, write: bool) -> Result<(File, Mapping), String> {
    let f = OpenOptions::new().read(true).write(write).open(p).ctx("open", p)?;
    let prot = if write { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
    let m = Mapping::new(&f, len, prot).ctx("mmap", p)?;
    Ok((f, m))
}

/// Maps a prepared file whole and compares the mapping with `read()` and
/// with its known contents.
fn check_pre(root: &Path, f: &PreFile) -> Outcome {
    let p = pre(root, f.name);
    let want = f.contents();
    compare(&format!("read() of {}", f.name), &read_file(&p)?, &want)?;
    if want.is_empty() {
        let file = File::open(&p).ctx("open", &p)?;
        match Mapping::new(&file, 0, libc::PROT_READ) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => return Err(format!("mmap of 0 bytes: {:?}, expected EINVAL", other.map(|_| ()))),
        }
        // A page of an empty file maps (touching it would be SIGBUS).
        Mapping::new(&file, 4096, libc::PROT_READ).ctx("mmap a page of an empty file", &p)?;
        return Ok(());
    }
    let (_file, mut m) = map(&p, want.len(), false)?;
    compare(&format!("mapping of {}", f.name), m.bytes(), &want)
}

/// map_dax_attr: `statx` shows `STATX_ATTR_DAX` exactly on the files the
/// mount serves through DAX: all regular files with `dax=always`, the
/// flagged ones with `dax=inode`, none otherwise. Reports the mode.
pub fn case_dax_attr(root: &Path) -> Outcome {
    let mode = dax_mode(mnt_of(root));
    say(&format!("VMINFO map_dax_attr mode {}", mode.as_deref().unwrap_or("none")));
    let mut dax_files = 0;
    for f in pattern::pre_files() {
        let p = pre(root, f.name);
        let dax = is_dax(&p)?;
        let want = match mode.as_deref() {
            Some("always") => true,
            Some("inode") => f.dax_flag,
            _ => false,
        };
        ensure!(dax == want, "{}: STATX_ATTR_DAX {dax}, expected {want} under dax={mode:?}", f.name);
        dax_files += usize::from(dax);
    }
    say(&format!("VMINFO map_dax_attr dax_files {dax_files}"));
    Ok(())
}

/// map_inline: inline files (60 and 61 bytes) read through MAP_SHARED;
/// `pre/inline_rw` written through a writable mapping, msync, munmap, and
/// read back with `read()` (the host checks the image afterwards: under
/// DAX the file is extent-mapped by then).
pub fn case_inline(root: &Path) -> Outcome {
    for f in pattern::pre_files().iter().filter(|f| matches!(f.name, "inline60" | "inline61" | "one")) {
        check_pre(root, f)?;
    }
    let rw = pattern::pre_files().into_iter().find(|f| f.name == "inline_rw").expect("inline_rw");
    let p = pre(root, rw.name);
    let old = rw.contents();
    let new = pattern::inline_rw_after();
    {
        let (_f, mut m) = map(&p, old.len(), true)?;
        compare("inline_rw through its writable mapping", m.bytes(), &old)?;
        m.bytes().copy_from_slice(&new);
        m.msync().ctx("msync", &p)?;
    }
    compare("read() of inline_rw after the mapping's store", &read_file(&p)?, &new)?;
    let (_f, mut m) = map(&p, new.len(), false)?;
    compare("a new mapping of inline_rw", m.bytes(), &new)
}

/// map_sizes: files of 0, 1, 60, 61 bytes, 4 KiB and 3 MiB + 123 (more
/// than one 2 MiB range, an unaligned tail) through their mappings.
pub fn case_sizes(root: &Path) -> Outcome {
    for f in pattern::pre_files().iter().filter(|f| matches!(f.layout, Layout::Data(n) if n < (4 << 20))) {
        if f.name != "inline_rw" {
            check_pre(root, f)?;
        }
    }
    Ok(())
}

/// map_sparse_extents: a sparse file (holes read as zeros, data across a
/// 2 MiB border) and a file of several extents through their mappings.
pub fn case_sparse_extents(root: &Path) -> Outcome {
    for f in pattern::pre_files().iter().filter(|f| matches!(f.layout, Layout::Sparse(..) | Layout::Fragmented(_))) {
        check_pre(root, f)?;
    }
    Ok(())
}

/// map_grow: a 100-byte file mapped (two pages), grown by `write()` to
/// 6000 bytes, read through the mapping it already had; then grown past
/// 2 MiB and read through a mapping of the whole.
pub fn case_grow(root: &Path) -> Outcome {
    let d = crate::case_dir(root, "map_grow")?;
    let p = d.join("grown");
    let data = pattern::pattern(40, (2 << 20) + 4096 + 7);
    fs::write(&p, &data[..100]).ctx("write", &p)?;
    let (f, mut m) = map(&p, 8192, false)?;
    compare("100-byte file through its mapping", &m.bytes()[..100], &data[..100])?;
    let w = OpenOptions::new().write(true).open(&p).ctx("open", &p)?;
    w.write_all_at(&data[100..6000], 100).ctx("pwrite", &p)?;
    compare("grown to 6000, through the old mapping", &m.bytes()[..6000], &data[..6000])?;
    compare("tail of the grown file's last page", &m.bytes()[6000..8192], &[0u8; 2192])?;
    drop(m);
    drop(f);
    w.write_all_at(&data[6000..], 6000).ctx("pwrite", &p)?;
    let (_f, mut m) = map(&p, data.len(), false)?;
    compare("grown past 2 MiB, through a new mapping", m.bytes(), &data)
}

/// map_coherence: a store through one mapping is seen by `read()` and by a
/// second process's own mapping (fork); the child's store is seen by the
/// parent's mapping; a `write()` is seen through the existing mappings.
pub fn case_coherence(root: &Path) -> Outcome {
    let d = crate::case_dir(root, "map_coherence")?;
    let p = d.join("shared");
    let len = (2 << 20) + 8192;
    let data = pattern::pattern(41, len);
    fs::write(&p, &data).ctx("write", &p)?;
    let (f, mut m) = map(&p, len, true)?;
    compare("before", m.bytes(), &data)?;
    let at = (2 << 20) - 3; // across the 2 MiB border
    m.bytes()[at..at + 6].copy_from_slice(b"PARENT");
    let mut got = [0u8; 6];
    f.read_exact_at(&mut got, at as u64).ctx("pread", &p)?;
    compare("read() of the parent's store", &got, b"PARENT")?;

    let (to_child, from_parent) = pipe()?;
    let (to_parent, from_child) = pipe()?;
    // SAFETY: this program is single-threaded; the child only uses
    // syscalls, its own mapping and the pipes, then _exit()s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", errno()));
    }
    if pid == 0 {
        let code = child(&p, len, at, from_parent, to_parent);
        // SAFETY: _exit ends the child without running the parent's
        // destructors or unwinding.
        unsafe { libc::_exit(code) };
    }
    // The child checks "PARENT", stores "CHILD!" 4096 further and says so.
    let r = (|| -> Outcome {
        write_byte(to_child, b'1')?;
        ensure!(read_byte(from_child)? == b'2', "the child did not see the parent's store");
        compare("the child's store in the parent's mapping", &m.bytes()[at + 4096..at + 4102], b"CHILD!")?;
        let mut got = [0u8; 6];
        f.read_exact_at(&mut got, (at + 4096) as u64).ctx("pread", &p)?;
        compare("read() of the child's store", &got, b"CHILD!")?;
        // write() after both mappings exist: seen through both.
        OpenOptions::new().write(true).open(&p).ctx("open", &p)?.write_all_at(b"WRITE()", 10).ctx("pwrite", &p)?;
        compare("write() through the parent's mapping", &m.bytes()[10..17], b"WRITE()")?;
        write_byte(to_child, b'3')?;
        ensure!(read_byte(from_child)? == b'4', "the child did not see write()'s bytes");
        Ok(())
    })();
    let mut status = 0;
    // SAFETY: waits for the child forked above; status is valid for writes.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    for fd in [to_child, from_parent, to_parent, from_child] {
        // SAFETY: closing descriptors this case opened.
        unsafe { libc::close(fd) };
    }
    r?;
    ensure!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child failed: status {status:#x}");
    m.msync().ctx("msync", &p)?;
    let mut want = data;
    want[at..at + 6].copy_from_slice(b"PARENT");
    want[at + 4096..at + 4102].copy_from_slice(b"CHILD!");
    want[10..17].copy_from_slice(b"WRITE()");
    compare("read() after all stores", &read_file(&p)?, &want)
}

/// The forked child of [`case_coherence`]: exit code 0 when all it saw was right.
fn child(p: &Path, len: usize, at: usize, rx: i32, tx: i32) -> i32 {
    let Ok((_f, mut m)) = map(p, len, true) else { return 10 };
    if read_byte(rx) != Ok(b'1') {
        return 11;
    }
    if &m.bytes()[at..at + 6] != b"PARENT" {
        return 12;
    }
    m.bytes()[at + 4096..at + 4102].copy_from_slice(b"CHILD!");
    if write_byte(tx, b'2').is_err() || read_byte(rx) != Ok(b'3') {
        return 13;
    }
    if &m.bytes()[10..17] != b"WRITE()" {
        return 14;
    }
    if m.msync().is_err() || write_byte(tx, b'4').is_err() {
        return 15;
    }
    0
}

fn pipe() -> Result<(i32, i32), String> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is valid for two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", errno()));
    }
    Ok((fds[1], fds[0]))
}

fn write_byte(fd: i32, b: u8) -> Result<(), String> {
    // SAFETY: one byte from a local.
    if unsafe { libc::write(fd, (&b as *const u8).cast(), 1) } == 1 {
        Ok(())
    } else {
        Err(format!("pipe write: {}", errno()))
    }
}

fn read_byte(fd: i32) -> Result<u8, String> {
    let mut b = 0u8;
    // SAFETY: one byte into a local.
    if unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) } == 1 {
        Ok(b)
    } else {
        Err(format!("pipe read: {}", errno()))
    }
}

/// map_truncate: a mapped 3 MiB file truncated to 5000 bytes (the mapping
/// keeps the prefix, the rest of the last page reads zeros), extended with
/// ftruncate to 3 MiB (zeros through the same mapping), written through it
/// past 2 MiB; a mapped file unlinked stays readable and writable through
/// its mapping until munmap, and is gone afterwards.
pub fn case_truncate(root: &Path) -> Outcome {
    let d = crate::case_dir(root, "map_truncate")?;
    let p = d.join("t");
    let len = 3 << 20;
    let data = pattern::pattern(42, len);
    fs::write(&p, &data).ctx("write", &p)?;
    let (f, mut m) = map(&p, len, true)?;
    compare("before truncate", m.bytes(), &data)?;
    f.set_len(5000).ctx("ftruncate 5000", &p)?;
    compare("read() after truncate", &read_file(&p)?, &data[..5000])?;
    compare("the mapping after truncate", &m.bytes()[..5000], &data[..5000])?;
    compare("the last page's tail after truncate", &m.bytes()[5000..8192], &[0u8; 3192])?;
    f.set_len(len as u64).ctx("ftruncate-extend", &p)?;
    let mut want = data[..5000].to_vec();
    want.resize(len, 0);
    compare("the old mapping after ftruncate-extend", m.bytes(), &want)?;
    let at = (2 << 20) + 77;
    m.bytes()[at..at + 5].copy_from_slice(b"AFTER");
    want[at..at + 5].copy_from_slice(b"AFTER");
    m.msync().ctx("msync", &p)?;
    compare("read() after storing into the extended file", &read_file(&p)?, &want)?;
    drop(m);
    drop(f);

    let u = d.join("unlinked");
    let data = pattern::pattern(43, 64 << 10);
    fs::write(&u, &data).ctx("write", &u)?;
    let (f, mut m) = map(&u, data.len(), true)?;
    compare("before unlink", m.bytes(), &data)?;
    drop(f);
    fs::remove_file(&u).ctx("unlink", &u)?;
    ensure!(fs::metadata(&u).is_err(), "the unlinked file is still there");
    compare("the mapping after unlink", m.bytes(), &data)?;
    m.bytes()[100..105].copy_from_slice(b"STORE");
    compare("a store after unlink", &m.bytes()[100..105], b"STORE")?;
    m.msync().ctx("msync after unlink", &u)?;
    drop(m);
    ensure!(fs::metadata(&u).is_err(), "the unlinked file came back");
    Ok(())
}

/// map_reclaim: the six 16 MiB files (three times a 32 MiB window) mapped
/// at once and verified, twice, in opposite orders: with a small DAX
/// window the guest must reclaim ranges (REMOVEMAPPING) while the contents
/// stay right; a store into each, msync, read back after all were touched.
pub fn case_reclaim(root: &Path) -> Outcome {
    let files: Vec<PreFile> =
        pattern::pre_files().into_iter().filter(|f| f.size() == pattern::RECLAIM_FILE_LEN).collect();
    let mut maps = Vec::new();
    for f in &files {
        let (file, m) = map(&pre(root, f.name), f.size(), true)?;
        maps.push((file, m, f));
    }
    for pass in 0..2 {
        let order: Vec<usize> = if pass == 0 { (0..maps.len()).collect() } else { (0..maps.len()).rev().collect() };
        for i in order {
            let (_, m, f) = &mut maps[i];
            let want = f.contents();
            compare(&format!("pass {pass}: mapping of {}", f.name), m.bytes(), &want)?;
        }
    }
    // A store near the end of each file (its last 2 MiB range); the data is
    // restored afterwards so the files keep their known contents.
    for (file, m, f) in &mut maps {
        let at = f.size() - 4096 - 9;
        let old: Vec<u8> = m.bytes()[at..at + 9].to_vec();
        m.bytes()[at..at + 9].copy_from_slice(b"RECLAIMED");
        m.msync().map_err(|e| format!("msync {}: {e}", f.name))?;
        let mut got = [0u8; 9];
        file.read_exact_at(&mut got, at as u64).map_err(|e| format!("pread {}: {e}", f.name))?;
        compare(&format!("read() of the store into {}", f.name), &got, b"RECLAIMED")?;
        m.bytes()[at..at + 9].copy_from_slice(&old);
        m.msync().map_err(|e| format!("msync {}: {e}", f.name))?;
    }
    for (_, m, f) in &mut maps {
        compare(&format!("after the stores: mapping of {}", f.name), m.bytes(), &f.contents())?;
    }
    Ok(())
}

/// map_eof_tail: stores past EOF in the last page of a writable mapping
/// (allowed, never file data) do not become file data: after msync and
/// munmap `read()` shows the old size and bytes, and after an
/// ftruncate-extend the bytes past the old EOF read as zeros, through
/// `read()` and through a new mapping.
pub fn case_eof_tail(root: &Path) -> Outcome {
    let d = crate::case_dir(root, "map_eof_tail")?;
    let p = d.join("tail");
    let data = pattern::pattern(44, 5000);
    fs::write(&p, &data).ctx("write", &p)?;
    {
        let (_f, mut m) = map(&p, 8192, true)?;
        compare("before the stores", &m.bytes()[..5000], &data)?;
        compare("past EOF in the last page", &m.bytes()[5000..], &[0u8; 3192])?;
        m.bytes()[5000..].fill(b'X');
        m.msync().ctx("msync", &p)?;
    }
    compare("read() after stores past EOF", &read_file(&p)?, &data)?;
    OpenOptions::new().write(true).open(&p).ctx("open", &p)?.set_len(8192).ctx("ftruncate-extend", &p)?;
    let mut want = data.clone();
    want.resize(8192, 0);
    compare("read() after extending over the stores", &read_file(&p)?, &want)?;
    let (_f, mut m) = map(&p, 8192, false)?;
    compare("a new mapping after extending over the stores", m.bytes(), &want)
}

/// map_hole_store: a hole seen through a read-only mapping (zeros), then
/// filled by a store through a writable mapping of the same range: the
/// read-only mapping, `read()` and a second process's read-only mapping see
/// the stored bytes (under DAX the guest upgrades its window range to
/// writable, and the daemon must put the new block where the zeros were).
pub fn case_hole_store(root: &Path) -> Outcome {
    let d = crate::case_dir(root, "map_hole_store")?;
    let p = d.join("holes");
    let len = 3 << 20;
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p).ctx("create", &p)?;
    f.set_len(len as u64).ctx("ftruncate", &p)?;
    f.write_all_at(b"head", 0).ctx("pwrite", &p)?;
    f.write_all_at(b"tail", (len - 4) as u64).ctx("pwrite", &p)?;
    let (_ro_file, mut ro) = map(&p, len, false)?;
    let at = (1 << 20) + 4096 * 3 + 11;
    compare("the hole through the read-only mapping", &ro.bytes()[at - 11..at + 4096], &vec![0u8; 4096 + 11])?;
    {
        let (_f, mut rw) = map(&p, len, true)?;
        rw.bytes()[at..at + 4].copy_from_slice(b"HOLE");
        rw.msync().ctx("msync", &p)?;
    }
    compare("the store through the read-only mapping", &ro.bytes()[at..at + 4], b"HOLE")?;
    let mut got = [0u8; 4];
    f.read_exact_at(&mut got, at as u64).ctx("pread", &p)?;
    compare("read() of the store", &got, b"HOLE")?;
    compare("the rest of that page", &ro.bytes()[at - 11..at], &[0u8; 11])?;
    let bytes = ro.bytes();
    compare("the file's ends", &[&bytes[..4], &bytes[len - 4..]].concat(), b"headtail")
}

/// map_read_only_image: on a read-only share (`serve --read-only`), every
/// prepared file but the big ones reads right through a read-only
/// mapping, inline files included (they cannot be converted there), and a
/// writable open is EROFS.
pub fn case_read_only_image(root: &Path) -> Outcome {
    for f in pattern::pre_files().iter().filter(|f| f.size() < pattern::RECLAIM_FILE_LEN) {
        check_pre(root, f)?;
    }
    let p = pre(root, "inline60");
    match OpenOptions::new().read(true).write(true).open(&p) {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => Ok(()),
        other => Err(format!("open O_RDWR on a read-only share: {:?}, expected EROFS", other.map(|_| ()))),
    }
}
