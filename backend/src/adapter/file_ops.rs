//! File data and attributes: GETATTR, SETATTR, OPEN, READ, WRITE, FLUSH,
//! RELEASE, FSYNC, FALLOCATE, LSEEK and COPY_FILE_RANGE. Data moves
//! between the image and the request or reply buffer directly.

use super::Ext4Fs;
use super::access::{self, Caller, MAY_EXEC, MAY_READ, MAY_WRITE, killed_privs};
use super::attr::{attr_out, statx_out};
use super::errno::{Errno, FsResult};
use super::handles::Handle;
use super::xattr_ops::CAPABILITY_XATTR;
use crate::fuse::wire::{ReplyBuf, ReplySink};
use ext4::disk::inode::{FL_APPEND, FL_IMMUTABLE, FL_INLINE_DATA, FL_SYNC};
use ext4::fs::data::fallocate::FallocMode;
use ext4::fs::data::io::{DataSource, SliceSource};
use ext4::fs::inode::setattr::SetAttr;
use ext4::{Inode, Mapping, Timestamp};
use fuse_abi::linux::*;

/// Largest COPY_FILE_RANGE one request performs (the caller loops).
const COPY_CHUNK: usize = 1 << 20;
const COPY_MAX: u64 = 64 << 20;

/// fallocate(2) mode bits.
const FALLOC_FL_KEEP_SIZE: u32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: u32 = 0x02;
const FALLOC_FL_COLLAPSE_RANGE: u32 = 0x08;
const FALLOC_FL_ZERO_RANGE: u32 = 0x10;

/// `__FMODE_EXEC`: the open flag the client passes on for an open by
/// execve(2) (open_exec), which needs execute permission, not read.
const FMODE_EXEC: i32 = 0x20;
const FALLOC_FL_INSERT_RANGE: u32 = 0x20;

fn timestamp(secs: u64, nsecs: u32) -> FsResult<Timestamp> {
    if nsecs >= 1_000_000_000 {
        return Err(Errno::EINVAL);
    }
    Ok(Timestamp { secs: secs as i64, nsecs })
}

impl Ext4Fs {
    /// A file handle of `ino` that allows reading or writing.
    fn file_handle(&self, fh: u64, ino: u32) -> FsResult<Handle> {
        self.handles.get(fh, ino, false)
    }

    /// GETATTR.
    pub fn getattr(&self, node: u64) -> FsResult<fuse_attr_out> {
        let inode = self.inode(node)?;
        Ok(attr_out(&self.fs, &inode, &self.opts))
    }

    /// STATX: GETATTR's attributes with the creation time and the
    /// `STATX_ATTR_*` flags (immutable, append, nodump, ...).
    pub fn statx(&self, node: u64) -> FsResult<fuse_statx_out> {
        let inode = self.inode(node)?;
        Ok(statx_out(&self.fs, &inode, &self.opts))
    }

