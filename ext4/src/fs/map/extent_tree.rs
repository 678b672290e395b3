//! Updating extent trees with blocks allocated separately: the mapping
//! half of "set_blocks". [`insert_extent`] maps a range that is currently
//! a hole, [`remove_range`] unmaps a range (truncate, punch hole) and frees
//! its data, [`mark_written`] turns unwritten extents written.
//!
//! Every operation walks from the root in `i_block` down to one leaf,
//! checking each node as the reader does (structure, tail checksum, depth
//! one below its parent, entries inside the key range the parent gives),
//! changes that leaf, and carries the consequences upwards: a node that
//! overflows is split (the root instead moves its entries into a new block
//! and grows the tree by one level), a node left empty is freed and its
//! index removed, and an index key follows its child's first entry, as
//! e2fsck requires. Nodes are rewritten whole with the standard `eh_max`
//! and, under metadata_csum, their tail checksum. After removals the tree
//! shrinks again while all entries of the root's children fit in the root.
//!
//! Blocks are read, written, allocated and freed through a [`MapStore`],
//! normally one journal handle: an error part way leaves changes in the
//! store that the caller must abandon with its transaction.

use crate::disk::extent::{
    self, EXTENT_MAGIC, Extent, ExtentEntries, ExtentHeader, ExtentIndex, ExtentNode, INIT_MAX_LEN, MAX_DEPTH,
    MAX_LOGICAL_BLOCKS, MAX_PHYSICAL_BLOCK, NodePlace, ROOT_CAPACITY, ROOT_SIZE, UNWRITTEN_MAX_LEN,
};
use crate::error::{Error, Location, Result};
use crate::fs::map::store::{MapChange, MapContext, MapStore};

/// Writes an empty extent tree (a root leaf without extents) into `root`,
/// as a new extent-mapped inode starts.
pub fn init_root(root: &mut [u8; ROOT_SIZE]) {
    root.fill(0);
    ExtentHeader { magic: EXTENT_MAGIC, entries: 0, max: ROOT_CAPACITY, depth: 0, generation: 0 }.encode(root);
}

/// Maps `extent.len` logical blocks from `extent.lblk` to the physical
/// blocks from `extent.pblk`, which the caller allocated. The logical range
/// must be unmapped. The new extent is merged with logically and
/// physically contiguous neighbours of the same written state, up to the
/// longest extent the format stores; longer runs become several extents.
/// Returns the tree blocks allocated (and none freed).
pub fn insert_extent<S: MapStore + ?Sized>(
    ctx: &MapContext,
    root: &mut [u8; ROOT_SIZE],
    store: &mut S,
    extent: Extent,
) -> Result<MapChange> {
    if extent.len == 0 {
        return Err(Error::InvalidArgument("cannot map an empty extent".into()));
    }
    if extent.end() > MAX_LOGICAL_BLOCKS {
        return Err(Error::FileTooBig(ctx.ino));
    }
    let len = extent.len as u64;
    if !ctx.run_in_range(extent.pblk, len) || extent.pblk + len - 1 > MAX_PHYSICAL_BLOCK {
        return Err(Error::InvalidArgument(format!(
            "physical blocks {}..{} lie outside the file system",
            extent.pblk,
            extent.pblk.saturating_add(len)
        )));
    }
    let mut tree = Tree::new(ctx, root, store, extent.pblk)?;
    if let Some(found) = tree.first_extent_from(extent.lblk as u64)?
        && (found.lblk as u64) < extent.end()
    {
        return Err(Error::InvalidArgument(format!(
            "inode {}: logical blocks {}..{} overlap the extent at {}",
            ctx.ino,
            extent.lblk,
            extent.end(),
            found.lblk
        )));
    }
    let max = max_len(extent.unwritten);
    let mut done = 0;
    while done < extent.len {
        let piece = Extent {
            lblk: extent.lblk + done,
            pblk: extent.pblk + done as u64,
            len: (extent.len - done).min(max),
            unwritten: extent.unwritten,
        };
        done += tree.insert_one(piece)?;
    }
    Ok(tree.change)
}

/// Unmaps logical blocks `lblk..lblk+len` (clipped to the 2^32 blocks an
/// extent tree addresses): extents straddling either end are split, the
/// data blocks are freed through [`MapStore::free_data`], emptied nodes are
/// freed and the tree becomes shallower when its entries fit the root.
/// Splitting one extent in two can overflow a leaf, so a removal may also
/// allocate a tree block. Holes in the range are skipped.
pub fn remove_range<S: MapStore + ?Sized>(
    ctx: &MapContext,
    root: &mut [u8; ROOT_SIZE],
    store: &mut S,
    lblk: u64,
    len: u64,
) -> Result<MapChange> {
    let mut tree = Tree::new(ctx, root, store, 0)?;
    let end = lblk.saturating_add(len).min(MAX_LOGICAL_BLOCKS);
    tree.for_each_leaf(lblk, end, |v, start, stop| {
        let mut out = Vec::with_capacity(v.len() + 1);
        let mut freed = Vec::new();
        for &x in v {
            let (a, b) = (x.lblk as u64, x.end());
            if b <= start || a >= stop {
                out.push(x);
                continue;
            }
            if a < start {
                out.push(Extent { len: (start - a) as u32, ..x });
            }
            let (from, to) = (a.max(start), b.min(stop));
            freed.push((x.pblk + (from - a), to - from));
            if b > stop {
                // stop < b <= 2^32, so it fits the 32-bit field.
                out.push(Extent { lblk: stop as u32, pblk: x.pblk + (stop - a), len: (b - stop) as u32, ..x });
            }
        }
        (out, freed)
    })?;
    tree.shrink()?;
    Ok(tree.change)
}

