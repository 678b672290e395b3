//! Extended attribute storage: the in-inode area (a 4-byte magic after the
//! inode's extra fields), the external xattr block (a 32-byte header), the
//! variable-length entries both share, the name-index table, the entry and
//! block hashes, and the xattr block checksum.
//!
//! Both containers hold a list of entries, ended by four zero bytes, and the
//! values, packed from the end of the container downwards. Value offsets are
//! relative to the first entry in the inode and to the block start in a block.

use super::checksum::crc32c;
use super::codec::{layout, le32};
use crate::error::{Error, Location, Result};

/// Magic number of the in-inode area and of xattr blocks.
pub const XATTR_MAGIC: u32 = 0xEA02_0000;

/// Entries and values are padded to multiples of this.
pub const XATTR_PAD: usize = 4;

/// Size of the list terminator (four zero bytes).
const TERMINATOR_LEN: usize = 4;

layout! {
    /// Header of the in-inode xattr area (`struct ext4_xattr_ibody_header`).
    pub struct IbodyHeader (4) {
        0x00 => magic: u32,
    }
}

layout! {
    /// Header of an external xattr block (`struct ext4_xattr_header`).
    pub struct BlockHeader (32) {
        0x00 => magic: u32,
        /// Number of inodes sharing this block.
        0x04 => refcount: u32,
        /// Number of blocks the attributes use; always 1.
        0x08 => blocks: u32,
        /// Hash of all entry hashes (0: the block must not be shared).
        0x0C => hash: u32,
        /// metadata_csum checksum, see [`block_checksum`].
        0x10 => checksum: u32,
        0x14 => reserved: [u32; 3],
    }
}

const BLOCK_CHECKSUM_OFFSET: usize = 0x10;

layout! {
    /// The fixed part of an entry (`struct ext4_xattr_entry` without the name).
    pub struct EntryHead (16) {
        0x00 => name_len: u8,
        0x01 => name_index: u8,
        /// Value offset (see the module documentation for its base).
        0x02 => value_offs: u16,
        /// Inode holding the value (ea_inode feature), or 0.
        0x04 => value_inum: u32,
        0x08 => value_size: u32,
        0x0C => hash: u32,
    }
}

/// One xattr entry: the fixed fields and the name suffix (after the prefix
/// implied by `name_index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XattrEntry {
    /// Name index, selecting the prefix (see [`prefix_of`]).
    pub name_index: u8,
    /// Value offset within the container.
    pub value_offs: u16,
    /// Inode holding the value (ea_inode), or 0 when the value is inline.
    pub value_inum: u32,
    /// Value length in bytes.
    pub value_size: u32,
    /// Entry hash (see [`entry_hash`]); 0 when not computed.
    pub hash: u32,
    /// Name suffix, at most 255 bytes.
    pub name: Vec<u8>,
}

/// Rounds `n` up to the xattr padding.
pub fn pad(n: usize) -> usize {
    n.div_ceil(XATTR_PAD) * XATTR_PAD
}

impl XattrEntry {
    /// On-disk length of an entry with a name of `name_len` bytes.
    pub fn record_len(name_len: usize) -> usize {
        pad(EntryHead::SIZE + name_len)
    }

    /// On-disk length of this entry.
    pub fn on_disk_len(&self) -> usize {
        Self::record_len(self.name.len())
    }

    /// Parses the entry at the start of `b`, or returns `None` at the list
    /// terminator. Errors (with a reason) if `b` cannot hold the terminator
    /// or the entry, or the name contains NUL.
    pub fn parse(b: &[u8]) -> std::result::Result<Option<XattrEntry>, String> {
        if b.len() < TERMINATOR_LEN {
            return Err("entry list is not terminated".into());
        }
        if le32(b, 0) == 0 {
            return Ok(None);
        }
        if b.len() < EntryHead::SIZE {
            return Err("entry header crosses the end".into());
        }
        let h = EntryHead::decode(b);
        let len = Self::record_len(h.name_len as usize);
        if len > b.len() {
            return Err(format!("entry name of {} bytes crosses the end", h.name_len));
        }
        let name = b[EntryHead::SIZE..EntryHead::SIZE + h.name_len as usize].to_vec();
        if name.contains(&0) {
            return Err("entry name contains NUL".into());
        }
        Ok(Some(XattrEntry {
            name_index: h.name_index,
            value_offs: h.value_offs,
            value_inum: h.value_inum,
            value_size: h.value_size,
            hash: h.hash,
            name,
        }))
    }

