//! Hash-indexed (htree) directories inside a handle: turning a full
//! one-block directory into an index (the kernel's `make_indexed_dir`),
//! insertion with leaf splits, index node splits and new levels
//! (`ext4_dx_add_entry`, `do_split`), and lookup through the index.
//!
//! Layout decisions follow the kernel, so that e2fsck and the kernel read
//! the result as their own:
//! - the root takes the superblock's default hash version; names hash with
//!   the signedness the superblock flags give, as the reader expects;
//! - a full leaf whose deleted records would leave room is compacted in
//!   place (the kernel splits it; both are valid); otherwise it is split
//!   by hash: records sorted by major hash, the upper ones (at most half a
//!   block) move to a new block, and the new index entry carries the first
//!   moved hash, with bit 0 set when the lower block keeps names of that
//!   same hash (collision continuation);
//! - a full index node is split in half, its upper entries moving to a new
//!   node; a full root moves its entries into a new node and the tree grows
//!   a level, up to the format's depth ([`Error::NoSpace`] beyond);
//! - after each structural change the insertion starts over from the root.
//!
//! New blocks are appended at the end of the directory. Index blocks get
//! their `dx_tail` checksum and leaves their tail under metadata_csum.

use crate::disk::dir_entry::{
    Dirent, MIN_REC_LEN, OwnedRecord, find_record, find_room, insert_record, rec_len_for_name, set_leaf_tail,
    write_packed,
};
use crate::disk::dx::{
    DxEntry, DxNode, DxRoot, DxRootInfo, DxTable, NODE_TABLE_OFFSET, ROOT_INFO_LEN, ROOT_TABLE_OFFSET, set_dx_checksum,
    verify_dx_checksum,
};
use crate::disk::dx_hash::{HASH_TEA, HashVersion, dx_hash};
use crate::disk::features::Compat;
use crate::disk::inode::{FL_INDEX, Inode};
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::fs::dir::write::{FoundIn, WDir, WLayout, internal};
use crate::journal::transaction::Handle;
use std::collections::HashSet;

/// Rounds one insertion may take: each round either inserts or makes one
/// structural change (a leaf split, an index split, a new level), and a
/// leaf split always makes room, so a valid tree needs at most one split
/// per level plus a new level, a leaf split and the final insertion.
const MAX_ROUNDS: usize = 8;

/// One level of a path from the root to a leaf.
struct Level {
    lblk: u32,
    pblk: u64,
    table: DxTable,
    at: usize,
}

/// A descent through the index, with the blocks it read (each at most once).
struct DxPath {
    root_pblk: u64,
    root: DxRoot,
    levels: Vec<Level>,
    visited: HashSet<u32>,
}

impl DxPath {
    fn bottom(&self) -> &Level {
        self.levels.last().expect("a path always has the root level")
    }

    /// The block the bottom level points to.
    fn target(&self) -> u32 {
        let l = self.bottom();
        l.table.entries[l.at].lblk()
    }
}

/// A live record of a full leaf with its major hash.
struct Hashed {
    rec: OwnedRecord,
    hash: u32,
}

/// How `do_split` divides a full leaf: the records that stay (in block
/// order), those that move (in hash order), and the index hash of the new
/// block (the first moved hash, bit 0 set if it continues the kept ones).
fn split_records(records: Vec<Hashed>, block_size: usize) -> (Vec<OwnedRecord>, Vec<OwnedRecord>, u32) {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| records[i].hash);
    let count = order.len();
    // Move the highest hashes while more than half of the next record
    // would not cross half the block.
    let (mut size, mut moved, mut stop) = (0usize, 0usize, None);
    for (pos, &i) in order.iter().enumerate().rev() {
        let s = records[i].rec.min_len();
        if size + s / 2 > block_size / 2 {
            stop = Some(pos);
            break;
        }
        size += s;
        moved += 1;
    }
    let split = match stop {
        Some(pos) if pos > 0 => count - moved,
        _ => count / 2,
    }
    .clamp(1, count - 1);
    let hash2 = records[order[split]].hash;
    let continued = hash2 == records[order[split - 1]].hash;
    let mut is_moved = vec![false; count];
    for &i in &order[split..] {
        is_moved[i] = true;
    }
    let moved_recs: Vec<OwnedRecord> = order[split..].iter().map(|&i| records[i].rec.clone()).collect();
    let kept: Vec<OwnedRecord> = records.into_iter().zip(is_moved).filter(|(_, m)| !m).map(|(r, _)| r.rec).collect();
    (kept, moved_recs, hash2 | continued as u32)
}

