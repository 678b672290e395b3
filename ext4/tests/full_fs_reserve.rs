//! A full file system stays usable as the kernel's ext4 keeps it: ordinary
//! allocations leave the split reserve (`s_resv_clusters`: 2% or 4096
//! blocks, whichever is smaller) free, so punching holes that split extents
//! (and need new tree blocks) still succeeds after the disk was filled with
//! ordinary writes (generic/256); `statfs` counts the reserve as not
//! available, as the kernel's does on the same image; and writes and
//! preallocations that reuse space just freed by another file do not fail
//! with ENOSPC (generic/371). The kernel runs the same fill-and-punch on a
//! copy of the image where it can (loud skip otherwise).

mod common;

use common::kernel::Mount;
use common::tools::{assert_fsck_clean, mkfs, with_kernel_mount};
use common::{Scratch, tree};
use ext4::disk::inode::S_IFREG;
use ext4::fs::data::fallocate::FallocMode;
use ext4::fs::dir::namespace::NewInode;
use ext4::{Error, Ext4, OpenOptions, ROOT_INO};
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Runs of `RUN` data blocks, each followed by one hole.
const RUN: u64 = 3;
/// Number of runs (extents) in the fragmented file.
const RUNS: u64 = 600;

/// The source file `f`: `RUNS` extents of `RUN` blocks separated by holes.
fn fragmented_file(dir: &Path, bs: u64) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let f = File::create(dir.join("f")).unwrap();
    let len = RUNS * (RUN + 1) * bs;
    f.set_len(len).unwrap();
    let mut model = vec![0u8; len as usize];
    for i in 0..RUNS {
        let off = i * (RUN + 1) * bs;
        let data = tree::pattern(i, (RUN * bs) as usize);
        f.write_all_at(&data, off).unwrap();
        model[off as usize..(off + RUN * bs) as usize].copy_from_slice(&data);
    }
    model
}

/// The middle block of every run: punching it splits the extent in two.
fn holes(bs: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..RUNS).map(move |i| ((i * (RUN + 1) + 1) * bs, bs))
}

/// Tree blocks of inode `ino`: its blocks less its data blocks, all of
/// which lie below logical block `end`.
fn tree_blocks(fs: &Ext4, ino: u32, bs: u64, end: u64) -> u64 {
    let inode = fs.read_inode(ino).unwrap();
    let total = inode.blocks_512(false, bs as u32) * 512 / bs;
    let mut data = 0;
    let mut lblk = 0;
    while lblk < end {
        match fs.map_block(&inode, lblk).unwrap() {
            ext4::Mapping::Mapped { len, .. } => {
                data += len.min(end - lblk);
                lblk += len.max(1);
            }
            ext4::Mapping::Hole { len } => lblk += len.max(1),
        }
    }
    total - data
}

/// Fills the file system through our core with a new file of ordinary
/// writes until it reports ENOSPC, the last part a block at a time.
fn fill_ours(fs: &Ext4, bs: u64) {
    let attr = NewInode { mode: S_IFREG | 0o644, uid: 0, gid: 0, rdev: 0, umask: None };
    let ino = fs.create(ROOT_INO, b"filler", attr).unwrap().ino;
    let mut off = 0u64;
    for chunk in [1 << 20, bs] {
        let data = vec![0x5au8; chunk as usize];
        loop {
            match fs.write(ino, off, &data) {
                Ok(n) => off += n as u64,
                Err(Error::NoSpace) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
    }
    assert!(off > 0, "nothing was written");
}

/// `(f_blocks, f_bfree, f_bavail)` of the file system mounted at `dir`.
fn statvfs(dir: &Path) -> (u64, u64, u64) {
    let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and a zeroed statvfs the call fills in.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0, "statvfs {dir:?}");
        st
    };
    (st.f_blocks, st.f_bfree, st.f_bavail)
}

