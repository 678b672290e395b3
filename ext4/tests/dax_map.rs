//! map_for_dax: physical ranges for multi-extent, sparse (writable and
//! read-only), unwritten and past-EOF ranges, refusal on 1 KiB blocks, pins
//! that keep truncate from freeing mapped blocks, and concurrent use.

mod common;

use common::tools::{assert_fsck_clean, mkfs, run};
use common::{Scratch, tree};
use ext4::fs::data::dax::{DaxEvent, DaxPiece};
use ext4::{Ext4, OpenOptions};
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::sync::Arc;

/// Bytes of the image behind every piece, zeros for Zero pieces.
fn bytes_of(img: &std::path::Path, pieces: &[DaxPiece]) -> Vec<u8> {
    let f = std::fs::File::open(img).unwrap();
    let mut out = Vec::new();
    for p in pieces {
        match *p {
            DaxPiece::Image { image_offset, len, .. } => {
                let mut b = vec![0u8; len as usize];
                f.read_exact_at(&mut b, image_offset).unwrap();
                out.extend(b);
            }
            DaxPiece::Zero { len, .. } => out.extend(vec![0u8; len as usize]),
        }
    }
    out
}

fn setup(tag: &str, args: &[&str]) -> (Scratch, std::path::PathBuf) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let frag = std::fs::File::create(src.join("multi")).unwrap();
    for i in 0..16u64 {
        frag.write_all_at(&tree::pattern(i, 4096), i * 8192).unwrap();
        frag.write_all_at(&tree::pattern(100 + i, 4096), i * 8192 + 4096).unwrap();
    }
    drop(frag);
    let sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.write_all_at(&tree::pattern(7, 4096), 64 << 10).unwrap();
    // Ends with data: mke2fs 1.47.0 with inline_data drops trailing holes.
    sparse.write_all_at(b"end", (256 << 10) - 3).unwrap();
    drop(sparse);
    std::fs::write(src.join("tiny"), b"inline bytes").unwrap();
    std::fs::write(src.join("prealloc"), tree::pattern(9, 4096)).unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", Some(&src), args);
    (scratch, img)
}

#[test]
fn dax_ranges_for_every_kind_of_file() {
    let (scratch, img) = setup("dax", &["-t", "ext4", "-b", "4096", "-O", "inline_data"]);
    // An unwritten (fallocated) range, made by debugfs.
    // Blocks 1..=16 preallocated (unwritten) after one block of data.
    run(Command::new("debugfs").arg("-w").arg("-R").arg("fallocate /prealloc 1 16").arg(&img));
    run(Command::new("debugfs").arg("-w").arg("-R").arg("sif /prealloc size 69632").arg(&img));
    let src = scratch.join("src");
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = |p: &str| fs.resolve_path(p.as_bytes(), false).unwrap();

        // Multi-extent file: pieces cover the range and hold the file's bytes.
        let m = fs.map_for_dax(ino("/multi"), 0, 128 << 10, false).unwrap();
        assert_eq!(bytes_of(&img, &m.pieces), std::fs::read(src.join("multi")).unwrap());
        assert!(m.pieces.iter().all(|p| matches!(p, DaxPiece::Image { .. })));

        // Sparse, read-only: holes are Zero pieces, nothing allocated.
        let sp = ino("/sparse");
        let blocks_before = fs.read_inode(sp).unwrap().raw.blocks_lo;
        let r = fs.map_for_dax(sp, 0, 256 << 10, false).unwrap();
        assert_eq!(bytes_of(&img, &r.pieces), std::fs::read(src.join("sparse")).unwrap());
        assert!(r.pieces.iter().any(|p| matches!(p, DaxPiece::Zero { .. })));
        assert_eq!(fs.read_inode(sp).unwrap().raw.blocks_lo, blocks_before, "read-only mapping allocated");

        // Sparse, writable: every page gets its own zeroed block.
        let w = fs.map_for_dax(sp, 0, 256 << 10, true).unwrap();
        assert!(w.pieces.iter().all(|p| matches!(p, DaxPiece::Image { .. })), "{:?}", w.pieces);
        assert_eq!(bytes_of(&img, &w.pieces), std::fs::read(src.join("sparse")).unwrap());

        // Unwritten extents: zeroed and converted for writing.
        let pre = ino("/prealloc");
        assert!(fs.file_extents(&fs.read_inode(pre).unwrap()).unwrap().iter().any(|e| e.unwritten));
        let ro = fs.map_for_dax(pre, 4096, 64 << 10, false).unwrap();
        assert!(ro.pieces.iter().all(|p| matches!(p, DaxPiece::Zero { .. })), "{:?}", ro.pieces);
        let rw = fs.map_for_dax(pre, 4096, 64 << 10, true).unwrap();
        assert_eq!(bytes_of(&img, &rw.pieces), vec![0u8; 64 << 10]);
        assert!(fs.file_extents(&fs.read_inode(pre).unwrap()).unwrap().iter().all(|e| !e.unwritten));

        // Past end of file: zeros, read-only or writable (nothing allocated).
        let past = fs.map_for_dax(ino("/multi"), 128 << 10, 8192, false).unwrap();
        assert_eq!(past.pieces, vec![DaxPiece::Zero { file_offset: 128 << 10, len: 8192 }]);
        let past_w = fs.map_for_dax(ino("/multi"), 120 << 10, 16384, true).unwrap();
        let (last, before) = past_w.pieces.split_last().unwrap();
        assert_eq!(*last, DaxPiece::Zero { file_offset: 128 << 10, len: 8192 });
        assert!(before.iter().all(|p| matches!(p, DaxPiece::Image { .. })), "{:?}", past_w.pieces);
        fs.release_dax(past_w.id);
        assert!(matches!(fs.map_for_dax(ino("/multi"), 100, 4096, false), Err(ext4::Error::InvalidArgument(_))));
        assert!(fs.map_for_dax(ext4::ROOT_INO, 0, 4096, false).is_err(), "directories are refused");

        // Inline file: converted first, never the inode table block.
        let t = ino("/tiny");
        let tm = fs.map_for_dax(t, 0, 4096, false).unwrap();
        assert!(tm.converted);
        assert!(!fs.read_inode(t).unwrap().has_flag(ext4::disk::inode::FL_INLINE_DATA));
        let mut want = b"inline bytes".to_vec();
        want.resize(4096, 0);
        assert_eq!(bytes_of(&img, &tm.pieces), want);

        // Pins: truncate asks the owner to unmap, and is refused while a pin stays.
        assert!(matches!(fs.truncate(ino("/multi"), 0), Err(ext4::Error::Busy(_))));
        for id in [m.id, past.id] {
            fs.release_dax(id);
        }
        fs.truncate(ino("/multi"), 0).unwrap();
        for id in [r.id, w.id, ro.id, rw.id, tm.id] {
            fs.release_dax(id);
        }
        assert_eq!(fs.dax_pin_count(), 0);
        fs.sync().unwrap();
    }
    assert_fsck_clean(&img);
}

