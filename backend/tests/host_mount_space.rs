//! Space on a full file system through the host mount, against the
//! kernel's ext4 on a copy of the same image: `statvfs` reports the same
//! total, free and available blocks (the total without the metadata
//! overhead, the available count without the root and split reserves);
//! ordinary writes stop at the split reserve on both; punching holes that
//! split extents then succeeds on both (generic/256), and the files read
//! back equal. Collapse-range and insert-range do not reach the server: the
//! kernel's FUSE client answers EOPNOTSUPP itself (`fuse_file_fallocate`
//! accepts only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE), which this checks so
//! that a client that passes them on is noticed.

mod common;

use common::{HostMount, KernelMount, Scratch, assert_fsck_clean, mkfs};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Blocks per run of data in the fragmented file; each run is followed by a hole.
const RUN: u64 = 3;
/// Runs (extents) in the fragmented file.
const RUNS: u64 = 600;

/// `(f_blocks, f_bfree, f_bavail, f_files, f_ffree)` of the mount at `dir`.
fn statvfs(dir: &Path) -> (u64, u64, u64, u64, u64) {
    let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and a zeroed statvfs the call fills in.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0, "statvfs {dir:?}");
        st
    };
    (st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree)
}

/// fallocate(2) on `f`; the errno on failure.
fn fallocate(f: &File, mode: i32, off: u64, len: u64) -> Result<(), i32> {
    // SAFETY: fallocate(2) on an open descriptor with plain integers.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) }
}

/// A source tree with `f`: `RUNS` extents of `RUN` blocks separated by holes.
fn sources(dir: &Path, bs: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let f = File::create(dir.join("f")).unwrap();
    f.set_len(RUNS * (RUN + 1) * bs).unwrap();
    for i in 0..RUNS {
        f.write_all_at(&vec![(i % 251) as u8 + 1; (RUN * bs) as usize], i * (RUN + 1) * bs).unwrap();
    }
}

/// What one mount saw: statvfs fresh, after filling, after punching; the
/// punched file's bytes; then the results of a collapse and an insert.
#[derive(Debug, PartialEq)]
struct Seen {
    fresh: (u64, u64, u64, u64, u64),
    full: (u64, u64, u64, u64, u64),
    punched: (u64, u64, u64, u64, u64),
    bytes: Vec<u8>,
    shifts: (Result<(), i32>, Result<(), i32>),
}

/// Fills the mount at `mnt` with ordinary writes until ENOSPC, then punches
/// the middle block of every run of `f` (each splits an extent).
fn steps(mnt: &Path, bs: u64) -> Seen {
    let fresh = statvfs(mnt);
    let filler = File::create(mnt.join("filler")).unwrap();
    let mut off = 0u64;
    for chunk in [1u64 << 20, bs] {
        let data = vec![0x5au8; chunk as usize];
        while filler.write_all_at(&data, off).is_ok() {
            off += chunk;
        }
        filler.sync_all().unwrap();
    }
    drop(filler);
    let full = statvfs(mnt);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(mnt.join("f")).unwrap();
    for i in 0..RUNS {
        let off = (i * (RUN + 1) + 1) * bs;
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        fallocate(&f, mode, off, bs).unwrap_or_else(|e| panic!("punch {i} at {off} on {mnt:?}: errno {e}"));
    }
    f.sync_all().unwrap();
    let (bytes, punched) = (std::fs::read(mnt.join("f")).unwrap(), statvfs(mnt));
    let shifts =
        (fallocate(&f, libc::FALLOC_FL_COLLAPSE_RANGE, 0, bs), fallocate(&f, libc::FALLOC_FL_INSERT_RANGE, 0, bs));
    Seen { fresh, full, punched, bytes, shifts }
}

fn full_fs(tag: &str, bs: u64) {
    if !HostMount::usable_or_skip(tag) {
        return;
    }
    let s = Scratch::new(tag);
    let src = s.join("src");
    sources(&src, bs);
    let (img, kimg) = (s.join("fs.img"), s.join("k.img"));
    let bs_arg = bs.to_string();
    mkfs(&img, "32M", &["-t", "ext4", "-b", &bs_arg, "-d", src.to_str().unwrap()]);
    std::fs::copy(&img, &kimg).unwrap();
    let Some(k) = KernelMount::or_skip(&kimg, &s.join("kmnt"), "", tag) else { return };
    let mut expected = steps(k.path(), bs);
    k.unmount().unwrap();
    assert_fsck_clean(&kimg);
    // On the kernel's ext4 the shifts work; through FUSE they cannot arrive.
    assert_eq!(expected.shifts, (Ok(()), Ok(())), "{tag}: the kernel's collapse and insert");
    expected.shifts = (Err(libc::EOPNOTSUPP), Err(libc::EOPNOTSUPP));
    let m = HostMount::new(&img, &s.join("mnt"), &[]).unwrap();
    let got = steps(m.path(), bs);
    m.unmount().unwrap();
    assert_fsck_clean(&img);
    assert_eq!(got.fresh, expected.fresh, "{tag}: statvfs of the fresh image, ours vs the kernel");
    assert_eq!(got.full.2, 0, "{tag}: nothing available once full");
    assert_eq!(got.full, expected.full, "{tag}: statvfs when full, ours vs the kernel");
    assert!(got.bytes == expected.bytes, "{tag}: the punched file differs from the kernel's");
    assert_eq!(got.shifts, expected.shifts, "{tag}: collapse and insert through FUSE");
    // The punches free RUNS data blocks and take tree blocks for the
    // splits; the kernel's leaf splits (at the insertion point) take more
    // leaves than ours (spread evenly), so ours ends with at least as much
    // free space, never more than the punched blocks.
    let (ours, kernel) = (got.punched, expected.punched);
    assert_eq!((ours.0, ours.3, ours.4), (kernel.0, kernel.3, kernel.4), "{tag}: after punching");
    assert!(ours.2 >= kernel.2, "{tag}: available after punching: ours {}, the kernel {}", ours.2, kernel.2);
    assert!(
        ours.1 >= kernel.1 && ours.1 <= got.full.1 + RUNS,
        "{tag}: free blocks after punching: ours {}, the kernel {}, {} before",
        ours.1,
        kernel.1,
        got.full.1
    );
}

#[test]
fn full_file_system_punch_and_statvfs_as_the_kernel_1k() {
    full_fs("space-1k", 1024);
}

#[test]
fn full_file_system_punch_and_statvfs_as_the_kernel_4k() {
    full_fs("space-4k", 4096);
}
