//! What the client may cache, and the attributes it caches: ext4 inodes
//! as FUSE attributes and entries, with timeouts from the cache policy.

use super::AdapterOptions;
use super::nodes::node_of;
use ext4::disk::features::RoCompat;
use ext4::disk::inode::FL_DAX;
use ext4::{Ext4, FileType, Inode};
use fuse_abi::linux::{
    FOPEN_CACHE_DIR, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FUSE_ATTR_DAX, fuse_attr, fuse_attr_out, fuse_entry_out,
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

/// The FUSE attributes of `inode`; with a DAX window, inodes with the
/// DAX flag are marked for per-inode DAX (`-o dax=inode`).
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
        flags: if opts.dax && inode.has_flag(FL_DAX) { FUSE_ATTR_DAX } else { 0 },
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