    /// Serializes the entry (with zeroed padding) into the start of `b`;
    /// returns its length, [`Self::on_disk_len`].
    ///
    /// # Panics
    /// If `b` is shorter than that or the name is longer than 255 bytes.
    pub fn serialize(&self, b: &mut [u8]) -> usize {
        let len = self.on_disk_len();
        let name_len = u8::try_from(self.name.len()).expect("xattr name longer than 255 bytes");
        EntryHead {
            name_len,
            name_index: self.name_index,
            value_offs: self.value_offs,
            value_inum: self.value_inum,
            value_size: self.value_size,
            hash: self.hash,
        }
        .encode(b);
        b[EntryHead::SIZE..EntryHead::SIZE + self.name.len()].copy_from_slice(&self.name);
        b[EntryHead::SIZE + self.name.len()..len].fill(0);
        len
    }
}

/// Name index of `user.` attributes.
pub const INDEX_USER: u8 = 1;
/// Name index of `system.posix_acl_access` (empty suffix).
pub const INDEX_POSIX_ACL_ACCESS: u8 = 2;
/// Name index of `system.posix_acl_default` (empty suffix).
pub const INDEX_POSIX_ACL_DEFAULT: u8 = 3;
/// Name index of `trusted.` attributes.
pub const INDEX_TRUSTED: u8 = 4;
/// Name index of `security.` attributes.
pub const INDEX_SECURITY: u8 = 6;
/// Name index of `system.` attributes (e.g. `system.data`, inline data).
pub const INDEX_SYSTEM: u8 = 7;
/// Name index of `system.richacl` (empty suffix).
pub const INDEX_RICHACL: u8 = 8;
/// Name index of `gnu.` attributes (GNU Hurd).
pub const INDEX_HURD: u8 = 10;

/// Name-index ↔ prefix table, most specific prefix first so that the first
/// match of a full name wins. The ACL and richacl prefixes are whole names.
const PREFIXES: [(u8, &str); 8] = [
    (INDEX_POSIX_ACL_ACCESS, "system.posix_acl_access"),
    (INDEX_POSIX_ACL_DEFAULT, "system.posix_acl_default"),
    (INDEX_RICHACL, "system.richacl"),
    (INDEX_USER, "user."),
    (INDEX_TRUSTED, "trusted."),
    (INDEX_SECURITY, "security."),
    (INDEX_HURD, "gnu."),
    (INDEX_SYSTEM, "system."),
];

/// Whether the index names a whole attribute (no suffix allowed).
fn is_whole_name(index: u8) -> bool {
    matches!(index, INDEX_POSIX_ACL_ACCESS | INDEX_POSIX_ACL_DEFAULT | INDEX_RICHACL)
}

/// The prefix of a name index, or `None` for indices without a name
/// (e.g. 5, Lustre; 9, the encryption context).
pub fn prefix_of(index: u8) -> Option<&'static str> {
    PREFIXES.iter().find(|(i, _)| *i == index).map(|(_, p)| *p)
}

/// Splits a full attribute name into its name index and stored suffix.
/// `None` for unknown prefixes, empty suffixes of prefix namespaces,
/// suffixes after whole names and suffixes longer than 255 bytes.
pub fn split_name(full: &[u8]) -> Option<(u8, &[u8])> {
    let (index, prefix) = PREFIXES.iter().find(|(_, p)| full.starts_with(p.as_bytes()))?;
    let suffix = &full[prefix.len()..];
    let ok = if is_whole_name(*index) { suffix.is_empty() } else { !suffix.is_empty() && suffix.len() <= 255 };
    ok.then_some((*index, suffix))
}

/// The full name of an entry (`prefix` + suffix), if its index has a prefix
/// and the suffix fits it (whole names such as the ACLs take none): exactly
/// the names [`split_name`] maps back to the entry.
pub fn full_name(index: u8, suffix: &[u8]) -> Option<Vec<u8>> {
    let prefix = prefix_of(index)?;
    if is_whole_name(index) != suffix.is_empty() {
        return None;
    }
    let mut v = Vec::with_capacity(prefix.len() + suffix.len());
    v.extend_from_slice(prefix.as_bytes());
    v.extend_from_slice(suffix);
    Some(v)
}

