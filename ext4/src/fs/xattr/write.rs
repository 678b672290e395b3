//! Extended attribute writes: setting and removing the attributes of an
//! inode inside a handle, placed the way the kernel places them.
//!
//! An inode's attributes are loaded whole (the in-inode area and the
//! external block), edited, and both containers are serialized back whole:
//! - a new or changed attribute goes into the in-inode area if it fits
//!   there (in-inode entries keep their order, new ones are appended, and
//!   carry no hash, as the kernel writes them), otherwise into the block
//!   (entries sorted by index, name length and name, each hashed, the block
//!   hash recomputed, the block checksummed), and it leaves the container it
//!   was in;
//! - a block shared by several inodes (`h_refcount > 1`) is never modified:
//!   the inode gets a fresh copy and the shared block's count drops by one;
//! - a block left empty is released (freed, or its count dropped when
//!   shared) and `i_file_acl` cleared; `i_blocks` follows the block.
//!
//! `system.data`, the tail of inline data, lives in the in-inode area only
//! and is reached through [`Ext4::set_system_data`] and
//! [`Ext4::remove_system_data`]; it is kept intact by every other write.
//!
//! Values stored in separate inodes (the `ea_inode` feature) are neither
//! read nor written: a value that no xattr block can hold is
//! [`Error::ValueTooLarge`].
//!
//! Left to the caller, as the VFS does it above the kernel's ext4: updating
//! the inode's ctime, permission checks, which file types may carry which
//! namespaces, and deriving the mode from an access ACL (chmod semantics).

use crate::disk::acl::Acl;
use crate::disk::features::Compat;
use crate::disk::inode::{GOOD_OLD_INODE_SIZE, Inode};
use crate::disk::xattr::{
    self, INDEX_HURD, INDEX_POSIX_ACL_ACCESS, INDEX_POSIX_ACL_DEFAULT, INDEX_SECURITY, INDEX_SYSTEM, INDEX_TRUSTED,
    INDEX_USER, RawXattr, XATTR_NAME_MAX, XATTR_SIZE_MAX, XattrEntry,
};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::journal::transaction::Handle;

/// How [`Ext4::set_xattr`] treats an attribute that exists or does not
/// (the `XATTR_CREATE` / `XATTR_REPLACE` flags of setxattr(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// Create the attribute or replace its value.
    Any,
    /// Create only: [`Error::Exists`] if the attribute exists.
    Create,
    /// Replace only: [`Error::NoAttr`] if the attribute does not exist.
    Replace,
}

/// Name suffix of `system.data`, the inline data past `i_block`.
const SYSTEM_DATA: &[u8] = b"data";

/// Which container holds an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Ibody,
    Block,
}

/// The external xattr block of an inode as loaded.
#[derive(Debug, Clone, Copy)]
struct LoadedBlock {
    blk: u64,
    refcount: u32,
}

/// An inode's attributes as stored.
#[derive(Debug, Clone, Default)]
struct Stored {
    /// In-inode entries in stored order.
    ibody: Vec<RawXattr>,
    /// Bytes the in-inode area offers entries and values; `None` when the
    /// inode has no usable area (128-byte inodes, `i_extra_isize` 0).
    ibody_cap: Option<usize>,
    /// Entries of the external block, in stored order.
    block: Vec<RawXattr>,
    /// The external block, if the inode has one.
    block_at: Option<LoadedBlock>,
}

impl Stored {
    /// Where the attribute `(index, name)` is, in-inode entries first (as
    /// readers find it).
    fn find(&self, index: u8, name: &[u8]) -> Option<(Container, usize)> {
        let is = |a: &RawXattr| a.entry.name_index == index && a.entry.name == name;
        if let Some(i) = self.ibody.iter().position(is) {
            return Some((Container::Ibody, i));
        }
        self.block.iter().position(is).map(|i| (Container::Block, i))
    }

    fn get(&self, at: (Container, usize)) -> &RawXattr {
        match at {
            (Container::Ibody, i) => &self.ibody[i],
            (Container::Block, i) => &self.block[i],
        }
    }
}

