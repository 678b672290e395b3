//! The ext4 adapter: FUSE semantics over the ext4 core. It maps node ids
//! and handles to inodes, checks permissions like the kernel's VFS, keeps
//! POSIX locks, and turns core errors into errno values. The protocol
//! layer (`crate::fuse`) decodes requests and calls it with typed
//! arguments; one module per operation family.

pub mod access;
pub mod attr;
pub mod errno;
pub mod handles;
pub mod locks;
pub mod nodes;
pub mod range_map;

mod atime;
mod dir_ops;
mod file_ops;
mod misc_ops;
mod namespace_ops;
mod xattr_ops;

pub use misc_ops::{
    FITRIM, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR, FS_IOC_GETFLAGS, FS_IOC_GETFSLABEL, FS_IOC_SETFLAGS,
    FS_IOC_SETFSLABEL, FS_IOC_SHUTDOWN, FS_IOC32_GETFLAGS, FS_IOC32_SETFLAGS, FSLABEL_MAX, FSTRIM_RANGE_SIZE,
    FSXATTR_SIZE,
};
pub use xattr_ops::XattrReply;

use access::{Caller, GroupSource};
use attr::CachePolicy;
use errno::{Errno, FsResult};
use ext4::disk::inode::{FL_APPEND, FL_IMMUTABLE};
use ext4::{Ext4, Inode};
use handles::HandleTable;
use locks::LockTable;
use nodes::NodeTable;
use std::sync::{Arc, Mutex, OnceLock};

/// A way to tell the client that it must drop the attributes it cached for
/// a node: the daemon changed them without a reply that carries them (the
/// host's /dev/fuse writes FUSE_NOTIFY_INVAL_INODE). Called before the
/// reply of the request that made the change, so the caller's next `stat`
/// asks again.
pub trait Invalidator: Send + Sync {
    /// Drops the cached attributes of `node` (not its page cache).
    fn inval_attrs(&self, node: u64);
}

/// Longest name a directory entry can hold.
const NAME_MAX: usize = 255;

/// Stripes of the locks that make a removal or rename's permission
/// check and the change itself one step (see [`DirStripes`]).
const DIR_STRIPES: usize = 64;

/// Locks by directory inode, striped. UNLINK, RMDIR and RENAME hold the
/// stripes of the directories whose names they remove or replace from
/// their look at the victim (sticky and owner checks) until the core has
/// changed the directory: every such change goes through them (the image
/// lock keeps other processes out), so no other removal or rename can
/// swap the victim in between — as the VFS holds the parent's i_rwsem
/// across `may_delete` and the unlink.
struct DirStripes(Vec<Mutex<()>>);

impl DirStripes {
    fn new() -> Self {
        DirStripes((0..DIR_STRIPES).map(|_| Mutex::new(())).collect())
    }

    /// Locks the stripes of directories `a` and `b`, in stripe order.
    fn lock(&self, a: u32, b: u32) -> (std::sync::MutexGuard<'_, ()>, Option<std::sync::MutexGuard<'_, ()>>) {
        let (i, j) = (a as usize % DIR_STRIPES, b as usize % DIR_STRIPES);
        let (lo, hi) = (i.min(j), i.max(j));
        let first = self.0[lo].lock().unwrap_or_else(|p| p.into_inner());
        let second = (hi != lo).then(|| self.0[hi].lock().unwrap_or_else(|p| p.into_inner()));
        (first, second)
    }
}

/// Settings of the adapter.
#[derive(Debug, Clone, Copy)]
pub struct AdapterOptions {
    /// What the client may cache.
    pub cache: CachePolicy,
    /// The client runs a writeback cache (negotiated FUSE_WRITEBACK_CACHE).
    pub writeback: bool,
    /// The transport has a DAX window, and this policy picks the files
    /// marked for it (FUSE_ATTR_DAX); `None` without a window.
    pub dax: Option<crate::dax::InodeDax>,
    /// Most file and directory handles open at once (EMFILE beyond).
    pub max_handles: usize,
    /// Most POSIX lock records held at once (ENOLCK beyond).
    pub max_lock_records: usize,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        AdapterOptions {
            cache: CachePolicy::default(),
            writeback: false,
            dax: None,
            max_handles: handles::DEFAULT_MAX_HANDLES,
            max_lock_records: locks::DEFAULT_MAX_RECORDS,
        }
    }
}

