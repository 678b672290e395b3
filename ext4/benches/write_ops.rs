//! Benchmark of journaled writes, side by side in one run with the kernel
//! on a loop mount of the same kind of image: create + write 4 KiB of
//! 10 000 files, unlink of them, and a 1 GiB sequential write. Each side
//! ends with its data durable (our sync, the kernel's syncfs via `sync -f`).
//! Prints times and ratios; asserts nothing.
//!
//! Run with `cargo bench -p ext4 --bench write_ops`. The kernel column
//! needs root and loop devices; without them it is reported as skipped.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Scratch;
use common::tools::{mkfs, run};
use ext4::fs::dir::namespace::NewInode;
use ext4::{Ext4, OpenOptions};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FILES: usize = 10_000;
const BIG: u64 = 1 << 30;
const CHUNK: usize = 1 << 20;

struct Row {
    name: &'static str,
    ours: Duration,
    kernel: Option<Duration>,
}

fn ours(image: &Path) -> Vec<(&'static str, Duration)> {
    let fs = Ext4::open(image, &OpenOptions::default()).unwrap();
    let root = ext4::ROOT_INO;
    let dir = fs.mkdir(root, b"many", NewInode { mode: 0o755, uid: 0, gid: 0, rdev: 0, umask: None }).unwrap().ino;
    let block = vec![0x5au8; 4096];
    let t = Instant::now();
    for i in 0..FILES {
        let f = fs
            .create(
                dir,
                format!("f{i:05}").as_bytes(),
                NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None },
            )
            .unwrap();
        fs.write(f.ino, 0, &block).unwrap();
    }
    fs.sync().unwrap();
    let create = t.elapsed();
    let t = Instant::now();
    for i in 0..FILES {
        fs.unlink(dir, format!("f{i:05}").as_bytes()).unwrap();
    }
    fs.sync().unwrap();
    let unlink = t.elapsed();
    let big = fs.create(root, b"big", NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None }).unwrap().ino;
    let chunk = vec![0xa5u8; CHUNK];
    let t = Instant::now();
    let mut off = 0;
    while off < BIG {
        fs.write(big, off, &chunk).unwrap();
        off += CHUNK as u64;
    }
    fs.sync().unwrap();
    let seq = t.elapsed();
    vec![("create+write 4 KiB x 10 000", create), ("unlink x 10 000", unlink), ("1 GiB sequential write", seq)]
}

fn kernel(scratch: &Scratch, image: &Path) -> Option<Vec<Duration>> {
    if !common::is_root() {
        common::skip("kernel column of write_ops", "needs root for a loop mount");
        return None;
    }
    let mnt = scratch.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    if !Command::new("mount").arg("-o").arg("loop").arg(image).arg(&mnt).status().map(|s| s.success()).unwrap_or(false)
    {
        common::skip("kernel column of write_ops", "mount -o loop failed");
        return None;
    }
    let syncfs = || run(Command::new("sync").arg("-f").arg(&mnt));
    let dir = mnt.join("many");
    std::fs::create_dir(&dir).unwrap();
    let block = vec![0x5au8; 4096];
    let t = Instant::now();
    for i in 0..FILES {
        std::fs::write(dir.join(format!("f{i:05}")), &block).unwrap();
    }
    syncfs();
    let create = t.elapsed();
    let t = Instant::now();
    for i in 0..FILES {
        std::fs::remove_file(dir.join(format!("f{i:05}"))).unwrap();
    }
    syncfs();
    let unlink = t.elapsed();
    let chunk = vec![0xa5u8; CHUNK];
    let t = Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(mnt.join("big")).unwrap();
        for _ in 0..BIG / CHUNK as u64 {
            f.write_all(&chunk).unwrap();
        }
    }
    syncfs();
    let seq = t.elapsed();
    run(Command::new("umount").arg(&mnt));
    Some(vec![create, unlink, seq])
}

fn main() {
    let scratch = Scratch::new("bench-write");
    let args = ["-t", "ext4", "-b", "4096"];
    let a = scratch.join("ours.img");
    let b = scratch.join("kernel.img");
    mkfs(&a, "4G", None, &args);
    mkfs(&b, "4G", None, &args);
    let ours = ours(&a);
    let kernel = kernel(&scratch, &b);
    let rows: Vec<Row> = ours
        .iter()
        .enumerate()
        .map(|(i, (name, d))| Row { name, ours: *d, kernel: kernel.as_ref().map(|k| k[i]) })
        .collect();
    println!("{:<30} {:>12} {:>12} {:>18}", "workload", "ours", "kernel", "ours / kernel");
    for r in rows {
        match r.kernel {
            Some(k) => println!(
                "{:<30} {:>10.0}ms {:>10.0}ms {:>17.2}x",
                r.name,
                r.ours.as_secs_f64() * 1e3,
                k.as_secs_f64() * 1e3,
                r.ours.as_secs_f64() / k.as_secs_f64()
            ),
            None => println!("{:<30} {:>10.0}ms {:>12} {:>18}", r.name, r.ours.as_secs_f64() * 1e3, "skipped", "-"),
        }
    }
}
