//! The jbd2 log walk and replay, independent of where the journal lives:
//! the caller supplies a map from journal block to device byte offset.
//!
//! Recovery follows jbd2 (`fs/jbd2/recovery.c`, mirrored in e2fsprogs'
//! `e2fsck/recovery.c`) in three passes:
//! - SCAN walks from `s_start`/`s_sequence` through descriptor blocks (and
//!   the data blocks they tag), revoke blocks and commit blocks, wrapping
//!   from the end of the log back to `s_first`, and finds the end of the
//!   log: the first block whose magic or sequence is not the expected one,
//!   or a commit block that fails its checksum (v1 transactional crc32_be,
//!   or v2/v3 crc32c). A descriptor or revoke block with a bad tail
//!   checksum is tolerated as stale data only if its transaction's commit
//!   block is older than the previous one (lazy journal init); otherwise
//!   recovery fails, as in jbd2. With `ASYNC_COMMIT` the walk continues
//!   past a bad commit block, but the log still ends before it.
//! - REVOKE collects the revoke records of the committed transactions, each
//!   block keeping the latest transaction that revoked it.
//! - REPLAY writes each logged block home unless a revoke record of the same
//!   or a later transaction covers it, restoring the magic of escaped
//!   blocks, and skipping (and reporting) blocks whose v2/v3 tag checksum
//!   fails, as the kernel does.
//!
//! Deviations, all on corrupt journals: a walk stops after covering the
//! whole log once (no loop on a crafted journal); the first failed commit
//! ends the log for good even with `ASYNC_COMMIT` (jbd2 lets a second bad
//! commit block move the end past the first); home block numbers beyond
//! the file system, checked before anything is written, fail recovery.
//!
//! Fast commits (`INCOMPAT_FAST_COMMIT`) are not replayed. Like jbd2, the
//! walk wraps before the fast-commit area; when that area opens with a
//! fast-commit head for the transaction following the log (which e2fsck and
//! the kernel would replay), recovery refuses rather than drop fsync()ed
//! data. A head of an older transaction is stale and ignored, as there.

use super::RecoveryReport;
use crate::disk::checksum::crc32_be;
use crate::disk::jbd2::{
    BLOCKTYPE_COMMIT, BLOCKTYPE_DESCRIPTOR, BLOCKTYPE_REVOKE, BlockTag, CHECKSUM_TYPE_CRC32, CRC32_CHECKSUM_SIZE,
    CommitHeader, FLAG_ESCAPE, Header, JournalSuperblock, MAGIC, TagFormat, data_block_checksum, fast_commit_head_tid,
    tid_geq, tid_gt, verify_block_tail, verify_commit_checksum,
};
use crate::error::{Error, Location, Result};
use crate::io::BlockDevice;
use std::collections::HashMap;

/// Maps a journal block number to the byte offset of that block on the device.
pub type JournalMap<'a> = dyn Fn(u64) -> Result<u64> + 'a;

/// `EINVAL`, the errno e2fsck records in `s_errno` when a commit block fails
/// its checksum, so that the next mount or check flags the file system.
const EINVAL: i32 = 22;

/// A journal on a device, with its validated superblock.
struct Journal<'a> {
    dev: &'a dyn BlockDevice,
    map: &'a JournalMap<'a>,
    sb: JournalSuperblock,
    sb_block: Vec<u8>,
    block_size: usize,
    format: TagFormat,
    seed: Option<u32>,
}

/// A block logged by a transaction: where its copy is and where it belongs.
struct LoggedBlock {
    jblk: u64,
    tag: BlockTag,
}

/// A transaction as found by the scan.
struct Transaction {
    tid: u32,
    blocks: Vec<LoggedBlock>,
    revoke_blocks: Vec<u64>,
}

impl Transaction {
    fn new(tid: u32) -> Self {
        Transaction { tid, blocks: Vec::new(), revoke_blocks: Vec::new() }
    }
}

/// What the scan found.
struct Scan {
    /// The committed transactions to replay, in log order.
    transactions: Vec<Transaction>,
    /// The first transaction not replayed.
    end: u32,
    /// The transaction whose commit block failed its checksum.
    failed_commit: Option<u32>,
}

/// A position in the circular log, bounded to one trip around it.
struct Cursor {
    pos: u64,
    first: u64,
    last: u64,
    left: u64,
}

