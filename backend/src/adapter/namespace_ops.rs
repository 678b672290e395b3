//! Names: LOOKUP, FORGET, MKNOD, MKDIR, SYMLINK, LINK, UNLINK, RMDIR,
//! RENAME(2) and TMPFILE, with the VFS's permission rules (search and
//! write on directories, sticky directories, set-group-id inheritance).

use super::access::{self, Caller, MAY_EXEC, MAY_WRITE};
use super::attr::entry_out;
use super::errno::{Errno, FsResult};
use super::handles::Handle;
use super::nodes::node_of;
use super::{Ext4Fs, check_name, check_not_pinned};
use ext4::disk::inode::{FL_IMMUTABLE, S_IFCHR, S_IFDIR, S_IFMT, S_IFREG, S_ISGID};
use ext4::fs::dir::namespace::{NewInode, RenameFlags};
use ext4::{FileType, Inode};
use fuse_abi::linux::{FUSE_ROOT_ID, fuse_entry_out, fuse_open_out};

/// RENAME_NOREPLACE.
const RENAME_NOREPLACE: u32 = 1;
/// RENAME_EXCHANGE.
const RENAME_EXCHANGE: u32 = 2;
/// RENAME_WHITEOUT (overlayfs; any user may ask since Linux 5.8: a
/// whiteout is a 0:0 device that opens nothing).
const RENAME_WHITEOUT: u32 = 4;

/// How often a lookup racing with changes to the name is retried.
const LOOKUP_ATTEMPTS: usize = 4;

impl Ext4Fs {
    /// Registers one lookup of `inode` and builds its entry reply.
    fn entry(&self, inode: &Inode) -> fuse_entry_out {
        self.nodes.add_lookup(&self.fs, inode.ino);
        entry_out(&self.fs, inode, &self.opts)
    }

    /// `inode_init_owner`: uid of the caller; gid of the caller, or of a
    /// set-group-id parent (whose flag a new directory inherits, and which
    /// a non-member's new executable file loses).
    fn new_inode(&self, parent: &Inode, caller: &Caller<'_>, mode: u16, umask: u16) -> NewInode {
        let mut mode = mode;
        let gid = if parent.mode() & S_ISGID != 0 {
            if mode & S_IFMT == S_IFDIR {
                mode |= S_ISGID;
            } else if mode & (S_ISGID | 0o010) == (S_ISGID | 0o010)
                && !caller.is_root()
                && !caller.in_group(parent.gid())
            {
                mode &= !S_ISGID;
            }
            parent.gid()
        } else {
            caller.gid
        };
        NewInode { mode, uid: caller.uid, gid, rdev: 0, umask: Some(umask) }
    }

    /// The parent directory checked for creating a name in it.
    fn creatable_parent(&self, caller: &Caller<'_>, parent: u64, name: &[u8]) -> FsResult<Inode> {
        check_name(name)?;
        let dir = self.dir(parent)?;
        access::check(&self.fs, &dir, caller, MAY_WRITE | MAY_EXEC)?;
        // An append-only directory takes new names; an immutable one does not.
        if dir.flags() & FL_IMMUTABLE != 0 {
            return Err(Errno::EPERM);
        }
        Ok(dir)
    }

    /// LOOKUP of `name` in directory `parent`. A path walk resolves "."
    /// and ".." in the client; they reach us only from its export
    /// operations (FUSE_EXPORT_SUPPORT): see [`Ext4Fs::lookup_self`] and
    /// [`Ext4Fs::lookup_parent`].
    pub fn lookup(&self, caller: &Caller<'_>, parent: u64, name: &[u8]) -> FsResult<fuse_entry_out> {
        match name {
            b"." => return self.lookup_self(parent),
            b".." => return self.lookup_parent(parent),
            _ => {}
        }
        check_name(name)?;
        let dir = self.dir(parent)?;
        access::check(&self.fs, &dir, caller, MAY_EXEC)?;
        let inode = self.lookup_counted(&dir, name)?;
        Ok(entry_out(&self.fs, &inode, &self.opts))
    }

