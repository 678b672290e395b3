//! allocate → write → set_blocks, as Ted Ts'o proposed for inline-data
//! conversion: physical blocks are first *reserved* in memory (invisible on
//! disk, never handed out twice, released when dropped), then filled with
//! ordinary image writes while no journal handle is open, and only then
//! mapped by [`Ext4::set_blocks`] in one handle that also marks them in the
//! bitmaps, group descriptors and free counts. A crash at any point leaves
//! either the old file or the new one with its data, and never a leaked block.

use crate::disk::inode::Inode;
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::journal::transaction::Handle;

/// Physical blocks held for one caller. Dropping it releases them.
#[must_use = "a reservation holds blocks until it is dropped or consumed"]
pub struct Reservation<'a> {
    fs: &'a Ext4,
    start: u64,
    len: u64,
}

impl Reservation<'_> {
    /// First reserved block.
    pub fn start(&self) -> u64 {
        self.start
    }
    /// Number of reserved blocks.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the reservation is empty (never: reservations hold >= 1 block).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(tx) = self.fs.tx() {
            tx.unreserve(self.start, self.len);
        }
    }
}

impl Ext4 {
    /// Reserves up to `len` contiguous free blocks near `goal` (at least
    /// one). Nothing is written: the blocks are only kept from every other
    /// allocation until the reservation is consumed or dropped.
    ///
    /// When the only free blocks left were freed by a transaction that is
    /// not durable yet, it commits that transaction and tries again (as the
    /// kernel's `ext4_should_retry_alloc` does), so deleting a file and
    /// writing another never fails with a full disk that `statfs` calls free.
    pub fn allocate(&self, goal: u64, len: u64) -> Result<Reservation<'_>> {
        let tx = self.tx()?;
        match self.reserve_free(goal, len) {
            Err(Error::NoSpace) if tx.has_pending_frees() => {
                tx.commit()?;
                self.reserve_free(goal, len)
            }
            r => r,
        }
    }

    fn reserve_free(&self, goal: u64, len: u64) -> Result<Reservation<'_>> {
        let tx = self.tx()?;
        // A handle only to see the newest bitmaps; it stages nothing.
        let h = tx.begin();
        let (start, n) = self.find_free_blocks(&h, goal, len)?;
        tx.reserve(start, n)?;
        drop(h);
        Ok(Reservation { fs: self, start, len: n })
    }

    /// Writes `data` into reserved blocks, starting at the reservation's
    /// first block; the data is zero-padded to whole blocks. No journal
    /// handle is involved: these blocks belong to nobody yet.
    pub fn write_reserved(&self, r: &Reservation<'_>, data: &[u8]) -> Result<()> {
        let bs = self.block_size() as u64;
        if data.len() as u64 > r.len * bs {
            return Err(Error::InvalidArgument(format!("{} bytes do not fit {} reserved blocks", data.len(), r.len)));
        }
        let mut buf = data.to_vec();
        buf.resize(data.len().div_ceil(bs as usize) * bs as usize, 0);
        self.device().write_at(&buf, r.start * bs)
    }

    /// In handle `h`: marks the reserved blocks in use (bitmap, descriptor,
    /// free counts) and maps logical blocks `lblk..` of `inode` to them,
    /// updating `i_blocks` and staging the inode. Consumes the reservation.
    pub fn set_blocks(
        &self,
        h: &mut Handle<'_>,
        inode: &mut Inode,
        lblk: u64,
        r: Reservation<'_>,
        unwritten: bool,
    ) -> Result<()> {
        self.claim_blocks(h, r.start, r.len)?;
        // The handle's bitmap change now keeps the blocks from the allocator
        // (handles run one at a time): the reservation may go, before tree
        // blocks are allocated, so they are not counted twice against the
        // split reserve. If the handle is dropped instead of finished, the
        // blocks are free again.
        let (start, len) = (r.start, r.len);
        drop(r);
        self.map_blocks_in(h, inode, lblk, start, len, unwritten)
    }
}
