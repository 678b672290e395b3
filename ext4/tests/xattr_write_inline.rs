//! Xattr writes next to inline data: `system.data` (the inline bytes past
//! the 60 of `i_block`) survives every rewrite of the in-inode area, and
//! the inline-data entry points grow, shrink and remove it. Judged by
//! e2fsck, `debugfs dump`, our reader and the kernel.

mod common;
mod xattr_write_support;

use common::tools::{mkfs, run};
use common::tree::pattern;
use common::{Scratch, is_root, skip};
use ext4::disk::inode::FL_INLINE_DATA;
use ext4::fs::xattr::write::SetMode;
use ext4::{Error, Ext4, OpenOptions};
use std::process::Command;
use xattr_write_support::*;

/// The file's first `len` bytes through `debugfs dump`, which pads inline
/// files to the whole inline area (60 bytes and more) even on untouched
/// mke2fs images; the padding must be zeros.
fn debugfs_dump(scratch: &Scratch, img: &std::path::Path, path: &str, len: usize) -> Vec<u8> {
    let out = scratch.join("dump");
    run(Command::new("debugfs").arg("-R").arg(format!("dump {path} {}", out.display())).arg(img));
    let mut data = std::fs::read(out).unwrap();
    assert!(data.len() >= len && data[len..].iter().all(|&b| b == 0), "{path}: debugfs dump {data:?}");
    data.truncate(len);
    data
}

/// The file's contents through our reader.
fn our_read(fs: &Ext4, path: &str) -> Vec<u8> {
    let inode = fs.read_inode(fs.resolve_path(path.as_bytes(), false).unwrap()).unwrap();
    let mut buf = vec![0u8; inode.size() as usize];
    assert_eq!(fs.read(&inode, 0, &mut buf).unwrap(), buf.len());
    buf
}

#[test]
fn system_data_survives_and_grows() {
    let scratch = Scratch::new("xwi");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let mut content = pattern(1, 100);
    std::fs::write(src.join("inl"), &content).unwrap();
    std::fs::write(src.join("small"), b"tiny").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "16M", Some(&src), &["-t", "ext4", "-I", "256", "-O", "inline_data"]);
    let mut model: Model = [("/inl".to_string(), Attrs::new()), ("/small".to_string(), Attrs::new())].into();
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/inl", false).unwrap();
        let inode = fs.read_inode(ino).unwrap();
        assert!(inode.has_flag(FL_INLINE_DATA), "mke2fs stored the file inline");
        assert_eq!(fs.max_system_data(&inode).unwrap(), 88 - 20);
        let cap = fs.block_size() as usize - 36;
        let attrs = model.get_mut("/inl").unwrap();
        // Shares the in-inode area with 40 bytes of inline data.
        let op = Op::Set(b"user.a".to_vec(), pattern(2, 8), SetMode::Any);
        assert!(apply_checked(&fs, ino, attrs, &op, cap).is_none());
        let inode = fs.read_inode(ino).unwrap();
        assert_eq!(inode.file_acl(), 0, "user.a fits next to system.data");
        assert_eq!(fs.max_system_data(&inode).unwrap(), 40);
        let op = Op::Set(b"user.b".to_vec(), pattern(3, 8), SetMode::Any);
        assert!(apply_checked(&fs, ino, attrs, &op, cap).is_none());
        assert_ne!(fs.read_inode(ino).unwrap().file_acl(), 0, "user.b went to the block");
        assert_eq!(our_read(&fs, "/inl"), content);
        // system.data is not writable through the xattr API.
        let r = apply(&fs, ino, &Op::Set(b"system.data".to_vec(), vec![1], SetMode::Any));
        assert!(matches!(r, Err(Error::Unsupported(_))));
        // Growing the inline data past the free in-inode room fails whole.
        let mut h = fs.begin().unwrap();
        let mut inode = fs.read_inode_in(&h, ino).unwrap();
        let before = inode.clone();
        assert!(matches!(fs.set_system_data(&mut h, &mut inode, &[7; 41]), Err(Error::NoSpace)));
        assert_eq!(inode, before, "the inode is untouched on failure");
        drop(h);
        // Make room, then grow the file to 60 + 68 bytes.
        let op = Op::Remove(b"user.a".to_vec());
        assert!(apply_checked(&fs, ino, attrs, &op, cap).is_none());
        let mut h = fs.begin().unwrap();
        let mut inode = fs.read_inode_in(&h, ino).unwrap();
        let max = fs.max_system_data(&inode).unwrap();
        assert_eq!(max, 68);
        let tail = pattern(4, max);
        fs.set_system_data(&mut h, &mut inode, &tail).unwrap();
        let size = 60 + max as u64;
        inode.raw.size_lo = size as u32;
        fs.write_inode(&mut h, &mut inode).unwrap();
        h.finish();
        content.truncate(60);
        content.extend_from_slice(&tail);
        assert_eq!(our_read(&fs, "/inl"), content);
        // Remove and restore system.data of the small file in one handle.
        let small = fs.resolve_path(b"/small", false).unwrap();
        let mut h = fs.begin().unwrap();
        let mut inode = fs.read_inode_in(&h, small).unwrap();
        fs.remove_system_data(&mut h, &mut inode).unwrap();
        assert!(fs.read_inode_in(&h, small).unwrap().xattr_area().iter().all(|&b| b == 0), "area emptied");
        assert!(matches!(fs.remove_system_data(&mut h, &mut inode), Err(Error::NoAttr)));
        fs.set_system_data(&mut h, &mut inode, b"").unwrap();
        h.finish();
        fs.close().unwrap();
    }
    check_image(&scratch, &img, &model);
    assert_eq!(debugfs_dump(&scratch, &img, "/inl", content.len()), content, "debugfs reads the grown file");
    assert_eq!(debugfs_dump(&scratch, &img, "/small", 4), b"tiny");
    check_kernel("xattr_write_inline: kernel view", &scratch, &img, &model);
    if !is_root() {
        return skip("xattr_write_inline: kernel read", "not running as root, cannot loop-mount images");
    }
    match Mount::new(&img, &scratch.join("mnt2"), None, "ro") {
        Ok(m) => {
            assert_eq!(std::fs::read(m.0.join("inl")).unwrap(), content, "the kernel reads the inline file");
            assert_eq!(std::fs::read(m.0.join("small")).unwrap(), b"tiny");
        }
        Err(e) => skip("xattr_write_inline: kernel read", &format!("mount -o loop,ro failed: {}", e.trim())),
    }
}
