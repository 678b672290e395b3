//! Collapse-range and insert-range (FALLOC_FL_COLLAPSE_RANGE and
//! FALLOC_FL_INSERT_RANGE) with the kernel's ext4 as the oracle: the same
//! seeded sequences of writes, punches, preallocations, collapses and
//! inserts run through our core on one copy of an image and through a
//! kernel loop mount on another; every step must succeed or fail with the
//! same errno on both, both files end byte-equal to a model of the bytes,
//! and both images are `e2fsck -fn` clean. Files are fragmented (1 KiB
//! blocks, thousands of extents) so shifts cross leaves of deep trees.

mod common;

use common::kernel::Mount;
use common::rng::Rng;
use common::tools::{assert_fsck_clean, fsck, mkfs};
use common::{Scratch, tree};
use ext4::fs::data::fallocate::FallocMode;
use ext4::io::recording_device::{CrashPoint, RecordingDevice};
use ext4::io::{FileDevice, MemDevice};
use ext4::{Error, Ext4, OpenOptions};
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// One step of a sequence on one file.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// pwrite of `len` pattern bytes (seeded by `seed`) at `off`.
    Write { off: u64, len: u64, seed: u64 },
    /// fallocate(2) with the FALLOC_FL_* bits `mode`.
    Falloc { mode: i32, off: u64, len: u64 },
}

const COLLAPSE: i32 = libc::FALLOC_FL_COLLAPSE_RANGE;
const INSERT: i32 = libc::FALLOC_FL_INSERT_RANGE;
const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;

/// Our mode for the FALLOC_FL_* bits the sequences use.
fn our_mode(mode: i32) -> FallocMode {
    match mode {
        COLLAPSE => FallocMode::CollapseRange,
        INSERT => FallocMode::InsertRange,
        PUNCH => FallocMode::PunchHole,
        KEEP => FallocMode::KeepSize,
        _ => FallocMode::Default,
    }
}

/// The errno the FUSE boundary maps our error to (the subset these
/// operations produce).
fn errno(e: &Error) -> i32 {
    match e {
        Error::InvalidArgument(_) => libc::EINVAL,
        Error::Unsupported(_) => libc::EOPNOTSUPP,
        Error::FileTooBig(_) => libc::EFBIG,
        Error::IsADirectory(_) => libc::EISDIR,
        Error::NoSpace => libc::ENOSPC,
        other => panic!("unexpected error {other}"),
    }
}

/// Runs `op` on inode `ino` through our core.
fn ours(fs: &Ext4, ino: u32, op: Op) -> Result<(), i32> {
    match op {
        Op::Write { off, len, seed } => {
            let n = fs.write(ino, off, &tree::pattern(seed, len as usize)).map_err(|e| errno(&e))?;
            assert_eq!(n as u64, len);
            Ok(())
        }
        Op::Falloc { mode, off, len } => fs.fallocate(ino, our_mode(mode), off, len).map_err(|e| errno(&e)),
    }
}

/// Runs `op` on `file` of a kernel mount.
fn kernel(file: &File, op: Op) -> Result<(), i32> {
    match op {
        Op::Write { off, len, seed } => {
            file.write_all_at(&tree::pattern(seed, len as usize), off).map_err(|e| e.raw_os_error().unwrap_or(0))
        }
        Op::Falloc { mode, off, len } => {
            // SAFETY: fallocate(2) on an open descriptor with plain integers.
            let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, off as i64, len as i64) };
            if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) }
        }
    }
}

/// Applies a successful `op` to the model of the file's bytes.
fn model_apply(model: &mut Vec<u8>, op: Op) {
    match op {
        Op::Write { off, len, seed } => {
            let (off, end) = (off as usize, (off + len) as usize);
            if model.len() < end {
                model.resize(end, 0);
            }
            model[off..end].copy_from_slice(&tree::pattern(seed, len as usize));
        }
        Op::Falloc { mode, off, len } => {
            let (off, end) = (off as usize, (off + len) as usize);
            match mode {
                COLLAPSE => drop(model.drain(off..end)),
                INSERT => drop(model.splice(off..off, std::iter::repeat_n(0, end - off))),
                PUNCH => {
                    let to = end.min(model.len());
                    if off < to {
                        model[off..to].fill(0);
                    }
                }
                KEEP => {}
                _ => model.resize(model.len().max(end), 0),
            }
        }
    }
}

