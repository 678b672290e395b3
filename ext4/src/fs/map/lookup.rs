//! Logical-to-physical block mapping of files: extent trees (ext4) and
//! direct/indirect block maps (ext2/ext3).
//!
//! Every node or indirect block is checked before use: extent tree nodes
//! for structure, depth (each child exactly one level below its parent,
//! which with the depth limit rules out loops), key ranges (a child's
//! entries lie within the range its parent index gives it) and tail
//! checksums; every physical block number against the file system size.

use crate::disk::codec::{Field, le32};
use crate::disk::extent::FileExtent;
use crate::disk::extent::{self, ExtentEntries, ExtentIndex, ExtentNode, MAX_LOGICAL_BLOCKS, NodePlace};
use crate::disk::inode::{FL_EXTENTS, FL_INLINE_DATA, Inode};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::journal::transaction::Handle;
use std::collections::HashSet;
use std::sync::Arc;

/// The mapping of a run of logical blocks starting at a given block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// `len` logical blocks with no physical block (read as zeros).
    Hole {
        /// Length of the hole in blocks (up to the next mapped block or a cap).
        len: u64,
    },
    /// `len` logical blocks backed by physical blocks `pblk..pblk+len`.
    Mapped {
        /// First physical block.
        pblk: u64,
        /// Length in blocks.
        len: u64,
        /// Allocated but not yet written (reads as zeros).
        unwritten: bool,
    },
}

/// Direct block pointers at the start of a block map.
const DIRECT_BLOCKS: usize = 12;
/// Slots of `i_block` holding the single, double and triple indirect blocks.
const INDIRECT_SLOTS: [usize; 3] = [12, 13, 14];
/// `i_block` as a block map: 15 little-endian block numbers.
type BlockMap = [u32; 15];

/// The hole reported for blocks the inode's mapping cannot address: it
/// runs to the end of the 64-bit block space, and is never empty.
fn beyond_map(lblk: u64) -> Mapping {
    Mapping::Hole { len: (u64::MAX - lblk).max(1) }
}

/// Length of the run starting at slot `idx` of a pointer array of `count`
/// slots: all zeros (a hole) or pointers to consecutive physical blocks.
/// The first pointer is returned as read; `in_range` stops a run at the
/// first block outside the file system.
fn pointer_run(get: impl Fn(usize) -> u32, count: usize, idx: usize, in_range: impl Fn(u64) -> bool) -> (u32, u64) {
    let first = get(idx);
    let mut n = 1;
    if first == 0 {
        while idx + n < count && get(idx + n) == 0 {
            n += 1;
        }
    } else {
        while idx + n < count && get(idx + n) as u64 == first as u64 + n as u64 && in_range(first as u64 + n as u64) {
            n += 1;
        }
    }
    (first, n as u64)
}

/// Collects extents in logical order, merging physically contiguous
/// neighbours, and bounds the total at the file system's block count.
struct ExtentSink {
    out: Vec<FileExtent>,
    blocks: u64,
    limit: u64,
    ino: u32,
}

impl ExtentSink {
    fn new(ino: u32, limit: u64) -> Self {
        ExtentSink { out: Vec::new(), blocks: 0, limit, ino }
    }

    fn push(&mut self, e: FileExtent, merge: bool) -> Result<()> {
        self.blocks += e.len;
        if self.blocks > self.limit {
            return Err(Error::corrupt(
                "block mapping",
                Location::Inode(self.ino),
                format!("maps more blocks than the file system's {}", self.limit),
            ));
        }
        match self.out.last_mut() {
            Some(l) if merge && l.unwritten == e.unwritten && l.lblk + l.len == e.lblk && l.pblk + l.len == e.pblk => {
                l.len += e.len
            }
            _ => self.out.push(e),
        }
        Ok(())
    }
}

