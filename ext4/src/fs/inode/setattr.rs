//! Changing inode attributes (chmod, chown, utimens, truncate): the
//! metadata half of FUSE SETATTR.

use crate::disk::inode::{
    FL_APPEND, FL_DAX, FL_DIRSYNC, FL_IMMUTABLE, FL_NOATIME, FL_NODUMP, FL_SYNC, FileType, Inode, S_IFMT, Timestamp,
};
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::fs::data::write::{now, touch_ctime};
use crate::fs::inode::atime::set_atime;

/// Which attributes to change; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (the file type bits are kept).
    pub mode: Option<u16>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// File size (regular files).
    pub size: Option<u64>,
    /// Access time.
    pub atime: Option<Timestamp>,
    /// Modification time.
    pub mtime: Option<Timestamp>,
    /// Change time (otherwise set to now when anything changes).
    pub ctime: Option<Timestamp>,
}

impl Ext4 {
    /// Applies `attr` to inode `ino` and returns the updated inode.
    pub fn setattr(&self, ino: u32, attr: &SetAttr) -> Result<Inode> {
        if let Some(size) = attr.size {
            let inode = self.read_inode(ino)?;
            if inode.is_dir() {
                return Err(Error::IsADirectory(ino));
            }
            if inode.size() != size {
                self.truncate(ino, size)?;
            }
        }
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        if let Some(mode) = attr.mode {
            inode.raw.mode = (inode.raw.mode & S_IFMT) | (mode & !S_IFMT);
            self.chmod_acl_in(&mut h, &mut inode)?;
        }
        if let Some(uid) = attr.uid {
            inode.raw.uid_lo = uid as u16;
            inode.raw.uid_hi = (uid >> 16) as u16;
        }
        if let Some(gid) = attr.gid {
            inode.raw.gid_lo = gid as u16;
            inode.raw.gid_hi = (gid >> 16) as u16;
        }
        if let Some(t) = attr.atime {
            // An explicit atime replaces one a read left pending.
            self.atimes.forget(ino);
            set_atime(&mut inode, t);
        }
        if let Some(t) = attr.mtime {
            let (s, x) = t.encode();
            inode.raw.mtime = s;
            inode.raw.mtime_extra = x;
        }
        touch_ctime(&mut inode, attr.ctime.unwrap_or_else(now));
        self.write_inode(&mut h, &mut inode)?;
        h.finish();
        Ok(inode)
    }

    /// Replaces the flags of `ino` selected by `mask` with those of
    /// `flags` (FS_IOC_SETFLAGS), updating ctime. Only [`SETTABLE_FLAGS`]
    /// can change: anything else in `mask` is [`Error::Unsupported`].
    /// Setting a flag that means nothing for the inode's type (DIRSYNC on
    /// a regular file) is [`Error::Unsupported`], as in the kernel's
    /// `ext4_fileattr_set` ([`flags_for_type`]).
    pub fn set_flags(&self, ino: u32, flags: u32, mask: u32) -> Result<Inode> {
        if mask & !SETTABLE_FLAGS != 0 {
            return Err(Error::Unsupported(format!("inode flags {:#x}", mask & !SETTABLE_FLAGS)));
        }
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        let wanted = flags & mask;
        if flags_for_type(inode.file_type(), wanted) != wanted {
            return Err(Error::Unsupported(format!("inode flags {wanted:#x} on inode {ino} of its type")));
        }
        inode.raw.flags = (inode.raw.flags & !mask) | wanted;
        touch_ctime(&mut inode, now());
        self.write_inode(&mut h, &mut inode)?;
        h.finish();
        Ok(inode)
    }
}

/// The inode flags [`Ext4::set_flags`] changes: the ones whose meaning the
/// daemon enforces (immutable, append-only, synchronous updates, DAX
/// through the window) or that need nothing of it (nodump, noatime, which
/// the atime policy honours).
pub const SETTABLE_FLAGS: u32 = FL_IMMUTABLE | FL_APPEND | FL_NODUMP | FL_NOATIME | FL_SYNC | FL_DIRSYNC | FL_DAX;

/// The flags a new inode takes from its directory: the kernel's
/// `EXT4_FL_INHERITED` less those this core does not implement
/// (compression, data journaling, case folding, project inheritance), then
/// kept per type by [`flags_for_type`].
pub const INHERITED_FLAGS: u32 = FL_SYNC | FL_NODUMP | FL_NOATIME | FL_DIRSYNC | FL_DAX;

/// The part of `flags` that means something for an inode of type `ft`
/// (the kernel's `ext4_mask_flags`): directories keep all, regular files
/// all but the directory-only flags, other types only nodump and noatime.
pub fn flags_for_type(ft: Option<FileType>, flags: u32) -> u32 {
    match ft {
        Some(FileType::Directory) => flags,
        Some(FileType::Regular) => flags & !FL_DIRSYNC,
        _ => flags & (FL_NODUMP | FL_NOATIME),
    }
}
