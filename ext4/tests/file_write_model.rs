//! Model-based test of file writes and truncates: seeded random sequences
//! applied to files in an image and to in-memory models; after each
//! sequence, `e2fsck -fn` is clean and both our reader and debugfs return
//! exactly the models' bytes.

mod common;

use common::rng::Rng;
use common::tools::mkfs;
use common::{Scratch, tree};
use ext4::{Ext4, OpenOptions};

fn run_sequence(tag: &str, args: &[&str], seed: u64, ops: usize, inline_files: bool) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    for n in &names {
        // Small initial contents: inline where the image has inline_data.
        std::fs::write(src.join(n), if inline_files { tree::pattern(seed, 20) } else { Vec::new() }).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", Some(&src), args);
    let mut models: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(src.join(n)).unwrap()).collect();
    let mut rng = Rng(seed);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let inos: Vec<u32> =
            names.iter().map(|n| fs.resolve_path(format!("/{n}").as_bytes(), false).unwrap()).collect();
        for step in 0..ops {
            let f = rng.below(names.len() as u64) as usize;
            let model = &mut models[f];
            match rng.below(10) {
                // Writes of every size class: tiny (inline-sized), around a
                // block, large runs, and far offsets that leave holes.
                0..=6 => {
                    let len = match rng.below(4) {
                        0 => 1 + rng.below(70),
                        1 => 1 + rng.below(5000),
                        2 => 1 + rng.below(70_000),
                        _ => 1 + rng.below(300),
                    } as usize;
                    let off = match rng.below(3) {
                        0 => rng.below(model.len() as u64 + 1),
                        1 => rng.below(200_000),
                        _ => model.len() as u64,
                    };
                    let data = tree::pattern(seed * 1000 + step as u64, len);
                    assert_eq!(fs.write(inos[f], off, &data).unwrap(), len, "{tag} step {step}");
                    let end = off as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                _ => {
                    let size = rng.below(model.len() as u64 * 2 + 100) as usize;
                    fs.truncate(inos[f], size as u64).unwrap();
                    model.resize(size, 0);
                }
            }
            if step % 50 == 49 {
                fs.sync().unwrap();
            }
        }
        // A clean close: journal checkpointed, needs_recovery cleared.
        fs.close().unwrap();
        common::models::reader_matches(&fs, tag, &names, &inos, &models);
    }
    common::models::image_matches(&img, &scratch, tag, &names, &models);
}

#[test]
fn writes_extents_4k() {
    for seed in 1..=3 {
        run_sequence("fw-4k", &["-t", "ext4"], seed, 300, false);
    }
}

#[test]
fn writes_extents_1k_no_csum() {
    for seed in 10..=12 {
        run_sequence("fw-1k", &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"], seed, 300, false);
    }
}

#[test]
fn writes_block_maps_ext3() {
    for seed in 20..=22 {
        run_sequence("fw-ext3", &["-t", "ext3", "-b", "1024"], seed, 300, false);
    }
}

#[test]
fn writes_inline_files_convert() {
    for seed in 30..=32 {
        run_sequence("fw-inline", &["-t", "ext4", "-O", "inline_data"], seed, 300, true);
    }
}