/// Fills the kernel-mounted file system at `mnt` with ordinary writes until
/// ENOSPC, then punches the same holes; every punch must succeed there too.
fn fill_and_punch_kernel(mnt: &Path, bs: u64, tag: &str) -> (u64, u64, u64) {
    let filler = File::create(mnt.join("filler")).unwrap();
    let mut off = 0u64;
    for chunk in [1u64 << 20, bs] {
        let data = vec![0x5au8; chunk as usize];
        while filler.write_all_at(&data, off).is_ok() {
            off += chunk;
        }
        // Delayed allocation reports ENOSPC at write time from its
        // reservations; sync so the next round sees the real counts.
        filler.sync_all().unwrap_or_else(|e| panic!("{tag}: fsync of the filler: {e}"));
    }
    let after_fill = statvfs(mnt);
    let f = std::fs::OpenOptions::new().write(true).open(mnt.join("f")).unwrap();
    for (off, len) in holes(bs) {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate(2) on an open descriptor with plain integers.
        let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
        assert_eq!(r, 0, "{tag}: the kernel's punch at {off}: {}", std::io::Error::last_os_error());
    }
    f.sync_all().unwrap();
    after_fill
}

fn punch_on_full(tag: &str, bs: u64) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    let mut model = fragmented_file(&src, bs);
    let (ours_img, kernel_img) = (scratch.join("ours.img"), scratch.join("kernel.img"));
    mkfs(&ours_img, "32M", Some(&src), &["-t", "ext4", "-b", &bs.to_string()]);
    std::fs::copy(&ours_img, &kernel_img).unwrap();

    let reserve;
    {
        let fs = Ext4::open(&ours_img, &OpenOptions::default()).unwrap();
        reserve = fs.split_reserve();
        let blocks = fs.superblock().blocks_count();
        assert_eq!(reserve, (blocks / 50).min(4096), "{tag}: the kernel's default reserve");
        let ino = fs.resolve_path(b"/f", false).unwrap();
        fill_ours(&fs, bs);
        let st = fs.statfs().unwrap();
        assert_eq!(st.free_blocks, reserve, "{tag}: ordinary writes stop at the reserve");
        assert_eq!(st.avail_blocks, 0, "{tag}: nothing is available to ordinary writes");
        let before = tree_blocks(&fs, ino, bs, RUNS * (RUN + 1));
        for (i, (off, len)) in holes(bs).enumerate() {
            fs.fallocate(ino, FallocMode::PunchHole, off, len)
                .unwrap_or_else(|e| panic!("{tag}: punch {i} at {off} on a full file system: {e}"));
            model[off as usize..(off + len) as usize].fill(0);
        }
        let after = tree_blocks(&fs, ino, bs, RUNS * (RUN + 1));
        assert!(after > before, "{tag}: the punches needed no tree block ({before} -> {after}): nothing was shown");
        // The reserve is a floor for ordinary writes only: freed blocks are ordinary again.
        fs.close().unwrap();
        common::models::reader_matches(&fs, tag, &["f".to_string()], &[ino], std::slice::from_ref(&model));
    }
    common::models::image_matches(&ours_img, &scratch, tag, &["f".to_string()], std::slice::from_ref(&model));

    // statfs of our image: ours and the kernel's (fresh read-only mount) agree.
    let ours = {
        let fs = Ext4::open(&ours_img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
        fs.statfs().unwrap()
    };
    with_kernel_mount(&ours_img, &scratch.join("mnt-statfs"), &format!("{tag}: statfs comparison"), |mnt| {
        let (blocks, bfree, bavail) = statvfs(mnt);
        assert_eq!(
            (blocks, bfree, bavail),
            (ours.blocks, ours.free_blocks, ours.avail_blocks),
            "{tag}: f_blocks, f_bfree and f_bavail, kernel vs ours"
        );
    });

    // The kernel on the copy: the same fill leaves the reserve, the same punches succeed.
    let Some(m) = Mount::or_skip(&kernel_img, &scratch.join("mnt"), "", &format!("{tag}: kernel fill and punch"))
    else {
        return;
    };
    let (_, bfree, bavail) = fill_and_punch_kernel(m.path(), bs, tag);
    eprintln!("{tag}: kernel after fill: f_bfree {bfree} f_bavail {bavail}, reserve {reserve}");
    assert!(bfree >= reserve && bavail == 0, "{tag}: the kernel also keeps the reserve from ordinary writes");
    assert!(std::fs::read(m.path().join("f")).unwrap() == model, "{tag}: the kernel's punched file differs");
    drop(m);
    assert_fsck_clean(&kernel_img);
}