    /// LOOKUP "." of `node`: the client's `fuse_get_dentry()` decoding a
    /// file handle (open_by_handle_at, an NFS export) of an inode it no
    /// longer knows, so `node` need not have been looked up: it is taken
    /// as an inode number. Answers an in-use inode with a new lookup
    /// reference (taken before the inode is read again, so it cannot be
    /// freed under the reply); ESTALE for a number out of range or
    /// reserved, a free inode, or a deleted one (no links: an open orphan
    /// is held by the client, which then never asks). The client compares
    /// the generation with the handle's. No search permission is checked,
    /// as ext4's export operations check none (open_by_handle_at needs
    /// CAP_DAC_READ_SEARCH; nfsd checks its exports itself).
    fn lookup_self(&self, node: u64) -> FsResult<fuse_entry_out> {
        let ino = match node {
            FUSE_ROOT_ID => ext4::ROOT_INO,
            _ => u32::try_from(node).map_err(|_| Errno::ESTALE)?,
        };
        let sb = self.fs.superblock();
        let reserved = ino < sb.first_ino() && (ino != ext4::ROOT_INO || node != FUSE_ROOT_ID);
        if ino == 0 || ino > sb.inodes_count || reserved {
            return Err(Errno::ESTALE);
        }
        self.nodes.add_lookup(&self.fs, ino);
        match self.fs.read_inode(ino) {
            Ok(inode) if inode.links_count() > 0 && inode.file_type().is_some() => {
                Ok(entry_out(&self.fs, &inode, &self.opts))
            }
            other => {
                self.nodes.forget(&self.fs, node_of(ino), 1);
                other?;
                Err(Errno::ESTALE)
            }
        }
    }

    /// LOOKUP ".." of directory `node` (which the client knows): its
    /// parent, from its ".." entry, for the client's `fuse_get_parent()`
    /// (reconnecting a directory's file handle). Like ext4's
    /// `ext4_get_parent`, it checks no search permission.
    fn lookup_parent(&self, node: u64) -> FsResult<fuse_entry_out> {
        let dir = self.dir(node)?;
        let inode = self.lookup_counted(&dir, b"..")?;
        Ok(entry_out(&self.fs, &inode, &self.opts))
    }

    /// Looks `name` up in `dir` and counts one lookup of the inode found,
    /// whose reference keeps its number from being reused from then on.
    /// The name is looked up again once the reference is held: the inode
    /// is returned only if the name still leads to it with the generation
    /// read before, so a lookup racing an unlink and the reuse of the
    /// number never answers the new file under the old name. Retried a
    /// few times, then ENOENT.
    pub(super) fn lookup_counted(&self, dir: &Inode, name: &[u8]) -> FsResult<Inode> {
        for _ in 0..LOOKUP_ATTEMPTS {
            let e = self.fs.lookup(dir, name)?.ok_or(Errno::ENOENT)?;
            let first = match self.child(e.ino) {
                Ok(i) => i,
                // Freed under us (the name went meanwhile), or really broken.
                Err(err) if self.name_leads_to(dir.ino, name, e.ino)? => return Err(err),
                Err(_) => continue,
            };
            self.nodes.add_lookup(&self.fs, e.ino);
            let now = self
                .fs
                .read_inode(e.ino)
                .ok()
                .filter(|i| i.generation() == first.generation() && i.file_type().is_some());
            match now {
                Some(inode) if self.name_leads_to(dir.ino, name, e.ino)? => return Ok(inode),
                _ => self.nodes.forget(&self.fs, super::nodes::node_of(e.ino), 1),
            }
        }
        log::warn!("lookup of {:?} in inode {} kept racing with changes", String::from_utf8_lossy(name), dir.ino);
        Err(Errno::ENOENT)
    }

    /// Whether `name` in directory `dir_ino` (read afresh) leads to inode `ino` now.
    pub(super) fn name_leads_to(&self, dir_ino: u32, name: &[u8], ino: u32) -> FsResult<bool> {
        let dir = self.fs.read_inode(dir_ino)?;
        Ok(self.fs.lookup(&dir, name)?.is_some_and(|e| e.ino == ino))
    }

    /// A directory entry's inode, which must be a live, ordinary one: a
    /// name that points at a reserved inode (the journal, say) is corruption.
    pub(super) fn child(&self, ino: u32) -> FsResult<Inode> {
        if ino != ext4::ROOT_INO && ino < self.fs.superblock().first_ino() {
            log::error!("directory entry points at reserved inode {ino}");
            return Err(Errno::EIO);
        }
        Ok(self.fs.read_live_inode(ino)?)
    }

    /// FORGET / BATCH_FORGET.
    pub fn forget(&self, node: u64, nlookup: u64) {
        self.nodes.forget(&self.fs, node, nlookup);
    }

