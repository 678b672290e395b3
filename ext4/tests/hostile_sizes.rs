//! Sizes from requests never size a buffer: truncating an inline-data file
//! to 1 TiB or to the end of the 64-bit range, and writing at 2^40 into
//! one, either work (sparsely) or fail with a typed error, and the image
//! stays e2fsck-clean. An allocation sized by such a request aborts the
//! process (no unwinding from OOM), so each case runs in a child process
//! whose address space is limited: an abort there fails the test instead
//! of taking the machine's memory.

mod common;

use common::tools::{assert_fsck_clean, debugfs, mkfs};
use common::{Scratch, tree};
use ext4::fs::data::fallocate::FallocMode;
use ext4::fs::inode::setattr::SetAttr;
use ext4::{Error, Ext4, OpenOptions};
use std::process::Command;

/// Address-space limit of the child process, in KiB (ulimit -v): far below
/// any buffer sized by a hostile request, far above what the cases need.
const CHILD_AS_KIB: u64 = 4 << 20;
/// Set in the child that runs a case.
const CHILD_ENV: &str = "EXT4_HOSTILE_SIZES_CHILD";
/// 1 TiB.
const TIB: u64 = 1 << 40;
/// The inline file's contents.
const HELLO: &[u8] = b"hello, inline world";

/// Runs test `name`'s `body` in a child process of this test binary under
/// `ulimit -v`; in that child, runs `body`.
fn in_bounded_child(name: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CHILD_AS_KIB} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed or died in its bounded child ({}):\n{text}", out.status);
    assert!(text.contains("1 passed"), "{name} did not run in the child:\n{text}");
}

/// A 32 MiB ext4 image (4 KiB blocks, 256-byte inodes, inline_data) with
/// the inline file `/f` holding [`HELLO`].
fn inline_image(tag: &str) -> (Scratch, std::path::PathBuf) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), HELLO).unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-b", "4096", "-I", "256", "-O", "inline_data"]);
    assert!(debugfs(&img, "stat /f").contains("Size of inline data"), "/f starts inline");
    (scratch, img)
}

