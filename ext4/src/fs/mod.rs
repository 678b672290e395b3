//! The mounted file system: opening an image (with journal recovery),
//! group descriptors, metadata blocks and journal handles, with one folder
//! per structure the file system is made of:
//!
//! - [`inode`]: inode records in the inode table, attributes, the orphan
//!   list and open counts, and the per-inode I/O locks;
//! - [`map`]: a file's logical → physical mapping: lookup, the extent tree
//!   and the block map, and allocate → write → set_blocks;
//! - [`data`]: file contents: reads, writes, fallocate, inline data,
//!   symlink targets and DAX mappings;
//! - [`dir`]: directories (linear, htree, inline), the namespace operations
//!   and path resolution;
//! - [`xattr`]: extended attributes and POSIX ACLs;
//! - [`alloc`]: block and inode allocation (bitmaps, group descriptor and
//!   superblock counts);
//! - [`geometry`], [`statfs`], [`journal_file`]: layout facts, statfs, the
//!   journal inode handed down to the journal layer;
//! - [`label`], [`trim`], [`shutdown`]: volume-wide requests (the label,
//!   FITRIM, shutting down as at a crash).

pub mod alloc;
pub mod data;
pub mod dir;
pub mod geometry;
pub mod inode;
pub mod journal_file;
pub mod label;
pub mod map;
pub mod shutdown;
pub mod statfs;
pub mod trim;
pub mod xattr;

use crate::disk::features::{Incompat, RoCompat};
use crate::disk::group_desc::{BG_INODE_UNINIT, GroupDesc};
use crate::disk::inode::Inode;
use crate::disk::superblock::{SUPERBLOCK_OFFSET, Superblock};
use crate::error::{Error, Location, Result};
use crate::io::{BlockCache, BlockDevice, FencedDevice, FileDevice};
use crate::journal::transaction::{DirectWriter, Handle, TxManager};
use geometry::Geometry;
use std::path::Path;
use std::sync::Arc;

/// How to open an image.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Never write to the image. A journal that needs recovery is then
    /// replayed into memory only.
    pub read_only: bool,
    /// Byte budget of the metadata buffer cache.
    pub cache_bytes: usize,
    /// How often [`Ext4::start_commit_timer`] commits the running
    /// transaction (ext4's `commit=`); zero disables the timer.
    pub commit_interval: std::time::Duration,
    /// When reads move atimes (the mount's `relatime`, `strictatime`,
    /// `noatime`, `nodiratime`); see [`inode::atime`].
    pub atime: inode::atime::AtimeOptions,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            cache_bytes: 64 << 20,
            commit_interval: crate::journal::transaction::DEFAULT_COMMIT_INTERVAL,
            atime: Default::default(),
        }
    }
}

