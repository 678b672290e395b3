//! POSIX ACLs: the compact ext4 on-disk format stored in the
//! `system.posix_acl_access` / `system.posix_acl_default` xattrs (version 1,
//! 4-byte entries without an id for the owner, owning group, mask and other
//! classes, 8-byte entries for named users and groups), the Linux
//! `posix_acl_xattr` format user space exchanges through getxattr/setxattr
//! (version 2, every entry 8 bytes), and a `getfacl`-style text rendering.

use super::codec::layout;
use crate::error::{Error, Location, Result};
use std::fmt;

/// Version of the ext4 on-disk ACL format.
pub const EXT4_ACL_VERSION: u32 = 1;
/// Version of the user-space `posix_acl_xattr` format.
pub const POSIX_ACL_XATTR_VERSION: u32 = 2;
/// The id user space sees for entries without a qualifier.
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// Read permission bit.
pub const ACL_READ: u16 = 4;
/// Write permission bit.
pub const ACL_WRITE: u16 = 2;
/// Execute permission bit.
pub const ACL_EXECUTE: u16 = 1;
const ACL_PERM_MASK: u16 = ACL_READ | ACL_WRITE | ACL_EXECUTE;

const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;

layout! {
    /// Header of both ACL formats: just the version.
    pub struct AclHeader (4) {
        0x00 => version: u32,
    }
}

layout! {
    /// An on-disk entry without a qualifier (`ext4_acl_entry_short`).
    pub struct ShortAclEntry (4) {
        0x00 => tag: u16,
        0x02 => perm: u16,
    }
}

layout! {
    /// An entry with a qualifier: the on-disk `ext4_acl_entry` of named
    /// users and groups, and every `posix_acl_xattr_entry`.
    pub struct LongAclEntry (8) {
        0x00 => tag: u16,
        0x02 => perm: u16,
        0x04 => id: u32,
    }
}

/// Whom an ACL entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclTag {
    /// The file owner (`user::`).
    UserObj,
    /// A named user (`user:ID:`).
    User(u32),
    /// The owning group (`group::`).
    GroupObj,
    /// A named group (`group:ID:`).
    Group(u32),
    /// The mask of the group class (`mask::`).
    Mask,
    /// Everybody else (`other::`).
    Other,
}

impl AclTag {
    fn code(self) -> u16 {
        match self {
            AclTag::UserObj => TAG_USER_OBJ,
            AclTag::User(_) => TAG_USER,
            AclTag::GroupObj => TAG_GROUP_OBJ,
            AclTag::Group(_) => TAG_GROUP,
            AclTag::Mask => TAG_MASK,
            AclTag::Other => TAG_OTHER,
        }
    }

    /// The qualifier of named entries.
    fn id(self) -> Option<u32> {
        match self {
            AclTag::User(id) | AclTag::Group(id) => Some(id),
            _ => None,
        }
    }

    /// Decodes a tag; `id` is consulted for named entries only.
    fn decode(code: u16, id: u32) -> Option<AclTag> {
        Some(match code {
            TAG_USER_OBJ => AclTag::UserObj,
            TAG_USER => AclTag::User(id),
            TAG_GROUP_OBJ => AclTag::GroupObj,
            TAG_GROUP => AclTag::Group(id),
            TAG_MASK => AclTag::Mask,
            TAG_OTHER => AclTag::Other,
            _ => return None,
        })
    }

    /// Whether the on-disk entry carries an id.
    fn is_named(code: u16) -> bool {
        code == TAG_USER || code == TAG_GROUP
    }
}

/// One ACL entry: whom it applies to and the `rwx` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    /// Whom the entry applies to.
    pub tag: AclTag,
    /// Permission bits ([`ACL_READ`] | [`ACL_WRITE`] | [`ACL_EXECUTE`]).
    pub perm: u16,
}

/// A POSIX ACL: its entries in stored order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    /// The entries.
    pub entries: Vec<AclEntry>,
}

