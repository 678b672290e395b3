//! The journal file: the internal journal's inode, checked, and where its
//! blocks are. The file system owns inodes, so it resolves them and hands
//! the extents down to the journal layer (replay and the log writer), which
//! never reads an inode itself.

use super::Ext4;
use crate::disk::extent::FileExtent;
use crate::disk::inode::FL_ENCRYPT;
use crate::error::{Error, Location, Result};

impl Ext4 {
    /// The internal journal's extents (in logical order) and its length in
    /// blocks. External journals are [`Error::Unsupported`].
    pub(crate) fn journal_file(&self) -> Result<(Vec<FileExtent>, u64)> {
        let ino = crate::journal::internal_journal_inode(self.superblock())?;
        let inode = self.read_inode(ino)?;
        if !inode.is_reg() || inode.links_count() == 0 || inode.has_flag(FL_ENCRYPT) {
            return Err(Error::corrupt("journal inode", Location::Inode(ino), "not a live, unencrypted regular file"));
        }
        Ok((self.file_extents(&inode)?, inode.size() / self.block_size() as u64))
    }
}