    /// SETATTR: chmod, chown, truncate, utimes, with the VFS's rules.
    pub fn setattr(&self, caller: &Caller<'_>, node: u64, a: &fuse_setattr_in) -> FsResult<fuse_attr_out> {
        let inode = self.inode(node)?;
        let v = a.valid;
        let times_now_only = v & (FATTR_MODE | FATTR_UID | FATTR_GID | FATTR_SIZE | FATTR_CTIME) == 0
            && (v & FATTR_ATIME == 0 || v & FATTR_ATIME_NOW != 0)
            && (v & FATTR_MTIME == 0 || v & FATTR_MTIME_NOW != 0);
        if inode.flags() & FL_IMMUTABLE != 0 || (inode.flags() & FL_APPEND != 0 && !times_now_only) {
            return Err(Errno::EPERM);
        }
        let mut sa = SetAttr::default();
        let mut mode = None;
        // Whether the file capabilities go too, once every check passed.
        let mut kill_caps = false;
        if v & FATTR_MODE != 0 {
            mode = Some(access::chmod_mode(&inode, caller, a.mode as u16)?);
        }
        let (uid, gid) = (Some(a.uid).filter(|_| v & FATTR_UID != 0), Some(a.gid).filter(|_| v & FATTR_GID != 0));
        if uid.is_some() || gid.is_some() {
            access::check_chown(&inode, caller, uid, gid)?;
            (sa.uid, sa.gid) = (uid, gid);
            // chown_common: every chown of a non-directory drops privileges,
            // file capabilities included (ATTR_KILL_PRIV).
            if !inode.is_dir() {
                mode = Some(killed_privs(&inode, caller, mode.unwrap_or(inode.mode())));
                kill_caps = true;
            }
        }
        if v & FATTR_SIZE != 0 {
            if inode.is_dir() {
                return Err(Errno::EISDIR);
            }
            if !inode.is_reg() {
                return Err(Errno::EINVAL);
            }
            if v & FATTR_FH != 0 {
                if !self.file_handle(a.fh, inode.ino)?.write {
                    return Err(Errno::EBADF);
                }
            } else {
                access::check(&self.fs, &inode, caller, MAY_WRITE)?;
            }
            if a.size > self.fs.max_file_size(&inode) {
                return Err(Errno::EFBIG);
            }
            sa.size = Some(a.size);
            if v & FATTR_KILL_SUIDGID != 0 {
                mode = Some(killed_privs(&inode, caller, mode.unwrap_or(inode.mode())));
                kill_caps = true;
            }
        }
        let now = Timestamp::now();
        // With the writeback cache the client keeps mtime and ctime itself
        // and sends them as explicit values (FATTR_CTIME marks that), for
        // "now" updates and its own flushes alike, after checking them: such
        // times need only what setting "now" needs.
        let client_times = self.opts.writeback && v & FATTR_CTIME != 0;
        for (set, at_now, secs, nsecs, slot) in [
            (FATTR_ATIME, FATTR_ATIME_NOW, a.atime, a.atimensec, &mut sa.atime),
            (FATTR_MTIME, FATTR_MTIME_NOW, a.mtime, a.mtimensec, &mut sa.mtime),
        ] {
            if v & set == 0 {
                continue;
            }
            let explicit = v & at_now == 0;
            access::check_times(&self.fs, &inode, caller, explicit && !client_times)?;
            *slot = Some(if explicit { timestamp(secs, nsecs)? } else { now });
        }
        if v & FATTR_CTIME != 0 {
            sa.ctime = Some(timestamp(a.ctime, a.ctimensec)?);
        }
        sa.mode = mode.filter(|&m| m != inode.mode() || v & FATTR_MODE != 0);
        if kill_caps {
            self.kill_caps(&inode)?;
        }
        let inode = self.fs.setattr(inode.ino, &sa)?;
        Ok(attr_out(&self.fs, &inode, &self.opts))
    }

    /// OPEN of a regular file.
    pub fn open(&self, caller: &Caller<'_>, node: u64, flags: u32, open_flags: u32) -> FsResult<fuse_open_out> {
        let inode = self.inode(node)?;
        if inode.is_dir() {
            return Err(Errno::EISDIR);
        }
        let f = flags as i32;
        let acc = f & libc::O_ACCMODE;
        let trunc = f & libc::O_TRUNC != 0;
        let write = acc != libc::O_RDONLY || trunc;
        // An open by execve needs execute permission only (may_open with
        // MAY_EXEC): a file with mode --x runs.
        let exec = f & FMODE_EXEC != 0 && acc == libc::O_RDONLY;
        let mut mask = match acc {
            libc::O_WRONLY => 0,
            _ if exec => MAY_EXEC,
            _ => MAY_READ,
        };
        if write {
            mask |= MAY_WRITE;
            if self.fs.is_read_only() {
                return Err(Errno::EROFS);
            }
            if inode.flags() & FL_IMMUTABLE != 0
                || (inode.flags() & FL_APPEND != 0 && (f & libc::O_APPEND == 0 || trunc))
            {
                return Err(Errno::EPERM);
            }
        }
        access::check(&self.fs, &inode, caller, mask)?;
        if !self.handles.has_room() {
            return Err(Errno::EMFILE);
        }
        if trunc && inode.is_reg() {
            let mut sa = SetAttr { size: Some(0).filter(|_| inode.size() != 0), ..SetAttr::default() };
            // do_truncate drops privileges even when the file is empty already.
            if open_flags & FUSE_OPEN_KILL_SUIDGID != 0 {
                sa.mode = Some(killed_privs(&inode, caller, inode.mode())).filter(|&m| m != inode.mode());
                if self.kill_caps(&inode)? {
                    self.attrs_changed(inode.ino);
                }
            }
            if sa.size.is_some() || sa.mode.is_some() {
                self.fs.setattr(inode.ino, &sa)?;
            }
        }
        self.fs.open_inode(inode.ino);
        self.register_handle(inode.ino, flags, false)
    }

