//! Open inodes and orphans: an inode whose last name is removed while it is
//! still open is not freed but recorded as an orphan, and freed when its
//! last user closes it — or, after a crash, when the image is next opened
//! writable (as the kernel does at mount).
//!
//! Two on-disk records, as in the kernel:
//!
//! - **The orphan file** (`COMPAT_ORPHAN_FILE`, mke2fs `-O orphan_file`):
//!   slots of inode numbers in the blocks of the inode named by
//!   `s_orphan_file_inum` (format in [`crate::disk::orphan_file`]). Adding
//!   takes a free slot of a block that has one (per-block free counts are
//!   kept in memory and corrected whenever a block is read) and removing
//!   clears the slot remembered for the inode: one block written either
//!   way. `RO_COMPAT_ORPHAN_PRESENT` is set in the handle that fills a
//!   slot while the flag is clear, and cleared at [`Ext4::close`] when
//!   every slot is free. When the file is full, the classic list is used.
//! - **The classic list**: the superblock's `s_last_orphan` names the first
//!   orphan and each orphan's `i_dtime` names the next (0 ends it). An
//!   in-memory doubly linked mirror (prev and next of each member) makes
//!   removal rewrite only the predecessor's `i_dtime` (or the head in the
//!   superblock) instead of walking the chain. The mirror is checked
//!   against the links it relies on (the predecessor really points at the
//!   inode, the inode's `i_dtime` is the remembered successor, the
//!   superblock's head is the remembered head); on any difference — a
//!   handle that failed after changing it, a list rewritten under us — it
//!   is rebuilt from disk by one bounded walk.
//!
//! Every change is staged in the caller's journal handle. The in-memory
//! records are changed only by the holder of the (single) handle; their
//! mutex is a leaf lock, never held across I/O.
//!
//! Recovery (`Ext4::process_orphans`, at every writable open) processes
//! the classic list and then, when `ORPHAN_PRESENT` is set, the orphan file
//! — the order of the kernel's `ext4_orphan_cleanup` and of e2fsck — one
//! inode per handle, each handle leaving the records consistent. The list
//! is walked and checked in full before anything changes: a loop, an entry
//! that is not an inode in use, or an inode recorded twice is corruption
//! and the image is left as it was.

use crate::disk::checksum::orphan_file_seed;
use crate::disk::features::{Compat, RoCompat};
use crate::disk::inode::{FL_INLINE_DATA, Inode, Timestamp};
use crate::disk::orphan_file::{BlockCsum, OrphanBlock, slots_per_block};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::data::write::now;
use crate::fs::inode::lock::LockMode;
use crate::journal::transaction::Handle;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

/// Largest orphan file used, in blocks (mke2fs makes at most 512): bounds
/// the memory and the work of a hostile `i_size`.
const MAX_ORPHAN_FILE_BLOCKS: u64 = 1 << 16;

/// In-memory open counts, which open inodes this mount made orphans, and
/// the mirror of the on-disk orphan records.
#[derive(Debug, Default)]
pub struct OpenInodes {
    state: Mutex<OpenState>,
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct OpenState {
    counts: HashMap<u32, u32>,
    orphaned: HashSet<u32>,
}

/// The mirror of the orphan records on disk.
#[derive(Debug, Default)]
struct Records {
    chain: Chain,
    file: Option<OrphanFile>,
}

/// The classic list, doubly linked in memory.
#[derive(Debug, Default)]
struct Chain {
    /// Whether `head` and `links` were built from the list on disk; false
    /// until recovery (or a rebuild) did.
    built: bool,
    head: u32,
    links: HashMap<u32, Link>,
}

/// A member's neighbours (0: the superblock before the first, the end
/// after the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    prev: u32,
    next: u32,
}

impl Chain {
    /// Puts `ino` at the head.
    fn push(&mut self, ino: u32) {
        let old = self.head;
        self.links.insert(ino, Link { prev: 0, next: old });
        if let Some(l) = self.links.get_mut(&old) {
            l.prev = ino;
        }
        self.head = ino;
    }