/// The new contents of the containers; `None` leaves one as it is.
#[derive(Debug, Default, PartialEq, Eq)]
struct Layout {
    ibody: Option<Vec<RawXattr>>,
    block: Option<Vec<RawXattr>>,
}

/// A new attribute with its stored value.
fn new_attr(index: u8, name: &[u8], value: Vec<u8>) -> RawXattr {
    let entry = XattrEntry {
        name_index: index,
        value_offs: 0,
        value_inum: 0,
        value_size: value.len() as u32,
        hash: 0,
        name: name.to_vec(),
    };
    RawXattr { entry, value }
}

/// Places `new` (replacing the attribute at `found`, if any) like the
/// kernel: in the in-inode area if it fits there, else in the block (only
/// the in-inode area when `inode_only`). [`Error::NoSpace`] if neither
/// can hold it.
fn place(
    s: &Stored,
    new: RawXattr,
    found: Option<(Container, usize)>,
    inode_only: bool,
    block_cap: usize,
) -> Result<Layout> {
    if let Some(cap) = s.ibody_cap {
        let mut ibody = s.ibody.clone();
        match found {
            Some((Container::Ibody, i)) => ibody[i] = new.clone(),
            _ => ibody.push(new.clone()),
        }
        if xattr::space_used(&ibody) <= cap {
            let block = match found {
                Some((Container::Block, i)) => Some(without(&s.block, i)),
                _ => None,
            };
            return Ok(Layout { ibody: Some(ibody), block });
        }
    }
    if inode_only {
        return Err(Error::NoSpace);
    }
    let ibody = match found {
        Some((Container::Ibody, i)) => Some(without(&s.ibody, i)),
        _ => None,
    };
    let mut block = s.block.clone();
    match found {
        Some((Container::Block, i)) => block[i] = new,
        _ => block.push(new),
    }
    block.sort_by(|a, b| xattr::block_order(&a.entry, &b.entry));
    if xattr::space_used(&block) > block_cap {
        return Err(Error::NoSpace);
    }
    Ok(Layout { ibody, block: Some(block) })
}

/// The layout after removing the attribute at `at`.
fn removal(s: &Stored, at: (Container, usize)) -> Layout {
    match at {
        (Container::Ibody, i) => Layout { ibody: Some(without(&s.ibody, i)), block: None },
        (Container::Block, i) => Layout { ibody: None, block: Some(without(&s.block, i)) },
    }
}

fn without(v: &[RawXattr], i: usize) -> Vec<RawXattr> {
    let mut v = v.to_vec();
    v.remove(i);
    v
}

/// Splits a full attribute name from user space into name index and
/// suffix, with the namespaces user space may write: `user.`, `trusted.`,
/// `security.`, `gnu.` and the two POSIX ACLs, as the kernel's ext4 xattr
/// handlers allow. [`Error::InvalidName`] for empty names, names over 255
/// bytes, names with NUL and a namespace prefix without a suffix;
/// [`Error::Unsupported`] for other namespaces, `system.data` (inline data,
/// see [`Ext4::set_system_data`]) and `system.richacl` included.
pub fn writable_name(name: &[u8]) -> Result<(u8, &[u8])> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX || name.contains(&0) {
        return Err(Error::InvalidName);
    }
    match xattr::split_name(name) {
        Some((
            index @ (INDEX_USER
            | INDEX_TRUSTED
            | INDEX_SECURITY
            | INDEX_HURD
            | INDEX_POSIX_ACL_ACCESS
            | INDEX_POSIX_ACL_DEFAULT),
            suffix,
        )) => Ok((index, suffix)),
        None if matches!(name, b"user." | b"trusted." | b"security." | b"gnu.") => Err(Error::InvalidName),
        _ => Err(Error::Unsupported(format!("extended attribute namespace of {:?}", String::from_utf8_lossy(name)))),
    }
}

/// Whether the mode allows the operation on an attribute that exists or not.
fn check_mode(mode: SetMode, exists: bool) -> Result<()> {
    match (mode, exists) {
        (SetMode::Create, true) => Err(Error::Exists),
        (SetMode::Replace, false) => Err(Error::NoAttr),
        _ => Ok(()),
    }
}