#[test]
fn punch_splits_extents_on_a_full_file_system_1k() {
    punch_on_full("resv-1k", 1024);
}

#[test]
fn punch_splits_extents_on_a_full_file_system_4k() {
    punch_on_full("resv-4k", 4096);
}

/// Writes into preallocated (unwritten) space after the disk was filled:
/// each write of one block in the middle of an unwritten extent splits it
/// in three without allocating data, and the tree blocks that takes come
/// from the reserve (the kernel's reason for it: "converting unwritten
/// extents"). The kernel does the same on a copy of the image.
#[test]
fn writes_into_preallocated_space_on_a_full_file_system() {
    let (tag, bs) = ("resv-prealloc", 1024u64);
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("p"), b"").unwrap();
    let (ours_img, kernel_img) = (scratch.join("ours.img"), scratch.join("kernel.img"));
    mkfs(&ours_img, "32M", Some(&src), &["-t", "ext4", "-b", "1024"]);
    std::fs::copy(&ours_img, &kernel_img).unwrap();
    let span = RUNS * (RUN + 1) * bs;
    let writes: Vec<(u64, Vec<u8>)> =
        (0..RUNS).map(|i| ((i * (RUN + 1) + 1) * bs, tree::pattern(1000 + i, bs as usize))).collect();
    let mut model = vec![0u8; (writes.last().unwrap().0 + bs) as usize];
    for (off, data) in &writes {
        model[*off as usize..*off as usize + data.len()].copy_from_slice(data);
    }
    {
        let fs = Ext4::open(&ours_img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/p", false).unwrap();
        fs.fallocate(ino, FallocMode::KeepSize, 0, span).unwrap();
        fill_ours(&fs, bs);
        assert_eq!(fs.statfs().unwrap().free_blocks, fs.split_reserve(), "{tag}: full but the reserve");
        let before = tree_blocks(&fs, ino, bs, span / bs);
        for (i, (off, data)) in writes.iter().enumerate() {
            let n = fs.write(ino, *off, data).unwrap_or_else(|e| panic!("{tag}: write {i} at {off}: {e}"));
            assert_eq!(n, data.len(), "{tag}: short write {i}");
        }
        let after = tree_blocks(&fs, ino, bs, span / bs);
        assert!(after > before, "{tag}: the writes needed no tree block ({before} -> {after})");
        fs.close().unwrap();
        common::models::reader_matches(&fs, tag, &["p".to_string()], &[ino], std::slice::from_ref(&model));
    }
    common::models::image_matches(&ours_img, &scratch, tag, &["p".to_string()], std::slice::from_ref(&model));

    let Some(m) = Mount::or_skip(&kernel_img, &scratch.join("mnt"), "", &format!("{tag}: kernel comparison")) else {
        return;
    };
    let p = std::fs::OpenOptions::new().write(true).open(m.path().join("p")).unwrap();
    // SAFETY: fallocate(2) on an open descriptor with plain integers.
    let r = unsafe { libc::fallocate(p.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, span as i64) };
    assert_eq!(r, 0, "{tag}: the kernel's preallocation: {}", std::io::Error::last_os_error());
    let filler = File::create(m.path().join("filler")).unwrap();
    let mut off = 0u64;
    for chunk in [1u64 << 20, bs] {
        let data = vec![0x5au8; chunk as usize];
        while filler.write_all_at(&data, off).is_ok() {
            off += chunk;
        }
        filler.sync_all().unwrap();
    }
    for (off, data) in &writes {
        p.write_all_at(data, *off).unwrap_or_else(|e| panic!("{tag}: the kernel's write at {off}: {e}"));
    }
    p.sync_all().unwrap_or_else(|e| panic!("{tag}: the kernel's fsync: {e}"));
    drop((p, filler));
    drop(m);
    assert_fsck_clean(&kernel_img);
    with_kernel_mount(&kernel_img, &scratch.join("mnt2"), tag, |mnt| {
        assert!(std::fs::read(mnt.join("p")).unwrap() == model, "{tag}: the kernel's file differs");
    });
}

