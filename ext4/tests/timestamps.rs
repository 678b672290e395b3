//! Explicit timestamps at the ends of the 64-bit range: setattr clamps them
//! to what the inode record holds (like the kernel's `timestamp_truncate`),
//! reading back gives the clamped values, and debugfs agrees.

mod common;

use common::Scratch;
use common::tools::{assert_fsck_clean, debugfs, mkfs};
use ext4::disk::inode::{EXTRA_TIME_MAX, TIME_MAX, TIME_MIN, Timestamp};
use ext4::fs::inode::setattr::SetAttr;
use ext4::{Ext4, OpenOptions};

/// debugfs's `stat` line for `field` ("atime", "mtime"): (seconds field,
/// extra field when shown).
fn debugfs_time(stat: &str, field: &str) -> (u32, Option<u32>) {
    let line = stat
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} line in:\n{stat}"));
    let value = line.split_once("0x").expect("hex time").1.split_whitespace().next().unwrap();
    let mut parts = value.split(':');
    let secs = u32::from_str_radix(parts.next().unwrap(), 16).unwrap();
    let extra = parts.next().map(|x| u32::from_str_radix(x, 16).unwrap());
    (secs, extra)
}

/// Sets atime to `i64::MIN` and mtime to `i64::MAX` seconds on a file of an
/// image with `inode_size`-byte inodes and checks the clamped result.
fn extreme_times(inode_size: &str, max: i64) {
    let scratch = Scratch::new(&format!("times-{inode_size}"));
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "8M", Some(&src), &["-t", "ext4", "-I", inode_size]);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let ino = fs.resolve_path(b"/f", false).unwrap();
    let attr = SetAttr {
        atime: Some(Timestamp { secs: i64::MIN, nsecs: 999_999_999 }),
        mtime: Some(Timestamp { secs: i64::MAX, nsecs: 999_999_999 }),
        ..Default::default()
    };
    let returned = fs.setattr(ino, &attr).unwrap();
    let read = fs.read_inode(ino).unwrap();
    for inode in [&returned, &read] {
        assert_eq!(inode.atime(), Timestamp { secs: TIME_MIN, nsecs: 0 });
        assert_eq!(inode.mtime(), Timestamp { secs: max, nsecs: 0 });
    }
    // Just inside the range, nanoseconds are kept (where they can be).
    let inside = Timestamp { secs: max - 1, nsecs: 5 };
    let back = fs.setattr(ino, &SetAttr { mtime: Some(inside), ..Default::default() }).unwrap();
    let want_ns = if max == EXTRA_TIME_MAX { 5 } else { 0 };
    assert_eq!(back.mtime(), Timestamp { secs: max - 1, nsecs: want_ns });
    fs.setattr(ino, &attr).unwrap();
    fs.close().unwrap();
    drop(fs);

    let stat = debugfs(&img, "stat /f");
    let (a, ax) = debugfs_time(&stat, "atime");
    let (m, mx) = debugfs_time(&stat, "mtime");
    assert_eq!(a, TIME_MIN as i32 as u32, "{stat}");
    assert_eq!(m, max as u32, "{stat}");
    if max == EXTRA_TIME_MAX {
        // Seconds 0x7fffffff with both epoch bits set, no nanoseconds.
        assert_eq!((ax, mx), (Some(0), Some(3)), "{stat}");
    } else {
        assert!(ax.is_none() && mx.is_none(), "128-byte inodes have no extra fields:\n{stat}");
    }
    // Reopened, the core reads the same values.
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let inode = fs.read_inode(ino).unwrap();
    assert_eq!(inode.atime(), Timestamp { secs: TIME_MIN, nsecs: 0 });
    assert_eq!(inode.mtime(), Timestamp { secs: max, nsecs: 0 });
    drop(fs);
    assert_fsck_clean(&img);
}

#[test]
fn extreme_times_clamp_to_the_extended_range_in_large_inodes() {
    extreme_times("256", EXTRA_TIME_MAX);
}

#[test]
fn extreme_times_clamp_to_32_bits_in_small_inodes() {
    extreme_times("128", TIME_MAX);
}
