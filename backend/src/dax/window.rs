//! [`DaxWindow`]: the mappings of one session's window and the operations
//! that change them (setup, removal, refresh after a change of the file,
//! zeroing before blocks are freed). The module documentation of
//! [`crate::dax`] states the invariants and the locking.

use super::channel::ShmemChannel;
use super::pieces::{self, Backing, Piece, Slot};
use super::zero::SealedMemfd;
use ext4::Ext4;
use ext4::disk::inode::{FL_APPEND, FL_IMMUTABLE};
use ext4::fs::data::dax::DaxEvent;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The inode number of a slot whose file was freed (ext4 numbers start at 1).
const DEAD: u32 = 0;

/// Granularity of window offsets and lengths.
pub const PAGE: u64 = 4096;

/// Why a window operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DaxError {
    /// A malformed request: misaligned, empty, overflowing or outside the window.
    #[error("{0}")]
    Invalid(String),
    /// FUSE_REMOVEMAPPING of a range that holds no mapping.
    #[error("no DAX mapping in window range {0:#x}..{1:#x}")]
    NotMapped(u64, u64),
    /// A writable mapping of a read-only image.
    #[error("writable DAX mapping of a read-only image")]
    ReadOnly,
    /// A writable mapping of an immutable or append-only file.
    #[error("inode {0} is immutable or append-only")]
    NotWritable(u32),
    /// The frontend gave no backend request channel (or no SHMEM).
    #[error("the frontend gave no channel for DAX mappings")]
    NoChannel,
    /// A memory file for zeros or a private copy could not be made.
    #[error("making a memory file: {0}")]
    Memory(#[source] io::Error),
    /// The frontend refused or failed a SHMEM request.
    #[error("frontend: {0}")]
    Frontend(#[source] io::Error),
    /// The file system refused.
    #[error(transparent)]
    Core(#[from] ext4::Error),
}

/// What the window did in this session.
#[derive(Debug, Default)]
pub struct DaxCounters {
    setups: AtomicU64,
    removals: AtomicU64,
    conversions: AtomicU64,
    remaps: AtomicU64,
}

impl DaxCounters {
    /// FUSE_SETUPMAPPINGs served.
    pub fn setups(&self) -> u64 {
        self.setups.load(Ordering::Relaxed)
    }
    /// FUSE_REMOVEMAPPING ranges served.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Relaxed)
    }
    /// Inline files converted at map setup.
    pub fn conversions(&self) -> u64 {
        self.conversions.load(Ordering::Relaxed)
    }
    /// Mappings changed by the daemon (a file grew or lost blocks under them).
    pub fn remaps(&self) -> u64 {
        self.remaps.load(Ordering::Relaxed)
    }
}

impl fmt::Display for DaxCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "setupmappings={} removemappings={} conversions={} remaps={}",
            self.setups(),
            self.removals(),
            self.conversions(),
            self.remaps()
        )
    }
}

/// The DAX window of one session.
pub struct DaxWindow {
    fs: Arc<Ext4>,
    size: u64,
    /// The image file, as the frontend maps it.
    image: File,
    /// Zeros for holes and past EOF, as long as the window.
    zeros: SealedMemfd,
    channel: Mutex<Option<Arc<dyn ShmemChannel>>>,
    /// The window lock: every slot by window offset.
    slots: Mutex<BTreeMap<u64, Slot>>,
    /// How many slots each inode has: changed only under the window lock,
    /// read without it, so a writer of a file with no mapping never waits
    /// for a frontend that is slow to acknowledge (a leaf lock).
    mapped: Mutex<HashMap<u32, usize>>,
    counters: DaxCounters,
}