    /// Takes `ino` out, joining its neighbours.
    fn unlink(&mut self, ino: u32) {
        let Some(l) = self.links.remove(&ino) else { return };
        if l.prev == 0 {
            self.head = l.next;
        } else if let Some(p) = self.links.get_mut(&l.prev) {
            p.next = l.next;
        }
        if let Some(n) = self.links.get_mut(&l.next) {
            n.prev = l.prev;
        }
    }
}

/// The orphan file: where its blocks are, how many free slots each has
/// (a hint, corrected whenever the block is read) and which slot holds
/// each inode this mount put there.
#[derive(Debug)]
struct OrphanFile {
    /// The orphan file's checksum seed, with metadata_csum.
    seed: Option<u32>,
    /// Physical block of each logical block.
    blocks: Vec<u64>,
    free: Vec<usize>,
    /// Inode → slot (block * slots per block + index in the block).
    slots: HashMap<u32, usize>,
    per_block: usize,
}

impl OrphanFile {
    fn csum(&self, b: usize) -> Option<BlockCsum> {
        self.seed.map(|file_seed| BlockCsum { file_seed, pblk: self.blocks[b] })
    }
}

impl OpenInodes {
    fn lock(&self) -> MutexGuard<'_, OpenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of inodes recorded in the orphan file and on the classic list,
    /// as the in-memory mirror knows them.
    fn recorded(&self) -> (usize, usize) {
        let r = self.records();
        (r.file.as_ref().map_or(0, |f| f.slots.len()), r.chain.links.len())
    }
}

impl Ext4 {
    /// Records one more user of inode `ino` (a FUSE open or lookup
    /// reference): while it has users, removing its last name orphans it
    /// instead of freeing it.
    pub fn open_inode(&self, ino: u32) {
        *self.open_inodes().lock().counts.entry(ino).or_insert(0) += 1;
    }

    /// Drops one user of inode `ino`. When that was the last one and the
    /// inode lost its last name meanwhile, it leaves the orphan records and
    /// is freed, in one handle (after a shutdown it stays an orphan, for
    /// the next open to free).
    pub fn close_inode(&self, ino: u32) -> Result<()> {
        {
            let mut st = self.open_inodes().lock();
            let Some(n) = st.counts.get_mut(&ino) else {
                return Err(Error::InvalidArgument(format!("inode {ino} is not open")));
            };
            *n -= 1;
            if *n > 0 {
                return Ok(());
            }
            st.counts.remove(&ino);
            if !st.orphaned.contains(&ino) {
                return Ok(());
            }
        }
        if self.is_shut_down() {
            // Left on the orphan list, as a crash at the shutdown leaves
            // it: the next open frees it.
            return Ok(());
        }
        // Freeing its blocks must wait for reads and writes still running
        // on it (a hostile client may release while its reads are in flight).
        let _io = self.lock_inode(ino, LockMode::Exclusive);
        let mut h = self.begin()?;
        // Re-check under the handle: only one handle runs at a time, so no
        // unlink can be orphaning it concurrently.
        {
            let mut st = self.open_inodes().lock();
            if st.counts.contains_key(&ino) {
                return Ok(());
            }
            st.orphaned.remove(&ino);
        }
        let mut inode = self.read_inode_in(&h, ino)?;
        self.remove_orphan_in(&mut h, &inode)?;
        self.free_inode_in(&mut h, &mut inode, now())?;
        h.finish();
        Ok(())
    }

    /// How many orphans this mount has recorded: (in the orphan file, on
    /// the classic list), as the in-memory mirror knows them. For tests and
    /// statistics.
    pub fn orphan_records(&self) -> (usize, usize) {
        self.open_inodes().recorded()
    }

    /// Whether inode `ino` has users.
    pub fn is_inode_open(&self, ino: u32) -> bool {
        self.open_inodes().lock().counts.contains_key(&ino)
    }

    /// An inode whose link count just dropped to 0 inside `h`: freed when
    /// nobody has it open, otherwise recorded as an orphan (and written).
    pub fn release_inode_in(&self, h: &mut Handle<'_>, inode: &mut Inode, t: Timestamp) -> Result<()> {
        let mut st = self.open_inodes().lock();
        if !st.counts.contains_key(&inode.ino) {
            drop(st);
            return self.free_inode_in(h, inode, t);
        }
        if st.orphaned.insert(inode.ino) {
            drop(st);
            self.add_orphan_in(h, inode)?;
        } else {
            drop(st);
            self.write_inode(h, inode)?;
        }
        Ok(())
    }