/// An open ext4 file system. `Send + Sync`: every method takes `&self` and
/// may be called from many threads at once; reads never take a global lock.
pub struct Ext4 {
    dev: Arc<dyn BlockDevice>,
    sb: Superblock,
    geo: Geometry,
    cache: Arc<BlockCache>,
    csum_seed: Option<u32>,
    read_only: bool,
    recovered: Option<crate::journal::RecoveryReport>,
    /// Transaction state; `None` for a read-only file system.
    tx: Option<Arc<TxManager>>,
    /// Blocks pinned by DAX mappings, and who unmaps them.
    dax: data::dax::DaxState,
    /// Open counts of inodes, for orphan handling.
    open_inodes: inode::orphan::OpenInodes,
    /// Per-inode I/O locks (see [`inode::lock`]): taken before a handle.
    inode_locks: inode::lock::InodeLocks,
    /// Regular files created by this open and never written: their first
    /// write may store them inline (the kernel's in-memory
    /// `EXT4_STATE_MAY_INLINE_DATA`). A leaf lock.
    may_inline: std::sync::Mutex<std::collections::HashSet<u32>>,
    /// The atime policy.
    atime: inode::atime::AtimeOptions,
    /// Atimes decided by reads, not yet written (see [`inode::atime`]).
    atimes: Arc<inode::atime::PendingAtimes>,
    /// The device a writable open writes through, fenced at shutdown.
    fence: Option<Arc<FencedDevice>>,
    /// Set by [`Ext4::shutdown`]: no handle begins, nothing is written.
    shut_down: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Ext4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext4")
            .field("block_size", &self.geo.block_size)
            .field("groups", &self.geo.group_count)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Ext4 {
    /// Opens the image file at `path`.
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Ext4> {
        let dev = FileDevice::open(path.as_ref(), opts.read_only)?;
        Self::open_device(Arc::new(dev), opts)
    }

    /// Opens an image on any block device. Replays the journal first when
    /// the image needs recovery: on the device itself, or in memory for a
    /// read-only open.
    pub fn open_device(dev: Arc<dyn BlockDevice>, opts: &OpenOptions) -> Result<Ext4> {
        let fence = (!opts.read_only).then(|| Arc::new(FencedDevice::new(dev.clone())));
        let dev: Arc<dyn BlockDevice> = match &fence {
            Some(f) => f.clone(),
            None => dev,
        };
        let mut fs = Self::open_replayed(dev, opts)?;
        fs.fence = fence;
        if !fs.read_only {
            let tx = TxManager::new(fs.dev.clone(), fs.geo.block_size, fs.log_writer()?);
            fs.tx = Some(Arc::new(tx.with_cache(fs.cache.clone()).with_commit_interval(opts.commit_interval)));
            fs.process_orphans()?;
            // The kernel never writes its totals home while mounted: a
            // copy taken then has stale ones. The descriptors decide.
            fs.reconcile_free_counts()?;
        }
        Ok(fs)
    }

    /// The writer that makes transactions durable on this image: the jbd2
    /// journal when the image has one, otherwise straight home.
    fn log_writer(&self) -> Result<Box<dyn crate::journal::transaction::LogWriter>> {
        if self.sb.compat().has(crate::disk::features::Compat::HAS_JOURNAL) {
            let (extents, blocks) = self.journal_file()?;
            let info = crate::journal::writer::FsInfo {
                block_size: self.geo.block_size,
                blocks_count: self.geo.blocks_count,
                metadata_csum: self.sb.has_metadata_csum(),
                is_64bit: self.sb.is_64bit(),
            };
            return Ok(Box::new(crate::journal::writer::Jbd2Writer::new(self.dev.clone(), info, extents, blocks)?));
        }
        Ok(Box::new(DirectWriter::new(self.dev.clone(), self.geo.block_size)))
    }

    /// Commits, checkpoints and empties the journal, clears
    /// `needs_recovery` and flushes: the image is then clean, as after an
    /// unmount. The file system stays usable; a later change makes the
    /// image dirty again until the next close. Nothing to do read-only.
    /// The superblock's free counts equal the group descriptors' sums.
    pub fn close(&self) -> Result<()> {
        if self.is_shut_down() {
            // Left as a crash at the shutdown would: the next open recovers.
            return Ok(());
        }
        if let Some(tx) = &self.tx {
            self.flush_atimes()?;
            self.close_orphan_file()?;
            self.reconcile_free_counts()?;
            tx.close()?;
        }
        self.dev.flush()
    }

    fn open_replayed(dev: Arc<dyn BlockDevice>, opts: &OpenOptions) -> Result<Ext4> {
        let fs = Self::load(dev.clone(), opts)?;
        if !fs.sb.incompat().has(Incompat::RECOVER) {
            return Ok(fs);
        }
        let target: Arc<dyn BlockDevice> =
            if opts.read_only { Arc::new(crate::io::OverlayDevice::new(dev)) } else { dev };
        let writable = Self::load(target.clone(), &OpenOptions { read_only: false, ..opts.clone() })?;
        let (extents, blocks) = writable.journal_file()?;
        let report = crate::journal::recover(target.as_ref(), writable.superblock(), extents, blocks)?;
        drop(writable);
        let mut fs = Self::load(target, opts)?;
        fs.recovered = Some(report);
        Ok(fs)
    }

    /// Reads and validates the superblock and group descriptors. Touches
    /// nothing else: no bitmap or inode table is scanned.
    fn load(dev: Arc<dyn BlockDevice>, opts: &OpenOptions) -> Result<Ext4> {
        let mut raw = vec![0u8; Superblock::SIZE];
        dev.read_at(&mut raw, SUPERBLOCK_OFFSET)
            .map_err(|_| Error::OutOfBounds { what: "superblock", location: Location::Superblock })?;
        let (sb, force_ro) = Superblock::parse(&raw, dev.len())?;
        let geo = Geometry::new(&sb);
        let csum_seed = sb.has_metadata_csum().then(|| sb.csum_seed());
        let read_only = opts.read_only || force_ro || sb.ro_compat().has(RoCompat::READONLY);
        let fs = Ext4 {
            dev,
            sb,
            geo,
            cache: Arc::new(BlockCache::new(opts.cache_bytes)),
            csum_seed,
            read_only,
            recovered: None,
            tx: None,
            dax: data::dax::DaxState::default(),
            open_inodes: inode::orphan::OpenInodes::default(),
            inode_locks: inode::lock::InodeLocks::default(),
            may_inline: Default::default(),
            atime: opts.atime,
            atimes: Default::default(),
            fence: None,
            shut_down: Default::default(),
        };
        // Validate every descriptor up front, so that a corrupt table is
        // refused at open rather than in the middle of serving.
        for g in 0..fs.geo.group_count {
            fs.group_desc(g)?;
        }
        Ok(fs)
    }

    /// The descriptor of group `g`, decoded from the group descriptor table
    /// (through the metadata cache: the table blocks are the one source of
    /// truth) and verified.
    pub fn group_desc(&self, g: u32) -> Result<GroupDesc> {
        if g >= self.geo.group_count {
            return Err(Error::InvalidArgument(format!("group {g} out of range")));
        }
        let ds = self.geo.desc_size as usize;
        let per_block = self.geo.descs_per_block();
        let blk = self.geo.descriptor_block(g / per_block);
        let data = self.read_meta_block(blk, "group descriptor table")?;
        let j = (g % per_block) as usize;
        let raw = &data[j * ds..(j + 1) * ds];
        let gd = GroupDesc::decode(raw, ds);
        self.verify_group_desc(g, raw, &gd)?;
        Ok(gd)
    }

    fn verify_group_desc(&self, g: u32, raw: &[u8], gd: &GroupDesc) -> Result<()> {
        let stored = gd.raw.checksum;
        let want = if let Some(seed) = self.csum_seed {
            Some(GroupDesc::checksum_crc32c(seed, g, raw))
        } else if self.sb.has_gdt_csum() {
            Some(GroupDesc::checksum_crc16(&self.sb.uuid, g, raw, self.sb.is_64bit()))
        } else {
            None
        };
        if want.is_some_and(|w| w != stored) {
            return Err(Error::Checksum { what: "group descriptor", location: Location::Group(g) });
        }
        let it = gd.inode_table();
        let it_blocks =
            (self.geo.inodes_per_group as u64 * self.geo.inode_size as u64).div_ceil(self.geo.block_size as u64);
        let in_range = |b: u64| self.geo.block_in_range(b);
        if !in_range(gd.block_bitmap())
            || !in_range(gd.inode_bitmap())
            || !in_range(it)
            || !in_range(it + it_blocks - 1)
        {
            return Err(Error::corrupt(
                "group descriptor",
                Location::Group(g),
                "bitmap or inode table outside the file system",
            ));
        }
        Ok(())
    }

    /// The superblock as loaded.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Derived layout facts.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.geo.block_size
    }