impl Ext4 {
    /// Sets extended attribute `name` (full name, e.g. `user.foo`) of
    /// `inode` to `value` inside `h`, and stages the inode. POSIX ACLs
    /// (`system.posix_acl_access`, `system.posix_acl_default`) take the
    /// user-space `posix_acl_xattr` format, as getxattr returns it; they
    /// are validated like the kernel does and stored in the ext4 format; an
    /// ACL without entries removes the attribute (as in the kernel).
    ///
    /// Errors: see [`writable_name`] for names; [`Error::Exists`] /
    /// [`Error::NoAttr`] per `mode`; [`Error::InvalidArgument`] for a
    /// malformed ACL; [`Error::ValueTooLarge`] for a value over 64 KiB or
    /// one an empty xattr block cannot hold (the kernel, which stores
    /// such values only with `ea_inode`, answers ENOSPC there; E2BIG says
    /// better that no amount of freeing helps); [`Error::NoSpace`] if
    /// neither the in-inode area nor the block has room, or no block is
    /// free.
    pub fn set_xattr(
        &self,
        h: &mut Handle<'_>,
        inode: &mut Inode,
        name: &[u8],
        value: &[u8],
        mode: SetMode,
    ) -> Result<()> {
        let (index, suffix) = writable_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(Error::ValueTooLarge);
        }
        let stored = if matches!(index, INDEX_POSIX_ACL_ACCESS | INDEX_POSIX_ACL_DEFAULT) {
            let acl = Acl::from_xattr(value)?;
            if acl.entries.is_empty() {
                return self.update(h, inode, index, suffix, None, mode, false);
            }
            acl.validate()?;
            acl.to_disk()
        } else {
            value.to_vec()
        };
        self.update(h, inode, index, suffix, Some(stored), mode, false)
    }

    /// Removes extended attribute `name` of `inode` inside `h`, and stages
    /// the inode. [`Error::NoAttr`] if it does not exist; names as for
    /// [`Ext4::set_xattr`].
    pub fn remove_xattr(&self, h: &mut Handle<'_>, inode: &mut Inode, name: &[u8]) -> Result<()> {
        let (index, suffix) = writable_name(name)?;
        self.update(h, inode, index, suffix, None, SetMode::Replace, false)
    }

    /// Sets `system.data`, the inline data past the 60 bytes of `i_block`,
    /// to `bytes` (possibly empty: an inline inode always carries the
    /// entry), in the in-inode area only, and stages the inode.
    /// [`Error::NoSpace`] if the area cannot hold it (see
    /// [`Ext4::max_system_data`]).
    pub fn set_system_data(&self, h: &mut Handle<'_>, inode: &mut Inode, bytes: &[u8]) -> Result<()> {
        self.update(h, inode, INDEX_SYSTEM, SYSTEM_DATA, Some(bytes.to_vec()), SetMode::Any, true)
    }

    /// Removes `system.data` (when inline data moves out to blocks) and
    /// stages the inode. [`Error::NoAttr`] if the inode has none.
    pub fn remove_system_data(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        self.update(h, inode, INDEX_SYSTEM, SYSTEM_DATA, None, SetMode::Replace, true)
    }

    /// The largest `system.data` value the in-inode area of `inode` can
    /// hold next to its other in-inode attributes (0 without an area):
    /// inline data can grow to 60 bytes plus this.
    pub fn max_system_data(&self, inode: &Inode) -> Result<usize> {
        let (ibody, cap) = ibody_of(inode)?;
        let Some(cap) = cap else { return Ok(0) };
        let others: Vec<RawXattr> = ibody
            .into_iter()
            .filter(|a| !(a.entry.name_index == INDEX_SYSTEM && a.entry.name == SYSTEM_DATA))
            .collect();
        let used = xattr::space_used(&others) + XattrEntry::record_len(SYSTEM_DATA.len());
        Ok(cap.saturating_sub(used))
    }

    /// Sets (`value` given) or removes (`None`) the attribute `(index,
    /// name)` after checking `mode`, and stages the inode; removing an
    /// absent attribute with [`SetMode::Any`] or setting the value an
    /// attribute already has leaves the attributes as they are.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        h: &mut Handle<'_>,
        inode: &mut Inode,
        index: u8,
        name: &[u8],
        value: Option<Vec<u8>>,
        mode: SetMode,
        inode_only: bool,
    ) -> Result<()> {
        let stored = self.load_stored(h, inode)?;
        let found = stored.find(index, name);
        check_mode(mode, found.is_some())?;
        // Nothing to change still stages the inode: callers rely on the
        // other fields they changed in `inode` being written.
        let layout = match (value, found) {
            (None, None) => Layout::default(),
            (None, Some(at)) => removal(&stored, at),
            (Some(value), Some(at)) if stored.get(at).value == value => Layout::default(),
            (Some(value), found) => {
                let new = new_attr(index, name, value);
                let block_cap = xattr::block_capacity(self.block_size() as usize);
                if !inode_only && new.space() > block_cap {
                    return Err(Error::ValueTooLarge);
                }
                place(&stored, new, found, inode_only, block_cap)?
            }
        };
        self.store(h, inode, &stored, layout)
    }

    /// Loads the attributes of `inode` as `h` sees them.
    fn load_stored(&self, h: &Handle<'_>, inode: &Inode) -> Result<Stored> {
        let (ibody, ibody_cap) = ibody_of(inode)?;
        let mut s = Stored { ibody, ibody_cap, ..Default::default() };
        let blk = inode.file_acl();
        if blk != 0 {
            if !self.geometry().block_in_range(blk) {
                return Err(Error::corrupt(
                    "inode",
                    Location::Inode(inode.ino),
                    format!("xattr block {blk} outside the file system"),
                ));
            }
            let data = self.meta_block_in(h, blk, "xattr block")?;
            let (header, attrs) = xattr::parse_block(&data, blk, self.csum_seed())?;
            if header.refcount == 0 {
                return Err(Error::corrupt("xattr block", Location::Block(blk), "reference count 0 but in use"));
            }
            s.block = attrs;
            s.block_at = Some(LoadedBlock { blk, refcount: header.refcount });
        }
        Ok(s)
    }

    /// Writes `layout` back: the in-inode area into the inode record, the
    /// block through `h` (copying a shared block, releasing an empty one),
    /// then stages the inode. `inode` is updated only on success.
    fn store(&self, h: &mut Handle<'_>, inode: &mut Inode, stored: &Stored, layout: Layout) -> Result<()> {
        let mut new = inode.clone();
        let mut has_attrs = false;
        if let Some(mut ibody) = layout.ibody {
            let start = GOOD_OLD_INODE_SIZE + new.raw.extra_isize as usize;
            let area = new.bytes.get_mut(start..).ok_or(Error::NoSpace)?;
            xattr::serialize_ibody(area, &mut ibody)?;
            has_attrs |= !ibody.is_empty();
        }
        if let Some(block) = layout.block {
            has_attrs |= !block.is_empty();
            self.store_block(h, &mut new, stored.block_at, block)?;
        }
        if has_attrs && !self.superblock_in(h)?.compat().has(Compat::EXT_ATTR) {
            self.update_superblock(h, |sb| sb.feature_compat |= Compat::EXT_ATTR)?;
        }
        self.write_inode(h, &mut new)?;
        *inode = new;
        Ok(())
    }

    /// Stores `attrs` as the external block of `inode`, whose block was `old`.
    fn store_block(
        &self,
        h: &mut Handle<'_>,
        inode: &mut Inode,
        old: Option<LoadedBlock>,
        mut attrs: Vec<RawXattr>,
    ) -> Result<()> {
        let seed = self.csum_seed();
        match old {
            Some(b) if b.refcount == 1 => {
                if attrs.is_empty() {
                    h.revoke(b.blk);
                    self.free_blocks(h, b.blk, 1)?;
                    set_file_acl(inode, 0);
                    self.add_inode_blocks(inode, -1)?;
                } else {
                    let mut data = vec![0u8; self.block_size() as usize];
                    xattr::serialize_block(&mut data, b.blk, 1, &mut attrs, seed)?;
                    h.write(b.blk, data);
                }
            }
            Some(b) => {
                // Shared: the other inodes keep the block as it is.
                let blk = if attrs.is_empty() { None } else { Some(self.new_xattr_block(h, inode, &mut attrs)?) };
                self.drop_block_ref(h, b.blk)?;
                match blk {
                    Some(blk) => set_file_acl(inode, blk),
                    None => {
                        set_file_acl(inode, 0);
                        self.add_inode_blocks(inode, -1)?;
                    }
                }
            }
            None if attrs.is_empty() => {}
            None => {
                let blk = self.new_xattr_block(h, inode, &mut attrs)?;
                set_file_acl(inode, blk);
                self.add_inode_blocks(inode, 1)?;
            }
        }
        Ok(())
    }

    /// Allocates a block for `inode`'s attributes (in its group, as the
    /// kernel's goal is) and stages `attrs` into it with a count of 1.
    fn new_xattr_block(&self, h: &mut Handle<'_>, inode: &Inode, attrs: &mut [RawXattr]) -> Result<u64> {
        let geo = self.geometry();
        let goal = geo.group_first_block(geo.inode_location(inode.ino).0);
        let (blk, _) = self.alloc_blocks(h, goal, 1)?;
        let mut data = vec![0u8; self.block_size() as usize];
        xattr::serialize_block(&mut data, blk, 1, attrs, self.csum_seed())?;
        h.write(blk, data);
        Ok(blk)
    }

    /// Releases the inode's external xattr block when the inode itself goes
    /// away: one reference less if shared, else the block is freed (and
    /// revoked); `i_file_acl` and `i_blocks` follow. Stages nothing else.
    pub fn release_xattr_block(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        let blk = inode.file_acl();
        if blk == 0 {
            return Ok(());
        }
        let data = self.meta_block_in(h, blk, "xattr block")?;
        let header = xattr::BlockHeader::decode(&data);
        if header.refcount > 1 {
            self.drop_block_ref(h, blk)?;
        } else {
            h.revoke(blk);
            self.free_blocks(h, blk, 1)?;
        }
        set_file_acl(inode, 0);
        self.add_inode_blocks(inode, -1)
    }

    /// Drops one reference to shared xattr block `blk`, rewriting its
    /// header and checksum; its entries stay as they are.
    fn drop_block_ref(&self, h: &mut Handle<'_>, blk: u64) -> Result<()> {
        let mut data = self.meta_block_in(h, blk, "xattr block")?.to_vec();
        let mut header = xattr::BlockHeader::decode(&data);
        header.refcount = header.refcount.saturating_sub(1);
        xattr::write_block_header(&mut data, blk, header, self.csum_seed());
        h.write(blk, data);
        Ok(())
    }
}