    /// Registers `inode`, new and nameless (O_TMPFILE), as an open orphan
    /// inside `h`: recorded, held open once for the caller, who drops that
    /// reference with [`Ext4::close_inode`]. The caller must finish `h`.
    pub(crate) fn orphan_new_in(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        self.add_orphan_in(h, inode)?;
        let mut st = self.open_inodes().lock();
        *st.counts.entry(inode.ino).or_insert(0) += 1;
        st.orphaned.insert(inode.ino);
        Ok(())
    }

    /// Takes an open orphan off the orphan records inside `h` so it can get
    /// a name again (linkat of an O_TMPFILE file). [`Error::NotFound`] when
    /// the inode is not an open orphan.
    pub(crate) fn unorphan_in(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        {
            let st = self.open_inodes().lock();
            if !st.orphaned.contains(&inode.ino) || !st.counts.contains_key(&inode.ino) {
                return Err(Error::NotFound);
            }
        }
        self.remove_orphan_in(h, inode)?;
        inode.raw.dtime = 0;
        self.open_inodes().lock().orphaned.remove(&inode.ino);
        Ok(())
    }

    /// Records `inode` as an orphan — in a slot of the orphan file when
    /// there is one with room, otherwise at the head of the classic list —
    /// and writes it.
    fn add_orphan_in(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        if !self.orphan_file_add_in(h, inode.ino)? {
            self.chain_push_in(h, inode)?;
        }
        self.write_inode(h, inode)
    }

    /// Puts `ino` in a free slot of the orphan file. `false` when the image
    /// has no orphan file or it is full.
    fn orphan_file_add_in(&self, h: &mut Handle<'_>, ino: u32) -> Result<bool> {
        if self.open_inodes().records().file.as_ref().is_some_and(|f| f.slots.contains_key(&ino)) {
            return Ok(true);
        }
        let mut from = 0;
        loop {
            // Each pass starts past the block the last one found full, so
            // this ends after at most one pass per block.
            let (b, pblk, csum) = {
                let r = self.open_inodes().records();
                let Some(f) = &r.file else { return Ok(false) };
                let Some(b) = (from..f.blocks.len()).find(|&b| f.free[b] > 0) else { return Ok(false) };
                (b, f.blocks[b], f.csum(b))
            };
            let mut block = self.orphan_block_in(h, pblk, csum)?;
            let Some(j) = block.free_slot() else {
                if let Some(f) = &mut self.open_inodes().records().file {
                    f.free[b] = 0;
                }
                from = b + 1;
                continue;
            };
            block.set(j, ino);
            h.write(pblk, block.to_bytes(csum));
            if !self.superblock_in(h)?.ro_compat().has(RoCompat::ORPHAN_PRESENT) {
                self.update_superblock(h, |sb| sb.feature_ro_compat |= RoCompat::ORPHAN_PRESENT)?;
            }
            if let Some(f) = &mut self.open_inodes().records().file {
                f.free[b] = block.free_slots();
                f.slots.insert(ino, b * f.per_block + j);
            }
            return Ok(true);
        }
    }

    /// Puts `inode` at the head of the classic list (the caller writes it).
    fn chain_push_in(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        let head = self.superblock_in(h)?.last_orphan;
        let in_step = {
            let r = self.open_inodes().records();
            r.chain.built && r.chain.head == head
        };
        if !in_step {
            self.rebuild_chain_in(h)?;
        }
        if self.open_inodes().records().chain.links.contains_key(&inode.ino) {
            // Already a member: pushing it again would make the chain loop.
            return Ok(());
        }
        inode.raw.dtime = head;
        let ino = inode.ino;
        self.update_superblock(h, |sb| sb.last_orphan = ino)?;
        self.open_inodes().records().chain.push(ino);
        Ok(())
    }

