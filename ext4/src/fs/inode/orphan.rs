//! Open inodes and the orphan list: an inode whose last name is removed
//! while it is still open is not freed but put on the on-disk orphan list,
//! and freed when its last user closes it — or, after a crash, when the
//! image is next opened writable (as the kernel does at mount).
//!
//! The list is the classic one: the superblock's `s_last_orphan` names the
//! first orphan and each orphan's `i_dtime` names the next (0 ends it).
//! Images with the `orphan_file` feature still understand this list (the
//! kernel and e2fsck process both), so it is used for every image.

use crate::disk::inode::{FL_INLINE_DATA, Inode, Timestamp};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::data::write::now;
use crate::fs::inode::lock::LockMode;
use crate::journal::transaction::Handle;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// In-memory open counts, and which open inodes this mount put on the
/// orphan list.
#[derive(Debug, Default)]
pub struct OpenInodes {
    state: Mutex<OpenState>,
}

#[derive(Debug, Default)]
struct OpenState {
    counts: HashMap<u32, u32>,
    orphaned: HashSet<u32>,
}

impl OpenInodes {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
    /// inode lost its last name meanwhile, it leaves the orphan list and is
    /// freed, in one handle.
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

    /// Whether inode `ino` has users.
    pub fn is_inode_open(&self, ino: u32) -> bool {
        self.open_inodes().lock().counts.contains_key(&ino)
    }

    /// An inode whose link count just dropped to 0 inside `h`: freed when
    /// nobody has it open, otherwise put on the orphan list (and written).
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
    /// inside `h`: on the list, held open once for the caller, who drops
    /// that reference with [`Ext4::close_inode`]. The caller must finish `h`.
    pub(crate) fn orphan_new_in(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        self.add_orphan_in(h, inode)?;
        let mut st = self.open_inodes().lock();
        *st.counts.entry(inode.ino).or_insert(0) += 1;
        st.orphaned.insert(inode.ino);
        Ok(())
    }

    /// Takes an open orphan off the orphan list inside `h` so it can get a
    /// name again (linkat of an O_TMPFILE file). [`Error::NotFound`] when
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

    /// Pushes `inode` on the head of the orphan list and writes it.
    fn add_orphan_in(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        let head = self.superblock_in(h)?.last_orphan;
        inode.raw.dtime = head;
        self.write_inode(h, inode)?;
        let ino = inode.ino;
        self.update_superblock(h, |sb| sb.last_orphan = ino)
    }

    /// Unlinks `inode` from the orphan list: the superblock's head or its
    /// predecessor's `i_dtime` takes its successor. Not finding it is
    /// corruption (someone rewrote the list under us).
    fn remove_orphan_in(&self, h: &mut Handle<'_>, inode: &Inode) -> Result<()> {
        let next = inode.raw.dtime;
        let head = self.superblock_in(h)?.last_orphan;
        if head == inode.ino {
            return self.update_superblock(h, |sb| sb.last_orphan = next);
        }
        let mut cur = head;
        for _ in 0..self.superblock().inodes_count {
            if cur == 0 {
                break;
            }
            let mut pred = self.orphan_at(h, cur)?;
            if pred.raw.dtime == inode.ino {
                pred.raw.dtime = next;
                return self.write_inode(h, &mut pred);
            }
            cur = pred.raw.dtime;
        }
        Err(Error::corrupt("orphan list", Location::Inode(inode.ino), "orphaned inode not on the list"))
    }

    /// Reads orphan list member `ino`, checking that it names an inode.
    fn orphan_at(&self, h: &Handle<'_>, ino: u32) -> Result<Inode> {
        if ino < self.superblock().first_ino() || ino > self.superblock().inodes_count {
            return Err(Error::corrupt("orphan list", Location::Inode(ino), "entry is not a valid inode number"));
        }
        let inode = self.read_inode_in(h, ino)?;
        if inode.mode() == 0 {
            return Err(Error::corrupt("orphan list", Location::Inode(ino), "entry is an unused inode"));
        }
        Ok(inode)
    }

    /// Processes an orphan list left by a crash (ours or the kernel's), as
    /// the kernel does at mount: inodes without links are freed, those with
    /// links (truncate orphans) are cut to `i_size`; then the list is
    /// emptied. One handle. A chain that loops or names a bad inode is
    /// [`Error::Corrupt`]. Returns how many inodes were processed.
    pub fn process_orphans(&self) -> Result<u32> {
        if self.current_superblock()?.last_orphan == 0 {
            return Ok(0);
        }
        let mut h = self.begin()?;
        let mut cur = self.superblock_in(&h)?.last_orphan;
        if cur == 0 {
            return Ok(0);
        }
        let t = now();
        let mut seen = HashSet::new();
        while cur != 0 {
            if !seen.insert(cur) {
                return Err(Error::corrupt("orphan list", Location::Inode(cur), "the chain loops"));
            }
            let mut inode = self.orphan_at(&h, cur)?;
            let next = inode.raw.dtime;
            if inode.links_count() == 0 {
                self.free_inode_in(&mut h, &mut inode, t)?;
            } else {
                if inode.is_reg() && !inode.has_flag(FL_INLINE_DATA) {
                    let keep = inode.size().div_ceil(self.block_size() as u64);
                    self.unmap_blocks_in(&mut h, &mut inode, keep, u64::MAX)?;
                }
                inode.raw.dtime = 0;
                self.write_inode(&mut h, &mut inode)?;
            }
            cur = next;
        }
        self.update_superblock(&mut h, |sb| sb.last_orphan = 0)?;
        h.finish();
        Ok(seen.len() as u32)
    }
}