/// Marks the unwritten blocks within `lblk..lblk+len` written (after their
/// data reached the disk): an unwritten extent partly inside the range is
/// split into up to three extents, and the results are merged with
/// contiguous neighbours of the same state. Holes and written blocks in the
/// range are left alone. A split can overflow a leaf and allocate a block.
pub fn mark_written<S: MapStore + ?Sized>(
    ctx: &MapContext,
    root: &mut [u8; ROOT_SIZE],
    store: &mut S,
    lblk: u64,
    len: u64,
) -> Result<MapChange> {
    let mut tree = Tree::new(ctx, root, store, 0)?;
    let end = lblk.saturating_add(len).min(MAX_LOGICAL_BLOCKS);
    tree.for_each_leaf(lblk, end, |v, start, stop| {
        let mut out: Vec<Extent> = Vec::with_capacity(v.len() + 2);
        for &x in v {
            let (a, b) = (x.lblk as u64, x.end());
            if !x.unwritten || b <= start || a >= stop {
                push_merging(&mut out, x);
                continue;
            }
            let (from, to) = (a.max(start), b.min(stop));
            // Each cut lies inside the extent, below 2^32.
            let piece = |lo: u64, hi: u64, unwritten: bool| Extent {
                lblk: lo as u32,
                pblk: x.pblk + (lo - a),
                len: (hi - lo) as u32,
                unwritten,
            };
            for (lo, hi, unwritten) in [(a, from, true), (from, to, false), (to, b, true)] {
                if lo < hi {
                    push_merging(&mut out, piece(lo, hi, unwritten));
                }
            }
        }
        (out, Vec::new())
    })?;
    tree.shrink()?;
    Ok(tree.change)
}

/// Makes an extent start at `lblk` when one straddles it, by cutting that
/// extent in two (same state, same physical run); nothing else changes.
/// The extra entry can overflow a leaf, so this may allocate a tree block.
/// Insert-range uses it before shifting the extents from `lblk` on.
pub fn split_at<S: MapStore + ?Sized>(
    ctx: &MapContext,
    root: &mut [u8; ROOT_SIZE],
    store: &mut S,
    lblk: u64,
) -> Result<MapChange> {
    let mut tree = Tree::new(ctx, root, store, 0)?;
    if lblk == 0 || lblk >= MAX_LOGICAL_BLOCKS {
        return Ok(tree.change);
    }
    tree.for_each_leaf(lblk, lblk + 1, |v, start, _| {
        let mut out = Vec::with_capacity(v.len() + 1);
        for &x in v {
            let a = x.lblk as u64;
            if a < start && x.end() > start {
                // a < start < end <= 2^32: both pieces fit the 32-bit fields.
                out.push(Extent { len: (start - a) as u32, ..x });
                out.push(Extent { lblk: start as u32, pblk: x.pblk + (start - a), len: (x.end() - start) as u32, ..x });
            } else {
                out.push(x);
            }
        }
        (out, Vec::new())
    })?;
    Ok(tree.change)
}

/// Moves every extent that starts in `from..until` by `delta` logical
/// blocks (collapse-range: negative, insert-range: positive), with the
/// index keys above them, keeping the physical blocks. No extent may
/// straddle `from` (see [`split_at`]) or `until` (take `until` from
/// [`leaf_starts`], or [`MAX_LOGICAL_BLOCKS`] for the rest of the file).
/// The moved extents must land on unmapped blocks: `from+delta..from` for a
/// left shift, `until..until+delta` and below 2^32 for a right shift; both
/// are checked before anything is written ([`Error::InvalidArgument`],
/// [`Error::FileTooBig`]). In each rewritten leaf, contiguous extents of
/// the same state are merged (as the kernel's shift merges the extent
/// before a collapsed range with the one after it). Only the nodes holding
/// moved entries are rewritten; nothing is allocated or freed.
pub fn shift_extents<S: MapStore + ?Sized>(
    ctx: &MapContext,
    root: &mut [u8; ROOT_SIZE],
    store: &mut S,
    from: u64,
    until: u64,
    delta: i64,
) -> Result<MapChange> {
    let mut tree = Tree::new(ctx, root, store, 0)?;
    let until = until.min(MAX_LOGICAL_BLOCKS);
    if delta == 0 || from >= until {
        return Ok(tree.change);
    }
    let in_the_way = |e: Extent| {
        Error::InvalidArgument(format!(
            "inode {}: the extent at logical block {} is in the way of moving blocks {from}..{until} by {delta}",
            ctx.ino, e.lblk
        ))
    };
    if delta < 0 {
        let below = from
            .checked_add_signed(delta)
            .ok_or_else(|| Error::InvalidArgument(format!("inode {}: cannot move block {from} by {delta}", ctx.ino)))?;
        if let Some(e) = tree.first_extent_from(below)?
            && (e.lblk as u64) < from
        {
            return Err(in_the_way(e));
        }
    } else {
        if let Some(e) = tree.first_extent_from(from)?
            && (e.lblk as u64) < from
        {
            return Err(in_the_way(e));
        }
        let room = until.saturating_add(delta as u64);
        if until == MAX_LOGICAL_BLOCKS {
            if tree.last_extent_end()?.is_some_and(|end| end > from && end + delta as u64 > MAX_LOGICAL_BLOCKS) {
                return Err(Error::FileTooBig(ctx.ino));
            }
        } else if let Some(e) = tree.first_extent_from(until)?
            && (e.lblk as u64) < room
        {
            return Err(in_the_way(e));
        }
    }
    let mut node = tree.read_root()?;
    if tree.shift_node(&mut node, MAX_LOGICAL_BLOCKS, from, until, delta)? {
        let mut path = vec![Level { blk: None, node, idx: 0, hi: MAX_LOGICAL_BLOCKS }];
        tree.write_level(&mut path, 0)?;
    }
    Ok(tree.change)
}

