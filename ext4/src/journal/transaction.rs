//! Transactions: the running transaction that operations join through
//! handles, the committed-but-not-checkpointed blocks that readers must see,
//! and the hand-off to a [`LogWriter`] that makes a transaction durable.
//!
//! Model (jbd2's, simplified to one writer at a time):
//! - A [`Handle`] is one file-system operation. It reads metadata blocks at
//!   their newest version and stages new contents locally; nothing is visible
//!   to others until [`Handle::finish`], which moves its blocks into the
//!   running transaction and into the dirty map at once.
//! - The dirty map holds the newest contents of every block changed since it
//!   was last written home; metadata reads consult it before the cache.
//! - [`TxManager::commit`] hands the running transaction to the log writer
//!   (journal or, for journal-less images, straight home) and returns once
//!   it is durable. [`TxManager::checkpoint`] writes committed blocks to their
//!   home locations and lets the log reuse its space.

use crate::error::{Error, Result};
use crate::io::{BlockCache, BlockDevice};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Makes transactions durable. Implemented by the jbd2 journal and, for
/// images without a journal, by [`DirectWriter`].
pub trait LogWriter: Send + Sync {
    /// Writes transaction `tid` (its metadata blocks and revoked block
    /// numbers) durably. Data blocks the transaction references were
    /// written before, so the flush this implies also orders them first.
    fn write_transaction(&self, tid: u32, blocks: &[(u64, Arc<[u8]>)], revoked: &[u64]) -> Result<()>;
    /// Every transaction up to and including `tid` is now at its home
    /// location and flushed: its log space may be reused.
    fn checkpointed(&self, tid: u32) -> Result<()>;
    /// Whether a transaction of `blocks` metadata blocks and `revokes`
    /// revoke records still fits the log without a checkpoint first.
    fn fits(&self, blocks: usize, revokes: usize) -> bool;
    /// Largest transaction (in metadata blocks) the log can ever hold.
    fn max_transaction_blocks(&self) -> usize;
    /// The next transaction id to use (continues the journal's sequence).
    fn next_tid(&self) -> u32;
    /// The copy of metadata block `blk` to commit instead of `data`, when
    /// the log must adjust it (the journal keeps `needs_recovery` set in
    /// every committed copy of the superblock), or `None` to commit `data`.
    fn fix_block(&self, _blk: u64, _data: &[u8]) -> Option<Vec<u8>> {
        None
    }
    /// Everything committed is checkpointed: marks the image clean (the
    /// journal empties its log and clears `needs_recovery`). A later
    /// transaction makes it dirty again.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// Writes transactions straight to their home locations: for images without
/// a journal (ext2), where there is no crash consistency to keep.
pub struct DirectWriter {
    dev: Arc<dyn BlockDevice>,
    block_size: u64,
}

impl DirectWriter {
    /// A writer for `dev` with blocks of `block_size` bytes.
    pub fn new(dev: Arc<dyn BlockDevice>, block_size: u32) -> Self {
        DirectWriter { dev, block_size: block_size as u64 }
    }
}

impl LogWriter for DirectWriter {
    fn write_transaction(&self, _tid: u32, blocks: &[(u64, Arc<[u8]>)], _revoked: &[u64]) -> Result<()> {
        for (blk, data) in blocks {
            self.dev.write_at(data, blk * self.block_size)?;
        }
        self.dev.flush()
    }
    fn checkpointed(&self, _tid: u32) -> Result<()> {
        Ok(())
    }
    fn fits(&self, _blocks: usize, _revokes: usize) -> bool {
        true
    }
    fn max_transaction_blocks(&self) -> usize {
        usize::MAX
    }
    fn next_tid(&self) -> u32 {
        1
    }
}

/// A block changed since it was last written home.
#[derive(Clone)]
struct Dirty {
    /// Newest contents (possibly only in the running transaction).
    newest: Arc<[u8]>,
    /// Newest committed contents not yet written home, and their transaction.
    /// Checkpoint writes these, never uncommitted contents.
    committed: Option<(Arc<[u8]>, u32)>,
}

#[derive(Default)]
struct Running {
    blocks: BTreeMap<u64, Arc<[u8]>>,
    revoked: BTreeSet<u64>,
    /// Blocks freed by the transaction's operations: not reusable until it
    /// is durable, since after a crash its predecessor still uses them.
    freed: BlockRanges,
}

/// A set of disjoint block ranges, merged on insert. Used for blocks that
/// the allocator must not hand out although their bitmap bits are clear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockRanges {
    /// Range start -> range end (exclusive).
    map: BTreeMap<u64, u64>,
}

