//! fallocate in every mode, checked against in-memory models: seeded random
//! sequences of writes, truncates and fallocates; after each sequence
//! `e2fsck -fn` is clean (it also checks i_blocks), and our reader, debugfs
//! and the kernel (read-only mount, when root) all return the models' bytes.

mod common;

use common::rng::Rng;
use common::tools::{assert_fsck_clean, debugfs, mkfs};
use common::{Scratch, tree};
use ext4::fs::data::fallocate::FallocMode;
use ext4::{Error, Ext4, OpenOptions};

/// Applies `mode` on `offset..offset+len` to a model of the file's bytes.
fn model_fallocate(model: &mut Vec<u8>, mode: FallocMode, offset: usize, len: usize) {
    let end = offset + len;
    let zero = |m: &mut Vec<u8>| {
        let to = end.min(m.len());
        if offset < to {
            m[offset..to].fill(0);
        }
    };
    match mode {
        FallocMode::Default => {}
        FallocMode::KeepSize => return,
        FallocMode::PunchHole => return zero(model),
        FallocMode::ZeroRange { keep_size } => {
            zero(model);
            if keep_size {
                return;
            }
        }
        FallocMode::CollapseRange => {
            model.drain(offset..end);
            return;
        }
        FallocMode::InsertRange => {
            model.splice(offset..offset, std::iter::repeat_n(0, len));
            return;
        }
    }
    if model.len() < end {
        model.resize(end, 0);
    }
}

fn random_mode(rng: &mut Rng) -> FallocMode {
    match rng.below(5) {
        0 => FallocMode::Default,
        1 => FallocMode::KeepSize,
        2 => FallocMode::PunchHole,
        3 => FallocMode::ZeroRange { keep_size: false },
        _ => FallocMode::ZeroRange { keep_size: true },
    }
}

/// One seeded sequence on a fresh image made with `args`. `block_maps`:
/// the files are ext3 block-mapped, where only punching is supported.
fn run_sequence(tag: &str, args: &[&str], seed: u64, ops: usize, block_maps: bool, inline_files: bool) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let names: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    for n in &names {
        std::fs::write(src.join(n), if inline_files { tree::pattern(seed, 30) } else { Vec::new() }).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", Some(&src), args);
    let mut models: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(src.join(n)).unwrap()).collect();
    let mut rng = Rng(seed);
    let mut unsupported = 0;
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let inos: Vec<u32> =
            names.iter().map(|n| fs.resolve_path(format!("/{n}").as_bytes(), false).unwrap()).collect();
        for step in 0..ops {
            let f = rng.below(names.len() as u64) as usize;
            let model = &mut models[f];
            let off = match rng.below(3) {
                0 => rng.below(model.len() as u64 + 1),
                1 => rng.below(300_000),
                _ => model.len() as u64,
            } as usize;
            match rng.below(10) {
                0..=3 => {
                    let len = rng.length(40, 5000, 60_000) as usize;
                    let data = tree::pattern(seed * 1000 + step as u64, len);
                    assert_eq!(fs.write(inos[f], off as u64, &data).unwrap(), len, "{tag} step {step}");
                    if model.len() < off + len {
                        model.resize(off + len, 0);
                    }
                    model[off..off + len].copy_from_slice(&data);
                }
                4 => {
                    let size = rng.below(model.len() as u64 * 2 + 100) as usize;
                    fs.truncate(inos[f], size as u64).unwrap();
                    model.resize(size, 0);
                }
                _ => {
                    let len = rng.length(40, 5000, 100_000) as usize;
                    let mode = random_mode(&mut rng);
                    let r = fs.fallocate(inos[f], mode, off as u64, len as u64);
                    if block_maps && mode != FallocMode::PunchHole {
                        assert!(matches!(r, Err(Error::Unsupported(_))), "{tag} step {step}: {mode:?} gave {r:?}");
                        unsupported += 1;
                    } else {
                        r.unwrap_or_else(|e| panic!("{tag} step {step}: {mode:?} {off}+{len}: {e}"));
                        model_fallocate(model, mode, off, len);
                    }
                }
            }
            if step % 40 == 39 {
                fs.sync().unwrap();
            }
        }
        fs.close().unwrap();
        common::models::reader_matches(&fs, tag, &names, &inos, &models);
    }
    assert!(!block_maps || unsupported > 0, "{tag}: the sequence never tried an unsupported mode");
    common::models::image_matches(&img, &scratch, tag, &names, &models);
}

#[test]
fn fallocate_model_ext4_4k() {
    for seed in 1..=3 {
        run_sequence("fa-4k", &["-t", "ext4", "-b", "4096"], seed, 250, false, false);
    }
}

#[test]
fn fallocate_model_ext4_1k() {
    for seed in 10..=12 {
        run_sequence("fa-1k", &["-t", "ext4", "-b", "1024"], seed, 250, false, false);
    }
}

#[test]
fn fallocate_model_inline_files() {
    for seed in 20..=21 {
        run_sequence("fa-inline", &["-t", "ext4", "-b", "4096", "-O", "inline_data"], seed, 150, false, true);
    }
}

#[test]
fn fallocate_model_ext3_punch_only() {
    for seed in 30..=32 {
        run_sequence("fa-ext3", &["-t", "ext3", "-b", "1024"], seed, 250, true, false);
    }
}

