//! The jbd2 journal. Recovery: finds the internal journal of a file system whose
//! superblock says it needs recovery, replays it onto the device (see
//! [`recovery`] for the log walk) and marks the image clean, as the kernel
//! does on mount. Journaled writes: [`transaction`] (handles and commits),
//! [`writer`] (the jbd2 log writer), [`commit_timer`] (periodic commits).

pub mod commit_timer;
pub mod log_map;
pub mod recovery;
pub mod transaction;
pub mod writer;

use crate::disk::extent::FileExtent;
use crate::disk::features::{Compat, Incompat};
use crate::disk::superblock::{STATE_ERROR, STATE_VALID, SUPERBLOCK_OFFSET, Superblock};
use crate::error::{Error, Location, Result};
use crate::io::BlockDevice;
use log_map::LogMap;

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

/// The inode number of the internal journal of the file system described
/// by `sb`: refuses external journals and a superblock that names none.
pub fn internal_journal_inode(sb: &Superblock) -> Result<u32> {
    if sb.journal_inum == 0 {
        if sb.journal_dev != 0 || sb.journal_uuid != [0; 16] {
            return Err(Error::Unsupported("an external journal device".into()));
        }
        return Err(Error::corrupt("superblock", Location::Superblock, "has a journal but names no journal inode"));
    }
    if !sb.compat().has(Compat::HAS_JOURNAL) {
        return Err(Error::corrupt("superblock", Location::Superblock, "names a journal inode but has no journal"));
    }
    Ok(sb.journal_inum)
}

/// Replays the journal onto `dev` and marks the image clean, as the kernel
/// does at mount. `sb` is the file system's superblock as loaded; the
/// journal file is `journal_blocks` blocks laid out as `extents` (the file
/// system resolves them from the journal inode). Does nothing unless the
/// superblock has `needs_recovery`. Anything the caller loaded from `dev`
/// before is stale afterwards.
pub fn recover(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    extents: Vec<FileExtent>,
    journal_blocks: u64,
) -> Result<RecoveryReport> {
    if !sb.incompat().has(Incompat::RECOVER) {
        return Ok(RecoveryReport::default());
    }
    let bs = sb.block_size();
    let map = LogMap::new(extents, journal_blocks, bs, sb.blocks_count())?;
    let report = recovery::replay_journal(dev, &|jblk| map.offset(jblk), bs, journal_blocks, sb.blocks_count())?;
    clear_needs_recovery(dev, sb, &report)?;
    dev.flush()?;
    Ok(report)
}

/// Rewrites the superblock (as replayed) without `needs_recovery`, keeping
/// an error state recorded before the replay (as e2fsck does) and marking the
/// file system not clean when blocks could not be replayed.
fn clear_needs_recovery(dev: &dyn BlockDevice, before: &Superblock, report: &RecoveryReport) -> Result<()> {
    let mut raw = vec![0u8; Superblock::SIZE];
    dev.read_at(&mut raw, SUPERBLOCK_OFFSET)?;
    let (mut sb, _) = Superblock::parse(&raw, dev.len())?;
    sb.feature_incompat &= !Incompat::RECOVER;
    sb.state |= before.state & STATE_ERROR;
    if !report.bad_checksum_blocks.is_empty() {
        sb.state &= !STATE_VALID;
    }
    sb.encode_with_checksum(&mut raw);
    dev.write_at(&raw, SUPERBLOCK_OFFSET)
}
