//! STATFS, ACCESS, POSIX locks (GETLK, SETLK, SETLKW, INTERRUPT) and the
//! ioctls: inode flags (FS_IOC_GETFLAGS / SETFLAGS, FSGETXATTR /
//! FSSETXATTR), the volume label (FS_IOC_GETFSLABEL / SETFSLABEL) and
//! FITRIM.

use super::Ext4Fs;
use super::access::{self, Caller, MAY_WRITE};
use super::errno::{Errno, FsResult};
use super::locks::{F_UNLCK, RangeLock};
use ext4::disk::inode::{FL_APPEND, FL_DAX, FL_IMMUTABLE, FL_NOATIME, FL_NODUMP, FL_SYNC};
use ext4::fs::inode::setattr::SETTABLE_FLAGS;
use ext4::fs::shutdown::ShutdownMode;
use fuse_abi::linux::{fuse_file_lock, fuse_kstatfs, fuse_lk_in};

/// FS_IOC_GETFLAGS (`_IOR('f', 1, long)`) and its 32-bit form.
pub const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
/// FS_IOC32_GETFLAGS.
pub const FS_IOC32_GETFLAGS: u32 = 0x8004_6601;
/// FS_IOC_SETFLAGS (`_IOW('f', 2, long)`).
pub const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
/// FS_IOC32_SETFLAGS.
pub const FS_IOC32_SETFLAGS: u32 = 0x4004_6602;

/// FS_IOC_FSGETXATTR (`_IOR('X', 31, struct fsxattr)`): the kernel asks it
/// before every flag change.
pub const FS_IOC_FSGETXATTR: u32 = 0x801C_581F;
/// FS_IOC_FSSETXATTR (`_IOW('X', 32, struct fsxattr)`).
pub const FS_IOC_FSSETXATTR: u32 = 0x401C_5820;
/// Size of `struct fsxattr`.
pub const FSXATTR_SIZE: usize = 28;

/// FS_IOC_GETFSLABEL (`_IOR(0x94, 49, char[FSLABEL_MAX])`).
pub const FS_IOC_GETFSLABEL: u32 = 0x8100_9431;
/// FS_IOC_SETFSLABEL (`_IOW(0x94, 50, char[FSLABEL_MAX])`).
pub const FS_IOC_SETFSLABEL: u32 = 0x4100_9432;
/// FSLABEL_MAX: the size of the label ioctls' buffer.
pub const FSLABEL_MAX: usize = 256;
/// FITRIM (`_IOWR('X', 121, struct fstrim_range)`), sent by `fstrim` on
/// the mount point.
pub const FITRIM: u32 = 0xC018_5879;
/// Size of `struct fstrim_range` (start, len, minlen: three u64).
pub const FSTRIM_RANGE_SIZE: usize = 24;
/// FS_IOC_SHUTDOWN, ext4's EXT4_IOC_SHUTDOWN and XFS_IOC_GOINGDOWN
/// (`_IOR('X', 125, __u32)`). Being `_IOR`, its flags word never reaches a
/// FUSE server (`fuse_do_ioctl` sends input only for `_IOC_WRITE`
/// commands).
pub const FS_IOC_SHUTDOWN: u32 = 0x8004_587D;

/// `FS_XFLAG_*` bits and the inode flags they stand for (ext4's
/// `ext4_xflags_to_iflags`, less project inheritance).
const XFLAGS: [(u32, u32); 6] =
    [(0x08, FL_IMMUTABLE), (0x10, FL_APPEND), (0x20, FL_SYNC), (0x40, FL_NOATIME), (0x80, FL_NODUMP), (0x8000, FL_DAX)];

/// The inode flags FS_IOC_FSSETXATTR sets or clears: those with an xflag.
fn xflag_inode_flags() -> u32 {
    XFLAGS.iter().map(|(_, f)| f).sum()
}

/// Inode flags as `FS_XFLAG_*` bits.
pub fn xflags_of(flags: u32) -> u32 {
    XFLAGS.iter().filter(|(_, f)| flags & f != 0).map(|(x, _)| x).sum()
}

/// `FS_XFLAG_*` bits as inode flags; `None` if a bit has no inode flag here.
pub fn flags_of_xflags(xflags: u32) -> Option<u32> {
    let known: u32 = XFLAGS.iter().map(|(x, _)| x).sum();
    (xflags & !known == 0).then(|| XFLAGS.iter().filter(|(x, _)| xflags & x != 0).map(|(_, f)| f).sum())
}

