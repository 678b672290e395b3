//! File data read path against real images built by `mke2fs -d`, with
//! `debugfs` as the oracle for block and extent maps: extent trees of
//! depth 0 and 1, 1 KiB and 4 KiB blocks, sparse files past 4 GiB,
//! unwritten extents, ext2/ext3 block maps through triple indirect blocks,
//! and corrupted trees and indirect blocks.

use ext4::disk::extent::{self, ExtentEntries, ExtentHeader, ExtentIndex, ExtentNode, NodePlace};
use ext4::{Error, Ext4, FileExtent, Inode, Location, Mapping, OpenOptions};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ext4-file-data-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        Scratch(dir)
    }
    fn src(&self, name: &str) -> PathBuf {
        self.0.join("src").join(name)
    }
    fn img(&self) -> PathBuf {
        self.0.join("img")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the image from the scratch `src` directory.
fn mkfs(s: &Scratch, fstype: &str, block_size: u32, features: &str, size: &str) {
    let bs = block_size.to_string();
    let src = s.0.join("src");
    let img = s.img();
    let mut args = vec!["-q", "-F", "-t", fstype, "-b", &bs];
    if !features.is_empty() {
        args.extend(["-O", features]);
    }
    args.extend(["-d", src.to_str().unwrap(), img.to_str().unwrap(), size]);
    run("mke2fs", &args);
}

fn debugfs(img: &Path, request: &str) -> String {
    run("debugfs", &["-R", request, img.to_str().unwrap()])
}

fn open(img: &Path) -> Ext4 {
    Ext4::open(img, &OpenOptions { read_only: true, ..Default::default() }).unwrap()
}

/// Inode number of `/name`, from `debugfs stat`.
fn ino_of(img: &Path, name: &str) -> u32 {
    let out = debugfs(img, &format!("stat /{name}"));
    let rest = out.split("Inode:").nth(1).unwrap_or_else(|| panic!("no inode for {name}: {out}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn inode(fs: &Ext4, img: &Path, name: &str) -> Inode {
    fs.read_live_inode(ino_of(img, name)).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift64).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `chunks` (offset, length) of pattern data into a new sparse file
/// of `size` bytes.
fn sparse_file(path: &Path, size: u64, chunks: &[(u64, usize)]) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (i, &(off, len)) in chunks.iter().enumerate() {
        f.write_all_at(&pattern(off ^ i as u64, len), off).unwrap();
    }
}

/// Compares `fs.read` of bytes `from..to` with the source file, in
/// `chunk`-byte reads.
fn compare_range(fs: &Ext4, ino: &Inode, src: &Path, from: u64, to: u64, chunk: usize) {
    let f = File::open(src).unwrap();
    let mut want = vec![0u8; chunk];
    let mut got = vec![0u8; chunk];
    let mut pos = from;
    while pos < to {
        let n = chunk.min((to - pos) as usize);
        f.read_exact_at(&mut want[..n], pos).unwrap();
        got[..n].fill(0xEE);
        assert_eq!(fs.read(ino, pos, &mut got[..n]).unwrap(), n, "{src:?} at {pos}");
        assert!(want[..n] == got[..n], "{src:?}: data differs in {pos}..{}", pos + n as u64);
        pos += n as u64;
    }
}

/// Whole-file comparison with two chunkings, and the EOF behaviour.
fn compare_file(fs: &Ext4, ino: &Inode, src: &Path) {
    let size = std::fs::metadata(src).unwrap().len();
    assert_eq!(ino.size(), size);
    compare_range(fs, ino, src, 0, size, 1 << 20);
    compare_range(fs, ino, src, 0, size, 4093);
    let mut buf = [0u8; 64];
    assert_eq!(fs.read(ino, size, &mut buf).unwrap(), 0);
    assert_eq!(fs.read(ino, size + 12345, &mut buf).unwrap(), 0);
    if size > 10 {
        assert_eq!(fs.read(ino, size - 10, &mut buf).unwrap(), 10);
    }
}

/// The data extents of a file per debugfs: `ex` for extent-mapped files
/// (leaf lines only), `stat`'s BLOCKS list for block maps (coalesced).
fn debugfs_extents(img: &Path, name: &str, extents: bool) -> Vec<FileExtent> {
    let mut out: Vec<FileExtent> = Vec::new();
    if extents {
        for line in debugfs(img, &format!("ex /{name}")).lines().skip(1) {
            // "level/ depth  entry/ max  lstart - lend  pstart - pend  len [Uninit]"
            let line = line.replace('/', " ");
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() < 11 || t[0] != t[1] {
                continue;
            }
            let num = |i: usize| t[i].parse::<u64>().unwrap();
            let unwritten = t.last() == Some(&"Uninit");
            out.push(FileExtent { lblk: num(4), pblk: num(7), len: num(10), unwritten });
        }
        return out;
    }
    let stat = debugfs(img, &format!("stat /{name}"));
    let Some(list) = stat.split("BLOCKS:").nth(1) else { return out };
    let list = list.split("TOTAL").next().unwrap();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (l, p) = item.trim_start_matches('(').split_once("):").unwrap();
        let Ok(lblk) = l.split('-').next().unwrap().parse::<u64>() else { continue }; // (IND) etc.
        let mut ps = p.split('-').map(|x| x.parse::<u64>().unwrap());
        let pblk = ps.next().unwrap();
        let len = ps.next().map_or(1, |e| e - pblk + 1);
        match out.last_mut() {
            Some(x) if x.lblk + x.len == lblk && x.pblk + x.len == pblk => x.len += len,
            _ => out.push(FileExtent { lblk, pblk, len, unwritten: false }),
        }
    }
    out
}

/// Checks `file_extents` against debugfs and against the data itself: each
/// extent's physical blocks hold the source bytes.
fn check_extents(fs: &Ext4, img: &Path, name: &str, src: &Path) -> Vec<FileExtent> {
    let ino = inode(fs, img, name);
    let got = fs.file_extents(&ino).unwrap();
    let is_extent = ino.flags() & ext4::disk::inode::FL_EXTENTS != 0;
    assert_eq!(got, debugfs_extents(img, name, is_extent), "{name}");
    let bs = fs.block_size() as u64;
    let image = File::open(img).unwrap();
    let source = File::open(src).unwrap();
    let size = ino.size();
    for e in got.iter().filter(|e| !e.unwritten) {
        let start = e.lblk * bs;
        let n = (e.len * bs).min(size.saturating_sub(start)) as usize;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        image.read_exact_at(&mut a, e.pblk * bs).unwrap();
        source.read_exact_at(&mut b, start).unwrap();
        assert!(a == b, "{name}: extent {e:?} holds other data");
    }
    got
}

#[test]
fn file_data_ext4_extents() {
    for bs in [1024u32, 4096] {
        let s = Scratch::new(&format!("ext4-{bs}"));
        let b = bs as u64;
        File::create(s.src("empty")).unwrap();
        std::fs::write(s.src("one"), pattern(1, bs as usize)).unwrap();
        std::fs::write(s.src("partial"), pattern(2, 5000)).unwrap();
        std::fs::write(s.src("contig"), pattern(3, 3 << 20)).unwrap();
        // Every other block written: hundreds of extents, a depth-1 tree.
        let chunks: Vec<(u64, usize)> = (0..300).map(|i| (2 * i * b, bs as usize)).collect();
        sparse_file(&s.src("frag"), 600 * b, &chunks);
        // Data past 4 GiB, and a partial last block.
        sparse_file(&s.src("big"), (5 << 30) + 3 * b + 100, &[(0, 1000), (5 << 30, 3 * bs as usize + 100)]);
        mkfs(&s, "ext4", bs, "^inline_data", "64M");
        let img = s.img();
        let fs = open(&img);
        for name in ["empty", "one", "partial", "contig", "frag"] {
            let ino = inode(&fs, &img, name);
            compare_file(&fs, &ino, &s.src(name));
            check_extents(&fs, &img, name, &s.src(name));
        }

        assert_eq!(fs.file_extents(&inode(&fs, &img, "frag")).unwrap().len(), 300);
        let frag = inode(&fs, &img, "frag");
        assert_ne!(
            ExtentNode::decode(frag.i_block(), NodePlace::Root, Location::Inode(frag.ino)).unwrap().header.depth,
            0
        );
        assert_eq!(fs.map_block(&frag, 1).unwrap(), Mapping::Hole { len: 1 });
        assert!(matches!(fs.map_block(&frag, 2).unwrap(), Mapping::Mapped { len: 1, unwritten: false, .. }));
        // Past the last extent: a hole to the end of the 32-bit block space.
        assert_eq!(fs.map_block(&frag, 599).unwrap(), Mapping::Hole { len: (1 << 32) - 599 });
        assert_eq!(fs.map_block(&frag, 1 << 40).unwrap(), Mapping::Hole { len: u64::MAX - (1 << 40) });
        let mut block = vec![0u8; bs as usize];
        assert!(fs.read_file_block(&frag, 4, &mut block).unwrap());
        assert_eq!(block, pattern((4 * b) ^ 2, bs as usize));
        assert!(!fs.read_file_block(&frag, 5, &mut block).unwrap());
        assert!(block.iter().all(|&x| x == 0));
        assert_eq!(&fs.read_file_block_cached(&frag, 4).unwrap().unwrap()[..], &pattern((4 * b) ^ 2, bs as usize)[..]);
        assert!(fs.read_file_block_cached(&frag, 5).unwrap().is_none());
        assert!(fs.read_file_block(&frag, 4, &mut block[1..]).is_err());

        let big = inode(&fs, &img, "big");
        let src = s.src("big");
        let size = big.size();
        compare_range(&fs, &big, &src, 0, 1 << 20, 65536);
        compare_range(&fs, &big, &src, (5 << 30) - (1 << 20), size, 7777);
        compare_range(&fs, &big, &src, 3 << 30, (3 << 30) + (1 << 20), 1 << 20);
        check_extents(&fs, &img, "big", &src);
        let contig = inode(&fs, &img, "contig");
        assert!(matches!(fs.map_block(&contig, 0).unwrap(), Mapping::Mapped { len, .. } if len > 1));
    }
}

#[test]
fn file_data_unwritten_extents_read_as_zeros() {
    let s = Scratch::new("unwritten");
    sparse_file(&s.src("pre"), 100 * 1024, &[(0, 4096), (50 * 1024, 4096)]);
    mkfs(&s, "ext4", 1024, "^inline_data", "16M");
    let img = s.img();
    run("debugfs", &["-w", "-R", "fallocate /pre 0 99", img.to_str().unwrap()]);
    let fs = open(&img);
    let pre = inode(&fs, &img, "pre");
    let extents = check_extents(&fs, &img, "pre", &s.src("pre"));
    let unwritten: Vec<_> = extents.iter().filter(|e| e.unwritten).collect();
    assert!(!unwritten.is_empty(), "{extents:?}");
    drop(fs);
    // Put junk in the unwritten blocks: it must never be read.
    let dev = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    for e in &unwritten {
        dev.write_all_at(&vec![0xA5; e.len as usize * 1024], e.pblk * 1024).unwrap();
    }
    drop(dev);
    let fs = open(&img);
    compare_file(&fs, &pre, &s.src("pre"));
    let e = unwritten[0];
    assert_eq!(fs.map_block(&pre, e.lblk).unwrap(), Mapping::Mapped { pblk: e.pblk, len: e.len, unwritten: true });
    let mut block = vec![1u8; 1024];
    assert!(!fs.read_file_block(&pre, e.lblk, &mut block).unwrap());
    assert!(block.iter().all(|&x| x == 0));
}

/// Block (logical) offsets that exercise every level of a 1 KiB block map:
/// direct, single (12..268), double (268..65804), triple (65804..).
const MAP_CHUNKS_1K: &[(u64, usize)] = &[
    (0, 3000),
    (11 * 1024, 2048),
    (200 * 1024, 1024),
    (250 * 1024, 450 * 1024),
    (9000 * 1024, 1500),
    (65800 * 1024, 10 * 1024),
    (70000 * 1024, 300 * 1024),
    (200_000 * 1024, 777),
];

#[test]
fn file_data_block_maps() {
    for fstype in ["ext2", "ext3"] {
        let s = Scratch::new(fstype);
        File::create(s.src("empty")).unwrap();
        std::fs::write(s.src("dense"), pattern(7, 600_000)).unwrap();
        sparse_file(&s.src("tri"), 200_000 * 1024 + 777, MAP_CHUNKS_1K);
        sparse_file(&s.src("holes"), 300 * 1024, &[(299 * 1024, 10)]);
        mkfs(&s, fstype, 1024, "", "32M");
        let img = s.img();
        let fs = open(&img);
        for name in ["empty", "dense", "tri", "holes"] {
            let ino = inode(&fs, &img, name);
            compare_file(&fs, &ino, &s.src(name));
            check_extents(&fs, &img, name, &s.src(name));
        }
        // Contiguous pointers come back as one run.
        let dense = inode(&fs, &img, "dense");
        assert_eq!(fs.file_extents(&dense).unwrap().len(), 4);
        assert!(fs.file_extents(&inode(&fs, &img, "tri")).unwrap().len() >= MAP_CHUNKS_1K.len());
        assert!(matches!(fs.map_block(&dense, 0).unwrap(), Mapping::Mapped { len: 12, .. }));
        assert!(matches!(fs.map_block(&dense, 12).unwrap(), Mapping::Mapped { len: 256, .. }));
        assert!(matches!(fs.map_block(&dense, 300).unwrap(), Mapping::Mapped { len: 224, .. }));
        // Holes span the zero pointers: a whole missing double-indirect subtree...
        let holes = inode(&fs, &img, "holes");
        assert_eq!(fs.map_block(&holes, 0).unwrap(), Mapping::Hole { len: 12 });
        assert_eq!(fs.map_block(&holes, 12).unwrap(), Mapping::Hole { len: 256 });
        assert_eq!(fs.map_block(&holes, 268).unwrap(), Mapping::Hole { len: 31 });
        assert_eq!(fs.map_block(&holes, 300).unwrap(), Mapping::Hole { len: 256 - 32 });
        // ... and the unused triple-indirect tree.
        assert_eq!(fs.map_block(&holes, 65804 + 5).unwrap(), Mapping::Hole { len: 256 * 256 * 256 - 5 });
        let max = 12 + 256 + 256 * 256 + 256 * 256 * 256;
        assert_eq!(fs.addressable_blocks(&holes), max);
        assert_eq!(fs.map_block(&holes, max).unwrap(), Mapping::Hole { len: u64::MAX - max });
    }
    // 4 KiB blocks: data past 4 GiB lives under the triple indirect block.
    let s = Scratch::new("ext3-4k");
    sparse_file(&s.src("big"), (5 << 30) + 5000, &[(0, 100), (4 << 30, 8192), (5 << 30, 5000)]);
    mkfs(&s, "ext3", 4096, "", "32M");
    let img = s.img();
    let fs = open(&img);
    let big = inode(&fs, &img, "big");
    let src = s.src("big");
    compare_range(&fs, &big, &src, 0, 1 << 20, 1 << 20);
    compare_range(&fs, &big, &src, (4 << 30) - 4096, (4 << 30) + 12288, 3000);
    compare_range(&fs, &big, &src, (5 << 30) - 4096, big.size(), 4096);
    check_extents(&fs, &img, "big", &src);
}

#[test]
fn file_data_sizes_beyond_the_format_do_not_overflow() {
    let s = Scratch::new("huge-size");
    std::fs::write(s.src("f"), pattern(9, 10_000)).unwrap();
    mkfs(&s, "ext4", 4096, "^inline_data", "8M");
    let img = s.img();
    let fs = open(&img);
    let mut ino = inode(&fs, &img, "f");
    ino.raw.size_lo = u32::MAX;
    ino.raw.size_hi = u32::MAX;
    let mut buf = vec![0xFFu8; 100];
    assert_eq!(fs.read(&ino, u64::MAX - 10, &mut buf).unwrap(), 10);
    assert!(buf[..10].iter().all(|&b| b == 0));
    assert_eq!(fs.read(&ino, u64::MAX, &mut buf).unwrap(), 0);
    assert_eq!(fs.read(&ino, (1 << 32) * 4096 - 50, &mut buf).unwrap(), 100);
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(fs.read(&ino, 9_990, &mut buf).unwrap(), 100);
    assert_eq!(&buf[..10], &pattern(9, 10_000)[9_990..]);
}

// ----- corruption -----

fn write_image(img: &Path, offset: u64, data: &[u8]) {
    std::fs::OpenOptions::new().write(true).open(img).unwrap().write_all_at(data, offset).unwrap();
}

fn read_image(img: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    File::open(img).unwrap().read_exact_at(&mut b, offset).unwrap();
    b
}

/// Reads the whole file (1 MiB at a time) and lists its extents on a
/// freshly opened image; both must fail with a corruption or checksum
/// error, never panic. Returns the read error.
fn expect_broken(img: &Path, name: &str, want_checksum: bool) -> Error {
    let fs = open(img);
    let ino = inode(&fs, img, name);
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    let err = loop {
        match fs.read(&ino, pos, &mut buf) {
            Ok(0) => panic!("{name}: read to the end without an error"),
            Ok(n) => pos += n as u64,
            Err(e) => break e,
        }
    };
    match (&err, want_checksum) {
        (Error::Checksum { .. }, true) | (Error::Corrupt { .. }, false) => {}
        _ => panic!("{name}: unexpected {err:?}"),
    }
    assert!(fs.file_extents(&ino).is_err());
    err
}

/// Rewrites the first leaf block of `frag` with `node`, fixing its checksum.
fn rewrite_leaf(fs: &Ext4, img: &Path, ino: &Inode, blk: u64, node: &ExtentNode) {
    let bs = fs.block_size() as usize;
    let mut b = read_image(img, blk * bs as u64, bs);
    node.encode(&mut b, NodePlace::Block).unwrap();
    if let Some(seed) = fs.csum_seed() {
        extent::set_checksum(seed, ino.ino, ino.generation(), &mut b).unwrap();
    }
    write_image(img, blk * bs as u64, &b);
}

#[test]
fn file_data_corrupt_extent_trees() {
    for features in ["^inline_data", "^inline_data,^metadata_csum"] {
        let s = Scratch::new(if features.contains("csum") { "corrupt-nocsum" } else { "corrupt" });
        let chunks: Vec<(u64, usize)> = (0..100).map(|i| (2 * i * 1024, 1024)).collect();
        sparse_file(&s.src("frag"), 200 * 1024, &chunks);
        mkfs(&s, "ext4", 1024, features, "16M");
        let img = s.img();
        let pristine = std::fs::read(&img).unwrap();
        let fs = open(&img);
        let ino = inode(&fs, &img, "frag");
        let root = ExtentNode::decode(ino.i_block(), NodePlace::Root, Location::Inode(ino.ino)).unwrap();
        assert_eq!(root.header.depth, 1);
        let ExtentEntries::Indexes(idx) = &root.entries else { panic!() };
        let leaf_blk = idx[0].leaf;
        let leaf =
            ExtentNode::decode(&read_image(&img, leaf_blk * 1024, 1024), NodePlace::Block, Location::Block(leaf_blk))
                .unwrap();
        let ExtentEntries::Leaves(extents) = &leaf.entries else { panic!() };
        let csum = fs.csum_seed().is_some();

        // A flipped byte in an extent: checksum error (or, without
        // metadata_csum, an out-of-range block).
        let mut b = read_image(&img, leaf_blk * 1024, 1024);
        b[12 + 11] ^= 0x80; // top byte of ee_start_lo of the first extent
        write_image(&img, leaf_blk * 1024, &b);
        expect_broken(&img, "frag", csum);
        std::fs::write(&img, &pristine).unwrap();

        // A leaf that became an index pointing at itself: with the root at
        // depth 1 the child has the wrong depth...
        let looped = ExtentNode {
            header: ExtentHeader { depth: 1, ..leaf.header },
            entries: ExtentEntries::Indexes(vec![ExtentIndex { lblk: 0, leaf: leaf_blk }]),
        };
        rewrite_leaf(&fs, &img, &ino, leaf_blk, &looped);
        let err = expect_broken(&img, "frag", false);
        assert!(matches!(err, Error::Corrupt { location: Location::Block(b), .. } if b == leaf_blk), "{err:?}");
        // ... and with the root claiming depth 2 the loop is met one level down.
        run("debugfs", &["-w", "-R", "sif /frag block[1] 0x20004", img.to_str().unwrap()]);
        expect_broken(&img, "frag", false);
        std::fs::write(&img, &pristine).unwrap();

        // Valid checksum, bad contents: a block outside the file system,
        // overlapping extents, an extent outside its parent's key range.
        let mut bad = extents.clone();
        bad[1].pblk = 1 << 40;
        rewrite_leaf(&fs, &img, &ino, leaf_blk, &ExtentNode { entries: ExtentEntries::Leaves(bad), ..leaf.clone() });
        expect_broken(&img, "frag", false);
        let mut bad = extents.clone();
        bad[1].lblk = bad[0].lblk;
        rewrite_leaf(&fs, &img, &ino, leaf_blk, &ExtentNode { entries: ExtentEntries::Leaves(bad), ..leaf.clone() });
        expect_broken(&img, "frag", false);
        if idx.len() > 1 {
            let mut bad = extents.clone();
            let last = bad.len() - 1;
            bad[last].lblk = idx[1].lblk;
            rewrite_leaf(
                &fs,
                &img,
                &ino,
                leaf_blk,
                &ExtentNode { entries: ExtentEntries::Leaves(bad), ..leaf.clone() },
            );
            expect_broken(&img, "frag", false);
        }
        // A bad magic.
        std::fs::write(&img, &pristine).unwrap();
        write_image(&img, leaf_blk * 1024, &[0, 0]);
        expect_broken(&img, "frag", false);
        std::fs::write(&img, &pristine).unwrap();
    }
}

#[test]
fn file_data_corrupt_indirect_blocks() {
    let s = Scratch::new("corrupt-ind");
    sparse_file(&s.src("tri"), 200_000 * 1024 + 777, MAP_CHUNKS_1K);
    mkfs(&s, "ext2", 1024, "", "32M");
    let img = s.img();
    let pristine = std::fs::read(&img).unwrap();
    let fs = open(&img);
    let ino = inode(&fs, &img, "tri");
    let map: Vec<u32> = ino.i_block().chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    drop(fs);

    // A data pointer in the single indirect block out of range.
    write_image(&img, map[12] as u64 * 1024 + 4 * (200 - 12), &0xFFFF_FF00u32.to_le_bytes());
    let err = expect_broken(&img, "tri", false);
    assert!(matches!(err, Error::Corrupt { location: Location::Block(b), .. } if b == map[12] as u64), "{err:?}");
    std::fs::write(&img, &pristine).unwrap();

    // An indirect block pointer in the double indirect block out of range.
    write_image(&img, map[13] as u64 * 1024, &0xFFFF_FF00u32.to_le_bytes());
    expect_broken(&img, "tri", false);
    std::fs::write(&img, &pristine).unwrap();

    // The triple indirect pointer in the inode out of range (debugfs fixes the inode checksum).
    run("debugfs", &["-w", "-R", "sif /tri block[TIND] 0xFFFFFF00", img.to_str().unwrap()]);
    let err = expect_broken(&img, "tri", false);
    assert!(matches!(err, Error::Corrupt { location: Location::Inode(_), .. }), "{err:?}");
    std::fs::write(&img, &pristine).unwrap();

    // The double indirect block listing itself as an indirect block: the
    // walk is bounded by the fixed depth, and listing detects the sharing.
    write_image(&img, map[13] as u64 * 1024 + 4, &map[13].to_le_bytes());
    let fs = open(&img);
    let ino = fs.read_live_inode(ino.ino).unwrap();
    assert!(matches!(fs.file_extents(&ino), Err(Error::Corrupt { .. })));
    let mut buf = vec![0u8; 1 << 20];
    // The self-referencing entry maps its own pointers as data: readable
    // without looping, since a block map has a fixed depth.
    fs.read(&ino, (268 + 256) * 1024, &mut buf).unwrap();
}
