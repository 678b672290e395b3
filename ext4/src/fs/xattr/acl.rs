//! POSIX ACL semantics of the file system, as the kernel's ext4 applies
//! them (`posix_acl_create`, `posix_acl_chmod`, `posix_acl_update_mode`):
//! a new inode inherits its parent's default ACL (which then replaces the
//! umask), chmod rewrites the access ACL's owner, group-class and other
//! entries, and setting an access ACL sets the mode bits it implies — or
//! stores no ACL at all when the mode says everything it says.

use crate::disk::acl::{Acl, AclTag};
use crate::disk::inode::Inode;
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::fs::xattr::write::SetMode;
use crate::journal::transaction::Handle;

/// Name of the access ACL xattr.
pub const ACCESS_ACL: &[u8] = b"system.posix_acl_access";
/// Name of the default ACL xattr.
pub const DEFAULT_ACL: &[u8] = b"system.posix_acl_default";

/// Permission bits of user, group and other.
const S_IRWXUGO: u16 = 0o777;

/// Restricts `acl` (a copy of a default ACL) by the requested `mode` and
/// the mode by it (`posix_acl_create_masq`). Returns the new permission
/// bits and whether the ACL says more than they do.
pub fn create_masq(acl: &mut Acl, mode: u16) -> (u16, bool) {
    let mut m = mode & S_IRWXUGO;
    let mut not_equiv = false;
    let mut mask_at = None;
    let mut group_at = None;
    for (i, e) in acl.entries.iter_mut().enumerate() {
        match e.tag {
            AclTag::UserObj => {
                e.perm &= (m >> 6) & 7;
                m &= (e.perm << 6) | !0o700;
            }
            AclTag::User(_) | AclTag::Group(_) => not_equiv = true,
            AclTag::GroupObj => group_at = Some(i),
            AclTag::Other => {
                e.perm &= m & 7;
                m &= e.perm | !0o007;
            }
            AclTag::Mask => {
                mask_at = Some(i);
                not_equiv = true;
            }
        }
    }
    if let Some(i) = mask_at.or(group_at) {
        let e = &mut acl.entries[i];
        e.perm &= (m >> 3) & 7;
        m &= (e.perm << 3) | !0o070;
    }
    ((mode & !S_IRWXUGO) | (m & S_IRWXUGO), not_equiv)
}

/// Rewrites the owner, group-class (the mask if there is one, else the
/// owning group) and other entries of an access ACL from `mode`
/// (`__posix_acl_chmod`).
pub fn chmod_acl(acl: &mut Acl, mode: u16) {
    let has_mask = acl.entries.iter().any(|e| e.tag == AclTag::Mask);
    for e in &mut acl.entries {
        match e.tag {
            AclTag::UserObj => e.perm = (mode >> 6) & 7,
            AclTag::Mask => e.perm = (mode >> 3) & 7,
            AclTag::GroupObj if !has_mask => e.perm = (mode >> 3) & 7,
            AclTag::Other => e.perm = mode & 7,
            _ => {}
        }
    }
}

/// The permission bits an access ACL implies, and whether it is fully
/// described by them (only the three base entries: `posix_acl_equiv_mode`).
pub fn acl_mode(acl: &Acl) -> (u16, bool) {
    let (mut user, mut group, mut other, mut mask) = (0, 0, 0, None);
    let mut equiv = true;
    for e in &acl.entries {
        match e.tag {
            AclTag::UserObj => user = e.perm,
            AclTag::GroupObj => group = e.perm,
            AclTag::Other => other = e.perm,
            AclTag::Mask => {
                mask = Some(e.perm);
                equiv = false;
            }
            AclTag::User(_) | AclTag::Group(_) => equiv = false,
        }
    }
    ((user << 6) | (mask.unwrap_or(group) << 3) | other, equiv)
}