/// The in-inode entries of `inode` and the bytes its area offers, `None`
/// when it has no usable area: a 128-byte inode, `i_extra_isize` 0 (the
/// kernel then keeps no attributes there), or no room past the magic.
fn ibody_of(inode: &Inode) -> Result<(Vec<RawXattr>, Option<usize>)> {
    let area = inode.xattr_area();
    let entries = xattr::parse_ibody(area, inode.ino)?;
    let usable =
        inode.bytes.len() > GOOD_OLD_INODE_SIZE && inode.raw.extra_isize > 0 && xattr::ibody_capacity(area.len()) > 0;
    if !usable && !entries.is_empty() {
        return Err(Error::corrupt("inode", Location::Inode(inode.ino), "in-inode xattrs without an extra inode area"));
    }
    Ok((entries, usable.then(|| xattr::ibody_capacity(area.len()))))
}

/// Points `inode` at xattr block `blk` (0: none).
fn set_file_acl(inode: &mut Inode, blk: u64) {
    inode.raw.file_acl_lo = blk as u32;
    inode.raw.file_acl_hi = (blk >> 32) as u16;
}

impl Ext4 {
    /// Sets xattr `name` of inode `ino` in its own handle and updates ctime
    /// (setxattr(2)).
    pub fn setxattr(&self, ino: u32, name: &[u8], value: &[u8], mode: SetMode) -> Result<()> {
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        self.set_xattr(&mut h, &mut inode, name, value, mode)?;
        crate::fs::data::write::touch_ctime(&mut inode, crate::fs::data::write::now());
        self.write_inode(&mut h, &mut inode)?;
        h.finish();
        Ok(())
    }