impl Ext4 {
    /// Checks the `dx_tail` checksum of an index block.
    fn check_dx(&self, d: &WDir, lblk: u32, block: &[u8], table_offset: usize) -> Result<()> {
        match d.seed {
            Some(seed) if !verify_dx_checksum(seed, block, table_offset) => {
                Err(Error::Checksum { what: "directory index", location: d.loc(lblk) })
            }
            _ => Ok(()),
        }
    }

    /// The dx root of an htree directory as `h` sees it, checked.
    pub(crate) fn dx_root_in(&self, h: &Handle<'_>, d: &WDir, dir: &Inode) -> Result<(u64, DxRoot)> {
        if d.nblocks < 2 {
            return Err(Error::corrupt("directory index", d.loc(0), "indexed directory of fewer than 2 blocks"));
        }
        let (pblk, block) = self
            .dir_block_in(h, d, dir, 0)?
            .ok_or_else(|| Error::corrupt("directory index", d.loc(0), "root is a hole"))?;
        self.check_dx(d, 0, &block, ROOT_TABLE_OFFSET)?;
        Ok((pblk, DxRoot::parse(&block, d.dx, d.loc(0))?))
    }

    /// The hash function of the directory whose root is `root`.
    fn dx_version(&self, d: &WDir, root: &DxRoot) -> Result<HashVersion> {
        HashVersion::for_directory(root.info.hash_version, self.sb.hash_unsigned()).ok_or_else(|| {
            Error::corrupt("directory index", d.loc(0), format!("hash version {}", root.info.hash_version))
        })
    }

    /// Checks that the path may visit `lblk` (from block `from`): inside
    /// the directory, not the root, not visited before.
    fn dx_claim(d: &WDir, path: &mut DxPath, lblk: u32, from: u32) -> Result<()> {
        if lblk == 0 || lblk >= d.nblocks || !path.visited.insert(lblk) {
            return Err(Error::corrupt(
                "directory index",
                d.loc(from),
                format!("entry points to block {lblk}: outside the directory, the root, or a block already visited"),
            ));
        }
        Ok(())
    }

    /// Reads and parses index node `lblk`, referenced from block `from`.
    fn dx_node_in(
        &self,
        h: &Handle<'_>,
        d: &WDir,
        dir: &Inode,
        path: &mut DxPath,
        lblk: u32,
        from: u32,
    ) -> Result<(u64, DxNode)> {
        Self::dx_claim(d, path, lblk, from)?;
        let (pblk, block) = self
            .dir_block_in(h, d, dir, lblk)?
            .ok_or_else(|| Error::corrupt("directory index", d.loc(lblk), "index node is a hole"))?;
        self.check_dx(d, lblk, &block, NODE_TABLE_OFFSET)?;
        Ok((pblk, DxNode::parse(&block, d.dx, d.loc(lblk))?))
    }

    /// Descends from the root to the leaf whose range holds `hash` (`dx_probe`).
    fn dx_probe_in(
        &self,
        h: &Handle<'_>,
        d: &WDir,
        dir: &Inode,
        root_pblk: u64,
        root: DxRoot,
        hash: u32,
    ) -> Result<DxPath> {
        let at = root.table.find(hash);
        let levels = vec![Level { lblk: 0, pblk: root_pblk, table: root.table.clone(), at }];
        let mut path = DxPath { root_pblk, levels, root, visited: HashSet::from([0]) };
        for _ in 0..path.root.info.indirect_levels {
            let (child, from) = (path.target(), path.bottom().lblk);
            let (pblk, node) = self.dx_node_in(h, d, dir, &mut path, child, from)?;
            let at = node.table.find(hash);
            path.levels.push(Level { lblk: child, pblk, table: node.table, at });
        }
        Ok(path)
    }