impl Ext4 {
    /// The parent's default ACL, if any.
    fn default_acl(&self, parent: &Inode) -> Result<Option<Acl>> {
        match self.get_xattr(parent, DEFAULT_ACL) {
            Ok(v) => Ok(Some(Acl::from_xattr(&v)?)),
            Err(Error::NoAttr) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creation semantics of an ACL-enabled file system for `inode`, new
    /// in directory `parent`, inside `h`: with a default ACL on the parent
    /// the inode's mode is masked by it, it gets an access ACL when the
    /// result is not plain mode bits, and a directory inherits the default
    /// ACL itself; without one the umask applies. Symlinks take neither.
    pub fn inherit_acls_in(&self, h: &mut Handle<'_>, parent: &Inode, inode: &mut Inode, umask: u16) -> Result<()> {
        if inode.is_symlink() {
            return Ok(());
        }
        let Some(default) = self.default_acl(parent)? else {
            inode.raw.mode &= !(umask & S_IRWXUGO);
            return Ok(());
        };
        let mut access = default.clone();
        let (mode, not_equiv) = create_masq(&mut access, inode.raw.mode);
        inode.raw.mode = mode;
        if not_equiv {
            self.set_xattr(h, inode, ACCESS_ACL, &access.to_xattr(), SetMode::Any)?;
        }
        if inode.is_dir() {
            self.set_xattr(h, inode, DEFAULT_ACL, &default.to_xattr(), SetMode::Any)?;
        }
        Ok(())
    }

    /// After a chmod of `inode` inside `h`: keeps its access ACL in step
    /// with the new mode bits.
    pub fn chmod_acl_in(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        let mut acl = match self.get_xattr(inode, ACCESS_ACL) {
            Ok(v) => Acl::from_xattr(&v)?,
            Err(Error::NoAttr) => return Ok(()),
            Err(e) => return Err(e),
        };
        chmod_acl(&mut acl, inode.raw.mode);
        self.set_xattr(h, inode, ACCESS_ACL, &acl.to_xattr(), SetMode::Any)
    }

    /// Sets (or with `value` `None` removes) the access or default ACL of
    /// inode `ino` in one handle, as setxattr(2) of the ACL names does on
    /// an ACL-enabled file system: an access ACL sets the mode bits it
    /// implies and is not stored when they say it all; `kill_sgid` drops
    /// S_ISGID (the caller is not in the file's group). A default ACL on
    /// anything but a directory is [`Error::InvalidArgument`] (EACCES in
    /// the kernel, which the caller maps).
    pub fn set_acl(
        &self,
        ino: u32,
        default: bool,
        value: Option<&[u8]>,
        mode: SetMode,
        kill_sgid: bool,
    ) -> Result<Inode> {
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        let name = if default { DEFAULT_ACL } else { ACCESS_ACL };
        if default && !inode.is_dir() {
            return Err(Error::InvalidArgument("default ACL on a non-directory".into()));
        }
        match value {
            None => self.remove_xattr(&mut h, &mut inode, name)?,
            Some(v) => {
                let acl = Acl::from_xattr(v)?;
                acl.validate()?;
                let store = if default {
                    true
                } else {
                    let (bits, equiv) = acl_mode(&acl);
                    inode.raw.mode = (inode.raw.mode & !S_IRWXUGO) | bits;
                    !equiv
                };
                if store {
                    self.set_xattr(&mut h, &mut inode, name, v, mode)?;
                } else if self.get_xattr(&inode, name).is_ok() {
                    self.remove_xattr(&mut h, &mut inode, name)?;
                }
            }
        }
        if kill_sgid {
            inode.raw.mode &= !crate::disk::inode::S_ISGID;
        }
        crate::fs::data::write::touch_ctime(&mut inode, crate::fs::data::write::now());
        self.write_inode(&mut h, &mut inode)?;
        h.finish();
        Ok(inode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::acl::AclEntry;

    fn acl(entries: &[(AclTag, u16)]) -> Acl {
        Acl { entries: entries.iter().map(|&(tag, perm)| AclEntry { tag, perm }).collect() }
    }

    #[test]
    fn inherited_acl_is_masked_by_the_create_mode() {
        let mut a = acl(&[
            (AclTag::UserObj, 7),
            (AclTag::User(1000), 7),
            (AclTag::GroupObj, 5),
            (AclTag::Mask, 7),
            (AclTag::Other, 5),
        ]);
        let (mode, not_equiv) = create_masq(&mut a, 0o100644);
        assert_eq!(mode, 0o100644);
        assert!(not_equiv);
        assert_eq!(a.entries.iter().map(|e| e.perm).collect::<Vec<_>>(), vec![6, 7, 5, 4, 4]);
        let mut plain = acl(&[(AclTag::UserObj, 7), (AclTag::GroupObj, 5), (AclTag::Other, 0)]);
        assert_eq!(create_masq(&mut plain, 0o40777), (0o40750, false));
    }

    #[test]
    fn chmod_rewrites_mask_not_group() {
        let mut a = acl(&[
            (AclTag::UserObj, 7),
            (AclTag::GroupObj, 7),
            (AclTag::Group(5), 7),
            (AclTag::Mask, 7),
            (AclTag::Other, 7),
        ]);
        chmod_acl(&mut a, 0o640);
        assert_eq!(a.entries.iter().map(|e| e.perm).collect::<Vec<_>>(), vec![6, 7, 7, 4, 0]);
        assert_eq!(acl_mode(&a), (0o640, false));
        assert_eq!(acl_mode(&acl(&[(AclTag::UserObj, 6), (AclTag::GroupObj, 4), (AclTag::Other, 4)])), (0o644, true));
    }
}