/// Flags FS_IOC_GETFLAGS shows (ext4's `EXT4_FL_USER_VISIBLE`).
const USER_VISIBLE_FLAGS: u32 = 0x705B_DFFF;

impl Ext4Fs {
    /// STATFS.
    pub fn statfs(&self) -> FsResult<fuse_kstatfs> {
        let s = self.fs.statfs()?;
        Ok(fuse_kstatfs {
            blocks: s.blocks,
            bfree: s.free_blocks,
            bavail: s.avail_blocks,
            files: s.inodes,
            ffree: s.free_inodes,
            bsize: s.block_size,
            namelen: s.name_max,
            frsize: s.block_size,
            padding: 0,
            spare: [0; 6],
        })
    }

    /// ACCESS: `mask` of R_OK, W_OK, X_OK (0 checks existence).
    pub fn access(&self, caller: &Caller<'_>, node: u64, mask: u32) -> FsResult<()> {
        let inode = self.inode(node)?;
        let mask = (mask & 7) as u16;
        if mask & MAY_WRITE != 0 {
            if self.fs.is_read_only()
                && !matches!(
                    inode.file_type(),
                    Some(
                        ext4::FileType::CharDevice
                            | ext4::FileType::BlockDevice
                            | ext4::FileType::Fifo
                            | ext4::FileType::Socket
                    )
                )
            {
                return Err(Errno::EROFS);
            }
            if inode.flags() & FL_IMMUTABLE != 0 {
                return Err(Errno::EPERM);
            }
        }
        access::check(&self.fs, &inode, caller, mask)
    }

    fn range_lock(a: &fuse_lk_in) -> RangeLock {
        RangeLock { start: a.lk.start, end: a.lk.end, typ: a.lk.type_, owner: a.owner, pid: a.lk.pid, fh: a.fh }
    }

    /// GETLK: the lock that would block the one described, or F_UNLCK.
    pub fn getlk(&self, node: u64, a: &fuse_lk_in) -> FsResult<fuse_file_lock> {
        let ino = self.nodes.inode_of(node)?;
        self.handles.get(a.fh, ino, false)?;
        let want = Self::range_lock(a);
        Ok(match self.locks.test(ino, &want) {
            Some(l) => fuse_file_lock { start: l.start, end: l.end, type_: l.typ, pid: l.pid },
            None => fuse_file_lock { type_: F_UNLCK, ..a.lk },
        })
    }

    /// SETLK / SETLKW (`wait`); `unique` identifies the request for INTERRUPT.
    pub fn setlk(&self, node: u64, a: &fuse_lk_in, wait: bool, unique: u64) -> FsResult<()> {
        let ino = self.nodes.inode_of(node)?;
        self.handles.get(a.fh, ino, false)?;
        let want = Self::range_lock(a);
        if wait { self.locks.set_wait(ino, &want, unique) } else { self.locks.set(ino, &want) }
    }

    /// INTERRUPT of request `unique` (only lock waits are interruptible;
    /// everything else finishes quickly).
    pub fn interrupt(&self, unique: u64) {
        self.locks.interrupt(unique)
    }

    /// FS_IOC_GETFLAGS.
    pub fn get_flags(&self, node: u64) -> FsResult<u32> {
        Ok(self.inode(node)?.flags() & USER_VISIBLE_FLAGS)
    }

    /// FS_IOC_FSGETXATTR: `struct fsxattr` with the flags and project id.
    pub fn get_fsxattr(&self, node: u64) -> FsResult<[u8; FSXATTR_SIZE]> {
        let inode = self.inode(node)?;
        let mut out = [0u8; FSXATTR_SIZE];
        out[0..4].copy_from_slice(&xflags_of(inode.flags()).to_le_bytes());
        out[12..16].copy_from_slice(&inode.projid().to_le_bytes());
        Ok(out)
    }

    /// FS_IOC_FSSETXATTR: the flags with an `FS_XFLAG_*` bit become those
    /// of `xflags`, the others stay; as [`Ext4Fs::set_flags`] otherwise.
    pub fn set_xflags(&self, caller: &Caller<'_>, node: u64, xflags: u32) -> FsResult<()> {
        let flags = flags_of_xflags(xflags).ok_or(Errno::EOPNOTSUPP)?;
        let keep = self.get_flags(node)? & !xflag_inode_flags();
        self.set_flags(caller, node, keep | flags)
    }

