//! On-disk inodes: the 128-byte base record, the extra fields of large
//! inodes, timestamps with nanoseconds and extended epoch, 32-bit ids,
//! huge_file block counts, and the inode checksum.

use super::checksum::crc32c;
use super::codec::layout;
use crate::error::{Error, Location, Result};

/// Size of the base (ext2 "good old") inode.
pub const GOOD_OLD_INODE_SIZE: usize = 128;
/// Root directory inode number.
pub const ROOT_INO: u32 = 2;
/// Journal inode number (the usual one).
pub const JOURNAL_INO: u32 = 8;

/// Inode flag: hash-indexed directory.
pub const FL_INDEX: u32 = 0x0000_1000;
/// Inode flag: huge file (i_blocks counts file-system blocks).
pub const FL_HUGE_FILE: u32 = 0x0004_0000;
/// Inode flag: extent-mapped.
pub const FL_EXTENTS: u32 = 0x0008_0000;
/// Inode flag: compressed (set by chattr +c; ext4 stores data uncompressed).
pub const FL_COMPR: u32 = 0x0000_0004;
/// Inode flag: encrypted.
pub const FL_ENCRYPT: u32 = 0x0000_0800;
/// Inode flag: fs-verity protected.
pub const FL_VERITY: u32 = 0x0010_0000;
/// Inode flag: holds a large xattr value.
pub const FL_EA_INODE: u32 = 0x0020_0000;
/// Inode flag: changes to the file are written synchronously (chattr +S).
pub const FL_SYNC: u32 = 0x0000_0008;
/// Inode flag: changes to the directory's entries are written
/// synchronously (chattr +D).
pub const FL_DIRSYNC: u32 = 0x0001_0000;
/// Inode flag: the file cannot be changed, linked to or removed.
pub const FL_IMMUTABLE: u32 = 0x0000_0010;
/// Inode flag: the file can only be appended to.
pub const FL_APPEND: u32 = 0x0000_0020;
/// Inode flag: not to be dumped.
pub const FL_NODUMP: u32 = 0x0000_0040;
/// Inode flag: atime is not updated.
pub const FL_NOATIME: u32 = 0x0000_0080;
/// Inode flag: file data accessed directly (DAX) where the mount allows.
pub const FL_DAX: u32 = 0x0200_0000;
/// Inode flag: data stored inline.
pub const FL_INLINE_DATA: u32 = 0x1000_0000;
/// Inode flag: case-folded directory.
pub const FL_CASEFOLD: u32 = 0x4000_0000;

/// Set-user-id bit of `i_mode`.
pub const S_ISUID: u16 = 0o4000;
/// Set-group-id bit of `i_mode`.
pub const S_ISGID: u16 = 0o2000;
/// Sticky bit of `i_mode`.
pub const S_ISVTX: u16 = 0o1000;
/// File type bits of `i_mode`.
pub const S_IFMT: u16 = 0o170000;
/// Socket.
pub const S_IFSOCK: u16 = 0o140000;
/// Symbolic link.
pub const S_IFLNK: u16 = 0o120000;
/// Regular file.
pub const S_IFREG: u16 = 0o100000;
/// Block device.
pub const S_IFBLK: u16 = 0o060000;
/// Directory.
pub const S_IFDIR: u16 = 0o040000;
/// Character device.
pub const S_IFCHR: u16 = 0o020000;
/// FIFO.
pub const S_IFIFO: u16 = 0o010000;