/// What the kernel's rules predict for `op` on a file of `size` bytes:
/// `None` for success, else the errno.
fn predicted(op: Op, size: u64, bs: u64) -> Option<i32> {
    match op {
        Op::Falloc { mode: COLLAPSE, off, len } if (off | len) % bs != 0 || off + len >= size => Some(libc::EINVAL),
        Op::Falloc { mode: INSERT, off, len } if (off | len) % bs != 0 || off >= size => Some(libc::EINVAL),
        _ => None,
    }
}

/// A random step for a file of `size` bytes: collapses and inserts are
/// mostly block-aligned and valid, sometimes not (to compare the errors).
fn random_op(rng: &mut Rng, size: u64, bs: u64, step: u64) -> Op {
    let blocks = size / bs;
    let aligned = |rng: &mut Rng, max: u64| rng.below(max.max(1)) * bs;
    let odd = |rng: &mut Rng| if rng.chance(8) { 1 + rng.below(bs - 1) } else { 0 };
    match rng.below(10) {
        0..=2 => {
            let off = if rng.chance(70) { rng.below(size + 1) } else { size + rng.below(20 * bs) };
            Op::Write { off, len: rng.length(50, 2000, 40 * bs), seed: step }
        }
        3 => Op::Falloc { mode: PUNCH, off: rng.below(size + 1), len: 1 + rng.below(30 * bs) },
        4 => Op::Falloc {
            mode: if rng.chance(50) { KEEP } else { 0 },
            off: rng.below(size + 1),
            len: 1 + rng.below(8 * bs),
        },
        5..=7 => {
            // Mostly a valid range inside the file; sometimes reaching EOF.
            let len = if rng.chance(90) { (1 + rng.below(blocks.clamp(1, 64))) * bs } else { size };
            Op::Falloc { mode: COLLAPSE, off: aligned(rng, blocks) + odd(rng), len }
        }
        _ => {
            let off = if rng.chance(92) { aligned(rng, blocks) } else { size.next_multiple_of(bs) };
            Op::Falloc { mode: INSERT, off: off + odd(rng), len: (1 + rng.below(40)) * bs + odd(rng) }
        }
    }
}

/// A source tree with files `f0..f2`: `f0` has data in every other block
/// of 1 KiB (thousands of extents), `f1` runs of 5 data blocks among
/// holes, `f2` is dense.
fn fragmented_sources(dir: &Path, bs: u64, blocks: u64) {
    std::fs::create_dir_all(dir).unwrap();
    // (file, period, data blocks at the start of each period)
    for (i, period, data) in [(0u64, 2u64, 1u64), (1, 7, 5), (2, 1, 1)] {
        let f = File::create(dir.join(format!("f{i}"))).unwrap();
        f.set_len(blocks * bs).unwrap();
        for b in (0..blocks).filter(|b| b % period < data) {
            f.write_all_at(&tree::pattern(i * 100_000 + b, bs as usize), b * bs).unwrap();
        }
    }
}