/// The first logical block of every leaf's extents at or after `from`, in
/// order, starting with the first extent at or after `from`: the places a
/// shift can be cut into pieces that each rewrite only some leaves (see
/// [`shift_extents`]). Empty when no extent starts at or after `from`.
pub fn leaf_starts<S: MapStore + ?Sized>(
    ctx: &MapContext,
    root: &mut [u8; ROOT_SIZE],
    store: &mut S,
    from: u64,
) -> Result<Vec<u64>> {
    let mut tree = Tree::new(ctx, root, store, 0)?;
    let mut out = Vec::new();
    let mut cur = from;
    // Each round moves to the next leaf: `hi` > `cur`.
    while cur < MAX_LOGICAL_BLOCKS {
        let path = tree.descend(cur)?;
        let leaf = &path[path.len() - 1];
        if let ExtentEntries::Leaves(v) = &leaf.node.entries
            && let Some(e) = v.iter().find(|e| e.lblk as u64 >= cur)
        {
            out.push(e.lblk as u64);
        }
        cur = leaf.hi;
    }
    Ok(out)
}

/// `lblk + delta`, for an extent start the caller checked can move.
fn shifted(ino: u32, lblk: u32, delta: i64) -> Result<u32> {
    (lblk as u64)
        .checked_add_signed(delta)
        .and_then(|l| u32::try_from(l).ok())
        .ok_or_else(|| Error::InvalidArgument(format!("inode {ino}: logical block {lblk} cannot move by {delta}")))
}

/// Longest extent of the given state.
fn max_len(unwritten: bool) -> u32 {
    if unwritten { UNWRITTEN_MAX_LEN } else { INIT_MAX_LEN }
}

/// Whether `b` continues `a` logically and physically in the same state,
/// and the two fit one extent.
fn mergeable(a: &Extent, b: &Extent) -> bool {
    a.unwritten == b.unwritten
        && a.end() == b.lblk as u64
        && a.pblk + a.len as u64 == b.pblk
        && a.len + b.len <= max_len(a.unwritten)
}

/// Appends `x` to sorted extents, merging it into the last one if it can.
fn push_merging(out: &mut Vec<Extent>, x: Extent) {
    match out.last_mut() {
        Some(last) if mergeable(last, &x) => last.len += x.len,
        _ => out.push(x),
    }
}

/// Sizes of the nodes `n` entries are split into, at most `cap` each.
/// When the change that overflowed the node lies past what the first node
/// keeps (appending), the first nodes stay full, so files written in order
/// get full nodes; otherwise the entries are spread evenly, leaving room
/// on both sides for later inserts.
fn chunk_sizes(n: usize, cap: usize, pos: usize) -> Vec<usize> {
    let parts = n.div_ceil(cap);
    if pos >= cap {
        let mut sizes = vec![cap; parts];
        if let Some(last) = sizes.last_mut() {
            *last = n - cap * (parts - 1);
        }
        sizes
    } else {
        (0..parts).map(|i| n / parts + usize::from(i < n % parts)).collect()
    }
}

/// Splits `v` into consecutive pieces of the given sizes.
fn split_vec<T>(mut v: Vec<T>, sizes: &[usize]) -> Vec<Vec<T>> {
    let mut out = Vec::with_capacity(sizes.len());
    for &size in sizes.iter().rev() {
        out.push(v.split_off(v.len().saturating_sub(size)));
    }
    out.reverse();
    out
}

/// Splits a node's entries into pieces of the given sizes.
fn split_entries(entries: ExtentEntries, sizes: &[usize]) -> Vec<ExtentEntries> {
    match entries {
        ExtentEntries::Leaves(v) => split_vec(v, sizes).into_iter().map(ExtentEntries::Leaves).collect(),
        ExtentEntries::Indexes(v) => split_vec(v, sizes).into_iter().map(ExtentEntries::Indexes).collect(),
    }
}

/// The logical block of a node's first entry: the key its parent indexes it by.
fn first_key(entries: &ExtentEntries) -> Option<u32> {
    match entries {
        ExtentEntries::Leaves(v) => v.first().map(|e| e.lblk),
        ExtentEntries::Indexes(v) => v.first().map(|e| e.lblk),
    }
}

/// One node on the way from the root to a leaf.
struct Level {
    /// The node's block; `None` for the root in `i_block`.
    blk: Option<u64>,
    /// The node as it is (or is about to be) stored.
    node: ExtentNode,
    /// The entry followed to the next level (index nodes).
    idx: usize,
    /// End of the key range the parent gives this node.
    hi: u64,
}

/// The index entries of an index node on a path.
fn index_entries(level: &Level) -> Result<Vec<ExtentIndex>> {
    match &level.node.entries {
        ExtentEntries::Indexes(v) => Ok(v.clone()),
        ExtentEntries::Leaves(_) => Err(Error::InvalidArgument("extent path: a leaf above another node".into())),
    }
}

/// One mapping update in progress.
struct Tree<'a, S: MapStore + ?Sized> {
    ctx: &'a MapContext,
    root: &'a mut [u8; ROOT_SIZE],
    store: &'a mut S,
    change: MapChange,
    /// Where new tree blocks should go.
    goal: u64,
    /// `eh_max` of a tree block.
    block_cap: usize,
}

impl<'a, S: MapStore + ?Sized> Tree<'a, S> {
    fn new(ctx: &'a MapContext, root: &'a mut [u8; ROOT_SIZE], store: &'a mut S, goal: u64) -> Result<Self> {
        let block_cap = extent::block_capacity(ctx.block_size as usize) as usize;
        if block_cap < 2 {
            return Err(Error::InvalidArgument(format!("block size {} cannot hold extent nodes", ctx.block_size)));
        }
        Ok(Tree { ctx, root, store, change: MapChange::default(), goal, block_cap })
    }

    fn capacity(&self, k: usize) -> usize {
        if k == 0 { ROOT_CAPACITY as usize } else { self.block_cap }
    }

    // ----- reading -----

    fn read_root(&self) -> Result<ExtentNode> {
        let loc = Location::Inode(self.ctx.ino);
        let node = ExtentNode::decode(&self.root[..], NodePlace::Root, loc)?;
        self.check_entries(&node, 0, MAX_LOGICAL_BLOCKS, loc)?;
        Ok(node)
    }

