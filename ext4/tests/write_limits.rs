//! Limits and faults of the write path: a full disk in the middle of a
//! large write, and files larger than the format allows. Each returns its
//! errno-style error (or a short write) and leaves the image fsck-clean with
//! nothing half-written.

mod common;

use common::tools::{assert_fsck_clean, mkfs};
use common::{Scratch, tree};
use ext4::{Ext4, OpenOptions};

/// A 16 MiB ext4 image (4 KiB blocks) holding the empty files `names`.
fn small_image(tag: &str, names: &[&str]) -> (Scratch, std::path::PathBuf) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    for n in names {
        std::fs::write(src.join(n), b"").unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "16M", Some(&src), &["-t", "ext4", "-b", "4096"]);
    (scratch, img)
}

#[test]
fn full_disk_in_the_middle_of_a_large_write() {
    let (_scratch, img) = small_image("limits-full", &["f"]);
    let data = tree::pattern(1, 64 << 20);
    let written;
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f", false).unwrap();
        written = fs.write(ino, 0, &data).unwrap();
        assert!(written > 0 && written < data.len(), "short write expected, got {written}");
        assert!(matches!(fs.write(ino, written as u64, &data[written..]), Err(ext4::Error::NoSpace)));
        let inode = fs.read_inode(ino).unwrap();
        assert_eq!(inode.size() as usize, written);
        let mut back = vec![0u8; written];
        assert_eq!(fs.read(&inode, 0, &mut back).unwrap(), written);
        assert!(back == data[..written], "the written prefix reads back");
        // Ordinary writes leave the split reserve free, as the kernel does.
        assert_eq!(fs.statfs().unwrap().free_blocks, fs.split_reserve());
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
    // Freeing makes room again.
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let ino = fs.resolve_path(b"/f", false).unwrap();
    fs.truncate(ino, 0).unwrap();
    assert!(fs.statfs().unwrap().free_blocks > 1000);
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
}

#[test]
fn blocks_freed_but_not_yet_committed_are_reused_when_the_disk_is_full() {
    let (_scratch, img) = small_image("limits-refill", &["f", "g"]);
    let data = tree::pattern(2, 64 << 20);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let f = fs.resolve_path(b"/f", false).unwrap();
        let g = fs.resolve_path(b"/g", false).unwrap();
        let filled = fs.write(f, 0, &data).unwrap();
        fs.sync().unwrap();
        // Freed in the running transaction, which nothing commits...
        fs.truncate(f, 0).unwrap();
        // ...until the allocator finds nothing else and commits it.
        let again = fs.write(g, 0, &data[..filled]).unwrap();
        assert_eq!(again, filled, "the freed space is all usable at once");
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
}

#[test]
fn files_larger_than_the_format_allows() {
    for (tag, args, too_far) in [
        // Extents address 2^32 blocks of 4 KiB: 16 TiB.
        ("limits-ext4", vec!["-t", "ext4", "-b", "4096"], 16u64 << 40),
        // ext3 block maps at 1 KiB reach about 16 GiB.
        ("limits-ext3", vec!["-t", "ext3", "-b", "1024"], 17u64 << 30),
    ] {
        let scratch = Scratch::new(tag);
        let src = scratch.join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"x").unwrap();
        let img = scratch.join("fs.img");
        mkfs(&img, "32M", Some(&src), &args);
        {
            let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
            let ino = fs.resolve_path(b"/f", false).unwrap();
            assert!(matches!(fs.write(ino, too_far, b"y"), Err(ext4::Error::FileTooBig(_))), "{tag}");
            assert!(matches!(fs.truncate(ino, too_far), Err(ext4::Error::FileTooBig(_))), "{tag}");
            assert!(matches!(fs.write(ino, u64::MAX - 1, b"yy"), Err(ext4::Error::FileTooBig(_))), "{tag}");
            // Just below the limit works (a sparse file).
            let max = fs.max_file_size(&fs.read_inode(ino).unwrap());
            assert_eq!(fs.write(ino, max - 1, b"z").unwrap(), 1, "{tag}");
            assert_eq!(fs.read_inode(ino).unwrap().size(), max);
            fs.close().unwrap();
        }
        assert_fsck_clean(&img);
    }
}