    /// Moves the path to the next leaf in hash order; with `only_hash`,
    /// only if that leaf continues `only_hash`. Returns whether it moved.
    fn dx_next_leaf(
        &self,
        h: &Handle<'_>,
        d: &WDir,
        dir: &Inode,
        path: &mut DxPath,
        only_hash: Option<u32>,
    ) -> Result<bool> {
        let mut level = path.levels.len() - 1;
        loop {
            let l = &path.levels[level];
            if l.at + 1 < l.table.entries.len() {
                break;
            }
            if level == 0 {
                return Ok(false);
            }
            level -= 1;
        }
        let next = path.levels[level].at + 1;
        let start = path.levels[level].table.entries[next].hash;
        if only_hash.is_some_and(|hash| start & !1 != hash) {
            return Ok(false);
        }
        path.levels[level].at = next;
        for below in level + 1..path.levels.len() {
            let parent = &path.levels[below - 1];
            let (child, from) = (parent.table.entries[parent.at].lblk(), parent.lblk);
            let (pblk, node) = self.dx_node_in(h, d, dir, path, child, from)?;
            path.levels[below] = Level { lblk: child, pblk, table: node.table, at: 0 };
        }
        Ok(true)
    }

    /// Reads the leaf the path points to: (logical block, physical block, contents).
    fn dx_leaf_in(&self, h: &Handle<'_>, d: &WDir, dir: &Inode, path: &mut DxPath) -> Result<(u32, u64, Vec<u8>)> {
        let (lblk, from) = (path.target(), path.bottom().lblk);
        Self::dx_claim(d, path, lblk, from)?;
        let (pblk, block) = self.leaf_in(h, d, dir, lblk)?;
        Ok((lblk, pblk, block))
    }

    /// Finds `name` in an htree directory through its index.
    pub(crate) fn dx_find(&self, h: &Handle<'_>, d: &WDir, dir: &Inode, name: &[u8]) -> Result<Option<FoundIn>> {
        let (root_pblk, root) = self.dx_root_in(h, d, dir)?;
        let hash = dx_hash(self.dx_version(d, &root)?, &self.sb.hash_seed, name);
        let mut path = self.dx_probe_in(h, d, dir, root_pblk, root, hash.major)?;
        loop {
            let (lblk, pblk, block) = self.dx_leaf_in(h, d, dir, &mut path)?;
            if let Some(found) = find_record(d.records(&block[..d.region_len()], d.loc(lblk)), name)? {
                return Ok(Some((lblk, pblk, block, found)));
            }
            if !self.dx_next_leaf(h, d, dir, &mut path, Some(hash.major))? {
                return Ok(None);
            }
        }
    }

    /// Whether no leaf of an htree directory holds a live record.
    pub(crate) fn dx_is_empty(&self, h: &Handle<'_>, d: &WDir, dir: &Inode) -> Result<bool> {
        let (root_pblk, root) = self.dx_root_in(h, d, dir)?;
        let mut path = self.dx_probe_in(h, d, dir, root_pblk, root, 0)?;
        loop {
            let (lblk, _, block) = self.dx_leaf_in(h, d, dir, &mut path)?;
            if let Some(rec) = d.records(&block[..d.region_len()], d.loc(lblk)).live().next() {
                rec?;
                return Ok(false);
            }
            if !self.dx_next_leaf(h, d, dir, &mut path, None)? {
                return Ok(true);
            }
        }
    }

    /// Points ".." of an htree directory (in its root) at `ino`; returns the old parent.
    pub(crate) fn dx_set_dotdot(&self, h: &mut Handle<'_>, d: &WDir, dir: &Inode, ino: u32) -> Result<u32> {
        let (pblk, mut root) = self.dx_root_in(h, d, dir)?;
        let old = root.dotdot;
        root.dotdot = ino;
        self.write_dx_root(h, d, pblk, &root)?;
        Ok(old)
    }

