//! Mapping updates (extent trees and ext2/3 block maps) against a simple
//! model, through an in-memory `MapStore`: seeded random sequences of
//! inserts, removals and written-conversions, each followed by a full walk
//! of the stored tree with the on-disk decoder that checks node structure,
//! checksums, `eh_max`, exact index keys, key ranges, merging, the model's
//! block-by-block mapping, and block accounting (no leaked, stray or
//! double-freed block). Small block sizes force deep trees, the depth limit
//! and shrinking back to the root.

mod common;

use common::rng::Rng;
use ext4::disk::extent::{
    self, Extent, ExtentEntries, ExtentNode, INIT_MAX_LEN, MAX_DEPTH, MAX_LOGICAL_BLOCKS, NodePlace, UNWRITTEN_MAX_LEN,
};
use ext4::fs::map::block_map::{blockmap_addressable, remove_range_blockmap, set_blocks_blockmap};
use ext4::fs::map::extent_tree::{init_root, insert_extent, mark_written, remove_range};
use ext4::fs::map::store::{MapChange, MapContext, MapStore};
use ext4::{Error, Location, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Metadata blocks in a hash map, a bump allocator, and strict checks:
/// reading, writing or freeing a block that is not allocated panics.
struct MemStore {
    block_size: usize,
    blocks: HashMap<u64, Vec<u8>>,
    live: BTreeSet<u64>,
    next_meta: u64,
    allocs: u64,
    frees: u64,
    writes: u64,
    freed_data: Vec<(u64, u64)>,
}

impl MemStore {
    fn new(block_size: usize) -> MemStore {
        MemStore {
            block_size,
            blocks: HashMap::new(),
            live: BTreeSet::new(),
            next_meta: 100,
            allocs: 0,
            frees: 0,
            writes: 0,
            freed_data: Vec::new(),
        }
    }
    fn data_freed(&self) -> u64 {
        self.freed_data.iter().map(|r| r.1).sum()
    }
}

impl MapStore for MemStore {
    fn read(&mut self, blk: u64) -> Result<Vec<u8>> {
        assert!(self.live.contains(&blk), "read of unallocated block {blk}");
        Ok(self.blocks.get(&blk).unwrap_or_else(|| panic!("read of block {blk} before it was written")).clone())
    }
    fn write(&mut self, blk: u64, data: Vec<u8>) -> Result<()> {
        assert!(self.live.contains(&blk), "write to unallocated block {blk}");
        assert_eq!(data.len(), self.block_size);
        self.writes += 1;
        self.blocks.insert(blk, data);
        Ok(())
    }
    fn alloc_meta(&mut self, _goal: u64) -> Result<u64> {
        let blk = self.next_meta;
        self.next_meta += 1;
        self.allocs += 1;
        self.live.insert(blk);
        Ok(blk)
    }
    fn free_meta(&mut self, blk: u64) -> Result<()> {
        assert!(self.live.remove(&blk), "double free or stray free of block {blk}");
        self.blocks.remove(&blk);
        self.frees += 1;
        Ok(())
    }
    fn free_data(&mut self, pblk: u64, len: u64) -> Result<()> {
        assert!(len > 0);
        self.freed_data.push((pblk, len));
        Ok(())
    }
}

const SEED: u32 = 0x5eed_c0de;

fn ctx(block_size: u32, csum: bool) -> MapContext {
    MapContext {
        ino: 12,
        generation: 0xfeed,
        csum_seed: csum.then_some(SEED),
        block_size,
        first_data_block: 1,
        blocks_count: 1 << 40,
    }
}

/// Per-block model: logical block -> (physical block, unwritten).
type Model = BTreeMap<u64, (u64, bool)>;

/// What a walk of the stored tree found.
struct Walk {
    extents: Vec<Extent>,
    blocks: BTreeSet<u64>,
    depth: u16,
}

fn mergeable(a: &Extent, b: &Extent) -> bool {
    let max = if a.unwritten { UNWRITTEN_MAX_LEN } else { INIT_MAX_LEN };
    a.unwritten == b.unwritten && a.end() == b.lblk as u64 && a.pblk + a.len as u64 == b.pblk && a.len + b.len <= max
}

/// Walks the tree with the on-disk decoder and checks every invariant.
fn walk_tree(ctx: &MapContext, root: &[u8; 60], store: &MemStore) -> Walk {
    let node = ExtentNode::decode(root, NodePlace::Root, Location::Inode(ctx.ino)).expect("root decodes");
    assert_eq!(node.header.max, 4, "root eh_max");
    let mut w = Walk { extents: Vec::new(), blocks: BTreeSet::new(), depth: node.header.depth };
    visit(ctx, store, &node, 0, MAX_LOGICAL_BLOCKS, true, &mut w);
    for pair in w.extents.windows(2) {
        assert!(pair[0].end() <= pair[1].lblk as u64, "extents overlap or are unsorted: {pair:?}");
    }
    if let ExtentEntries::Indexes(v) = &node.entries {
        // Shrinking keeps the tree no deeper than needed at the top.
        let below: usize = v.iter().map(|i| decode_block(ctx, store, i.leaf).entries.len()).sum();
        assert!(below > 4, "root children hold {below} entries: they fit in the root");
    }
    w
}

fn decode_block(ctx: &MapContext, store: &MemStore, blk: u64) -> ExtentNode {
    assert!(store.live.contains(&blk), "tree references unallocated block {blk}");
    let data = store.blocks.get(&blk).unwrap_or_else(|| panic!("tree block {blk} never written"));
    let node = ExtentNode::decode(data, NodePlace::Block, Location::Block(blk)).expect("tree block decodes");
    assert_eq!(node.header.max, extent::block_capacity(ctx.block_size as usize), "eh_max of block {blk}");
    match ctx.csum_seed {
        Some(seed) => assert!(extent::verify_checksum(seed, ctx.ino, ctx.generation, data), "checksum of {blk}"),
        None => {
            let tail = extent::tail_offset(node.header.max);
            assert!(data[tail..tail + 4].iter().all(|&b| b == 0), "tail written without metadata_csum");
        }
    }
    node
}

fn visit(ctx: &MapContext, store: &MemStore, node: &ExtentNode, lo: u64, hi: u64, is_root: bool, w: &mut Walk) {
    match &node.entries {
        ExtentEntries::Leaves(v) => {
            assert!(is_root || !v.is_empty(), "empty leaf below the root");
            for e in v {
                assert!(e.lblk as u64 >= lo && e.end() <= hi, "extent {e:?} outside its range {lo}..{hi}");
            }
            for pair in v.windows(2) {
                assert!(!mergeable(&pair[0], &pair[1]), "unmerged neighbours in one leaf: {pair:?}");
            }
            w.extents.extend_from_slice(v);
        }
        ExtentEntries::Indexes(v) => {
            for (i, idx) in v.iter().enumerate() {
                let child_hi = v.get(i + 1).map_or(hi, |n| n.lblk as u64);
                assert!(idx.lblk as u64 >= lo && child_hi > idx.lblk as u64 && child_hi <= hi);
                assert!(w.blocks.insert(idx.leaf), "block {} referenced twice", idx.leaf);
                let child = decode_block(ctx, store, idx.leaf);
                assert_eq!(child.header.depth + 1, node.header.depth, "child depth");
                let first = match &child.entries {
                    ExtentEntries::Leaves(c) => c.first().map(|e| e.lblk),
                    ExtentEntries::Indexes(c) => c.first().map(|e| e.lblk),
                };
                assert_eq!(first, Some(idx.lblk), "index key is not the child's first block");
                visit(ctx, store, &child, idx.lblk as u64, child_hi, false, w);
            }
        }
    }
}

/// Walks and compares with the model and the store's allocations.
fn check_tree(ctx: &MapContext, root: &[u8; 60], store: &MemStore, model: &Model) -> Walk {
    let w = walk_tree(ctx, root, store);
    let mut got = Model::new();
    for e in &w.extents {
        for i in 0..e.len as u64 {
            got.insert(e.lblk as u64 + i, (e.pblk + i, e.unwritten));
        }
    }
    assert!(got == *model, "tree and model differ:\n tree {:?}\nmodel {:?}", got.len(), model.len());
    assert_eq!(w.blocks, store.live, "tree blocks vs allocated blocks (leak or stray)");
    w
}

/// Store counters before an operation, to check the reported change.
struct Before {
    allocs: u64,
    frees: u64,
    data: u64,
    freed_runs: usize,
    writes: u64,
}

fn before(store: &MemStore) -> Before {
    Before {
        allocs: store.allocs,
        frees: store.frees,
        data: store.data_freed(),
        freed_runs: store.freed_data.len(),
        writes: store.writes,
    }
}

fn check_change(b: &Before, store: &MemStore, change: MapChange) {
    assert_eq!(change.meta_allocated, store.allocs - b.allocs);
    assert_eq!(change.meta_freed, store.frees - b.frees);
    assert_eq!(change.data_freed, store.data_freed() - b.data);
}

/// Physical blocks freed since `b`, one by one, sorted.
fn freed_since(b: &Before, store: &MemStore) -> Vec<u64> {
    let mut v: Vec<u64> = store.freed_data[b.freed_runs..].iter().flat_map(|&(p, n)| p..p + n).collect();
    v.sort_unstable();
    v
}

/// Physical blocks of the logical range removed from the model, sorted.
fn model_remove(model: &mut Model, lo: u64, hi: u64) -> Vec<u64> {
    let keys: Vec<u64> = model.range(lo..hi).map(|(k, _)| *k).collect();
    let mut v: Vec<u64> = keys.iter().filter_map(|k| model.remove(k)).map(|(p, _)| p).collect();
    v.sort_unstable();
    v
}

/// Statistics of a random run.
#[derive(Debug, Default)]
struct Stats {
    max_depth: u16,
    shrinks: u32,
    max_extents: usize,
    depth_limit_hits: u32,
}

/// Where identity-mapped data lives: blocks `ID_BASE + lblk`, so that
/// neighbours are physically contiguous and merge.
const ID_BASE: u64 = 1_000_000;

/// Random extent-tree operations over `space` logical blocks.
fn random_extent_run(seed: u64, block_size: u32, csum: bool, space: u64, ops: usize) -> Stats {
    let ctx = ctx(block_size, csum);
    let mut rng = Rng(seed);
    let mut store = MemStore::new(block_size as usize);
    let mut root = [0u8; 60];
    init_root(&mut root);
    let mut model = Model::new();
    let mut data_next = 50_000_000u64;
    let mut stats = Stats::default();
    let mut depth = 0;
    for op in 0..ops {
        let b = before(&store);
        let kind = rng.below(100);
        if kind < 55 {
            let lblk = rng.below(space);
            if model.contains_key(&lblk) {
                // Overlapping inserts fail and change nothing.
                let start = lblk.saturating_sub(rng.below(3));
                let len = (lblk - start + 1 + rng.below(5)) as u32;
                let start = start as u32;
                let old = root;
                let e = Extent { lblk: start, len, pblk: data_next, unwritten: false };
                let r = insert_extent(&ctx, &mut root, &mut store, e);
                assert!(matches!(r, Err(Error::InvalidArgument(_))), "op {op}: overlap accepted: {r:?}");
                assert_eq!(root, old);
                assert_eq!((store.allocs, store.writes), (b.allocs, b.writes));
                continue;
            }
            let want = rng.length(85, 6, 400);
            let next = model.range(lblk..).next().map_or(u64::MAX, |(k, _)| *k);
            let len = want.min(next - lblk).min(space - lblk);
            let unwritten = rng.chance(35);
            let pblk = if rng.chance(50) {
                ID_BASE + lblk
            } else {
                data_next += len + 1;
                data_next - len - 1
            };
            let e = Extent { lblk: lblk as u32, len: len as u32, pblk, unwritten };
            let old = root;
            match insert_extent(&ctx, &mut root, &mut store, e) {
                Ok(change) => {
                    check_change(&b, &store, change);
                    assert_eq!(change.meta_freed + change.data_freed, 0);
                    for i in 0..len {
                        model.insert(lblk + i, (pblk + i, unwritten));
                    }
                }
                Err(Error::FileTooBig(12)) => {
                    assert_eq!(depth, MAX_DEPTH, "op {op}: depth limit hit below the maximum depth");
                    assert_eq!(root, old);
                    assert_eq!((store.allocs, store.writes), (b.allocs, b.writes), "op {op}: changed on error");
                    stats.depth_limit_hits += 1;
                }
                Err(e) => panic!("op {op}: insert {e:?} failed: {e}"),
            }
        } else if kind < 80 {
            let lblk = rng.below(space);
            let len = if rng.chance(2) { u64::MAX } else { rng.length(80, 8, 300) };
            match remove_range(&ctx, &mut root, &mut store, lblk, len) {
                Ok(change) => {
                    check_change(&b, &store, change);
                    let want = model_remove(&mut model, lblk, lblk.saturating_add(len));
                    assert_eq!(freed_since(&b, &store), want, "op {op}: freed data blocks");
                }
                Err(Error::FileTooBig(12)) => {
                    assert_eq!(depth, MAX_DEPTH);
                    assert_eq!(store.allocs + store.frees + store.data_freed(), b.allocs + b.frees + b.data);
                    stats.depth_limit_hits += 1;
                }
                Err(e) => panic!("op {op}: remove failed: {e}"),
            }
        } else {
            let lblk = rng.below(space);
            let len = rng.length(80, 8, 300);
            match mark_written(&ctx, &mut root, &mut store, lblk, len) {
                Ok(change) => {
                    check_change(&b, &store, change);
                    assert_eq!(change.data_freed, 0);
                    for (_, v) in model.range_mut(lblk..lblk + len) {
                        v.1 = false;
                    }
                }
                Err(Error::FileTooBig(12)) => {
                    assert_eq!(depth, MAX_DEPTH);
                    assert_eq!((store.allocs, store.writes), (b.allocs, b.writes));
                    stats.depth_limit_hits += 1;
                }
                Err(e) => panic!("op {op}: mark_written failed: {e}"),
            }
        }
        let w = check_tree(&ctx, &root, &store, &model);
        if w.depth < depth {
            stats.shrinks += 1;
        }
        depth = w.depth;
        stats.max_depth = stats.max_depth.max(depth);
        stats.max_extents = stats.max_extents.max(w.extents.len());
    }
    // Truncating everything leaves an empty root and no tree block.
    let b = before(&store);
    let change = remove_range(&ctx, &mut root, &mut store, 0, u64::MAX).unwrap();
    check_change(&b, &store, change);
    let want = model_remove(&mut model, 0, u64::MAX);
    assert_eq!(freed_since(&b, &store), want);
    let w = check_tree(&ctx, &root, &store, &model);
    assert_eq!((w.depth, w.extents.len()), (0, 0));
    assert!(store.live.is_empty());
    stats
}

#[test]
fn random_extent_ops_1k_blocks() {
    for seed in [1, 2, 3] {
        let stats = random_extent_run(seed, 1024, seed != 2, 30_000, 3000);
        eprintln!("seed {seed}: {stats:?}");
        assert!(stats.max_depth >= 2, "seed {seed}: the tree never reached depth 2: {stats:?}");
        assert!(stats.shrinks >= 1, "seed {seed}: the tree never shrank: {stats:?}");
    }
}

#[test]
fn random_extent_ops_tiny_nodes() {
    // 64-byte "blocks" hold 4 entries per node, like the root: deep trees
    // from a few hundred extents, up to the depth limit.
    let mut hits = 0;
    for seed in [10, 11] {
        let stats = random_extent_run(seed, 64, true, 6000, 4000);
        eprintln!("seed {seed}: {stats:?}");
        assert!(stats.max_depth >= 4, "seed {seed}: {stats:?}");
        assert!(stats.shrinks >= 1, "seed {seed}: {stats:?}");
        hits += stats.depth_limit_hits;
    }
    eprintln!("depth limit hits: {hits}");
}

#[test]
fn depth_limit_then_shrink_to_root() {
    let ctx = ctx(64, true);
    let mut store = MemStore::new(64);
    let mut root = [0u8; 60];
    init_root(&mut root);
    let mut model = Model::new();
    // Appending keeps every node full: 4 * 4^5 extents fill depth 5.
    let full = 4 * 4usize.pow(MAX_DEPTH as u32);
    for i in 0..full as u64 {
        let e = Extent { lblk: 2 * i as u32, len: 1, pblk: 10_000 + 2 * i, unwritten: false };
        insert_extent(&ctx, &mut root, &mut store, e).unwrap();
        model.insert(2 * i, (10_000 + 2 * i, false));
    }
    let w = check_tree(&ctx, &root, &store, &model);
    assert_eq!((w.depth, w.extents.len()), (MAX_DEPTH, full));
    // Nodes are full: 4^5 leaves + 4^4 + ... + 4 index blocks.
    assert_eq!(store.live.len(), (1..=5).map(|d| 4usize.pow(d)).sum::<usize>());
    let old = root;
    let b = before(&store);
    let e = Extent { lblk: 2 * full as u32, len: 1, pblk: 5, unwritten: false };
    assert!(matches!(insert_extent(&ctx, &mut root, &mut store, e), Err(Error::FileTooBig(12))));
    assert_eq!((root, store.allocs, store.writes), (old, b.allocs, b.writes), "the failed insert changed the tree");
    // A merge needs no room.
    let e = Extent { lblk: 1, len: 1, pblk: 10_001, unwritten: false };
    insert_extent(&ctx, &mut root, &mut store, e).unwrap();
    model.insert(1, (10_001, false));
    check_tree(&ctx, &root, &store, &model);
    // Remove from the front in random pieces; the tree shrinks level by level.
    let mut rng = Rng(77);
    let mut depth = MAX_DEPTH;
    let mut lo = 0u64;
    while !model.is_empty() {
        let len = 1 + rng.below(150);
        let b = before(&store);
        let change = remove_range(&ctx, &mut root, &mut store, lo, len).unwrap();
        check_change(&b, &store, change);
        assert_eq!(freed_since(&b, &store), model_remove(&mut model, lo, lo + len));
        let w = check_tree(&ctx, &root, &store, &model);
        assert!(w.depth <= depth);
        depth = w.depth;
        lo += len;
    }
    assert_eq!(depth, 0);
    assert!(store.live.is_empty());
}

fn extents(ctx: &MapContext, root: &[u8; 60], store: &MemStore) -> Vec<(u32, u32, u64, bool)> {
    walk_tree(ctx, root, store).extents.iter().map(|e| (e.lblk, e.len, e.pblk, e.unwritten)).collect()
}

#[test]
fn long_runs_split_at_the_extent_length_limits() {
    let ctx = ctx(4096, true);
    let mut store = MemStore::new(4096);
    let mut root = [0u8; 60];
    init_root(&mut root);
    let ins = |root: &mut [u8; 60], store: &mut MemStore, lblk, len, pblk, unwritten| {
        insert_extent(&ctx, root, store, Extent { lblk, len, pblk, unwritten }).unwrap()
    };
    ins(&mut root, &mut store, 0, 100_000, 1000, false);
    assert_eq!(
        extents(&ctx, &root, &store),
        vec![
            (0, 32768, 1000, false),
            (32768, 32768, 33768, false),
            (65536, 32768, 66536, false),
            (98304, 1696, 99304, false)
        ]
    );
    ins(&mut root, &mut store, 200_000, 70_000, 500_000, true);
    let ex = extents(&ctx, &root, &store);
    assert_eq!(
        ex[4..],
        [(200_000, 32767, 500_000, true), (232_767, 32767, 532_767, true), (265_534, 4466, 565_534, true)]
    );
    // The root overflowed into one leaf.
    assert_eq!(store.live.len(), 1);
    // Converting the middle of an unwritten extent splits it in three.
    mark_written(&ctx, &mut root, &mut store, 200_010, 5).unwrap();
    let ex = extents(&ctx, &root, &store);
    assert_eq!(ex[4..7], [(200_000, 10, 500_000, true), (200_010, 5, 500_010, false), (200_015, 32752, 500_015, true)]);
    // Converting the rest merges the written pieces as far as 32768 blocks
    // allow; the unwritten remainder merges with the next unwritten extent.
    mark_written(&ctx, &mut root, &mut store, 200_000, 40_000).unwrap();
    let ex = extents(&ctx, &root, &store);
    assert_eq!(
        ex[4..],
        [(200_000, 32767, 500_000, false), (232_767, 7233, 532_767, false), (240_000, 30000, 540_000, true)]
    );
    // Writing a neighbour merges into a written extent, not an unwritten one.
    let mut root2 = [0u8; 60];
    init_root(&mut root2);
    let mut s2 = MemStore::new(4096);
    ins(&mut root2, &mut s2, 0, 10, 1000, false);
    ins(&mut root2, &mut s2, 10, 10, 1010, true);
    assert_eq!(extents(&ctx, &root2, &s2), vec![(0, 10, 1000, false), (10, 10, 1010, true)]);
    mark_written(&ctx, &mut root2, &mut s2, 10, 10).unwrap();
    assert_eq!(extents(&ctx, &root2, &s2), vec![(0, 20, 1000, false)]);
    // The last logical block is mappable; past it is too big.
    ins(&mut root2, &mut s2, u32::MAX, 1, 7, false);
    let e = Extent { lblk: u32::MAX, len: 2, pblk: 9, unwritten: false };
    assert!(matches!(insert_extent(&ctx, &mut root2, &mut s2, e), Err(Error::FileTooBig(12))));
    // Removing the whole space frees everything.
    let change = remove_range(&ctx, &mut root2, &mut s2, 0, u64::MAX).unwrap();
    assert_eq!(change, MapChange { meta_allocated: 0, meta_freed: 0, data_freed: 21 });
}

#[test]
fn merges_across_a_leaf_boundary() {
    let ctx = ctx(1024, true);
    let mut store = MemStore::new(1024);
    let mut root = [0u8; 60];
    init_root(&mut root);
    // 200 single blocks at even logical blocks, in order: leaves of 84, 84, 32.
    for i in 0..200u32 {
        let e = Extent { lblk: 2 * i, len: 1, pblk: ID_BASE + 2 * i as u64, unwritten: false };
        insert_extent(&ctx, &mut root, &mut store, e).unwrap();
    }
    let w = walk_tree(&ctx, &root, &store);
    assert_eq!((w.depth, w.blocks.len()), (1, 3));
    // Block 167 lies between leaf 1 (ends at 166) and leaf 2 (starts at
    // 168). Without a logical neighbour on the left it extends leaf 2's
    // first extent downwards, and the index key follows.
    remove_range(&ctx, &mut root, &mut store, 166, 1).unwrap();
    let e = Extent { lblk: 167, len: 1, pblk: ID_BASE + 167, unwritten: false };
    assert_eq!(insert_extent(&ctx, &mut root, &mut store, e).unwrap(), MapChange::default());
    let ex = extents(&ctx, &root, &store);
    assert_eq!(ex.len(), 199);
    assert!(ex.contains(&(167, 2, ID_BASE + 167, false)));
    let root_node = ExtentNode::decode(&root, NodePlace::Root, Location::Inode(12)).unwrap();
    let ExtentEntries::Indexes(idx) = root_node.entries else { panic!("depth 1 expected") };
    assert_eq!(idx.iter().map(|i| i.lblk).collect::<Vec<_>>(), vec![0, 167, 336]);
}

#[test]
fn corrupt_trees_are_refused() {
    let ctx = ctx(1024, true);
    let build = || {
        let mut store = MemStore::new(1024);
        let mut root = [0u8; 60];
        init_root(&mut root);
        for i in 0..10u32 {
            let e = Extent { lblk: 3 * i, len: 1, pblk: 5000 + 3 * i as u64, unwritten: false };
            insert_extent(&ctx, &mut root, &mut store, e).unwrap();
        }
        let leaf = *store.live.first().unwrap();
        (store, root, leaf)
    };
    let probe = Extent { lblk: 100, len: 1, pblk: 9000, unwritten: false };

    let (mut store, mut root, leaf) = build();
    // The low byte of the first extent's physical block: still well formed.
    store.blocks.get_mut(&leaf).unwrap()[20] ^= 1;
    let r = insert_extent(&ctx, &mut root, &mut store, probe);
    assert!(matches!(r, Err(Error::Checksum { location: Location::Block(b), .. }) if b == leaf), "{r:?}");

    // A leaf whose extent points outside the file system is not freed.
    let (mut store, mut root, leaf) = build();
    let small = MapContext { blocks_count: 5005, ..ctx };
    let r = remove_range(&small, &mut root, &mut store, 0, u64::MAX);
    assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
    assert!(store.freed_data.is_empty());
    let _ = leaf;

    // An index pointing at a block whose depth is wrong.
    let (mut store, mut root, leaf) = build();
    let mut node = ExtentNode::decode(&store.blocks[&leaf], NodePlace::Block, Location::Block(leaf)).unwrap();
    node.header.depth = 1;
    node.entries = ExtentEntries::Indexes(vec![extent::ExtentIndex { lblk: 0, leaf }]);
    let mut buf = vec![0u8; 1024];
    node.encode(&mut buf, NodePlace::Block).unwrap();
    extent::set_checksum(SEED, 12, ctx.generation, &mut buf).unwrap();
    store.blocks.insert(leaf, buf);
    let r = mark_written(&ctx, &mut root, &mut store, 0, 10);
    assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");

    // A root that is not an extent header.
    let (mut store, _, _) = build();
    let mut zeros = [0u8; 60];
    assert!(matches!(insert_extent(&ctx, &mut zeros, &mut store, probe), Err(Error::Corrupt { .. })));
}

// ----- block maps -----

/// Walks a block map: (logical -> physical, indirect blocks), checking
/// that every indirect block is allocated, referenced once and not empty.
fn walk_map(ctx: &MapContext, i_block: &[u8; 60], store: &MemStore) -> (BTreeMap<u64, u64>, BTreeSet<u64>) {
    let ptr = |b: &[u8], i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap()) as u64;
    let p = ctx.block_size as u64 / 4;
    let mut map = BTreeMap::new();
    let mut meta = BTreeSet::new();
    for i in 0..12 {
        if ptr(i_block, i) != 0 {
            map.insert(i as u64, ptr(i_block, i));
        }
    }
    fn rec(
        store: &MemStore,
        blk: u64,
        base: u64,
        cover: u64,
        p: u64,
        map: &mut BTreeMap<u64, u64>,
        meta: &mut BTreeSet<u64>,
    ) {
        assert!(store.live.contains(&blk), "indirect block {blk} not allocated");
        assert!(meta.insert(blk), "indirect block {blk} referenced twice");
        let data = &store.blocks[&blk];
        assert!(data.iter().any(|&b| b != 0), "empty indirect block {blk} left allocated");
        let child = cover / p;
        for j in 0..p {
            let c = u32::from_le_bytes(data[4 * j as usize..4 * j as usize + 4].try_into().unwrap()) as u64;
            if c == 0 {
                continue;
            }
            if child == 1 {
                map.insert(base + j, c);
            } else {
                rec(store, c, base + j * child, child, p, map, meta);
            }
        }
    }
    let (mut base, mut cover) = (12u64, p);
    for slot in 12..15 {
        if ptr(i_block, slot) != 0 {
            rec(store, ptr(i_block, slot), base, cover, p, &mut map, &mut meta);
        }
        base += cover;
        cover *= p;
    }
    (map, meta)
}

