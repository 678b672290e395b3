//! Support shared by the journal recovery integration tests: facts about
//! an image read with the e2fsprogs tools, and file contents read both
//! through `debugfs` and through our API.
#![allow(dead_code)]

use ext4::{Ext4, OpenOptions};
use std::path::Path;
use std::process::Command;

/// Runs `debugfs -R REQUEST IMAGE` and returns its raw standard output.
pub fn debugfs_bytes(image: &Path, request: &str) -> Vec<u8> {
    let out = Command::new("debugfs").arg("-R").arg(request).arg(image).output().expect("run debugfs");
    assert!(out.status.success(), "debugfs -R {request:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The value of a `dumpe2fs -h` field, such as "Journal start".
pub fn dumpe2fs_field(image: &Path, field: &str) -> String {
    let out = Command::new("dumpe2fs").arg("-h").arg(image).output().expect("run dumpe2fs");
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("dumpe2fs -h {image:?} has no {field:?}:\n{text}"))
}

/// Whether the superblock says the journal needs recovery.
pub fn needs_recovery(image: &Path) -> bool {
    dumpe2fs_field(image, "Filesystem features").split_whitespace().any(|f| f == "needs_recovery")
}

/// The inode number of `path`, as debugfs resolves it.
pub fn inode_of(image: &Path, path: &str) -> u32 {
    let out = String::from_utf8_lossy(&debugfs_bytes(image, &format!("stat {path}"))).into_owned();
    out.split_whitespace()
        .skip_while(|w| *w != "Inode:")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no inode for {path} in:\n{out}"))
}

/// The physical blocks of `path`, in logical order.
pub fn blocks_of(image: &Path, path: &str) -> Vec<u64> {
    String::from_utf8_lossy(&debugfs_bytes(image, &format!("blocks {path}")))
        .split_whitespace()
        .map(|b| b.parse().expect("block number"))
        .collect()
}

/// The whole contents of inode `ino`, read through our API.
pub fn read_file(fs: &Ext4, ino: u32) -> Vec<u8> {
    let inode = fs.read_inode(ino).expect("read inode");
    let mut data = vec![0u8; inode.size() as usize];
    let mut done = 0;
    while done < data.len() {
        let n = fs.read(&inode, done as u64, &mut data[done..]).expect("read file");
        assert!(n > 0, "short read of inode {ino} at {done}");
        done += n;
    }
    data
}

/// Options for a read-only open.
pub fn read_only() -> OpenOptions {
    OpenOptions { read_only: true, ..OpenOptions::default() }
}

/// Options for a read-write open.
pub fn read_write() -> OpenOptions {
    OpenOptions { read_only: false, ..OpenOptions::default() }
}

/// Deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