    /// Reads and checks the child at `blk` of a node at `parent_depth`,
    /// which gives it the key range `lo..hi`.
    fn read_child(&mut self, blk: u64, parent_depth: u16, lo: u64, hi: u64) -> Result<ExtentNode> {
        let ctx = self.ctx;
        ctx.check_block(blk, "extent index", Location::FileBlock { ino: ctx.ino, lblk: lo })?;
        let loc = Location::Block(blk);
        let data = ctx.read_block(self.store, blk)?;
        let node = ExtentNode::decode(&data, NodePlace::Block, loc)?;
        if let Some(seed) = ctx.csum_seed
            && !extent::verify_checksum(seed, ctx.ino, ctx.generation, &data)
        {
            return Err(Error::Checksum { what: "extent tree block", location: loc });
        }
        if node.header.depth + 1 != parent_depth {
            return Err(Error::corrupt(
                "extent tree node",
                loc,
                format!("depth {} under a node of depth {parent_depth} (inode {})", node.header.depth, ctx.ino),
            ));
        }
        self.check_entries(&node, lo, hi, loc)?;
        Ok(node)
    }

    /// Checks that a node's entries lie in `lo..hi` and a leaf's extents
    /// inside the file system, before anything is changed or freed.
    fn check_entries(&self, node: &ExtentNode, lo: u64, hi: u64, loc: Location) -> Result<()> {
        let ino = self.ctx.ino;
        let bad = |reason: String| Error::corrupt("extent tree node", loc, format!("inode {ino}: {reason}"));
        let (first, end) = match &node.entries {
            ExtentEntries::Leaves(v) => {
                if let Some(e) = v.iter().find(|e| !self.ctx.run_in_range(e.pblk, e.len as u64)) {
                    return Err(bad(format!("extent at logical block {} maps blocks outside the file system", e.lblk)));
                }
                (v.first().map(|e| e.lblk as u64), v.last().map(|e| e.end()))
            }
            ExtentEntries::Indexes(v) => (v.first().map(|e| e.lblk as u64), v.last().map(|e| e.lblk as u64 + 1)),
        };
        if first.is_some_and(|f| f < lo) || end.is_some_and(|e| e > hi) {
            return Err(bad(format!("entries outside the range {lo}..{hi} given by the parent index")));
        }
        Ok(())
    }

    /// The path from the root to the leaf where `lblk` belongs: at each
    /// index node the last entry whose key is at most `lblk`, or the first.
    fn descend(&mut self, lblk: u64) -> Result<Vec<Level>> {
        let mut path = vec![Level { blk: None, node: self.read_root()?, idx: 0, hi: MAX_LOGICAL_BLOCKS }];
        // Each step goes one level down (read_child checks the depth).
        loop {
            let k = path.len() - 1;
            let last = &mut path[k];
            let ExtentEntries::Indexes(v) = &last.node.entries else { return Ok(path) };
            let i = v.partition_point(|e| e.lblk as u64 <= lblk).saturating_sub(1);
            let (child, lo) = (v[i].leaf, v[i].lblk as u64);
            let hi = v.get(i + 1).map_or(last.hi, |e| e.lblk as u64);
            last.idx = i;
            let depth = last.node.header.depth;
            let node = self.read_child(child, depth, lo, hi)?;
            path.push(Level { blk: Some(child), node, idx: 0, hi });
        }
    }

    /// The first extent that ends after `lblk`.
    fn first_extent_from(&mut self, lblk: u64) -> Result<Option<Extent>> {
        let mut cur = lblk;
        // Each round moves to the next leaf: `hi` > `cur`.
        loop {
            let path = self.descend(cur)?;
            let leaf = &path[path.len() - 1];
            if let ExtentEntries::Leaves(v) = &leaf.node.entries
                && let Some(e) = v.iter().find(|e| e.end() > cur)
            {
                return Ok(Some(*e));
            }
            if leaf.hi >= MAX_LOGICAL_BLOCKS {
                return Ok(None);
            }
            cur = leaf.hi;
        }
    }

    /// End of the file's last extent, if it has any.
    fn last_extent_end(&mut self) -> Result<Option<u64>> {
        let path = self.descend(MAX_LOGICAL_BLOCKS - 1)?;
        match &path[path.len() - 1].node.entries {
            ExtentEntries::Leaves(v) => Ok(v.last().map(|e| e.end())),
            ExtentEntries::Indexes(_) => Err(Error::InvalidArgument("extent path does not end in a leaf".into())),
        }
    }

    /// Shifts the entries starting in `from..until` in `node` (whose parent gives
    /// it keys below `hi`) and in its children by `delta`, storing each
    /// changed child block; returns whether `node` itself changed (the
    /// caller stores it). An index key follows its child's first entry.
    fn shift_node(&mut self, node: &mut ExtentNode, hi: u64, from: u64, until: u64, delta: i64) -> Result<bool> {
        let ino = self.ctx.ino;
        let depth = node.header.depth;
        match &mut node.entries {
            ExtentEntries::Leaves(v) => {
                let moves = |x: &Extent| (from..until).contains(&(x.lblk as u64));
                if !v.iter().any(moves) {
                    return Ok(false);
                }
                let mut out: Vec<Extent> = Vec::with_capacity(v.len());
                for &x in v.iter() {
                    let x = if moves(&x) { Extent { lblk: shifted(ino, x.lblk, delta)?, ..x } } else { x };
                    if out.last().is_some_and(|l| l.end() > x.lblk as u64) {
                        return Err(Error::InvalidArgument(format!(
                            "inode {ino}: shifting by {delta} would overlap extents at logical block {}",
                            x.lblk
                        )));
                    }
                    push_merging(&mut out, x);
                }
                *v = out;
                Ok(true)
            }
            ExtentEntries::Indexes(v) => {
                let mut changed = false;
                for i in 0..v.len() {
                    let (key, child_hi) = (v[i].lblk as u64, v.get(i + 1).map_or(hi, |e| e.lblk as u64));
                    // Every entry of this child lies in `key..child_hi`.
                    if child_hi <= from || key >= until {
                        continue;
                    }
                    let blk = v[i].leaf;
                    let mut child = self.read_child(blk, depth, key, child_hi)?;
                    if !self.shift_node(&mut child, child_hi, from, until, delta)? {
                        continue;
                    }
                    child.header.entries = child.entries.len() as u16;
                    child.header.max = self.block_cap as u16;
                    self.write_block(blk, &child)?;
                    if let Some(k) = first_key(&child.entries) {
                        v[i].lblk = k;
                    }
                    changed = true;
                }
                if v.windows(2).any(|w| w[0].lblk >= w[1].lblk) {
                    return Err(Error::InvalidArgument(format!(
                        "inode {ino}: shifting by {delta} would disorder the extent index"
                    )));
                }
                Ok(changed)
            }
        }
    }