impl BlockRanges {
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of blocks in the set.
    pub fn blocks(&self) -> u64 {
        self.map.iter().map(|(s, e)| e - s).sum()
    }

    /// The ranges as `(start, end)` pairs (end exclusive), in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &e)| (s, e))
    }

    /// Adds blocks `start..start + len`, merging with touching ranges.
    pub fn insert(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        let (mut s, mut e) = (start, start.saturating_add(len));
        if let Some((&ps, &pe)) = self.map.range(..=s).next_back() {
            if pe >= s {
                s = ps;
                e = e.max(pe);
                self.map.remove(&ps);
            }
        }
        while let Some((&ns, &ne)) = self.map.range(s..=e).next() {
            e = e.max(ne);
            self.map.remove(&ns);
        }
        self.map.insert(s, e);
    }

    /// Removes blocks `start..start + len`, splitting ranges as needed.
    pub fn remove(&mut self, start: u64, len: u64) {
        let end = start.saturating_add(len);
        for (s, e) in self.overlapping(start, end) {
            self.map.remove(&s);
            if s < start {
                self.map.insert(s, start);
            }
            if e > end {
                self.map.insert(end, e);
            }
        }
    }

    /// Adds every range of `other`.
    pub fn extend(&mut self, other: &BlockRanges) {
        for (s, e) in other.iter() {
            self.insert(s, e - s);
        }
    }

    /// Whether any block of `start..start + len` is in the set.
    pub fn intersects(&self, start: u64, len: u64) -> bool {
        len > 0 && !self.overlapping(start, start.saturating_add(len)).is_empty()
    }

    /// The stored ranges (unclipped) that overlap `start..end`.
    fn overlapping(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        if start >= end {
            return v;
        }
        if let Some((&ps, &pe)) = self.map.range(..start).next_back() {
            if pe > start {
                v.push((ps, pe));
            }
        }
        v.extend(self.map.range(start..end).map(|(&s, &e)| (s, e)));
        v
    }

    /// Appends the parts of the set inside `start..end` to `out`, clipped,
    /// as `(start, end)` pairs.
    pub fn collect_in(&self, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        out.extend(self.overlapping(start, end).into_iter().map(|(s, e)| (s.max(start), e.min(end))));
    }
}

/// Counters for tests and statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Transactions committed.
    pub commits: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Metadata blocks written to the log.
    pub logged_blocks: u64,
}

/// The transaction state of one open file system.
pub struct TxManager {
    dev: Arc<dyn BlockDevice>,
    block_size: u64,
    log: Box<dyn LogWriter>,
    /// Serialises operations: one handle at a time (readers never wait on it).
    writer: Mutex<()>,
    running: Mutex<Running>,
    dirty: RwLock<HashMap<u64, Dirty>>,
    /// Serialises commit and checkpoint.
    commit_lock: Mutex<u32>,
    stats: Mutex<TxStats>,
    /// Blocks freed by the transaction being committed: no longer running,
    /// not yet durable. Lock order: `running`, then this.
    committing_freed: Mutex<BlockRanges>,
    /// Blocks set aside in memory (chosen for data not yet recorded in a
    /// bitmap); the allocator skips them.
    reserved: Mutex<BlockRanges>,
    /// The metadata cache of the file system, kept current with published
    /// blocks so that it never serves a version older than the home copy.
    cache: Option<Arc<BlockCache>>,
    /// How often a commit timer commits the running transaction.
    commit_interval: Duration,
}

