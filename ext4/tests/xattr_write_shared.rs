//! Xattr blocks shared by several inodes (`h_refcount > 1`, as the kernel
//! makes them through its block cache) are copied on write: the inode that
//! changes gets its own block, the others keep reading the old values, the
//! count drops. Shared blocks are crafted (mke2fs and debugfs never share)
//! and, when root can loop-mount, made by the kernel itself.

mod common;
mod xattr_write_support;

use common::tools::mkfs;
use common::tree::{pattern, set_xattr};
use common::{Scratch, is_root, skip};
use ext4::disk::xattr::{BlockHeader, parse_block, write_block_header};
use ext4::fs::xattr::write::SetMode;
use ext4::{Ext4, OpenOptions};
use xattr_write_support::*;

/// Makes inode `to` share the xattr block of inode `from` (`to` has none):
/// the pointer, `i_blocks`, and one more reference in the block.
fn share(fs: &Ext4, from: u32, to: u32) {
    let mut h = fs.begin().unwrap();
    let blk = fs.read_inode_in(&h, from).unwrap().file_acl();
    assert_ne!(blk, 0);
    let mut dst = fs.read_inode_in(&h, to).unwrap();
    assert_eq!(dst.file_acl(), 0);
    dst.raw.file_acl_lo = blk as u32;
    dst.raw.file_acl_hi = (blk >> 32) as u16;
    fs.add_inode_blocks(&mut dst, 1).unwrap();
    fs.write_inode(&mut h, &mut dst).unwrap();
    let mut data = fs.meta_block_in(&h, blk, "xattr block").unwrap().to_vec();
    let mut header = BlockHeader::decode(&data);
    header.refcount += 1;
    write_block_header(&mut data, blk, header, fs.csum_seed());
    h.write(blk, data);
    h.finish();
}

/// The xattr block of `path` and its reference count.
fn block_of(fs: &Ext4, path: &str) -> (u64, u32) {
    let ino = fs.resolve_path(path.as_bytes(), false).unwrap();
    let blk = fs.read_inode(ino).unwrap().file_acl();
    if blk == 0 {
        return (0, 0);
    }
    let data = fs.read_meta_block(blk, "xattr block").unwrap();
    (blk, parse_block(&data, blk, fs.csum_seed()).unwrap().0.refcount)
}

fn ino(fs: &Ext4, path: &str) -> u32 {
    fs.resolve_path(path.as_bytes(), false).unwrap()
}

fn set(name: &str, len: usize, seed: u64) -> Op {
    Op::Set(name.as_bytes().to_vec(), pattern(seed, len), SetMode::Any)
}

