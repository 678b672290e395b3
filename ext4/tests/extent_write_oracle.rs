//! Mapping updates on real images, judged by e2fsprogs: an empty file made
//! by `debugfs write` gets hundreds of extents (a tree of depth 2 with
//! 1 KiB blocks, metadata_csum) or an ext3 block map reaching into the
//! triple indirect block, through a `MapStore` over the image file that
//! allocates from a free range. The test then writes the inode (`i_block`,
//! `i_blocks`, size, checksum), marks the blocks in use with `debugfs
//! setb` and fixes the free counts; `e2fsck -fn` must find nothing wrong
//! and `debugfs` must list exactly the extents or blocks that were mapped.

mod common;

use common::Scratch;
use common::tools::{debugfs, mkfs, run};
use ext4::disk::extent::Extent;
use ext4::disk::inode::FL_EXTENTS;
use ext4::fs::map::block_map::{remove_range_blockmap, set_blocks_blockmap};
use ext4::fs::map::extent_tree::{insert_extent, mark_written, remove_range};
use ext4::fs::map::store::{MapContext, MapStore};
use ext4::{Ext4, FileExtent, OpenOptions, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// A `MapStore` on the image file, allocating upwards from a free range.
struct ImageStore {
    file: File,
    block_size: u64,
    next: u64,
    end: u64,
    live_meta: BTreeSet<u64>,
}

impl ImageStore {
    fn alloc(&mut self, len: u64) -> u64 {
        assert!(self.next + len <= self.end, "test region exhausted");
        self.next += len;
        self.next - len
    }
}

impl MapStore for ImageStore {
    fn read(&mut self, blk: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.block_size as usize];
        self.file.read_exact_at(&mut buf, blk * self.block_size).unwrap();
        Ok(buf)
    }
    fn write(&mut self, blk: u64, data: Vec<u8>) -> Result<()> {
        self.file.write_all_at(&data, blk * self.block_size).unwrap();
        Ok(())
    }
    fn alloc_meta(&mut self, _goal: u64) -> Result<u64> {
        let blk = self.alloc(1);
        self.live_meta.insert(blk);
        Ok(blk)
    }
    fn free_meta(&mut self, blk: u64) -> Result<()> {
        assert!(self.live_meta.remove(&blk));
        Ok(())
    }
    fn free_data(&mut self, _pblk: u64, _len: u64) -> Result<()> {
        // Never marked in the bitmap: nothing to undo.
        Ok(())
    }
}

/// A group as `dumpe2fs` lists it.
struct Group {
    first: u64,
    last: u64,
    block_uninit: bool,
    free: u64,
    free_ranges: Vec<(u64, u64)>,
}

fn groups(img: &Path) -> Vec<Group> {
    let out = run(Command::new("dumpe2fs").arg(img));
    let mut groups: Vec<Group> = Vec::new();
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Group ").filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
            let blocks = rest.split("(Blocks ").nth(1).unwrap().split(')').next().unwrap();
            let (a, b) = blocks.split_once('-').unwrap();
            groups.push(Group {
                first: a.parse().unwrap(),
                last: b.parse().unwrap(),
                block_uninit: t.contains("BLOCK_UNINIT"),
                free: 0,
                free_ranges: Vec::new(),
            });
        } else if let Some(g) = groups.last_mut() {
            if let Some((n, _)) = t.split_once(" free blocks, ") {
                g.free = n.parse().unwrap();
            } else if let Some(list) = t.strip_prefix("Free blocks: ") {
                for r in list.split(", ").filter(|r| !r.is_empty()) {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    g.free_ranges.push((a.parse().unwrap(), b.parse().unwrap()));
                }
            }
        }
    }
    groups
}

fn superblock_free_blocks(img: &Path) -> u64 {
    let out = run(Command::new("dumpe2fs").arg("-h").arg(img));
    let line = out.lines().find(|l| l.starts_with("Free blocks:")).unwrap();
    line.split(':').nth(1).unwrap().trim().parse().unwrap()
}

/// The largest free range in a group whose bitmap is initialised.
fn free_region(groups: &[Group]) -> (u64, u64) {
    groups
        .iter()
        .filter(|g| !g.block_uninit)
        .flat_map(|g| g.free_ranges.iter().copied())
        .max_by_key(|(a, b)| b - a)
        .map(|(a, b)| (a, b + 1))
        .unwrap()
}

/// Creates the empty file `/f` with debugfs; returns its inode number.
fn create_file(img: &Path) -> u32 {
    let out = run(Command::new("debugfs").args(["-w", "-R", "write /dev/null /f"]).arg(img));
    let n = out.split("Allocated inode: ").nth(1).unwrap().trim();
    n.parse().unwrap()
}