/// statfs on fresh images of several layouts: the total leaves out the
/// metadata overhead (as mke2fs records it in `s_overhead_clusters`), the
/// available count leaves out the root and split reserves, and all three
/// equal what a kernel mount of the same image reports.
#[test]
fn statfs_matches_the_kernel_on_several_layouts() {
    let layouts: [&[&str]; 6] = [
        &["-t", "ext4", "-b", "1024"],
        &["-t", "ext4", "-b", "4096", "-m", "1"],
        &["-t", "ext4", "-b", "4096", "-O", "^has_journal,^flex_bg"],
        &["-t", "ext4", "-b", "1024", "-O", "meta_bg,^resize_inode"],
        &["-t", "ext4", "-b", "2048", "-O", "64bit", "-I", "128"],
        &["-t", "ext3", "-b", "1024"],
    ];
    let scratch = Scratch::new("resv-statfs");
    for (i, args) in layouts.iter().enumerate() {
        let tag = format!("resv-statfs-{i} {args:?}");
        let img = scratch.join(format!("{i}.img"));
        mkfs(&img, "96M", None, args);
        let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
        let st = fs.statfs().unwrap();
        let sb = *fs.superblock();
        if sb.overhead_clusters != 0 {
            assert_eq!(st.blocks, sb.blocks_count() - sb.overhead_clusters as u64, "{tag}: mke2fs's overhead");
        }
        let r = sb.r_blocks_count() + fs.split_reserve();
        assert_eq!(st.avail_blocks, st.free_blocks.saturating_sub(r), "{tag}: available");
        drop(fs);
        with_kernel_mount(&img, &scratch.join(format!("mnt{i}")), &tag, |mnt| {
            assert_eq!(statvfs(mnt), (st.blocks, st.free_blocks, st.avail_blocks), "{tag}: kernel vs ours");
        });
    }
}

/// Zeroing a range of a file and preallocating over blocks it already has
/// need no new space, so they succeed on a full file system, as on the
/// kernel; preallocating new space fails with ENOSPC on both.
#[test]
fn zero_range_and_preallocation_on_a_full_file_system() {
    let (tag, bs) = ("resv-zero", 4096u64);
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut model = tree::pattern(77, (1000 * bs) as usize);
    std::fs::write(src.join("g"), &model).unwrap();
    let (ours_img, kernel_img) = (scratch.join("ours.img"), scratch.join("kernel.img"));
    mkfs(&ours_img, "32M", Some(&src), &["-t", "ext4", "-b", "4096"]);
    std::fs::copy(&ours_img, &kernel_img).unwrap();
    // (mode, offset, length, what the kernel answers)
    let zero = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
    let steps = [
        (zero, 100 * bs + 17, 300 * bs, 0),
        (libc::FALLOC_FL_KEEP_SIZE, 0, 1000 * bs, 0),
        (0, 2000 * bs, 100 * bs, libc::ENOSPC),
    ];
    model[(100 * bs + 17) as usize..(400 * bs + 17) as usize].fill(0);
    {
        let fs = Ext4::open(&ours_img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/g", false).unwrap();
        fill_ours(&fs, bs);
        for (mode, off, len, want) in steps {
            let m = match mode {
                libc::FALLOC_FL_KEEP_SIZE => FallocMode::KeepSize,
                0 => FallocMode::Default,
                _ => FallocMode::ZeroRange { keep_size: true },
            };
            let r = fs.fallocate(ino, m, off, len);
            match want {
                0 => r.unwrap_or_else(|e| panic!("{tag}: {m:?} at {off} on a full file system: {e}")),
                _ => assert!(matches!(r, Err(Error::NoSpace)), "{tag}: {m:?} at {off}: {r:?}"),
            }
        }
        // A failed preallocation may keep what it got (as the kernel): size is kept by the model's length.
        let inode = fs.read_inode(ino).unwrap();
        model.resize(inode.size() as usize, 0);
        fs.close().unwrap();
        common::models::reader_matches(&fs, tag, &["g".to_string()], &[ino], std::slice::from_ref(&model));
    }
    common::models::image_matches(&ours_img, &scratch, tag, &["g".to_string()], std::slice::from_ref(&model));
    let Some(m) = Mount::or_skip(&kernel_img, &scratch.join("mnt"), "", &format!("{tag}: kernel comparison")) else {
        return;
    };
    {
        let filler = File::create(m.path().join("filler")).unwrap();
        let mut off = 0u64;
        for chunk in [1u64 << 20, bs] {
            let data = vec![0x5au8; chunk as usize];
            while filler.write_all_at(&data, off).is_ok() {
                off += chunk;
            }
            filler.sync_all().unwrap();
        }
        let g = std::fs::OpenOptions::new().write(true).open(m.path().join("g")).unwrap();
        for (mode, off, len, want) in steps {
            // SAFETY: fallocate(2) on an open descriptor with plain integers.
            let r = unsafe { libc::fallocate(g.as_raw_fd(), mode, off as i64, len as i64) };
            let errno = if r == 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) };
            assert_eq!(errno, want, "{tag}: the kernel's fallocate mode {mode:#x} at {off}");
        }
        g.sync_all().unwrap();
        let got = std::fs::read(m.path().join("g")).unwrap();
        assert!(got[..model.len().min(got.len())] == model[..model.len().min(got.len())], "{tag}: the kernel's bytes");
    }
    drop(m);
    assert_fsck_clean(&kernel_img);
}