    /// Runs `edit` on every leaf holding part of `start..end`, leaf by leaf
    /// from the left. `edit` gets the leaf's extents and the part of the
    /// range inside the leaf and returns the new extents and the data runs
    /// `(pblk, len)` to free; the runs are freed and a changed leaf is
    /// stored (splitting or freeing nodes as needed) before the next leaf
    /// is looked up from the root.
    fn for_each_leaf<F>(&mut self, start: u64, end: u64, mut edit: F) -> Result<()>
    where
        F: FnMut(&[Extent], u64, u64) -> (Vec<Extent>, Vec<(u64, u64)>),
    {
        let mut cur = start;
        while cur < end {
            let mut path = self.descend(cur)?;
            let k = path.len() - 1;
            let hi = path[k].hi;
            let ExtentEntries::Leaves(v) = &path[k].node.entries else {
                return Err(Error::InvalidArgument("extent path does not end in a leaf".into()));
            };
            let v = v.clone();
            self.goal = path[k].blk.or(v.first().map(|e| e.pblk)).unwrap_or(0);
            let (out, freed) = edit(&v, cur, end.min(hi));
            self.check_room(&path, out.len())?;
            for (pblk, len) in freed {
                self.free_data(pblk, len)?;
            }
            if out != v {
                let pos = out.iter().zip(&v).take_while(|(a, b)| a == b).count();
                self.put(&mut path, k, ExtentEntries::Leaves(out), pos)?;
            }
            cur = hi;
        }
        Ok(())
    }

    /// Fails with [`Error::FileTooBig`], before anything is written, when
    /// storing `leaf_len` extents in the leaf of `path` would split every
    /// node up to a root already at [`MAX_DEPTH`]. (A split adds one entry
    /// to the parent, so it reaches the root only through full nodes.)
    fn check_room(&self, path: &[Level], leaf_len: usize) -> Result<()> {
        let k = path.len() - 1;
        let full_above = path[..k].iter().enumerate().all(|(j, l)| l.node.entries.len() >= self.capacity(j));
        if path[0].node.header.depth >= MAX_DEPTH && leaf_len > self.capacity(k) && full_above {
            return Err(Error::FileTooBig(self.ctx.ino));
        }
        Ok(())
    }

    // ----- writing -----

    fn alloc(&mut self, goal: u64) -> Result<u64> {
        let blk = self.store.alloc_meta(goal)?;
        self.change.meta_allocated += 1;
        if !self.ctx.run_in_range(blk, 1) || blk > MAX_PHYSICAL_BLOCK {
            return Err(Error::InvalidArgument(format!("allocator returned block {blk} outside the file system")));
        }
        Ok(blk)
    }

    fn free_meta(&mut self, blk: u64) -> Result<()> {
        self.store.free_meta(blk)?;
        self.change.meta_freed += 1;
        Ok(())
    }

    fn free_data(&mut self, pblk: u64, len: u64) -> Result<()> {
        self.store.free_data(pblk, len)?;
        self.change.data_freed += len;
        Ok(())
    }

    /// Stores a tree block node whole: entries, zeroed free slots, tail checksum.
    fn write_block(&mut self, blk: u64, node: &ExtentNode) -> Result<()> {
        let mut buf = vec![0u8; self.ctx.block_size as usize];
        node.encode(&mut buf, NodePlace::Block)?;
        if let Some(seed) = self.ctx.csum_seed {
            extent::set_checksum(seed, self.ctx.ino, self.ctx.generation, &mut buf)?;
        }
        self.store.write(blk, buf)
    }

    /// Stores the node at level `k` of `path` with the standard `eh_max`.
    fn write_level(&mut self, path: &mut [Level], k: usize) -> Result<()> {
        let level = &mut path[k];
        level.node.header.entries = level.node.entries.len() as u16;
        match level.blk {
            None => {
                level.node.header.max = ROOT_CAPACITY;
                let mut buf = [0u8; ROOT_SIZE];
                level.node.encode(&mut buf, NodePlace::Root)?;
                *self.root = buf;
                Ok(())
            }
            Some(blk) => {
                level.node.header.max = self.block_cap as u16;
                let node = level.node.clone();
                self.write_block(blk, &node)
            }
        }
    }

    /// Gives level `k` of `path` the entries `entries` (the first change at
    /// position `pos`) and stores it, then fixes the levels above: an empty
    /// node is freed and its index removed, an overflowing one is split
    /// (the root grows the tree instead), a changed first key is copied
    /// into the parent's index.
    fn put(&mut self, path: &mut Vec<Level>, k: usize, entries: ExtentEntries, pos: usize) -> Result<()> {
        let n = entries.len();
        if n == 0 {
            if k == 0 {
                path[0].node.header.depth = 0;
                path[0].node.entries = ExtentEntries::Leaves(Vec::new());
                return self.write_level(path, 0);
            }
            if let Some(blk) = path[k].blk {
                self.free_meta(blk)?;
            }
            let idx = path[k - 1].idx;
            let mut parent = index_entries(&path[k - 1])?;
            parent.remove(idx);
            return self.put(path, k - 1, ExtentEntries::Indexes(parent), idx);
        }
        if n > self.capacity(k) {
            if k == 0 {
                self.grow(path)?;
                return self.put(path, 1, entries, pos);
            }
            return self.split(path, k, entries, pos);
        }
        path[k].node.entries = entries;
        self.write_level(path, k)?;
        if k == 0 {
            return Ok(());
        }
        let Some(key) = first_key(&path[k].node.entries) else { return Ok(()) };
        let idx = path[k - 1].idx;
        let mut parent = index_entries(&path[k - 1])?;
        if parent[idx].lblk == key {
            return Ok(());
        }
        parent[idx].lblk = key;
        self.put(path, k - 1, ExtentEntries::Indexes(parent), idx)
    }

