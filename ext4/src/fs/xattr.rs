//! INTERFACE STUB (owner: helper "xattrs"). Extended attributes.

use super::Ext4;
use crate::disk::inode::Inode;
use crate::error::Result;

/// One extended attribute with its full name (namespace prefix included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Full name, e.g. `user.foo` or `system.posix_acl_access`.
    pub name: Vec<u8>,
    /// Value as user space sees it (ACLs in the posix_acl_xattr format).
    pub value: Vec<u8>,
}

impl Ext4 {
    /// Every user-visible xattr of the inode (in-inode first, then the block).
    pub fn list_xattrs(&self, inode: &Inode) -> Result<Vec<Xattr>> {
        let _ = inode;
        todo!("xattr helper")
    }

    /// The value of xattr `name`, or [`crate::Error::NoAttr`].
    pub fn get_xattr(&self, inode: &Inode, name: &[u8]) -> Result<Vec<u8>> {
        let _ = (inode, name);
        todo!("xattr helper")
    }
}