layout! {
    /// The inode record up to `i_projid` (160 bytes). Fields past the end of
    /// a small inode or past `128 + i_extra_isize` decode as zero.
    pub struct RawInode (0xA0) {
        0x00 => mode: u16,
        0x02 => uid_lo: u16,
        0x04 => size_lo: u32,
        0x08 => atime: u32,
        0x0C => ctime: u32,
        0x10 => mtime: u32,
        0x14 => dtime: u32,
        0x18 => gid_lo: u16,
        0x1A => links_count: u16,
        0x1C => blocks_lo: u32,
        0x20 => flags: u32,
        0x24 => version_lo: u32,
        0x28 => block: [u8; 60],
        0x64 => generation: u32,
        0x68 => file_acl_lo: u32,
        0x6C => size_hi: u32,
        0x70 => faddr: u32,
        0x74 => blocks_hi: u16,
        0x76 => file_acl_hi: u16,
        0x78 => uid_hi: u16,
        0x7A => gid_hi: u16,
        0x7C => checksum_lo: u16,
        0x7E => reserved: u16,
        0x80 => extra_isize: u16,
        0x82 => checksum_hi: u16,
        0x84 => ctime_extra: u32,
        0x88 => mtime_extra: u32,
        0x8C => atime_extra: u32,
        0x90 => crtime: u32,
        0x94 => crtime_extra: u32,
        0x98 => version_hi: u32,
        0x9C => projid: u32,
    }
}

const CHECKSUM_LO_OFFSET: usize = 0x7C;
const CHECKSUM_HI_OFFSET: usize = 0x82;
/// `i_extra_isize` needed for `i_checksum_hi` to exist.
const CHECKSUM_HI_EXTRA_END: u16 = 4;

/// A timestamp with nanoseconds; seconds may exceed 32 bits (extended epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Nanoseconds, 0..1e9.
    pub nsecs: u32,
}

impl Timestamp {
    /// The current time; a clock set before 1970 gives negative seconds
    /// (which ext4 timestamps can hold) rather than an error.
    pub fn now() -> Self {
        let now = std::time::SystemTime::now();
        match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp { secs: d.as_secs() as i64, nsecs: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let (secs, nsecs) = (d.as_secs() as i64, d.subsec_nanos());
                if nsecs == 0 {
                    Timestamp { secs: -secs, nsecs: 0 }
                } else {
                    Timestamp { secs: -secs - 1, nsecs: 1_000_000_000 - nsecs }
                }
            }
        }
    }

    /// Decodes a 32-bit seconds field and its optional `_extra` field.
    pub fn decode(secs: u32, extra: Option<u32>) -> Self {
        let base = secs as i32 as i64;
        match extra {
            Some(x) => Timestamp { secs: base + (((x & 3) as i64) << 32), nsecs: (x >> 2).min(999_999_999) },
            None => Timestamp { secs: base, nsecs: 0 },
        }
    }

    /// This time as a record can hold it, like the kernel's
    /// `timestamp_truncate`: seconds clamped to [`TIME_MIN`] and
    /// [`EXTRA_TIME_MAX`] (`extra`: the record has the `_extra` field) or
    /// [`TIME_MAX`]; nanoseconds below 10^9, and zero at either bound.
    pub fn clamp(self, extra: bool) -> Timestamp {
        let max = if extra { EXTRA_TIME_MAX } else { TIME_MAX };
        let secs = self.secs.clamp(TIME_MIN, max);
        let nsecs = if secs == TIME_MIN || secs == max { 0 } else { self.nsecs.min(999_999_999) };
        Timestamp { secs, nsecs }
    }

    /// Encodes into a seconds field and an `_extra` field, clamped first to
    /// what the two fields hold ([`Timestamp::clamp`] with `extra`).
    pub fn encode(self) -> (u32, u32) {
        let t = self.clamp(true);
        let secs = t.secs as u32;
        // In range, the difference is a multiple of 2^32 in 0..=3 * 2^32.
        let epoch = ((t.secs - (t.secs as i32 as i64)) >> 32) as u32 & 3;
        (secs, (t.nsecs << 2) | epoch)
    }
}

/// Earliest second an ext4 timestamp holds: the signed 32-bit field.
pub const TIME_MIN: i64 = i32::MIN as i64;
/// Latest second of a timestamp without an `_extra` field (128-byte inodes).
pub const TIME_MAX: i64 = i32::MAX as i64;
/// Latest second of a timestamp with an `_extra` field: the signed 32-bit
/// seconds plus 2 epoch bits times 2^32, i.e. 2^34 - 2^31 - 1 (the kernel's
/// `EXT4_EXTRA_TIMESTAMP_MAX`, in the year 2446).
pub const EXTRA_TIME_MAX: i64 = (1i64 << 34) - 1 + TIME_MIN;

