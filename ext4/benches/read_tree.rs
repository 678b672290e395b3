//! Benchmark: walk and read every file of a 20 000-file image, side by side
//! in one run with `debugfs -R "rdump / DIR"` and with the kernel (loop
//! mount, read with tar). Prints wall times and ratios; asserts nothing.
//!
//! Run with `cargo bench -p ext4 --bench read_tree`. The kernel row needs
//! root and loop devices; without them it is reported as skipped.

#[path = "../tests/common/mod.rs"]
mod common;

use common::tools::{mkfs, run};
use common::{Scratch, tree};
use ext4::{Ext4, OpenOptions};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FILES: usize = 20_000;
const ROUNDS: usize = 3;

/// Builds a source tree of `FILES` files in 200 directories, sizes from
/// empty to 256 KiB (median a few KiB), like a source checkout.
fn build_source(root: &Path) -> u64 {
    let mut total = 0u64;
    for d in 0..200 {
        let dir = root.join(format!("dir{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..FILES / 200 {
            let i = d * 1000 + f;
            let size = match i % 10 {
                0 => 0,
                1..=5 => 100 + (i * 37) % 4000,
                6..=8 => 4096 + (i * 131) % 30_000,
                _ => 65_536 + (i * 997) % 200_000,
            };
            total += size as u64;
            std::fs::write(dir.join(format!("file{f:04}.dat")), tree::pattern(i as u64, size)).unwrap();
        }
    }
    total
}

/// Our reader: resolve, list and read every file, as a user-space server would.
fn walk_ours(image: &Path) -> (usize, u64) {
    let fs = Ext4::open(image, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let mut stack = vec![ext4::ROOT_INO];
    let mut buf = vec![0u8; 1 << 20];
    let (mut files, mut bytes) = (0usize, 0u64);
    while let Some(ino) = stack.pop() {
        let dir = fs.read_inode(ino).unwrap();
        let mut children = Vec::new();
        fs.read_dir(&dir, 0, &mut |e, _| {
            if e.name != b"." && e.name != b".." {
                children.push(e.ino);
            }
            true
        })
        .unwrap();
        for c in children {
            let inode = fs.read_inode(c).unwrap();
            if inode.is_dir() {
                stack.push(c);
            } else if inode.is_reg() {
                let mut off = 0;
                loop {
                    let n = fs.read(&inode, off, &mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    off += n as u64;
                }
                files += 1;
                bytes += off;
            }
        }
    }
    (files, bytes)
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

fn kernel_available(scratch: &Scratch, image: &Path) -> Option<std::path::PathBuf> {
    if !common::is_root() {
        common::skip("kernel row", "needs root for a loop mount");
        return None;
    }
    let mnt = scratch.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-o", "loop,ro,noload"])
        .arg(image)
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        common::skip("kernel row", "mount -o loop failed (no loop devices?)");
        return None;
    }
    Some(mnt)
}

fn main() {
    let scratch = Scratch::new("bench-read");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let total = build_source(&src);
    let image = scratch.join("fs.img");
    mkfs(&image, "2G", Some(&src), &["-t", "ext4", "-b", "4096"]);
    println!("image: {FILES} files, {} MiB of data; best of {ROUNDS} warm runs each", total >> 20);

    let mut rows: Vec<(&str, Option<Duration>)> = Vec::new();
    let ours = time(|| {
        let (files, bytes) = walk_ours(&image);
        assert_eq!((files, bytes), (FILES, total));
    });
    rows.push(("ext4 crate (this project)", Some(ours)));

    let out = scratch.join("rdump");
    let debugfs = time(|| {
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir(&out).unwrap();
        run(Command::new("debugfs").arg("-R").arg(format!("rdump / {}", out.display())).arg(&image));
    });
    rows.push(("debugfs rdump", Some(debugfs)));

    let kernel = kernel_available(&scratch, &image).map(|mnt| {
        let d = time(|| {
            // tar skips reading file data when its archive is /dev/null, so
            // pipe the archive through cat to force every byte to be read.
            run(Command::new("sh").arg("-c").arg(format!("tar cf - -C {} . | cat > /dev/null", mnt.display())));
        });
        run(Command::new("umount").arg(&mnt));
        d
    });
    rows.push(("kernel loop mount + tar", kernel));

    println!("{:<28} {:>12} {:>18}", "reader", "time", "ratio vs ours");
    for (name, d) in rows {
        match d {
            Some(d) => {
                println!("{name:<28} {:>10.1}ms {:>17.2}x", d.as_secs_f64() * 1e3, d.as_secs_f64() / ours.as_secs_f64())
            }
            None => println!("{name:<28} {:>12} {:>18}", "skipped", "-"),
        }
    }
}