const NAME_HASH_SHIFT: u32 = 5;
const VALUE_HASH_SHIFT: u32 = 16;
const BLOCK_HASH_SHIFT: u32 = 16;

/// The entry hash (`ext4_xattr_hash_entry`): the name bytes, then the value
/// as little-endian 32-bit words (zero padded). `signed_chars` gives the
/// legacy variant that kernels before 6.2 computed on platforms where
/// `char` is signed, which readers must still accept.
pub fn entry_hash(name: &[u8], value: &[u8], signed_chars: bool) -> u32 {
    let mut hash: u32 = 0;
    for &c in name {
        let c = if signed_chars { c as i8 as i32 as u32 } else { c as u32 };
        hash = (hash << NAME_HASH_SHIFT) ^ (hash >> (32 - NAME_HASH_SHIFT)) ^ c;
    }
    for word in value.chunks(XATTR_PAD) {
        let mut w = [0u8; XATTR_PAD];
        w[..word.len()].copy_from_slice(word);
        hash = (hash << VALUE_HASH_SHIFT) ^ (hash >> (32 - VALUE_HASH_SHIFT)) ^ u32::from_le_bytes(w);
    }
    hash
}

/// The block hash (`ext4_xattr_rehash`) over the entries' hashes in list
/// order; 0 if any entry hash is 0 (such a block is never shared).
pub fn block_hash<'a>(entries: impl IntoIterator<Item = &'a XattrEntry>) -> u32 {
    let mut hash: u32 = 0;
    for e in entries {
        if e.hash == 0 {
            return 0;
        }
        hash = (hash << BLOCK_HASH_SHIFT) ^ (hash >> (32 - BLOCK_HASH_SHIFT)) ^ e.hash;
    }
    hash
}

/// The metadata_csum checksum of xattr block `blk`:
/// crc32c(seed, le64 block number, whole block with `h_checksum` zeroed).
pub fn block_checksum(csum_seed: u32, blk: u64, block: &[u8]) -> u32 {
    let c = crc32c(csum_seed, &blk.to_le_bytes());
    let c = crc32c(c, &block[..BLOCK_CHECKSUM_OFFSET]);
    let c = crc32c(c, &[0; 4]);
    crc32c(c, &block[BLOCK_CHECKSUM_OFFSET + 4..])
}

/// An entry with its value, as found in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawXattr {
    /// The entry.
    pub entry: XattrEntry,
    /// The value (`entry.value_size` bytes).
    pub value: Vec<u8>,
}

/// Longest full attribute name (prefix included) user space may pass
/// (Linux `XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;

/// Largest attribute value user space may pass (Linux `XATTR_SIZE_MAX`).
pub const XATTR_SIZE_MAX: usize = 65536;

impl RawXattr {
    /// Bytes the attribute takes in a container: its entry and its padded value.
    pub fn space(&self) -> usize {
        self.entry.on_disk_len() + pad(self.value.len())
    }
}

/// Bytes a set of attributes takes in a container (entries and values;
/// the header and the list terminator excluded).
pub fn space_used(attrs: &[RawXattr]) -> usize {
    attrs.iter().map(RawXattr::space).sum()
}

/// Bytes available to entries and values in an in-inode area of
/// `area_len` bytes, after its magic and the list terminator.
pub fn ibody_capacity(area_len: usize) -> usize {
    area_len.saturating_sub(IbodyHeader::SIZE + TERMINATOR_LEN)
}

/// Bytes available to entries and values in an xattr block, after its
/// header and the list terminator.
pub fn block_capacity(block_size: usize) -> usize {
    block_size.saturating_sub(BlockHeader::SIZE + TERMINATOR_LEN)
}

/// The order of entries in an xattr block (the kernel keeps them sorted
/// and finds them by this key): name index, then name length, then name.
pub fn block_order(a: &XattrEntry, b: &XattrEntry) -> std::cmp::Ordering {
    (a.name_index, a.name.len(), &a.name).cmp(&(b.name_index, b.name.len(), &b.name))
}