#[test]
fn owner_is_asked_to_unmap_before_blocks_are_freed() {
    let (_scratch, img) = setup("dax-owner", &["-t", "ext4", "-b", "4096"]);
    let fs = Arc::new(Ext4::open(&img, &OpenOptions::default()).unwrap());
    let ino = fs.resolve_path(b"/multi", false).unwrap();
    let m = fs.map_for_dax(ino, 0, 64 << 10, false).unwrap();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let weak = Arc::downgrade(&fs);
    let (asked2, id) = (asked.clone(), m.id);
    fs.set_dax_unmap_owner(Box::new(move |event| {
        let DaxEvent::Freeing { ino: i, first, count } = event else { return };
        asked2.lock().unwrap().push((i, first, count));
        if let Some(fs) = weak.upgrade() {
            fs.release_dax(id);
        }
    }));
    fs.truncate(ino, 4096).unwrap();
    assert_eq!(asked.lock().unwrap().as_slice(), &[(ino, 1, u64::MAX)], "the owner is told the freed range");
    assert_eq!(fs.dax_pin_count(), 0);
    fs.sync().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
}

#[test]
fn one_kib_blocks_are_refused() {
    let (_scratch, img) = setup("dax-1k", &["-t", "ext4", "-b", "1024"]);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let ino = fs.resolve_path(b"/multi", false).unwrap();
    match fs.map_for_dax(ino, 0, 4096, false) {
        Err(ext4::Error::Unsupported(msg)) => assert!(msg.contains("4096"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// 8 threads map, read, write and truncate the same small inline files.
#[test]
fn concurrent_conversion_stress() {
    let scratch = Scratch::new("dax-stress");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..4 {
        std::fs::write(src.join(format!("f{i}")), tree::pattern(i, 40)).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", Some(&src), &["-t", "ext4", "-b", "4096", "-O", "inline_data"]);
    {
        let fs = Arc::new(Ext4::open(&img, &OpenOptions::default()).unwrap());
        let inos: Vec<u32> = (0..4).map(|i| fs.resolve_path(format!("/f{i}").as_bytes(), false).unwrap()).collect();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (fs, inos) = (fs.clone(), inos.clone());
                std::thread::spawn(move || {
                    for round in 0..40u64 {
                        let ino = inos[((t + round) % 4) as usize];
                        match (t + round) % 4 {
                            0 => {
                                let m = fs.map_for_dax(ino, 0, 4096, false).unwrap();
                                assert!(!fs.read_inode(ino).unwrap().has_flag(ext4::disk::inode::FL_INLINE_DATA));
                                fs.release_dax(m.id);
                            }
                            1 => {
                                let inode = fs.read_inode(ino).unwrap();
                                let mut buf = vec![0u8; 8192];
                                let n = fs.read(&inode, 0, &mut buf).unwrap();
                                assert!(n as u64 <= inode.size().max(8192));
                            }
                            2 => {
                                fs.write(ino, (round % 3) * 30, &tree::pattern(t * 100 + round, 50)).unwrap();
                            }
                            // A truncate that meets another thread's live pin is refused (EBUSY).
                            _ => match fs.truncate(ino, (round * 7) % 100) {
                                Ok(()) | Err(ext4::Error::Busy(_)) => {}
                                Err(e) => panic!("truncate: {e}"),
                            },
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Every file is consistent: size and readable bytes agree.
        for ino in inos {
            let inode = fs.read_inode(ino).unwrap();
            let mut buf = vec![0u8; inode.size() as usize];
            assert_eq!(fs.read(&inode, 0, &mut buf).unwrap(), buf.len());
        }
        fs.sync().unwrap();
    }
    assert_fsck_clean(&img);
}