    /// Stages the root block.
    fn write_dx_root(&self, h: &mut Handle<'_>, d: &WDir, pblk: u64, root: &DxRoot) -> Result<()> {
        if root.table.entries.len() > root.table.limit as usize {
            return Err(Error::InvalidArgument("dx root over its limit".into()));
        }
        let mut block = vec![0u8; d.fmt.block_size as usize];
        root.encode(&mut block, d.dx)?;
        if let Some(seed) = d.seed
            && !set_dx_checksum(seed, &mut block, ROOT_TABLE_OFFSET)
        {
            return Err(Error::InvalidArgument("dx root has no room for its tail".into()));
        }
        h.write(pblk, block);
        Ok(())
    }

    /// An index node block holding `table`.
    fn dx_node_block(&self, d: &WDir, table: DxTable) -> Result<Vec<u8>> {
        if table.entries.is_empty() || table.entries.len() > table.limit as usize {
            return Err(Error::InvalidArgument("dx node of a bad size".into()));
        }
        let mut block = vec![0u8; d.fmt.block_size as usize];
        DxNode { table }.encode(&mut block, d.dx)?;
        if let Some(seed) = d.seed
            && !set_dx_checksum(seed, &mut block, NODE_TABLE_OFFSET)
        {
            return Err(Error::InvalidArgument("dx node has no room for its tail".into()));
        }
        Ok(block)
    }

    /// Stages level `k` of the path (the root, or an index node).
    fn write_dx_level(&self, h: &mut Handle<'_>, d: &WDir, path: &mut DxPath, k: usize) -> Result<()> {
        if k == 0 {
            path.root.table = path.levels[0].table.clone();
            return self.write_dx_root(h, d, path.root_pblk, &path.root);
        }
        let block = self.dx_node_block(d, path.levels[k].table.clone())?;
        h.write(path.levels[k].pblk, block);
        Ok(())
    }

    /// A leaf block holding `records` packed, with its tail.
    fn dx_leaf_block(&self, d: &WDir, records: &[OwnedRecord]) -> Result<Vec<u8>> {
        let mut block = vec![0u8; d.fmt.block_size as usize];
        write_packed(&mut block[..d.region_len()], d.fmt, records)?;
        if let Some(seed) = d.seed {
            set_leaf_tail(seed, &mut block);
        }
        Ok(block)
    }

    /// Turns a full one-block linear directory into an htree, as
    /// `make_indexed_dir` does: block 0 becomes the root ("." and ".."
    /// kept), its other records are split by hash into two new leaf blocks
    /// 1 and 2. Returns false, changing nothing, when the file system has
    /// no dir_index, its default hash version is not one the index can
    /// use, or block 0 does not start with a 12-byte "." and "..": the
    /// caller then grows the directory linearly.
    pub(crate) fn make_indexed_dir(&self, h: &mut Handle<'_>, d: &mut WDir, dir: &mut Inode) -> Result<bool> {
        let hash_version = self.sb.def_hash_version;
        if !self.sb.compat().has(Compat::DIR_INDEX) || hash_version > HASH_TEA || d.layout != WLayout::Linear {
            return Ok(false);
        }
        let Some(version) = HashVersion::for_directory(hash_version, self.sb.hash_unsigned()) else {
            return Ok(false);
        };
        let Some((pblk0, block0)) = self.dir_block_in(h, d, dir, 0)? else { return Ok(false) };
        self.check_leaf(d, 0, &block0)?;
        let mut recs = Vec::new();
        for rec in d.records(&block0[..d.region_len()], d.loc(0)) {
            recs.push(rec?);
        }
        let dots = match recs.as_slice() {
            [(0, dot), (12, dotdot), ..]
                if dot.name == b"." && dot.rec_len as usize == MIN_REC_LEN && dotdot.name == b".." =>
            {
                (dot.inode, dotdot.inode)
            }
            _ => return Ok(false),
        };
        let rest: Vec<Hashed> = recs[2..]
            .iter()
            .filter(|(_, e)| e.is_live())
            .map(|(_, e): &(usize, Dirent<'_>)| Hashed {
                rec: OwnedRecord::of(e),
                hash: dx_hash(version, &self.sb.hash_seed, e.name).major,
            })
            .collect();
        let (kept, moved, index_hash) = if rest.len() >= 2 {
            let (k, m, hash) = split_records(rest, d.fmt.block_size as usize);
            (k, m, Some(hash))
        } else {
            (rest.into_iter().map(|r| r.rec).collect(), Vec::new(), None)
        };
        let leaf1 = self.dx_leaf_block(d, &kept)?;
        let leaf2 = index_hash.map(|_| self.dx_leaf_block(d, &moved)).transpose()?;
        d.layout = WLayout::Htree;
        dir.raw.flags |= FL_INDEX;
        self.place_dir_block(h, d, dir, 1, leaf1)?;
        let mut entries = vec![DxEntry { hash: 0, block: 1 }];
        if let (Some(hash), Some(leaf2)) = (index_hash, leaf2) {
            self.place_dir_block(h, d, dir, 2, leaf2)?;
            entries.push(DxEntry { hash, block: 2 });
        }
        let root = DxRoot {
            dot: dots.0,
            dotdot: dots.1,
            info: DxRootInfo {
                reserved_zero: 0,
                hash_version,
                info_length: ROOT_INFO_LEN,
                indirect_levels: 0,
                unused_flags: 0,
            },
            table: DxTable { limit: d.dx.root_limit(), entries },
        };
        self.write_dx_root(h, d, pblk0, &root)?;
        Ok(true)
    }