    /// Splits the overflowing entries of non-root level `k` over its block
    /// and new sibling blocks, and indexes the siblings in the parent.
    fn split(&mut self, path: &mut Vec<Level>, k: usize, entries: ExtentEntries, pos: usize) -> Result<()> {
        let sizes = chunk_sizes(entries.len(), self.block_cap, pos);
        let mut parts = split_entries(entries, &sizes).into_iter();
        let first = parts.next().unwrap_or(ExtentEntries::Leaves(Vec::new()));
        let header = path[k].node.header;
        let goal = path[k].blk.unwrap_or(self.goal);
        let mut siblings = Vec::new();
        for part in parts {
            let Some(key) = first_key(&part) else { continue };
            let blk = self.alloc(goal)?;
            let header = ExtentHeader { entries: part.len() as u16, max: self.block_cap as u16, ..header };
            self.write_block(blk, &ExtentNode { header, entries: part })?;
            siblings.push(ExtentIndex { lblk: key, leaf: blk });
        }
        path[k].node.entries = first;
        self.write_level(path, k)?;
        let idx = path[k - 1].idx;
        let mut parent = index_entries(&path[k - 1])?;
        if let Some(key) = first_key(&path[k].node.entries) {
            parent[idx].lblk = key;
        }
        parent.splice(idx + 1..idx + 1, siblings);
        self.put(path, k - 1, ExtentEntries::Indexes(parent), idx + 1)
    }

    /// Grows the tree by one level: the root's entries move to a new block
    /// (inserted as level 1 of `path`, written by the caller) and the root
    /// becomes an index with the one entry pointing at it.
    fn grow(&mut self, path: &mut Vec<Level>) -> Result<()> {
        let depth = path[0].node.header.depth;
        if depth >= MAX_DEPTH {
            return Err(Error::FileTooBig(self.ctx.ino));
        }
        let blk = self.alloc(self.goal)?;
        let root = &mut path[0];
        let old = std::mem::replace(&mut root.node.entries, ExtentEntries::Indexes(Vec::new()));
        let key = first_key(&old).unwrap_or(0);
        let header = ExtentHeader {
            magic: EXTENT_MAGIC,
            entries: old.len() as u16,
            max: self.block_cap as u16,
            depth,
            generation: root.node.header.generation,
        };
        let child = Level { blk: Some(blk), node: ExtentNode { header, entries: old }, idx: root.idx, hi: root.hi };
        root.node.header.depth = depth + 1;
        root.node.entries = ExtentEntries::Indexes(vec![ExtentIndex { lblk: key, leaf: blk }]);
        root.idx = 0;
        self.write_level(path, 0)?;
        path.insert(1, child);
        Ok(())
    }

    /// Makes the tree shallower while the entries of all the root's
    /// children fit in the root itself.
    fn shrink(&mut self) -> Result<()> {
        // Each round removes a level; depth is at most MAX_DEPTH.
        loop {
            let root = self.read_root()?;
            let ExtentEntries::Indexes(v) = &root.entries else { return Ok(()) };
            let mut children = Vec::with_capacity(v.len());
            let mut total = 0;
            for (i, idx) in v.iter().enumerate() {
                let hi = v.get(i + 1).map_or(MAX_LOGICAL_BLOCKS, |e| e.lblk as u64);
                let child = self.read_child(idx.leaf, root.header.depth, idx.lblk as u64, hi)?;
                total += child.entries.len();
                if total > ROOT_CAPACITY as usize {
                    return Ok(());
                }
                children.push((idx.leaf, child.entries));
            }
            let entries = if root.header.depth == 1 {
                let mut all = Vec::with_capacity(total);
                for (_, c) in &children {
                    if let ExtentEntries::Leaves(e) = c {
                        all.extend_from_slice(e);
                    }
                }
                ExtentEntries::Leaves(all)
            } else {
                let mut all = Vec::with_capacity(total);
                for (_, c) in &children {
                    if let ExtentEntries::Indexes(e) = c {
                        all.extend_from_slice(e);
                    }
                }
                ExtentEntries::Indexes(all)
            };
            let header = ExtentHeader { depth: root.header.depth - 1, ..root.header };
            let mut path =
                vec![Level { blk: None, node: ExtentNode { header, entries }, idx: 0, hi: MAX_LOGICAL_BLOCKS }];
            self.write_level(&mut path, 0)?;
            for (blk, _) in children {
                self.free_meta(blk)?;
            }
        }
    }