impl Cursor {
    /// The current block, advancing past it; `None` once the walk has
    /// covered the whole log.
    fn take(&mut self) -> Option<u64> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let cur = self.pos;
        self.pos += 1;
        if self.pos >= self.last {
            self.pos = self.first;
        }
        Some(cur)
    }
}

/// Replays the journal whose blocks `map` locates on `dev` into the file
/// system on the same device (`fs_blocks` blocks of `block_size` bytes),
/// then marks the journal empty (`s_start` = 0, `s_sequence` past the
/// replayed transactions, as e2fsck leaves it) and flushes.
/// `journal_blocks` is the length of the journal file.
///
/// A journal that is already empty is left untouched.
pub fn replay_journal(
    dev: &dyn BlockDevice,
    map: &JournalMap<'_>,
    block_size: u32,
    journal_blocks: u64,
    fs_blocks: u64,
) -> Result<RecoveryReport> {
    let bs = block_size as usize;
    let mut sb_block = vec![0u8; bs];
    read_journal_block(dev, map, 0, &mut sb_block)?;
    let sb = JournalSuperblock::parse(&sb_block, block_size, journal_blocks)?;
    if sb.start == 0 {
        return Ok(RecoveryReport::default());
    }
    let journal = Journal { dev, map, sb, sb_block, block_size: bs, format: sb.tag_format(), seed: sb.csum_seed() };
    let scan = journal.scan()?;
    journal.check_fast_commit(scan.end)?;
    journal.check_home_blocks(&scan, fs_blocks)?;
    let revoked = journal.revoke_table(&scan)?;
    let mut report = journal.replay(&scan, &revoked)?;
    dev.flush()?;
    journal.mark_empty(&scan)?;
    dev.flush()?;
    report.transactions = scan.transactions.len() as u32;
    report.failed_commit = scan.failed_commit;
    Ok(report)
}

/// Reads journal block `jblk` into `buf`.
fn read_journal_block(dev: &dyn BlockDevice, map: &JournalMap<'_>, jblk: u64, buf: &mut [u8]) -> Result<()> {
    let offset = map(jblk)?;
    dev.read_at(buf, offset).map_err(|e| match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::OutOfBounds { what: "journal block", location: Location::JournalBlock(jblk) }
        }
        other => other,
    })
}