impl DaxWindow {
    /// A window of `size` bytes over `fs`, whose image file `image` is what
    /// the frontend maps. Registers itself with the core as the owner that
    /// unmaps blocks before they are freed.
    pub fn new(fs: Arc<Ext4>, image: File, size: u64) -> io::Result<Arc<DaxWindow>> {
        if size == 0 || size % PAGE != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("DAX window of {size} bytes")));
        }
        let w = Arc::new(DaxWindow {
            fs: fs.clone(),
            size,
            image,
            zeros: SealedMemfd::zeros(size)?,
            mapped: Mutex::new(HashMap::new()),
            channel: Mutex::new(None),
            slots: Mutex::new(BTreeMap::new()),
            counters: DaxCounters::default(),
        });
        let weak = Arc::downgrade(&w);
        fs.set_dax_unmap_owner(Box::new(move |event| {
            let Some(w) = weak.upgrade() else { return };
            match event {
                DaxEvent::Freeing { ino, first, count } => w.on_free(ino, first, count),
                DaxEvent::InodeFreed { ino } => w.on_inode_freed(ino),
            }
        }));
        Ok(w)
    }

    /// The window's size (GET_SHMEM_CONFIG region 0).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What the window did so far.
    pub fn counters(&self) -> &DaxCounters {
        &self.counters
    }

    /// Number of live mappings.
    pub fn mapping_count(&self) -> usize {
        self.lock_slots().len()
    }

    /// Gives the window the frontend's channel (SET_BACKEND_REQ_FD).
    pub fn set_channel(&self, ch: Arc<dyn ShmemChannel>) {
        *self.channel.lock().unwrap_or_else(|p| p.into_inner()) = Some(ch);
    }

    fn channel(&self) -> Result<Arc<dyn ShmemChannel>, DaxError> {
        self.channel.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(DaxError::NoChannel)
    }

    fn lock_slots(&self) -> MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_mapped(&self) -> MutexGuard<'_, HashMap<u32, usize>> {
        self.mapped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `slot` at `key` (the window lock held), counting it for its inode.
    fn put(&self, slots: &mut BTreeMap<u64, Slot>, key: u64, slot: Slot) {
        self.index(slot.ino, true);
        if let Some(old) = slots.insert(key, slot) {
            self.index(old.ino, false);
        }
    }

    /// Takes the slot at `key` out (the window lock held).
    fn take(&self, slots: &mut BTreeMap<u64, Slot>, key: u64) -> Option<Slot> {
        let s = slots.remove(&key)?;
        self.index(s.ino, false);
        Some(s)
    }

    fn index(&self, ino: u32, add: bool) {
        if ino == DEAD {
            return;
        }
        let mut m = self.lock_mapped();
        let n = m.entry(ino).or_default();
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ino);
            }
        }
    }

    /// FUSE_SETUPMAPPING: maps `len` bytes of inode `ino` from `file_offset`
    /// at window offset `moffset`, replacing whatever mapping overlaps it.
    pub fn setup(&self, ino: u32, file_offset: u64, len: u64, moffset: u64, writable: bool) -> Result<(), DaxError> {
        if len == 0 || len % PAGE != 0 || moffset % PAGE != 0 || file_offset % PAGE != 0 {
            return Err(DaxError::Invalid(format!(
                "DAX mapping of {len:#x} bytes at file offset {file_offset:#x}, window offset {moffset:#x}: \
                 not whole pages"
            )));
        }
        let end = moffset.checked_add(len).filter(|e| *e <= self.size).ok_or_else(|| {
            DaxError::Invalid(format!("window range {moffset:#x}+{len:#x} is outside the {:#x}-byte window", self.size))
        })?;
        file_offset.checked_add(len).ok_or_else(|| DaxError::Invalid("file range overflows".into()))?;
        let ch = self.channel()?;
        let inode = self.fs.read_inode(ino)?;
        if writable {
            if self.fs.is_read_only() {
                return Err(DaxError::ReadOnly);
            }
            if inode.flags() & (FL_IMMUTABLE | FL_APPEND) != 0 {
                return Err(DaxError::NotWritable(ino));
            }
        }
        if self.fs.is_read_only() {
            // The image must not be handed to a VMM that maps everything
            // writable, and nothing can change: a private copy serves the
            // file's bytes (inline files too, which cannot be converted).
            if !inode.is_reg() {
                return Err(DaxError::Core(ext4::Error::InvalidArgument(format!("inode {ino} is not a regular file"))));
            }
            let new = self.private_copy(&inode, moffset, file_offset, len)?;
            self.install(&ch, ino, file_offset, moffset, end, false, new, Vec::new())?;
        } else {
            let placed = self.fs.map_for_dax_with(ino, file_offset, len, writable, |m| {
                if m.converted {
                    self.counters.conversions.fetch_add(1, Ordering::Relaxed);
                    log::info!("dax: inode {ino} converted from inline data at map setup");
                }
                let new = pieces::from_core(moffset, file_offset, &m.pieces, writable);
                self.install(&ch, ino, file_offset, moffset, end, writable, new, vec![m.id])
            })?;
            placed?;
            if writable {
                // Filling holes gave the file blocks that its other
                // mappings may still show as zeros.
                self.refresh(ino);
            }
        }
        self.counters.setups.fetch_add(1, Ordering::Relaxed);
        log::debug!("dax: inode {ino} {file_offset:#x}+{len:#x} at window {moffset:#x} (writable: {writable})");
        Ok(())
    }

    /// The pieces of a file of a read-only image: its bytes copied into a
    /// memfd, zeros past its end.
    fn private_copy(
        &self,
        inode: &ext4::Inode,
        moffset: u64,
        file_offset: u64,
        len: u64,
    ) -> Result<Vec<Piece>, DaxError> {
        let in_file = inode.size().div_ceil(PAGE) * PAGE;
        let mut out = Vec::new();
        if file_offset < in_file {
            let plen = in_file.min(file_offset + len) - file_offset;
            let mut failed = None;
            let memfd = SealedMemfd::filled("ext4-virtiofsd-copy", plen, |off, buf| {
                self.fs.read(inode, file_offset + off, buf).map_err(|e| {
                    let msg = e.to_string();
                    failed = Some(e);
                    io::Error::other(msg)
                })
            });
            let memfd = match (memfd, failed) {
                (_, Some(e)) => return Err(DaxError::Core(e)),
                (Err(e), None) => return Err(DaxError::Memory(e)),
                (Ok(m), None) => Arc::new(m),
            };
            out.push(Piece { shm_offset: moffset, file_offset, len: plen, backing: Backing::Private(memfd, 0) });
        }
        let done: u64 = out.iter().map(|p| p.len).sum();
        if done < len {
            out.push(Piece {
                shm_offset: moffset + done,
                file_offset: file_offset + done,
                len: len - done,
                backing: Backing::Zero,
            });
        }
        Ok(out)
    }

    /// Puts a new slot at `moffset..end` (under the window lock): unmaps
    /// the slots it overlaps, then maps its pieces.
    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        ch: &Arc<dyn ShmemChannel>,
        ino: u32,
        file_offset: u64,
        moffset: u64,
        end: u64,
        writable: bool,
        new: Vec<Piece>,
        pins: Vec<u64>,
    ) -> Result<(), DaxError> {
        let mut slots = self.lock_slots();
        for key in overlapping(&slots, moffset, end) {
            let Some(old) = self.take(&mut slots, key) else { continue };
            if let Err(e) = self.unmap_pieces(ch, &old.pieces) {
                // The frontend may still show the old blocks: keep them pinned.
                self.put(&mut slots, key, old);
                self.release(pins);
                return Err(DaxError::Frontend(e));
            }
            self.release(old.pins);
        }
        for (i, p) in new.iter().enumerate() {
            if let Err(e) = self.map_piece(ch, p) {
                if let Err(u) = self.unmap_pieces(ch, &new[..i]) {
                    log::error!("dax: undoing a failed mapping: {u}");
                    self.put(
                        &mut slots,
                        moffset,
                        Slot { ino, file_offset, len: end - moffset, writable, pieces: new, pins },
                    );
                } else {
                    self.release(pins);
                }
                return Err(DaxError::Frontend(e));
            }
        }
        self.put(&mut slots, moffset, Slot { ino, file_offset, len: end - moffset, writable, pieces: new, pins });
        Ok(())
    }

    /// FUSE_REMOVEMAPPING of window ranges `(moffset, len)`: every mapping
    /// in them goes; mappings a range cuts keep their other parts. Every
    /// range is checked (whole pages, holding a mapping) before anything
    /// is removed: a refused request changes nothing.
    pub fn remove(&self, ranges: &[(u64, u64)]) -> Result<(), DaxError> {
        let ch = self.channel()?;
        let mut slots = self.lock_slots();
        let mut checked = Vec::with_capacity(ranges.len());
        for &(moffset, len) in ranges {
            let end = moffset
                .checked_add(len)
                .filter(|_| len > 0 && len % PAGE == 0 && moffset % PAGE == 0)
                .ok_or_else(|| DaxError::Invalid(format!("removal of {len:#x} bytes at window offset {moffset:#x}")))?;
            if overlapping(&slots, moffset, end).is_empty() {
                return Err(DaxError::NotMapped(moffset, end));
            }
            checked.push((moffset, end));
        }
        for (moffset, end) in checked {
            self.remove_locked(&ch, &mut slots, moffset, end)?;
            self.counters.removals.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Removes window range `moffset..end` under the window lock.
    fn remove_locked(
        &self,
        ch: &Arc<dyn ShmemChannel>,
        slots: &mut BTreeMap<u64, Slot>,
        moffset: u64,
        end: u64,
    ) -> Result<(), DaxError> {
        let bs = self.fs.block_size() as u64;
        let keys = overlapping(slots, moffset, end);
        for key in keys {
            let Some(old) = self.take(slots, key) else { continue };
            let slot_end = key + old.len;
            let mut kept: Vec<Slot> = Vec::new();
            for (from, to) in [(key, moffset.min(slot_end)), (end.max(key), slot_end)] {
                if from < to {
                    let pieces = pieces::clip(&old.pieces, from, to);
                    kept.push(Slot {
                        ino: old.ino,
                        file_offset: old.file_offset + (from - key),
                        len: to - from,
                        writable: old.writable,
                        pins: Vec::new(),
                        pieces,
                    });
                }
            }
            let after: Vec<Piece> = kept.iter().flat_map(|s| s.pieces.iter().cloned()).collect();
            if let Err(e) = self.change(ch, &old.pieces, &after) {
                self.put(slots, key, old);
                return Err(DaxError::Frontend(e));
            }
            for mut s in kept {
                s.pins = self.pin_images(s.ino, &s.pieces, bs);
                self.put(slots, key + (s.file_offset - old.file_offset), s);
            }
            self.release(old.pins);
        }
        Ok(())
    }

    /// After a request that may have changed inode `ino`'s blocks or size:
    /// resolves each of its mappings again and maps what changed (blocks a
    /// write, fallocate or conversion allocated; a writable mapping's
    /// holes inside a grown file get blocks).
    pub fn refresh(&self, ino: u32) {
        if self.fs.is_read_only() || !self.lock_mapped().contains_key(&ino) {
            return;
        }
        let mut targets: Vec<(u64, u64, u64, bool)> = self
            .lock_slots()
            .iter()
            .filter(|(_, s)| s.ino == ino)
            .map(|(k, s)| (*k, s.file_offset, s.len, s.writable))
            .collect();
        // Writable mappings first: resolving them fills holes, which the
        // read-only ones resolved after them then show.
        targets.sort_by_key(|t| !t.3);
        let Ok(ch) = self.channel() else { return };
        for (key, file_offset, len, writable) in targets {
            let r = self.fs.map_for_dax_with(ino, file_offset, len, writable, |m| {
                let mut slots = self.lock_slots();
                let Some(s) = slots
                    .get_mut(&key)
                    .filter(|s| s.ino == ino && s.file_offset == file_offset && s.len == len && s.writable == writable)
                else {
                    self.fs.release_dax(m.id);
                    return;
                };
                let new = pieces::from_core(key, file_offset, &m.pieces, writable);
                match self.change(&ch, &s.pieces, &new) {
                    Ok(changed) => {
                        s.pieces = new;
                        let old = std::mem::replace(&mut s.pins, vec![m.id]);
                        self.release(old);
                        if changed {
                            self.counters.remaps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        log::error!("dax: remapping inode {ino} at window {key:#x}: {e}");
                        s.pins.push(m.id);
                    }
                }
            });
            if let Err(e) = r {
                log::warn!("dax: resolving inode {ino}'s mapping at window {key:#x} again: {e}");
            }
        }
    }

    /// Called by the core before logical blocks `first..first+count` of
    /// `ino` are freed or moved: every mapping of them shows zeros there
    /// when this returns, and keeps pins only on what it still shows.
    pub fn on_free(&self, ino: u32, first: u64, count: u64) {
        let bs = self.fs.block_size() as u64;
        let from = first.saturating_mul(bs);
        let to = first.saturating_add(count).saturating_mul(bs);
        let ch = self.channel().ok();
        let mut slots = self.lock_slots();
        for (key, s) in slots.iter_mut() {
            if s.ino != ino || s.file_offset >= to || s.file_offset + s.len <= from {
                continue;
            }
            let new = pieces::zero_file_range(&s.pieces, from, to);
            match &ch {
                Some(ch) => match self.change(ch, &s.pieces, &new) {
                    Ok(changed) => {
                        s.pieces = new;
                        if changed {
                            self.counters.remaps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        // Keep the pins: the core then refuses to free.
                        log::error!("dax: unmapping inode {ino} at window {key:#x} before a free: {e}");
                        continue;
                    }
                },
                None => s.pieces = new,
            }
            let old = std::mem::replace(&mut s.pins, self.pin_images(ino, &s.pieces, bs));
            self.release(old);
        }
    }

    /// Called by the core when inode `ino` was freed: its mappings (all
    /// zeros by now) stay until the guest removes them, but belong to no
    /// inode any more, so a new file given the same number never inherits
    /// them.
    pub fn on_inode_freed(&self, ino: u32) {
        for s in self.lock_slots().values_mut().filter(|s| s.ino == ino) {
            self.index(ino, false);
            s.ino = DEAD;
            let old = std::mem::take(&mut s.pins);
            self.release(old);
        }
    }

    /// The session is over (the frontend is gone): forgets every mapping
    /// and releases its pins, and logs the counters.
    pub fn close(&self) {
        let slots = std::mem::take(&mut *self.lock_slots());
        self.lock_mapped().clear();
        for s in slots.into_values() {
            self.release(s.pins);
        }
        self.fs.clear_dax_unmap_owner();
        log::info!("dax counters: {}", self.counters);
    }

    /// Sends the SHMEM messages that turn `old` into `new`: unmaps first
    /// (exactly as mapped), then maps. Returns whether anything changed.
    fn change(&self, ch: &Arc<dyn ShmemChannel>, old: &[Piece], new: &[Piece]) -> io::Result<bool> {
        let (gone, added) = pieces::diff(old, new);
        if gone.is_empty() && added.is_empty() {
            return Ok(false);
        }
        for p in gone {
            ch.unmap(p.shm_offset, p.len)?;
        }
        for p in added {
            self.map_piece(ch, p)?;
        }
        Ok(true)
    }

    fn unmap_pieces(&self, ch: &Arc<dyn ShmemChannel>, pieces: &[Piece]) -> io::Result<()> {
        pieces.iter().try_for_each(|p| ch.unmap(p.shm_offset, p.len))
    }

    fn map_piece(&self, ch: &Arc<dyn ShmemChannel>, p: &Piece) -> io::Result<()> {
        match &p.backing {
            Backing::Image { image_offset, writable } => {
                ch.map(p.shm_offset, p.len, self.image.as_fd(), *image_offset, *writable)
            }
            Backing::Zero => ch.map(p.shm_offset, p.len, self.zeros.fd(), 0, false),
            Backing::Private(m, off) => ch.map(p.shm_offset, p.len, m.fd(), *off, false),
        }
    }

    fn pin_images(&self, ino: u32, pieces: &[Piece], bs: u64) -> Vec<u64> {
        pieces::image_blocks(pieces, bs).into_iter().map(|(f, n)| self.fs.pin_dax(ino, f, n)).collect()
    }

    fn release(&self, pins: Vec<u64>) {
        for id in pins {
            self.fs.release_dax(id);
        }
    }
}

/// Window offsets of the slots overlapping `from..to`.
fn overlapping(slots: &BTreeMap<u64, Slot>, from: u64, to: u64) -> Vec<u64> {
    slots.range(..to).filter(|(k, s)| *k + s.len > from).map(|(k, _)| *k).collect()
}