fn crafted(tag: &str, args: &[&str]) {
    let scratch = Scratch::new(&format!("xws-{tag}"));
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let files = ["/a", "/b", "/c", "/k", "/m"];
    for f in files {
        std::fs::write(src.join(&f[1..]), f.as_bytes()).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "16M", Some(&src), args);
    let mut model: Model = files.iter().map(|f| (f.to_string(), Attrs::new())).collect();
    let cap;
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        cap = fs.block_size() as usize - 36;
        // Values too large for the in-inode area: all in the block.
        for (op, path) in [
            (set("user.big1", 200, 1), "/a"),
            (set("user.big2", 200, 2), "/a"),
            (set("security.x", 150, 3), "/a"),
            (set("user.only", 300, 4), "/k"),
        ] {
            assert!(apply_checked(&fs, ino(&fs, path), model.get_mut(path).unwrap(), &op, cap).is_none());
        }
        share(&fs, ino(&fs, "/a"), ino(&fs, "/b"));
        share(&fs, ino(&fs, "/a"), ino(&fs, "/c"));
        share(&fs, ino(&fs, "/k"), ino(&fs, "/m"));
        for (from, to) in [("/a", "/b"), ("/a", "/c"), ("/k", "/m")] {
            let attrs = model[from].clone();
            model.insert(to.to_string(), attrs);
        }
        fs.close().unwrap();
        assert_eq!(block_of(&fs, "/a").1, 3);
    }
    // The crafted sharing is what e2fsck and debugfs accept.
    check_image(&scratch, &img, &model);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let (shared, _) = block_of(&fs, "/a");
        let mut step = |path: &str, op: Op| {
            assert!(apply_checked(&fs, ino(&fs, path), model.get_mut(path).unwrap(), &op, cap).is_none(), "{op:?}");
        };
        // b adds an attribute: its own copy, one reference less.
        step("/b", set("user.new", 200, 5));
        let (b_blk, b_ref) = block_of(&fs, "/b");
        assert!(b_blk != shared && b_ref == 1, "b copied the block");
        assert_eq!(block_of(&fs, "/a"), (shared, 2));
        // c removes one: a copy with the rest.
        step("/c", Op::Remove(b"user.big1".to_vec()));
        let (c_blk, c_ref) = block_of(&fs, "/c");
        assert!(c_blk != shared && c_blk != b_blk && c_ref == 1);
        assert_eq!(block_of(&fs, "/a"), (shared, 1));
        // a owns the block alone again: changed in place.
        step("/a", set("user.big2", 180, 6));
        assert_eq!(block_of(&fs, "/a"), (shared, 1));
        // b shrinks a value: from its own block, in place (or into the inode).
        step("/b", set("user.big1", 4, 7));
        assert_eq!(block_of(&fs, "/b").0, b_blk);
        // m removes its only attribute of the shared block: no copy, no block.
        let (k_blk, _) = block_of(&fs, "/k");
        step("/m", Op::Remove(b"user.only".to_vec()));
        assert_eq!(block_of(&fs, "/m"), (0, 0));
        assert_eq!(block_of(&fs, "/k"), (k_blk, 1));
        fs.close().unwrap();
    }
    check_image(&scratch, &img, &model);
    check_kernel(&format!("xattr_write_shared {tag}: kernel view"), &scratch, &img, &model);
}

#[test]
fn crafted_sharing_ext4_4k() {
    crafted("ext4-4k", &["-t", "ext4", "-b", "4096", "-I", "256"]);
}

#[test]
fn crafted_sharing_ext3_128() {
    crafted("ext3-128", &["-t", "ext3", "-b", "1024", "-I", "128"]);
}

/// The kernel shares the blocks of two files with identical attributes;
/// changing one through our code leaves the other as the kernel wrote it.
#[test]
fn kernel_made_sharing() {
    const WHAT: &str = "xattr_write_shared kernel_made_sharing";
    if !is_root() {
        skip(WHAT, "not running as root, cannot loop-mount images");
        return;
    }
    let scratch = Scratch::new("xws-kernel");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    for f in ["f", "g"] {
        std::fs::write(src.join(f), f).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "16M", Some(&src), &["-t", "ext4", "-I", "128"]);
    let mut attrs = Attrs::new();
    for (i, n) in ["user.one", "user.two", "trusted.three"].iter().enumerate() {
        attrs.insert(n.as_bytes().to_vec(), pattern(i as u64 + 40, 150 + i * 50));
    }
    {
        let mnt = match Mount::new(&img, &scratch.join("mnt"), None, "rw") {
            Ok(m) => m,
            Err(e) => return skip(WHAT, &format!("mount -o loop failed: {}", e.trim())),
        };
        for f in ["f", "g"] {
            for (n, v) in &attrs {
                set_xattr(&mnt.0.join(f), std::str::from_utf8(n).unwrap(), v);
            }
        }
    }
    let mut model: Model = [("/f".to_string(), attrs.clone()), ("/g".to_string(), attrs)].into();
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let (blk, refs) = block_of(&fs, "/f");
        if block_of(&fs, "/g").0 != blk || refs != 2 {
            return skip(WHAT, "the kernel did not share the xattr block");
        }
        let cap = fs.block_size() as usize - 36;
        let g = ino(&fs, "/g");
        let op = set("user.four", 100, 9);
        assert!(apply_checked(&fs, g, model.get_mut("/g").unwrap(), &op, cap).is_none());
        assert_eq!(block_of(&fs, "/f"), (blk, 1));
        assert_ne!(block_of(&fs, "/g").0, blk);
        fs.close().unwrap();
    }
    check_image(&scratch, &img, &model);
    check_kernel(WHAT, &scratch, &img, &model);
}
