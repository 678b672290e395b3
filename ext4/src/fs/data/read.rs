//! Reading file contents: block-mapped data read straight from the device
//! into the caller's buffer (one positional read per physically contiguous
//! run, bypassing the metadata cache), holes and unwritten extents as
//! zeros, and inline data clamped to `i_size`.

use crate::disk::inode::{FL_INLINE_DATA, Inode};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::data::io::{DataSink, SliceSink};
use crate::fs::inode::lock::LockMode;
use crate::fs::map::lookup::Mapping;
use std::sync::Arc;

impl Ext4 {
    /// Reads up to `buf.len()` bytes at `offset`; returns the count (0 at EOF).
    /// Reads `min(buf.len(), i_size - offset)` bytes: holes and unwritten
    /// extents read as zeros; inline-data inodes are served from the inode.
    ///
    /// `inode` names the file; its mapping and size are read again under
    /// the inode's shared I/O lock (a snapshot taken earlier may be stale:
    /// reading through its mapping could return blocks a truncate has
    /// freed since). Writable file systems only: a read-only one has no
    /// writer to exclude and reads the snapshot as given.
    pub fn read(&self, inode: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let len = buf.len();
        self.read_to(inode, offset, len, &mut SliceSink::new(buf))
    }

    /// [`Ext4::read`] into any [`DataSink`]: up to `len` bytes at `offset`,
    /// each byte moved once from the image to the sink.
    pub fn read_to(&self, inode: &Inode, offset: u64, len: usize, sink: &mut dyn DataSink) -> Result<usize> {
        if self.is_read_only() || inode.ino == 0 {
            return self.read_snapshot(inode, offset, len, sink);
        }
        let _io = self.lock_inode(inode.ino, LockMode::Shared);
        let current = self.read_inode(inode.ino)?;
        self.read_snapshot(&current, offset, len, sink)
    }

    /// [`Ext4::read_to`] through the given inode as it is.
    fn read_snapshot(&self, inode: &Inode, offset: u64, len: usize, sink: &mut dyn DataSink) -> Result<usize> {
        let size = inode.size();
        if offset >= size {
            return Ok(0);
        }
        let n = (size - offset).min(len as u64) as usize;
        if inode.has_flag(FL_INLINE_DATA) {
            self.read_inline(inode, offset, n, sink)?;
        } else {
            self.read_mapped(inode, offset, n, sink)?;
        }
        Ok(n)
    }

    /// Reads logical block `lblk` of `inode` into `buf`, which must be one
    /// block long; a hole or unwritten block fills it with zeros. Returns
    /// whether the block is mapped to written data. For directories and
    /// slow symlinks, whose blocks are read whole.
    pub fn read_file_block(&self, inode: &Inode, lblk: u64, buf: &mut [u8]) -> Result<bool> {
        if buf.len() != self.block_size() as usize {
            return Err(Error::InvalidArgument(format!("buffer of {} bytes is not one block", buf.len())));
        }
        match self.map_block(inode, lblk)? {
            Mapping::Mapped { pblk, unwritten: false, .. } => {
                self.read_block_into(pblk, buf, "file block")?;
                Ok(true)
            }
            _ => {
                buf.fill(0);
                Ok(false)
            }
        }
    }

    /// Logical block `lblk` of `inode` through the metadata cache, or `None`
    /// for a hole or unwritten block: for directory blocks, which are
    /// metadata and read repeatedly.
    pub fn read_file_block_cached(&self, inode: &Inode, lblk: u64) -> Result<Option<Arc<[u8]>>> {
        match self.map_block(inode, lblk)? {
            Mapping::Mapped { pblk, unwritten: false, .. } => Ok(Some(self.read_meta_block(pblk, "file block")?)),
            _ => Ok(None),
        }
    }

    /// Serves `len` bytes at `offset` (within `i_size`) from inline data.
    /// An i_size past the bytes stored inline (the kernel makes such files:
    /// a file grown by truncate, then written inline) reads as zeros there,
    /// as e2fsck and the kernel read it.
    fn read_inline(&self, inode: &Inode, offset: u64, len: usize, sink: &mut dyn DataSink) -> Result<()> {
        let data = self.inline_data(inode)?;
        let stored = (data.len() as u64).saturating_sub(offset).min(len as u64) as usize;
        if stored > 0 {
            let start = offset as usize;
            sink.bytes(&data[start..start + stored])?;
        }
        if stored < len {
            sink.zeros(len - stored)?;
        }
        Ok(())
    }

    /// Sends `len` bytes of the file's blocks from byte `offset` on (where
    /// `offset + len` does not exceed `i_size`) to `sink`.
    fn read_mapped(&self, inode: &Inode, offset: u64, len: usize, sink: &mut dyn DataSink) -> Result<()> {
        let bs = self.block_size() as u64;
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let (lblk, skip) = (pos / bs, pos % bs);
            let (run, pblk) = match self.map_block(inode, lblk)? {
                Mapping::Hole { len } => (len, None),
                Mapping::Mapped { len, unwritten: true, .. } => (len, None),
                Mapping::Mapped { pblk, len, unwritten: false } => (len, Some(pblk)),
            };
            // Mappings are never empty, so the run covers at least the rest of this block.
            let avail = run.saturating_mul(bs) - skip;
            let n = avail.min((len - done) as u64) as usize;
            match pblk {
                None => sink.zeros(n)?,
                Some(pblk) => self.read_data(inode.ino, lblk, pblk, skip, n, sink)?,
            }
            done += n;
        }
        Ok(())
    }

    /// One positional read of file data: `len` bytes from byte `skip` of
    /// physical block `pblk` (the mapping of logical block `lblk`).
    fn read_data(&self, ino: u32, lblk: u64, pblk: u64, skip: u64, len: usize, sink: &mut dyn DataSink) -> Result<()> {
        let out_of_bounds = || Error::OutOfBounds { what: "file data", location: Location::FileBlock { ino, lblk } };
        let byte =
            pblk.checked_mul(self.block_size() as u64).and_then(|b| b.checked_add(skip)).ok_or_else(out_of_bounds)?;
        sink.read_from(self.device().as_ref(), byte, len).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => out_of_bounds(),
            other => other,
        })
    }
}