fn random_blockmap_run(seed: u64, block_size: u32, space: u64, ops: usize) {
    let ctx = ctx(block_size, false);
    let mut rng = Rng(seed);
    let mut store = MemStore::new(block_size as usize);
    let mut ib = [0u8; 60];
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    let mut data_next = 1_000_000u64;
    let mut max_meta = 0;
    for op in 0..ops {
        let b = before(&store);
        if rng.chance(60) {
            let lblk = rng.below(space);
            let len = rng.length(80, 10, 600).min(space - lblk);
            if model.range(lblk..lblk + len).next().is_some() {
                let old = ib;
                let r = set_blocks_blockmap(&ctx, &mut ib, &mut store, lblk, data_next, len);
                assert!(matches!(r, Err(Error::InvalidArgument(_))), "op {op}: {r:?}");
                assert_eq!((ib, store.allocs, store.writes), (old, b.allocs, b.writes));
                continue;
            }
            let change = set_blocks_blockmap(&ctx, &mut ib, &mut store, lblk, data_next, len).unwrap();
            check_change(&b, &store, change);
            for i in 0..len {
                model.insert(lblk + i, data_next + i);
            }
            data_next += len + rng.below(2);
        } else {
            let lblk = rng.below(space);
            let len = if rng.chance(3) { u64::MAX } else { rng.length(70, 10, 2000) };
            let change = remove_range_blockmap(&ctx, &mut ib, &mut store, lblk, len).unwrap();
            check_change(&b, &store, change);
            let keys: Vec<u64> = model.range(lblk..lblk.saturating_add(len)).map(|(k, _)| *k).collect();
            let mut want: Vec<u64> = keys.iter().filter_map(|k| model.remove(k)).collect();
            want.sort_unstable();
            assert_eq!(freed_since(&b, &store), want, "op {op}: freed data");
        }
        let (map, meta) = walk_map(&ctx, &ib, &store);
        assert_eq!(map, model, "op {op}: map vs model");
        assert_eq!(meta, store.live, "op {op}: indirect blocks vs allocated");
        max_meta = max_meta.max(meta.len());
    }
    let b = before(&store);
    let change = remove_range_blockmap(&ctx, &mut ib, &mut store, 0, u64::MAX).unwrap();
    check_change(&b, &store, change);
    assert!(store.live.is_empty() && ib == [0; 60]);
    eprintln!("block map seed {seed}: up to {max_meta} indirect blocks");
}

