//! The FUSE server: decodes one request, checks that it is whole, runs it
//! on the ext4 adapter and encodes the reply. INIT negotiation lives here.
//! Every malformed request (short, lying about its length, an unknown
//! opcode, a name without NUL, an unknown node or handle) gets an error
//! reply and changes nothing; the server keeps serving.

use super::dispatch::Payload;
use super::wire::{ArgReader, ReplyBuf, WireError, count_bounced};
use crate::adapter::Ext4Fs;
use crate::adapter::errno::{Errno, FsResult};
use crate::adapter::{
    FITRIM, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR, FS_IOC_GETFLAGS, FS_IOC_GETFSLABEL, FS_IOC_SETFLAGS,
    FS_IOC_SETFSLABEL, FS_IOC_SHUTDOWN, FS_IOC32_GETFLAGS, FS_IOC32_SETFLAGS, FSLABEL_MAX, FSTRIM_RANGE_SIZE,
    FSXATTR_SIZE, XattrReply,
};
use crate::dax::DaxWindow;
use ext4::disk::inode::{FL_DIRSYNC, FL_SYNC};
use ext4::fs::data::io::{DataSource, SliceSource};
use fuse_abi::linux::*;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use zerocopy::FromBytes;

/// Oldest protocol minor served (7.31: the first with everything virtio-fs needs).
pub const MIN_MINOR: u32 = 31;
/// Newest protocol minor spoken.
pub const MAX_MINOR: u32 = 40;
/// Size of a request header.
pub const IN_HEADER_SIZE: usize = std::mem::size_of::<fuse_in_header>();
/// Page size the protocol counts in.
const PAGE: u32 = 4096;

/// Protocol settings of a server.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Largest WRITE (and READ) payload; a multiple of the page size.
    pub max_write: u32,
    /// Offer the client's writeback cache (FUSE_WRITEBACK_CACHE).
    pub writeback: bool,
    /// The transport has a DAX window: offer map alignment and per-inode DAX.
    pub dax: bool,
    /// Most F_SETLKW requests waiting at once, each on a thread of its own
    /// (ENOLCK beyond, answered before any thread is started).
    pub max_lock_waiters: usize,
}

/// Default of [`ServerOptions::max_lock_waiters`].
pub const DEFAULT_MAX_LOCK_WAITERS: usize = 1024;

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions { max_write: 1 << 20, writeback: false, dax: false, max_lock_waiters: DEFAULT_MAX_LOCK_WAITERS }
    }
}

impl ServerOptions {
    /// Size of the buffer a transport needs for the largest request.
    pub fn request_buffer_size(&self) -> usize {
        self.max_write as usize + PAGE as usize
    }
}

/// What became of one request.
pub enum Outcome<'a> {
    /// Send these reply bytes.
    Reply(&'a [u8]),
    /// The request takes no reply (FORGET, BATCH_FORGET, INTERRUPT, or a
    /// request too short to name itself).
    NoReply,
    /// A request that may block for long (F_SETLKW): run the job off the
    /// worker pool, then send the reply it builds.
    Deferred(DeferredJob),
}

/// A request to finish on its own thread; it writes its whole reply into
/// the buffer it is given.
pub type DeferredJob = Box<dyn FnOnce(&mut ReplyBuf) + Send>;

/// One of the server's F_SETLKW slots, given back when dropped (the job
/// finished, panicked, or was never run).
struct WaiterSlot(Arc<Server>);

impl WaiterSlot {
    /// Takes a slot; ENOLCK when [`ServerOptions::max_lock_waiters`] are taken.
    fn take(server: &Arc<Server>) -> FsResult<WaiterSlot> {
        let max = server.opts.max_lock_waiters;
        server
            .waiters
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map_err(|_| Errno::ENOLCK)?;
        Ok(WaiterSlot(server.clone()))
    }
}