/// The same seeded sequence through our core and through the kernel, step
/// by step, on two copies of one image; see the module comment.
fn same_as_kernel(tag: &str, mkfs_args: &[&str], bs: u64, blocks: u64, seed: u64, steps: u64) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    fragmented_sources(&src, bs, blocks);
    let names: Vec<String> = (0..3).map(|i| format!("f{i}")).collect();
    let (ours_img, kernel_img) = (scratch.join("ours.img"), scratch.join("kernel.img"));
    mkfs(&ours_img, "64M", Some(&src), mkfs_args);
    std::fs::copy(&ours_img, &kernel_img).unwrap();
    let mut models: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(src.join(n)).unwrap()).collect();
    let Some(mount) = Mount::or_skip(&kernel_img, &scratch.join("mnt"), "", &format!("{tag}: kernel comparison"))
    else {
        return;
    };
    let files: Vec<File> = names
        .iter()
        .map(|n| std::fs::OpenOptions::new().read(true).write(true).open(mount.path().join(n)).unwrap())
        .collect();
    let fs = Ext4::open(&ours_img, &OpenOptions::default()).unwrap();
    let inos: Vec<u32> = names.iter().map(|n| fs.resolve_path(format!("/{n}").as_bytes(), false).unwrap()).collect();
    let mut rng = Rng(seed);
    let (mut shifts, mut refused) = (0, 0);
    for step in 0..steps {
        let f = rng.below(names.len() as u64) as usize;
        let op = random_op(&mut rng, models[f].len() as u64, bs, seed * 10_000 + step);
        let (a, b) = (ours(&fs, inos[f], op), kernel(&files[f], op));
        assert_eq!(a, b, "{tag} step {step} on {}: {op:?}: ours vs the kernel", names[f]);
        assert_eq!(a.err(), predicted(op, models[f].len() as u64, bs), "{tag} step {step}: {op:?}");
        match (a, op) {
            (Ok(()), _) => model_apply(&mut models[f], op),
            (Err(_), _) => refused += 1,
        }
        if a.is_ok() && matches!(op, Op::Falloc { mode: COLLAPSE | INSERT, .. }) {
            shifts += 1;
        }
        if step % 25 == 24 {
            fs.sync().unwrap();
        }
    }
    assert!(shifts >= steps / 5 && refused > 0, "{tag}: {shifts} shifts and {refused} refusals: too few to judge");
    fs.close().unwrap();
    common::models::reader_matches(&fs, tag, &names, &inos, &models);
    for (f, n) in names.iter().enumerate() {
        assert!(std::fs::read(mount.path().join(n)).unwrap() == models[f], "{tag}: the kernel's {n} is not the model");
    }
    drop(files);
    drop(mount);
    assert_fsck_clean(&kernel_img);
    common::models::image_matches(&ours_img, &scratch, tag, &names, &models);
}

#[test]
fn same_as_kernel_1k_blocks() {
    for seed in 1..=2 {
        same_as_kernel("ci-1k", &["-t", "ext4", "-b", "1024"], 1024, 3000, seed, 120);
    }
}

/// A 1 MiB journal bounds a handle to 64 blocks, so shifting the
/// fragmented file's extents (about 48 leaves) takes up to four handles
/// (pieces of 15 leaves).
#[test]
fn same_as_kernel_small_journal_shifts_in_pieces() {
    let tag = "ci-pieces";
    let scratch = Scratch::new("ci-pieces-probe");
    let src = scratch.join("src");
    fragmented_sources(&src, 1024, 8000);
    let img = scratch.join("probe.img");
    let args = ["-t", "ext4", "-b", "1024", "-J", "size=1"];
    mkfs(&img, "64M", Some(&src), &args);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let ino = fs.resolve_path(b"/f0", false).unwrap();
    let mut h = fs.begin().unwrap();
    let leaves = fs.extent_leaf_starts(&mut h, &fs.read_inode(ino).unwrap(), 0).unwrap().len();
    drop(h);
    let per_handle = fs.tx().unwrap().max_handle_blocks() / 4;
    assert!(leaves > 2 * per_handle, "{tag}: {leaves} leaves, {per_handle} per handle: one handle would do");
    drop(fs);
    same_as_kernel(tag, &args, 1024, 8000, 11, 100);
}

#[test]
fn same_as_kernel_4k_blocks_metadata_csum() {
    same_as_kernel("ci-4k", &["-t", "ext4", "-b", "4096", "-O", "metadata_csum"], 4096, 3000, 7, 120);
}

/// Without a kernel: longer seeded sequences against the byte model only
/// (every result as the kernel's rules predict), then fsck, debugfs and
/// (when it can mount) the kernel read the model back.
#[test]
fn model_sequences() {
    for (seed, args, bs) in [(31u64, ["-t", "ext4", "-b", "1024"], 1024u64), (32, ["-t", "ext4", "-b", "4096"], 4096)] {
        let tag = format!("ci-model-{seed}");
        let scratch = Scratch::new(&tag);
        let src = scratch.join("src");
        fragmented_sources(&src, bs, 2000);
        let names: Vec<String> = (0..3).map(|i| format!("f{i}")).collect();
        let img = scratch.join("fs.img");
        mkfs(&img, "64M", Some(&src), &args);
        let mut models: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(src.join(n)).unwrap()).collect();
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let inos: Vec<u32> =
            names.iter().map(|n| fs.resolve_path(format!("/{n}").as_bytes(), false).unwrap()).collect();
        let mut rng = Rng(seed);
        for step in 0..400 {
            let f = rng.below(3) as usize;
            let op = random_op(&mut rng, models[f].len() as u64, bs, step);
            let r = ours(&fs, inos[f], op);
            assert_eq!(r.err(), predicted(op, models[f].len() as u64, bs), "{tag} step {step}: {op:?}");
            if r.is_ok() {
                model_apply(&mut models[f], op);
            }
            if step % 50 == 49 {
                fs.sync().unwrap();
            }
        }
        fs.close().unwrap();
        common::models::reader_matches(&fs, &tag, &names, &inos, &models);
        common::models::image_matches(&img, &scratch, &tag, &names, &models);
    }
}