impl Ext4 {
    /// Maps logical block `lblk` of `inode`. The returned run starts at
    /// `lblk`: a hole up to the next mapped block (or the end of what one
    /// node or indirect block covers), or a physically contiguous mapped run.
    /// Blocks beyond what the inode's map can address are one hole running
    /// to the end of the block space. Inline-data inodes have no blocks.
    pub fn map_block(&self, inode: &Inode, lblk: u64) -> Result<Mapping> {
        self.map_block_via(None, inode, lblk)
    }

    /// [`Ext4::map_block`] as handle `h` sees the tree and indirect blocks
    /// (its own staged changes first): for operations that look blocks up
    /// after changing the mapping in the same handle.
    pub fn map_block_in(&self, h: &Handle<'_>, inode: &Inode, lblk: u64) -> Result<Mapping> {
        self.map_block_via(Some(h), inode, lblk)
    }

    fn map_block_via(&self, h: Option<&Handle<'_>>, inode: &Inode, lblk: u64) -> Result<Mapping> {
        self.check_block_mapped(inode)?;
        if lblk >= self.addressable_blocks(inode) {
            return Ok(beyond_map(lblk));
        }
        if inode.has_flag(FL_EXTENTS) { self.map_extent(h, inode, lblk) } else { self.map_indirect(h, inode, lblk) }
    }

    /// Reads a tree or indirect block, through `h` when given.
    fn mapping_block(&self, h: Option<&Handle<'_>>, blk: u64, what: &'static str) -> Result<Arc<[u8]>> {
        match h {
            Some(h) => self.meta_block_in(h, blk, what),
            None => self.read_meta_block(blk, what),
        }
    }

    /// Every mapped extent of the file, in logical order, including
    /// unwritten extents and blocks past `i_size`. Block maps are coalesced
    /// into physically contiguous runs. The work is bounded: each tree or
    /// indirect block is visited once, and a file mapping more blocks than
    /// the file system holds is reported as corrupt.
    pub fn file_extents(&self, inode: &Inode) -> Result<Vec<FileExtent>> {
        self.check_block_mapped(inode)?;
        let mut sink = ExtentSink::new(inode.ino, self.geometry().blocks_count);
        let mut visited = HashSet::new();
        if inode.has_flag(FL_EXTENTS) {
            let root = self.extent_root(inode)?;
            self.collect_extents(inode, root, &mut sink, &mut visited)?;
        } else {
            self.collect_indirect(inode, &mut sink, &mut visited)?;
        }
        Ok(sink.out)
    }

    /// Number of logical blocks the inode's mapping scheme can address:
    /// 2^32 for extent trees; for block maps, what 12 direct and the
    /// single, double and triple indirect blocks cover, capped at 2^32.
    pub fn addressable_blocks(&self, inode: &Inode) -> u64 {
        if inode.has_flag(FL_EXTENTS) {
            return MAX_LOGICAL_BLOCKS;
        }
        let p = self.pointers_per_block();
        (DIRECT_BLOCKS as u64 + p + p * p + p * p * p).min(MAX_LOGICAL_BLOCKS)
    }

    fn check_block_mapped(&self, inode: &Inode) -> Result<()> {
        if inode.has_flag(FL_INLINE_DATA) {
            return Err(Error::InvalidArgument(format!(
                "inode {} keeps its data inline and maps no blocks",
                inode.ino
            )));
        }
        Ok(())
    }

    fn pointers_per_block(&self) -> u64 {
        self.geometry().block_size as u64 / 4
    }

    // ----- extent trees -----

    fn extent_root(&self, inode: &Inode) -> Result<ExtentNode> {
        let root = ExtentNode::decode(inode.i_block(), NodePlace::Root, Location::Inode(inode.ino))?;
        self.check_extent_node(inode, &root, 0, MAX_LOGICAL_BLOCKS, Location::Inode(inode.ino))?;
        Ok(root)
    }