impl Drop for WaiterSlot {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A FUSE session over one ext4 adapter.
pub struct Server {
    fs: Arc<Ext4Fs>,
    opts: ServerOptions,
    initialized: AtomicBool,
    destroyed: AtomicBool,
    minor: AtomicU32,
    setxattr_ext: AtomicBool,
    /// FUSE_CREATE_SUPP_GROUP was negotiated: create-like requests may
    /// carry the caller's supplementary group of the parent directory.
    create_supp_group: AtomicBool,
    /// F_SETLKW requests deferred and not finished.
    waiters: AtomicUsize,
    /// The transport's DAX window (virtio-fs with a cache window).
    window: OnceLock<Arc<DaxWindow>>,
}

/// The first `len` bytes of a [`DataSource`].
struct Prefix<'a> {
    src: &'a mut dyn DataSource,
    len: usize,
}

impl DataSource for Prefix<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn write_to(&mut self, at: usize, len: usize, dev: &dyn ext4::io::BlockDevice, offset: u64) -> ext4::Result<()> {
        assert!(at + len <= self.len, "write past a source's end");
        self.src.write_to(at, len, dev, offset)
    }
    fn copy_to(&mut self, at: usize, buf: &mut [u8]) -> ext4::Result<()> {
        assert!(at + buf.len() <= self.len, "copy past a source's end");
        self.src.copy_to(at, buf)
    }
}

/// What a shut-down file system still answers, as the kernel's ext4 after
/// EXT4_IOC_SHUTDOWN: lookups and attributes of inodes (which it serves
/// from memory), statfs, listing directories, locks, ioctls (flags, a
/// second shutdown), and everything that only lets go (release, flush,
/// forget). Opening a file, reading it and every change fail with EIO.
fn answered_when_shut_down(op: fuse_opcode) -> bool {
    use fuse_opcode::*;
    matches!(
        op,
        FUSE_INIT
            | FUSE_DESTROY
            | FUSE_LOOKUP
            | FUSE_GETATTR
            | FUSE_STATX
            | FUSE_STATFS
            | FUSE_OPENDIR
            | FUSE_READDIR
            | FUSE_READDIRPLUS
            | FUSE_ACCESS
            | FUSE_GETLK
            | FUSE_SETLK
            | FUSE_IOCTL
            | FUSE_FLUSH
            | FUSE_RELEASE
            | FUSE_RELEASEDIR
            | FUSE_REMOVEMAPPING
    )
}

/// The parts of a request header every operation uses.
struct Req<'a> {
    unique: u64,
    node: u64,
    uid: u32,
    gid: u32,
    pid: u32,
    /// Supplementary groups the request carried (FUSE_EXT_GROUPS on a
    /// create-like request, once FUSE_CREATE_SUPP_GROUP is negotiated).
    groups: Vec<u32>,
    args: ArgReader<'a>,
}

/// The requests that create an inode: the kernel sends FUSE_EXT_GROUPS
/// only with these, and only these may use it.
fn creates(op: fuse_opcode) -> bool {
    use fuse_opcode::*;
    matches!(op, FUSE_CREATE | FUSE_MKNOD | FUSE_MKDIR | FUSE_SYMLINK | FUSE_TMPFILE)
}

impl From<WireError> for Errno {
    fn from(e: WireError) -> Errno {
        log::warn!("malformed request: {e}");
        Errno::EINVAL
    }
}

impl Server {
    /// A server for `fs`.
    pub fn new(fs: Arc<Ext4Fs>, opts: ServerOptions) -> Self {
        Server {
            fs,
            opts,
            initialized: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            minor: AtomicU32::new(0),
            setxattr_ext: AtomicBool::new(false),
            create_supp_group: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            window: OnceLock::new(),
        }
    }

    /// Gives the server the transport's DAX window (before the session
    /// starts); FUSE_SETUPMAPPING and FUSE_REMOVEMAPPING are ENOSYS without.
    pub fn set_dax_window(&self, window: Arc<DaxWindow>) {
        if self.window.set(window).is_err() {
            log::warn!("a second DAX window for one server ignored");
        }
    }

    /// The DAX window, if the transport has one.
    pub fn dax_window(&self) -> Option<&Arc<DaxWindow>> {
        self.window.get()
    }

    /// The adapter served.
    pub fn fs(&self) -> &Arc<Ext4Fs> {
        &self.fs
    }