    /// MKNOD: regular files, FIFOs, sockets and (for root) devices.
    pub fn mknod(
        &self,
        caller: &Caller<'_>,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> FsResult<fuse_entry_out> {
        let dir = self.creatable_parent(caller, parent, name)?;
        let mode = mode as u16;
        match FileType::from_mode(mode) {
            Some(FileType::CharDevice | FileType::BlockDevice) if !caller.is_root() => return Err(Errno::EPERM),
            Some(
                FileType::Regular | FileType::Fifo | FileType::Socket | FileType::CharDevice | FileType::BlockDevice,
            ) => {}
            _ => return Err(Errno::EINVAL),
        }
        let mut attr = self.new_inode(&dir, caller, mode, umask as u16);
        attr.rdev = rdev;
        let inode = self.fs.create(dir.ino, name, attr)?;
        Ok(self.entry(&inode))
    }

    /// MKDIR.
    pub fn mkdir(
        &self,
        caller: &Caller<'_>,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> FsResult<fuse_entry_out> {
        let dir = self.creatable_parent(caller, parent, name)?;
        let attr = self.new_inode(&dir, caller, S_IFDIR | (mode as u16 & !S_IFMT), umask as u16);
        let inode = self.fs.mkdir(dir.ino, name, attr)?;
        Ok(self.entry(&inode))
    }

    /// SYMLINK `name` in `parent` pointing at `target`.
    pub fn symlink(&self, caller: &Caller<'_>, parent: u64, name: &[u8], target: &[u8]) -> FsResult<fuse_entry_out> {
        let dir = self.creatable_parent(caller, parent, name)?;
        if target.len() >= libc::PATH_MAX as usize || target.len() >= self.fs.block_size() as usize {
            return Err(Errno::ENAMETOOLONG);
        }
        let attr = self.new_inode(&dir, caller, ext4::disk::inode::S_IFLNK | 0o777, 0);
        let inode = self.fs.symlink(dir.ino, name, target, attr.uid, attr.gid)?;
        Ok(self.entry(&inode))
    }

    /// LINK: a new name `name` in `parent` for `node`.
    pub fn link(&self, caller: &Caller<'_>, node: u64, parent: u64, name: &[u8]) -> FsResult<fuse_entry_out> {
        let inode = self.inode(node)?;
        if inode.is_dir() {
            return Err(Errno::EPERM);
        }
        check_not_pinned(&inode)?;
        let dir = self.creatable_parent(caller, parent, name)?;
        let inode = self.fs.link(inode.ino, dir.ino, name)?;
        Ok(self.entry(&inode))
    }

    /// The entry `name` of `dir` that a caller wants to remove or move.
    /// The caller holds `dir`'s stripe of [`super::DirStripes`], so the
    /// name still leads to the inode checked here when the core removes it.
    fn removable(&self, caller: &Caller<'_>, dir: &Inode, name: &[u8]) -> FsResult<Inode> {
        check_name(name)?;
        access::check(&self.fs, dir, caller, MAY_WRITE | MAY_EXEC)?;
        let e = self.fs.lookup(dir, name)?.ok_or(Errno::ENOENT)?;
        let victim = self.child(e.ino)?;
        access::check_sticky(dir, &victim, caller)?;
        check_not_pinned(&victim)?;
        check_not_pinned(dir)?;
        Ok(victim)
    }

    /// UNLINK.
    pub fn unlink(&self, caller: &Caller<'_>, parent: u64, name: &[u8]) -> FsResult<()> {
        let dir = self.dir(parent)?;
        let _names = self.dir_stripes.lock(dir.ino, dir.ino);
        let victim = self.removable(caller, &dir, name)?;
        if victim.is_dir() {
            return Err(Errno::EISDIR);
        }
        Ok(self.fs.unlink(dir.ino, name)?)
    }

    /// RMDIR.
    pub fn rmdir(&self, caller: &Caller<'_>, parent: u64, name: &[u8]) -> FsResult<()> {
        if name == b"." {
            return Err(Errno::EINVAL);
        }
        if name == b".." {
            return Err(Errno(libc::ENOTEMPTY));
        }
        let dir = self.dir(parent)?;
        let _names = self.dir_stripes.lock(dir.ino, dir.ino);
        let victim = self.removable(caller, &dir, name)?;
        if !victim.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(self.fs.rmdir(dir.ino, name)?)
    }