/// Writes the inode's new map, block count and size (with its checksum).
fn write_inode(img: &Path, ino: u32, i_block: &[u8; 60], blocks: u64, size: u64) {
    let fs = Ext4::open(img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let mut inode = fs.read_inode(ino).unwrap();
    inode.raw.block = *i_block;
    let sectors = blocks * fs.block_size() as u64 / 512;
    inode.raw.blocks_lo = sectors as u32;
    inode.raw.blocks_hi = (sectors >> 32) as u16;
    inode.raw.size_lo = size as u32;
    inode.raw.size_hi = (size >> 32) as u32;
    inode.raw.encode(&mut inode.bytes);
    if let Some(seed) = fs.csum_seed() {
        let c = inode.compute_checksum(seed);
        inode.raw.checksum_lo = c as u16;
        inode.raw.checksum_hi = (c >> 16) as u16;
        inode.raw.encode(&mut inode.bytes);
    }
    let (g, idx) = fs.geometry().inode_location(ino);
    let off =
        fs.group_desc(g).unwrap().inode_table() * fs.block_size() as u64 + idx as u64 * fs.geometry().inode_size as u64;
    drop(fs);
    File::options().write(true).open(img).unwrap().write_all_at(&inode.bytes, off).unwrap();
}

/// Marks `used` in the block bitmap and lowers the group and total free counts.
fn mark_used(img: &Path, used: &BTreeSet<u64>, groups: &[Group]) {
    let mut cmds = String::new();
    let mut it = used.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start + 1;
        while it.peek() == Some(&end) {
            it.next();
            end += 1;
        }
        cmds += &format!("setb {start} {}\n", end - start);
    }
    for (i, g) in groups.iter().enumerate() {
        let n = used.range(g.first..=g.last).count() as u64;
        if n > 0 {
            cmds += &format!("set_bg {i} free_blocks_count {}\n", g.free - n);
        }
    }
    cmds += &format!("ssv free_blocks_count {}\n", superblock_free_blocks(img) - used.len() as u64);
    let file = img.with_extension("cmds");
    std::fs::write(&file, cmds).unwrap();
    run(Command::new("debugfs").arg("-w").arg("-f").arg(&file).arg(img));
}

fn assert_fsck_clean(img: &Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(img).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "e2fsck -fn is not clean:\n{text}");
}

/// splitmix64 for a deterministic shuffle.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v.swap(i, ((z ^ (z >> 31)) % (i as u64 + 1)) as usize);
    }
}

/// Leaf extents listed by `debugfs ex`: (lblk, pblk, len, unwritten), and the tree depth.
fn debugfs_extents(img: &Path) -> (Vec<(u64, u64, u64, bool)>, u32) {
    let out = debugfs(img, "ex /f");
    let mut leaves = Vec::new();
    let mut depth = 0;
    for line in out.lines().skip(1) {
        let t: Vec<&str> = line.split(['/', ' ']).filter(|s| !s.is_empty() && *s != "-").collect();
        if t.len() < 8 {
            continue;
        }
        let (level, max): (u32, u32) = (t[0].parse().unwrap(), t[1].parse().unwrap());
        depth = max;
        if level == max {
            let n = |i: usize| t[i].parse::<u64>().unwrap();
            leaves.push((n(4), n(6), n(8), t.get(9) == Some(&"Uninit")));
        }
    }
    (leaves, depth)
}

#[test]
fn extent_tree_on_a_real_image() {
    let s = Scratch::new("extent-write");
    let img = s.join("img");
    mkfs(&img, "32M", None, &["-t", "ext4", "-b", "1024", "-N", "256", "-O", "^has_journal"]);
    let ino = create_file(&img);
    let groups = groups(&img);
    let (start, end) = free_region(&groups);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let inode = fs.read_inode(ino).unwrap();
    assert!(inode.has_flag(FL_EXTENTS));
    let ctx = MapContext::new(&fs, &inode);
    assert!(ctx.csum_seed.is_some(), "mke2fs 1.47 enables metadata_csum");
    let mut root = *inode.i_block();
    drop(fs);
    let file = File::options().read(true).write(true).open(&img).unwrap();
    let mut store = ImageStore { file, block_size: 1024, next: start, end, live_meta: BTreeSet::new() };

    // 600 extents of 1-2 blocks at every third logical block, in shuffled
    // order, physically apart (a free block after each).
    let mut model: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
    let mut order: Vec<u64> = (0..600).collect();
    shuffle(&mut order, 42);
    let mut meta_allocated = 0;
    for (n, i) in order.into_iter().enumerate() {
        let len = 1 + i % 2;
        let pblk = store.alloc(len + 1);
        let unwritten = n % 5 == 0;
        let e = Extent { lblk: 3 * i as u32, len: len as u32, pblk, unwritten };
        meta_allocated += insert_extent(&ctx, &mut root, &mut store, e).unwrap().meta_allocated;
        for j in 0..len {
            model.insert(3 * i + j, (pblk + j, unwritten));
        }
    }
    assert_eq!(meta_allocated, store.live_meta.len() as u64);
    // Punch holes, convert some unwritten ranges, trim the end.
    for (lblk, len) in [(30, 10), (600, 200), (1000, 1), (1201, 4)] {
        remove_range(&ctx, &mut root, &mut store, lblk, len).unwrap();
        let keys: Vec<u64> = model.range(lblk..lblk + len).map(|(k, _)| *k).collect();
        for k in keys {
            model.remove(&k);
        }
    }
    for (lblk, len) in [(0, 300), (1500, 2)] {
        mark_written(&ctx, &mut root, &mut store, lblk, len).unwrap();
        model.range_mut(lblk..lblk + len).for_each(|(_, v)| v.1 = false);
    }
    remove_range(&ctx, &mut root, &mut store, 1790, u64::MAX).unwrap();
    model.retain(|k, _| *k < 1790);

    let data: BTreeSet<u64> = model.values().map(|v| v.0).collect();
    let used: BTreeSet<u64> = data.union(&store.live_meta).copied().collect();
    let size = (model.keys().last().unwrap() + 1) * 1024;
    write_inode(&img, ino, &root, used.len() as u64, size);
    mark_used(&img, &used, &groups);
    assert_fsck_clean(&img);

    // debugfs lists exactly the model's mapping, from a tree of depth >= 2.
    let (leaves, depth) = debugfs_extents(&img);
    assert!(depth >= 2, "tree depth {depth}");
    let mut listed = BTreeMap::new();
    for (l, p, n, u) in &leaves {
        for j in 0..*n {
            listed.insert(l + j, (p + j, *u));
        }
    }
    assert_eq!(listed, model);
    // So does our own reader.
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let got = fs.file_extents(&fs.read_inode(ino).unwrap()).unwrap();
    let want: Vec<FileExtent> =
        leaves.iter().map(|&(lblk, pblk, len, unwritten)| FileExtent { lblk, pblk, len, unwritten }).collect();
    assert_eq!(got, want);
}