    /// The protocol settings.
    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    /// Whether INIT has been answered (the session is serving).
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }

    /// F_SETLKW requests deferred to threads of their own and not finished.
    pub fn lock_waiters(&self) -> usize {
        self.waiters.load(Ordering::Acquire)
    }

    /// Whether the client sent DESTROY (the session is over).
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// Handles one request (`buf` holds exactly the bytes received) and
    /// returns the reply to send, built in `out`.
    pub fn handle<'o>(self: &Arc<Self>, buf: &[u8], out: &'o mut ReplyBuf) -> Outcome<'o> {
        self.handle_with(buf, &mut Payload::default(), out)
    }

    /// Handles one request whose file payload may stay with the transport:
    /// `buf` holds the header and arguments (copied out of the client's
    /// memory), `payload` the WRITE data left in place and the place for
    /// READ data. The reply's buffered part is built in `out`; READ data
    /// given to `payload.read` counts in its header's length.
    pub fn handle_with<'o>(
        self: &Arc<Self>,
        buf: &[u8],
        payload: &mut Payload<'_>,
        out: &'o mut ReplyBuf,
    ) -> Outcome<'o> {
        let Ok((hdr, _)) = fuse_in_header::read_from_prefix(buf) else {
            log::warn!("request of {} bytes is shorter than a header; dropped", buf.len());
            return Outcome::NoReply;
        };
        out.start();
        let ext = hdr.total_extlen as usize * 8;
        let kept = payload.write.as_ref().map_or(0, |w| w.len());
        let have = buf.len().checked_add(kept);
        if have != Some(hdr.len as usize) || (hdr.len as usize) < IN_HEADER_SIZE + ext || kept > hdr.len as usize {
            log::warn!("request {} says {} bytes but has {}+{kept}", hdr.unique, hdr.len, buf.len());
            return Outcome::Reply(out.finish(hdr.unique, -libc::EINVAL));
        }
        if kept != 0 && hdr.opcode != fuse_opcode::FUSE_WRITE as u32 {
            log::warn!("request {} (opcode {}) came with a WRITE payload", hdr.unique, hdr.opcode);
            return Outcome::Reply(out.finish(hdr.unique, -libc::EINVAL));
        }
        // The arguments end where the request bytes end (a WRITE payload kept
        // with the transport is not among them), before the extensions.
        let args_end = (hdr.len as usize - ext).min(buf.len());
        if args_end < IN_HEADER_SIZE {
            log::warn!("request {}: extensions overlap its arguments", hdr.unique);
            return Outcome::Reply(out.finish(hdr.unique, -libc::EINVAL));
        }
        let op = fuse_opcode::try_from(hdr.opcode).ok();
        // Extensions follow the arguments (a WRITE, whose data the
        // transport may keep, carries none the daemon uses).
        let groups = if kept == 0 && self.create_supp_group.load(Ordering::Relaxed) && op.is_some_and(creates) {
            match super::ext::supp_groups(&buf[args_end..]) {
                Some(g) => g,
                None => {
                    log::warn!("request {}: malformed extensions", hdr.unique);
                    return Outcome::Reply(out.finish(hdr.unique, -libc::EINVAL));
                }
            }
        } else {
            Vec::new()
        };
        let req = Req {
            unique: hdr.unique,
            node: hdr.nodeid,
            uid: hdr.uid,
            gid: hdr.gid,
            pid: hdr.pid,
            groups,
            args: ArgReader::new(&buf[IN_HEADER_SIZE..args_end]),
        };
        if op != Some(fuse_opcode::FUSE_INIT) && !self.initialized.load(Ordering::Acquire) {
            return Outcome::Reply(out.finish(hdr.unique, -libc::EIO));
        }
        let result = match op {
            Some(fuse_opcode::FUSE_FORGET) => {
                let mut a = req.args;
                if let Ok(f) = a.read::<fuse_forget_in>("forget_in") {
                    self.fs.forget(req.node, f.nlookup);
                }
                return Outcome::NoReply;
            }
            Some(fuse_opcode::FUSE_BATCH_FORGET) => {
                self.batch_forget(req.args);
                return Outcome::NoReply;
            }
            Some(fuse_opcode::FUSE_INTERRUPT) => {
                let mut a = req.args;
                if let Ok(i) = a.read::<fuse_interrupt_in>("interrupt_in") {
                    self.fs.interrupt(i.unique);
                }
                return Outcome::NoReply;
            }
            Some(fuse_opcode::FUSE_SETLKW) => match self.setlkw(&req) {
                Ok(job) => return Outcome::Deferred(job),
                Err(e) => Err(e),
            },
            Some(op) if self.fs.is_shut_down() && !answered_when_shut_down(op) => Err(Errno::EIO),
            Some(op) => {
                let (node, args) = (req.node, req.args);
                self.dispatch(op, req, payload, out).and_then(|()| self.synchronous(op, node, args))
            }
            None => {
                log::debug!("unknown opcode {}", hdr.opcode);
                Err(Errno::ENOSYS)
            }
        };
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("{op:?} node {} unique {}: {:?}", hdr.nodeid, hdr.unique, result.map(|_| out.body_len()));
        }
        Outcome::Reply(match result {
            Ok(()) => out.finish(hdr.unique, 0),
            Err(Errno(e)) => out.finish(hdr.unique, -e),
        })
    }

    fn batch_forget(&self, mut a: ArgReader<'_>) {
        let Ok(b) = a.read::<fuse_batch_forget_in>("batch_forget_in") else { return };
        for _ in 0..b.count {
            let Ok(f) = a.read::<fuse_forget_one>("forget_one") else {
                log::warn!("BATCH_FORGET claims {} entries but holds fewer", b.count);
                return;
            };
            self.fs.forget(f.nodeid, f.nlookup);
        }
    }

    fn setlkw(self: &Arc<Self>, req: &Req<'_>) -> FsResult<DeferredJob> {
        let mut a = req.args;
        let lk: fuse_lk_in = a.read("lk_in")?;
        if lk.lk_flags & FUSE_LK_FLOCK != 0 {
            return Err(Errno::ENOSYS);
        }
        // Counted before the caller starts a thread for it.
        let slot = WaiterSlot::take(self)?;
        let (me, node, unique) = (self.clone(), req.node, req.unique);
        Ok(Box::new(move |out: &mut ReplyBuf| {
            let _slot = slot;
            out.start();
            let e = match me.fs.setlk(node, &lk, true, unique) {
                Ok(()) => 0,
                Err(Errno(e)) => -e,
            };
            out.finish(unique, e);
        }))
    }

    /// chattr +S and +D: a request that changed a file flagged FL_SYNC,
    /// or the entries of a directory flagged FL_SYNC or FL_DIRSYNC, is
    /// durable before its reply (ext4's `IS_SYNC` and `IS_DIRSYNC`). WRITE
    /// does it itself ([`Ext4Fs::write_from`]), with the inode it read.
    fn synchronous(&self, op: fuse_opcode, node: u64, mut a: ArgReader<'_>) -> FsResult<()> {
        use fuse_opcode::*;
        let dir_flags = FL_SYNC | FL_DIRSYNC;
        match op {
            FUSE_SETATTR | FUSE_FALLOCATE | FUSE_SETXATTR | FUSE_REMOVEXATTR => {
                self.fs.sync_if_flagged(&[node], FL_SYNC)
            }
            FUSE_COPY_FILE_RANGE => {
                let cp: fuse_copy_file_range_in = a.read("copy_file_range_in")?;
                self.fs.sync_if_flagged(&[cp.nodeid_out], FL_SYNC)
            }
            FUSE_CREATE | FUSE_MKNOD | FUSE_MKDIR | FUSE_SYMLINK | FUSE_UNLINK | FUSE_RMDIR | FUSE_LINK
            | FUSE_TMPFILE => self.fs.sync_if_flagged(&[node], dir_flags),
            FUSE_RENAME => {
                let r: fuse_rename_in = a.read("rename_in")?;
                self.fs.sync_if_flagged(&[node, r.newdir], dir_flags)
            }
            FUSE_RENAME2 => {
                let r: fuse_rename2_in = a.read("rename2_in")?;
                self.fs.sync_if_flagged(&[node, r.newdir], dir_flags)
            }
            _ => Ok(()),
        }
    }

    fn dispatch(&self, op: fuse_opcode, req: Req<'_>, payload: &mut Payload<'_>, out: &mut ReplyBuf) -> FsResult<()> {
        use fuse_opcode::*;
        let fs = &self.fs;
        let caller = fs.caller(req.uid, req.gid, req.pid).with_groups(req.groups);
        let c = &caller;
        let node = req.node;
        let mut a = req.args;
        match op {
            FUSE_INIT => self.init(&mut a, out),
            FUSE_DESTROY => {
                fs.end_session();
                self.destroyed.store(true, Ordering::Release);
                Ok(())
            }
            FUSE_LOOKUP => {
                let name = a.read_cstr("name")?;
                out.push(&fs.lookup(c, node, name)?);
                Ok(())
            }
            FUSE_GETATTR => {
                out.push(&fs.getattr(node)?);
                Ok(())
            }
            FUSE_STATX => {
                let _: fuse_statx_in = a.read("statx_in")?;
                out.push(&fs.statx(node)?);
                Ok(())
            }
            FUSE_SETATTR => {
                let s: fuse_setattr_in = a.read("setattr_in")?;
                out.push(&fs.setattr(c, node, &s)?);
                if s.valid & FATTR_SIZE != 0 {
                    self.refresh_mapped(node);
                }
                Ok(())
            }
            FUSE_READLINK => {
                out.push_bytes(&fs.readlink(node)?);
                fs.accessed(node, 0);
                Ok(())
            }
            FUSE_SYMLINK => {
                let name = a.read_cstr("name")?;
                let target = a.read_cstr("link target")?;
                out.push(&fs.symlink(c, node, name, target)?);
                Ok(())
            }
            FUSE_MKNOD => {
                let m: fuse_mknod_in = a.read("mknod_in")?;
                let name = a.read_cstr("name")?;
                out.push(&fs.mknod(c, node, name, m.mode, m.rdev, m.umask)?);
                Ok(())
            }
            FUSE_MKDIR => {
                let m: fuse_mkdir_in = a.read("mkdir_in")?;
                let name = a.read_cstr("name")?;
                out.push(&fs.mkdir(c, node, name, m.mode, m.umask)?);
                Ok(())
            }
            FUSE_UNLINK => fs.unlink(c, node, a.read_cstr("name")?),
            FUSE_RMDIR => fs.rmdir(c, node, a.read_cstr("name")?),
            FUSE_RENAME => {
                let r: fuse_rename_in = a.read("rename_in")?;
                let (old, new) = (a.read_cstr("old name")?, a.read_cstr("new name")?);
                fs.rename(c, node, old, r.newdir, new, 0)
            }
            FUSE_RENAME2 => {
                let r: fuse_rename2_in = a.read("rename2_in")?;
                let (old, new) = (a.read_cstr("old name")?, a.read_cstr("new name")?);
                fs.rename(c, node, old, r.newdir, new, r.flags)
            }
            FUSE_LINK => {
                let l: fuse_link_in = a.read("link_in")?;
                let name = a.read_cstr("name")?;
                out.push(&fs.link(c, l.oldnodeid, node, name)?);
                Ok(())
            }
            FUSE_OPEN => {
                let o: fuse_open_in = a.read("open_in")?;
                out.push(&fs.open(c, node, o.flags, o.open_flags)?);
                Ok(())
            }
            FUSE_READ => {
                let r: fuse_read_in = a.read("read_in")?;
                let size = r.size.min(self.opts.max_write);
                match payload.read.as_deref_mut() {
                    Some(sink) => fs.read_to(node, r.fh, r.offset, size, sink, out)?,
                    None => fs.read(node, r.fh, r.offset, size, out)?,
                }
                fs.accessed(node, r.flags);
                Ok(())
            }
            FUSE_WRITE => {
                let w: fuse_write_in = a.read("write_in")?;
                let n = match payload.write.as_deref_mut() {
                    Some(src) => {
                        if src.len() < w.size as usize {
                            log::warn!("WRITE of {} bytes carries {}", w.size, src.len());
                            return Err(Errno::EINVAL);
                        }
                        fs.write_from(
                            c,
                            node,
                            w.fh,
                            w.offset,
                            &mut Prefix { src, len: w.size as usize },
                            w.write_flags,
                        )?
                    }
                    None => {
                        let data = a.read_bytes(w.size as usize, "write data")?;
                        count_bounced(data.len());
                        fs.write_from(c, node, w.fh, w.offset, &mut SliceSource(data), w.write_flags)?
                    }
                };
                self.refresh_mapped(node);
                out.push(&fuse_write_out { size: n, padding: 0 });
                Ok(())
            }
            FUSE_STATFS => {
                out.push(&fuse_statfs_out { st: fs.statfs()? });
                Ok(())
            }
            FUSE_RELEASE => {
                let r: fuse_release_in = a.read("release_in")?;
                fs.release(node, r.fh, r.release_flags, r.lock_owner)
            }
            FUSE_FLUSH => {
                let f: fuse_flush_in = a.read("flush_in")?;
                fs.flush(node, f.fh, f.lock_owner)
            }
            FUSE_FSYNC | FUSE_FSYNCDIR => {
                let _: fuse_fsync_in = a.read("fsync_in")?;
                fs.inode_exists(node)?;
                fs.fsync()
            }
            FUSE_SYNCFS => fs.sync(),
            FUSE_SETXATTR => {
                let (size, flags, ext) = if self.setxattr_ext.load(Ordering::Relaxed) {
                    let s: fuse_setxattr_in = a.read("setxattr_in")?;
                    (s.size, s.flags, s.setxattr_flags)
                } else {
                    let s: fuse_setxattr_in = a.read_sized("setxattr_in", FUSE_COMPAT_SETXATTR_IN_SIZE as usize)?;
                    (s.size, s.flags, 0)
                };
                let name = a.read_cstr("xattr name")?;
                let value = a.read_bytes(size as usize, "xattr value")?;
                fs.setxattr(c, node, name, value, flags, ext & FUSE_SETXATTR_ACL_KILL_SGID != 0)
            }
            FUSE_GETXATTR => {
                let g: fuse_getxattr_in = a.read("getxattr_in")?;
                let name = a.read_cstr("xattr name")?;
                self.xattr_reply(fs.getxattr(c, node, name, g.size)?, out)
            }
            FUSE_LISTXATTR => {
                let g: fuse_getxattr_in = a.read("getxattr_in")?;
                self.xattr_reply(fs.listxattr(c, node, g.size)?, out)
            }
            FUSE_REMOVEXATTR => fs.removexattr(c, node, a.read_cstr("xattr name")?),
            FUSE_OPENDIR => {
                let o: fuse_open_in = a.read("open_in")?;
                out.push(&fs.opendir(c, node, o.flags)?);
                Ok(())
            }
            FUSE_READDIR | FUSE_READDIRPLUS => {
                let r: fuse_read_in = a.read("read_in")?;
                fs.readdir(node, r.fh, r.offset, r.size.min(self.opts.max_write), op == FUSE_READDIRPLUS, out)?;
                fs.accessed(node, r.flags);
                Ok(())
            }
            FUSE_RELEASEDIR => {
                let r: fuse_release_in = a.read("release_in")?;
                fs.releasedir(node, r.fh)
            }
            FUSE_ACCESS => {
                let x: fuse_access_in = a.read("access_in")?;
                fs.access(c, node, x.mask)
            }
            FUSE_CREATE => {
                let cr: fuse_create_in = a.read("create_in")?;
                let name = a.read_cstr("name")?;
                let (entry, open) = fs.create(c, node, name, cr.mode, cr.flags, cr.umask)?;
                out.push(&entry);
                out.push(&open);
                Ok(())
            }
            FUSE_TMPFILE => {
                let cr: fuse_create_in = a.read("create_in")?;
                let (entry, open) = fs.tmpfile(c, node, cr.mode, cr.flags, cr.umask)?;
                out.push(&entry);
                out.push(&open);
                Ok(())
            }
            FUSE_GETLK => {
                let lk: fuse_lk_in = a.read("lk_in")?;
                if lk.lk_flags & FUSE_LK_FLOCK != 0 {
                    return Err(Errno::ENOSYS);
                }
                out.push(&fuse_lk_out { lk: fs.getlk(node, &lk)? });
                Ok(())
            }
            FUSE_SETLK => {
                let lk: fuse_lk_in = a.read("lk_in")?;
                if lk.lk_flags & FUSE_LK_FLOCK != 0 {
                    return Err(Errno::ENOSYS);
                }
                fs.setlk(node, &lk, false, req.unique)
            }
            FUSE_FALLOCATE => {
                let f: fuse_fallocate_in = a.read("fallocate_in")?;
                fs.fallocate(c, node, f.fh, f.offset, f.length, f.mode)?;
                self.refresh_mapped(node);
                Ok(())
            }
            FUSE_LSEEK => {
                let l: fuse_lseek_in = a.read("lseek_in")?;
                out.push(&fuse_lseek_out { offset: fs.lseek(node, l.fh, l.offset, l.whence)? });
                Ok(())
            }
            FUSE_COPY_FILE_RANGE => {
                let cp: fuse_copy_file_range_in = a.read("copy_file_range_in")?;
                out.push(&fuse_write_out { size: fs.copy_file_range(c, &cp, node)?, padding: 0 });
                self.refresh_mapped(cp.nodeid_out);
                Ok(())
            }
            FUSE_IOCTL => self.ioctl(c, node, &mut a, out),
            FUSE_SETUPMAPPING => self.setup_mapping(node, &mut a),
            FUSE_REMOVEMAPPING => self.remove_mapping(&mut a),
            _ => Err(Errno::ENOSYS),
        }
    }

    fn xattr_reply(&self, r: XattrReply, out: &mut ReplyBuf) -> FsResult<()> {
        match r {
            XattrReply::Size(size) => out.push(&fuse_getxattr_out { size, padding: 0 }),
            XattrReply::Data(v) => out.push_bytes(&v),
        }
        Ok(())
    }

    fn ioctl(
        &self,
        c: &crate::adapter::access::Caller<'_>,
        node: u64,
        a: &mut ArgReader<'_>,
        out: &mut ReplyBuf,
    ) -> FsResult<()> {
        let io: fuse_ioctl_in = a.read("ioctl_in")?;
        log::debug!("ioctl {io:?}, {} bytes in", a.rest().len());
        if io.flags & FUSE_IOCTL_UNRESTRICTED != 0 {
            return Err(Errno::ENOTTY);
        }
        self.fs.ioctl_handle(node, io.fh, io.flags & FUSE_IOCTL_DIR != 0)?;
        let reply = fuse_ioctl_out { result: 0, flags: 0, in_iovs: 0, out_iovs: 0 };
        match io.cmd {
            FS_IOC_GETFLAGS | FS_IOC32_GETFLAGS => {
                let flags = self.fs.get_flags(node)?;
                out.push(&reply);
                let n = (io.out_size as usize).min(4);
                out.push_bytes(&flags.to_le_bytes()[..n]);
                Ok(())
            }
            FS_IOC_SETFLAGS | FS_IOC32_SETFLAGS => {
                let data = a.read_bytes(4, "ioctl flags")?;
                self.fs.set_flags(c, node, u32::from_le_bytes(data.try_into().expect("4 bytes")))?;
                out.push(&reply);
                Ok(())
            }
            FS_IOC_FSGETXATTR => {
                let fsx = self.fs.get_fsxattr(node)?;
                out.push(&reply);
                out.push_bytes(&fsx[..(io.out_size as usize).min(FSXATTR_SIZE)]);
                Ok(())
            }
            FS_IOC_FSSETXATTR => {
                let data = a.read_bytes(FSXATTR_SIZE, "fsxattr")?;
                self.fs.set_xflags(c, node, u32::from_le_bytes(data[0..4].try_into().expect("4 bytes")))?;
                out.push(&reply);
                Ok(())
            }
            FS_IOC_GETFSLABEL => {
                let label = self.fs.fs_label()?;
                out.push(&reply);
                out.push_bytes(&label[..(io.out_size as usize).min(FSLABEL_MAX)]);
                Ok(())
            }
            FS_IOC_SETFSLABEL => {
                self.fs.set_fs_label(c, a.read_bytes(FSLABEL_MAX, "fs label")?)?;
                out.push(&reply);
                Ok(())
            }
            FS_IOC_SHUTDOWN => {
                self.fs.shutdown(c)?;
                out.push(&reply);
                out.push_bytes(&[0u8; 4][..(io.out_size as usize).min(4)]);
                Ok(())
            }
            FITRIM => {
                let range = self.fs.fitrim(c, a.read_bytes(FSTRIM_RANGE_SIZE, "fstrim_range")?)?;
                out.push(&reply);
                out.push_bytes(&range[..(io.out_size as usize).min(FSTRIM_RANGE_SIZE)]);
                Ok(())
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    /// INIT: agrees on the protocol version and on what both sides do.
    fn init(&self, a: &mut ArgReader<'_>, out: &mut ReplyBuf) -> FsResult<()> {
        let i: fuse_init_in = a.read_compat("init_in", 16)?;
        if i.major < FUSE_KERNEL_VERSION {
            log::error!("client speaks FUSE {}.{}, older than 7.{MIN_MINOR}", i.major, i.minor);
            return Err(Errno::EPROTO);
        }
        if i.major > FUSE_KERNEL_VERSION {
            // The client will come back with our major.
            out.push(&fuse_init_out { major: FUSE_KERNEL_VERSION, minor: MAX_MINOR, ..Default::default() });
            return Ok(());
        }
        if i.minor < MIN_MINOR {
            log::error!("client speaks FUSE 7.{}, older than 7.{MIN_MINOR}", i.minor);
            return Err(Errno::EPROTO);
        }
        let offered = i.flags as u64 | if i.flags & FUSE_INIT_EXT != 0 { (i.flags2 as u64) << 32 } else { 0 };
        let mut want = (FUSE_ASYNC_READ
            | FUSE_POSIX_LOCKS
            | FUSE_ATOMIC_O_TRUNC
            | FUSE_BIG_WRITES
            | FUSE_DONT_MASK
            | FUSE_DO_READDIRPLUS
            | FUSE_READDIRPLUS_AUTO
            | FUSE_ASYNC_DIO
            | FUSE_PARALLEL_DIROPS
            | FUSE_HANDLE_KILLPRIV_V2
            | FUSE_POSIX_ACL
            | FUSE_MAX_PAGES
            | FUSE_HAS_IOCTL_DIR
            | FUSE_SETXATTR_EXT
            // LOOKUP of "." and ".." for file handles (open_by_handle_at,
            // NFS export) of inodes the client forgot: node ids are inode
            // numbers, so any in-use inode can be answered.
            | FUSE_EXPORT_SUPPORT
            | FUSE_INIT_EXT) as u64
            | FUSE_CREATE_SUPP_GROUP
            // Shared mmap of a file opened O_DIRECT (FOPEN_DIRECT_IO), which
            // the kernel's ext4 allows and the client otherwise refuses (ENODEV).
            | FUSE_DIRECT_IO_ALLOW_MMAP;
        if self.opts.writeback {
            want |= FUSE_WRITEBACK_CACHE as u64;
        }
        if self.opts.dax {
            want |= FUSE_MAP_ALIGNMENT as u64 | FUSE_HAS_INODE_DAX;
        }
        let agreed = offered & want;
        self.setxattr_ext.store(agreed & FUSE_SETXATTR_EXT as u64 != 0, Ordering::Relaxed);
        self.create_supp_group.store(agreed & FUSE_CREATE_SUPP_GROUP != 0, Ordering::Relaxed);
        let minor = i.minor.min(MAX_MINOR);
        self.minor.store(minor, Ordering::Relaxed);
        let max_pages = (self.opts.max_write / PAGE).max(1);
        out.push(&fuse_init_out {
            major: FUSE_KERNEL_VERSION,
            minor,
            max_readahead: i.max_readahead,
            flags: agreed as u32,
            max_background: 64,
            congestion_threshold: 48,
            max_write: self.opts.max_write,
            time_gran: 1,
            max_pages: max_pages as u16,
            map_alignment: if self.opts.dax { PAGE.trailing_zeros() as u16 } else { 0 },
            flags2: (agreed >> 32) as u32,
            max_stack_depth: 0,
            unused: [0; 6],
        });
        self.initialized.store(true, Ordering::Release);
        log::info!("FUSE 7.{minor} session: flags {agreed:#x}, max_write {}", self.opts.max_write);
        Ok(())
    }
}