impl Acl {
    /// Decodes the ext4 on-disk format (the raw xattr value). `location`
    /// names the inode for errors.
    pub fn from_disk(b: &[u8], location: Location) -> Result<Acl> {
        let corrupt = |reason: String| Error::corrupt("POSIX ACL", location, reason);
        if b.len() < AclHeader::SIZE {
            return Err(corrupt(format!("{} bytes is too short", b.len())));
        }
        let version = AclHeader::decode(b).version;
        if version != EXT4_ACL_VERSION {
            return Err(corrupt(format!("version {version}")));
        }
        let mut entries = Vec::new();
        let mut pos = AclHeader::SIZE;
        while pos < b.len() {
            let rest = &b[pos..];
            if rest.len() < ShortAclEntry::SIZE {
                return Err(corrupt(format!("truncated entry at byte {pos}")));
            }
            let short = ShortAclEntry::decode(rest);
            let (id, len) = if AclTag::is_named(short.tag) {
                if rest.len() < LongAclEntry::SIZE {
                    return Err(corrupt(format!("truncated entry at byte {pos}")));
                }
                (LongAclEntry::decode(rest).id, LongAclEntry::SIZE)
            } else {
                (ACL_UNDEFINED_ID, ShortAclEntry::SIZE)
            };
            let tag = AclTag::decode(short.tag, id).ok_or_else(|| corrupt(format!("unknown tag {:#x}", short.tag)))?;
            if short.perm & !ACL_PERM_MASK != 0 {
                return Err(corrupt(format!("bad permissions {:#o}", short.perm)));
            }
            entries.push(AclEntry { tag, perm: short.perm });
            pos += len;
        }
        Ok(Acl { entries })
    }

    /// Encodes the ext4 on-disk format.
    pub fn to_disk(&self) -> Vec<u8> {
        let len: usize = self
            .entries
            .iter()
            .map(|e| if e.tag.id().is_some() { LongAclEntry::SIZE } else { ShortAclEntry::SIZE })
            .sum();
        let mut out = vec![0u8; AclHeader::SIZE + len];
        AclHeader { version: EXT4_ACL_VERSION }.encode(&mut out);
        let mut pos = AclHeader::SIZE;
        for e in &self.entries {
            let (tag, perm) = (e.tag.code(), e.perm);
            match e.tag.id() {
                Some(id) => {
                    LongAclEntry { tag, perm, id }.encode(&mut out[pos..]);
                    pos += LongAclEntry::SIZE;
                }
                None => {
                    ShortAclEntry { tag, perm }.encode(&mut out[pos..]);
                    pos += ShortAclEntry::SIZE;
                }
            }
        }
        out
    }