/// Default of [`TxManager::commit_interval`], as ext4's `commit=` mount option.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

impl TxManager {
    /// A manager writing through `log` onto `dev`.
    pub fn new(dev: Arc<dyn BlockDevice>, block_size: u32, log: Box<dyn LogWriter>) -> Self {
        let tid = log.next_tid();
        TxManager {
            dev,
            block_size: block_size as u64,
            log,
            writer: Mutex::new(()),
            running: Mutex::new(Running::default()),
            dirty: RwLock::new(HashMap::new()),
            commit_lock: Mutex::new(tid),
            stats: Mutex::new(TxStats::default()),
            committing_freed: Mutex::new(BlockRanges::default()),
            reserved: Mutex::new(BlockRanges::default()),
            cache: None,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
        }
    }

    /// Sets how often a commit timer (see `Ext4::start_commit_timer`)
    /// commits; zero means never.
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// How often a commit timer commits the running transaction.
    pub fn commit_interval(&self) -> Duration {
        self.commit_interval
    }

    /// Whether the running transaction has grown past a quarter of the
    /// largest transaction the log takes. [`TxManager::begin`] then commits
    /// it before the next operation starts, as jbd2 does, so that a
    /// transaction never outgrows the log.
    pub fn needs_commit(&self) -> bool {
        self.running_blocks() > self.log.max_transaction_blocks() / 4
    }

    /// Keeps `cache` current: every block a handle publishes replaces its
    /// cached copy (and a revoked block leaves the cache), so that once a
    /// block is written home and leaves the dirty map, the cache does not
    /// serve the version from before the change.
    pub fn with_cache(mut self, cache: Arc<BlockCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Sets blocks `start..start + len` aside so the allocator skips them.
    /// Fails if part of the range is already reserved.
    pub fn reserve(&self, start: u64, len: u64) -> Result<()> {
        let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        if r.intersects(start, len) {
            return Err(Error::InvalidArgument(format!("blocks {start}+{len} are already reserved")));
        }
        r.insert(start, len);
        Ok(())
    }

    /// Releases a reservation made by [`TxManager::reserve`] (or part of one).
    pub fn unreserve(&self, start: u64, len: u64) {
        self.reserved.lock().unwrap_or_else(|e| e.into_inner()).remove(start, len);
    }

    /// Number of blocks currently reserved.
    pub fn reserved_blocks(&self) -> u64 {
        self.reserved.lock().unwrap_or_else(|e| e.into_inner()).blocks()
    }

    /// Whether any block of `start..start + len` was freed by a transaction
    /// that is not durable yet (running or being committed).
    pub fn is_pending_free(&self, start: u64, len: u64) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let committing = self.committing_freed.lock().unwrap_or_else(|e| e.into_inner());
        running.freed.intersects(start, len) || committing.intersects(start, len)
    }

