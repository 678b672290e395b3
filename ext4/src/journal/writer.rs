//! Journaled writes: [`Jbd2Writer`] makes transactions durable in the
//! internal jbd2 journal the way the kernel's jbd2 commit does, so that
//! after a crash at any moment the replay yields each transaction whole or
//! not at all.
//!
//! A transaction is laid out in the circular log (`s_first` up to the
//! fast-commit area or `s_maxlen`, wrapping) as revoke blocks, then
//! descriptor blocks each followed by the copies of the blocks it tags, then
//! the commit block. The copies and descriptors are flushed before the
//! commit block is written, and the commit block is flushed too: the first
//! flush also makes file data written before the commit durable first
//! (ordered mode). Descriptors are packed as jbd2 packs them (UUID after the
//! first tag of each block only, `LAST_TAG` on the last one); a copy that
//! begins with the jbd2 magic is logged with its magic zeroed and the tag
//! flagged `ESCAPE`. Checksums follow the journal's features: v3 (32-bit tag
//! checksums) or v2 (16-bit), with checksum tails on descriptor and revoke
//! blocks and a checksummed commit block; v1 (crc32_be of the descriptors and
//! copies in the commit block); or none.
//!
//! Log space is released by [`LogWriter::checkpointed`], which moves
//! `s_start`/`s_sequence` of the journal superblock to the oldest
//! transaction still needed (`s_start` = 0, an empty journal, once none is)
//! and flushes before the space is reused. A transaction written into an
//! empty journal first points `s_start` at itself.
//!
//! The file system's `needs_recovery` flag is set durably before the first
//! commit block reaches the log, kept set in every committed copy of the
//! superblock block ([`LogWriter::fix_block`]: counters written by
//! transactions are never clobbered, the copy is patched), and cleared by
//! [`LogWriter::close`] once everything is checkpointed.
//!
//! Like the kernel at mount, the writer turns on the journal features the
//! file system calls for before its first transaction: checksum v3 with
//! metadata_csum (unless the journal already has v2), 64-bit block numbers
//! with 64bit, and revoke records. An error the journal recorded
//! (`s_errno`, e.g. a replay that met a corrupt commit block) is moved to
//! the file system, as the kernel and e2fsck do: the first write marks the
//! superblock as having errors (so e2fsck will check it) and clears
//! `s_errno`. The writer refuses what it cannot write safely: external
//! journals, v1 journal superblocks, a journal holding transactions the file
//! system does not know need recovery, fast commits pending replay, unknown
//! features ([`JournalSuperblock::parse`]), and journals shorter than
//! jbd2's minimum.
//! After an I/O error the writer is aborted, as jbd2 aborts a journal: every
//! later transaction fails rather than risk reusing a log in an unknown state.

use super::log_map::LogMap;
use super::transaction::LogWriter;
use crate::disk::checksum::crc32_be;
use crate::disk::extent::FileExtent;
use crate::disk::features::Incompat;
use crate::disk::jbd2::{
    BLOCKTYPE_COMMIT, BLOCKTYPE_SUPERBLOCK_V2, BlockTag, BlockTail, CHECKSUM_TYPE_CRC32, CHECKSUM_TYPE_CRC32C,
    COMPAT_CHECKSUM, CRC32_CHECKSUM_SIZE, CommitHeader, FLAG_ESCAPE, FLAG_LAST_TAG, FLAG_SAME_UUID, Header,
    INCOMPAT_64BIT, INCOMPAT_CSUM_V3, INCOMPAT_REVOKE, JournalSuperblock, MAGIC, RevokeHeader, TagFormat,
    data_block_checksum, fast_commit_head_tid, set_block_tail, set_commit_checksum, tid_geq,
};
use crate::disk::superblock::{MAGIC as EXT4_MAGIC, STATE_ERROR, SUPERBLOCK_OFFSET, Superblock};
use crate::error::{Error, Location, Result};
use crate::io::BlockDevice;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// Log blocks always kept free beyond what a transaction needs (jbd2 keeps
/// 32 "for rounding errors"); also keeps the head from ever reaching the tail.
pub const LOG_RESERVE: usize = 32;

/// The shortest journal jbd2 accepts (`JBD2_MIN_JOURNAL_BLOCKS`).
pub const MIN_JOURNAL_BLOCKS: u32 = 1024;

/// Size of the UUID written after the first tag of a descriptor block.
const UUID_SIZE: usize = 16;

/// What the journal writer needs to know about the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsInfo {
    /// Block size in bytes (the journal's too).
    pub block_size: u32,
    /// Blocks in the file system: every logged home block lies below.
    pub blocks_count: u64,
    /// metadata_csum: the journal gets checksum v3.
    pub metadata_csum: bool,
    /// 64bit: the journal gets 64-bit block numbers.
    pub is_64bit: bool,
}

/// Number of tags jbd2 packs into one descriptor block of `block_size`
/// bytes: it takes tags (the first followed by the UUID) while at least a
/// tag, a UUID and the checksum tail remain free after the last one. After
/// `n` tags `block_size - 12 - 16 - n·t` bytes are free, so the block closes
/// at the first `n` with `n·t > block_size - 44 - t - tail`.
pub fn tags_per_descriptor(fmt: TagFormat, block_size: usize) -> usize {
    let t = fmt.tag_size();
    let room = block_size.saturating_sub(Header::SIZE + 2 * UUID_SIZE + t + tail_size(fmt));
    room / t + 1
}

/// Number of revoke records in one revoke block of `block_size` bytes.
pub fn revokes_per_block(fmt: TagFormat, block_size: usize) -> usize {
    block_size.saturating_sub(RevokeHeader::SIZE + tail_size(fmt)) / fmt.revoke_record_size()
}

/// Log blocks a transaction of `blocks` logged blocks and `revokes` revoke
/// records takes: revoke blocks, descriptors, copies and the commit block.
pub fn transaction_log_blocks(fmt: TagFormat, block_size: usize, blocks: usize, revokes: usize) -> usize {
    revokes.div_ceil(revokes_per_block(fmt, block_size).max(1))
        + blocks.div_ceil(tags_per_descriptor(fmt, block_size))
        + blocks
        + 1
}

fn tail_size(fmt: TagFormat) -> usize {
    if fmt.has_tail() { BlockTail::SIZE } else { 0 }
}

/// A committed transaction still in the log.
#[derive(Debug, Clone, Copy)]
struct Logged {
    tid: u32,
    start: u32,
    len: u32,
}