impl Journal<'_> {
    fn read(&self, jblk: u64, buf: &mut [u8]) -> Result<()> {
        if jblk >= self.sb.maxlen as u64 {
            return Err(Error::OutOfBounds { what: "journal block", location: Location::JournalBlock(jblk) });
        }
        read_journal_block(self.dev, self.map, jblk, buf)
    }

    /// Whether a descriptor or revoke block fails its tail checksum.
    fn bad_tail(&self, block: &[u8]) -> bool {
        self.seed.is_some_and(|seed| !verify_block_tail(seed, block))
    }

    /// PASS_SCAN: finds the committed transactions and the end of the log.
    fn scan(&self) -> Result<Scan> {
        let (first, last) = (self.sb.first as u64, self.sb.log_end() as u64);
        let mut cursor = Cursor { pos: self.sb.start as u64, first, last, left: last - first };
        let v1 = self.sb.has_v1_checksum();
        let mut next_id = self.sb.sequence;
        let mut current = Transaction::new(next_id);
        let mut transactions = Vec::new();
        let mut end = None;
        let mut failed_commit = None;
        // A descriptor or revoke block failed its tail checksum: the next
        // commit block tells stale data from corruption.
        let mut bad_block: Option<u64> = None;
        let mut last_commit_time = 0u64;
        let mut crc = !0u32;
        let mut block = vec![0u8; self.block_size];
        let mut data = vec![0u8; self.block_size];
        'walk: while let Some(jblk) = cursor.take() {
            self.read(jblk, &mut block)?;
            let header = Header::decode(&block);
            if header.magic != MAGIC || header.sequence != next_id {
                break;
            }
            match header.blocktype {
                BLOCKTYPE_DESCRIPTOR => {
                    if self.bad_tail(&block) {
                        bad_block.get_or_insert(jblk);
                    }
                    let summing = v1 && bad_block.is_none() && end.is_none();
                    if summing {
                        crc = crc32_be(crc, &block);
                    }
                    for tag in self.format.parse_descriptor(&block) {
                        let Some(data_jblk) = cursor.take() else { break 'walk };
                        if summing {
                            self.read(data_jblk, &mut data)?;
                            crc = crc32_be(crc, &data);
                        }
                        current.blocks.push(LoggedBlock { jblk: data_jblk, tag });
                    }
                }
                BLOCKTYPE_COMMIT => {
                    let commit = CommitHeader::decode(&block);
                    let commit_time = commit.commit_sec;
                    if let Some(bad) = bad_block {
                        if commit_time >= last_commit_time {
                            return Err(Error::Checksum {
                                what: "journal descriptor or revoke block of a committed transaction",
                                location: Location::JournalBlock(bad),
                            });
                        }
                        // Older than its predecessor: stale blocks of an
                        // earlier use of the journal, the log ends here.
                        break;
                    }
                    let mut ok = true;
                    if v1 {
                        if end.is_some() {
                            failed_commit = end;
                            break;
                        }
                        let found = commit.chksum[0];
                        ok = (found == crc
                            && commit.chksum_type == CHECKSUM_TYPE_CRC32
                            && commit.chksum_size == CRC32_CHECKSUM_SIZE)
                            || (commit.chksum_type == 0 && commit.chksum_size == 0 && found == 0);
                        if ok {
                            crc = !0;
                        }
                    }
                    if ok {
                        ok = self.seed.is_none_or(|seed| verify_commit_checksum(seed, &block));
                    }
                    if !ok {
                        if commit_time < last_commit_time {
                            break;
                        }
                        end.get_or_insert(next_id);
                        if !self.sb.has_async_commit() {
                            failed_commit = Some(next_id);
                            break;
                        }
                    }
                    last_commit_time = commit_time;
                    next_id = next_id.wrapping_add(1);
                    transactions.push(std::mem::replace(&mut current, Transaction::new(next_id)));
                }
                BLOCKTYPE_REVOKE => {
                    if self.bad_tail(&block) {
                        bad_block.get_or_insert(jblk);
                    }
                    current.revoke_blocks.push(jblk);
                }
                _ => break,
            }
        }
        let end = end.unwrap_or(next_id);
        transactions.retain(|t| tid_gt(end, t.tid));
        Ok(Scan { transactions, end, failed_commit })
    }

    /// Refuses a journal whose fast-commit area holds commits for the
    /// transaction after the log, which jbd2 would replay.
    fn check_fast_commit(&self, end: u32) -> Result<()> {
        if !self.sb.has_fast_commit() {
            return Ok(());
        }
        let fc_first = self.sb.log_end() as u64 + 1;
        if fc_first >= self.sb.maxlen as u64 {
            return Ok(());
        }
        let mut block = vec![0u8; self.block_size];
        self.read(fc_first, &mut block)?;
        if fast_commit_head_tid(&block) == Some(end) {
            return Err(Error::Unsupported(format!(
                "the journal holds fast commits of transaction {end}; replaying them is not supported (run e2fsck)"
            )));
        }
        Ok(())
    }

    /// Checks, before anything is written, that every logged block belongs
    /// inside the file system.
    fn check_home_blocks(&self, scan: &Scan, fs_blocks: u64) -> Result<()> {
        for b in scan.transactions.iter().flat_map(|t| &t.blocks) {
            if b.tag.blocknr >= fs_blocks {
                return Err(Error::corrupt(
                    "journal descriptor tag",
                    Location::JournalBlock(b.jblk),
                    format!("home block {} beyond the file system's {fs_blocks} blocks", b.tag.blocknr),
                ));
            }
        }
        Ok(())
    }

    /// PASS_REVOKE: each revoked block with the latest transaction revoking it.
    fn revoke_table(&self, scan: &Scan) -> Result<HashMap<u64, u32>> {
        let mut revoked = HashMap::new();
        let mut block = vec![0u8; self.block_size];
        for t in &scan.transactions {
            for &jblk in &t.revoke_blocks {
                self.read(jblk, &mut block)?;
                for blocknr in self.format.parse_revoke(&block, Location::JournalBlock(jblk))? {
                    let tid = revoked.entry(blocknr).or_insert(t.tid);
                    if tid_gt(t.tid, *tid) {
                        *tid = t.tid;
                    }
                }
            }
        }
        Ok(revoked)
    }

    /// PASS_REPLAY: writes the logged blocks home, in log order.
    fn replay(&self, scan: &Scan, revoked: &HashMap<u64, u32>) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let mut data = vec![0u8; self.block_size];
        for t in &scan.transactions {
            for b in &t.blocks {
                if revoked.get(&b.tag.blocknr).is_some_and(|&r| tid_geq(r, t.tid)) {
                    report.blocks_revoked += 1;
                    continue;
                }
                self.read(b.jblk, &mut data)?;
                if let Some(seed) = self.seed {
                    if !self.format.tag_checksum_matches(&b.tag, data_block_checksum(seed, t.tid, &data)) {
                        log::warn!(
                            "journal block {} (home block {}) fails its checksum, not replayed",
                            b.jblk,
                            b.tag.blocknr
                        );
                        report.bad_checksum_blocks.push(b.tag.blocknr);
                        continue;
                    }
                }
                if b.tag.flags & FLAG_ESCAPE != 0 {
                    let mut h = Header::decode(&data);
                    h.magic = MAGIC;
                    h.encode(&mut data);
                }
                self.dev.write_at(&data, b.tag.blocknr * self.block_size as u64)?;
                report.blocks_replayed += 1;
            }
        }
        Ok(report)
    }

    /// Marks the journal empty after a replay, restarting the log past the
    /// last transaction seen, as jbd2 and e2fsck do.
    fn mark_empty(mut self, scan: &Scan) -> Result<()> {
        let mut sb = self.sb;
        sb.start = 0;
        sb.sequence = scan.end.wrapping_add(1);
        if scan.failed_commit.is_some() {
            sb.errno = -EINVAL;
        }
        sb.encode_with_checksum(&mut self.sb_block);
        let offset = (self.map)(0)?;
        self.dev.write_at(&self.sb_block, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::checksum::crc32c;
    use crate::disk::jbd2::*;
    use crate::io::MemDevice;

    const BS: usize = 1024;
    /// File-system blocks in front of the journal on the test device.
    const FS_BLOCKS: u64 = 64;

    /// One item of a synthetic transaction.
    enum Item {
        /// Blocks logged under one descriptor: (home block, contents).
        Data(Vec<(u64, Vec<u8>)>),
        /// Revoked home blocks.
        Revoke(Vec<u64>),
    }

    /// Builds a journal in memory the way jbd2 writes one.
    struct Builder {
        sb: JournalSuperblock,
        dev: MemDevice,
        pos: u64,
        /// Journal blocks written per transaction id, for corrupting them.
        commits: HashMap<u32, u64>,
        descriptors: HashMap<u32, Vec<u64>>,
        data_blocks: HashMap<u32, Vec<u64>>,
    }

    fn fs_block(n: u64) -> Vec<u8> {
        (0..BS).map(|i| (n as usize * 31 + i * 7) as u8).collect()
    }

    impl Builder {
        fn new(compat: u32, incompat: u32, maxlen: u32, start: u32, sequence: u32) -> Self {
            let csum = incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0;
            let sb = JournalSuperblock {
                magic: MAGIC,
                blocktype: BLOCKTYPE_SUPERBLOCK_V2,
                blocksize: BS as u32,
                maxlen,
                first: 1,
                sequence,
                start,
                feature_compat: compat,
                feature_incompat: incompat,
                uuid: *b"journal-uuid-123",
                nr_users: 1,
                checksum_type: if csum { CHECKSUM_TYPE_CRC32C } else { 0 },
                ..Default::default()
            };
            let mut image = Vec::new();
            for b in 0..FS_BLOCKS {
                image.extend(fs_block(b));
            }
            image.resize((FS_BLOCKS + maxlen as u64) as usize * BS, 0);
            let mut b = Builder {
                sb,
                dev: MemDevice::new(image),
                pos: start as u64,
                commits: HashMap::new(),
                descriptors: HashMap::new(),
                data_blocks: HashMap::new(),
            };
            b.write_sb();
            b
        }

        fn write_sb(&mut self) {
            let mut raw = vec![0u8; BS];
            self.sb.encode_with_checksum(&mut raw);
            self.put(0, &raw);
        }

        fn put(&self, jblk: u64, data: &[u8]) {
            self.dev.write_at(data, (FS_BLOCKS + jblk) * BS as u64).unwrap();
        }

        fn get(&self, jblk: u64) -> Vec<u8> {
            let mut b = vec![0u8; BS];
            self.dev.read_at(&mut b, (FS_BLOCKS + jblk) * BS as u64).unwrap();
            b
        }

        fn next(&mut self) -> u64 {
            let cur = self.pos;
            self.pos += 1;
            if self.pos >= self.sb.log_end() as u64 {
                self.pos = self.sb.first as u64;
            }
            cur
        }

        /// Writes transaction `tid` with `items` and, unless `commit` is
        /// false, its commit block.
        fn txn(&mut self, tid: u32, items: Vec<Item>, commit: bool) {
            let fmt = self.sb.tag_format();
            let seed = self.sb.csum_seed();
            let mut crc = !0u32;
            for item in items {
                let mut block = vec![0u8; BS];
                match item {
                    Item::Data(blocks) => {
                        let mut tags = Vec::new();
                        let mut copies = Vec::new();
                        for (i, (home, mut data)) in blocks.into_iter().enumerate() {
                            let mut flags = if i == 0 { 0 } else { FLAG_SAME_UUID };
                            if Header::decode(&data).magic == MAGIC {
                                data[..4].fill(0);
                                flags |= FLAG_ESCAPE;
                            }
                            let checksum = seed.map_or(0, |s| fmt.tag_checksum(data_block_checksum(s, tid, &data)));
                            tags.push(BlockTag { blocknr: home, flags, checksum });
                            copies.push(data);
                        }
                        if let Some(last) = tags.last_mut() {
                            last.flags |= FLAG_LAST_TAG;
                        }
                        fmt.encode_descriptor(&mut block, tid, &tags, &self.sb.uuid).unwrap();
                        if let Some(s) = seed {
                            set_block_tail(s, &mut block);
                        }
                        crc = crc32_be(crc, &block);
                        let at = self.next();
                        self.put(at, &block);
                        self.descriptors.entry(tid).or_default().push(at);
                        for data in copies {
                            crc = crc32_be(crc, &data);
                            let at = self.next();
                            self.put(at, &data);
                            self.data_blocks.entry(tid).or_default().push(at);
                        }
                    }
                    Item::Revoke(blocks) => {
                        fmt.encode_revoke(&mut block, tid, &blocks).unwrap();
                        if let Some(s) = seed {
                            set_block_tail(s, &mut block);
                        }
                        let at = self.next();
                        self.put(at, &block);
                        self.descriptors.entry(tid).or_default().push(at);
                    }
                }
            }
            if commit {
                let mut block = vec![0u8; BS];
                let mut h = CommitHeader {
                    magic: MAGIC,
                    blocktype: BLOCKTYPE_COMMIT,
                    sequence: tid,
                    commit_sec: 1_000_000 + tid as u64,
                    ..Default::default()
                };
                if self.sb.has_v1_checksum() {
                    h.chksum_type = CHECKSUM_TYPE_CRC32;
                    h.chksum_size = CRC32_CHECKSUM_SIZE;
                    h.chksum[0] = crc;
                }
                h.encode(&mut block);
                if let Some(s) = seed {
                    set_commit_checksum(s, &mut block);
                }
                let at = self.next();
                self.put(at, &block);
                self.commits.insert(tid, at);
            }
        }

        /// Flips a byte of journal block `jblk`.
        fn corrupt(&self, jblk: u64, at: usize) {
            let mut b = self.get(jblk);
            b[at] ^= 0x40;
            self.put(jblk, &b);
        }

        fn run(&self) -> Result<RecoveryReport> {
            let map = |j: u64| Ok((FS_BLOCKS + j) * BS as u64);
            replay_journal(&self.dev, &map, BS as u32, self.sb.maxlen as u64, FS_BLOCKS)
        }

        fn home(&self, blk: u64) -> Vec<u8> {
            let mut b = vec![0u8; BS];
            self.dev.read_at(&mut b, blk * BS as u64).unwrap();
            b
        }

        fn journal_sb(&self) -> JournalSuperblock {
            JournalSuperblock::decode(&self.get(0))
        }
    }

    fn content(tag: u8) -> Vec<u8> {
        (0..BS).map(|i| tag ^ (i as u8)).collect()
    }

    /// Every tag and checksum format.
    fn formats() -> Vec<(u32, u32)> {
        let mut v = vec![(COMPAT_CHECKSUM, 0), (COMPAT_CHECKSUM, INCOMPAT_64BIT)];
        for csum in [0, INCOMPAT_CSUM_V2, INCOMPAT_CSUM_V3] {
            for bits in [0, INCOMPAT_64BIT] {
                v.push((0, csum | bits | INCOMPAT_REVOKE));
            }
        }
        v
    }

    #[test]
    fn replays_committed_transactions_in_every_format() {
        for (compat, incompat) in formats() {
            let mut j = Builder::new(compat, incompat, 256, 1, 10);
            j.txn(10, vec![Item::Data(vec![(3, content(1)), (5, content(2))])], true);
            j.txn(11, vec![Item::Data(vec![(3, content(3))]), Item::Data(vec![(7, content(4))])], true);
            // Uncommitted: must not be replayed.
            j.txn(12, vec![Item::Data(vec![(9, content(5))])], false);
            let report = j.run().unwrap();
            let what = format!("compat {compat:#x} incompat {incompat:#x}");
            assert_eq!(report.transactions, 2, "{what}");
            assert_eq!(report.blocks_replayed, 4, "{what}");
            assert_eq!(j.home(3), content(3), "{what}");
            assert_eq!(j.home(5), content(2), "{what}");
            assert_eq!(j.home(7), content(4), "{what}");
            assert_eq!(j.home(9), fs_block(9), "{what}");
            let sb = j.journal_sb();
            assert_eq!((sb.start, sb.sequence, sb.errno), (0, 13, 0), "{what}");
            JournalSuperblock::parse(&j.get(0), BS as u32, 256).unwrap();
            // Recovering again finds an empty journal.
            assert_eq!(j.run().unwrap(), RecoveryReport::default());
        }
    }

    #[test]
    fn wraps_around_the_end_of_the_log() {
        for incompat in [0, INCOMPAT_CSUM_V3] {
            let mut j = Builder::new(0, incompat, 16, 14, 100);
            // Descriptor at 14, data at 15 and 1 (the log wraps), commit at 2.
            j.txn(100, vec![Item::Data(vec![(1, content(1)), (2, content(2))])], true);
            j.txn(101, vec![Item::Data(vec![(3, content(3)), (4, content(4)), (5, content(5))])], true);
            assert_eq!(j.pos, 8);
            let report = j.run().unwrap();
            assert_eq!((report.transactions, report.blocks_replayed), (2, 5));
            for b in 1..=5 {
                assert_eq!(j.home(b), content(b as u8));
            }
        }
    }

    #[test]
    fn revoked_blocks_are_not_replayed() {
        for incompat in [INCOMPAT_REVOKE, INCOMPAT_REVOKE | INCOMPAT_64BIT | INCOMPAT_CSUM_V3] {
            let mut j = Builder::new(0, incompat, 64, 1, 1);
            j.txn(1, vec![Item::Data(vec![(3, content(1)), (4, content(2)), (6, content(6))])], true);
            // Revokes 4 (written by transaction 1) and 6 (rewritten below).
            j.txn(2, vec![Item::Revoke(vec![4, 6]), Item::Data(vec![(5, content(3))])], true);
            // A write after the revoke is replayed.
            j.txn(3, vec![Item::Data(vec![(6, content(7))])], true);
            // Revoke in the same transaction covers that transaction's blocks.
            j.txn(4, vec![Item::Data(vec![(8, content(8))]), Item::Revoke(vec![8])], true);
            let report = j.run().unwrap();
            assert_eq!(report.transactions, 4);
            assert_eq!(report.blocks_replayed, 3);
            assert_eq!(report.blocks_revoked, 3);
            assert_eq!(j.home(3), content(1));
            assert_eq!(j.home(4), fs_block(4));
            assert_eq!(j.home(5), content(3));
            assert_eq!(j.home(6), content(7));
            assert_eq!(j.home(8), fs_block(8));
        }
    }

    #[test]
    fn escaped_blocks_get_their_magic_back() {
        for incompat in [0, INCOMPAT_CSUM_V2, INCOMPAT_CSUM_V3] {
            let mut j = Builder::new(0, incompat, 64, 1, 1);
            let mut looks_like_journal = content(9);
            looks_like_journal[..4].copy_from_slice(&MAGIC.to_be_bytes());
            j.txn(1, vec![Item::Data(vec![(2, looks_like_journal.clone())])], true);
            assert_eq!(&j.get(2)[..4], &[0; 4], "logged copy is escaped");
            let report = j.run().unwrap();
            assert_eq!(report.blocks_replayed, 1);
            assert_eq!(j.home(2), looks_like_journal);
        }
    }

    #[test]
    fn corrupt_commit_checksum_ends_the_log() {
        for (compat, incompat) in [(0, INCOMPAT_CSUM_V3), (0, INCOMPAT_CSUM_V2), (COMPAT_CHECKSUM, 0)] {
            let mut j = Builder::new(compat, incompat, 64, 1, 1);
            j.txn(1, vec![Item::Data(vec![(2, content(1))])], true);
            j.txn(2, vec![Item::Data(vec![(3, content(2))])], true);
            j.txn(3, vec![Item::Data(vec![(4, content(3))])], true);
            if compat == COMPAT_CHECKSUM {
                // The v1 checksum covers the data blocks.
                j.corrupt(j.data_blocks[&2][0], 100);
            } else {
                j.corrupt(j.commits[&2], 200);
            }
            let report = j.run().unwrap();
            assert_eq!(report.transactions, 1);
            assert_eq!(report.failed_commit, Some(2));
            assert_eq!(j.home(2), content(1));
            assert_eq!(j.home(3), fs_block(3));
            assert_eq!(j.home(4), fs_block(4));
            let sb = j.journal_sb();
            assert_eq!((sb.start, sb.sequence, sb.errno), (0, 3, -EINVAL));
        }
    }

    #[test]
    fn async_commit_skips_a_bad_commit_without_failing() {
        let mut j = Builder::new(0, INCOMPAT_CSUM_V3 | INCOMPAT_ASYNC_COMMIT, 64, 1, 1);
        j.txn(1, vec![Item::Data(vec![(2, content(1))])], true);
        j.txn(2, vec![Item::Data(vec![(3, content(2))])], true);
        j.txn(3, vec![Item::Data(vec![(4, content(3))])], true);
        j.corrupt(j.commits[&2], 200);
        j.corrupt(j.commits[&3], 200);
        let report = j.run().unwrap();
        assert_eq!((report.transactions, report.failed_commit), (1, None));
        assert_eq!(j.home(3), fs_block(3));
        assert_eq!(j.home(4), fs_block(4));
        assert_eq!(j.journal_sb().sequence, 3);
    }

    #[test]
    fn data_block_with_bad_checksum_is_skipped_and_reported() {
        for incompat in [INCOMPAT_CSUM_V2, INCOMPAT_CSUM_V3] {
            let mut j = Builder::new(0, incompat, 64, 1, 1);
            j.txn(1, vec![Item::Data(vec![(2, content(1)), (3, content(2))])], true);
            j.corrupt(j.data_blocks[&1][1], 7);
            let report = j.run().unwrap();
            assert_eq!(report.blocks_replayed, 1);
            assert_eq!(report.bad_checksum_blocks, vec![3]);
            assert_eq!(j.home(2), content(1));
            assert_eq!(j.home(3), fs_block(3));
        }
        // Without checksums the same damage goes unnoticed.
        let mut j = Builder::new(0, 0, 64, 1, 1);
        j.txn(1, vec![Item::Data(vec![(2, content(1))])], true);
        j.corrupt(j.data_blocks[&1][0], 7);
        assert_eq!(j.run().unwrap().blocks_replayed, 1);
    }

    #[test]
    fn bad_descriptor_checksum_fails_recovery_unless_stale() {
        for revoke in [false, true] {
            let item = |h| if revoke { Item::Revoke(vec![h]) } else { Item::Data(vec![(h, content(2))]) };
            let mut j = Builder::new(0, INCOMPAT_CSUM_V3, 64, 1, 1);
            j.txn(1, vec![Item::Data(vec![(2, content(1))])], true);
            j.txn(2, vec![item(3)], true);
            j.corrupt(j.descriptors[&2][0], 300);
            let before = j.dev.contents();
            assert!(matches!(j.run(), Err(Error::Checksum { .. })), "revoke {revoke}");
            assert_eq!(j.dev.contents(), before, "nothing written");

            // The same block left over from an earlier use of the journal:
            // its commit time is older than the previous commit's.
            let mut j = Builder::new(0, INCOMPAT_CSUM_V3, 64, 1, 1);
            j.txn(1, vec![Item::Data(vec![(2, content(1))])], true);
            j.txn(2, vec![item(3)], true);
            j.corrupt(j.descriptors[&2][0], 300);
            let at = j.commits[&2];
            let mut c = j.get(at);
            let mut h = CommitHeader::decode(&c);
            h.commit_sec = 5;
            h.encode(&mut c);
            set_commit_checksum(j.sb.csum_seed().unwrap(), &mut c);
            j.put(at, &c);
            let report = j.run().unwrap();
            assert_eq!((report.transactions, report.blocks_replayed), (1, 1));
            assert_eq!(j.home(3), fs_block(3));
        }
    }

    #[test]
    fn home_block_outside_the_file_system_is_an_error() {
        let mut j = Builder::new(0, INCOMPAT_64BIT, 64, 1, 1);
        j.txn(1, vec![Item::Data(vec![(2, content(1)), (FS_BLOCKS, content(2))])], true);
        let before = j.dev.contents();
        assert!(matches!(j.run(), Err(Error::Corrupt { .. })));
        assert_eq!(j.dev.contents(), before);
        let mut j = Builder::new(0, INCOMPAT_64BIT, 64, 1, 1);
        j.txn(1, vec![Item::Data(vec![(1 << 40, content(2))])], true);
        assert!(matches!(j.run(), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn clean_journal_is_left_alone() {
        let mut j = Builder::new(0, INCOMPAT_CSUM_V3, 64, 1, 5);
        j.txn(5, vec![Item::Data(vec![(2, content(1))])], true);
        j.sb.start = 0;
        j.write_sb();
        let before = j.dev.contents();
        assert_eq!(j.run().unwrap(), RecoveryReport::default());
        assert_eq!(j.dev.contents(), before);
    }

    #[test]
    fn corrupt_journals_terminate() {
        // Every block of the log is a revoke block of the expected
        // transaction: the walk covers the log once and stops.
        let mut j = Builder::new(0, INCOMPAT_REVOKE, 32, 1, 1);
        for _ in 1..32 {
            j.txn(1, vec![Item::Revoke(vec![1])], false);
        }
        assert_eq!(j.run().unwrap().transactions, 0);

        // A descriptor claiming more data blocks than the log holds.
        let j = Builder::new(0, 0, 8, 1, 1);
        let mut block = vec![0u8; BS];
        Header::new(BLOCKTYPE_DESCRIPTOR, 1).encode(&mut block);
        j.put(1, &block);
        assert_eq!(j.run().unwrap().transactions, 0);

        // Commit blocks all around with increasing sequence: at most one trip.
        let mut j = Builder::new(0, 0, 8, 1, 1);
        for tid in 1..=7 {
            j.txn(tid, vec![], true);
        }
        let report = j.run().unwrap();
        assert_eq!(report.transactions, 7);
        assert_eq!(j.journal_sb().sequence, 9);
    }

    #[test]
    fn bad_revoke_count_fails() {
        let mut j = Builder::new(0, INCOMPAT_REVOKE, 64, 1, 1);
        j.txn(1, vec![Item::Revoke(vec![2])], true);
        let at = j.descriptors[&1][0];
        let mut b = j.get(at);
        let mut h = RevokeHeader::decode(&b);
        h.count = BS as u32 + 4;
        h.encode(&mut b);
        j.put(at, &b);
        assert!(matches!(j.run(), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn unknown_features_are_refused() {
        let j = Builder::new(0, 0x80, 64, 1, 1);
        assert!(matches!(j.run(), Err(Error::Unsupported(m)) if m.contains("0x80")));
    }

    #[test]
    fn pending_fast_commits_are_refused_stale_ones_ignored() {
        for (tid, refused) in [(3u32, true), (2, false)] {
            let mut j = Builder::new(0, INCOMPAT_CSUM_V3 | INCOMPAT_FAST_COMMIT, 64, 1, 1);
            j.sb.num_fc_blks = 8;
            j.write_sb();
            j.txn(1, vec![Item::Data(vec![(2, content(1))])], true);
            j.txn(2, vec![Item::Data(vec![(3, content(2))])], true);
            let mut fc = vec![0u8; BS];
            FcTagLength { tag: FC_TAG_HEAD, len: 8 }.encode(&mut fc);
            FcHead { features: 0, tid }.encode(&mut fc[4..]);
            j.put(64 - 8 + 1, &fc);
            let r = j.run();
            if refused {
                assert!(matches!(r, Err(Error::Unsupported(_))));
            } else {
                assert_eq!(r.unwrap().transactions, 2);
            }
        }
    }

    #[test]
    fn journal_superblock_checksum_is_refreshed() {
        let mut j = Builder::new(0, INCOMPAT_CSUM_V2, 64, 1, 1);
        j.txn(1, vec![Item::Data(vec![(2, content(1))])], true);
        j.run().unwrap();
        let raw = j.get(0);
        let mut zeroed = raw.clone();
        zeroed[0xFC..0x100].fill(0);
        assert_eq!(JournalSuperblock::decode(&raw).checksum, crc32c(!0, &zeroed));
    }
}
