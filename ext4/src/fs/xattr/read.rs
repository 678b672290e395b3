//! Extended attributes of an inode: the in-inode area first, then the
//! external xattr block. POSIX ACLs are returned in the user-space
//! `posix_acl_xattr` format, as getxattr(2) does.

use crate::disk::acl::Acl;
use crate::disk::inode::Inode;
use crate::disk::xattr::{
    self, INDEX_HURD, INDEX_POSIX_ACL_ACCESS, INDEX_POSIX_ACL_DEFAULT, INDEX_SECURITY, INDEX_TRUSTED, INDEX_USER,
    RawXattr,
};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;

/// One extended attribute with its full name (namespace prefix included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Full name, e.g. `user.foo` or `system.posix_acl_access`.
    pub name: Vec<u8>,
    /// Value as user space sees it (ACLs in the posix_acl_xattr format).
    pub value: Vec<u8>,
}

/// Whether listxattr shows entries of this index. Like the kernel, hides
/// `system.*` (inline data), richacl, Lustre and encryption entries.
fn is_listed(index: u8) -> bool {
    matches!(
        index,
        INDEX_USER | INDEX_POSIX_ACL_ACCESS | INDEX_POSIX_ACL_DEFAULT | INDEX_TRUSTED | INDEX_SECURITY | INDEX_HURD
    )
}

impl Ext4 {
    /// Every user-visible xattr of the inode (in-inode first, then the block).
    pub fn list_xattrs(&self, inode: &Inode) -> Result<Vec<Xattr>> {
        let mut out = Vec::new();
        for raw in self.raw_xattrs(inode)? {
            let index = raw.entry.name_index;
            if !is_listed(index) {
                continue;
            }
            let Some(name) = xattr::full_name(index, &raw.entry.name) else { continue };
            let value = user_value(inode, index, raw.value)?;
            out.push(Xattr { name, value });
        }
        Ok(out)
    }

    /// The value of xattr `name`, or [`crate::Error::NoAttr`].
    pub fn get_xattr(&self, inode: &Inode, name: &[u8]) -> Result<Vec<u8>> {
        let (index, suffix) = xattr::split_name(name).ok_or(Error::NoAttr)?;
        let value = self.find_raw_xattr(inode, index, suffix)?.ok_or(Error::NoAttr)?;
        user_value(inode, index, value)
    }

    /// The stored value of the entry with name index `index` and suffix
    /// `name`, unconverted; in-inode entries take precedence.
    pub(crate) fn find_raw_xattr(&self, inode: &Inode, index: u8, name: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .raw_xattrs(inode)?
            .into_iter()
            .find(|r| r.entry.name_index == index && r.entry.name == name)
            .map(|r| r.value))
    }

    /// All entries of the inode with their stored values: the in-inode area,
    /// then the external block.
    fn raw_xattrs(&self, inode: &Inode) -> Result<Vec<RawXattr>> {
        let mut attrs = xattr::parse_ibody(inode.xattr_area(), inode.ino)?;
        let blk = inode.file_acl();
        if blk != 0 {
            if !self.geo.block_in_range(blk) {
                return Err(Error::corrupt(
                    "inode",
                    Location::Inode(inode.ino),
                    format!("xattr block {blk} outside the file system"),
                ));
            }
            let data = self.read_meta_block(blk, "xattr block")?;
            let (_, block_attrs) = xattr::parse_block(&data, blk, self.csum_seed)?;
            attrs.extend(block_attrs);
        }
        Ok(attrs)
    }
}

/// Converts a stored value to what user space sees: ACLs are translated
/// from the ext4 format to `posix_acl_xattr`.
fn user_value(inode: &Inode, index: u8, value: Vec<u8>) -> Result<Vec<u8>> {
    match index {
        INDEX_POSIX_ACL_ACCESS | INDEX_POSIX_ACL_DEFAULT => {
            Ok(Acl::from_disk(&value, Location::Inode(inode.ino))?.to_xattr())
        }
        _ => Ok(value),
    }
}