#[test]
fn random_blockmap_ops() {
    // 64-byte blocks: 16 pointers each, triple indirect from block 284.
    random_blockmap_run(5, 64, blockmap_addressable(64), 3000);
    // 1 KiB blocks, up into the triple indirect tree (from block 65804).
    random_blockmap_run(6, 1024, 70_000, 1500);
}

#[test]
fn blockmap_limits() {
    let ctx = ctx(1024, false);
    let mut store = MemStore::new(1024);
    let mut ib = [0u8; 60];
    let top = blockmap_addressable(1024);
    set_blocks_blockmap(&ctx, &mut ib, &mut store, top - 1, 77, 1).unwrap();
    assert_eq!(store.live.len(), 3, "the last block needs a triple, double and single indirect block");
    assert!(matches!(set_blocks_blockmap(&ctx, &mut ib, &mut store, top, 78, 1), Err(Error::FileTooBig(12))));
    let r = set_blocks_blockmap(&ctx, &mut ib, &mut store, 0, u32::MAX as u64, 2);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "pointers are 32 bits: {r:?}");
    let change = remove_range_blockmap(&ctx, &mut ib, &mut store, top - 1, 10).unwrap();
    assert_eq!(change, MapChange { meta_allocated: 0, meta_freed: 3, data_freed: 1 });
    assert_eq!(ib, [0; 60]);
    // A pointer outside the file system is not followed or freed.
    let mut bad = [0u8; 60];
    bad[12 * 4..12 * 4 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let small = MapContext { blocks_count: 1000, ..ctx };
    assert!(matches!(remove_range_blockmap(&small, &mut bad, &mut store, 0, 100), Err(Error::Corrupt { .. })));
    assert!(matches!(set_blocks_blockmap(&small, &mut bad, &mut store, 20, 5, 1), Err(Error::Corrupt { .. })));
}