/// File systems without extents (ext3) keep no reserve, as the kernel's.
#[test]
fn no_reserve_without_extents() {
    let scratch = Scratch::new("resv-ext3");
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", None, &["-t", "ext3", "-b", "1024"]);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    assert_eq!(fs.split_reserve(), 0);
    fill_ours(&fs, 1024);
    assert_eq!(fs.statfs().unwrap().free_blocks, 0, "ext3: ordinary writes take every block");
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
}

/// generic/371: a write loop and a preallocation loop, each of 80 MiB
/// followed by unlink, in parallel on a 256 MiB file system: together they
/// never need more than the free space, counting space the other just
/// freed, so neither may fail with ENOSPC (the blocks an unlink frees are
/// reused once its transaction commits; the reserve does not change that).
#[test]
fn write_and_fallocate_loops_reuse_freed_space() {
    let scratch = Scratch::new("resv-371");
    let img = scratch.join("fs.img");
    mkfs(&img, "256M", None, &["-t", "ext4", "-b", "4096"]);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let size = 80u64 << 20;
    let attr = NewInode { mode: S_IFREG | 0o644, uid: 0, gid: 0, rdev: 0, umask: None };
    std::thread::scope(|s| {
        let fs = &fs;
        s.spawn(move || {
            let chunk = vec![0xa5u8; 1 << 20];
            for round in 0..8 {
                let ino = fs.create(ROOT_INO, b"testfile1", attr).unwrap().ino;
                for off in (0..size).step_by(chunk.len()) {
                    let n = fs.write(ino, off, &chunk).unwrap_or_else(|e| panic!("write round {round} at {off}: {e}"));
                    assert_eq!(n, chunk.len(), "short write in round {round} at {off}");
                }
                fs.fsync().unwrap();
                fs.unlink(ROOT_INO, b"testfile1").unwrap();
            }
        });
        s.spawn(move || {
            for round in 0..8 {
                let ino = fs.create(ROOT_INO, b"testfile2", attr).unwrap().ino;
                fs.fallocate(ino, FallocMode::Default, 0, size)
                    .unwrap_or_else(|e| panic!("fallocate round {round}: {e}"));
                fs.fsync().unwrap();
                fs.unlink(ROOT_INO, b"testfile2").unwrap();
            }
        });
    });
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
}