/// The extents of `/name` as debugfs lists them, runs of blanks squeezed.
fn extents(img: &std::path::Path, name: &str) -> String {
    let out = debugfs(img, &format!("ex /{name}"));
    out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn keep_size_leaves_uninit_extents_and_size() {
    let scratch = Scratch::new("fa-uninit");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), tree::pattern(5, 10_000)).unwrap();
    std::fs::write(src.join("g"), tree::pattern(6, 3 * 4096)).unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-b", "4096"]);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let f = fs.resolve_path(b"/f", false).unwrap();
        let g = fs.resolve_path(b"/g", false).unwrap();
        let before = fs.statfs().unwrap().free_blocks;
        fs.fallocate(f, FallocMode::KeepSize, 1 << 20, 64 * 4096).unwrap();
        assert_eq!(fs.read_inode(f).unwrap().size(), 10_000);
        assert_eq!(before - fs.statfs().unwrap().free_blocks, 64);
        // Punch the middle block of g: one block freed, the edges kept.
        fs.fallocate(g, FallocMode::PunchHole, 4096, 4096).unwrap();
        let inode = fs.read_inode(g).unwrap();
        assert_eq!(inode.size(), 3 * 4096);
        let mut buf = vec![0u8; 3 * 4096];
        fs.read(&inode, 0, &mut buf).unwrap();
        let mut want = tree::pattern(6, 3 * 4096);
        want[4096..8192].fill(0);
        assert!(buf == want);
        assert!(matches!(fs.map_block(&inode, 1).unwrap(), ext4::Mapping::Hole { .. }));
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
    let ex = extents(&img, "f");
    assert!(ex.contains("Uninit"), "no unwritten extent after KEEP_SIZE:\n{ex}");
    assert!(ex.contains("256 - 319") && ex.contains("64 Uninit"), "the preallocated range is not listed:\n{ex}");
    let ex = extents(&img, "g");
    assert!(
        !ex.contains("Uninit") && ex.contains("0 - 0") && ex.contains("2 - 2"),
        "the punched hole is not visible:\n{ex}"
    );
}

#[test]
fn errors_directories_too_big_and_block_maps() {
    let scratch = Scratch::new("fa-errors");
    let src = scratch.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("f"), b"abc").unwrap();
    for (tag, args, ext3) in [("ext4", vec!["-t", "ext4"], false), ("ext3", vec!["-t", "ext3"], true)] {
        let img = scratch.join(format!("{tag}.img"));
        mkfs(&img, "32M", Some(&src), &args);
        {
            let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
            let d = fs.resolve_path(b"/d", false).unwrap();
            let f = fs.resolve_path(b"/f", false).unwrap();
            assert!(matches!(fs.fallocate(d, FallocMode::Default, 0, 4096), Err(Error::IsADirectory(_))), "{tag}");
            assert!(matches!(fs.fallocate(d, FallocMode::PunchHole, 0, 4096), Err(Error::IsADirectory(_))), "{tag}");
            let max = fs.max_file_size(&fs.read_inode(f).unwrap());
            assert!(matches!(fs.fallocate(f, FallocMode::KeepSize, max, 1), Err(Error::FileTooBig(_))), "{tag}");
            assert!(matches!(fs.fallocate(f, FallocMode::Default, u64::MAX, 2), Err(Error::FileTooBig(_))), "{tag}");
            let r = fs.fallocate(f, FallocMode::Default, 0, 8192);
            assert_eq!(matches!(r, Err(Error::Unsupported(_))), ext3, "{tag}: {r:?}");
            let r = fs.fallocate(f, FallocMode::ZeroRange { keep_size: true }, 0, 1);
            assert_eq!(matches!(r, Err(Error::Unsupported(_))), ext3, "{tag}: {r:?}");
            // Punching works on both, up to and past the end of the file.
            fs.fallocate(f, FallocMode::PunchHole, 1, u64::MAX / 2).unwrap();
            let inode = fs.read_inode(f).unwrap();
            // On ext4 the zeroed range took the 'a' already.
            let want: &[u8] = if ext3 { b"a\0\0" } else { b"\0\0\0" };
            let mut buf = [0u8; 3];
            fs.read(&inode, 0, &mut buf).unwrap();
            assert_eq!(&buf, want, "{tag}");
            fs.close().unwrap();
        }
        assert_fsck_clean(&img);
    }
}

#[test]
fn full_disk_part_way_keeps_what_was_allocated() {
    let scratch = Scratch::new("fa-full");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "16M", Some(&src), &["-t", "ext4"]);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let f = fs.resolve_path(b"/f", false).unwrap();
        assert!(matches!(fs.fallocate(f, FallocMode::Default, 0, 64 << 20), Err(Error::NoSpace)));
        // Ordinary allocations leave the split reserve free, as the kernel does.
        assert_eq!(fs.statfs().unwrap().free_blocks, fs.split_reserve());
        let inode = fs.read_inode(f).unwrap();
        let size = inode.size();
        assert!(size > 0 && size < 64 << 20, "size {size}");
        let mut buf = vec![1u8; size as usize];
        fs.read(&inode, 0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "preallocated blocks read as zeros");
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
}