    /// FS_IOC_GETFSLABEL: the label, NUL-padded to [`FSLABEL_MAX`] bytes.
    pub fn fs_label(&self) -> FsResult<[u8; FSLABEL_MAX]> {
        let label = self.fs.label()?;
        let mut out = [0u8; FSLABEL_MAX];
        out[..label.len()].copy_from_slice(&label);
        Ok(out)
    }

    /// FS_IOC_SETFSLABEL: root only (CAP_SYS_ADMIN); the label is the
    /// buffer's bytes up to its first NUL, at most 16 of them (EINVAL).
    pub fn set_fs_label(&self, caller: &Caller<'_>, buf: &[u8]) -> FsResult<()> {
        if !caller.is_root() {
            return Err(Errno::EPERM);
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(self.fs.set_label(&buf[..end])?)
    }

    /// FS_IOC_SHUTDOWN: root only (CAP_SYS_ADMIN). The client cannot pass
    /// the flags (see [`FS_IOC_SHUTDOWN`]), so it is always ext4's
    /// LOGFLUSH: what completed is committed, then nothing more is written
    /// and every request but those the kernel's ext4 still answers fails
    /// with EIO ([`ext4::Ext4::shutdown`]).
    pub fn shutdown(&self, caller: &Caller<'_>) -> FsResult<()> {
        if !caller.is_root() {
            return Err(Errno::EPERM);
        }
        Ok(self.fs.shutdown(ShutdownMode::FlushLog)?)
    }

    /// Whether the file system was shut down.
    pub fn is_shut_down(&self) -> bool {
        self.fs.is_shut_down()
    }

    /// FITRIM on `struct fstrim_range` bytes: root only (CAP_SYS_ADMIN);
    /// discards the free blocks of the range ([`ext4::Ext4::trim`]) and
    /// answers the range with `len` set to the bytes discarded.
    pub fn fitrim(&self, caller: &Caller<'_>, range: &[u8]) -> FsResult<[u8; FSTRIM_RANGE_SIZE]> {
        if !caller.is_root() {
            return Err(Errno::EPERM);
        }
        let field = |i: usize| u64::from_le_bytes(range[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (start, len, min_len) = (field(0), field(1), field(2));
        let trimmed = self.fs.trim(start, len, min_len)?;
        let mut out = [0u8; FSTRIM_RANGE_SIZE];
        out.copy_from_slice(&range[..FSTRIM_RANGE_SIZE]);
        out[8..16].copy_from_slice(&trimmed.to_le_bytes());
        Ok(out)
    }

    /// FS_IOC_SETFLAGS: the owner may change [`SETTABLE_FLAGS`], only root
    /// the immutable and append-only ones (CAP_LINUX_IMMUTABLE); flags
    /// outside the settable set must stay as they are.
    pub fn set_flags(&self, caller: &Caller<'_>, node: u64, flags: u32) -> FsResult<()> {
        let inode = self.inode(node)?;
        if !caller.owns(&inode) {
            return Err(Errno::EPERM);
        }
        let old = inode.flags() & USER_VISIBLE_FLAGS;
        let changed = (old ^ flags) & USER_VISIBLE_FLAGS;
        if changed & !SETTABLE_FLAGS != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if changed & (FL_IMMUTABLE | FL_APPEND) != 0 && !caller.is_root() {
            return Err(Errno::EPERM);
        }
        if inode.flags() & (FL_IMMUTABLE | FL_APPEND) != 0 && !caller.is_root() {
            return Err(Errno::EPERM);
        }
        self.fs.set_flags(inode.ino, flags, SETTABLE_FLAGS)?;
        // The IOCTL reply carries no attributes, but ctime moved.
        self.attrs_changed(inode.ino);
        Ok(())
    }

    /// READLINK.
    pub fn readlink(&self, node: u64) -> FsResult<Vec<u8>> {
        let inode = self.inode(node)?;
        if !inode.is_symlink() {
            return Err(Errno::EINVAL);
        }
        Ok(self.fs.read_link(&inode)?)
    }

    /// Checks that `node` names a live inode (FSYNC of a node the client knows).
    pub fn inode_exists(&self, node: u64) -> FsResult<()> {
        self.inode(node).map(|_| ())
    }

    /// Checks that `fh` is a handle of `node` of the right kind (IOCTL).
    pub fn ioctl_handle(&self, node: u64, fh: u64, dir: bool) -> FsResult<()> {
        let ino = self.nodes.inode_of(node)?;
        self.handles.get(fh, ino, dir).map(|_| ())
    }
}