/// Writes `attrs` into the container `buf`: entries from byte `first` in
/// the given order, then the terminator; values packed downwards from the
/// end of `buf` in the same order, each zero padded, their offsets taken
/// relative to `value_base`. Empty values get offset 0. Entry hashes are
/// computed when `hash` is set and left 0 otherwise. Everything past
/// `first` is rewritten. [`Error::NoSpace`] if the attributes do not fit.
fn serialize_entries(
    buf: &mut [u8],
    first: usize,
    value_base: usize,
    attrs: &mut [RawXattr],
    hash: bool,
) -> Result<()> {
    if first + space_used(attrs) + TERMINATOR_LEN > buf.len() {
        return Err(Error::NoSpace);
    }
    buf[first..].fill(0);
    let mut pos = first;
    let mut end = buf.len();
    for a in attrs.iter_mut() {
        if a.entry.name.len() > u8::MAX as usize {
            return Err(Error::InvalidName);
        }
        let size = a.value.len();
        let offs = if size == 0 {
            0
        } else {
            end -= pad(size);
            buf[end..end + size].copy_from_slice(&a.value);
            u16::try_from(end - value_base).map_err(|_| {
                Error::InvalidArgument(format!("xattr value offset {} beyond 16 bits", end - value_base))
            })?
        };
        let value_size = u32::try_from(size).map_err(|_| Error::NoSpace)?;
        a.entry.value_offs = offs;
        a.entry.value_inum = 0;
        a.entry.value_size = value_size;
        a.entry.hash = if hash { entry_hash(&a.entry.name, &a.value, false) } else { 0 };
        pos += a.entry.serialize(&mut buf[pos..]);
    }
    Ok(())
}

/// Serializes an in-inode xattr area: the magic (zero when `attrs` is
/// empty, as the kernel leaves an area without attributes), the entries in
/// the given order, the values. Like the kernel, in-inode entries carry no
/// hash. Updates each entry's offset, size and hash fields to what was
/// written. [`Error::NoSpace`] if the attributes do not fit.
pub fn serialize_ibody(area: &mut [u8], attrs: &mut [RawXattr]) -> Result<()> {
    if area.len() < IbodyHeader::SIZE + TERMINATOR_LEN {
        return Err(Error::NoSpace);
    }
    serialize_entries(area, IbodyHeader::SIZE, IbodyHeader::SIZE, attrs, false)?;
    let magic = if attrs.is_empty() { 0 } else { XATTR_MAGIC };
    IbodyHeader { magic }.encode(area);
    Ok(())
}

/// Serializes xattr block `blk`: the header (with `refcount`, one block,
/// the block hash of `ext4_xattr_rehash`), the entries in the given order
/// (callers sort them by [`block_order`]) with their hashes, the values,
/// and with `csum_seed` (metadata_csum) the block checksum. Updates each
/// entry's offset, size and hash fields to what was written.
/// [`Error::NoSpace`] if the attributes do not fit.
pub fn serialize_block(
    block: &mut [u8],
    blk: u64,
    refcount: u32,
    attrs: &mut [RawXattr],
    csum_seed: Option<u32>,
) -> Result<()> {
    if block.len() < BlockHeader::SIZE + TERMINATOR_LEN {
        return Err(Error::NoSpace);
    }
    serialize_entries(block, BlockHeader::SIZE, 0, attrs, true)?;
    let header = BlockHeader {
        magic: XATTR_MAGIC,
        refcount,
        blocks: 1,
        hash: block_hash(attrs.iter().map(|a| &a.entry)),
        ..Default::default()
    };
    write_block_header(block, blk, header, csum_seed);
    Ok(())
}

/// Encodes `header` into xattr block `blk` and, with `csum_seed`
/// (metadata_csum), stores the block checksum over the result.
pub fn write_block_header(block: &mut [u8], blk: u64, mut header: BlockHeader, csum_seed: Option<u32>) {
    header.checksum = 0;
    header.encode(block);
    if let Some(seed) = csum_seed {
        header.checksum = block_checksum(seed, blk, block);
        header.encode(block);
    }
}