    /// Whether blocks freed by a transaction wait for it to become durable:
    /// a commit would make them allocatable.
    pub fn has_pending_frees(&self) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let committing = self.committing_freed.lock().unwrap_or_else(|e| e.into_inner());
        !running.freed.is_empty() || !committing.is_empty()
    }

    /// Appends to `out` the blocks inside `start..end` that are free in the
    /// bitmaps but must not be allocated: freed by a transaction that is not
    /// durable yet, or reserved. Clipped `(start, end)` pairs, possibly
    /// overlapping each other.
    pub fn unavailable_in(&self, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let committing = self.committing_freed.lock().unwrap_or_else(|e| e.into_inner());
            running.freed.collect_in(start, end, out);
            committing.collect_in(start, end, out);
        }
        self.reserved.lock().unwrap_or_else(|e| e.into_inner()).collect_in(start, end, out);
    }

    /// The newest contents of `blk` if it changed since last written home.
    pub fn dirty_block(&self, blk: u64) -> Option<Arc<[u8]>> {
        self.dirty.read().unwrap_or_else(|e| e.into_inner()).get(&blk).map(|d| d.newest.clone())
    }

    /// Starts an operation. Blocks while another handle is open. Commits
    /// the running transaction first when it [needs
    /// it](TxManager::needs_commit); if that commit fails its blocks stay in
    /// the running transaction and the next explicit commit reports the error.
    pub fn begin(&self) -> Handle<'_> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.needs_commit()
            && let Err(e) = self.commit()
        {
            log::warn!("commit of a large running transaction failed: {e}");
        }
        Handle {
            tx: self,
            _guard: guard,
            blocks: BTreeMap::new(),
            revoked: BTreeSet::new(),
            freed: BlockRanges::default(),
        }
    }

    /// Whether a handle is open right now (some operation holds the writer
    /// lock). For tests and assertions of "no handle open while ...".
    pub fn handle_open(&self) -> bool {
        matches!(self.writer.try_lock(), Err(std::sync::TryLockError::WouldBlock))
    }

    /// Number of metadata blocks in the running transaction.
    pub fn running_blocks(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).blocks.len()
    }

    /// Commits the running transaction (if it has anything) and returns once
    /// it is durable. Returns the committed transaction id.
    pub fn commit(&self) -> Result<Option<u32>> {
        let mut next_tid = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut tx = {
            // Taking the running transaction and publishing its freed blocks
            // as committing happen under one lock: no moment where they are
            // in neither set.
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let tx = std::mem::take(&mut *running);
            *self.committing_freed.lock().unwrap_or_else(|e| e.into_inner()) = tx.freed.clone();
            tx
        };
        let freed = std::mem::take(&mut tx.freed);
        if tx.blocks.is_empty() && tx.revoked.is_empty() {
            // Nothing reached the disk, so nothing on it refers to the
            // freed blocks differently.
            self.committing_freed.lock().unwrap_or_else(|e| e.into_inner()).map.clear();
            return Ok(None);
        }
        let tid = *next_tid;
        let blocks: Vec<(u64, Arc<[u8]>)> = tx.blocks.into_iter().map(|(b, d)| (b, self.fixed(b, d))).collect();
        let revoked: Vec<u64> = tx.revoked.into_iter().collect();
        if !self.log.fits(blocks.len(), revoked.len()) {
            self.checkpoint_locked(tid)?;
        }
        if let Err(e) = self.log.write_transaction(tid, &blocks, &revoked) {
            // Put the blocks back so a later commit retries them.
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            for (b, d) in blocks {
                running.blocks.entry(b).or_insert(d);
            }
            running.revoked.extend(revoked);
            running.freed.extend(&freed);
            self.committing_freed.lock().unwrap_or_else(|e| e.into_inner()).map.clear();
            return Err(e);
        }
        // Durable: the blocks it freed are free for good.
        self.committing_freed.lock().unwrap_or_else(|e| e.into_inner()).map.clear();
        {
            let mut dirty = self.dirty.write().unwrap_or_else(|e| e.into_inner());
            for (b, d) in &blocks {
                if let Some(entry) = dirty.get_mut(b) {
                    entry.committed = Some((d.clone(), tid));
                }
            }
            // A freed metadata block is forgotten once its revoke is durable:
            // never checkpointed again, since it may hold file data next. (The
            // allocator does not hand out blocks freed by an uncommitted
            // transaction, so nothing can land on it before this point.)
            for b in &revoked {
                dirty.remove(b);
            }
        }
        *next_tid = tid.wrapping_add(1);
        let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        st.commits += 1;
        st.logged_blocks += blocks.len() as u64;
        Ok(Some(tid))
    }

    /// `data` as the log wants it committed ([`LogWriter::fix_block`]); a
    /// fixed copy also replaces `data` as the block's newest version.
    fn fixed(&self, blk: u64, data: Arc<[u8]>) -> Arc<[u8]> {
        let Some(fixed) = self.log.fix_block(blk, &data) else { return data };
        let fixed: Arc<[u8]> = fixed.into();
        let mut dirty = self.dirty.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = dirty.get_mut(&blk)
            && Arc::ptr_eq(&entry.newest, &data)
        {
            entry.newest = fixed.clone();
            if let Some(cache) = &self.cache {
                cache.insert(blk, fixed.clone());
            }
        }
        fixed
    }

    /// Writes every committed block to its home location, flushes, and
    /// releases the log space. Blocks changed again by the running
    /// transaction stay dirty.
    pub fn checkpoint(&self) -> Result<()> {
        let next_tid = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.checkpoint_locked(*next_tid)
    }

    /// Checkpoints every transaction before `next_tid` (the commit lock is held).
    fn checkpoint_locked(&self, next_tid: u32) -> Result<()> {
        let committed: Vec<(u64, Arc<[u8]>, u32)> = {
            let dirty = self.dirty.read().unwrap_or_else(|e| e.into_inner());
            dirty.iter().filter_map(|(b, d)| d.committed.as_ref().map(|(c, t)| (*b, c.clone(), *t))).collect()
        };
        if !committed.is_empty() {
            for (blk, data, _) in &committed {
                self.dev.write_at(data, blk * self.block_size)?;
            }
            self.dev.flush()?;
        }
        // Every committed transaction is home now, including those whose
        // blocks were all superseded or revoked since: the log may drop them.
        self.log.checkpointed(next_tid.wrapping_sub(1))?;
        if committed.is_empty() {
            return Ok(());
        }
        let mut dirty = self.dirty.write().unwrap_or_else(|e| e.into_inner());
        for (blk, data, _) in committed {
            let Some(entry) = dirty.get_mut(&blk) else { continue };
            if entry.committed.as_ref().is_some_and(|(c, _)| Arc::ptr_eq(c, &data)) {
                entry.committed = None;
            }
            if entry.committed.is_none() && Arc::ptr_eq(&entry.newest, &data) {
                dirty.remove(&blk);
            }
        }
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).checkpoints += 1;
        Ok(())
    }

    /// Commits and checkpoints everything: the image is then complete at
    /// its home locations and the log is empty.
    pub fn sync_all(&self) -> Result<()> {
        self.commit()?;
        self.checkpoint()
    }

    /// Commits and checkpoints everything, then lets the log mark the image
    /// clean ([`LogWriter::close`]). Operations finished meanwhile stay in
    /// the running transaction; committing them later makes the image
    /// dirty again.
    pub fn close(&self) -> Result<()> {
        self.commit()?;
        let next_tid = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.checkpoint_locked(*next_tid)?;
        self.log.close()
    }

    /// Counters since open.
    pub fn stats(&self) -> TxStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Largest number of metadata blocks one handle may stage.
    pub fn max_handle_blocks(&self) -> usize {
        self.log.max_transaction_blocks() / 4
    }
}