    /// RENAME / RENAME2.
    pub fn rename(
        &self,
        caller: &Caller<'_>,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0 {
            return Err(Errno::EINVAL);
        }
        check_name(new_name)?;
        let (old_dir, new_dir) = (self.dir(parent)?, self.dir(new_parent)?);
        let _names = self.dir_stripes.lock(old_dir.ino, new_dir.ino);
        let source = self.removable(caller, &old_dir, name)?;
        access::check(&self.fs, &new_dir, caller, MAY_WRITE | MAY_EXEC)?;
        let target = match self.fs.lookup(&new_dir, new_name)? {
            Some(e) => {
                let t = self.child(e.ino)?;
                access::check_sticky(&new_dir, &t, caller)?;
                check_not_pinned(&t)?;
                Some(t)
            }
            None => None,
        };
        // A directory that changes parent rewrites its "..": it must be writable.
        if old_dir.ino != new_dir.ino {
            if source.is_dir() {
                access::check(&self.fs, &source, caller, MAY_WRITE)?;
            }
            if let Some(t) = target.as_ref().filter(|t| t.is_dir() && flags & RENAME_EXCHANGE != 0) {
                access::check(&self.fs, t, caller, MAY_WRITE)?;
            }
        }
        let whiteout = (flags & RENAME_WHITEOUT != 0).then(|| {
            let owner = self.new_inode(&old_dir, caller, S_IFCHR, 0);
            (owner.uid, owner.gid)
        });
        let flags =
            RenameFlags { noreplace: flags & RENAME_NOREPLACE != 0, exchange: flags & RENAME_EXCHANGE != 0, whiteout };
        Ok(self.fs.rename(old_dir.ino, name, new_dir.ino, new_name, flags)?)
    }

    /// TMPFILE: an unnamed regular file for `parent`, opened.
    pub fn tmpfile(
        &self,
        caller: &Caller<'_>,
        parent: u64,
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> FsResult<(fuse_entry_out, fuse_open_out)> {
        let dir = self.dir(parent)?;
        access::check(&self.fs, &dir, caller, MAY_WRITE | MAY_EXEC)?;
        if !self.handles.has_room() {
            return Err(Errno::EMFILE);
        }
        let attr = self.new_inode(&dir, caller, S_IFREG | (mode as u16 & !S_IFMT), umask as u16);
        // The core holds the inode open once for us: that reference is the handle's.
        let inode = self.fs.tmpfile(dir.ino, attr)?;
        let entry = self.entry(&inode);
        let open = self.register_handle(inode.ino, flags, false).inspect_err(|_| self.forget(entry.nodeid, 1))?;
        Ok((entry, open))
    }

    /// CREATE: a new regular file, opened.
    pub fn create(
        &self,
        caller: &Caller<'_>,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> FsResult<(fuse_entry_out, fuse_open_out)> {
        let dir = self.creatable_parent(caller, parent, name)?;
        if !self.handles.has_room() {
            return Err(Errno::EMFILE);
        }
        let attr = self.new_inode(&dir, caller, S_IFREG | (mode as u16 & !S_IFMT), umask as u16);
        let inode = self.fs.create(dir.ino, name, attr)?;
        let entry = self.entry(&inode);
        self.fs.open_inode(inode.ino);
        // Full after all (a race): the file stays, the client learns nothing of it.
        let open = self.register_handle(inode.ino, flags, false).inspect_err(|_| self.forget(entry.nodeid, 1))?;
        Ok((entry, open))
    }

    /// Records a handle on `ino`, whose open reference the caller took;
    /// when the handle table is full (EMFILE) that reference is given back.
    pub(super) fn register_handle(&self, ino: u32, flags: u32, dir: bool) -> FsResult<fuse_open_out> {
        let acc = flags as i32 & libc::O_ACCMODE;
        // With the writeback cache the client reads pages of files opened
        // write-only and computes append offsets itself.
        let wb = self.opts.writeback;
        let h = Handle {
            ino,
            read: acc != libc::O_WRONLY || wb,
            write: acc != libc::O_RDONLY,
            append: flags as i32 & libc::O_APPEND != 0 && !wb,
            dir,
        };
        let mut open_flags = self.opts.cache.open_flags(dir);
        if !dir && flags as i32 & libc::O_DIRECT != 0 {
            open_flags |= fuse_abi::linux::FOPEN_DIRECT_IO;
        }
        match self.handles.insert(h) {
            Ok(fh) => Ok(fuse_open_out { fh, open_flags, backing_id: 0 }),
            Err(e) => {
                if let Err(x) = self.fs.close_inode(ino) {
                    log::error!("closing inode {ino} after a refused open: {x}");
                }
                Err(e)
            }
        }
    }
}