    /// Inserts one extent of at most the maximum length into the leaf where
    /// it belongs; returns how many of its blocks were mapped (fewer when
    /// the leaf's key range ends inside the extent).
    fn insert_one(&mut self, e: Extent) -> Result<u32> {
        let mut path = self.descend(e.lblk as u64)?;
        let k = path.len() - 1;
        let hi = path[k].hi;
        // descend() picks a leaf whose range ends after e.lblk.
        let e = Extent { len: (e.len as u64).min(hi - e.lblk as u64) as u32, ..e };
        let ExtentEntries::Leaves(v) = &path[k].node.entries else {
            return Err(Error::InvalidArgument("extent path does not end in a leaf".into()));
        };
        let mut v = v.clone();
        let i = v.partition_point(|x| x.lblk < e.lblk);
        let pos = if i > 0 && mergeable(&v[i - 1], &e) {
            v[i - 1].len += e.len;
            if i < v.len() && mergeable(&v[i - 1], &v[i]) {
                let right = v.remove(i);
                v[i - 1].len += right.len;
            }
            i - 1
        } else if i < v.len() && mergeable(&e, &v[i]) {
            v[i] = Extent { len: e.len + v[i].len, ..e };
            i
        } else {
            // At the end of a non-empty leaf, the right neighbour is the
            // first extent of the next leaf: extend it to the left instead.
            if i == v.len()
                && i > 0
                && k > 0
                && e.end() == hi
                && hi < MAX_LOGICAL_BLOCKS
                && self.merge_next_leaf(e, hi)?
            {
                return Ok(e.len);
            }
            v.insert(i, e);
            self.check_room(&path, v.len())?;
            i
        };
        self.put(&mut path, k, ExtentEntries::Leaves(v), pos)?;
        Ok(e.len)
    }