    /// Takes `inode` out of the orphan records: clears its slot of the
    /// orphan file, or unlinks it from the classic list by rewriting its
    /// predecessor's `i_dtime` (or the superblock's head). Not finding it
    /// is corruption (someone rewrote the records under us).
    fn remove_orphan_in(&self, h: &mut Handle<'_>, inode: &Inode) -> Result<()> {
        let ino = inode.ino;
        let slot = {
            let r = self.open_inodes().records();
            r.file.as_ref().and_then(|f| {
                let s = *f.slots.get(&ino)?;
                let b = s / f.per_block;
                Some((b, s % f.per_block, f.blocks[b], f.csum(b)))
            })
        };
        let Some((b, j, pblk, csum)) = slot else { return self.chain_remove_in(h, inode) };
        let mut block = self.orphan_block_in(h, pblk, csum)?;
        let found = block.get(j) == ino;
        if found {
            block.set(j, 0);
            h.write(pblk, block.to_bytes(csum));
        }
        if let Some(f) = &mut self.open_inodes().records().file {
            f.free[b] = block.free_slots();
            f.slots.remove(&ino);
        }
        if !found {
            return Err(Error::corrupt("orphan file", Location::Inode(ino), "orphaned inode is not in its slot"));
        }
        Ok(())
    }

    /// Unlinks `inode` from the classic list in constant time, checking the
    /// links the in-memory mirror relies on; rebuilds the mirror and tries
    /// once more when they differ.
    fn chain_remove_in(&self, h: &mut Handle<'_>, inode: &Inode) -> Result<()> {
        let ino = inode.ino;
        for attempt in 0..2 {
            if attempt > 0 {
                self.rebuild_chain_in(h)?;
            }
            let link = {
                let r = self.open_inodes().records();
                if !r.chain.built {
                    continue;
                }
                match r.chain.links.get(&ino) {
                    Some(l) => *l,
                    None => continue,
                }
            };
            if inode.raw.dtime != link.next {
                continue;
            }
            if link.prev == 0 {
                if self.superblock_in(h)?.last_orphan != ino {
                    continue;
                }
                self.update_superblock(h, |sb| sb.last_orphan = link.next)?;
            } else {
                let mut pred = self.read_inode_in(h, link.prev)?;
                if pred.raw.dtime != ino {
                    continue;
                }
                pred.raw.dtime = link.next;
                self.write_inode(h, &mut pred)?;
            }
            self.open_inodes().records().chain.unlink(ino);
            return Ok(());
        }
        Err(Error::corrupt("orphan list", Location::Inode(ino), "orphaned inode not on the list"))
    }

    /// Rebuilds the in-memory mirror of the classic list from the list as
    /// `h` sees it: one walk, bounded (every member is a distinct inode
    /// number), a loop or a bad member being [`Error::Corrupt`].
    fn rebuild_chain_in(&self, h: &Handle<'_>) -> Result<()> {
        let members = self.walk_chain_in(h)?;
        let mut chain = Chain { built: true, head: members.first().copied().unwrap_or(0), links: HashMap::new() };
        for (i, &ino) in members.iter().enumerate() {
            let prev = if i == 0 { 0 } else { members[i - 1] };
            let next = members.get(i + 1).copied().unwrap_or(0);
            chain.links.insert(ino, Link { prev, next });
        }
        log::debug!("orphan list mirror rebuilt from disk: {} members", members.len());
        self.open_inodes().records().chain = chain;
        Ok(())
    }

    /// The members of the classic list as `h` sees it, head first, each
    /// checked by [`Ext4::orphan_at`]. A loop is [`Error::Corrupt`]; the
    /// walk ends after at most one step per inode of the file system.
    fn walk_chain_in(&self, h: &Handle<'_>) -> Result<Vec<u32>> {
        let mut cur = self.superblock_in(h)?.last_orphan;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while cur != 0 {
            if !seen.insert(cur) {
                return Err(Error::corrupt("orphan list", Location::Inode(cur), "the chain loops"));
            }
            let inode = self.orphan_at(h, cur)?;
            out.push(cur);
            cur = inode.raw.dtime;
        }
        Ok(out)
    }