/// Parses the entries of a container `buf` starting at `first`, with value
/// offsets relative to `value_base`, validating every bound.
fn parse_entries(
    buf: &[u8],
    first: usize,
    value_base: usize,
    what: &'static str,
    loc: Location,
) -> Result<Vec<RawXattr>> {
    let corrupt = |reason: String| Error::corrupt(what, loc, reason);
    // Pass 1: the entry list, which must end with a terminator in bounds.
    let mut entries = Vec::new();
    let mut pos = first;
    loop {
        let rest = buf.get(pos..).ok_or_else(|| corrupt(format!("entry list runs past the end at byte {pos}")))?;
        match XattrEntry::parse(rest).map_err(|r| corrupt(format!("entry at byte {pos}: {r}")))? {
            None => break,
            Some(e) => {
                pos += e.on_disk_len();
                entries.push(e);
            }
        }
    }
    let list_end = pos + TERMINATOR_LEN;
    // Pass 2: the values, which lie after the list and inside the container.
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if e.value_inum != 0 {
            return Err(Error::Unsupported(format!(
                "xattr value stored in ea_inode {} ({what} at {loc})",
                e.value_inum
            )));
        }
        let size = e.value_size as usize;
        let value = if size == 0 {
            Vec::new()
        } else {
            let start = value_base + e.value_offs as usize;
            let in_bounds = start >= list_end && start.checked_add(pad(size)).is_some_and(|end| end <= buf.len());
            if !in_bounds {
                return Err(corrupt(format!(
                    "value of {size} bytes at offset {} overlaps the entries or crosses the end",
                    e.value_offs
                )));
            }
            buf[start..start + size].to_vec()
        };
        out.push(RawXattr { entry: e, value });
    }
    Ok(out)
}

/// Parses an inode's in-inode xattr area ([`crate::Inode::xattr_area`]).
/// An area too short for the magic, or without it, holds no attributes.
pub fn parse_ibody(area: &[u8], ino: u32) -> Result<Vec<RawXattr>> {
    if area.len() < IbodyHeader::SIZE || IbodyHeader::decode(area).magic != XATTR_MAGIC {
        return Ok(Vec::new());
    }
    parse_entries(area, IbodyHeader::SIZE, IbodyHeader::SIZE, "in-inode xattr area", Location::Inode(ino))
}