    /// RELEASE of a file handle (the last close of an open file
    /// description): the locks taken through it by owners that still hold
    /// them go — open file description locks, whose owner is the
    /// description — and so do the named owner's locks when the client
    /// says so (FUSE_RELEASE_FLOCK_UNLOCK for emulated flock,
    /// FUSE_RELEASE_FLUSH).
    pub fn release(&self, node: u64, fh: u64, release_flags: u32, lock_owner: u64) -> FsResult<()> {
        let ino = self.nodes.inode_of(node)?;
        let h = self.handles.remove(fh, ino, false)?;
        self.locks.release_handle(ino, fh);
        if release_flags & (FUSE_RELEASE_FLUSH | FUSE_RELEASE_FLOCK_UNLOCK) != 0 {
            self.locks.release_owner(ino, lock_owner);
        }
        Ok(self.fs.close_inode(h.ino)?)
    }

    /// FLUSH (close of one descriptor): drops that owner's POSIX locks.
    pub fn flush(&self, node: u64, fh: u64, lock_owner: u64) -> FsResult<()> {
        let ino = self.nodes.inode_of(node)?;
        self.file_handle(fh, ino)?;
        self.locks.release_owner(ino, lock_owner);
        Ok(())
    }

    /// READ: up to `size` bytes at `offset`, straight into the reply.
    pub fn read(&self, node: u64, fh: u64, offset: u64, size: u32, out: &mut ReplyBuf) -> FsResult<()> {
        let inode = self.inode(node)?;
        if !self.file_handle(fh, inode.ino)?.read {
            return Err(Errno::EBADF);
        }
        let start = out.body_len();
        let n = self.fs.read(&inode, offset, out.tail(size as usize))?;
        out.truncate_body(start + n);
        Ok(())
    }

    /// READ into a transport's [`ReplySink`] (guest memory): up to `size`
    /// bytes at `offset` (no more than the sink holds), each moved once
    /// from the image; their count is added to the reply's length.
    pub fn read_to(
        &self,
        node: u64,
        fh: u64,
        offset: u64,
        size: u32,
        sink: &mut dyn ReplySink,
        out: &mut ReplyBuf,
    ) -> FsResult<()> {
        let inode = self.inode(node)?;
        if !self.file_handle(fh, inode.ino)?.read {
            return Err(Errno::EBADF);
        }
        let len = (size as usize).min(sink.capacity());
        let n = self.fs.read_to(&inode, offset, len, sink)?;
        out.add_external(n);
        Ok(())
    }

    /// WRITE of `data` at `offset` (at the end for O_APPEND handles).
    pub fn write(
        &self,
        caller: &Caller<'_>,
        node: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
    ) -> FsResult<u32> {
        self.write_from(caller, node, fh, offset, &mut SliceSource(data), write_flags)
    }

    /// [`Ext4Fs::write`] from any [`DataSource`] (guest memory): each byte
    /// moves once, from the source to the image. A write the client marks
    /// FUSE_WRITE_KILL_SUIDGID drops the privileges `caller` may not keep.
    pub fn write_from(
        &self,
        caller: &Caller<'_>,
        node: u64,
        fh: u64,
        offset: u64,
        data: &mut dyn DataSource,
        write_flags: u32,
    ) -> FsResult<u32> {
        let inode = self.inode(node)?;
        let h = self.file_handle(fh, inode.ino)?;
        if !h.write {
            return Err(Errno::EBADF);
        }
        if inode.flags() & FL_IMMUTABLE != 0 {
            return Err(Errno::EPERM);
        }
        if write_flags & FUSE_WRITE_KILL_SUIDGID != 0 {
            self.drop_privs(caller, &inode)?;
        }
        let n = if h.append || inode.flags() & FL_APPEND != 0 {
            self.fs.append_from(inode.ino, data)?.1
        } else {
            self.fs.write_from(inode.ino, offset, data)?
        };
        // chattr +S: durable before the reply (the flags were read above,
        // so the hot path reads no inode for it).
        if inode.flags() & FL_SYNC != 0 {
            self.fsync()?;
        }
        Ok(n as u32)
    }

