//! Damaged directories: bad record lengths, index counts over their limit,
//! index entries pointing at the root, themselves or past the end, wrong
//! depths, checksum mismatches, and every byte of the directory blocks
//! flipped. Each must end in an error, never a panic or an endless walk.

mod common;

use common::Scratch;
use common::tools::{debugfs, mkfs};
use ext4::{Error, Ext4, Location, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;

const BS: u64 = 1024;

/// An image with a linear directory (/ten), a one-level htree (/big) and a
/// two-level htree (/huge), at 1 KiB blocks.
struct Fixture {
    _dir: Scratch,
    img: PathBuf,
}

fn fixture(tag: &str, csum: bool) -> Fixture {
    let dir = Scratch::new(tag);
    let src = dir.join("src");
    let mk = |d: &str, n: usize, name: &dyn Fn(usize) -> String| {
        std::fs::create_dir_all(src.join(d)).unwrap();
        for i in 0..n {
            std::fs::write(src.join(d).join(name(i)), b"").unwrap();
        }
    };
    mk("ten", 10, &|i| format!("file-{i}"));
    mk("big", 600, &|i| format!("name-in-a-one-level-htree-{i:04}"));
    mk("huge", 8000, &|i| format!("a-name-long-enough-to-need-a-two-level-index-at-1k-{i:05}"));
    let img = dir.join("fs.img");
    let features = if csum { "metadata_csum" } else { "^metadata_csum" };
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-b", "1024", "-N", "9000", "-O", features]);
    let st = Command::new("e2fsck").arg("-fyD").arg(&img).output().unwrap().status;
    assert!(matches!(st.code(), Some(0 | 1)));
    assert!(debugfs(&img, "htree_dump /big").contains("Indirect levels: 0"));
    assert!(debugfs(&img, "htree_dump /huge").contains("Indirect levels: 1"));
    Fixture { _dir: dir, img }
}

impl Fixture {
    /// Byte offset in the image of logical block `lblk` of `path`.
    fn block_offset(&self, path: &str, lblk: u64) -> u64 {
        let out = debugfs(&self.img, &format!("bmap {path} {lblk}"));
        out.trim().parse::<u64>().unwrap() * BS
    }

    fn read(&self, at: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        std::fs::File::open(&self.img).unwrap().read_exact_at(&mut b, at).unwrap();
        b
    }

    fn write(&self, at: u64, bytes: &[u8]) {
        std::fs::OpenOptions::new().write(true).open(&self.img).unwrap().write_all_at(bytes, at).unwrap();
    }

    /// Runs `check` on the image with `bytes` written at `at`, then restores it.
    fn with_patch<T>(&self, at: u64, bytes: &[u8], check: impl FnOnce(&Ext4) -> T) -> T {
        let saved = self.read(at, bytes.len());
        self.write(at, bytes);
        let fs = Ext4::open(&self.img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
        let r = check(&fs);
        self.write(at, &saved);
        r
    }
}

/// Lists `path` completely; the number of entries or the error.
fn list(fs: &Ext4, path: &str) -> Result<usize, Error> {
    let dir = fs.read_inode(fs.resolve_path(path.as_bytes(), false)?)?;
    let mut n = 0;
    fs.read_dir(&dir, 0, &mut |_, _| {
        n += 1;
        true
    })?;
    Ok(n)
}

/// Lists `path` 50 entries per call, resuming at the last cookie, as FUSE
/// does; fails the test if it does not end within `bound` calls.
fn list_paged(fs: &Ext4, path: &str, bound: usize) -> Result<usize, Error> {
    let dir = fs.read_inode(fs.resolve_path(path.as_bytes(), false)?)?;
    let (mut at, mut total) = (0, 0);
    for _ in 0..bound {
        let mut last = None;
        let mut n = 0;
        fs.read_dir(&dir, at, &mut |_, c| {
            last = Some(c);
            n += 1;
            n < 50
        })?;
        let Some(c) = last else { return Ok(total) };
        assert!(c > at, "cookies move forward ({at} -> {c})");
        total += n;
        at = c;
    }
    panic!("paged listing of {path} did not end within {bound} calls");
}

fn lookup(fs: &Ext4, path: &str, name: &str) -> Result<Option<u32>, Error> {
    let dir = fs.read_inode(fs.resolve_path(path.as_bytes(), false)?)?;
    Ok(fs.lookup(&dir, name.as_bytes())?.map(|e| e.ino))
}

fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, Error>, want_location: Option<Location>, ctx: &str) {
    match r {
        Err(Error::Corrupt { location, .. }) => {
            if let Some(l) = want_location {
                assert_eq!(location, l, "{ctx}");
            }
        }
        other => panic!("{ctx}: expected a corruption error, got {other:?}"),
    }
}

fn ino(fs: &Ext4, path: &str) -> u32 {
    fs.resolve_path(path.as_bytes(), false).unwrap()
}

#[test]
fn bad_record_lengths() {
    let fx = fixture("dir-bad-reclen", false);
    let blk = fx.block_offset("/ten", 0);
    // Records: "." at 0, ".." at 12, then the files. Damage the third.
    for (rec_len, why) in [(13u16, "not a multiple of 4"), (0, "zero"), (4, "too small"), (2048, "past the block")] {
        fx.with_patch(blk + 24 + 4, &rec_len.to_le_bytes(), |fs| {
            let loc = Some(Location::FileBlock { ino: ino(fs, "/ten"), lblk: 0 });
            assert_corrupt(list(fs, "/ten"), loc, why);
            assert_corrupt(lookup(fs, "/ten", "absent"), loc, why);
            // "." and ".." come before the damage.
            assert_eq!(lookup(fs, "/ten", "..").unwrap(), Some(2));
        });
    }
    // A name longer than its record.
    fx.with_patch(blk + 24 + 6, &[200], |fs| assert_corrupt(list(fs, "/ten"), None, "name_len"));
}

#[test]
fn index_count_over_limit() {
    let fx = fixture("dir-dx-count", false);
    let root = fx.block_offset("/big", 0);
    let limit = u16::from_le_bytes(fx.read(root + 32, 2).try_into().unwrap());
    for count in [limit + 1, 0, u16::MAX] {
        fx.with_patch(root + 34, &count.to_le_bytes(), |fs| {
            let loc = Some(Location::FileBlock { ino: ino(fs, "/big"), lblk: 0 });
            assert_corrupt(list(fs, "/big"), loc, "count");
            assert_corrupt(lookup(fs, "/big", "name-in-a-one-level-htree-0001"), loc, "count");
        });
    }
    fx.with_patch(root + 32, &(limit - 1).to_le_bytes(), |fs| assert_corrupt(list(fs, "/big"), None, "limit"));
}

#[test]
fn index_entries_pointing_astray() {
    let fx = fixture("dir-dx-astray", false);
    let root = fx.block_offset("/big", 0);
    // Entry 0's block is at 36, entry i's at 32 + 8 i + 4.
    for (entry, target) in [(0u64, 0u32), (1, 0), (1, 1_000_000), (2, 0x0fff_ffff)] {
        fx.with_patch(root + 32 + 8 * entry + 4, &target.to_le_bytes(), |fs| {
            assert_corrupt(list(fs, "/big"), None, &format!("entry {entry} -> {target}"));
            assert_corrupt(list_paged(fs, "/big", 1000), None, &format!("entry {entry} -> {target}"));
        });
    }
    // Two entries naming the same leaf: the second visit is caught.
    let first = fx.read(root + 36, 4);
    fx.with_patch(root + 32 + 8 + 4, &first, |fs| assert_corrupt(list(fs, "/big"), None, "shared leaf"));
    // A one-level tree claiming two levels reads a leaf as an index node.
    fx.with_patch(root + 24 + 6, &[1], |fs| {
        assert_corrupt(list(fs, "/big"), None, "depth");
        assert_corrupt(lookup(fs, "/big", "name-in-a-one-level-htree-0001"), None, "depth");
    });
    // Deeper than any format allows.
    fx.with_patch(root + 24 + 6, &[3], |fs| assert_corrupt(list(fs, "/big"), None, "depth 3"));

    // Two levels: an interior node pointing to itself, and to the root.
    let huge_root = fx.block_offset("/huge", 0);
    let node_lblk = u32::from_le_bytes(fx.read(huge_root + 36, 4).try_into().unwrap()) & 0x0fff_ffff;
    let node = fx.block_offset("/huge", node_lblk as u64);
    for target in [node_lblk, 0] {
        fx.with_patch(node + 8 + 8 + 4, &target.to_le_bytes(), |fs| {
            let loc = Some(Location::FileBlock { ino: ino(fs, "/huge"), lblk: node_lblk as u64 });
            assert_corrupt(list(fs, "/huge"), loc, "node loop");
            // Every name: which ones hash under the damaged entry depends on
            // the image's random hash seed, so sampling could miss them all.
            let errors = (0..8000)
                .map(|i| lookup(fs, "/huge", &format!("a-name-long-enough-to-need-a-two-level-index-at-1k-{i:05}")))
                .filter(|r| r.is_err())
                .count();
            assert!(errors > 0, "some lookup goes through the looping entry");
        });
    }
}

#[test]
fn checksum_mismatches() {
    let fx = fixture("dir-csum", true);
    let ten = fx.block_offset("/ten", 0);
    fx.with_patch(ten + 24 + 8, b"X", |fs| {
        let loc = Location::FileBlock { ino: ino(fs, "/ten"), lblk: 0 };
        assert!(matches!(list(fs, "/ten"), Err(Error::Checksum { location, .. }) if location == loc));
    });
    let root = fx.block_offset("/big", 0);
    fx.with_patch(root + 32 + 8, &[0x55], |fs| {
        assert!(matches!(list(fs, "/big"), Err(Error::Checksum { what: "directory index", .. })));
        assert!(matches!(lookup(fs, "/big", "x"), Err(Error::Checksum { .. })));
    });
    let leaf_lblk = u32::from_le_bytes(fx.read(root + 36, 4).try_into().unwrap());
    let leaf = fx.block_offset("/big", leaf_lblk as u64);
    fx.with_patch(leaf + 8, b"\x7f", |fs| {
        assert!(matches!(list(fs, "/big"), Err(Error::Checksum { what: "directory block", .. })));
    });
    // A leaf without a tail on a metadata_csum file system.
    fx.with_patch(leaf + BS - 12, &[0; 12], |fs| {
        assert_corrupt(list(fs, "/big"), None, "missing tail");
    });
}

/// Flips every byte of the directory blocks, one at a time: the linear
/// block, the dx root, an interior node and a leaf. Every operation must
/// return (an error or data) and paged listings must end. With
/// metadata_csum, every flip of a checksummed byte must be an error.
fn flip_everything(csum: bool) {
    let fx = fixture(if csum { "dir-flip-csum" } else { "dir-flip" }, csum);
    let huge_root = fx.block_offset("/huge", 0);
    let node_lblk = u32::from_le_bytes(fx.read(huge_root + 36, 4).try_into().unwrap()) & 0x0fff_ffff;
    let node = fx.block_offset("/huge", node_lblk as u64);
    let leaf_lblk = u32::from_le_bytes(fx.read(node + 12, 4).try_into().unwrap()) & 0x0fff_ffff;
    let count_at = |blk: u64, table: u64| u16::from_le_bytes(fx.read(blk + table + 2, 2).try_into().unwrap()) as u64;
    let big_root = fx.block_offset("/big", 0);
    // (directory, block, bytes the checksum leaves uncovered)
    let targets = [
        ("/ten", fx.block_offset("/ten", 0), 0..0),
        ("/big", big_root, 32 + 8 * count_at(big_root, 32)..BS - 8),
        ("/huge", node, 8 + 8 * count_at(node, 8)..BS - 8),
        ("/huge", fx.block_offset("/huge", leaf_lblk as u64), 0..0),
    ];
    let names = |path: &str| -> Vec<String> {
        match path {
            "/ten" => (0..10).map(|i| format!("file-{i}")).collect(),
            "/big" => (0..600).step_by(50).map(|i| format!("name-in-a-one-level-htree-{i:04}")).collect(),
            _ => (0..8000)
                .step_by(500)
                .map(|i| format!("a-name-long-enough-to-need-a-two-level-index-at-1k-{i:05}"))
                .collect(),
        }
    };
    let mut errors = 0;
    for (path, blk, uncovered) in targets {
        for off in 0..BS {
            let byte = fx.read(blk + off, 1)[0];
            let flipped = byte ^ [0xff, 0x01, 0x80, 0x10][off as usize % 4];
            fx.with_patch(blk + off, &[flipped], |fs| {
                let full = list(fs, path);
                let _ = list_paged(fs, path, 20_000);
                for name in names(path) {
                    let _ = lookup(fs, path, &name);
                }
                errors += full.is_err() as usize;
                if csum && !uncovered.contains(&off) {
                    assert!(full.is_err(), "{path} block {blk}: flip at {off} is caught");
                }
            });
        }
    }
    assert!(errors > 0);
}

#[test]
fn flipped_bytes_no_csum() {
    flip_everything(false);
}

#[test]
fn flipped_bytes_csum() {
    flip_everything(true);
}