/// Data and indirect blocks listed by `debugfs stat`.
fn debugfs_blocks(img: &Path) -> (BTreeMap<u64, u64>, BTreeSet<u64>, u64) {
    let out = debugfs(img, "stat /f");
    let list = out.split("BLOCKS:").nth(1).unwrap();
    let (list, total) = list.split_once("TOTAL:").unwrap();
    let mut data = BTreeMap::new();
    let mut meta = BTreeSet::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (l, p) = item.trim_start_matches('(').split_once("):").unwrap();
        if l.ends_with("IND") {
            meta.insert(p.parse().unwrap());
            continue;
        }
        let (l0, _) = l.split_once('-').unwrap_or((l, l));
        let (p0, p1) = p.split_once('-').unwrap_or((p, p));
        let (l0, p0, p1): (u64, u64, u64) = (l0.parse().unwrap(), p0.parse().unwrap(), p1.parse().unwrap());
        for j in 0..=p1 - p0 {
            data.insert(l0 + j, p0 + j);
        }
    }
    (data, meta, total.trim().parse().unwrap())
}

#[test]
fn block_map_on_a_real_ext3_image() {
    let s = Scratch::new("blockmap-write");
    let img = s.join("img");
    mkfs(&img, "32M", None, &["-t", "ext3", "-b", "1024", "-N", "256"]);
    let ino = create_file(&img);
    let groups = groups(&img);
    let (start, end) = free_region(&groups);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let inode = fs.read_inode(ino).unwrap();
    assert!(!inode.has_flag(FL_EXTENTS));
    let ctx = MapContext::new(&fs, &inode);
    let mut ib = *inode.i_block();
    drop(fs);
    let file = File::options().read(true).write(true).open(&img).unwrap();
    let mut store = ImageStore { file, block_size: 1024, next: start, end, live_meta: BTreeSet::new() };

    // Runs across the direct/indirect, indirect/double and double/triple
    // boundaries (12, 268, 65804), and far into the triple indirect tree.
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    for (lblk, len) in [(0, 20), (260, 20), (5000, 3), (9000, 1), (65_800, 10), (100_000, 5), (16_000_000, 2)] {
        let pblk = store.alloc(len + 1);
        set_blocks_blockmap(&ctx, &mut ib, &mut store, lblk, pblk, len).unwrap();
        model.extend((0..len).map(|j| (lblk + j, pblk + j)));
    }
    // Removing a run that empties an indirect block under the double
    // indirect one frees it; so does truncating the triple indirect tree.
    for (lblk, len) in [(5000, 3), (15, 2), (16_000_000, u64::MAX)] {
        let change = remove_range_blockmap(&ctx, &mut ib, &mut store, lblk, len).unwrap();
        assert_eq!(change.data_freed, model.range(lblk..lblk.saturating_add(len)).count() as u64);
        model.retain(|k, _| !(lblk..lblk.saturating_add(len)).contains(k));
    }

    let used: BTreeSet<u64> = model.values().copied().chain(store.live_meta.iter().copied()).collect();
    let size = (model.keys().last().unwrap() + 1) * 1024;
    write_inode(&img, ino, &ib, used.len() as u64, size);
    mark_used(&img, &used, &groups);
    assert_fsck_clean(&img);

    let (data, meta, total) = debugfs_blocks(&img);
    assert_eq!(data, model);
    assert_eq!(meta, store.live_meta);
    assert_eq!(total, used.len() as u64);
    assert!(meta.len() >= 6, "single, double and triple indirect blocks: {meta:?}");
}