/// The writer's view of the log, behind one lock (commits and checkpoints
/// are serialised by the transaction manager anyway).
struct State {
    /// The journal superblock as it is (or is about to be) on disk.
    jsb: JournalSuperblock,
    /// `jsb` must be written with the next transaction.
    jsb_dirty: bool,
    /// Next log block to write.
    head: u32,
    /// Log blocks not holding a live transaction.
    free: u32,
    next_tid: u32,
    /// Committed transactions not yet checkpointed, oldest first.
    live: VecDeque<Logged>,
    /// `needs_recovery` was set on disk by this writer and not cleared since.
    marked: bool,
    /// The journal recorded an error at open: the superblock (on disk and
    /// in every committed copy) gets `STATE_ERROR`.
    error_moved: bool,
    /// Why the journal was aborted.
    aborted: Option<String>,
}

/// Writes transactions into an internal jbd2 journal (see the module docs).
pub struct Jbd2Writer {
    dev: Arc<dyn BlockDevice>,
    fs: FsInfo,
    map: LogMap,
    /// The file-system block holding the ext4 superblock, and its offset there.
    sb_block: u64,
    sb_offset: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for Jbd2Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Jbd2Writer")
            .field("head", &st.head)
            .field("free", &st.free)
            .field("next_tid", &st.next_tid)
            .field("live", &st.live.len())
            .finish()
    }
}