    /// Reads orphan record `ino` (a list member or an orphan file entry),
    /// checking that it names an inode in use.
    fn orphan_at(&self, h: &Handle<'_>, ino: u32) -> Result<Inode> {
        if ino < self.superblock().first_ino() || ino > self.superblock().inodes_count {
            return Err(Error::corrupt("orphan list", Location::Inode(ino), "entry is not a valid inode number"));
        }
        let inode = self.read_inode_in(h, ino)?;
        if inode.mode() == 0 || !self.inode_in_use(h, ino)? {
            return Err(Error::corrupt("orphan list", Location::Inode(ino), "entry is an unused inode"));
        }
        Ok(inode)
    }

    /// Orphan file block at `pblk` as `h` sees it, checked.
    fn orphan_block_in(&self, h: &Handle<'_>, pblk: u64, csum: Option<BlockCsum>) -> Result<OrphanBlock> {
        OrphanBlock::parse(&self.meta_block_in(h, pblk, "orphan file block")?, pblk, csum)
    }

    /// Loads where the orphan file's blocks are, when the image has one:
    /// its inode must be a regular file of whole blocks without holes.
    fn load_orphan_file(&self) -> Result<()> {
        let sb = self.superblock();
        if !sb.compat().has(Compat::ORPHAN_FILE) {
            return Ok(());
        }
        let ino = sb.orphan_file_inum;
        if ino == 0 || ino > sb.inodes_count {
            return Err(Error::corrupt("superblock", Location::Superblock, format!("orphan file inode {ino}")));
        }
        let bad = |reason: &str| Error::corrupt("orphan file", Location::Inode(ino), reason.to_string());
        let inode = self.read_inode(ino)?;
        let bs = self.block_size() as u64;
        let n = inode.size() / bs;
        if !inode.is_reg() || inode.size() % bs != 0 || n == 0 || n > MAX_ORPHAN_FILE_BLOCKS {
            return Err(bad("not a regular file of whole blocks"));
        }
        let mut blocks = vec![0u64; n as usize];
        for e in self.file_extents(&inode)? {
            for i in e.lblk..(e.lblk + e.len).min(n) {
                blocks[i as usize] = e.pblk + (i - e.lblk);
            }
        }
        if let Some(lblk) = blocks.iter().position(|&b| b == 0) {
            return Err(Error::corrupt("orphan file", Location::FileBlock { ino, lblk: lblk as u64 }, "hole"));
        }
        let per_block = slots_per_block(self.block_size());
        let seed = self.csum_seed().map(|s| orphan_file_seed(s, ino, inode.generation()));
        self.open_inodes().records().file =
            Some(OrphanFile { seed, free: vec![per_block; blocks.len()], blocks, slots: HashMap::new(), per_block });
        Ok(())
    }

    /// The used slots of the orphan file as `h` sees it: (block, slot,
    /// inode), every block checked. Nothing when `ORPHAN_PRESENT` is clear:
    /// then the file holds no orphans (e2fsck treats entries there as
    /// corruption of the file, not as orphans).
    fn orphan_file_entries_in(&self, h: &Handle<'_>) -> Result<Vec<(usize, usize, u32)>> {
        if !self.superblock_in(h)?.ro_compat().has(RoCompat::ORPHAN_PRESENT) {
            return Ok(Vec::new());
        }
        let (blocks, csums) = {
            let r = self.open_inodes().records();
            let Some(f) = &r.file else { return Ok(Vec::new()) };
            (f.blocks.clone(), (0..f.blocks.len()).map(|b| f.csum(b)).collect::<Vec<_>>())
        };
        let mut out = Vec::new();
        for (b, (&pblk, &csum)) in blocks.iter().zip(&csums).enumerate() {
            out.extend(self.orphan_block_in(h, pblk, csum)?.used().map(|(j, ino)| (b, j, ino)));
        }
        Ok(out)
    }