    /// Reads, verifies and decodes the child at block `blk` of a node at
    /// `parent_depth`, whose index gives it the key range `lo..hi`.
    fn extent_child(
        &self,
        h: Option<&Handle<'_>>,
        inode: &Inode,
        parent_depth: u16,
        blk: u64,
        lo: u64,
        hi: u64,
    ) -> Result<ExtentNode> {
        let ino = inode.ino;
        if !self.geometry().block_in_range(blk) {
            return Err(Error::corrupt(
                "extent index",
                Location::FileBlock { ino, lblk: lo },
                format!("child node block {blk} lies outside the file system"),
            ));
        }
        let loc = Location::Block(blk);
        let data = self.mapping_block(h, blk, "extent tree block")?;
        let node = ExtentNode::decode(&data, NodePlace::Block, loc)?;
        if let Some(seed) = self.csum_seed()
            && !extent::verify_checksum(seed, ino, inode.generation(), &data)
        {
            return Err(Error::Checksum { what: "extent tree block", location: loc });
        }
        if node.header.depth + 1 != parent_depth {
            return Err(Error::corrupt(
                "extent tree node",
                loc,
                format!("depth {} under a node of depth {parent_depth} (inode {ino})", node.header.depth),
            ));
        }
        self.check_extent_node(inode, &node, lo, hi, loc)?;
        Ok(node)
    }