/// FUSE file system semantics over one open ext4 image.
pub struct Ext4Fs {
    fs: Arc<Ext4>,
    opts: AdapterOptions,
    nodes: NodeTable,
    handles: HandleTable,
    locks: LockTable,
    groups: Box<dyn GroupSource>,
    dir_stripes: DirStripes,
    invalidator: OnceLock<Arc<dyn Invalidator>>,
}

impl Ext4Fs {
    /// An adapter over `fs`; supplementary groups of callers come from `groups`.
    pub fn new(fs: Arc<Ext4>, opts: AdapterOptions, groups: Box<dyn GroupSource>) -> Self {
        Ext4Fs {
            fs,
            opts,
            nodes: NodeTable::default(),
            handles: HandleTable::new(opts.max_handles),
            locks: LockTable::new(opts.max_lock_records),
            groups,
            dir_stripes: DirStripes::new(),
            invalidator: OnceLock::new(),
        }
    }

    /// Sets how the client is told of attribute changes no reply carries
    /// (once; without one, such changes show when the client's attribute
    /// timeout ends).
    pub fn set_invalidator(&self, inv: Arc<dyn Invalidator>) {
        let _ = self.invalidator.set(inv);
    }

    /// Inode `ino`'s attributes changed beyond what the reply says.
    fn attrs_changed(&self, ino: u32) {
        if let Some(inv) = self.invalidator.get() {
            inv.inval_attrs(nodes::node_of(ino));
        }
    }

    /// The inode behind node `node` (looked up by the client, or the root).
    pub fn inode_of_node(&self, node: u64) -> FsResult<u32> {
        self.nodes.inode_of(node)
    }

    /// The ext4 file system served.
    pub fn ext4(&self) -> &Arc<Ext4> {
        &self.fs
    }

    /// The caller of a request with these ids.
    pub fn caller(&self, uid: u32, gid: u32, pid: u32) -> Caller<'_> {
        Caller::new(uid, gid, pid, self.groups.as_ref())
    }

    /// Number of nodes the client holds.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of handles the client holds open.
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// Number of POSIX lock records held.
    pub fn lock_records(&self) -> usize {
        self.locks.records()
    }

    /// Releases every node, handle and lock the client held (DESTROY, or
    /// the transport went away): orphans whose last user that was are
    /// freed, blocked lock requests give up.
    pub fn end_session(&self) {
        self.locks.end_session();
        for h in self.handles.drain() {
            if let Err(e) = self.fs.close_inode(h.ino) {
                log::error!("closing inode {} at session end: {e}", h.ino);
            }
        }
        self.nodes.forget_all(&self.fs);
    }

    /// The inode behind `node`, read fresh.
    fn inode(&self, node: u64) -> FsResult<Inode> {
        let ino = self.nodes.inode_of(node)?;
        let inode = self.fs.read_inode(ino)?;
        if inode.file_type().is_none() {
            return Err(Errno::ESTALE);
        }
        Ok(inode)
    }

    /// The inode behind `node`, which must be a directory.
    fn dir(&self, node: u64) -> FsResult<Inode> {
        let d = self.inode(node)?;
        if !d.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(d)
    }
}

/// Checks a name from the client: not empty, no '/', at most 255 bytes.
fn check_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// EPERM for an immutable or append-only inode (`IS_IMMUTABLE || IS_APPEND`).
fn check_not_pinned(inode: &Inode) -> FsResult<()> {
    if inode.flags() & (FL_IMMUTABLE | FL_APPEND) != 0 { Err(Errno::EPERM) } else { Ok(()) }
}