    /// The metadata_csum seed, when metadata checksums are enabled.
    pub fn csum_seed(&self) -> Option<u32> {
        self.csum_seed
    }

    /// Whether the file system refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// What journal recovery did when this image was opened, if it ran.
    pub fn recovery_report(&self) -> Option<&crate::journal::RecoveryReport> {
        self.recovered.as_ref()
    }

    /// The underlying device.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// The metadata buffer cache.
    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// Reads metadata block `blk` through the buffer cache. `what` names the
    /// structure for error messages.
    ///
    /// Order matters: the fill ticket is taken before the dirty map is
    /// consulted, so a version published after that point makes the fill
    /// of the (then older) device copy a no-op (see [`crate::io::cache`]).
    pub fn read_meta_block(&self, blk: u64, what: &'static str) -> Result<Arc<[u8]>> {
        let ticket = self.cache.fill_ticket(blk);
        if let Some(b) = self.tx.as_ref().and_then(|tx| tx.dirty_block(blk)) {
            return Ok(b);
        }
        if let Some(b) = self.cache.get(blk) {
            return Ok(b);
        }
        let mut buf = vec![0u8; self.geo.block_size as usize];
        self.read_block_into(blk, &mut buf, what)?;
        let data: Arc<[u8]> = buf.into();
        self.cache.fill(ticket, data.clone());
        Ok(data)
    }