    /// Decodes the user-space `posix_acl_xattr` format (a setxattr value).
    pub fn from_xattr(b: &[u8]) -> Result<Acl> {
        let invalid = |reason: String| Error::InvalidArgument(format!("POSIX ACL: {reason}"));
        if b.len() < AclHeader::SIZE || (b.len() - AclHeader::SIZE) % LongAclEntry::SIZE != 0 {
            return Err(invalid(format!("bad length {}", b.len())));
        }
        let version = AclHeader::decode(b).version;
        if version != POSIX_ACL_XATTR_VERSION {
            return Err(invalid(format!("version {version}")));
        }
        let entries = b[AclHeader::SIZE..]
            .chunks_exact(LongAclEntry::SIZE)
            .map(|c| {
                let e = LongAclEntry::decode(c);
                let tag = AclTag::decode(e.tag, e.id).ok_or_else(|| invalid(format!("unknown tag {:#x}", e.tag)))?;
                if e.perm & !ACL_PERM_MASK != 0 {
                    return Err(invalid(format!("bad permissions {:#o}", e.perm)));
                }
                Ok(AclEntry { tag, perm: e.perm })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Acl { entries })
    }

    /// Checks the structure the kernel requires of an ACL it stores
    /// (`posix_acl_valid`): one owner entry first, then named users, the
    /// owning group, named groups, the mask, and other last; a mask present
    /// exactly when there are named entries; named entries with a real id.
    pub fn validate(&self) -> Result<()> {
        #[derive(PartialEq, PartialOrd)]
        enum State {
            UserObj,
            Users,
            Groups,
            Other,
            Done,
        }
        let invalid = |reason: &str| Err(Error::InvalidArgument(format!("POSIX ACL: {reason}")));
        let mut state = State::UserObj;
        let mut named = false;
        for e in &self.entries {
            if e.perm & !ACL_PERM_MASK != 0 {
                return invalid("bad permissions");
            }
            state = match (e.tag, &state) {
                (AclTag::UserObj, State::UserObj) => State::Users,
                (AclTag::User(id), State::Users) | (AclTag::Group(id), State::Groups) => {
                    if id == ACL_UNDEFINED_ID {
                        return invalid("named entry without an id");
                    }
                    named = true;
                    continue;
                }
                (AclTag::GroupObj, State::Users) => State::Groups,
                (AclTag::Mask, State::Groups) => State::Other,
                (AclTag::Other, State::Other) => State::Done,
                (AclTag::Other, State::Groups) if !named => State::Done,
                _ => return invalid("entries out of order, repeated, or a mask missing"),
            };
        }
        if state != State::Done {
            return invalid("incomplete");
        }
        Ok(())
    }

    /// Encodes the user-space `posix_acl_xattr` format (a getxattr value);
    /// entries without a qualifier carry [`ACL_UNDEFINED_ID`].
    pub fn to_xattr(&self) -> Vec<u8> {
        let mut out = vec![0u8; AclHeader::SIZE + self.entries.len() * LongAclEntry::SIZE];
        AclHeader { version: POSIX_ACL_XATTR_VERSION }.encode(&mut out);
        for (e, chunk) in self.entries.iter().zip(out[AclHeader::SIZE..].chunks_exact_mut(LongAclEntry::SIZE)) {
            LongAclEntry { tag: e.tag.code(), perm: e.perm, id: e.tag.id().unwrap_or(ACL_UNDEFINED_ID) }.encode(chunk);
        }
        out
    }

    /// Renders the ACL like `getfacl -n -E --omit-header`, one entry per
    /// line, each prefixed with `default:` for a default ACL.
    pub fn to_text(&self, default: bool) -> String {
        let prefix = if default { "default:" } else { "" };
        self.entries.iter().map(|e| format!("{prefix}{e}\n")).collect()
    }
}

impl fmt::Display for AclEntry {
    /// `user::rw-`, `user:1000:r--`, `mask::r-x`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tag {
            AclTag::UserObj => write!(f, "user::")?,
            AclTag::User(id) => write!(f, "user:{id}:")?,
            AclTag::GroupObj => write!(f, "group::")?,
            AclTag::Group(id) => write!(f, "group:{id}:")?,
            AclTag::Mask => write!(f, "mask::")?,
            AclTag::Other => write!(f, "other::")?,
        }
        let bit = |b: u16, c: char| if self.perm & b != 0 { c } else { '-' };
        write!(f, "{}{}{}", bit(ACL_READ, 'r'), bit(ACL_WRITE, 'w'), bit(ACL_EXECUTE, 'x'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The on-disk ACL mke2fs stored for `setfacl -m u:1000:r,g:50:rw` on a 0664 file.
    const DISK: [u8; 36] = [
        1, 0, 0, 0, 1, 0, 6, 0, 2, 0, 4, 0, 0xe8, 3, 0, 0, 4, 0, 4, 0, 8, 0, 6, 0, 0x32, 0, 0, 0, 0x10, 0, 6, 0, 0x20,
        0, 4, 0,
    ];

    fn sample() -> Acl {
        let e = |tag, perm| AclEntry { tag, perm };
        Acl {
            entries: vec![
                e(AclTag::UserObj, 6),
                e(AclTag::User(1000), 4),
                e(AclTag::GroupObj, 4),
                e(AclTag::Group(50), 6),
                e(AclTag::Mask, 6),
                e(AclTag::Other, 4),
            ],
        }
    }

    #[test]
    fn disk_roundtrip() {
        let acl = Acl::from_disk(&DISK, Location::Inode(12)).unwrap();
        assert_eq!(acl, sample());
        assert_eq!(acl.to_disk(), DISK);
    }

    #[test]
    fn xattr_roundtrip_matches_getfattr() {
        // `getfattr -e hex -n system.posix_acl_access` on the source file.
        let want =
            "0200000001000600ffffffff02000400e803000004000400ffffffff080006003200000010000600ffffffff20000400ffffffff";
        let x = sample().to_xattr();
        let hex: String = x.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
        assert_eq!(Acl::from_xattr(&x).unwrap(), sample());
    }

    #[test]
    fn text_rendering() {
        assert_eq!(
            sample().to_text(false),
            "user::rw-\nuser:1000:r--\ngroup::r--\ngroup:50:rw-\nmask::rw-\nother::r--\n"
        );
        let d = Acl { entries: vec![AclEntry { tag: AclTag::Other, perm: 7 }] };
        assert_eq!(d.to_text(true), "default:other::rwx\n");
    }

    #[test]
    fn malformed_disk_acls() {
        let loc = Location::Inode(1);
        let bad = |b: &[u8]| matches!(Acl::from_disk(b, loc), Err(Error::Corrupt { .. }));
        assert!(bad(&DISK[..3]), "short header");
        assert!(bad(&[2, 0, 0, 0]), "wrong version");
        assert!(bad(&DISK[..35]), "truncated short entry");
        assert!(bad(&DISK[..14]), "truncated named entry");
        let mut d = DISK;
        d[4] = 0x40;
        assert!(bad(&d), "unknown tag");
        let mut d = DISK;
        d[6] = 8;
        assert!(bad(&d), "bad perm");
        assert_eq!(Acl::from_disk(&DISK[..4], loc).unwrap(), Acl::default());
    }

    #[test]
    fn validation_like_the_kernel() {
        let e = |tag, perm| AclEntry { tag, perm };
        let acl = |v: &[AclEntry]| Acl { entries: v.to_vec() };
        let (uo, go, m, o) = (e(AclTag::UserObj, 6), e(AclTag::GroupObj, 4), e(AclTag::Mask, 6), e(AclTag::Other, 4));
        let (u, g) = (e(AclTag::User(1000), 4), e(AclTag::Group(50), 6));
        assert!(sample().validate().is_ok());
        assert!(acl(&[uo, go, o]).validate().is_ok(), "minimal ACL");
        assert!(acl(&[uo, go, m, o]).validate().is_ok(), "mask without named entries");
        assert!(acl(&[uo, u, u, go, g, m, o]).validate().is_ok());
        for bad in [
            &[uo, u, go, o][..],
            &[go, uo, o],
            &[uo, go],
            &[uo, uo, go, o],
            &[uo, go, o, o],
            &[uo, go, m, m, o],
            &[uo, go, g, u, m, o],
            &[uo, go, o, u],
            &[],
        ] {
            assert!(acl(bad).validate().is_err(), "{bad:?}");
        }
        assert!(acl(&[uo, e(AclTag::User(ACL_UNDEFINED_ID), 4), go, m, o]).validate().is_err());
        assert!(acl(&[e(AclTag::UserObj, 8), go, o]).validate().is_err());
    }

    #[test]
    fn malformed_xattr_acls() {
        let x = sample().to_xattr();
        assert!(Acl::from_xattr(&x[..x.len() - 1]).is_err());
        assert!(Acl::from_xattr(&DISK).is_err(), "version 1 is the disk format");
        let mut y = x.clone();
        y[4] = 0x40;
        assert!(Acl::from_xattr(&y).is_err());
    }
}