    /// Checks that a node's entries lie within the key range `lo..hi` its
    /// parent assigns, and that a leaf's extents point inside the file system.
    fn check_extent_node(&self, inode: &Inode, node: &ExtentNode, lo: u64, hi: u64, loc: Location) -> Result<()> {
        let ino = inode.ino;
        let bad = |reason: String| Error::corrupt("extent tree node", loc, format!("inode {ino}: {reason}"));
        let (first, end) = match &node.entries {
            ExtentEntries::Leaves(v) => {
                let geo = self.geometry();
                for e in v {
                    if !geo.block_in_range(e.pblk) || !geo.block_in_range(e.pblk + e.len as u64 - 1) {
                        return Err(bad(format!(
                            "extent at logical block {} maps blocks {}..{} outside the file system",
                            e.lblk,
                            e.pblk,
                            e.pblk + e.len as u64
                        )));
                    }
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

    fn map_extent(&self, h: Option<&Handle<'_>>, inode: &Inode, lblk: u64) -> Result<Mapping> {
        let mut node = self.extent_root(inode)?;
        let mut hi = MAX_LOGICAL_BLOCKS;
        // Each step goes one level down and depth is at most MAX_DEPTH.
        loop {
            let indexes = match &node.entries {
                ExtentEntries::Leaves(v) => {
                    let i = v.partition_point(|e| e.lblk as u64 <= lblk);
                    if let Some(e) = i.checked_sub(1).map(|j| &v[j])
                        && e.end() > lblk
                    {
                        let off = lblk - e.lblk as u64;
                        return Ok(Mapping::Mapped { pblk: e.pblk + off, len: e.end() - lblk, unwritten: e.unwritten });
                    }
                    let next = v.get(i).map_or(hi, |e| e.lblk as u64);
                    return Ok(Mapping::Hole { len: next - lblk });
                }
                ExtentEntries::Indexes(v) => v,
            };
            let i = indexes.partition_point(|e| e.lblk as u64 <= lblk);
            let Some(idx) = i.checked_sub(1).map(|j| indexes[j]) else {
                return Ok(Mapping::Hole { len: indexes[0].lblk as u64 - lblk });
            };
            let child_hi = indexes.get(i).map_or(hi, |e| e.lblk as u64);
            node = self.extent_child(h, inode, node.header.depth, idx.leaf, idx.lblk as u64, child_hi)?;
            hi = child_hi;
        }
    }

    fn collect_extents(
        &self,
        inode: &Inode,
        root: ExtentNode,
        sink: &mut ExtentSink,
        visited: &mut HashSet<u64>,
    ) -> Result<()> {
        // Depth-first in logical order. Children are read only when their
        // turn comes, so at most MAX_DEPTH nodes' index lists are pending.
        let mut pending: Vec<(ExtentIndex, u64, u16)> = Vec::new();
        let mut next = Some((root, MAX_LOGICAL_BLOCKS));
        loop {
            let (node, hi) = match next.take() {
                Some(n) => n,
                None => {
                    let Some((idx, hi, parent_depth)) = pending.pop() else { break };
                    if !visited.insert(idx.leaf) {
                        return Err(Error::corrupt(
                            "extent tree",
                            Location::Block(idx.leaf),
                            format!("inode {}: block referenced twice", inode.ino),
                        ));
                    }
                    (self.extent_child(None, inode, parent_depth, idx.leaf, idx.lblk as u64, hi)?, hi)
                }
            };
            match node.entries {
                ExtentEntries::Leaves(v) => {
                    for e in v {
                        let fe =
                            FileExtent { lblk: e.lblk as u64, pblk: e.pblk, len: e.len as u64, unwritten: e.unwritten };
                        sink.push(fe, false)?;
                    }
                }
                ExtentEntries::Indexes(v) => {
                    for (i, idx) in v.iter().enumerate().rev() {
                        let child_hi = v.get(i + 1).map_or(hi, |e| e.lblk as u64);
                        pending.push((*idx, child_hi, node.header.depth));
                    }
                }
            }
        }
        Ok(())
    }

    // ----- block maps -----

    fn block_map(inode: &Inode) -> BlockMap {
        BlockMap::get(inode.i_block())
    }

    /// Checks a block pointer read from `what` at `loc`.
    fn check_pointer(&self, ptr: u32, what: &'static str, loc: Location, ino: u32) -> Result<u64> {
        if !self.geometry().block_in_range(ptr as u64) {
            return Err(Error::corrupt(what, loc, format!("inode {ino}: block pointer {ptr} outside the file system")));
        }
        Ok(ptr as u64)
    }

    fn map_indirect(&self, h: Option<&Handle<'_>>, inode: &Inode, lblk: u64) -> Result<Mapping> {
        let ino = inode.ino;
        let map = Self::block_map(inode);
        let in_range = |b: u64| self.geometry().block_in_range(b);
        let run = |first: u32, n: u64, loc: Location| -> Result<Mapping> {
            if first == 0 {
                return Ok(Mapping::Hole { len: n });
            }
            let pblk = self.check_pointer(first, "block map", loc, ino)?;
            Ok(Mapping::Mapped { pblk, len: n, unwritten: false })
        };
        if lblk < DIRECT_BLOCKS as u64 {
            let (first, n) = pointer_run(|i| map[i], DIRECT_BLOCKS, lblk as usize, in_range);
            return run(first, n, Location::Inode(ino));
        }
        // Find the indirect tree holding lblk: `cover` blocks under its root.
        let p = self.pointers_per_block();
        let mut rel = lblk - DIRECT_BLOCKS as u64;
        let mut cover = p;
        let mut slot = 0;
        while rel >= cover {
            rel -= cover;
            cover *= p;
            slot += 1;
        }
        // map_block checked lblk against addressable_blocks, so slot <= 2.
        let mut ptr = map[INDIRECT_SLOTS[slot]];
        let mut ptr_loc = Location::Inode(ino);
        loop {
            if ptr == 0 {
                return Ok(Mapping::Hole { len: cover - rel });
            }
            let blk = self.check_pointer(ptr, "block map", ptr_loc, ino)?;
            let data = self.mapping_block(h, blk, "indirect block")?;
            cover /= p;
            let idx = (rel / cover) as usize;
            rel %= cover;
            let get = |i: usize| le32(&data, 4 * i);
            let (first, n) = pointer_run(get, p as usize, idx, in_range);
            if cover == 1 {
                return run(first, n, Location::Block(blk));
            }
            if first == 0 {
                return Ok(Mapping::Hole { len: n * cover - rel });
            }
            ptr = first;
            ptr_loc = Location::Block(blk);
        }
    }

    fn collect_indirect(&self, inode: &Inode, sink: &mut ExtentSink, visited: &mut HashSet<u64>) -> Result<()> {
        let ino = inode.ino;
        let map = Self::block_map(inode);
        for (i, &ptr) in map[..DIRECT_BLOCKS].iter().enumerate() {
            if ptr != 0 {
                let pblk = self.check_pointer(ptr, "block map", Location::Inode(ino), ino)?;
                sink.push(FileExtent { lblk: i as u64, pblk, len: 1, unwritten: false }, true)?;
            }
        }
        let p = self.pointers_per_block();
        let limit = self.addressable_blocks(inode);
        let mut base = DIRECT_BLOCKS as u64;
        let mut cover = p;
        for slot in INDIRECT_SLOTS {
            if base >= limit {
                break;
            }
            if map[slot] != 0 {
                self.collect_indirect_block(inode, map[slot], Location::Inode(ino), base, cover, sink, visited)?;
            }
            base += cover;
            cover *= p;
        }
        Ok(())
    }

    /// Collects the data blocks under indirect block `ptr` (read from `loc`),
    /// which maps `cover` logical blocks from `base`.
    #[allow(clippy::too_many_arguments)]
    fn collect_indirect_block(
        &self,
        inode: &Inode,
        ptr: u32,
        loc: Location,
        base: u64,
        cover: u64,
        sink: &mut ExtentSink,
        visited: &mut HashSet<u64>,
    ) -> Result<()> {
        let ino = inode.ino;
        let blk = self.check_pointer(ptr, "block map", loc, ino)?;
        if !visited.insert(blk) {
            return Err(Error::corrupt(
                "indirect block",
                Location::Block(blk),
                format!("inode {ino}: referenced twice"),
            ));
        }
        let data = self.read_meta_block(blk, "indirect block")?;
        let p = self.pointers_per_block();
        let child_cover = cover / p;
        let limit = self.addressable_blocks(inode);
        for i in 0..p {
            let lblk = base + i * child_cover;
            if lblk >= limit {
                break;
            }
            let child = le32(&data, 4 * i as usize);
            if child == 0 {
                continue;
            }
            if child_cover == 1 {
                let pblk = self.check_pointer(child, "indirect block", Location::Block(blk), ino)?;
                sink.push(FileExtent { lblk, pblk, len: 1, unwritten: false }, true)?;
            } else {
                self.collect_indirect_block(inode, child, Location::Block(blk), lblk, child_cover, sink, visited)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_runs() {
        let ptrs = [0u32, 0, 0, 7, 8, 9, 11, 12, 0];
        let get = |i: usize| ptrs[i];
        let all = |_: u64| true;
        assert_eq!(pointer_run(get, ptrs.len(), 0, all), (0, 3));
        assert_eq!(pointer_run(get, ptrs.len(), 1, all), (0, 2));
        assert_eq!(pointer_run(get, ptrs.len(), 3, all), (7, 3));
        assert_eq!(pointer_run(get, ptrs.len(), 6, all), (11, 2));
        assert_eq!(pointer_run(get, ptrs.len(), 8, all), (0, 1));
        // A run stops at the first block outside the file system.
        assert_eq!(pointer_run(get, ptrs.len(), 3, |b| b < 9), (7, 2));
        // ... and at the end of the pointer array.
        assert_eq!(pointer_run(get, 5, 3, all), (7, 2));
    }

    #[test]
    fn holes_beyond_the_map_are_never_empty() {
        assert_eq!(beyond_map(5), Mapping::Hole { len: u64::MAX - 5 });
        assert_eq!(beyond_map(u64::MAX), Mapping::Hole { len: 1 });
    }
}