    /// Reads block `blk` into `buf` (one block long) without caching: for file data.
    pub fn read_block_into(&self, blk: u64, buf: &mut [u8], what: &'static str) -> Result<()> {
        let bs = self.geo.block_size as u64;
        if !self.geo.block_in_range(blk) {
            return Err(Error::OutOfBounds { what, location: Location::Block(blk) });
        }
        self.dev.read_at(buf, blk * bs).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => {
                Error::OutOfBounds { what, location: Location::Block(blk) }
            }
            other => other,
        })
    }

    /// Starts a file-system operation that changes metadata. Only one runs
    /// at a time; readers are never blocked by it.
    pub fn begin(&self) -> Result<Handle<'_>> {
        if self.is_shut_down() {
            return Err(Error::ShutDown);
        }
        Ok(self.tx()?.begin())
    }

    /// Open counts of inodes.
    pub(crate) fn open_inodes(&self) -> &inode::orphan::OpenInodes {
        &self.open_inodes
    }

    /// Locks inode `ino`'s I/O lock in `mode` (see [`inode::lock`] for the
    /// rule and the lock order: never while a handle is open).
    pub(crate) fn lock_inode(&self, ino: u32, mode: inode::lock::LockMode) -> inode::lock::InodeGuard<'_> {
        self.inode_locks.lock(ino, mode)
    }

    /// The per-inode I/O locks, for tests that must know when an operation
    /// waits for one.
    pub fn inode_locks(&self) -> &inode::lock::InodeLocks {
        &self.inode_locks
    }

    /// Inodes whose first write may store them inline (see `may_inline`).
    pub(crate) fn may_inline(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u32>> {
        self.may_inline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// DAX pin state.
    pub(crate) fn dax(&self) -> &data::dax::DaxState {
        &self.dax
    }

    /// The transaction manager, or [`Error::ReadOnly`].
    pub fn tx(&self) -> Result<&TxManager> {
        self.tx.as_deref().ok_or(Error::ReadOnly)
    }

    /// Metadata block `blk` as handle `h` sees it (its own staged changes first).
    pub fn meta_block_in(&self, h: &Handle<'_>, blk: u64, what: &'static str) -> Result<Arc<[u8]>> {
        match h.staged_or_dirty(blk) {
            Some(b) => Ok(b),
            None => self.read_meta_block(blk, what),
        }
    }

    /// Commits the running transaction and writes everything home: after
    /// this the image on disk is complete and consistent.
    pub fn sync(&self) -> Result<()> {
        match &self.tx {
            Some(tx) => {
                self.flush_atimes()?;
                tx.sync_all()
            }
            None => Ok(()),
        }
    }

    /// Starts committing the running transaction every
    /// [`OpenOptions::commit_interval`] (nothing is started for an interval
    /// of zero), pending atimes written into it first; see
    /// [`CommitTimer`](crate::journal::commit_timer::CommitTimer). The
    /// timer holds the file system only weakly. [`Error::ReadOnly`] for a
    /// read-only file system.
    pub fn start_commit_timer(self: &Arc<Self>) -> Result<crate::journal::commit_timer::CommitTimer> {
        let tx = self.tx.as_ref().ok_or(Error::ReadOnly)?;
        let (weak_tx, weak_fs, atimes) = (Arc::downgrade(tx), Arc::downgrade(self), self.atimes.clone());
        crate::journal::commit_timer::CommitTimer::start(tx.commit_interval(), move || {
            // The file system is held only while atimes are written.
            let flushed = match atimes.is_empty() {
                true => Ok(()),
                false => match weak_fs.upgrade() {
                    Some(fs) => fs.flush_atimes(),
                    None => return false,
                },
            };
            let Some(tx) = weak_tx.upgrade() else { return false };
            if let Err(e) = flushed.and_then(|()| tx.commit().map(drop)) {
                log::warn!("periodic journal commit failed: {e}");
            }
            true
        })
    }

    /// Makes every completed operation durable, as fsync(2) needs: commits
    /// the running transaction (one commit, the log then holds it; jbd2's
    /// fsync waits for no more), or, when there is nothing to commit,
    /// flushes the file data written since. Checkpointing is left to the
    /// moment the log needs room, to [`Ext4::sync`] and to close.
    pub fn fsync(&self) -> Result<()> {
        let Some(tx) = &self.tx else { return Ok(()) };
        self.flush_atimes()?;
        if tx.commit()?.is_none() {
            self.dev.flush()?;
        }
        Ok(())
    }

    /// Reads inode `ino`, verifying its checksum. An inode in a group whose
    /// inode table was never initialised reads as all zeros (unused). A
    /// pending atime ([`inode::atime`]) shows in the result.
    pub fn read_inode(&self, ino: u32) -> Result<Inode> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(Error::InvalidArgument(format!("inode number {ino} out of range")));
        }
        let (g, idx) = self.geo.inode_location(ino);
        let gd = self.group_desc(g)?;
        let isz = self.geo.inode_size as usize;
        let csum_groups = self.csum_seed.is_some() || self.sb.has_gdt_csum();
        if csum_groups && gd.flags() & BG_INODE_UNINIT != 0 {
            return Inode::parse(ino, &vec![0u8; isz], None);
        }
        let byte = idx as u64 * isz as u64;
        let bs = self.geo.block_size as u64;
        let blk = gd.inode_table() + byte / bs;
        let data = self.read_meta_block(blk, "inode table")?;
        let off = (byte % bs) as usize;
        let bytes = &data[off..off + isz];
        // A never-used inode record (all zeros) carries no checksum.
        let seed = self.csum_seed.filter(|_| bytes.iter().any(|&b| b != 0));
        let mut inode = Inode::parse(ino, bytes, seed)?;
        self.overlay_atime(&mut inode);
        Ok(inode)
    }

    /// Reads inode `ino` and checks that it is in use (a live file), as
    /// every reference from a directory entry must be.
    pub fn read_live_inode(&self, ino: u32) -> Result<Inode> {
        let inode = self.read_inode(ino)?;
        if inode.links_count() == 0 && inode.mode() == 0 || inode.file_type().is_none() {
            return Err(Error::corrupt("inode", Location::Inode(ino), "referenced inode is not in use"));
        }
        Ok(inode)
    }
}
