//! Crash consistency of the inline conversion: the image as of every flush
//! point of a conversion (after allocate — nothing written; after the data
//! write; inside the handle before commit; after commit before checkpoint;
//! after checkpoint) and torn states between flushes is recovered by our
//! code and by `e2fsck -fy`. Each result holds either the intact inline file
//! or the converted file with its data, and `e2fsck -fn` finds no block
//! bitmap differences or leaked blocks.

mod common;

use common::tools::{debugfs, fsck, mkfs, run};
use common::{Scratch, tree};
use ext4::io::recording_device::{CrashPoint, RecordingDevice};
use ext4::io::{FileDevice, MemDevice};
use ext4::{Ext4, OpenOptions};
use std::process::Command;
use std::sync::Arc;

const SIZE: usize = 100;

/// What a recovered image holds at /f: inline original or converted.
fn state_of(fs: &Ext4, want: &[u8]) -> &'static str {
    let ino = fs.resolve_path(b"/f", false).unwrap();
    let inode = fs.read_inode(ino).unwrap();
    let mut buf = vec![0u8; inode.size() as usize];
    assert_eq!(fs.read(&inode, 0, &mut buf).unwrap(), buf.len());
    assert_eq!(buf, want, "file data after recovery");
    if inode.has_flag(ext4::disk::inode::FL_INLINE_DATA) { "inline" } else { "converted" }
}

#[test]
fn conversion_survives_a_crash_at_every_point() {
    let scratch = Scratch::new("convert-crash");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let want = tree::pattern(3, SIZE);
    std::fs::write(src.join("f"), &want).unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-b", "4096", "-O", "inline_data"]);
    let base = std::fs::read(&img).unwrap();

    let rec = Arc::new(RecordingDevice::new(Arc::new(FileDevice::open(&img, false).unwrap())));
    {
        let fs = Ext4::open_device(rec.clone(), &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f", false).unwrap();
        assert!(fs.convert_inline(ino).unwrap());
        fs.tx().unwrap().commit().unwrap();
        fs.close().unwrap();
    }
    let flushes = rec.flushes();
    assert!(flushes >= 3, "a conversion and its commit flush at least 3 times, saw {flushes}");
    let mut points: Vec<CrashPoint> = (0..=flushes).map(CrashPoint::AfterFlush).collect();
    for after_flush in 0..flushes {
        for seed in 0..6 {
            // Writes persist in whole 4 KiB blocks (the block size, and the atomic
            // write unit of 4Kn devices); which of them persist is torn.
            points.push(CrashPoint::Torn { after_flush, unit: 4096, seed });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, point) in points.iter().enumerate() {
        let crashed = rec.image_at(&base, *point);
        // Our recovery (replay on open), then e2fsck judges the result.
        let dev = Arc::new(MemDevice::new(crashed.clone()));
        {
            let fs = Ext4::open_device(dev.clone(), &OpenOptions::default()).unwrap();
            seen.insert(state_of(&fs, &want));
            fs.close().unwrap();
        }
        let ours = scratch.join(format!("ours-{i}.img"));
        std::fs::write(&ours, dev.contents()).unwrap();
        let (clean, text) = fsck(&ours);
        assert!(clean, "{point:?}: e2fsck -fn after our recovery:\n{text}");
        assert!(!text.contains("bitmap differences"), "{point:?}: {text}");
        // e2fsck's own recovery of the same crashed image.
        let theirs = scratch.join(format!("theirs-{i}.img"));
        std::fs::write(&theirs, &crashed).unwrap();
        let out = Command::new("e2fsck").arg("-fy").arg(&theirs).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.code().unwrap_or(8) <= 1, "{point:?}: e2fsck -fy:\n{text}");
        assert!(!text.contains("bitmap differences"), "{point:?}: e2fsck -fy repaired bitmaps:\n{text}");
        let dumped = scratch.join(format!("dump-{i}"));
        run(Command::new("debugfs").arg("-R").arg(format!("dump /f {}", dumped.display())).arg(&theirs));
        assert_eq!(
            &std::fs::read(&dumped).unwrap()[..SIZE],
            want.as_slice(),
            "{point:?}: data after e2fsck's recovery"
        );
        let stat = debugfs(&theirs, "stat /f");
        seen.insert(if stat.contains("Size of inline data") { "inline" } else { "converted" });
        for p in [ours, theirs, dumped] {
            let _ = std::fs::remove_file(p);
        }
    }
    assert!(seen.contains("inline") && seen.contains("converted"), "both outcomes reached: {seen:?}");
}