/// The refusals outside the random sequences, each compared with the
/// kernel where it can run: block-mapped (ext3) files (EOPNOTSUPP), an
/// insert past the largest file size (EFBIG), directories (EISDIR, ours
/// only: the kernel's descriptor of a directory is not writable), and
/// inline-data files, which are converted first and then shift.
/// A refusal case: image kind, mke2fs arguments, file, step, expected errno.
type Case = (&'static str, &'static [&'static str], &'static str, Op, Option<i32>);

#[test]
fn refusals_and_inline_files() {
    let scratch = Scratch::new("ci-refusals");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("small"), tree::pattern(3, 50)).unwrap();
    std::fs::write(src.join("big"), tree::pattern(4, 40_000)).unwrap();
    std::fs::create_dir(src.join("d")).unwrap();
    let cases: [Case; 5] = [
        (
            "ext3",
            &["-t", "ext3", "-b", "1024"],
            "big",
            Op::Falloc { mode: COLLAPSE, off: 0, len: 1024 },
            Some(libc::EOPNOTSUPP),
        ),
        (
            "ext3",
            &["-t", "ext3", "-b", "1024"],
            "big",
            Op::Falloc { mode: INSERT, off: 0, len: 1024 },
            Some(libc::EOPNOTSUPP),
        ),
        (
            "efbig",
            &["-t", "ext4", "-b", "1024"],
            "big",
            Op::Falloc { mode: INSERT, off: 0, len: 1 << 44 },
            Some(libc::EFBIG),
        ),
        ("inline", &["-t", "ext4", "-O", "inline_data"], "small", Op::Falloc { mode: INSERT, off: 0, len: 4096 }, None),
        (
            "inline",
            &["-t", "ext4", "-O", "inline_data"],
            "small",
            Op::Falloc { mode: COLLAPSE, off: 0, len: 4096 },
            Some(libc::EINVAL),
        ),
    ];
    for (i, (kind, args, name, op, want)) in cases.into_iter().enumerate() {
        let tag = format!("ci-refusals-{i}-{kind}");
        let (ours_img, kernel_img) = (scratch.join(format!("{i}-ours.img")), scratch.join(format!("{i}-kernel.img")));
        mkfs(&ours_img, "32M", Some(&src), args);
        std::fs::copy(&ours_img, &kernel_img).unwrap();
        let mut model = std::fs::read(src.join(name)).unwrap();
        let fs = Ext4::open(&ours_img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(format!("/{name}").as_bytes(), false).unwrap();
        let r = ours(&fs, ino, op);
        assert_eq!(r.err(), want, "{tag}: {op:?}");
        if r.is_ok() {
            model_apply(&mut model, op);
        }
        if kind == "ext3" {
            let d = fs.resolve_path(b"/d", false).unwrap();
            let r = fs.fallocate(d, FallocMode::CollapseRange, 0, 1024);
            assert!(matches!(r, Err(Error::IsADirectory(_))), "{tag}: directory: {r:?}");
        }
        fs.close().unwrap();
        common::models::reader_matches(&fs, &tag, &[name.to_string()], &[ino], std::slice::from_ref(&model));
        drop(fs);
        assert_fsck_clean(&ours_img);
        if let Some(m) = Mount::or_skip(&kernel_img, &scratch.join(format!("mnt{i}")), "", &tag) {
            let file = std::fs::OpenOptions::new().read(true).write(true).open(m.path().join(name)).unwrap();
            assert_eq!(kernel(&file, op).err(), want, "{tag}: the kernel on {op:?}");
            drop(file);
            drop(m);
            assert_fsck_clean(&kernel_img);
            // Read back through a fresh mount: right after an insert into a
            // converted inline file, the kernel's page cache (6.18) still
            // reads zeros where the disk holds the moved bytes.
            common::tools::with_kernel_mount(&kernel_img, &scratch.join(format!("mnt{i}")), &tag, |mnt| {
                assert!(std::fs::read(mnt.join(name)).unwrap() == model, "{tag}: the kernel's bytes differ");
            });
        }
    }
}

/// A power failure at any point of a collapse and an insert that move a
/// large file's extents in several handles (1 MiB journal): after our
/// recovery every state is `e2fsck -fn` clean, the size is the old one, the
/// one after the collapse or the one after the insert, and every block of
/// the file is a block of the original file or zeros (extents moved, never
/// pointed at other data). Some states are partly shifted — the pieces
/// reached the disk in separate transactions — and the last is the model.
#[test]
fn crash_during_a_shift_in_pieces() {
    let (tag, bs) = ("ci-crash", 1024u64);
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    // f0: 10000 one-block extents in about 120 leaves, 8 pieces of 15.
    fragmented_sources(&src, bs, 20_000);
    let img = scratch.join("fs.img");
    mkfs(&img, "96M", Some(&src), &["-t", "ext4", "-b", "1024", "-J", "size=1"]);
    let base = std::fs::read(&img).unwrap();
    let old = std::fs::read(src.join("f0")).unwrap();
    let blocks: HashSet<&[u8]> = old.chunks(bs as usize).collect();
    let mut collapsed = old.clone();
    collapsed.drain((4 * bs) as usize..(1004 * bs) as usize);
    let mut inserted = collapsed.clone();
    inserted.splice((2 * bs) as usize..(2 * bs) as usize, vec![0u8; (6 * bs) as usize]);
    let rec = Arc::new(RecordingDevice::new(Arc::new(FileDevice::open(&img, false).unwrap())));
    {
        let fs = Ext4::open_device(rec.clone(), &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f0", false).unwrap();
        fs.fallocate(ino, FallocMode::CollapseRange, 4 * bs, 1000 * bs).unwrap();
        fs.fallocate(ino, FallocMode::InsertRange, 2 * bs, 6 * bs).unwrap();
        fs.close().unwrap();
    }
    let flushes = rec.flushes();
    let mut points: Vec<CrashPoint> = (0..=flushes).map(CrashPoint::AfterFlush).collect();
    points.extend((0..flushes).filter(|n| rec.writes_after_flush(*n) > 1).map(|n| CrashPoint::Torn {
        after_flush: n,
        unit: bs,
        seed: n as u64,
    }));
    let (mut partial, mut last) = (0, Vec::new());
    for point in points {
        let what = format!("{tag} {point:?}");
        let dev = Arc::new(MemDevice::new(rec.image_at(&base, point)));
        let got = {
            let fs =
                Ext4::open_device(dev.clone(), &OpenOptions::default()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
            let inode = fs.read_inode(fs.resolve_path(b"/f0", false).unwrap()).unwrap();
            let mut got = vec![0u8; inode.size() as usize];
            fs.read(&inode, 0, &mut got).unwrap_or_else(|e| panic!("{what}: read: {e}"));
            fs.close().unwrap();
            got
        };
        assert!([old.len(), collapsed.len(), inserted.len()].contains(&got.len()), "{what}: size {}", got.len());
        for (i, b) in got.chunks(bs as usize).enumerate() {
            assert!(b.iter().all(|&x| x == 0) || blocks.contains(b), "{what}: block {i} holds foreign bytes");
        }
        if got != old && got != collapsed && got != inserted {
            partial += 1;
        }
        let crashed = scratch.join("crashed.img");
        std::fs::write(&crashed, dev.contents()).unwrap();
        let (clean, text) = fsck(&crashed);
        assert!(clean, "{what}: e2fsck -fn after our recovery:\n{text}");
        if point == CrashPoint::AfterFlush(flushes) {
            last = got;
        }
    }
    assert!(last == inserted, "{tag}: the last state is not the model");
    assert!(partial > 0, "{tag}: no state between two pieces was durable: the pieces were not shown");
}