    /// Merges `e` into the first extent of the leaf starting at `hi` if
    /// they are contiguous; lowers that leaf's keys to `e.lblk`, which is
    /// above every key of the leaves before it.
    fn merge_next_leaf(&mut self, e: Extent, hi: u64) -> Result<bool> {
        let mut path = self.descend(hi)?;
        let k = path.len() - 1;
        let ExtentEntries::Leaves(v) = &path[k].node.entries else { return Ok(false) };
        match v.first() {
            Some(first) if mergeable(&e, first) => {
                let mut v = v.clone();
                v[0] = Extent { len: e.len + first.len, ..e };
                self.put(&mut path, k, ExtentEntries::Leaves(v), 0)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(lblk: u32, len: u32, pblk: u64, unwritten: bool) -> Extent {
        Extent { lblk, len, pblk, unwritten }
    }

    #[test]
    fn chunking() {
        // Appending past a full node keeps it full.
        assert_eq!(chunk_sizes(85, 84, 84), vec![84, 1]);
        // A change inside the node spreads the entries.
        assert_eq!(chunk_sizes(85, 84, 10), vec![43, 42]);
        assert_eq!(chunk_sizes(5, 4, 0), vec![3, 2]);
        assert_eq!(chunk_sizes(9, 4, 1), vec![3, 3, 3]);
        assert_eq!(chunk_sizes(9, 4, 4), vec![4, 4, 1]);
        let parts = split_vec((0..9).collect::<Vec<_>>(), &[4, 4, 1]);
        assert_eq!(parts, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8]]);
    }

    #[test]
    fn merging_rules() {
        assert!(mergeable(&ext(0, 5, 100, false), &ext(5, 3, 105, false)));
        assert!(!mergeable(&ext(0, 5, 100, false), &ext(5, 3, 106, false)), "physical gap");
        assert!(!mergeable(&ext(0, 5, 100, false), &ext(6, 3, 105, false)), "logical gap");
        assert!(!mergeable(&ext(0, 5, 100, false), &ext(5, 3, 105, true)), "different state");
        assert!(mergeable(&ext(0, 32767, 100, false), &ext(32767, 1, 32867, false)));
        assert!(!mergeable(&ext(0, 32767, 100, false), &ext(32767, 2, 32867, false)), "too long");
        assert!(!mergeable(&ext(0, 32766, 100, true), &ext(32766, 2, 32866, true)), "too long unwritten");
        let mut out = vec![ext(0, 2, 10, true)];
        push_merging(&mut out, ext(2, 2, 12, true));
        push_merging(&mut out, ext(4, 2, 14, false));
        assert_eq!(out, vec![ext(0, 4, 10, true), ext(4, 2, 14, false)]);
    }

    /// Tree blocks in memory, allocated from block 10 on.
    #[derive(Default)]
    struct Mem {
        blocks: std::collections::HashMap<u64, Vec<u8>>,
        next: u64,
    }

    impl MapStore for Mem {
        fn read(&mut self, blk: u64) -> Result<Vec<u8>> {
            Ok(self.blocks[&blk].clone())
        }
        fn write(&mut self, blk: u64, data: Vec<u8>) -> Result<()> {
            self.blocks.insert(blk, data);
            Ok(())
        }
        fn alloc_meta(&mut self, _goal: u64) -> Result<u64> {
            self.next = self.next.max(10) + 1;
            Ok(self.next)
        }
        fn free_meta(&mut self, blk: u64) -> Result<()> {
            self.blocks.remove(&blk);
            Ok(())
        }
        fn free_data(&mut self, _pblk: u64, _len: u64) -> Result<()> {
            Ok(())
        }
    }

    fn ctx() -> MapContext {
        MapContext {
            ino: 12,
            generation: 0,
            csum_seed: None,
            block_size: 1024,
            first_data_block: 1,
            blocks_count: 1 << 40,
        }
    }

    /// Every extent of the tree, in order, read back through `descend`.
    fn all(root: &mut [u8; ROOT_SIZE], store: &mut Mem) -> Vec<Extent> {
        let c = ctx();
        let mut tree = Tree::new(&c, root, store, 0).unwrap();
        let mut out = Vec::new();
        let mut cur = 0;
        while let Some(e) = tree.first_extent_from(cur).unwrap() {
            out.push(e);
            cur = e.end();
        }
        out
    }

    /// A depth-2 tree (1 KiB blocks hold 84 extents) of `n` one-block
    /// extents at even logical blocks, none physically contiguous.
    fn sparse_tree(n: u32) -> ([u8; ROOT_SIZE], Mem, Vec<Extent>) {
        let (c, mut store, mut root) = (ctx(), Mem::default(), [0u8; ROOT_SIZE]);
        init_root(&mut root);
        let want: Vec<Extent> = (0..n).map(|i| ext(2 * i, 1, 100_000 + 3 * i as u64, i % 3 == 0)).collect();
        for e in &want {
            insert_extent(&c, &mut root, &mut store, *e).unwrap();
        }
        assert_eq!(ExtentHeader::decode(&root).depth, 2);
        (root, store, want)
    }

    #[test]
    fn shift_left_and_right_through_a_deep_tree() {
        let c = ctx();
        let (mut root, mut store, mut want) = sparse_tree(1000);
        // Collapse one block at 999 (a hole): everything from 1000 moves down.
        let change = shift_extents(&c, &mut root, &mut store, 1000, MAX_LOGICAL_BLOCKS, -1).unwrap();
        assert_eq!(change, MapChange::default(), "a shift allocates and frees nothing");
        want.iter_mut().filter(|e| e.lblk >= 1000).for_each(|e| e.lblk -= 1);
        assert_eq!(all(&mut root, &mut store), want);
        // Insert 7 blocks inside the extent at 1200 (cut first) and shift by them.
        split_at(&c, &mut root, &mut store, 1200).unwrap();
        shift_extents(&c, &mut root, &mut store, 1200, MAX_LOGICAL_BLOCKS, 7).unwrap();
        want.iter_mut().filter(|e| e.lblk >= 1200).for_each(|e| e.lblk += 7);
        assert_eq!(all(&mut root, &mut store), want);
        // Shifting everything from 0 on moves the first key of every level.
        shift_extents(&c, &mut root, &mut store, 0, MAX_LOGICAL_BLOCKS, 5).unwrap();
        want.iter_mut().for_each(|e| e.lblk += 5);
        assert_eq!(all(&mut root, &mut store), want);
    }

    #[test]
    fn a_shift_in_pieces_cut_at_leaf_starts_equals_one_shift() {
        let c = ctx();
        for delta in [-1i64, 9] {
            let (mut root, mut store, mut want) = sparse_tree(1000);
            let from = 302;
            let starts = leaf_starts(&c, &mut root, &mut store, from).unwrap();
            assert!(starts.len() > 5 && starts[0] == 302, "{starts:?}");
            assert!(starts.windows(2).all(|w| w[0] < w[1]));
            let mut bounds = starts.clone();
            bounds.push(MAX_LOGICAL_BLOCKS);
            let mut pieces: Vec<(u64, u64)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
            if delta > 0 {
                // Right shifts go from the end, so each piece lands on blocks already vacated.
                pieces.reverse();
            }
            for (a, b) in pieces {
                let change = shift_extents(&c, &mut root, &mut store, a, b, delta).unwrap();
                assert_eq!(change, MapChange::default());
            }
            want.iter_mut().filter(|e| e.lblk as u64 >= from).for_each(|e| e.lblk = (e.lblk as i64 + delta) as u32);
            assert_eq!(all(&mut root, &mut store), want, "delta {delta}");
        }
        // A right shift of a piece onto extents not yet moved is refused.
        let (mut root, mut store, _) = sparse_tree(400);
        let r = shift_extents(&c, &mut root, &mut store, 100, 200, 5);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }

    #[test]
    fn split_cuts_a_straddling_extent_only() {
        let (c, mut store, mut root) = (ctx(), Mem::default(), [0u8; ROOT_SIZE]);
        init_root(&mut root);
        insert_extent(&c, &mut root, &mut store, ext(10, 20, 5000, true)).unwrap();
        split_at(&c, &mut root, &mut store, 10).unwrap();
        split_at(&c, &mut root, &mut store, 40).unwrap();
        assert_eq!(all(&mut root, &mut store), vec![ext(10, 20, 5000, true)]);
        split_at(&c, &mut root, &mut store, 17).unwrap();
        assert_eq!(all(&mut root, &mut store), vec![ext(10, 7, 5000, true), ext(17, 13, 5007, true)]);
    }

    #[test]
    fn shift_merges_what_becomes_contiguous() {
        let (c, mut store, mut root) = (ctx(), Mem::default(), [0u8; ROOT_SIZE]);
        init_root(&mut root);
        insert_extent(&c, &mut root, &mut store, ext(0, 4, 5000, false)).unwrap();
        insert_extent(&c, &mut root, &mut store, ext(8, 4, 5004, false)).unwrap();
        shift_extents(&c, &mut root, &mut store, 8, MAX_LOGICAL_BLOCKS, -4).unwrap();
        assert_eq!(all(&mut root, &mut store), vec![ext(0, 8, 5000, false)]);
    }

    #[test]
    fn shift_refuses_overlaps_straddles_and_overflow() {
        let c = ctx();
        let (mut root, mut store, want) = sparse_tree(400);
        let before = root;
        // Block 9 is a hole but 8 is mapped: moving 10.. down by 2 would overlap.
        let r = shift_extents(&c, &mut root, &mut store, 10, MAX_LOGICAL_BLOCKS, -2);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
        assert_eq!(root, before, "nothing written before the refusal");
        let (mut root2, mut store2) = ([0u8; ROOT_SIZE], Mem::default());
        init_root(&mut root2);
        insert_extent(&c, &mut root2, &mut store2, ext(10, 20, 5000, false)).unwrap();
        let r = shift_extents(&c, &mut root2, &mut store2, 15, MAX_LOGICAL_BLOCKS, 3);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "an extent straddles the start: {r:?}");
        let r = shift_extents(&c, &mut root, &mut store, 700, MAX_LOGICAL_BLOCKS, (MAX_LOGICAL_BLOCKS - 700) as i64);
        assert!(matches!(r, Err(Error::FileTooBig(12))), "{r:?}");
        assert_eq!(all(&mut root, &mut store), want);
    }

    #[test]
    fn empty_root() {
        let mut root = [0xAAu8; ROOT_SIZE];
        init_root(&mut root);
        let node = ExtentNode::decode(&root, NodePlace::Root, Location::Inode(1)).unwrap();
        assert_eq!(node.header.max, 4);
        assert!(node.entries.is_empty());
        assert!(root[ExtentHeader::SIZE..].iter().all(|&b| b == 0));
    }
}