    /// Drops the set-user-id and set-group-id bits `caller` may not keep
    /// after changing `inode`'s data ([`killed_privs`]), and its file
    /// capabilities ([`Ext4Fs::kill_caps`]). The replies of data requests
    /// carry no attributes: the client is told they changed.
    fn drop_privs(&self, caller: &Caller<'_>, inode: &Inode) -> FsResult<()> {
        let killed_caps = self.kill_caps(inode)?;
        let kept = killed_privs(inode, caller, inode.mode());
        if kept != inode.mode() {
            let sa = SetAttr { mode: Some(kept), ..SetAttr::default() };
            self.fs.setattr(inode.ino, &sa)?;
        }
        if killed_caps || kept != inode.mode() {
            self.attrs_changed(inode.ino);
        }
        Ok(())
    }

    /// Removes `inode`'s file capabilities (`security.capability`), as the
    /// kernel's `cap_inode_killpriv` does wherever set-id bits are killed:
    /// with FUSE_HANDLE_KILLPRIV_V2 the client leaves that to the server on
    /// the writes, truncates and chowns it marks. Whether there were any.
    fn kill_caps(&self, inode: &Inode) -> FsResult<bool> {
        match self.fs.get_xattr(inode, CAPABILITY_XATTR) {
            Err(ext4::Error::NoAttr) => return Ok(false),
            other => other?,
        };
        match self.fs.removexattr(inode.ino, CAPABILITY_XATTR) {
            // Removed meanwhile by another request.
            Err(ext4::Error::NoAttr) => Ok(false),
            other => other.map(|()| true).map_err(Into::into),
        }
    }

    /// FSYNC / FSYNCDIR: makes every completed operation durable by
    /// committing the running transaction (one covers every inode), as
    /// jbd2's fsync waits for one commit; checkpoints come when the log
    /// needs room.
    pub fn fsync(&self) -> FsResult<()> {
        Ok(self.fs.fsync()?)
    }

    /// chattr +S and +D: after a request changed `nodes` (a file, or the
    /// entries of directories), commits before the reply when one of them
    /// carries a flag of `flags` (FL_SYNC for a file, FL_SYNC or
    /// FL_DIRSYNC for a directory), as ext4's `IS_SYNC` / `IS_DIRSYNC`
    /// make the handle synchronous. A node gone meanwhile asks nothing.
    pub fn sync_if_flagged(&self, nodes: &[u64], flags: u32) -> FsResult<()> {
        if nodes.iter().any(|&n| self.inode(n).is_ok_and(|i| i.flags() & flags != 0)) {
            self.fsync()?;
        }
        Ok(())
    }

    /// SYNCFS: commits and checkpoints, so the image is complete at its
    /// home locations (what tools reading the image file expect).
    pub fn sync(&self) -> FsResult<()> {
        Ok(self.fs.sync()?)
    }