    /// Inserts `name` into an htree directory (`ext4_dx_add_entry`). The
    /// caller checked that the name is absent.
    pub(crate) fn dx_add(
        &self,
        h: &mut Handle<'_>,
        d: &mut WDir,
        dir: &mut Inode,
        name: &[u8],
        ino: u32,
        file_type: u8,
    ) -> Result<()> {
        let ft = d.stored_type(file_type);
        for _ in 0..MAX_ROUNDS {
            let (root_pblk, root) = self.dx_root_in(h, d, dir)?;
            let version = self.dx_version(d, &root)?;
            let hash = dx_hash(version, &self.sb.hash_seed, name);
            let mut path = self.dx_probe_in(h, d, dir, root_pblk, root, hash.major)?;
            let (lblk, pblk, mut block) = self.dx_leaf_in(h, d, dir, &mut path)?;
            let region_len = d.region_len();
            if let Some(off) = find_room(d.records(&block[..region_len], d.loc(lblk)), name)? {
                insert_record(&mut block[..region_len], d.fmt, off, ino, ft, name).map_err(|e| internal(d, lblk, e))?;
                self.put_leaf(h, d, pblk, block);
                return Ok(());
            }
            let mut live = Vec::new();
            for rec in d.records(&block[..region_len], d.loc(lblk)).live() {
                live.push(OwnedRecord::of(&rec?.1));
            }
            let used: usize = live.iter().map(OwnedRecord::min_len).sum();
            if used + rec_len_for_name(name.len()) <= region_len {
                // Deleted records left the room in pieces: compact the leaf.
                live.push(OwnedRecord { inode: ino, file_type: ft, name: name.to_vec() });
                let block = self.dx_leaf_block(d, &live)?;
                h.write(pblk, block);
                return Ok(());
            }
            let bottom = path.bottom();
            if bottom.table.entries.len() >= bottom.table.limit as usize {
                self.dx_grow_index(h, d, dir, &mut path)?;
            } else {
                let hashed = live
                    .into_iter()
                    .map(|rec| {
                        let hash = dx_hash(version, &self.sb.hash_seed, &rec.name).major;
                        Hashed { rec, hash }
                    })
                    .collect();
                self.dx_split_leaf(h, d, dir, &mut path, lblk, pblk, hashed)?;
            }
        }
        Err(Error::corrupt("directory index", d.loc(0), "insertion found no room after splitting"))
    }