    /// Frees an orphan without links, or cuts a linked one (the kernel's
    /// truncate orphans) to `i_size` and clears its `i_dtime`.
    fn process_orphan_in(&self, h: &mut Handle<'_>, inode: &mut Inode, t: Timestamp) -> Result<()> {
        if inode.links_count() == 0 {
            return self.free_inode_in(h, inode, t);
        }
        if inode.is_reg() && !inode.has_flag(FL_INLINE_DATA) {
            let keep = inode.size().div_ceil(self.block_size() as u64);
            self.unmap_blocks_in(h, inode, keep, u64::MAX)?;
        }
        inode.raw.dtime = 0;
        self.write_inode(h, inode)
    }

    /// Processes the orphans a crash left (ours or the kernel's), as the
    /// kernel does at mount: the classic list, then the orphan file's
    /// slots when `ORPHAN_PRESENT` is set. Inodes without links are freed,
    /// those with links (truncate orphans) are cut to `i_size`. One handle
    /// per inode, each leaving the records consistent. Everything is
    /// checked before anything changes: a list that loops, a record naming
    /// a bad inode, or an inode recorded twice is [`Error::Corrupt`].
    /// Called once, by every writable open (later, it would free inodes
    /// still open); returns how many inodes were processed.
    pub(crate) fn process_orphans(&self) -> Result<u32> {
        self.load_orphan_file()?;
        let (chain, slots) = {
            let h = self.begin()?;
            let chain = self.walk_chain_in(&h)?;
            let slots = self.orphan_file_entries_in(&h)?;
            let mut seen: HashSet<u32> = chain.iter().copied().collect();
            for &(_, _, ino) in &slots {
                self.orphan_at(&h, ino)?;
                if !seen.insert(ino) {
                    return Err(Error::corrupt("orphan file", Location::Inode(ino), "inode recorded twice"));
                }
            }
            (chain, slots)
        };
        let t = now();
        for (i, &ino) in chain.iter().enumerate() {
            let mut h = self.begin()?;
            let mut inode = self.read_inode_in(&h, ino)?;
            self.process_orphan_in(&mut h, &mut inode, t)?;
            let next = chain.get(i + 1).copied().unwrap_or(0);
            self.update_superblock(&mut h, |sb| sb.last_orphan = next)?;
            h.finish();
        }
        for &(b, j, ino) in &slots {
            let mut h = self.begin()?;
            let mut inode = self.read_inode_in(&h, ino)?;
            self.process_orphan_in(&mut h, &mut inode, t)?;
            let (pblk, csum) = {
                let r = self.open_inodes().records();
                let f = r.file.as_ref().expect("entries come from the orphan file");
                (f.blocks[b], f.csum(b))
            };
            let mut block = self.orphan_block_in(&h, pblk, csum)?;
            block.set(j, 0);
            h.write(pblk, block.to_bytes(csum));
            h.finish();
        }
        if !slots.is_empty() {
            // Every slot is free now.
            let mut h = self.begin()?;
            self.update_superblock(&mut h, |sb| sb.feature_ro_compat &= !RoCompat::ORPHAN_PRESENT)?;
            h.finish();
        }
        self.open_inodes().records().chain = Chain { built: true, head: 0, links: HashMap::new() };
        Ok((chain.len() + slots.len()) as u32)
    }

    /// At a clean close: clears `ORPHAN_PRESENT` when every slot of the
    /// orphan file is free (read from disk, so the flag never hides an
    /// entry). Orphans still open keep it set, for the next open (ours,
    /// the kernel's or e2fsck's) to process.
    pub(crate) fn close_orphan_file(&self) -> Result<()> {
        if !self.current_superblock()?.ro_compat().has(RoCompat::ORPHAN_PRESENT) {
            return Ok(());
        }
        let mut h = self.begin()?;
        let used = {
            let r = self.open_inodes().records();
            r.file.as_ref().map(|f| (0..f.blocks.len()).map(|b| (f.blocks[b], f.csum(b))).collect::<Vec<_>>())
        };
        // Without an orphan file there is nothing the flag could describe.
        if let Some(blocks) = used {
            for (pblk, csum) in blocks {
                if self.orphan_block_in(&h, pblk, csum)?.used().next().is_some() {
                    return Ok(());
                }
            }
        }
        self.update_superblock(&mut h, |sb| sb.feature_ro_compat &= !RoCompat::ORPHAN_PRESENT)?;
        h.finish();
        Ok(())
    }
}
