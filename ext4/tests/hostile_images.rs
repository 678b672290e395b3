//! Acceptance: hostile images. Every byte of the metadata of a small image
//! is flipped, one at a time, and the image is truncated at every block
//! boundary; a full walk of the file system (open, resolve, stat, read,
//! list, xattrs, link targets) must then return errors or correct data:
//! never panic, never loop, never allocate without bound.
//!
//! With metadata_csum every flip of a checksummed byte must be caught, so
//! "correct data" is checked strictly: whatever reads succeed equal the
//! pristine image's. Without checksums a flipped pointer can silently change
//! data, so there only the absence of panics, hangs and huge allocations is
//! checked.

mod common;

use common::tools::mkfs;
use common::{Scratch, tree};
use ext4::io::{BlockDevice, MemDevice};
use ext4::{Ext4, OpenOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Records the largest single allocation, to show no allocation is sized by
/// an unchecked on-disk number.
struct MaxAlloc;

thread_local! {
    /// Largest allocation made by this thread since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: allocations during thread teardown have no slot to record in.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for MaxAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as for alloc/dealloc.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: MaxAlloc = MaxAlloc;

/// No allocation during a walk may exceed this (the images are 4 MiB).
const ALLOC_LIMIT: usize = 8 << 20;
/// Bytes read per file in a walk (the fixture's files are smaller, except
/// the sparse one whose far block is read separately).
const READ_LIMIT: u64 = 64 << 10;
/// Entries visited per walk, so a corrupt image cannot make the walk itself endless.
const ENTRY_LIMIT: usize = 2000;

/// What a walk saw at each path: a rendering of everything read, or the error.
type Snapshot = BTreeMap<Vec<u8>, Result<String, String>>;

fn describe(fs: &Ext4, ino: u32, path: &[u8], todo: &mut Vec<(Vec<u8>, u32)>) -> Result<String, ext4::Error> {
    let inode = fs.read_live_inode(ino)?;
    let mut s = format!(
        "mode {:o} uid {} gid {} size {} links {} mtime {:?}\n",
        inode.mode(),
        inode.uid(),
        inode.gid(),
        inode.size(),
        inode.links_count(),
        inode.mtime()
    );
    for x in fs.list_xattrs(&inode)? {
        s += &format!("xattr {:?}={:?}\n", x.name, x.value);
    }
    if inode.is_dir() {
        let mut entries = Vec::new();
        fs.read_dir(&inode, 0, &mut |e, _| {
            entries.push(e.clone());
            entries.len() < ENTRY_LIMIT
        })?;
        for e in entries {
            s += &format!("entry {:?} -> {} type {}\n", e.name, e.ino, e.file_type);
            if e.name != b"." && e.name != b".." {
                let mut child = path.to_vec();
                child.push(b'/');
                child.extend_from_slice(&e.name);
                todo.push((child, e.ino));
            }
        }
    } else if inode.is_symlink() {
        s += &format!("target {:?}\n", fs.read_link(&inode)?);
    } else if inode.is_reg() {
        let len = inode.size().min(READ_LIMIT);
        let mut off = 0;
        let mut buf = vec![0u8; 65536];
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        while off < len {
            let n = fs.read(&inode, off, &mut buf[..(len - off).min(65536) as usize])?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
            off += n as u64;
        }
        // The far end of big sparse files: last block before EOF.
        if inode.size() > READ_LIMIT {
            let tail = inode.size().saturating_sub(4096);
            let n = fs.read(&inode, tail, &mut buf[..4096])?;
            for &b in &buf[..n] {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        s += &format!("data {off} bytes hash {h:x}\n");
    }
    Ok(s)
}

/// A damaged view of a pristine image: truncated to `len` bytes, with the
/// byte at `flip` (if any) inverted. Avoids copying the image per case.
struct Damaged {
    base: Arc<Vec<u8>>,
    len: usize,
    flip: Option<usize>,
}

impl BlockDevice for Damaged {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> ext4::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.len);
        let Some(end) = start.and_then(|s| s.checked_add(buf.len())).filter(|&e| e <= self.len) else {
            return Err(ext4::Error::Io { offset, source: std::io::ErrorKind::UnexpectedEof.into() });
        };
        let start = offset as usize;
        buf.copy_from_slice(&self.base[start..end]);
        if let Some(at) = self.flip.filter(|&at| (start..end).contains(&at)) {
            buf[at - start] ^= 0xFF;
        }
        Ok(())
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> ext4::Result<()> {
        Err(ext4::Error::ReadOnly)
    }
    fn flush(&self) -> ext4::Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len as u64
    }
}

/// Walks the whole tree; also resolves every path by name, as FUSE lookups would.
fn walk(image: Damaged) -> Result<Snapshot, String> {
    let fs = Ext4::open_device(
        Arc::new(image),
        &OpenOptions { read_only: true, cache_bytes: 1 << 20, ..OpenOptions::default() },
    )
    .map_err(|e| e.to_string())?;
    let mut snap = Snapshot::new();
    let mut todo = vec![(Vec::new(), ext4::ROOT_INO)];
    while let Some((path, ino)) = todo.pop() {
        if snap.len() >= ENTRY_LIMIT || snap.contains_key(&path) {
            continue;
        }
        if !path.is_empty() {
            match fs.resolve_path(&path, false) {
                Ok(i) if i == ino => {}
                Ok(i) => {
                    snap.insert(path.clone(), Ok(format!("resolves to {i}, listed as {ino}")));
                    continue;
                }
                Err(e) => {
                    snap.insert(path.clone(), Err(e.to_string()));
                    continue;
                }
            }
        }
        let r = describe(&fs, ino, &path, &mut todo).map_err(|e| e.to_string());
        snap.insert(path, r);
    }
    Ok(snap)
}

struct Fixture {
    _scratch: Scratch,
    image: Arc<Vec<u8>>,
    metadata_blocks: Vec<u64>,
    block_size: usize,
}

fn fixture(tag: &str, args: &[&str]) -> Fixture {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    fs::create_dir(&src).unwrap();
    // A small tree with every structure: inline files, extent trees deeper
    // than the inode, indirect blocks, an htree directory, an xattr block,
    // three kinds of symlinks.
    for n in [0usize, 1, 60, 61, 200] {
        fs::write(src.join(format!("f{n}")), tree::pattern(n as u64, n)).unwrap();
    }
    let frag = fs::File::create(src.join("frag")).unwrap();
    for i in 0..8u64 {
        frag.write_all_at(&tree::pattern(i, 1024), i * 2048).unwrap();
    }
    frag.write_all_at(b"far away", 80 << 20).unwrap();
    drop(frag);
    fs::write(src.join("medium"), tree::pattern(3, 40_000)).unwrap();
    let dir = src.join("dir");
    fs::create_dir(&dir).unwrap();
    for i in 0..60 {
        fs::write(dir.join(format!("a-rather-long-file-name-number-{i:03}")), b"").unwrap();
    }
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::write(src.join("a/b/c/leaf"), b"leaf").unwrap();
    std::os::unix::fs::symlink("f1", src.join("fast")).unwrap();
    std::os::unix::fs::symlink("x".repeat(70), src.join("medium_link")).unwrap();
    std::os::unix::fs::symlink("y/".repeat(300), src.join("slow_link")).unwrap();
    tree::set_xattr(&src.join("f1"), "user.big", &tree::pattern(9, 700));
    tree::set_xattr(&src.join("f1"), "user.small", b"s");

    let img_path = scratch.join("fs.img");
    mkfs(&img_path, "4M", Some(&src), args);
    let image = Arc::new(fs::read(&img_path).unwrap());

    // Metadata blocks: every in-use block that is not regular-file data.
    let fs = Ext4::open_device(
        Arc::new(MemDevice::new(image.to_vec())),
        &OpenOptions { read_only: true, ..Default::default() },
    )
    .unwrap();
    let bs = fs.block_size() as usize;
    let geo = fs.geometry().clone();
    let mut used = BTreeSet::new();
    for g in 0..geo.group_count {
        let bitmap = fs.read_block_bitmap(g).unwrap().expect("initialised bitmap");
        for i in 0..geo.blocks_in_group(g) as u64 {
            if bitmap[(i / 8) as usize] & (1 << (i % 8)) != 0 {
                used.insert(geo.group_first_block(g) + i);
            }
        }
    }
    used.insert(0);
    let pristine = walk(Damaged { base: image.clone(), len: image.len(), flip: None }).unwrap();
    for (path, r) in &pristine {
        assert!(r.is_ok(), "{tag}: pristine image fails at {path:?}: {r:?}");
        let ino = fs.resolve_path(path, false).unwrap();
        let inode = fs.read_inode(ino).unwrap();
        // File data (regular files and slow symlinks) carries no checksum in
        // ext4, so a flipped data byte is undetectable by design: only
        // metadata is flipped.
        let has_blocks = inode.is_reg() || (inode.is_symlink() && inode.size() >= 60);
        if has_blocks && !inode.has_flag(ext4::disk::inode::FL_INLINE_DATA) {
            for e in fs.file_extents(&inode).unwrap() {
                for b in e.pblk..e.pblk + e.len {
                    used.remove(&b);
                }
            }
        }
    }
    Fixture { _scratch: scratch, image, metadata_blocks: used.into_iter().collect(), block_size: bs }
}

fn check(pristine: &Snapshot, image: Damaged, strict: bool, what: &str) {
    LARGEST.with(|l| l.set(0));
    let result = walk(image);
    let largest = LARGEST.with(|l| l.get());
    assert!(largest <= ALLOC_LIMIT, "{what}: allocation of {largest} bytes");
    let Ok(snap) = result else { return };
    if strict {
        for (path, r) in &snap {
            if let Ok(seen) = r {
                assert_eq!(
                    Some(&Ok(seen.clone())),
                    pristine.get(path),
                    "{what}: wrong data at {path:?} read without error"
                );
            }
        }
    }
}

fn flip_every_byte(tag: &str, args: &[&str], strict: bool) {
    let fx = fixture(tag, args);
    let pristine = walk(Damaged { base: fx.image.clone(), len: fx.image.len(), flip: None }).unwrap();
    // Every byte of every metadata block, each flipped (xor 0xff) on its own.
    let mut offsets = Vec::new();
    for &blk in &fx.metadata_blocks {
        let start = blk as usize * fx.block_size;
        // Block 0 of a 1 KiB file system is the boot block; only the
        // superblock in its second KiB matters for larger blocks.
        let range = if blk == 0 && fx.block_size > 1024 {
            1024..2048
        } else if blk == 0 {
            continue;
        } else {
            0..fx.block_size
        };
        offsets.extend(range.map(|i| (blk, start + i)));
    }
    let flips = offsets.len();
    // Two workers (the machines have two cores); each checks a share.
    std::thread::scope(|s| {
        for part in offsets.chunks(offsets.len().div_ceil(2)) {
            let (fx, pristine) = (&fx, &pristine);
            s.spawn(move || {
                for &(blk, at) in part {
                    let img = Damaged { base: fx.image.clone(), len: fx.image.len(), flip: Some(at) };
                    check(pristine, img, strict, &format!("{tag}: block {blk} byte {}", at % fx.block_size));
                }
            });
        }
    });
    println!("{tag}: {flips} single-byte corruptions over {} metadata blocks", fx.metadata_blocks.len());
    assert!(flips > 10_000, "{tag}: too few metadata bytes found ({flips})");
}

fn truncate_everywhere(tag: &str, args: &[&str]) {
    let fx = fixture(tag, args);
    let pristine = walk(Damaged { base: fx.image.clone(), len: fx.image.len(), flip: None }).unwrap();
    let len = fx.image.len();
    let mut cuts: Vec<usize> = (0..len).step_by(fx.block_size).collect();
    cuts.extend([1, 1023, 1025, 2047, len - 1]);
    for cut in cuts {
        check(
            &pristine,
            Damaged { base: fx.image.clone(), len: cut, flip: None },
            true,
            &format!("{tag}: truncated to {cut}"),
        );
    }
}

const CSUM: &[&str] = &["-t", "ext4", "-b", "1024", "-N", "128", "-O", "inline_data,^has_journal,^resize_inode"];
const CSUM_4K: &[&str] = &["-t", "ext4", "-b", "4096", "-N", "128", "-O", "^has_journal,^resize_inode"];
const EXT2: &[&str] = &["-t", "ext2", "-b", "1024", "-N", "128", "-O", "^resize_inode"];

#[test]
fn flipped_bytes_metadata_csum_1k() {
    flip_every_byte("flip-csum-1k", CSUM, true);
}

#[test]
fn flipped_bytes_metadata_csum_4k() {
    flip_every_byte("flip-csum-4k", CSUM_4K, true);
}

#[test]
fn flipped_bytes_ext2_no_checksums() {
    flip_every_byte("flip-ext2", EXT2, false);
}

#[test]
fn truncated_images() {
    truncate_everywhere("trunc-csum", CSUM);
    truncate_everywhere("trunc-ext2", EXT2);
}
