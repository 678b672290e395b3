//! The jbd2 journal. Recovery: finds the internal journal of a file system whose
//! superblock says it needs recovery, replays it onto the device (see
//! [`recovery`] for the log walk) and marks the image clean, as the kernel
//! does on mount. Journaled writes: [`transaction`] (handles and commits),
//! [`writer`] (the jbd2 log writer), [`commit_timer`] (periodic commits).

pub mod commit_timer;
pub mod recovery;
pub mod transaction;
pub mod writer;

use crate::disk::features::{Compat, Incompat};
use crate::disk::inode::{FL_ENCRYPT, Inode};
use crate::disk::superblock::{STATE_ERROR, STATE_VALID, SUPERBLOCK_OFFSET, Superblock};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::mapping::Mapping;
use std::cell::Cell;

/// What a journal replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Committed transactions replayed.
    pub transactions: u32,
    /// Blocks written to their home locations.
    pub blocks_replayed: u64,
    /// Blocks skipped because a revoke record of the same or a later
    /// transaction covered them.
    pub blocks_revoked: u64,
    /// Home blocks not replayed because their logged copy failed its v2/v3
    /// checksum (the kernel skips them too). The file system is then marked
    /// as not clean, so that e2fsck checks it, as e2fsck itself does.
    pub bad_checksum_blocks: Vec<u64>,
    /// The transaction whose commit block failed its checksum: the log ended
    /// before it. As e2fsck does, the journal superblock records `EINVAL` in
    /// `s_errno` so that the next mount or check flags the file system.
    pub failed_commit: Option<u32>,
}

/// Replays the journal of `fs` onto its device and marks the image clean.
///
/// `fs` must be loaded writable over the device to recover (an overlay for a
/// read-only open); it is stale afterwards and must be reloaded. Does
/// nothing unless the superblock has `needs_recovery`. External journals
/// are refused.
pub fn recover(fs: &Ext4) -> Result<RecoveryReport> {
    let sb = fs.superblock();
    if !sb.incompat().has(Incompat::RECOVER) {
        return Ok(RecoveryReport::default());
    }
    if sb.journal_inum == 0 {
        if sb.journal_dev != 0 || sb.journal_uuid != [0; 16] {
            return Err(Error::Unsupported("recovery of an external journal device".into()));
        }
        return Err(Error::corrupt("superblock", Location::Superblock, "needs recovery but names no journal"));
    }
    if !sb.compat().has(Compat::HAS_JOURNAL) {
        return Err(Error::corrupt("superblock", Location::Superblock, "needs recovery but has no journal"));
    }
    let ino = sb.journal_inum;
    let inode = fs.read_inode(ino)?;
    if !inode.is_reg() || inode.links_count() == 0 || inode.has_flag(FL_ENCRYPT) {
        return Err(Error::corrupt("journal inode", Location::Inode(ino), "not a live, unencrypted regular file"));
    }
    let bs = fs.block_size();
    let journal_blocks = inode.size() / bs as u64;
    let map = JournalInodeMap { fs, inode: &inode, ino, blocks: journal_blocks, run: Cell::new(None) };
    let dev = fs.device().as_ref();
    let report =
        recovery::replay_journal(dev, &|jblk| map.offset(jblk), bs, journal_blocks, fs.geometry().blocks_count)?;
    clear_needs_recovery(fs, &report)?;
    dev.flush()?;
    Ok(report)
}

/// Rewrites the superblock (as replayed) without `needs_recovery`, keeping
/// an error state recorded before the replay (as e2fsck does) and marking the
/// file system not clean when blocks could not be replayed.
fn clear_needs_recovery(fs: &Ext4, report: &RecoveryReport) -> Result<()> {
    let dev = fs.device();
    let mut raw = vec![0u8; Superblock::SIZE];
    dev.read_at(&mut raw, SUPERBLOCK_OFFSET)?;
    let (mut sb, _) = Superblock::parse(&raw, dev.len())?;
    sb.feature_incompat &= !Incompat::RECOVER;
    sb.state |= fs.superblock().state & STATE_ERROR;
    if !report.bad_checksum_blocks.is_empty() {
        sb.state &= !STATE_VALID;
    }
    sb.encode_with_checksum(&mut raw);
    dev.write_at(&raw, SUPERBLOCK_OFFSET)
}

/// Maps journal blocks to the device through the journal inode, remembering
/// the last extent found (the walk is sequential).
struct JournalInodeMap<'a> {
    fs: &'a Ext4,
    inode: &'a Inode,
    ino: u32,
    blocks: u64,
    /// The last mapped run: (first journal block, first physical block, length).
    run: Cell<Option<(u64, u64, u64)>>,
}

impl JournalInodeMap<'_> {
    fn offset(&self, jblk: u64) -> Result<u64> {
        if jblk >= self.blocks {
            return Err(Error::OutOfBounds { what: "journal block", location: Location::JournalBlock(jblk) });
        }
        let location = Location::FileBlock { ino: self.ino, lblk: jblk };
        let pblk = match self.run.get() {
            Some((start, pblk, len)) if jblk >= start && jblk - start < len => pblk.saturating_add(jblk - start),
            _ => match self.fs.map_block(self.inode, jblk)? {
                Mapping::Mapped { pblk, len, .. } => {
                    self.run.set(Some((jblk, pblk, len.max(1))));
                    pblk
                }
                Mapping::Hole { .. } => return Err(Error::corrupt("journal inode", location, "hole in the journal")),
            },
        };
        if !self.fs.geometry().block_in_range(pblk) {
            return Err(Error::OutOfBounds { what: "journal block", location });
        }
        Ok(pblk * self.fs.block_size() as u64)
    }
}
