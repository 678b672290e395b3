//! Extended attributes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR, with
//! the kernel's namespace rules (`xattr_permission`): `user.` needs read
//! or write permission and exists only on files and directories,
//! `trusted.` and `security.` writes are root's (but for the removal of
//! file capabilities a write kills), POSIX ACLs belong to the owner and
//! keep the mode in step ([`ext4::Ext4::set_acl`]).

use super::access::{self, Caller, MAY_READ, MAY_WRITE};
use super::errno::{Errno, FsResult};
use super::{Ext4Fs, check_not_pinned};
use ext4::Inode;
use ext4::disk::inode::{FL_IMMUTABLE, S_ISVTX};
use ext4::fs::xattr::acl::{ACCESS_ACL, DEFAULT_ACL};
use ext4::fs::xattr::write::SetMode;

/// What GETXATTR and LISTXATTR answer.
#[derive(Debug, PartialEq, Eq)]
pub enum XattrReply {
    /// The size the value would need (the client asked with size 0).
    Size(u32),
    /// The value (or the NUL-separated name list).
    Data(Vec<u8>),
}

/// setxattr(2) flags.
const XATTR_CREATE: u32 = 1;
const XATTR_REPLACE: u32 = 2;

/// Namespaces as `xattr_permission` tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Namespace {
    User,
    Trusted,
    Security,
    Acl { default: bool },
    Other,
}

fn namespace(name: &[u8]) -> Namespace {
    if name == ACCESS_ACL {
        Namespace::Acl { default: false }
    } else if name == DEFAULT_ACL {
        Namespace::Acl { default: true }
    } else if name.starts_with(b"user.") {
        Namespace::User
    } else if name.starts_with(b"trusted.") {
        Namespace::Trusted
    } else if name.starts_with(b"security.") {
        Namespace::Security
    } else {
        Namespace::Other
    }
}

/// The file capabilities xattr (`XATTR_NAME_CAPS`).
pub(super) const CAPABILITY_XATTR: &[u8] = b"security.capability";

/// Whether a caller without CAP_SETFCAP may drop `inode`'s file
/// capabilities (see [`Ext4Fs::removexattr`]): as its owner or with write
/// permission; never on an immutable file, which nothing writes.
fn may_kill_caps(fs: &ext4::Ext4, inode: &Inode, caller: &Caller<'_>) -> FsResult<()> {
    if inode.flags() & FL_IMMUTABLE != 0 {
        return Err(Errno::EPERM);
    }
    if caller.owns(inode) {
        return Ok(());
    }
    access::check(fs, inode, caller, MAY_WRITE).map_err(|_| Errno::EPERM)
}

fn sized(data: Vec<u8>, size: u32) -> FsResult<XattrReply> {
    if size == 0 {
        return Ok(XattrReply::Size(data.len() as u32));
    }
    if data.len() > size as usize {
        return Err(Errno::ERANGE);
    }
    Ok(XattrReply::Data(data))
}

impl Ext4Fs {
    /// The write half of `xattr_permission`.
    fn may_write_xattr(&self, inode: &Inode, caller: &Caller<'_>, ns: Namespace) -> FsResult<()> {
        check_not_pinned(inode)?;
        match ns {
            Namespace::Trusted | Namespace::Security if !caller.is_root() => Err(Errno::EPERM),
            Namespace::Acl { .. } if !caller.owns(inode) => Err(Errno::EPERM),
            Namespace::User => {
                if !inode.is_reg() && !inode.is_dir() {
                    return Err(Errno::EPERM);
                }
                if inode.is_dir() && inode.mode() & S_ISVTX != 0 && !caller.owns(inode) {
                    return Err(Errno::EPERM);
                }
                access::check(&self.fs, inode, caller, MAY_WRITE)
            }
            Namespace::Other => Err(Errno::EOPNOTSUPP),
            _ => Ok(()),
        }
    }

    /// SETXATTR. `acl_kill_sgid`: the client asks to drop S_ISGID along
    /// with an ACL change (FUSE_SETXATTR_ACL_KILL_SGID).
    pub fn setxattr(
        &self,
        caller: &Caller<'_>,
        node: u64,
        name: &[u8],
        value: &[u8],
        flags: u32,
        acl_kill_sgid: bool,
    ) -> FsResult<()> {
        let inode = self.inode(node)?;
        let ns = namespace(name);
        self.may_write_xattr(&inode, caller, ns)?;
        let mode = match flags & (XATTR_CREATE | XATTR_REPLACE) {
            0 => SetMode::Any,
            XATTR_CREATE => SetMode::Create,
            XATTR_REPLACE => SetMode::Replace,
            _ => return Err(Errno::EINVAL),
        };
        if let Namespace::Acl { default } = ns {
            if default && !inode.is_dir() {
                return Err(Errno::EACCES);
            }
            let kill = !default && (acl_kill_sgid || (!caller.is_root() && !caller.in_group(inode.gid())));
            self.fs.set_acl(inode.ino, default, Some(value), mode, kill)?;
            return Ok(());
        }
        Ok(self.fs.setxattr(inode.ino, name, value, mode)?)
    }

    /// GETXATTR; `size` 0 asks for the size only.
    pub fn getxattr(&self, caller: &Caller<'_>, node: u64, name: &[u8], size: u32) -> FsResult<XattrReply> {
        let inode = self.inode(node)?;
        match namespace(name) {
            Namespace::Trusted if !caller.is_root() => return Err(Errno::ENODATA),
            Namespace::User if !inode.is_reg() && !inode.is_dir() => return Err(Errno::ENODATA),
            Namespace::User => access::check(&self.fs, &inode, caller, MAY_READ)?,
            Namespace::Other if !name.starts_with(b"system.") => return Err(Errno::EOPNOTSUPP),
            _ => {}
        }
        sized(self.fs.get_xattr(&inode, name)?, size)
    }

    /// LISTXATTR: NUL-terminated names; `trusted.` ones only for root.
    pub fn listxattr(&self, caller: &Caller<'_>, node: u64, size: u32) -> FsResult<XattrReply> {
        let inode = self.inode(node)?;
        let mut names = Vec::new();
        for x in self.fs.list_xattrs(&inode)? {
            if namespace(&x.name) == Namespace::Trusted && !caller.is_root() {
                continue;
            }
            names.extend_from_slice(&x.name);
            names.push(0);
        }
        sized(names, size)
    }

    /// REMOVEXATTR. `security.capability` may also go at the request of
    /// the owner or of a caller who may write the file: the client's own
    /// kill of file capabilities on a write, truncate or chown
    /// (`security_inode_killpriv` → `__vfs_removexattr`, skipping the
    /// CAP_SETFCAP check of removexattr(2)) arrives with that caller's ids,
    /// and such a caller can drop them on ext4 anyway (a truncate to the
    /// same size does). Setting it stays root's.
    pub fn removexattr(&self, caller: &Caller<'_>, node: u64, name: &[u8]) -> FsResult<()> {
        let inode = self.inode(node)?;
        let ns = namespace(name);
        if name == CAPABILITY_XATTR && !caller.is_root() {
            may_kill_caps(&self.fs, &inode, caller)?;
            return Ok(self.fs.removexattr(inode.ino, name)?);
        }
        self.may_write_xattr(&inode, caller, ns)?;
        if let Namespace::Acl { default } = ns {
            self.fs.set_acl(inode.ino, default, None, SetMode::Replace, false)?;
            return Ok(());
        }
        Ok(self.fs.removexattr(inode.ino, name)?)
    }
}