/// The four timestamps of an inode: (seconds field, `_extra` field, the
/// `_extra` field's offset) accessors for [`Inode::fit_times`].
type TimeFields = fn(&mut RawInode) -> (&mut u32, &mut u32);
const TIME_FIELDS: [(TimeFields, usize); 4] = [
    (|r| (&mut r.ctime, &mut r.ctime_extra), 0x84),
    (|r| (&mut r.mtime, &mut r.mtime_extra), 0x88),
    (|r| (&mut r.atime, &mut r.atime_extra), 0x8C),
    (|r| (&mut r.crtime, &mut r.crtime_extra), 0x94),
];

/// File type of an inode, from `i_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// FIFO.
    Fifo,
    /// Socket.
    Socket,
}

impl FileType {
    /// The type encoded in a mode, if valid.
    pub fn from_mode(mode: u16) -> Option<Self> {
        Some(match mode & S_IFMT {
            S_IFREG => FileType::Regular,
            S_IFDIR => FileType::Directory,
            S_IFLNK => FileType::Symlink,
            S_IFCHR => FileType::CharDevice,
            S_IFBLK => FileType::BlockDevice,
            S_IFIFO => FileType::Fifo,
            S_IFSOCK => FileType::Socket,
            _ => return None,
        })
    }
}

/// A decoded inode, with the raw record kept for the in-inode xattr area
/// and for writing back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Inode number.
    pub ino: u32,
    /// Decoded fields.
    pub raw: RawInode,
    /// The whole on-disk record (`s_inode_size` bytes).
    pub bytes: Vec<u8>,
}

impl Inode {
    /// Parses an inode record, verifying its checksum when `csum_seed` is
    /// given (metadata_csum) and validating `i_extra_isize`.
    pub fn parse(ino: u32, bytes: &[u8], csum_seed: Option<u32>) -> Result<Inode> {
        let isize = bytes.len();
        let mut padded = [0u8; RawInode::SIZE];
        let base = isize.min(GOOD_OLD_INODE_SIZE);
        padded[..base].copy_from_slice(&bytes[..base]);
        let mut raw = RawInode::decode(&padded);
        if isize > GOOD_OLD_INODE_SIZE {
            let extra = super::codec::le16(bytes, GOOD_OLD_INODE_SIZE) as usize;
            if extra % 4 != 0 || GOOD_OLD_INODE_SIZE + extra > isize {
                return Err(Error::corrupt("inode", Location::Inode(ino), format!("i_extra_isize {extra} invalid")));
            }
            let end = (GOOD_OLD_INODE_SIZE + extra).min(RawInode::SIZE);
            padded[GOOD_OLD_INODE_SIZE..end].copy_from_slice(&bytes[GOOD_OLD_INODE_SIZE..end]);
            raw = RawInode::decode(&padded);
        } else {
            raw.extra_isize = 0;
        }
        let inode = Inode { ino, raw, bytes: bytes.to_vec() };
        if let Some(seed) = csum_seed {
            let want = inode.compute_checksum(seed);
            if want != inode.stored_checksum() {
                return Err(Error::Checksum { what: "inode", location: Location::Inode(ino) });
            }
        }
        Ok(inode)
    }

    fn has_checksum_hi(&self) -> bool {
        self.bytes.len() > GOOD_OLD_INODE_SIZE && self.raw.extra_isize >= CHECKSUM_HI_EXTRA_END
    }

    fn stored_checksum(&self) -> u32 {
        let hi = if self.has_checksum_hi() { (self.raw.checksum_hi as u32) << 16 } else { 0 };
        hi | self.raw.checksum_lo as u32
    }