    /// Removes xattr `name` of inode `ino` in its own handle and updates
    /// ctime (removexattr(2)).
    pub fn removexattr(&self, ino: u32, name: &[u8]) -> Result<()> {
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        self.remove_xattr(&mut h, &mut inode, name)?;
        crate::fs::data::write::touch_ctime(&mut inode, crate::fs::data::write::now());
        self.write_inode(&mut h, &mut inode)?;
        h.finish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(index: u8, name: &str, len: usize) -> RawXattr {
        new_attr(index, name.as_bytes(), vec![b'v'; len])
    }

    fn names(v: &[RawXattr]) -> Vec<String> {
        v.iter().map(|x| format!("{}:{}", x.entry.name_index, String::from_utf8_lossy(&x.entry.name))).collect()
    }

    /// A 256-byte inode with i_extra_isize 32: 96-byte area, 88 usable.
    fn stored(ibody: Vec<RawXattr>, block: Vec<RawXattr>) -> Stored {
        Stored { ibody, ibody_cap: Some(88), block, block_at: None }
    }

    #[test]
    fn names_follow_the_kernel_handlers() {
        assert_eq!(writable_name(b"user.x").unwrap(), (INDEX_USER, &b"x"[..]));
        assert_eq!(writable_name(b"trusted.t").unwrap(), (INDEX_TRUSTED, &b"t"[..]));
        assert_eq!(writable_name(b"security.selinux").unwrap(), (INDEX_SECURITY, &b"selinux"[..]));
        assert_eq!(writable_name(b"gnu.translator").unwrap(), (INDEX_HURD, &b"translator"[..]));
        assert_eq!(writable_name(b"system.posix_acl_access").unwrap(), (INDEX_POSIX_ACL_ACCESS, &b""[..]));
        assert_eq!(writable_name(b"system.posix_acl_default").unwrap(), (INDEX_POSIX_ACL_DEFAULT, &b""[..]));
        for bad in [&b""[..], b"user.", b"trusted.", b"user.a\0b"] {
            assert!(matches!(writable_name(bad), Err(Error::InvalidName)), "{bad:?}");
        }
        let long = [b"user.".to_vec(), vec![b'n'; 250]].concat();
        assert!(writable_name(&long).is_ok());
        let too_long = [b"user.".to_vec(), vec![b'n'; 251]].concat();
        assert!(matches!(writable_name(&too_long), Err(Error::InvalidName)));
        let unsupported_names = [
            &b"system.data"[..],
            b"system.richacl",
            b"system.foo",
            b"system.posix_acl_accessX",
            b"other.x",
            b"system.",
        ];
        for unsupported in unsupported_names {
            assert!(matches!(writable_name(unsupported), Err(Error::Unsupported(_))), "{unsupported:?}");
        }
    }

    #[test]
    fn modes() {
        assert!(check_mode(SetMode::Any, true).is_ok());
        assert!(check_mode(SetMode::Any, false).is_ok());
        assert!(matches!(check_mode(SetMode::Create, true), Err(Error::Exists)));
        assert!(check_mode(SetMode::Create, false).is_ok());
        assert!(matches!(check_mode(SetMode::Replace, false), Err(Error::NoAttr)));
        assert!(check_mode(SetMode::Replace, true).is_ok());
    }

    #[test]
    fn in_inode_first_then_block() {
        let s = stored(vec![], vec![]);
        // 20-byte entry + 8-byte value: in the inode.
        let l = place(&s, a(1, "a", 5), None, false, 988).unwrap();
        assert_eq!(names(l.ibody.as_ref().unwrap()), ["1:a"]);
        assert_eq!(l.block, None, "block untouched");
        // Filling the area: 88 bytes exactly still fits.
        let s = stored(vec![a(1, "a", 8)], vec![]);
        let l = place(&s, a(1, "b", 40), None, false, 988).unwrap();
        assert_eq!(names(l.ibody.as_ref().unwrap()), ["1:a", "1:b"]);
        // One byte more spills to the block, sorted there.
        let s = stored(vec![a(1, "a", 8)], vec![a(6, "s", 1), a(1, "zz", 1)]);
        let l = place(&s, a(1, "b", 41), None, false, 988).unwrap();
        assert_eq!(l.ibody, None, "in-inode area untouched");
        assert_eq!(names(l.block.as_ref().unwrap()), ["1:b", "1:zz", "6:s"]);
        // The block full: no space anywhere.
        assert!(matches!(place(&s, a(1, "b", 1000), None, false, 988), Err(Error::NoSpace)));
    }

    #[test]
    fn replacing_moves_between_containers() {
        // Growing an in-inode value past the area moves it to the block.
        let s = stored(vec![a(7, "data", 0), a(1, "a", 4)], vec![a(1, "z", 4)]);
        let l = place(&s, a(1, "a", 100), Some((Container::Ibody, 1)), false, 988).unwrap();
        assert_eq!(names(l.ibody.as_ref().unwrap()), ["7:data"], "system.data kept");
        assert_eq!(names(l.block.as_ref().unwrap()), ["1:a", "1:z"]);
        // Shrinking a block value that now fits in the inode brings it in.
        let s = stored(vec![a(7, "data", 0)], vec![a(1, "a", 100), a(1, "z", 4)]);
        let l = place(&s, a(1, "a", 4), Some((Container::Block, 0)), false, 988).unwrap();
        assert_eq!(names(l.ibody.as_ref().unwrap()), ["7:data", "1:a"]);
        assert_eq!(names(l.block.as_ref().unwrap()), ["1:z"]);
        // In-place replacement keeps the in-inode order.
        let s = stored(vec![a(1, "x", 4), a(1, "y", 4)], vec![]);
        let l = place(&s, a(1, "x", 8), Some((Container::Ibody, 0)), false, 988).unwrap();
        assert_eq!(names(l.ibody.as_ref().unwrap()), ["1:x", "1:y"]);
        assert_eq!(l.ibody.unwrap()[0].value.len(), 8);
    }

    #[test]
    fn system_data_stays_in_the_inode() {
        let s = stored(vec![a(1, "a", 24)], vec![]);
        let l = place(&s, a(7, "data", 24), None, true, 988).unwrap();
        assert_eq!(names(l.ibody.as_ref().unwrap()), ["1:a", "7:data"]);
        assert!(matches!(place(&s, a(7, "data", 25), None, true, 988), Err(Error::NoSpace)));
        // No in-inode area at all.
        let none = Stored { ibody_cap: None, ..stored(vec![], vec![]) };
        assert!(matches!(place(&none, a(7, "data", 0), None, true, 988), Err(Error::NoSpace)));
        let l = place(&none, a(1, "a", 4), None, false, 988).unwrap();
        assert_eq!(names(l.block.as_ref().unwrap()), ["1:a"]);
    }

    #[test]
    fn removal_touches_one_container() {
        let s = stored(vec![a(1, "a", 4)], vec![a(1, "b", 4), a(1, "c", 4)]);
        assert_eq!(s.find(1, b"c"), Some((Container::Block, 1)));
        assert_eq!(s.find(1, b"d"), None);
        let l = removal(&s, (Container::Block, 0));
        assert_eq!((l.ibody, names(&l.block.unwrap())), (None, vec!["1:c".to_string()]));
        let l = removal(&s, (Container::Ibody, 0));
        assert_eq!((l.ibody.unwrap(), l.block), (vec![], None));
    }
}