impl Jbd2Writer {
    /// A writer for a journal of `journal_blocks` blocks whose blocks are
    /// `extents` (journal block → device block, in logical order) on `dev`,
    /// which holds the file system described by `fs` (its superblock at
    /// byte 1024).
    pub fn new(dev: Arc<dyn BlockDevice>, fs: FsInfo, extents: Vec<FileExtent>, journal_blocks: u64) -> Result<Self> {
        let bs = fs.block_size as usize;
        let map = LogMap::new(extents, journal_blocks, fs.block_size, fs.blocks_count)?;
        let mut raw = vec![0u8; bs];
        dev.read_at(&mut raw, map.offset(0)?)?;
        let mut jsb = JournalSuperblock::parse(&raw, fs.block_size, journal_blocks)?;
        map.check_covers(jsb.maxlen as u64)?;
        if jsb.blocktype != BLOCKTYPE_SUPERBLOCK_V2 {
            return Err(Error::Unsupported("writing to a journal with a version 1 superblock".into()));
        }
        let error_moved = jsb.errno != 0;
        if error_moved {
            log::warn!("the journal recorded error {}: the file system will be marked as having errors", jsb.errno);
            jsb.errno = 0;
        }
        if jsb.start != 0 {
            return Err(Error::Unsupported(
                "the journal holds transactions but the file system is not marked as needing recovery (run e2fsck)"
                    .into(),
            ));
        }
        if jsb.maxlen < MIN_JOURNAL_BLOCKS {
            return Err(Error::Unsupported(format!(
                "journal of {} blocks is shorter than jbd2's minimum of {MIN_JOURNAL_BLOCKS}",
                jsb.maxlen
            )));
        }
        let fc_first = jsb.log_end() as u64 + 1;
        if jsb.has_fast_commit() && fc_first < jsb.maxlen as u64 {
            dev.read_at(&mut raw, map.offset(fc_first)?)?;
            if let Some(tid) = fast_commit_head_tid(&raw)
                && tid_geq(tid, jsb.sequence)
            {
                return Err(Error::Unsupported(format!(
                    "the journal holds fast commits of transaction {tid} pending replay (run e2fsck)"
                )));
            }
        }
        // Feature and errno changes stay in memory until the first
        // transaction, which writes the superblock anyway (to point the empty
        // journal at itself): a writable open alone changes nothing.
        if fs.metadata_csum && !jsb.has_csum_v2or3() {
            jsb.feature_compat &= !COMPAT_CHECKSUM;
            jsb.feature_incompat |= INCOMPAT_CSUM_V3;
            jsb.checksum_type = CHECKSUM_TYPE_CRC32C;
        }
        if fs.is_64bit {
            jsb.feature_incompat |= INCOMPAT_64BIT;
        }
        jsb.feature_incompat |= INCOMPAT_REVOKE;
        let log_len = jsb.log_end() - jsb.first;
        if (log_len as usize) < 4 * LOG_RESERVE {
            return Err(Error::Unsupported(format!("journal log of {log_len} blocks is too short")));
        }
        let state = State {
            jsb_dirty: false,
            head: jsb.first,
            free: log_len,
            next_tid: jsb.sequence,
            live: VecDeque::new(),
            marked: false,
            error_moved,
            aborted: None,
            jsb,
        };
        Ok(Jbd2Writer {
            dev,
            fs,
            map,
            sb_block: SUPERBLOCK_OFFSET / fs.block_size as u64,
            sb_offset: (SUPERBLOCK_OFFSET % fs.block_size as u64) as usize,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bs(&self) -> usize {
        self.fs.block_size as usize
    }

    /// The journal's tag format (after the features turned on at open).
    pub fn tag_format(&self) -> TagFormat {
        self.lock().jsb.tag_format()
    }

    /// Log blocks a transaction of `blocks` blocks and `revokes` revoke
    /// records takes in this journal.
    pub fn log_blocks_needed(&self, blocks: usize, revokes: usize) -> usize {
        transaction_log_blocks(self.tag_format(), self.bs(), blocks, revokes)
    }

    /// Log blocks currently free.
    pub fn free_blocks(&self) -> usize {
        self.lock().free as usize
    }

    /// The journal block the next transaction starts at.
    pub fn head(&self) -> u32 {
        self.lock().head
    }

    /// The journal superblock as this writer last wrote it (or will write it).
    pub fn journal_superblock(&self) -> JournalSuperblock {
        self.lock().jsb
    }

    /// The journal block `n` blocks after `pos`, wrapping in the log.
    fn advance(jsb: &JournalSuperblock, pos: u32, n: usize) -> u32 {
        let (first, len) = (jsb.first as u64, (jsb.log_end() - jsb.first) as u64);
        (first + (pos as u64 - first + n as u64) % len) as u32
    }

    fn aborted_error(reason: &str) -> Error {
        Error::Io {
            offset: 0,
            source: std::io::Error::other(format!("journal aborted after an earlier failure: {reason}")),
        }
    }

    /// Writes `blocks` into consecutive log blocks from `pos` (wrapping),
    /// one device write per physically contiguous run.
    fn write_log(&self, jsb: &JournalSuperblock, pos: u32, blocks: &[Vec<u8>]) -> Result<()> {
        let mut run: Vec<u8> = Vec::new();
        let mut run_offset = 0u64;
        let mut pos = pos;
        for b in blocks {
            let offset = self.map.offset(pos as u64)?;
            if !run.is_empty() && run_offset + run.len() as u64 != offset {
                self.dev.write_at(&run, run_offset)?;
                run.clear();
            }
            if run.is_empty() {
                run_offset = offset;
            }
            run.extend_from_slice(b);
            pos = Self::advance(jsb, pos, 1);
        }
        if !run.is_empty() {
            self.dev.write_at(&run, run_offset)?;
        }
        Ok(())
    }

    /// Writes the journal superblock (with its checksum).
    fn write_jsb(&self, st: &mut State) -> Result<()> {
        let mut raw = vec![0u8; JournalSuperblock::SIZE];
        let offset = self.map.offset(0)?;
        st.jsb.encode_with_checksum(&mut raw);
        self.dev.write_at(&raw, offset)?;
        st.jsb_dirty = false;
        Ok(())
    }

    /// Sets or clears `needs_recovery` in the superblock on disk, durably;
    /// setting it also records a moved journal error.
    fn set_needs_recovery(&self, on: bool, error: bool) -> Result<()> {
        let mut raw = vec![0u8; Superblock::SIZE];
        self.dev.read_at(&mut raw, SUPERBLOCK_OFFSET)?;
        let mut sb = Superblock::decode(&raw);
        if sb.magic != EXT4_MAGIC {
            return Err(Error::corrupt("superblock", Location::Superblock, "bad magic while marking the journal"));
        }
        if on {
            sb.feature_incompat |= Incompat::RECOVER;
            if error {
                sb.state |= STATE_ERROR;
            }
        } else {
            sb.feature_incompat &= !Incompat::RECOVER;
        }
        sb.encode_with_checksum(&mut raw);
        self.dev.write_at(&raw, SUPERBLOCK_OFFSET)?;
        self.dev.flush()
    }

    /// Checks what a transaction logs before anything is written.
    fn check_transaction(&self, fmt: TagFormat, blocks: &[(u64, Arc<[u8]>)], revoked: &[u64]) -> Result<()> {
        let homes = blocks.iter().map(|b| b.0).chain(revoked.iter().copied());
        for blk in homes {
            if blk >= self.fs.blocks_count || (!fmt.is_64bit && blk > u32::MAX as u64) {
                return Err(Error::InvalidArgument(format!("block {blk} cannot be journaled")));
            }
        }
        if let Some((blk, _)) = blocks.iter().find(|b| b.1.len() != self.bs()) {
            return Err(Error::InvalidArgument(format!("logged copy of block {blk} is not one block long")));
        }
        Ok(())
    }

    /// The log blocks of transaction `tid` before its commit block, in
    /// order, and the v1 checksum of its descriptors and copies.
    fn build(
        &self,
        jsb: &JournalSuperblock,
        tid: u32,
        blocks: &[(u64, Arc<[u8]>)],
        revoked: &[u64],
    ) -> Result<(Vec<Vec<u8>>, u32)> {
        let fmt = jsb.tag_format();
        let seed = jsb.csum_seed();
        let bs = self.bs();
        let mut out = Vec::with_capacity(transaction_log_blocks(fmt, bs, blocks.len(), revoked.len()));
        for chunk in revoked.chunks(revokes_per_block(fmt, bs).max(1)) {
            let mut b = vec![0u8; bs];
            fmt.encode_revoke(&mut b, tid, chunk)?;
            if let Some(seed) = seed {
                set_block_tail(seed, &mut b);
            }
            out.push(b);
        }
        let mut crc = !0u32;
        for chunk in blocks.chunks(tags_per_descriptor(fmt, bs)) {
            let mut tags = Vec::with_capacity(chunk.len());
            let mut copies = Vec::with_capacity(chunk.len());
            for (i, (home, data)) in chunk.iter().enumerate() {
                let mut copy = data.to_vec();
                let mut flags = if i == 0 { 0 } else { FLAG_SAME_UUID };
                let mut h = Header::decode(&copy);
                if h.magic == MAGIC {
                    h.magic = 0;
                    h.encode(&mut copy);
                    flags |= FLAG_ESCAPE;
                }
                let checksum = seed.map_or(0, |s| fmt.tag_checksum(data_block_checksum(s, tid, &copy)));
                tags.push(BlockTag { blocknr: *home, flags, checksum });
                copies.push(copy);
            }
            if let Some(last) = tags.last_mut() {
                last.flags |= FLAG_LAST_TAG;
            }
            let mut desc = vec![0u8; bs];
            fmt.encode_descriptor(&mut desc, tid, &tags, &jsb.uuid)?;
            if let Some(seed) = seed {
                set_block_tail(seed, &mut desc);
            }
            crc = crc32_be(crc, &desc);
            out.push(desc);
            for c in copies {
                crc = crc32_be(crc, &c);
                out.push(c);
            }
        }
        Ok((out, crc))
    }

    /// The commit block of transaction `tid`.
    fn commit_block(&self, jsb: &JournalSuperblock, tid: u32, crc: u32) -> Vec<u8> {
        // jbd2 stores the commit time unsigned; a pre-1970 clock records 0.
        let now = crate::disk::inode::Timestamp::now();
        let (commit_sec, commit_nsec) = if now.secs < 0 { (0, 0) } else { (now.secs as u64, now.nsecs) };
        let mut h = CommitHeader {
            magic: MAGIC,
            blocktype: BLOCKTYPE_COMMIT,
            sequence: tid,
            commit_sec,
            commit_nsec,
            ..Default::default()
        };
        if jsb.has_v1_checksum() {
            h.chksum_type = CHECKSUM_TYPE_CRC32;
            h.chksum_size = CRC32_CHECKSUM_SIZE;
            h.chksum[0] = crc;
        }
        let mut b = vec![0u8; self.bs()];
        h.encode(&mut b);
        if let Some(seed) = jsb.csum_seed() {
            set_commit_checksum(seed, &mut b);
        }
        b
    }

    /// Writes transaction `tid` (checked to fit) from the head of the log.
    fn write_locked(&self, st: &mut State, tid: u32, blocks: &[(u64, Arc<[u8]>)], revoked: &[u64]) -> Result<()> {
        if !st.marked {
            self.set_needs_recovery(true, st.error_moved)?;
            st.marked = true;
        }
        let start = st.head;
        if st.jsb.start == 0 {
            // An empty journal: recovery must start at this transaction.
            st.jsb.start = start;
            st.jsb.sequence = tid;
            st.jsb_dirty = true;
        }
        let (body, crc) = self.build(&st.jsb, tid, blocks, revoked)?;
        self.write_log(&st.jsb, start, &body)?;
        if st.jsb_dirty {
            self.write_jsb(st)?;
        }
        self.dev.flush()?;
        let commit = self.commit_block(&st.jsb, tid, crc);
        self.write_log(&st.jsb, Self::advance(&st.jsb, start, body.len()), &[commit])?;
        self.dev.flush()?;
        let len = body.len() + 1;
        st.head = Self::advance(&st.jsb, start, len);
        st.free -= len as u32;
        st.live.push_back(Logged { tid, start, len: len as u32 });
        st.next_tid = tid.wrapping_add(1);
        Ok(())
    }
}

impl LogWriter for Jbd2Writer {
    fn write_transaction(&self, tid: u32, blocks: &[(u64, Arc<[u8]>)], revoked: &[u64]) -> Result<()> {
        let mut st = self.lock();
        if let Some(reason) = &st.aborted {
            return Err(Self::aborted_error(reason));
        }
        if tid != st.next_tid {
            return Err(Error::InvalidArgument(format!("transaction {tid} out of sequence, {} expected", st.next_tid)));
        }
        let fmt = st.jsb.tag_format();
        self.check_transaction(fmt, blocks, revoked)?;
        let need = transaction_log_blocks(fmt, self.bs(), blocks.len(), revoked.len());
        if need + LOG_RESERVE > st.free as usize {
            return Err(Error::InvalidArgument(format!(
                "transaction of {need} log blocks does not fit the journal's {} free blocks",
                st.free
            )));
        }
        let result = self.write_locked(&mut st, tid, blocks, revoked);
        if let Err(e) = &result {
            st.aborted = Some(e.to_string());
        }
        result
    }

    fn checkpointed(&self, tid: u32) -> Result<()> {
        let mut st = self.lock();
        if let Some(reason) = &st.aborted {
            return Err(Self::aborted_error(reason));
        }
        let mut released = false;
        while let Some(t) = st.live.front().copied()
            && tid_geq(tid, t.tid)
        {
            st.live.pop_front();
            st.free += t.len;
            released = true;
        }
        if !released {
            return Ok(());
        }
        match st.live.front().copied() {
            Some(t) => {
                st.jsb.start = t.start;
                st.jsb.sequence = t.tid;
            }
            None => {
                st.jsb.start = 0;
                st.jsb.sequence = st.next_tid;
            }
        }
        // Durable before the released space is written again.
        let result = self.write_jsb(&mut st).and_then(|()| self.dev.flush());
        if let Err(e) = &result {
            st.aborted = Some(e.to_string());
        }
        result
    }

    fn fits(&self, blocks: usize, revokes: usize) -> bool {
        let st = self.lock();
        let need = transaction_log_blocks(st.jsb.tag_format(), self.bs(), blocks, revokes);
        st.aborted.is_some() || need + LOG_RESERVE <= st.free as usize
    }

    /// A quarter of the log, as jbd2's `j_max_transaction_buffers`: a
    /// transaction always fits next to those waiting for their checkpoint.
    fn max_transaction_blocks(&self) -> usize {
        let st = self.lock();
        (st.jsb.log_end() - st.jsb.first) as usize / 4
    }

    fn next_tid(&self) -> u32 {
        self.lock().next_tid
    }

    fn fix_block(&self, blk: u64, data: &[u8]) -> Option<Vec<u8>> {
        if blk != self.sb_block || data.len() < self.sb_offset + Superblock::SIZE {
            return None;
        }
        let raw = &data[self.sb_offset..self.sb_offset + Superblock::SIZE];
        let mut sb = Superblock::decode(raw);
        let error = self.lock().error_moved;
        let already = sb.incompat().has(Incompat::RECOVER) && (!error || sb.state & STATE_ERROR != 0);
        if sb.magic != EXT4_MAGIC || already {
            return None;
        }
        sb.feature_incompat |= Incompat::RECOVER;
        if error {
            sb.state |= STATE_ERROR;
        }
        let mut copy = data.to_vec();
        sb.encode_with_checksum(&mut copy[self.sb_offset..self.sb_offset + Superblock::SIZE]);
        Some(copy)
    }

    fn close(&self) -> Result<()> {
        let mut st = self.lock();
        if let Some(reason) = &st.aborted {
            return Err(Self::aborted_error(reason));
        }
        if !st.live.is_empty() {
            return Err(Error::InvalidArgument(format!("{} journal transactions are not checkpointed", st.live.len())));
        }
        if st.marked {
            let result = self.set_needs_recovery(false, false);
            if let Err(e) = &result {
                st.aborted = Some(e.to_string());
                return result;
            }
            st.marked = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::features::RoCompat;
    use crate::disk::jbd2::{
        BLOCKTYPE_DESCRIPTOR, BLOCKTYPE_REVOKE, BLOCKTYPE_SUPERBLOCK_V1, INCOMPAT_CSUM_V2, INCOMPAT_FAST_COMMIT,
        TagChecksum, verify_block_tail, verify_commit_checksum,
    };
    use crate::disk::superblock::CHECKSUM_TYPE_CRC32C as EXT4_CRC32C;
    use crate::io::MemDevice;
    use crate::journal::recovery::replay_journal;
    use crate::journal::transaction::{TxManager, TxStats};

    const BS: usize = 1024;
    const JLEN: u32 = 1024;
    /// The journal lies in two physical runs with a gap between them.
    const RUNS: [(u64, u64, u64); 2] = [(0, 300, 300), (300, 700, 724)];
    const FS_BLOCKS: u64 = 700 + 724;
    /// Device block of the journal superblock.
    const JSB: u64 = RUNS[0].1;

    fn info(metadata_csum: bool, is_64bit: bool) -> FsInfo {
        FsInfo { block_size: BS as u32, blocks_count: FS_BLOCKS, metadata_csum, is_64bit }
    }

    fn extents() -> Vec<FileExtent> {
        RUNS.iter().map(|&(lblk, pblk, len)| FileExtent { lblk, pblk, len, unwritten: false }).collect()
    }

    fn jmap(jblk: u64) -> Result<u64> {
        let (l, p, _) = RUNS.iter().rev().find(|r| r.0 <= jblk).copied().unwrap();
        Ok((p + jblk - l) * BS as u64)
    }

    fn home(n: u64, salt: u8) -> Vec<u8> {
        (0..BS).map(|i| (n as usize * 31 + i * 7) as u8 ^ salt).collect()
    }

    /// An image: a (fake) ext4 superblock, home blocks 2..300 with a
    /// pattern, and an empty journal with `compat`/`incompat` features.
    fn image(compat: u32, incompat: u32, sequence: u32, metadata_csum: bool) -> Arc<MemDevice> {
        let mut img = vec![0u8; FS_BLOCKS as usize * BS];
        for b in 2..JSB as usize {
            img[b * BS..(b + 1) * BS].copy_from_slice(&home(b as u64, 0));
        }
        let mut sb = Superblock { magic: EXT4_MAGIC, ..Default::default() };
        if metadata_csum {
            sb.feature_ro_compat |= RoCompat::METADATA_CSUM;
            sb.checksum_type = EXT4_CRC32C;
        }
        sb.encode_with_checksum(&mut img[1024..2048]);
        let csum = incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0;
        let mut jsb = JournalSuperblock {
            magic: MAGIC,
            blocktype: BLOCKTYPE_SUPERBLOCK_V2,
            blocksize: BS as u32,
            maxlen: JLEN,
            first: 1,
            sequence,
            feature_compat: compat,
            feature_incompat: incompat,
            uuid: *b"writer-test-uuid",
            nr_users: 1,
            checksum_type: if csum { CHECKSUM_TYPE_CRC32C } else { 0 },
            ..Default::default()
        };
        jsb.encode_with_checksum(&mut img[JSB as usize * BS..(JSB as usize + 1) * BS]);
        Arc::new(MemDevice::new(img))
    }

    fn writer(dev: &Arc<MemDevice>, info: FsInfo) -> Result<Jbd2Writer> {
        Jbd2Writer::new(dev.clone(), info, extents(), JLEN as u64)
    }

    fn blocks(list: &[(u64, Vec<u8>)]) -> Vec<(u64, Arc<[u8]>)> {
        list.iter().map(|(b, d)| (*b, Arc::from(d.as_slice()))).collect()
    }

    fn jblock(dev: &MemDevice, jblk: u64) -> Vec<u8> {
        let mut b = vec![0u8; BS];
        dev.read_at(&mut b, jmap(jblk).unwrap()).unwrap();
        b
    }

    fn block(img: &[u8], n: u64) -> &[u8] {
        &img[n as usize * BS..(n as usize + 1) * BS]
    }

    /// Replays a copy of `dev` with our recovery; returns the image and report.
    fn replay(dev: &MemDevice) -> (Vec<u8>, crate::journal::RecoveryReport) {
        let copy = MemDevice::new(dev.contents());
        let report = replay_journal(&copy, &jmap, BS as u32, JLEN as u64, FS_BLOCKS).unwrap();
        (copy.contents(), report)
    }

    fn formats() -> Vec<TagFormat> {
        let mut v = Vec::new();
        for csum in [TagChecksum::None, TagChecksum::V2, TagChecksum::V3] {
            for is_64bit in [false, true] {
                v.push(TagFormat { csum, is_64bit });
            }
        }
        v
    }

    /// jbd2's descriptor loop, step by step.
    fn jbd2_tags(fmt: TagFormat, bs: usize) -> usize {
        let t = fmt.tag_size();
        let csum = if fmt.has_tail() { 4 } else { 0 };
        let mut space = bs - 12;
        let mut n = 0;
        loop {
            space -= t;
            if n == 0 {
                space -= 16;
            }
            n += 1;
            if space < t + 16 + csum {
                return n;
            }
        }
    }

    #[test]
    fn descriptor_packing_per_format() {
        let expect_1k = |fmt: TagFormat| match (fmt.csum, fmt.is_64bit) {
            (TagChecksum::None, false) => 122,
            (TagChecksum::None, true) => 81,
            (TagChecksum::V2, false) => 97,
            (TagChecksum::V2, true) => 69,
            (TagChecksum::V3, _) => 61,
        };
        for fmt in formats() {
            assert_eq!(tags_per_descriptor(fmt, 1024), expect_1k(fmt), "{fmt:?}");
            for bs in [1024, 2048, 4096, 65536] {
                let n = tags_per_descriptor(fmt, bs);
                assert_eq!(n, jbd2_tags(fmt, bs), "{fmt:?} {bs}");
                // They fit, and what the recovery walk reads back is them.
                let tags: Vec<BlockTag> = (0..n)
                    .map(|i| BlockTag {
                        blocknr: i as u64 + 5,
                        flags: if i == 0 { 0 } else { FLAG_SAME_UUID } | if i + 1 == n { FLAG_LAST_TAG } else { 0 },
                        checksum: 0,
                    })
                    .collect();
                let mut b = vec![0u8; bs];
                fmt.encode_descriptor(&mut b, 1, &tags, &[7; 16]).unwrap();
                assert_eq!(fmt.parse_descriptor(&b), tags);
            }
        }
        let v3 = TagFormat { csum: TagChecksum::V3, is_64bit: true };
        assert_eq!(tags_per_descriptor(v3, 4096), 253);
        assert_eq!(revokes_per_block(v3, 1024), 125);
        assert_eq!(revokes_per_block(TagFormat { csum: TagChecksum::V3, is_64bit: false }, 1024), 251);
        assert_eq!(revokes_per_block(TagFormat { csum: TagChecksum::None, is_64bit: false }, 1024), 252);
        // 1 revoke block, 2 descriptors for 62 blocks, the copies, the commit.
        assert_eq!(transaction_log_blocks(v3, 1024, 62, 3), 1 + 2 + 62 + 1);
        assert_eq!(transaction_log_blocks(v3, 1024, 0, 126), 2 + 1);
    }

    /// Writes transactions in every journal format and checks the log
    /// block by block, then that recovery replays it.
    #[test]
    fn transactions_in_every_format_replay() {
        let cases: [(u32, u32, bool, bool); 6] = [
            (0, 0, false, false),
            (0, 0, false, true),
            (COMPAT_CHECKSUM, 0, false, false),
            (0, INCOMPAT_CSUM_V2, false, false),
            (0, INCOMPAT_CSUM_V2, true, true), // v2 kept even with metadata_csum
            (COMPAT_CHECKSUM, 0, true, true),  // v1 replaced by v3 with metadata_csum
        ];
        for (compat, incompat, csum, is_64bit) in cases {
            let what = format!("compat {compat:#x} incompat {incompat:#x} csum {csum} 64bit {is_64bit}");
            let dev = image(compat, incompat, 10, csum);
            let w = writer(&dev, info(csum, is_64bit)).unwrap();
            let fmt = w.tag_format();
            assert_eq!(fmt.is_64bit, is_64bit, "{what}");
            let want_csum = if incompat & INCOMPAT_CSUM_V2 != 0 {
                TagChecksum::V2
            } else if csum {
                TagChecksum::V3
            } else {
                TagChecksum::None
            };
            assert_eq!(fmt.csum, want_csum, "{what}");
            let per = tags_per_descriptor(fmt, BS);
            // Transaction 10: enough blocks for two descriptors; block 3
            // begins with the jbd2 magic and must be escaped.
            let mut t10: Vec<(u64, Vec<u8>)> = (2..2 + per as u64 + 3).map(|b| (b, home(b, 0x55))).collect();
            t10[1].1[..4].copy_from_slice(&MAGIC.to_be_bytes());
            w.write_transaction(10, &blocks(&t10), &[]).unwrap();
            // Transaction 11: rewrites block 2, revokes block 5.
            let t11 = vec![(2u64, home(2, 0xAA))];
            w.write_transaction(11, &blocks(&t11), &[5]).unwrap();
            assert_eq!(w.next_tid(), 12);

            // The log as jbd2 lays it out.
            let d = jblock(&dev, 1);
            assert_eq!(Header::decode(&d), Header::new(BLOCKTYPE_DESCRIPTOR, 10), "{what}");
            let tags = fmt.parse_descriptor(&d);
            assert_eq!(tags.len(), per, "{what}");
            assert_eq!(tags[0].flags & FLAG_SAME_UUID, 0);
            assert_eq!(&d[12 + fmt.tag_size()..12 + fmt.tag_size() + 16], b"writer-test-uuid");
            assert!(tags[1..].iter().all(|t| t.flags & FLAG_SAME_UUID != 0));
            assert_eq!(tags[1].flags & FLAG_ESCAPE, FLAG_ESCAPE, "{what}");
            assert!(tags.iter().enumerate().all(|(i, t)| (t.flags & FLAG_LAST_TAG != 0) == (i + 1 == per)));
            assert_eq!(jblock(&dev, 3)[..4], [0; 4], "escaped copy");
            let jsb = w.journal_superblock();
            if let Some(seed) = jsb.csum_seed() {
                assert!(verify_block_tail(seed, &d));
                let c = data_block_checksum(seed, 10, &jblock(&dev, 2));
                assert!(fmt.tag_checksum_matches(&tags[0], c));
            }
            let d2 = 2 + per as u64;
            assert_eq!(fmt.parse_descriptor(&jblock(&dev, d2)).len(), 3);
            let commit = jblock(&dev, d2 + 4);
            assert_eq!(Header::decode(&commit), Header::new(BLOCKTYPE_COMMIT, 10), "{what}");
            if let Some(seed) = jsb.csum_seed() {
                assert!(verify_commit_checksum(seed, &commit));
            }
            let rv = jblock(&dev, d2 + 5);
            assert_eq!(Header::decode(&rv), Header::new(BLOCKTYPE_REVOKE, 11), "revoke blocks come first");
            assert_eq!(fmt.parse_revoke(&rv, Location::JournalBlock(0)).unwrap(), vec![5]);
            assert_eq!(w.head() as u64, d2 + 5 + 4);
            assert_eq!(w.free_blocks(), JLEN as usize - 1 - (d2 as usize + 4 + 4));

            // Recovery: everything but the revoked block, escape undone.
            let (img, report) = replay(&dev);
            assert_eq!(report.transactions, 2, "{what}");
            assert!(report.failed_commit.is_none() && report.bad_checksum_blocks.is_empty(), "{what}: {report:?}");
            assert_eq!(report.blocks_revoked, 1);
            for (b, data) in &t10 {
                let want = match b {
                    2 => &t11[0].1,
                    5 => &home(5, 0),
                    _ => data,
                };
                assert_eq!(block(&img, *b), want.as_slice(), "{what}: block {b}");
            }
            let mut sb = Superblock::decode(&img[1024..]);
            assert!(sb.incompat().has(Incompat::RECOVER), "needs_recovery set");
            if csum {
                assert_eq!(sb.checksum, Superblock::compute_checksum(&img[1024..2048]));
            }
            sb.feature_incompat &= !Incompat::RECOVER;
            let jsb_after = JournalSuperblock::parse(block(&img, JSB), BS as u32, JLEN as u64).unwrap();
            assert_eq!((jsb_after.start, jsb_after.sequence), (0, 13));
        }
    }

    #[test]
    fn wrap_around_and_checkpoints() {
        let dev = image(0, 0, 1, true);
        let w = writer(&dev, info(true, true)).unwrap();
        let mut tid = 1u32;
        let mut last_home = vec![home(2, 0); 64];
        let mut wrapped = false;
        // Transactions of 40 blocks (43 log blocks), each checkpointed once
        // the next is written, until the log wrapped twice.
        let mut laps = 0;
        while laps < 2 {
            let before = w.head();
            let txn: Vec<(u64, Vec<u8>)> = (2..42).map(|b| (b, home(b, tid as u8))).collect();
            assert!(w.fits(txn.len(), 0));
            w.write_transaction(tid, &blocks(&txn), &[]).unwrap();
            if w.head() < before {
                laps += 1;
                wrapped = true;
            }
            for (b, d) in &txn {
                last_home[*b as usize] = d.clone();
            }
            if tid > 1 {
                w.checkpointed(tid - 1).unwrap();
            }
            tid += 1;
        }
        assert!(wrapped);
        // The last transaction crossed the end of the log or not: either
        // way the journal superblock starts at it and recovery finds it.
        let jsb = w.journal_superblock();
        assert_eq!(jsb.sequence, tid - 1);
        let (img, report) = replay(&dev);
        assert_eq!(report.transactions, 1);
        assert_eq!(report.blocks_replayed, 40);
        for b in 2..42u64 {
            assert_eq!(block(&img, b), last_home[b as usize].as_slice());
        }

        // Make one transaction straddle the end: advance the head to just
        // before it, with everything checkpointed in between.
        w.checkpointed(tid - 1).unwrap();
        assert_eq!(w.free_blocks(), JLEN as usize - 1);
        assert_eq!(w.journal_superblock().start, 0, "empty journal");
        // The log ends at JLEN: stop with 20..43 blocks left before it.
        while w.head() + 43 < JLEN || w.head() + 20 >= JLEN {
            let txn = vec![(2u64, home(2, tid as u8))];
            w.write_transaction(tid, &blocks(&txn), &[]).unwrap();
            w.checkpointed(tid).unwrap();
            tid += 1;
        }
        let start = w.head();
        let txn: Vec<(u64, Vec<u8>)> = (2..42).map(|b| (b, home(b, 0xEE))).collect();
        w.write_transaction(tid, &blocks(&txn), &[250]).unwrap();
        assert!(w.head() < start, "the transaction wraps");
        assert_eq!(w.journal_superblock().start, start);
        let (img, report) = replay(&dev);
        assert_eq!((report.transactions, report.blocks_replayed), (1, 40));
        for (b, d) in &txn {
            assert_eq!(block(&img, *b), d.as_slice(), "block {b}");
        }
    }

    #[test]
    fn sequence_continues_across_writers_and_empty_journals() {
        let dev = image(0, 0, 0xFFFF_FFFE, false);
        let w = writer(&dev, info(false, false)).unwrap();
        assert_eq!(w.next_tid(), 0xFFFF_FFFE);
        let t = blocks(&[(7, home(7, 1))]);
        assert!(matches!(w.write_transaction(5, &t, &[]), Err(Error::InvalidArgument(_))));
        w.write_transaction(0xFFFF_FFFE, &t, &[]).unwrap();
        w.write_transaction(0xFFFF_FFFF, &t, &[]).unwrap();
        w.write_transaction(0, &t, &[]).unwrap();
        let jsb = JournalSuperblock::decode(&jblock(&dev, 0));
        assert_eq!((jsb.start, jsb.sequence), (1, 0xFFFF_FFFE));
        w.checkpointed(0xFFFF_FFFF).unwrap();
        let jsb = JournalSuperblock::decode(&jblock(&dev, 0));
        assert_eq!((jsb.start, jsb.sequence), (7, 0), "tail at the oldest live transaction");
        w.checkpointed(0).unwrap();
        let jsb = JournalSuperblock::decode(&jblock(&dev, 0));
        assert_eq!((jsb.start, jsb.sequence), (0, 1), "empty: the next transaction id");
        w.close().unwrap();
        assert!(!Superblock::decode(&dev.contents()[1024..]).incompat().has(Incompat::RECOVER));
        let (_, report) = replay(&dev);
        assert_eq!(report.transactions, 0);

        // A new writer continues the sequence; its first transaction points
        // the journal at itself again.
        let w = writer(&dev, info(false, false)).unwrap();
        assert_eq!(w.next_tid(), 1);
        w.write_transaction(1, &blocks(&[(8, home(8, 2))]), &[]).unwrap();
        assert_eq!(w.journal_superblock().start, 1);
        let (img, report) = replay(&dev);
        assert_eq!((report.transactions, report.blocks_replayed), (1, 1));
        assert_eq!(block(&img, 8), home(8, 2).as_slice());
    }

    #[test]
    fn fits_keeps_headroom() {
        let dev = image(0, INCOMPAT_CSUM_V3, 1, true);
        let w = writer(&dev, info(true, false)).unwrap();
        let log = JLEN as usize - 1;
        assert_eq!(w.max_transaction_blocks(), log / 4);
        let n = w.max_transaction_blocks();
        let need = w.log_blocks_needed(n, 0);
        assert_eq!(need, n + n.div_ceil(61) + 1);
        let txn: Vec<(u64, Vec<u8>)> = (0..n as u64).map(|i| (2 + i % 60, home(i, 3))).collect();
        let mut tid = 1;
        while w.fits(n, 0) {
            w.write_transaction(tid, &blocks(&txn), &[]).unwrap();
            tid += 1;
        }
        assert_eq!(tid, 4, "three quarter-log transactions fit with headroom");
        let free = w.free_blocks();
        assert!(free < need + LOG_RESERVE && free >= LOG_RESERVE);
        // Refused without harm: nothing written, the writer still works.
        let err = w.write_transaction(tid, &blocks(&txn), &[]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(w.fits(1, 1));
        w.checkpointed(1).unwrap();
        assert!(w.fits(n, 0));
        w.write_transaction(tid, &blocks(&txn), &[]).unwrap();
        // A transaction larger than the whole log never fits.
        assert!(!w.fits(JLEN as usize, 0));
        // Home blocks beyond the file system are refused before writing.
        assert!(w.write_transaction(tid + 1, &blocks(&[(FS_BLOCKS, home(0, 0))]), &[]).is_err());
        w.write_transaction(tid + 1, &blocks(&[(3, home(3, 9))]), &[]).unwrap();
    }

    #[test]
    fn superblock_copies_keep_needs_recovery() {
        let dev = image(0, 0, 1, true);
        let w = writer(&dev, info(true, true)).unwrap();
        let sb_block = dev.contents()[BS..2 * BS].to_vec();
        let fixed = w.fix_block(1, &sb_block).expect("superblock copy fixed");
        let sb = Superblock::decode(&fixed);
        assert!(sb.incompat().has(Incompat::RECOVER));
        assert_eq!(sb.checksum, Superblock::compute_checksum(&fixed));
        assert!(w.fix_block(1, &fixed).is_none(), "already set");
        assert!(w.fix_block(2, &sb_block).is_none(), "other blocks untouched");

        // Through the transaction manager: a handle rewrites the superblock
        // block (say, a free count) without the flag; what is committed,
        // checkpointed and read back has it, until close clears it.
        let tm = TxManager::new(dev.clone(), BS as u32, Box::new(w));
        let mut changed = Superblock::decode(&sb_block);
        changed.free_blocks_count_lo = 1234;
        let mut raw = sb_block.clone();
        changed.encode_with_checksum(&mut raw);
        let mut h = tm.begin();
        h.write(1, raw);
        h.write(3, home(3, 7));
        h.finish();
        tm.commit().unwrap();
        let on_disk = Superblock::decode(&dev.contents()[BS..]);
        assert!(on_disk.incompat().has(Incompat::RECOVER), "set before the commit");
        assert_eq!(on_disk.free_blocks_count_lo, 0, "not home before checkpoint");
        let newest = Superblock::decode(&tm.dirty_block(1).unwrap());
        assert!(newest.incompat().has(Incompat::RECOVER));
        tm.checkpoint().unwrap();
        let on_disk = Superblock::decode(&dev.contents()[BS..]);
        assert!(on_disk.incompat().has(Incompat::RECOVER));
        assert_eq!(on_disk.free_blocks_count_lo, 1234);
        tm.close().unwrap();
        let img = dev.contents();
        let on_disk = Superblock::decode(&img[BS..]);
        assert!(!on_disk.incompat().has(Incompat::RECOVER));
        assert_eq!(on_disk.free_blocks_count_lo, 1234, "counter kept");
        assert_eq!(on_disk.checksum, Superblock::compute_checksum(&img[BS..2 * BS]));
        assert_eq!(tm.stats(), TxStats { commits: 1, checkpoints: 1, logged_blocks: 2 });
        assert_eq!(JournalSuperblock::decode(block(&img, JSB)).start, 0);
    }

    #[test]
    fn transactions_of_revokes_only_are_released() {
        let dev = image(0, 0, 1, false);
        let tm = TxManager::new(dev.clone(), BS as u32, Box::new(writer(&dev, info(false, false)).unwrap()));
        let mut h = tm.begin();
        h.write(4, home(4, 1));
        h.finish();
        tm.commit().unwrap();
        let mut h = tm.begin();
        h.revoke(4);
        h.finish();
        tm.commit().unwrap();
        // Nothing is left to write home, yet both transactions must leave
        // the log for the image to be clean.
        tm.close().unwrap();
        let img = dev.contents();
        assert_eq!(JournalSuperblock::decode(block(&img, JSB)).start, 0);
        assert!(!Superblock::decode(&img[BS..]).incompat().has(Incompat::RECOVER));
    }

    #[test]
    fn refusals() {
        let refused = |dev: &Arc<MemDevice>| match writer(dev, info(false, false)) {
            Err(Error::Unsupported(m)) => m,
            other => panic!("not refused: {:?}", other.map(|_| ())),
        };
        let with_jsb = |f: &dyn Fn(&mut JournalSuperblock)| {
            let dev = image(0, 0, 1, false);
            let mut raw = jblock(&dev, 0);
            let mut jsb = JournalSuperblock::decode(&raw);
            f(&mut jsb);
            jsb.encode_with_checksum(&mut raw);
            dev.write_at(&raw, jmap(0).unwrap()).unwrap();
            dev
        };
        // A recorded error is moved to the file system by the first write.
        let dev = with_jsb(&|j| j.errno = -5);
        let w = writer(&dev, info(false, false)).unwrap();
        assert_eq!(JournalSuperblock::decode(&jblock(&dev, 0)).errno, -5, "nothing written at open");
        let fixed = w.fix_block(1, &dev.contents()[BS..2 * BS]).unwrap();
        assert_ne!(Superblock::decode(&fixed).state & STATE_ERROR, 0);
        w.write_transaction(1, &blocks(&[(7, home(7, 1))]), &[]).unwrap();
        let sb = Superblock::decode(&dev.contents()[BS..]);
        assert!(sb.incompat().has(Incompat::RECOVER) && sb.state & STATE_ERROR != 0);
        assert_eq!(JournalSuperblock::decode(&jblock(&dev, 0)).errno, 0);
        w.checkpointed(1).unwrap();
        w.close().unwrap();
        let sb = Superblock::decode(&dev.contents()[BS..]);
        assert!(!sb.incompat().has(Incompat::RECOVER) && sb.state & STATE_ERROR != 0, "the error stays");
        assert!(refused(&with_jsb(&|j| j.start = 5)).contains("needing recovery"));
        assert!(refused(&with_jsb(&|j| j.blocktype = BLOCKTYPE_SUPERBLOCK_V1)).contains("version 1"));
        let short = with_jsb(&|j| j.maxlen = 1000);
        assert!(refused(&short).contains("shorter"));
        // A fast-commit area opening with a head for the next transaction.
        let fc = with_jsb(&|j| {
            j.feature_incompat |= INCOMPAT_FAST_COMMIT;
            j.num_fc_blks = 16;
            j.sequence = 9;
        });
        let mut head = vec![0u8; BS];
        crate::disk::jbd2::FcTagLength { tag: crate::disk::jbd2::FC_TAG_HEAD, len: 8 }.encode(&mut head);
        crate::disk::jbd2::FcHead { features: 0, tid: 9 }.encode(&mut head[4..]);
        fc.write_at(&head, jmap(JLEN as u64 - 16 + 1).unwrap()).unwrap();
        assert!(refused(&fc).contains("fast commits"));
        // A stale fast commit (older transaction) is fine, and the log
        // stops before the fast-commit area.
        crate::disk::jbd2::FcHead { features: 0, tid: 8 }.encode(&mut head[4..]);
        fc.write_at(&head, jmap(JLEN as u64 - 16 + 1).unwrap()).unwrap();
        let w = writer(&fc, info(false, false)).unwrap();
        assert_eq!(w.max_transaction_blocks(), (JLEN as usize - 16 - 1) / 4);
        // A hole in the journal file.
        let dev = image(0, 0, 1, false);
        let mut holey = extents();
        holey[1].lblk += 1;
        holey[1].len -= 1;
        assert!(matches!(
            Jbd2Writer::new(dev.clone(), info(false, false), holey, JLEN as u64),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn io_error_aborts_the_journal() {
        struct Failing(MemDevice, std::sync::atomic::AtomicBool);
        impl BlockDevice for Failing {
            fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
                self.0.read_at(buf, offset)
            }
            fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
                self.0.write_at(buf, offset)
            }
            fn flush(&self) -> Result<()> {
                if self.1.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(Error::Io { offset: 0, source: std::io::Error::other("flush failed") });
                }
                Ok(())
            }
            fn len(&self) -> u64 {
                self.0.len()
            }
        }
        let base = image(0, 0, 1, false);
        let dev = Arc::new(Failing(MemDevice::new(base.contents()), false.into()));
        let w = Jbd2Writer::new(dev.clone(), info(false, false), extents(), JLEN as u64).unwrap();
        let t = blocks(&[(7, home(7, 1))]);
        w.write_transaction(1, &t, &[]).unwrap();
        dev.1.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(w.write_transaction(2, &t, &[]).is_err());
        dev.1.store(false, std::sync::atomic::Ordering::Relaxed);
        let err = w.write_transaction(2, &t, &[]).unwrap_err();
        assert!(err.to_string().contains("aborted"), "{err}");
        assert!(w.checkpointed(1).is_err());
    }
}