/// Reads `len` bytes of `ino` at `offset`.
fn read_at(fs: &Ext4, ino: u32, offset: u64, len: usize) -> Vec<u8> {
    let inode = fs.read_inode(ino).unwrap();
    let mut buf = vec![0u8; len];
    let n = fs.read(&inode, offset, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Allocated 512-byte sectors of `ino` (for "nothing was materialised").
fn sectors(fs: &Ext4, ino: u32) -> u64 {
    fs.read_inode(ino).unwrap().blocks_512(true, fs.block_size())
}

#[test]
fn inline_file_truncated_to_one_tebibyte_becomes_sparse() {
    in_bounded_child("inline_file_truncated_to_one_tebibyte_becomes_sparse", || {
        let (_s, img) = inline_image("hostile-trunc");
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f", false).unwrap();
        fs.truncate(ino, TIB).unwrap();
        assert_eq!(fs.read_inode(ino).unwrap().size(), TIB);
        assert_eq!(read_at(&fs, ino, 0, 64)[..HELLO.len()], *HELLO);
        assert!(read_at(&fs, ino, 0, 64)[HELLO.len()..].iter().all(|&b| b == 0));
        assert_eq!(read_at(&fs, ino, TIB - 16, 64), vec![0u8; 16], "the tail is a hole");
        assert!(sectors(&fs, ino) <= 8 * 2, "at most the converted block (and a tree block) is allocated");
        // Through setattr too, back and forth.
        fs.setattr(ino, &SetAttr { size: Some(3), ..Default::default() }).unwrap();
        fs.setattr(ino, &SetAttr { size: Some(TIB + 1), ..Default::default() }).unwrap();
        assert_eq!(read_at(&fs, ino, 0, 8), b"hel\0\0\0\0\0");
        fs.close().unwrap();
        drop(fs);
        assert_fsck_clean(&img);
    });
}

#[test]
fn inline_file_truncated_past_the_64_bit_range_is_refused() {
    in_bounded_child("inline_file_truncated_past_the_64_bit_range_is_refused", || {
        let (_s, img) = inline_image("hostile-trunc-max");
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f", false).unwrap();
        let max = fs.max_file_size(&fs.read_inode(ino).unwrap());
        for size in [u64::MAX, u64::MAX - 4095, 1 << 63, max + 1] {
            assert!(matches!(fs.truncate(ino, size), Err(Error::FileTooBig(_))), "truncate to {size}");
            let attr = SetAttr { size: Some(size), ..Default::default() };
            assert!(matches!(fs.setattr(ino, &attr), Err(Error::FileTooBig(_))), "setattr size {size}");
        }
        // Nothing changed: still inline, same contents.
        let inode = fs.read_inode(ino).unwrap();
        assert_eq!(inode.size(), HELLO.len() as u64);
        assert!(inode.has_flag(ext4::disk::inode::FL_INLINE_DATA));
        assert_eq!(read_at(&fs, ino, 0, 64), HELLO);
        // The largest size the format allows is a hole, not a buffer.
        fs.truncate(ino, max).unwrap();
        assert_eq!(fs.read_inode(ino).unwrap().size(), max);
        assert_eq!(read_at(&fs, ino, 0, HELLO.len()), HELLO);
        fs.close().unwrap();
        drop(fs);
        assert_fsck_clean(&img);
    });
}

#[test]
fn write_at_two_to_the_forty_into_an_inline_file_is_sparse() {
    in_bounded_child("write_at_two_to_the_forty_into_an_inline_file_is_sparse", || {
        let (_s, img) = inline_image("hostile-write");
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f", false).unwrap();
        let data = tree::pattern(7, 10_000);
        assert_eq!(fs.write(ino, TIB, &data).unwrap(), data.len());
        assert_eq!(fs.read_inode(ino).unwrap().size(), TIB + data.len() as u64);
        assert_eq!(read_at(&fs, ino, 0, HELLO.len()), HELLO);
        assert_eq!(read_at(&fs, ino, TIB, data.len()), data);
        assert_eq!(read_at(&fs, ino, TIB / 2, 4096), vec![0u8; 4096]);
        assert!(sectors(&fs, ino) <= 8 * 8, "only the blocks written are allocated");
        // Writes whose end leaves the 64-bit range or the format's limit fail.
        assert!(matches!(fs.write(ino, u64::MAX - 2, b"12345"), Err(Error::FileTooBig(_))));
        let max = fs.max_file_size(&fs.read_inode(ino).unwrap());
        assert!(matches!(fs.write(ino, max, b"x"), Err(Error::FileTooBig(_))));
        fs.close().unwrap();
        drop(fs);
        assert_fsck_clean(&img);
        // The kernel's debugfs reads the same data at the same place.
        let stat = debugfs(&img, "stat /f");
        assert!(stat.contains("EXTENTS"), "converted to extents:\n{stat}");
    });
}

#[test]
fn far_writes_and_fallocate_into_fresh_inline_files_never_buffer_the_offset() {
    in_bounded_child("far_writes_and_fallocate_into_fresh_inline_files_never_buffer_the_offset", || {
        let (_s, img) = inline_image("hostile-fresh");
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        // A second inline file written just past its capacity, then far away.
        let g = fs.write_file_for_test(b"g", b"x");
        assert_eq!(fs.write(g, 1 << 35, b"y").unwrap(), 1);
        assert_eq!(read_at(&fs, g, 1 << 35, 1), b"y");
        // fallocate far away on an inline file converts it and allocates
        // only the range.
        let f = fs.resolve_path(b"/f", false).unwrap();
        fs.fallocate(f, FallocMode::KeepSize, TIB, 4096).unwrap();
        assert_eq!(fs.read_inode(f).unwrap().size(), HELLO.len() as u64);
        assert_eq!(read_at(&fs, f, 0, 64), HELLO);
        fs.close().unwrap();
        drop(fs);
        assert_fsck_clean(&img);
    });
}

/// Creating a small file through the core for the cases above.
trait CreateSmall {
    fn write_file_for_test(&self, name: &[u8], data: &[u8]) -> u32;
}

impl CreateSmall for Ext4 {
    fn write_file_for_test(&self, name: &[u8], data: &[u8]) -> u32 {
        let attr = ext4::fs::dir::namespace::NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None };
        let ino = self.create(ext4::ROOT_INO, name, attr).unwrap().ino;
        assert_eq!(self.write(ino, 0, data).unwrap(), data.len());
        ino
    }
}

/// Sets `/f`'s i_size to `size` with debugfs: an inline file whose size
/// runs past its inline bytes, as the kernel leaves a file truncated up
/// before its first (inline) write — e2fsck accepts it.
fn stretch_inline(img: &std::path::Path, size: u64) {
    common::tools::run(Command::new("debugfs").arg("-w").arg("-R").arg(format!("sif /f size {size}")).arg(img));
    assert!(common::tools::fsck(img).0, "e2fsck accepts an inline file with i_size {size}");
}

#[test]
fn inline_files_sized_past_their_inline_bytes_are_written_and_truncated() {
    in_bounded_child("inline_files_sized_past_their_inline_bytes_are_written_and_truncated", || {
        for size in [1000, TIB] {
            let (_s, img) = inline_image("hostile-stretched");
            stretch_inline(&img, size);
            let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
            let ino = fs.resolve_path(b"/f", false).unwrap();
            // A write inside: converts (nothing sized by i_size), size kept.
            assert_eq!(fs.write(ino, 2, b"XYZ").unwrap(), 3);
            let inode = fs.read_inode(ino).unwrap();
            assert_eq!(inode.size(), size);
            assert!(!inode.has_flag(ext4::disk::inode::FL_INLINE_DATA));
            assert_eq!(read_at(&fs, ino, 0, 8), b"heXYZ, i");
            assert_eq!(read_at(&fs, ino, size - 10, 64), vec![0u8; 10]);
            fs.close().unwrap();
            drop(fs);
            assert_fsck_clean(&img);

            // Truncates: within the inline bytes stays inline, past them converts.
            for (to, inline) in [(30u64, true), (500, false)] {
                let (_s, img) = inline_image("hostile-stretched-trunc");
                stretch_inline(&img, size);
                let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
                let ino = fs.resolve_path(b"/f", false).unwrap();
                fs.truncate(ino, to).unwrap();
                let inode = fs.read_inode(ino).unwrap();
                assert_eq!((inode.size(), inode.has_flag(ext4::disk::inode::FL_INLINE_DATA)), (to, inline));
                let mut want = HELLO.to_vec();
                want.resize(to as usize, 0);
                assert_eq!(read_at(&fs, ino, 0, 600), want);
                fs.close().unwrap();
                drop(fs);
                assert_fsck_clean(&img);
            }
        }
    });
}
