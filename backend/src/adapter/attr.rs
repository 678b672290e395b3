//! What the client may cache, and the attributes it caches: ext4 inodes
//! as FUSE attributes and entries, with timeouts from the cache policy.

use super::AdapterOptions;
use super::nodes::node_of;
use ext4::disk::features::RoCompat;
use ext4::disk::inode::{FL_APPEND, FL_COMPR, FL_ENCRYPT, FL_IMMUTABLE, FL_NODUMP, FL_VERITY};
use ext4::{Ext4, FileType, Inode, Timestamp};
use fuse_abi::linux::{
    FOPEN_CACHE_DIR, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FUSE_ATTR_DAX, fuse_attr, fuse_attr_out, fuse_entry_out,
    fuse_statx, fuse_statx_out, fuse_sx_time,
};
use std::time::Duration;

/// How long the client may trust names, attributes and file data, named
/// as virtiofsd names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CachePolicy {
    /// Nothing is cached: every access asks the daemon, file data uses direct I/O.
    Never,
    /// Names and attributes for one second; file data until the file changes.
    #[default]
    Auto,
    /// Names and attributes for a day; file data is kept across opens
    /// (only sound when nothing else changes the image).
    Always,
}

impl CachePolicy {
    /// Entry and attribute timeout.
    pub fn timeout(self) -> Duration {
        match self {
            CachePolicy::Never => Duration::ZERO,
            CachePolicy::Auto => Duration::from_secs(1),
            CachePolicy::Always => Duration::from_secs(86400),
        }
    }

    /// FOPEN_* flags for an open file or directory.
    pub fn open_flags(self, dir: bool) -> u32 {
        match (self, dir) {
            (CachePolicy::Never, false) => FOPEN_DIRECT_IO,
            (CachePolicy::Always, false) => FOPEN_KEEP_CACHE,
            (CachePolicy::Always, true) => FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR,
            _ => 0,
        }
    }
}

/// The FUSE attributes of `inode`; with a DAX window, inodes the
/// per-inode DAX policy picks are marked for it (`-o dax=inode`).
pub fn fuse_attr_of(fs: &Ext4, inode: &Inode, opts: &AdapterOptions) -> fuse_attr {
    let huge = fs.superblock().ro_compat().has(RoCompat::HUGE_FILE);
    let (a, m, c) = (inode.atime(), inode.mtime(), inode.ctime());
    let rdev = match inode.file_type() {
        Some(FileType::CharDevice | FileType::BlockDevice) => inode.rdev(),
        _ => 0,
    };
    fuse_attr {
        ino: inode.ino as u64,
        size: inode.size(),
        blocks: inode.blocks_512(huge, fs.block_size()),
        atime: a.secs as u64,
        mtime: m.secs as u64,
        ctime: c.secs as u64,
        atimensec: a.nsecs,
        mtimensec: m.nsecs,
        ctimensec: c.nsecs,
        mode: inode.mode() as u32,
        nlink: inode.links_count() as u32,
        uid: inode.uid(),
        gid: inode.gid(),
        rdev,
        blksize: fs.block_size(),
        flags: if opts.dax.is_some_and(|p| p.wants(inode)) { FUSE_ATTR_DAX } else { 0 },
    }
}

/// GETATTR / SETATTR reply for `inode`.
pub fn attr_out(fs: &Ext4, inode: &Inode, opts: &AdapterOptions) -> fuse_attr_out {
    let t = opts.cache.timeout();
    fuse_attr_out {
        attr_valid: t.as_secs(),
        attr_valid_nsec: t.subsec_nanos(),
        dummy: 0,
        attr: fuse_attr_of(fs, inode, opts),
    }
}

/// Inode flags and the `STATX_ATTR_*` bits `ext4_getattr` reports for them.
const STATX_ATTRS: [(u32, i32); 6] = [
    (FL_APPEND, libc::STATX_ATTR_APPEND),
    (FL_COMPR, libc::STATX_ATTR_COMPRESSED),
    (FL_ENCRYPT, libc::STATX_ATTR_ENCRYPTED),
    (FL_IMMUTABLE, libc::STATX_ATTR_IMMUTABLE),
    (FL_NODUMP, libc::STATX_ATTR_NODUMP),
    (FL_VERITY, libc::STATX_ATTR_VERITY),
];

/// The `STATX_ATTR_*` attributes of `inode` and the mask of those this
/// file system supports, as `ext4_getattr` reports them (plus DAX, which
/// the VFS adds for inodes served with DAX).
pub fn statx_attributes(inode: &Inode, opts: &AdapterOptions) -> (u64, u64) {
    let flags = inode.flags();
    let mut attrs: u64 = STATX_ATTRS.iter().filter(|(f, _)| flags & f != 0).map(|&(_, a)| a as u64).sum();
    let mut mask: u64 = STATX_ATTRS.iter().map(|&(_, a)| a as u64).sum();
    mask |= libc::STATX_ATTR_DAX as u64;
    if opts.dax.is_some_and(|p| p.wants(inode)) {
        attrs |= libc::STATX_ATTR_DAX as u64;
    }
    (attrs, mask)
}