/// Parses external xattr block `blk`, verifying its header and, when
/// `csum_seed` is given (metadata_csum), its checksum.
pub fn parse_block(block: &[u8], blk: u64, csum_seed: Option<u32>) -> Result<(BlockHeader, Vec<RawXattr>)> {
    const WHAT: &str = "xattr block";
    let loc = Location::Block(blk);
    if block.len() < BlockHeader::SIZE + TERMINATOR_LEN {
        return Err(Error::corrupt(WHAT, loc, "block too small"));
    }
    let h = BlockHeader::decode(block);
    if h.magic != XATTR_MAGIC {
        return Err(Error::corrupt(WHAT, loc, format!("bad magic {:#x}", h.magic)));
    }
    if h.blocks != 1 {
        return Err(Error::corrupt(WHAT, loc, format!("h_blocks is {}, not 1", h.blocks)));
    }
    if let Some(seed) = csum_seed {
        if block_checksum(seed, blk, block) != h.checksum {
            return Err(Error::Checksum { what: WHAT, location: loc });
        }
    }
    let attrs = parse_entries(block, BlockHeader::SIZE, 0, WHAT, loc)?;
    Ok((h, attrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_ibody_magic(area: &mut [u8]) {
        IbodyHeader { magic: XATTR_MAGIC }.encode(area);
    }

    fn entry(index: u8, name: &[u8], offs: u16, size: u32) -> XattrEntry {
        XattrEntry {
            name_index: index,
            value_offs: offs,
            value_inum: 0,
            value_size: size,
            hash: 0,
            name: name.to_vec(),
        }
    }

    /// Builds an in-inode area of `len` bytes holding `attrs`, values packed
    /// from the end like e2fsprogs does.
    fn build_ibody(len: usize, attrs: &[(u8, &[u8], &[u8])]) -> Vec<u8> {
        let mut area = vec![0u8; len];
        put_ibody_magic(&mut area);
        let mut pos = 4;
        let mut end = len;
        for (idx, name, value) in attrs {
            end -= pad(value.len());
            area[end..end + value.len()].copy_from_slice(value);
            let mut e = entry(*idx, name, (end - 4) as u16, value.len() as u32);
            e.hash = entry_hash(name, value, false);
            pos += e.serialize(&mut area[pos..]);
        }
        area
    }

    #[test]
    fn entry_roundtrip() {
        let e = XattrEntry {
            name_index: 1,
            value_offs: 0x5c,
            value_inum: 0,
            value_size: 5,
            hash: 0xabcd,
            name: b"small".to_vec(),
        };
        let mut buf = [0xffu8; 40];
        let n = e.serialize(&mut buf);
        assert_eq!(n, 24);
        assert_eq!(&buf[21..24], &[0, 0, 0], "padding zeroed");
        assert_eq!(XattrEntry::parse(&buf[..n]).unwrap(), Some(e));
        assert_eq!(XattrEntry::parse(&[0, 0, 0, 0]).unwrap(), None);
    }

    #[test]
    fn entry_parse_rejects_bad_names() {
        let e = entry(1, b"abcdef", 0, 0);
        let mut buf = [0u8; 24];
        e.serialize(&mut buf);
        assert!(XattrEntry::parse(&buf[..20]).is_err(), "name crossing the end");
        buf[17] = 0;
        assert!(XattrEntry::parse(&buf).is_err(), "NUL in name");
        assert!(XattrEntry::parse(&buf[..3]).is_err(), "no room for terminator");
    }

    #[test]
    fn ibody_parse_and_bounds() {
        let area = build_ibody(96, &[(7, b"data", b""), (1, b"small", b"hello"), (4, b"t", b"tv")]);
        let attrs = parse_ibody(&area, 12).unwrap();
        let got: Vec<(u8, &[u8], &[u8])> =
            attrs.iter().map(|a| (a.entry.name_index, &a.entry.name[..], &a.value[..])).collect();
        assert_eq!(got, vec![(7, &b"data"[..], &b""[..]), (1, b"small", b"hello"), (4, b"t", b"tv")]);
        // No magic: no attributes; too short: none either.
        assert!(parse_ibody(&[0u8; 96], 12).unwrap().is_empty());
        assert!(parse_ibody(&area[..3], 12).unwrap().is_empty());
    }

    #[test]
    fn malformed_ibody_areas() {
        let good = build_ibody(64, &[(1, b"a", b"0123456789")]);
        let first = 4;
        // Value offset past the end.
        let mut bad = good.clone();
        bad[first + 2..first + 4].copy_from_slice(&60u16.to_le_bytes());
        assert!(matches!(parse_ibody(&bad, 1), Err(Error::Corrupt { .. })));
        // Value overlapping the entry list.
        let mut bad = good.clone();
        bad[first + 2..first + 4].copy_from_slice(&4u16.to_le_bytes());
        assert!(matches!(parse_ibody(&bad, 1), Err(Error::Corrupt { .. })));
        // Huge value size.
        let mut bad = good.clone();
        bad[first + 8..first + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse_ibody(&bad, 1), Err(Error::Corrupt { .. })));
        // Name length crossing the end.
        let mut bad = good.clone();
        bad[first] = 200;
        assert!(matches!(parse_ibody(&bad, 1), Err(Error::Corrupt { .. })));
        // List without terminator: entries fill the whole area.
        let mut bad = vec![0u8; 4 + 20];
        put_ibody_magic(&mut bad);
        entry(1, b"abcd", 0, 0).serialize(&mut bad[4..]);
        assert!(matches!(parse_ibody(&bad, 1), Err(Error::Corrupt { .. })));
        // ea_inode values are unsupported.
        let mut bad = good.clone();
        bad[first + 4..first + 8].copy_from_slice(&13u32.to_le_bytes());
        assert!(matches!(parse_ibody(&bad, 1), Err(Error::Unsupported(_))));
    }

    fn build_block(attrs: &[(u8, &[u8], &[u8])], blk: u64, seed: u32) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        let mut pos = BlockHeader::SIZE;
        let mut end = b.len();
        let mut entries = Vec::new();
        for (idx, name, value) in attrs {
            end -= pad(value.len());
            b[end..end + value.len()].copy_from_slice(value);
            let mut e = entry(*idx, name, end as u16, value.len() as u32);
            e.hash = entry_hash(name, value, false);
            pos += e.serialize(&mut b[pos..]);
            entries.push(e);
        }
        let mut h = BlockHeader {
            magic: XATTR_MAGIC,
            refcount: 1,
            blocks: 1,
            hash: block_hash(&entries),
            ..Default::default()
        };
        h.encode(&mut b);
        h.checksum = block_checksum(seed, blk, &b);
        h.encode(&mut b);
        b
    }

    #[test]
    fn block_parse_checksum_and_header() {
        let b = build_block(&[(1, b"big", &[b'x'; 300]), (6, b"s", &[0, 1])], 77, 0x1234);
        let (h, attrs) = parse_block(&b, 77, Some(0x1234)).unwrap();
        assert_eq!(h.refcount, 1);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].value, vec![b'x'; 300]);
        assert_eq!(attrs[1].value, vec![0, 1]);
        assert_eq!(h.hash, block_hash(attrs.iter().map(|a| &a.entry)));
        // Checksum covers the block number and contents.
        assert!(matches!(
            parse_block(&b, 78, Some(0x1234)),
            Err(Error::Checksum { location: Location::Block(78), .. })
        ));
        let mut bad = b.clone();
        bad[1000] ^= 1;
        assert!(matches!(parse_block(&bad, 77, Some(0x1234)), Err(Error::Checksum { .. })));
        assert!(parse_block(&bad, 77, None).is_ok());
        let mut bad = b.clone();
        bad[8] = 2;
        assert!(matches!(parse_block(&bad, 77, None), Err(Error::Corrupt { .. })));
        let mut bad = b.clone();
        bad[3] = 0;
        assert!(matches!(parse_block(&bad, 77, None), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn mutated_containers_never_panic() {
        let area = build_ibody(96, &[(7, b"data", b""), (1, b"small", b"hello"), (4, b"t", b"tv")]);
        let block = build_block(&[(1, b"big", &[b'x'; 300]), (6, b"s", &[0, 1])], 77, 0);
        for i in 0..area.len().max(block.len()) {
            for v in [0u8, 1, 0x7f, 0xff] {
                if i < area.len() {
                    let mut a = area.clone();
                    a[i] = v;
                    let _ = parse_ibody(&a, 1);
                }
                if i < 128 {
                    let mut b = block.clone();
                    b[i] = v;
                    let _ = parse_block(&b, 77, None);
                }
            }
        }
    }

    #[test]
    fn hashes_match_e2fsprogs_images() {
        // Values observed in a mke2fs -d image: "security.s" = 00 01 and
        // "user.big" = 3000 × 'x'.
        assert_eq!(entry_hash(b"s", &[0, 1], false), 0x0073_0100);
        assert_eq!(entry_hash(b"big", &[b'x'; 3000], false), 0x0001_8547);
        let acl = [
            1, 0, 0, 0, 1, 0, 6, 0, 2, 0, 4, 0, 0xe8, 3, 0, 0, 4, 0, 4, 0, 8, 0, 6, 0, 0x32, 0, 0, 0, 0x10, 0, 6, 0,
            0x20, 0, 4, 0,
        ];
        assert_eq!(entry_hash(b"", &acl, false), 0x03f5_0013);
        // The signed variant differs only for bytes >= 0x80.
        assert_eq!(entry_hash(b"abc", b"v", true), entry_hash(b"abc", b"v", false));
        assert_ne!(entry_hash("é".as_bytes(), b"", true), entry_hash("é".as_bytes(), b"", false));
        let e = |h| XattrEntry { hash: h, ..entry(1, b"a", 0, 0) };
        assert_eq!(block_hash(&[e(1), e(2)]), (1 << 16) ^ 2);
        assert_eq!(block_hash(&[e(1), e(0), e(2)]), 0);
    }

    fn raw(index: u8, name: &[u8], value: &[u8]) -> RawXattr {
        RawXattr { entry: entry(index, name, 0, 0), value: value.to_vec() }
    }

    #[test]
    fn ibody_serialize_roundtrip() {
        let mut attrs = vec![raw(7, b"data", b""), raw(1, b"small", b"hello"), raw(4, b"t", b"tv")];
        let mut area = vec![0xAAu8; 96];
        serialize_ibody(&mut area, &mut attrs).unwrap();
        let back = parse_ibody(&area, 12).unwrap();
        assert_eq!(back, attrs, "entry fields updated to what was written");
        assert_eq!(attrs[0].entry.value_offs, 0, "empty value has offset 0");
        assert!(attrs.iter().all(|a| a.entry.hash == 0), "in-inode entries carry no hash");
        // Values packed from the end in entry order, offsets from the first entry.
        assert_eq!(attrs[1].entry.value_offs as usize, 96 - 8 - 4);
        assert_eq!(&area[88..93], b"hello");
        assert_eq!(&area[93..96], &[0, 0, 0], "value padding zeroed");
        assert_eq!(attrs[2].entry.value_offs as usize, 96 - 12 - 4);
        // An empty area has no magic and no stale bytes.
        serialize_ibody(&mut area, &mut []).unwrap();
        assert!(area.iter().all(|&b| b == 0));
        assert!(parse_ibody(&area, 12).unwrap().is_empty());
    }

    #[test]
    fn ibody_capacity_is_exact() {
        let area_len = 96;
        // One entry with a 4-byte name (20 bytes) and a value filling the rest.
        let cap = ibody_capacity(area_len);
        assert_eq!(cap, 88);
        let fill = cap - XattrEntry::record_len(4);
        let mut fits = vec![raw(1, b"name", &vec![7; fill])];
        assert_eq!(space_used(&fits), cap);
        let mut area = vec![0u8; area_len];
        serialize_ibody(&mut area, &mut fits).unwrap();
        assert_eq!(parse_ibody(&area, 1).unwrap(), fits);
        let mut too_big = vec![raw(1, b"name", &vec![7; fill + 1])];
        assert!(matches!(serialize_ibody(&mut area, &mut too_big), Err(Error::NoSpace)));
        assert!(matches!(serialize_ibody(&mut [0u8; 7], &mut []), Err(Error::NoSpace)));
    }

    #[test]
    fn block_serialize_roundtrip() {
        let mut attrs = vec![raw(6, b"s", &[0, 1]), raw(1, b"big", &[b'x'; 300]), raw(1, b"a", b"")];
        attrs.sort_by(|a, b| block_order(&a.entry, &b.entry));
        let names: Vec<&[u8]> = attrs.iter().map(|a| &a.entry.name[..]).collect();
        assert_eq!(names, vec![&b"a"[..], b"big", b"s"]);
        let mut b = vec![0x55u8; 1024];
        serialize_block(&mut b, 77, 3, &mut attrs, Some(0x1234)).unwrap();
        let (h, back) = parse_block(&b, 77, Some(0x1234)).unwrap();
        assert_eq!(back, attrs);
        assert_eq!((h.refcount, h.blocks), (3, 1));
        assert_eq!(attrs[2].entry.hash, 0x0073_0100, "hash as e2fsprogs computes it");
        assert_eq!(attrs[0].entry.hash, entry_hash(b"a", b"", false));
        assert_eq!(h.hash, block_hash(attrs.iter().map(|a| &a.entry)));
        assert_ne!(h.hash, 0);
        // The refcount can be rewritten alone, checksum following.
        let mut h2 = h;
        h2.refcount = 1;
        write_block_header(&mut b, 77, h2, Some(0x1234));
        assert_eq!(parse_block(&b, 77, Some(0x1234)).unwrap().0.refcount, 1);
        // Without metadata_csum the checksum field stays 0.
        serialize_block(&mut b, 77, 1, &mut attrs, None).unwrap();
        assert_eq!(parse_block(&b, 77, None).unwrap().0.checksum, 0);
        // Capacity: header, terminator, entries and values.
        assert_eq!(block_capacity(1024), 1024 - 36);
        let mut full = vec![raw(1, b"f", &vec![1; block_capacity(1024) - XattrEntry::record_len(1)])];
        serialize_block(&mut b, 77, 1, &mut full, None).unwrap();
        full[0].value.push(1);
        assert!(matches!(serialize_block(&mut b, 77, 1, &mut full, None), Err(Error::NoSpace)));
    }

    #[test]
    fn name_table() {
        assert_eq!(split_name(b"user.foo"), Some((1, &b"foo"[..])));
        assert_eq!(split_name(b"system.posix_acl_access"), Some((2, &b""[..])));
        assert_eq!(split_name(b"system.posix_acl_default"), Some((3, &b""[..])));
        assert_eq!(split_name(b"system.posix_acl_accessX"), None);
        assert_eq!(split_name(b"system.data"), Some((7, &b"data"[..])));
        assert_eq!(split_name(b"security.selinux"), Some((6, &b"selinux"[..])));
        assert_eq!(split_name(b"user."), None);
        assert_eq!(split_name(b"bogus.x"), None);
        assert_eq!(full_name(4, b"t").unwrap(), b"trusted.t");
        assert_eq!(full_name(2, b"").unwrap(), b"system.posix_acl_access");
        assert_eq!(full_name(2, b"x"), None);
        assert_eq!(full_name(1, b""), None);
        assert_eq!(prefix_of(5), None);
    }
}
