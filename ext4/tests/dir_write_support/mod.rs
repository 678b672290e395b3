//! Support shared by the directory-mutation tests: deterministic names,
//! minimal child inodes made through the allocator, listings through our
//! reader, `debugfs` and the kernel.
#![allow(dead_code)]

use crate::common::Scratch;
pub use crate::common::kernel::Mount;
use ext4::disk::dir_entry::FT_DIR;
use ext4::disk::features::Incompat;
use ext4::disk::inode::{FL_EXTENTS, RawInode, S_IFDIR, S_IFREG};
use ext4::fs::map::extent_tree::init_root;
use ext4::journal::transaction::Handle;
use ext4::{Ext4, Inode};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;
use std::path::Path;
use std::process::Command;

/// xorshift64*: deterministic test randomness.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Name bytes: printable ASCII but '/', plus high bytes (which hash
/// differently as signed and unsigned chars).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+=,~";

/// A unique name for serial `i`: a hex prefix, then random bytes; a few
/// long names, lengths up to 255. `long`: mostly 30..70 extra bytes.
pub fn make_name(rng: &mut Rng, i: u64, long: bool) -> Vec<u8> {
    let mut name = format!("{i:x}-").into_bytes();
    let extra = match rng.below(20) {
        0 => 200 + rng.below(50),
        1..=3 => rng.below(100),
        _ if long => 30 + rng.below(40),
        _ => rng.below(16),
    };
    for _ in 0..extra {
        let b = if rng.below(8) == 0 {
            0x80 + rng.below(0x7f) as u8
        } else {
            ALPHABET[rng.below(ALPHABET.len() as u64) as usize]
        };
        name.push(b);
    }
    name.truncate(255);
    name
}

/// A fresh inode record: an empty regular file, or a directory inode
/// whose contents `new_directory` makes, as create/mkdir would write it.
pub fn fresh_inode(fs: &Ext4, ino: u32, dir: bool) -> Inode {
    let isz = fs.superblock().inode_size() as usize;
    let mut raw = RawInode {
        mode: if dir { S_IFDIR | 0o755 } else { S_IFREG | 0o644 },
        links_count: if dir { 2 } else { 1 },
        atime: 1_700_000_000,
        ctime: 1_700_000_000,
        mtime: 1_700_000_000,
        crtime: 1_700_000_000,
        generation: ino.wrapping_mul(2_654_435_761),
        extra_isize: if isz > 128 { 32 } else { 0 },
        ..Default::default()
    };
    if fs.superblock().incompat().has(Incompat::EXTENTS) {
        raw.flags = FL_EXTENTS;
        init_root(&mut raw.block);
    }
    Inode { ino, raw, bytes: vec![0u8; isz] }
}

/// Allocates and writes an empty regular file whose parent is `parent`.
pub fn new_file(fs: &Ext4, h: &mut Handle<'_>, parent: u32) -> u32 {
    let ino = fs.alloc_inode(h, parent, false).unwrap();
    let mut inode = fresh_inode(fs, ino, false);
    fs.write_inode(h, &mut inode).unwrap();
    ino
}

/// Deletes an empty regular file that lost its only link.
pub fn delete_file(fs: &Ext4, h: &mut Handle<'_>, ino: u32) {
    let mut inode = fs.read_inode_in(h, ino).unwrap();
    inode.raw.links_count = 0;
    inode.raw.dtime = 1_700_000_001;
    fs.write_inode(h, &mut inode).unwrap();
    fs.free_inode(h, ino, false).unwrap();
}

/// Makes directory `name` in `parent` (mkdir: inode, contents, entry,
/// the parent's link count) and returns its inode.
pub fn mkdir_in(fs: &Ext4, h: &mut Handle<'_>, parent: u32, name: &[u8]) -> u32 {
    let ino = fs.alloc_inode(h, parent, true).unwrap();
    let mut inode = fresh_inode(fs, ino, true);
    fs.new_directory(h, &mut inode, parent).unwrap();
    let mut p = fs.read_inode_in(h, parent).unwrap();
    fs.add_entry(h, &mut p, name, ino, FT_DIR).unwrap();
    p.raw.links_count += 1;
    fs.write_inode(h, &mut p).unwrap();
    ino
}

/// The entries (without "." and "..") as our reader lists them from
/// cookie `from`, with the cookie after each.
pub fn listing(fs: &Ext4, dir: u32, from: u64) -> Vec<(Vec<u8>, u32, u64)> {
    let inode = fs.read_inode(dir).unwrap();
    let mut out = Vec::new();
    fs.read_dir(&inode, from, &mut |e, next| {
        if e.name != b"." && e.name != b".." {
            out.push((e.name.clone(), e.ino, next));
        }
        true
    })
    .unwrap();
    out
}

/// `debugfs ls -p` of a directory: name → inode, without "." and ".."
/// (the parseable form of `ls -l`: names verbatim).
pub fn debugfs_listing(img: &Path, path: &str) -> BTreeMap<Vec<u8>, u32> {
    let out = Command::new("debugfs").arg("-R").arg(format!("ls -p {path}")).arg(img).output().unwrap();
    assert!(out.status.success());
    let mut map = BTreeMap::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| l.starts_with(b"/")) {
        let fields: Vec<&[u8]> = line[1..].split(|&b| b == b'/').collect();
        assert!(fields.len() >= 6, "debugfs line {:?}", String::from_utf8_lossy(line));
        let ino: u32 = std::str::from_utf8(fields[0]).unwrap().parse().unwrap();
        let name = fields[4].to_vec();
        // Unused records that start a block are listed with inode 0.
        if ino != 0 && name != b"." && name != b".." {
            assert!(map.insert(name, ino).is_none(), "debugfs lists a name twice");
        }
    }
    map
}

/// Mounts `img` read-only under the scratch directory, or reports a loud
/// skip for `what` and returns `None`.
pub fn mount_ro(img: &Path, scratch: &Scratch, what: &str) -> Option<Mount> {
    Mount::or_skip(img, &scratch.join("mnt"), "ro", what)
}

/// Mounts `img` read-write (see [`mount_ro`]).
pub fn mount_rw(img: &Path, scratch: &Scratch, what: &str) -> Option<Mount> {
    Mount::or_skip(img, &scratch.join("mnt"), "", what)
}

/// The kernel's listing of `path` (relative to the mount): name → inode.
pub fn kernel_listing(m: &Mount, path: &str) -> BTreeMap<Vec<u8>, u32> {
    let mut got = BTreeMap::new();
    for e in std::fs::read_dir(m.path().join(path.trim_start_matches('/'))).unwrap() {
        let e = e.unwrap();
        assert!(got.insert(e.file_name().as_bytes().to_vec(), e.ino() as u32).is_none());
    }
    got
}