    /// Splits the full leaf `lblk` (at `pblk`) at the bottom of `path`.
    #[allow(clippy::too_many_arguments)]
    fn dx_split_leaf(
        &self,
        h: &mut Handle<'_>,
        d: &mut WDir,
        dir: &mut Inode,
        path: &mut DxPath,
        lblk: u32,
        pblk: u64,
        records: Vec<Hashed>,
    ) -> Result<()> {
        if records.len() < 2 {
            return Err(Error::corrupt("directory block", d.loc(lblk), "full leaf with fewer than two entries"));
        }
        let (kept, moved, index_hash) = split_records(records, d.fmt.block_size as usize);
        let k = path.levels.len() - 1;
        let level = &path.levels[k];
        let lo = level.table.entries[level.at].hash;
        let hi = level.table.entries.get(level.at + 1).map(|e| e.hash);
        if index_hash < lo || hi.is_some_and(|hi| index_hash > hi) {
            return Err(Error::corrupt("directory block", d.loc(lblk), "leaf holds names outside its hash range"));
        }
        let new_lblk = d.nblocks;
        let old_block = self.dx_leaf_block(d, &kept)?;
        let new_block = self.dx_leaf_block(d, &moved)?;
        h.write(pblk, old_block);
        self.place_dir_block(h, d, dir, new_lblk, new_block)?;
        let at = path.levels[k].at;
        path.levels[k].table.entries.insert(at + 1, DxEntry { hash: index_hash, block: new_lblk });
        self.write_dx_level(h, d, path, k)
    }

    /// Makes room in the index above a full leaf: splits the highest full
    /// node whose parent has room, or, when every level up to the root is
    /// full, moves the root's entries into a new node (one level more).
    fn dx_grow_index(&self, h: &mut Handle<'_>, d: &mut WDir, dir: &mut Inode, path: &mut DxPath) -> Result<()> {
        let full = |l: &Level| l.table.entries.len() >= l.table.limit as usize;
        let mut k = path.levels.len() - 1;
        while k > 0 && full(&path.levels[k - 1]) {
            k -= 1;
        }
        let new_lblk = d.nblocks;
        if k == 0 {
            if path.root.info.indirect_levels >= d.dx.max_levels() {
                return Err(Error::NoSpace);
            }
            let entries = std::mem::take(&mut path.levels[0].table.entries);
            let node = self.dx_node_block(d, DxTable { limit: d.dx.node_limit(), entries })?;
            self.place_dir_block(h, d, dir, new_lblk, node)?;
            path.levels[0].table.entries = vec![DxEntry { hash: 0, block: new_lblk }];
            path.root.info.indirect_levels += 1;
            return self.write_dx_level(h, d, path, 0);
        }
        let entries = &mut path.levels[k].table.entries;
        let upper = entries.split_off(entries.len() / 2);
        let hash2 = upper[0].hash;
        let node = self.dx_node_block(d, DxTable { limit: d.dx.node_limit(), entries: upper })?;
        self.place_dir_block(h, d, dir, new_lblk, node)?;
        self.write_dx_level(h, d, path, k)?;
        let at = path.levels[k - 1].at;
        path.levels[k - 1].table.entries.insert(at + 1, DxEntry { hash: hash2, block: new_lblk });
        self.write_dx_level(h, d, path, k - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(hash: u32, name_len: usize) -> Hashed {
        Hashed { rec: OwnedRecord { inode: 12, file_type: 1, name: vec![b'a'; name_len] }, hash }
    }

    #[test]
    fn split_moves_at_most_half_the_block_by_hash() {
        // 60 records of 20 bytes (1200 bytes) in a 1 KiB block, hashes
        // descending. Records move while no more than half of one crosses
        // the middle of the block.
        let recs: Vec<Hashed> = (0..60).map(|i| hashed(1000 - 2 * i, 10)).collect();
        let (kept, moved, hash) = split_records(recs, 1024);
        let moved_bytes: usize = moved.iter().map(OwnedRecord::min_len).sum();
        assert!((500..=520).contains(&moved_bytes), "{moved_bytes}");
        assert_eq!(kept.len() + moved.len(), 60);
        // The moved ones are the highest hashes, and the index hash is the lowest of them.
        assert_eq!(hash, 1000 - 2 * (moved.len() as u32 - 1));
        assert_eq!(hash & 1, 0);
    }

    #[test]
    fn split_of_equal_hashes_marks_continuation() {
        let recs: Vec<Hashed> = (0..10).map(|_| hashed(0x40, 200)).collect();
        let (kept, moved, hash) = split_records(recs, 4096);
        assert_eq!((kept.len(), moved.len()), (5, 5));
        assert_eq!(hash, 0x41);
    }
}