    /// The metadata_csum checksum of this inode's record, truncated to what
    /// the record can store.
    pub fn compute_checksum(&self, csum_seed: u32) -> u32 {
        let b = &self.bytes;
        let mut c = crc32c(csum_seed, &self.ino.to_le_bytes());
        c = crc32c(c, &self.raw.generation.to_le_bytes());
        c = crc32c(c, &b[..CHECKSUM_LO_OFFSET]);
        c = crc32c(c, &[0, 0]);
        c = crc32c(c, &b[CHECKSUM_LO_OFFSET + 2..GOOD_OLD_INODE_SIZE]);
        if b.len() > GOOD_OLD_INODE_SIZE {
            c = crc32c(c, &b[GOOD_OLD_INODE_SIZE..CHECKSUM_HI_OFFSET]);
            if self.has_checksum_hi() {
                c = crc32c(c, &[0, 0]);
                c = crc32c(c, &b[CHECKSUM_HI_OFFSET + 2..]);
            } else {
                c = crc32c(c, &b[CHECKSUM_HI_OFFSET..]);
            }
        }
        if self.has_checksum_hi() { c } else { c & 0xFFFF }
    }

    /// The mode bits including the file type.
    pub fn mode(&self) -> u16 {
        self.raw.mode
    }
    /// The file type, if the mode encodes a valid one.
    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(self.raw.mode)
    }
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.raw.mode & S_IFMT == S_IFDIR
    }
    /// Whether this is a regular file.
    pub fn is_reg(&self) -> bool {
        self.raw.mode & S_IFMT == S_IFREG
    }
    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.raw.mode & S_IFMT == S_IFLNK
    }
    /// Owner user id (32 bits).
    pub fn uid(&self) -> u32 {
        (self.raw.uid_hi as u32) << 16 | self.raw.uid_lo as u32
    }
    /// Owner group id (32 bits).
    pub fn gid(&self) -> u32 {
        (self.raw.gid_hi as u32) << 16 | self.raw.gid_lo as u32
    }
    /// File size in bytes.
    pub fn size(&self) -> u64 {
        (self.raw.size_hi as u64) << 32 | self.raw.size_lo as u64
    }
    /// Hard link count.
    pub fn links_count(&self) -> u16 {
        self.raw.links_count
    }
    /// Inode flags (`FL_*`).
    pub fn flags(&self) -> u32 {
        self.raw.flags
    }
    /// Whether the given flag bits are all set.
    pub fn has_flag(&self, fl: u32) -> bool {
        self.raw.flags & fl == fl
    }
    /// The 60-byte `i_block` area (block map, extent root, inline data or fast symlink).
    pub fn i_block(&self) -> &[u8; 60] {
        &self.raw.block
    }
    /// Generation number (for NFS-style handles).
    pub fn generation(&self) -> u32 {
        self.raw.generation
    }
    /// External xattr block, or 0.
    pub fn file_acl(&self) -> u64 {
        (self.raw.file_acl_hi as u64) << 32 | self.raw.file_acl_lo as u64
    }
    /// Allocated space in 512-byte sectors, resolving huge_file semantics.
    pub fn blocks_512(&self, huge_file_feature: bool, block_size: u32) -> u64 {
        let mut n = self.raw.blocks_lo as u64;
        if huge_file_feature {
            n |= (self.raw.blocks_hi as u64) << 32;
            if self.has_flag(FL_HUGE_FILE) {
                n *= (block_size / 512) as u64;
            }
        }
        n
    }
    /// Clamps every timestamp whose record has no `_extra` field to the
    /// 32-bit range ([`Timestamp::clamp`] without extra) and zeroes that
    /// absent field: [`Timestamp::encode`] fills both fields, but a 128-byte
    /// inode (or a short `i_extra_isize`) stores only the seconds, which
    /// alone would read back as a different time. Called before encoding.
    pub fn fit_times(&mut self) {
        for (fields, extra_off) in TIME_FIELDS {
            if self.extra_has(extra_off, 4) {
                continue;
            }
            let (secs, extra) = fields(&mut self.raw);
            let t = Timestamp::decode(*secs, Some(*extra)).clamp(false);
            *secs = t.secs as i32 as u32;
            *extra = 0;
        }
    }
    fn extra_has(&self, offset: usize, len: usize) -> bool {
        GOOD_OLD_INODE_SIZE + self.raw.extra_isize as usize >= offset + len
    }
    /// Last access time.
    pub fn atime(&self) -> Timestamp {
        Timestamp::decode(self.raw.atime, self.extra_has(0x8C, 4).then_some(self.raw.atime_extra))
    }
    /// Last data modification time.
    pub fn mtime(&self) -> Timestamp {
        Timestamp::decode(self.raw.mtime, self.extra_has(0x88, 4).then_some(self.raw.mtime_extra))
    }
    /// Last inode change time.
    pub fn ctime(&self) -> Timestamp {
        Timestamp::decode(self.raw.ctime, self.extra_has(0x84, 4).then_some(self.raw.ctime_extra))
    }
    /// Creation time, where the inode records one.
    pub fn crtime(&self) -> Option<Timestamp> {
        self.extra_has(0x90, 4)
            .then(|| Timestamp::decode(self.raw.crtime, self.extra_has(0x94, 4).then_some(self.raw.crtime_extra)))
    }
    /// Deletion time (seconds), nonzero for deleted or orphaned inodes.
    pub fn dtime(&self) -> u32 {
        self.raw.dtime
    }
    /// Project id, where recorded.
    pub fn projid(&self) -> u32 {
        if self.extra_has(0x9C, 4) { self.raw.projid } else { 0 }
    }
    /// The in-inode extended attribute area (after the extra fields), if any.
    pub fn xattr_area(&self) -> &[u8] {
        let start = GOOD_OLD_INODE_SIZE + self.raw.extra_isize as usize;
        if self.bytes.len() > GOOD_OLD_INODE_SIZE && start < self.bytes.len() { &self.bytes[start..] } else { &[] }
    }
    /// Device number of a character or block device inode (old or new encoding).
    pub fn rdev(&self) -> u32 {
        let b = &self.raw.block;
        let old = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if old != 0 {
            // Old 16-bit encoding: major in bits 8..16, minor in 0..8.
            let (major, minor) = ((old >> 8) & 0xFF, old & 0xFF);
            return makedev(major, minor);
        }
        let new = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        // New encoding: minor low 8 bits, major 12 bits, minor high 12 bits.
        let major = (new & 0xFFF00) >> 8;
        let minor = (new & 0xFF) | ((new >> 12) & 0xFFF00);
        makedev(major, minor)
    }
}