/// One file-system operation's view of metadata: reads see the newest
/// versions (its own staged writes first), writes are staged until
/// [`Handle::finish`]. Dropping a handle without finishing discards its
/// writes, so an operation that fails half-way leaves nothing behind.
pub struct Handle<'a> {
    tx: &'a TxManager,
    _guard: MutexGuard<'a, ()>,
    blocks: BTreeMap<u64, Arc<[u8]>>,
    revoked: BTreeSet<u64>,
    freed: BlockRanges,
}

impl Handle<'_> {
    /// Records that this operation freed blocks `start..start + len`: they
    /// stay unallocatable until the transaction holding the change is
    /// durable (see [`TxManager::is_pending_free`]).
    pub fn note_freed(&mut self, start: u64, len: u64) {
        self.freed.insert(start, len);
    }

    /// Whether any block of `start..start + len` was freed by this handle or
    /// by a transaction that is not durable yet.
    pub fn is_pending_free(&self, start: u64, len: u64) -> bool {
        self.freed.intersects(start, len) || self.tx.is_pending_free(start, len)
    }

    /// Appends to `out` the blocks inside `start..end` that must not be
    /// allocated although their bitmap bits may be clear: freed by this
    /// handle or by a transaction not durable yet, or reserved.
    pub fn unavailable_in(&self, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        self.freed.collect_in(start, end, out);
        self.tx.unavailable_in(start, end, out);
    }

    /// The contents of `blk` as this handle sees them: staged, dirty, or
    /// `None` (the caller then reads the block from cache or disk).
    pub fn staged_or_dirty(&self, blk: u64) -> Option<Arc<[u8]>> {
        self.blocks.get(&blk).cloned().or_else(|| self.tx.dirty_block(blk))
    }

    /// Stages new contents for metadata block `blk`.
    pub fn write(&mut self, blk: u64, data: Vec<u8>) {
        self.revoked.remove(&blk);
        self.blocks.insert(blk, data.into());
    }

    /// Records that metadata block `blk` was freed, so that journal replay
    /// never writes an old copy over what the block holds next.
    pub fn revoke(&mut self, blk: u64) {
        self.blocks.remove(&blk);
        self.revoked.insert(blk);
    }

    /// Number of blocks staged so far.
    pub fn staged(&self) -> usize {
        self.blocks.len()
    }

    /// Publishes the staged blocks into the running transaction and the
    /// dirty map, all at once.
    pub fn finish(self) {
        let mut running = self.tx.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut dirty = self.tx.dirty.write().unwrap_or_else(|e| e.into_inner());
        running.freed.extend(&self.freed);
        for blk in &self.revoked {
            running.blocks.remove(blk);
            running.revoked.insert(*blk);
            if let Some(cache) = &self.tx.cache {
                cache.invalidate(*blk);
            }
        }
        for (blk, data) in self.blocks {
            running.revoked.remove(&blk);
            if let Some(cache) = &self.tx.cache {
                cache.insert(blk, data.clone());
            }
            match dirty.get_mut(&blk) {
                Some(entry) => entry.newest = data.clone(),
                None => {
                    dirty.insert(blk, Dirty { newest: data.clone(), committed: None });
                }
            }
            running.blocks.insert(blk, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;

    /// A transaction as the recording log saw it: id, blocks, revokes.
    type LoggedTx = (u32, Vec<u64>, Vec<u64>);

    #[derive(Default)]
    struct RecordingLog {
        txs: Mutex<Vec<LoggedTx>>,
        checkpointed: Mutex<Option<u32>>,
    }

    impl LogWriter for Arc<RecordingLog> {
        fn write_transaction(&self, tid: u32, blocks: &[(u64, Arc<[u8]>)], revoked: &[u64]) -> Result<()> {
            self.txs.lock().unwrap().push((tid, blocks.iter().map(|b| b.0).collect(), revoked.to_vec()));
            Ok(())
        }
        fn checkpointed(&self, tid: u32) -> Result<()> {
            *self.checkpointed.lock().unwrap() = Some(tid);
            Ok(())
        }
        fn fits(&self, _: usize, _: usize) -> bool {
            true
        }
        fn max_transaction_blocks(&self) -> usize {
            1024
        }
        fn next_tid(&self) -> u32 {
            7
        }
    }

    #[test]
    fn handle_stages_until_finish_and_commit_checkpoints() {
        let dev = Arc::new(MemDevice::new(vec![0u8; 16 * 1024]));
        let log = Arc::new(RecordingLog::default());
        let tm = TxManager::new(dev.clone(), 1024, Box::new(log.clone()));
        let mut h = tm.begin();
        h.write(3, vec![3u8; 1024]);
        assert!(tm.dirty_block(3).is_none(), "staged writes are private");
        assert_eq!(h.staged_or_dirty(3).unwrap()[0], 3);
        h.finish();
        assert_eq!(tm.dirty_block(3).unwrap()[0], 3);
        let mut h = tm.begin();
        h.write(4, vec![4u8; 1024]);
        drop(h); // abandoned: nothing published
        assert!(tm.dirty_block(4).is_none());
        assert_eq!(tm.commit().unwrap(), Some(7));
        assert_eq!(tm.commit().unwrap(), None, "nothing to commit");
        assert_eq!(dev.contents()[3 * 1024], 0, "not home before checkpoint");
        tm.checkpoint().unwrap();
        assert_eq!(dev.contents()[3 * 1024], 3);
        assert!(tm.dirty_block(3).is_none());
        assert_eq!(*log.checkpointed.lock().unwrap(), Some(7));
        assert_eq!(log.txs.lock().unwrap().as_slice(), &[(7, vec![3], vec![])]);
    }

    #[test]
    fn block_rewritten_after_commit_stays_dirty_through_checkpoint() {
        let dev = Arc::new(MemDevice::new(vec![0u8; 16 * 1024]));
        let tm = TxManager::new(dev.clone(), 1024, Box::new(Arc::new(RecordingLog::default())));
        let mut h = tm.begin();
        h.write(5, vec![1u8; 1024]);
        h.finish();
        tm.commit().unwrap();
        let mut h = tm.begin();
        h.write(5, vec![2u8; 1024]);
        h.finish();
        tm.checkpoint().unwrap();
        // The committed version goes home; the running one stays dirty and
        // is never written home uncommitted.
        assert_eq!(tm.dirty_block(5).unwrap()[0], 2);
        assert_eq!(dev.contents()[5 * 1024], 1);
        tm.sync_all().unwrap();
        assert_eq!(dev.contents()[5 * 1024], 2);
    }

    #[test]
    fn revoke_replaces_a_staged_write() {
        let dev = Arc::new(MemDevice::new(vec![0u8; 16 * 1024]));
        let log = Arc::new(RecordingLog::default());
        let tm = TxManager::new(dev, 1024, Box::new(log.clone()));
        let mut h = tm.begin();
        h.write(9, vec![9u8; 1024]);
        h.revoke(9);
        h.finish();
        tm.commit().unwrap();
        assert_eq!(log.txs.lock().unwrap().as_slice(), &[(7, vec![], vec![9])]);
    }

    #[test]
    fn block_ranges_merge_split_and_clip() {
        let mut r = BlockRanges::default();
        r.insert(10, 5);
        r.insert(20, 5);
        r.insert(15, 5); // touches both: one range 10..25
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(10, 25)]);
        r.insert(0, 0);
        r.insert(30, 2);
        r.remove(12, 3);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(10, 12), (15, 25), (30, 32)]);
        assert_eq!(r.blocks(), 14);
        assert!(r.intersects(11, 1) && !r.intersects(12, 3) && !r.intersects(25, 5) && r.intersects(0, 100));
        let mut out = Vec::new();
        r.collect_in(11, 31, &mut out);
        assert_eq!(out, vec![(11, 12), (15, 25), (30, 31)]);
        r.remove(0, 100);
        assert!(r.is_empty());
    }

    /// A log whose write_transaction waits for the test's go-ahead, so the
    /// test can look at the manager while a commit is under way.
    struct GateLog {
        entered: Mutex<std::sync::mpsc::Sender<()>>,
        go: Mutex<std::sync::mpsc::Receiver<bool>>,
    }

    impl LogWriter for GateLog {
        fn write_transaction(&self, _: u32, _: &[(u64, Arc<[u8]>)], _: &[u64]) -> Result<()> {
            self.entered.lock().unwrap().send(()).unwrap();
            if self.go.lock().unwrap().recv().unwrap() {
                Ok(())
            } else {
                Err(Error::Io { offset: 0, source: std::io::Error::other("log write failed") })
            }
        }
        fn checkpointed(&self, _: u32) -> Result<()> {
            Ok(())
        }
        fn fits(&self, _: usize, _: usize) -> bool {
            true
        }
        fn max_transaction_blocks(&self) -> usize {
            1024
        }
        fn next_tid(&self) -> u32 {
            1
        }
    }

    #[test]
    fn freed_blocks_stay_unavailable_until_their_transaction_is_durable() {
        let dev = Arc::new(MemDevice::new(vec![0u8; 16 * 1024]));
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        let log = GateLog { entered: Mutex::new(entered_tx), go: Mutex::new(go_rx) };
        let tm = TxManager::new(dev, 1024, Box::new(log));
        let unavailable = |h: &Handle<'_>| {
            let mut v = Vec::new();
            h.unavailable_in(0, 1000, &mut v);
            v
        };

        let mut h = tm.begin();
        h.note_freed(100, 10);
        h.write(3, vec![1u8; 1024]);
        assert!(h.is_pending_free(105, 1), "the freeing handle itself must not reuse them");
        assert!(!tm.is_pending_free(100, 10), "not published before finish");
        drop(h);
        assert!(!tm.is_pending_free(100, 10), "a discarded handle frees nothing");

        let mut h = tm.begin();
        h.note_freed(100, 10);
        h.write(3, vec![1u8; 1024]);
        h.finish();
        assert!(tm.is_pending_free(100, 10));

        // A failed commit keeps them pending; a successful one releases them
        // only once write_transaction has returned.
        for ok in [false, true] {
            std::thread::scope(|s| {
                let c = s.spawn(|| tm.commit());
                entered.recv().unwrap();
                assert!(tm.is_pending_free(109, 1), "committing, not durable yet");
                let h = tm.begin();
                assert_eq!(unavailable(&h), vec![(100, 110)]);
                drop(h);
                go.send(ok).unwrap();
                assert_eq!(c.join().unwrap().is_ok(), ok);
            });
            assert_eq!(tm.is_pending_free(100, 10), !ok);
        }
        assert!(unavailable(&tm.begin()).is_empty());
    }

    #[test]
    fn reservations_are_unavailable_and_exclusive() {
        let dev = Arc::new(MemDevice::new(vec![0u8; 16 * 1024]));
        let tm = TxManager::new(dev, 1024, Box::new(Arc::new(RecordingLog::default())));
        tm.reserve(50, 10).unwrap();
        assert!(matches!(tm.reserve(59, 2), Err(Error::InvalidArgument(_))));
        tm.reserve(60, 2).unwrap();
        assert_eq!(tm.reserved_blocks(), 12);
        let mut v = Vec::new();
        tm.begin().unavailable_in(55, 100, &mut v);
        assert_eq!(v, vec![(55, 62)]);
        tm.unreserve(50, 12);
        assert_eq!(tm.reserved_blocks(), 0);
        assert!(!tm.is_pending_free(50, 12), "reserved is not pending-free");
    }

    #[test]
    fn published_blocks_replace_cached_copies() {
        let dev = Arc::new(MemDevice::new(vec![0u8; 16 * 1024]));
        let cache = Arc::new(BlockCache::new(1 << 20));
        cache.insert(2, vec![0u8; 1024].into());
        cache.insert(4, vec![0u8; 1024].into());
        let tm = TxManager::new(dev, 1024, Box::new(Arc::new(RecordingLog::default()))).with_cache(cache.clone());
        let mut h = tm.begin();
        h.write(2, vec![2u8; 1024]);
        h.revoke(4);
        drop(h);
        assert_eq!(cache.get(2).unwrap()[0], 0, "discarded writes leave the cache alone");
        let mut h = tm.begin();
        h.write(2, vec![2u8; 1024]);
        h.revoke(4);
        h.finish();
        tm.sync_all().unwrap();
        assert!(tm.dirty_block(2).is_none());
        assert_eq!(cache.get(2).unwrap()[0], 2, "after checkpoint the cache has the home version");
        assert!(cache.get(4).is_none());
    }
}
