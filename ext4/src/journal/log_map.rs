//! Where the journal's blocks are: the journal file's extents on the
//! device, checked once, then looked up by journal block number. Recovery
//! and the writer share it; the file system hands in the extents (it owns
//! the journal inode), so the journal never reaches up into `fs`.

use crate::disk::extent::FileExtent;
use crate::error::{Error, Location, Result};

/// The journal file's blocks on the device.
#[derive(Debug, Clone)]
pub struct LogMap {
    runs: Vec<FileExtent>,
    journal_blocks: u64,
    block_size: u64,
}

impl LogMap {
    /// A map of a journal of `journal_blocks` blocks over `extents` (in
    /// logical order), each of which must be written and lie inside the
    /// file system's `fs_blocks`.
    pub fn new(extents: Vec<FileExtent>, journal_blocks: u64, block_size: u32, fs_blocks: u64) -> Result<Self> {
        let mut next = 0u64;
        for e in &extents {
            let location = Location::JournalBlock(e.lblk);
            if e.unwritten {
                return Err(Error::corrupt("journal inode", location, "unwritten extent in the journal"));
            }
            if e.pblk.checked_add(e.len).is_none_or(|end| end > fs_blocks) {
                return Err(Error::OutOfBounds { what: "journal block", location });
            }
            if e.lblk < next {
                return Err(Error::corrupt("journal inode", location, "journal extents out of order"));
            }
            next = e.lblk.saturating_add(e.len);
        }
        Ok(LogMap { runs: extents, journal_blocks, block_size: block_size as u64 })
    }

    /// Checks that every journal block below `maxlen` is mapped.
    pub fn check_covers(&self, maxlen: u64) -> Result<()> {
        let mut next = 0u64;
        for r in &self.runs {
            if next >= maxlen || r.lblk != next {
                break;
            }
            next = r.lblk.saturating_add(r.len);
        }
        if next < maxlen {
            return Err(Error::corrupt("journal inode", Location::JournalBlock(next), "hole in the journal"));
        }
        Ok(())
    }

    /// Byte offset on the device of journal block `jblk`.
    pub fn offset(&self, jblk: u64) -> Result<u64> {
        let location = Location::JournalBlock(jblk);
        if jblk >= self.journal_blocks {
            return Err(Error::OutOfBounds { what: "journal block", location });
        }
        let i = self.runs.partition_point(|r| r.lblk.saturating_add(r.len) <= jblk);
        match self.runs.get(i) {
            Some(r) if r.lblk <= jblk => Ok((r.pblk + (jblk - r.lblk)) * self.block_size),
            _ => Err(Error::corrupt("journal inode", location, "hole in the journal")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(lblk: u64, pblk: u64, len: u64) -> FileExtent {
        FileExtent { lblk, pblk, len, unwritten: false }
    }

    #[test]
    fn maps_runs_and_reports_holes() {
        let m = LogMap::new(vec![ext(0, 100, 4), ext(6, 200, 4)], 10, 1024, 1000).unwrap();
        assert_eq!(m.offset(3).unwrap(), 103 * 1024);
        assert_eq!(m.offset(7).unwrap(), 201 * 1024);
        assert!(matches!(m.offset(4), Err(Error::Corrupt { .. })));
        assert!(matches!(m.offset(10), Err(Error::OutOfBounds { .. })));
        assert!(m.check_covers(4).is_ok());
        assert!(m.check_covers(5).is_err());
        assert!(LogMap::new(vec![ext(0, 999, 4)], 4, 1024, 1000).is_err(), "outside the file system");
        assert!(LogMap::new(vec![ext(4, 10, 4), ext(0, 20, 4)], 8, 1024, 1000).is_err(), "out of order");
        let mut u = ext(0, 10, 4);
        u.unwritten = true;
        assert!(LogMap::new(vec![u], 4, 1024, 1000).is_err(), "unwritten");
    }
}