/// Linux `makedev` for 32-bit dev_t as FUSE carries it.
fn makedev(major: u32, minor: u32) -> u32 {
    (minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & !0xFF) << 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_the_epoch_and_normalised() {
        let t = Timestamp::now();
        assert!(t.secs > 1_600_000_000 && t.nsecs < 1_000_000_000);
    }

    #[test]
    fn extended_epoch_timestamps() {
        let t = Timestamp { secs: (1i64 << 32) + 5, nsecs: 123 };
        let (s, x) = t.encode();
        assert_eq!(Timestamp::decode(s, Some(x)), t);
        let neg = Timestamp { secs: -5, nsecs: 7 };
        let (s, x) = neg.encode();
        assert_eq!(Timestamp::decode(s, Some(x)), neg);
        assert_eq!(Timestamp::decode(0xFFFF_FFFF, None).secs, -1);
    }

    #[test]
    fn timestamps_clamp_to_the_format_like_timestamp_truncate() {
        let ts = |secs, nsecs| Timestamp { secs, nsecs };
        // With the extra field: [-2^31, 2^34 - 2^31 - 1], ns zero at the bounds.
        assert_eq!(EXTRA_TIME_MAX, 15_032_385_535);
        assert_eq!(ts(i64::MAX, 5).clamp(true), ts(EXTRA_TIME_MAX, 0));
        assert_eq!(ts(i64::MIN, 5).clamp(true), ts(TIME_MIN, 0));
        assert_eq!(ts(EXTRA_TIME_MAX - 1, 7).clamp(true), ts(EXTRA_TIME_MAX - 1, 7));
        assert_eq!(ts(TIME_MIN + 1, 7).clamp(true), ts(TIME_MIN + 1, 7));
        assert_eq!(ts(0, u32::MAX).clamp(true), ts(0, 999_999_999));
        // Without: the signed 32-bit range.
        assert_eq!(ts(i64::MAX, 5).clamp(false), ts(TIME_MAX, 0));
        assert_eq!(ts(TIME_MAX + 1, 0).clamp(false), ts(TIME_MAX, 0));
        assert_eq!(ts(i64::MIN, 0).clamp(false), ts(TIME_MIN, 0));
    }

    #[test]
    fn encode_never_overflows_and_round_trips_in_range() {
        for secs in [i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1, EXTRA_TIME_MAX + 1, TIME_MIN - 1] {
            let (s, x) = Timestamp { secs, nsecs: 999_999_999 }.encode();
            let back = Timestamp::decode(s, Some(x));
            assert_eq!(back, Timestamp { secs, nsecs: 999_999_999 }.clamp(true), "{secs}");
        }
        assert_eq!(Timestamp { secs: i64::MAX, nsecs: 0 }.encode(), (0x7FFF_FFFF, 3));
        assert_eq!(Timestamp { secs: i64::MIN, nsecs: 0 }.encode(), (0x8000_0000, 0));
        for secs in [TIME_MIN + 1, -1, 0, 1, TIME_MAX, TIME_MAX + 1, 1 << 32, (1 << 33) + 12345, EXTRA_TIME_MAX - 1] {
            for nsecs in [0, 1, 999_999_999] {
                let t = Timestamp { secs, nsecs };
                let (s, x) = t.encode();
                assert_eq!(Timestamp::decode(s, Some(x)), t, "{secs}.{nsecs}");
            }
        }
    }

    #[test]
    fn records_without_extra_fields_keep_32_bit_times() {
        let bytes = vec![0u8; 128];
        let mut small = Inode::parse(12, &bytes, None).unwrap();
        let (s, x) = Timestamp { secs: i64::MAX, nsecs: 0 }.encode();
        (small.raw.mtime, small.raw.mtime_extra) = (s, x);
        let (s, x) = Timestamp { secs: -7, nsecs: 0 }.encode();
        (small.raw.atime, small.raw.atime_extra) = (s, x);
        small.fit_times();
        assert_eq!(small.mtime(), Timestamp { secs: TIME_MAX, nsecs: 0 });
        assert_eq!(small.atime(), Timestamp { secs: -7, nsecs: 0 });
        // A large inode keeps the extended range.
        let mut big_bytes = vec![0u8; 256];
        RawInode { extra_isize: 32, ..Default::default() }.encode(&mut big_bytes);
        let mut big = Inode::parse(12, &big_bytes, None).unwrap();
        (big.raw.mtime, big.raw.mtime_extra) = Timestamp { secs: i64::MAX, nsecs: 0 }.encode();
        big.fit_times();
        assert_eq!(big.mtime(), Timestamp { secs: EXTRA_TIME_MAX, nsecs: 0 });
    }

    #[test]
    fn checksum_roundtrip_and_small_inodes() {
        let mut bytes = vec![0u8; 256];
        let raw = RawInode { mode: S_IFREG | 0o644, extra_isize: 32, generation: 9, ..Default::default() };
        raw.encode(&mut bytes);
        let mut ino = Inode::parse(12, &bytes, None).unwrap();
        let c = ino.compute_checksum(0xabc);
        ino.raw.checksum_lo = c as u16;
        ino.raw.checksum_hi = (c >> 16) as u16;
        ino.raw.encode(&mut bytes);
        Inode::parse(12, &bytes, Some(0xabc)).unwrap();
        bytes[200] ^= 1;
        assert!(matches!(Inode::parse(12, &bytes, Some(0xabc)), Err(Error::Checksum { .. })));
        // A 128-byte inode has no extra fields.
        let small = Inode::parse(12, &bytes[..128], None).unwrap();
        assert_eq!(small.raw.extra_isize, 0);
        assert!(small.crtime().is_none());
    }

    #[test]
    fn bad_extra_isize_is_corrupt() {
        let mut bytes = vec![0u8; 256];
        RawInode { extra_isize: 200, ..Default::default() }.encode(&mut bytes);
        assert!(matches!(Inode::parse(12, &bytes, None), Err(Error::Corrupt { .. })));
    }
}
