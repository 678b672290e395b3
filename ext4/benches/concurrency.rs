//! Benchmark of the concurrency model, side by side in one run with the
//! kernel's ext4 on a loop mount of the same kind of image:
//! - fsync latency (p50/p99) of a small append: write 100 bytes at the end
//!   of a file, then fsync, 2 000 times;
//! - 1, 2 and 4 threads, each creating and writing 4 KiB files in its own
//!   directory, then overwriting its own files, ending durable (our sync,
//!   the kernel's syncfs): throughput and scaling over one thread.
//!
//! Prints times and ratios; asserts nothing. Run with
//! `cargo bench -p ext4 --bench concurrency`. The kernel column needs root
//! and loop devices; without them it is reported as skipped.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Scratch;
use common::tools::{mkfs, run};
use ext4::fs::dir::namespace::NewInode;
use ext4::{Ext4, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const APPENDS: usize = 2_000;
const FILES_PER_THREAD: usize = 2_000;
const THREADS: [usize; 3] = [1, 2, 4];

fn new_inode(mode: u16) -> NewInode {
    NewInode { mode, uid: 0, gid: 0, rdev: 0, umask: None }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// p50 and p99 of `APPENDS` append + fsync rounds timed by `round`.
fn latencies(mut round: impl FnMut(usize)) -> (Duration, Duration) {
    let mut v: Vec<Duration> = (0..APPENDS)
        .map(|i| {
            let t = Instant::now();
            round(i);
            t.elapsed()
        })
        .collect();
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

fn ours_fsync(fs: &Ext4) -> (Duration, Duration) {
    let ino = fs.create(ext4::ROOT_INO, b"log", new_inode(0o100644)).unwrap().ino;
    fs.open_inode(ino);
    let rec = [0x42u8; 100];
    let r = latencies(|i| {
        fs.write(ino, (i * rec.len()) as u64, &rec).unwrap();
        fs.fsync().unwrap();
    });
    fs.close_inode(ino).unwrap();
    r
}

fn kernel_fsync(mnt: &Path) -> (Duration, Duration) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(mnt.join("log")).unwrap();
    let rec = [0x42u8; 100];
    latencies(|_| {
        f.write_all(&rec).unwrap();
        f.sync_all().unwrap();
    })
}

/// `threads` threads create + write, then overwrite, their own files.
fn ours_scaling(fs: &Ext4, threads: usize) -> Duration {
    let dirs: Vec<u32> = (0..threads)
        .map(|t| fs.mkdir(ext4::ROOT_INO, format!("t{threads}-{t}").as_bytes(), new_inode(0o40755)).unwrap().ino)
        .collect();
    let block = vec![0x5au8; 4096];
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for &dir in &dirs {
            let block = &block;
            s.spawn(move || {
                let inos: Vec<u32> = (0..FILES_PER_THREAD)
                    .map(|i| {
                        let ino = fs.create(dir, format!("f{i}").as_bytes(), new_inode(0o100644)).unwrap().ino;
                        fs.open_inode(ino);
                        fs.write(ino, 0, block).unwrap();
                        ino
                    })
                    .collect();
                for &ino in &inos {
                    fs.write(ino, 0, block).unwrap();
                    fs.close_inode(ino).unwrap();
                }
            });
        }
    });
    fs.sync().unwrap();
    t0.elapsed()
}

fn kernel_scaling(mnt: &Path, threads: usize) -> Duration {
    let dirs: Vec<PathBuf> = (0..threads).map(|t| mnt.join(format!("t{threads}-{t}"))).collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
    }
    let block = vec![0x5au8; 4096];
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for dir in &dirs {
            let block = &block;
            s.spawn(move || {
                for i in 0..FILES_PER_THREAD {
                    std::fs::write(dir.join(format!("f{i}")), block).unwrap();
                }
                for i in 0..FILES_PER_THREAD {
                    let mut f = std::fs::OpenOptions::new().write(true).open(dir.join(format!("f{i}"))).unwrap();
                    f.write_all(block).unwrap();
                }
            });
        }
    });
    run(Command::new("sync").arg("-f").arg(mnt));
    t0.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let scratch = Scratch::new("bench-concurrency");
    let ours_img = scratch.join("ours.img");
    let kernel_img = scratch.join("kernel.img");
    for img in [&ours_img, &kernel_img] {
        mkfs(img, "2G", None, &["-t", "ext4", "-b", "4096"]);
    }

    let fs = Ext4::open(&ours_img, &OpenOptions::default()).unwrap();
    let our_fsync = ours_fsync(&fs);
    let our_scaling: Vec<Duration> = THREADS.iter().map(|&t| ours_scaling(&fs, t)).collect();
    fs.close().unwrap();
    drop(fs);

    let mnt = scratch.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let kernel = if !common::is_root() {
        common::skip("kernel column of the concurrency benchmark", "needs root for a loop mount");
        None
    } else if !Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(&kernel_img)
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success())
    {
        common::skip("kernel column of the concurrency benchmark", "mount -o loop failed");
        None
    } else {
        let f = kernel_fsync(&mnt);
        let s: Vec<Duration> = THREADS.iter().map(|&t| kernel_scaling(&mnt, t)).collect();
        run(Command::new("umount").arg(&mnt));
        Some((f, s))
    };

    println!("\nfsync of a 100-byte append ({APPENDS} rounds, 4 KiB blocks)");
    println!("| | ours | kernel | ours / kernel |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, o, k) in
        [("p50", our_fsync.0, kernel.as_ref().map(|k| k.0.0)), ("p99", our_fsync.1, kernel.as_ref().map(|k| k.0.1))]
    {
        match k {
            Some(k) => println!("| {name} | {} | {} | {:.2}x |", ms(o), ms(k), o.as_secs_f64() / k.as_secs_f64()),
            None => println!("| {name} | {} | skipped | |", ms(o)),
        }
    }

    let ops = |threads: usize| (threads * FILES_PER_THREAD * 2) as f64;
    println!("\n{FILES_PER_THREAD} files per thread: create + write 4 KiB, then overwrite 4 KiB; until durable");
    println!("| threads | ours (ops/s) | scaling | kernel (ops/s) | scaling | ours / kernel throughput |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, &t) in THREADS.iter().enumerate() {
        let o = ops(t) / our_scaling[i].as_secs_f64();
        let o1 = ops(1) / our_scaling[0].as_secs_f64();
        match &kernel {
            Some((_, ks)) => {
                let k = ops(t) / ks[i].as_secs_f64();
                let k1 = ops(1) / ks[0].as_secs_f64();
                println!("| {t} | {o:.0} | {:.2}x | {k:.0} | {:.2}x | {:.2}x |", o / o1, k / k1, o / k);
            }
            None => println!("| {t} | {o:.0} | {:.2}x | skipped | | |", o / o1),
        }
    }
}