fn sx_time(t: Timestamp) -> fuse_sx_time {
    fuse_sx_time { tv_sec: t.secs, tv_nsec: t.nsecs, __reserved: 0 }
}

/// STATX reply for `inode`: the basic attributes, the creation time where
/// the inode records one, and the `STATX_ATTR_*` attributes.
pub fn statx_out(fs: &Ext4, inode: &Inode, opts: &AdapterOptions) -> fuse_statx_out {
    let a = fuse_attr_of(fs, inode, opts);
    let t = opts.cache.timeout();
    let (attributes, attributes_mask) = statx_attributes(inode, opts);
    let crtime = inode.crtime();
    let mut mask = libc::STATX_BASIC_STATS;
    if crtime.is_some() {
        mask |= libc::STATX_BTIME;
    }
    fuse_statx_out {
        attr_valid: t.as_secs(),
        attr_valid_nsec: t.subsec_nanos(),
        flags: 0,
        spare: [0; 2],
        stat: fuse_statx {
            mask,
            blksize: a.blksize,
            attributes,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            mode: inode.mode(),
            __spare0: [0],
            ino: a.ino,
            size: a.size,
            blocks: a.blocks,
            attributes_mask,
            atime: sx_time(inode.atime()),
            btime: crtime.map(sx_time).unwrap_or_default(),
            ctime: sx_time(inode.ctime()),
            mtime: sx_time(inode.mtime()),
            rdev_major: libc::major(a.rdev as libc::dev_t),
            rdev_minor: libc::minor(a.rdev as libc::dev_t),
            dev_major: 0,
            dev_minor: 0,
            __spare2: [0; 14],
        },
    }
}

/// LOOKUP-style reply for `inode` (the caller counts the lookup).
pub fn entry_out(fs: &Ext4, inode: &Inode, opts: &AdapterOptions) -> fuse_entry_out {
    let t = opts.cache.timeout();
    fuse_entry_out {
        nodeid: node_of(inode.ino),
        generation: inode.generation() as u64,
        entry_valid: t.as_secs(),
        attr_valid: t.as_secs(),
        entry_valid_nsec: t.subsec_nanos(),
        attr_valid_nsec: t.subsec_nanos(),
        attr: fuse_attr_of(fs, inode, opts),
    }
}

/// The `d_type` of a directory entry's ext4 file type code.
pub fn dirent_type(ft: u8) -> u32 {
    use ext4::disk::dir_entry::*;
    (match ft {
        FT_REG_FILE => libc::DT_REG,
        FT_DIR => libc::DT_DIR,
        FT_CHRDEV => libc::DT_CHR,
        FT_BLKDEV => libc::DT_BLK,
        FT_FIFO => libc::DT_FIFO,
        FT_SOCK => libc::DT_SOCK,
        FT_SYMLINK => libc::DT_LNK,
        _ => libc::DT_UNKNOWN,
    }) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use ext4::disk::inode::FL_DAX;

    #[test]
    fn statx_attributes_are_the_inode_flags_ext4_reports() {
        let mut inode = Inode::parse(12, &[0; 256], None).unwrap();
        let opts = AdapterOptions::default();
        let (attrs, mask) = statx_attributes(&inode, &opts);
        assert_eq!(attrs, 0);
        let all = (libc::STATX_ATTR_APPEND
            | libc::STATX_ATTR_COMPRESSED
            | libc::STATX_ATTR_ENCRYPTED
            | libc::STATX_ATTR_IMMUTABLE
            | libc::STATX_ATTR_NODUMP
            | libc::STATX_ATTR_VERITY
            | libc::STATX_ATTR_DAX) as u64;
        assert_eq!(mask, all);
        inode.raw.flags = FL_IMMUTABLE | FL_NODUMP | FL_COMPR | FL_DAX | 0x0008_0000;
        let (attrs, _) = statx_attributes(&inode, &opts);
        let want = (libc::STATX_ATTR_IMMUTABLE | libc::STATX_ATTR_NODUMP | libc::STATX_ATTR_COMPRESSED) as u64;
        assert_eq!(attrs, want, "DAX only where the inode is served with DAX; extents are no attribute");
        inode.raw.flags = FL_APPEND | FL_ENCRYPT | FL_VERITY;
        let (attrs, _) = statx_attributes(&inode, &opts);
        assert_eq!(attrs, (libc::STATX_ATTR_APPEND | libc::STATX_ATTR_ENCRYPTED | libc::STATX_ATTR_VERITY) as u64);
    }
}