    /// FALLOCATE.
    pub fn fallocate(&self, caller: &Caller<'_>, node: u64, fh: u64, offset: u64, len: u64, mode: u32) -> FsResult<()> {
        let inode = self.inode(node)?;
        if !self.file_handle(fh, inode.ino)?.write {
            return Err(Errno::EBADF);
        }
        // vfs_fallocate: immutable files refuse all, append-only ones all but preallocation.
        if inode.flags() & FL_IMMUTABLE != 0 || (inode.flags() & FL_APPEND != 0 && mode & !FALLOC_FL_KEEP_SIZE != 0) {
            return Err(Errno::EPERM);
        }
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        let m = match mode & !FALLOC_FL_KEEP_SIZE {
            0 if keep => FallocMode::KeepSize,
            0 => FallocMode::Default,
            FALLOC_FL_PUNCH_HOLE if keep => FallocMode::PunchHole,
            FALLOC_FL_ZERO_RANGE => FallocMode::ZeroRange { keep_size: keep },
            FALLOC_FL_COLLAPSE_RANGE if !keep => FallocMode::CollapseRange,
            FALLOC_FL_INSERT_RANGE if !keep => FallocMode::InsertRange,
            // vfs_fallocate: collapse and insert take no other flag.
            m if m & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE) != 0 => return Err(Errno::EINVAL),
            _ => return Err(Errno::EOPNOTSUPP),
        };
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
            return Err(Errno::EINVAL);
        }
        // vfs_fallocate's file_modified: a caller without CAP_FSETID drops
        // set-id bits (the client sends no kill flag for fallocate).
        if !caller.is_root() {
            self.drop_privs(caller, &inode)?;
        }
        Ok(self.fs.fallocate(inode.ino, m, offset, len)?)
    }

    /// LSEEK with SEEK_DATA or SEEK_HOLE (the client handles the others).
    /// Unwritten extents are holes, as ext4 reports them without cached pages.
    pub fn lseek(&self, node: u64, fh: u64, offset: u64, whence: u32) -> FsResult<u64> {
        let inode = self.inode(node)?;
        self.file_handle(fh, inode.ino)?;
        let size = inode.size();
        if offset >= size {
            return Err(Errno::ENXIO);
        }
        match whence as i32 {
            libc::SEEK_DATA => self.seek_run(&inode, offset, true)?.ok_or(Errno::ENXIO),
            libc::SEEK_HOLE => Ok(self.seek_run(&inode, offset, false)?.unwrap_or(size)),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The first byte at or after `offset` (below the file's size) that is
    /// data (`data`) or a hole (`!data`), walking the mapping run by run
    /// from `offset` and stopping at the first hit.
    fn seek_run(&self, inode: &Inode, offset: u64, data: bool) -> FsResult<Option<u64>> {
        let size = inode.size();
        if inode.has_flag(FL_INLINE_DATA) {
            return Ok(data.then_some(offset));
        }
        let bs = self.fs.block_size() as u64;
        let end = size.div_ceil(bs);
        let mut lblk = offset / bs;
        while lblk < end {
            let (is_data, len) = match self.fs.map_block(inode, lblk)? {
                Mapping::Hole { len } => (false, len),
                Mapping::Mapped { len, unwritten, .. } => (!unwritten, len),
            };
            if is_data == data {
                return Ok(Some((lblk * bs).max(offset).min(size)));
            }
            lblk = lblk.saturating_add(len.max(1));
        }
        Ok(None)
    }

    /// COPY_FILE_RANGE: copies through a bounce buffer (ext4 has no
    /// shared extents); at most [`COPY_MAX`] bytes per request. Like a
    /// write, it drops the privileges of the destination a caller without
    /// CAP_FSETID may not keep: the client asks nothing for it (its
    /// file_modified sends no kill flag with FUSE_HANDLE_KILLPRIV_V2).
    pub fn copy_file_range(&self, caller: &Caller<'_>, a: &fuse_copy_file_range_in, node_in: u64) -> FsResult<u32> {
        if a.flags != 0 {
            return Err(Errno::EINVAL);
        }
        let src = self.inode(node_in)?;
        let dst = self.inode(a.nodeid_out)?;
        if !self.file_handle(a.fh_in, src.ino)?.read || !self.file_handle(a.fh_out, dst.ino)?.write {
            return Err(Errno::EBADF);
        }
        if !src.is_reg() || !dst.is_reg() {
            return Err(Errno::EINVAL);
        }
        if dst.flags() & (FL_IMMUTABLE | FL_APPEND) != 0 {
            return Err(Errno::EPERM);
        }
        let len = a.len.min(COPY_MAX).min(u32::MAX as u64);
        if a.off_in.checked_add(len).is_none() || a.off_out.checked_add(len).is_none() {
            return Err(Errno::EINVAL);
        }
        if src.ino == dst.ino && a.off_in < a.off_out.saturating_add(len) && a.off_out < a.off_in.saturating_add(len) {
            return Err(Errno::EINVAL);
        }
        if len != 0 && !caller.is_root() {
            self.drop_privs(caller, &dst)?;
        }
        let mut buf = vec![0u8; COPY_CHUNK.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let src = self.fs.read_inode(src.ino)?;
            let want = ((len - done) as usize).min(buf.len());
            let n = self.fs.read(&src, a.off_in + done, &mut buf[..want])?;
            if n == 0 {
                break;
            }
            let w = self.fs.write(dst.ino, a.off_out + done, &buf[..n])?;
            done += w as u64;
            if w < n {
                break;
            }
        }
        Ok(done as u32)
    }
}
