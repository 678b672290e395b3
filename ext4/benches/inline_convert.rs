//! Benchmark of inline-data conversion: latency (p50/p99) of converting
//! small inline files, ours by allocate → write → set_blocks and the
//! kernel's on a loop mount of the same image, both triggered by a write
//! past the inline capacity; plus journal transactions per conversion.
//! Prints figures; asserts nothing.
//!
//! Run with `cargo bench -p ext4 --bench inline_convert`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::tools::{mkfs, run};
use common::{Scratch, tree};
use ext4::{Ext4, OpenOptions};
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

const FILES: usize = 2000;
/// Past the largest inline size of 256-byte inodes (128 bytes).
const WRITE_AT: u64 = 200;

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 99 / 100).min(v.len() - 1)])
}

fn jbd2_transactions() -> Option<u64> {
    // /proc/fs/jbd2/loopN-8/info: "M transactions (N requested), ..."
    let dir = std::fs::read_dir("/proc/fs/jbd2").ok()?;
    let mut total = 0;
    for e in dir.flatten() {
        if e.file_name().to_string_lossy().starts_with("loop") {
            let info = std::fs::read_to_string(e.path().join("info")).ok()?;
            total += info.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

fn main() {
    let scratch = Scratch::new("bench-inline");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..FILES {
        std::fs::write(src.join(format!("f{i}")), tree::pattern(i as u64, 40 + i % 80)).unwrap();
    }
    let args = ["-t", "ext4", "-b", "4096", "-I", "256", "-O", "inline_data"];
    let (a, b, c) = (scratch.join("a.img"), scratch.join("b.img"), scratch.join("c.img"));
    for img in [&a, &b, &c] {
        mkfs(img, "256M", Some(&src), &args);
    }

    // Ours: a write past the inline capacity (conversion + the write).
    let fs = Ext4::open(&a, &OpenOptions::default()).unwrap();
    let inos: Vec<u32> = (0..FILES).map(|i| fs.resolve_path(format!("/f{i}").as_bytes(), false).unwrap()).collect();
    let mut ours = Vec::with_capacity(FILES);
    for &ino in &inos {
        let t = Instant::now();
        fs.write(ino, WRITE_AT, b"x").unwrap();
        ours.push(t.elapsed());
    }
    fs.sync().unwrap();
    drop(fs);

    // Ours, conversion alone, committing after each: transactions counted.
    let fs = Ext4::open(&b, &OpenOptions::default()).unwrap();
    let tx = fs.tx().unwrap();
    let before = tx.stats().commits;
    let mut conv = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let ino = fs.resolve_path(format!("/f{i}").as_bytes(), false).unwrap();
        let t = Instant::now();
        fs.convert_inline(ino).unwrap();
        conv.push(t.elapsed());
        tx.commit().unwrap();
    }
    let per_conversion = (tx.stats().commits - before) as f64 / FILES as f64;
    fs.sync().unwrap();
    drop(fs);

    let (p50, p99) = percentiles(ours);
    let (c50, c99) = percentiles(conv);
    println!("{FILES} inline files (40..120 bytes), 4 KiB blocks, 256-byte inodes");
    println!("{:<44} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "{:<44} {:>8.1}us {:>8.1}us",
        "ours: write past inline capacity",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    println!(
        "{:<44} {:>8.1}us {:>8.1}us",
        "ours: convert_inline alone",
        c50.as_secs_f64() * 1e6,
        c99.as_secs_f64() * 1e6
    );
    println!("ours: {per_conversion:.2} journal transactions per conversion");

    if !common::is_root() {
        common::skip("kernel row of inline_convert", "needs root for a loop mount");
        return;
    }
    let mnt = scratch.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    if !Command::new("mount").arg("-o").arg("loop").arg(&c).arg(&mnt).status().map(|s| s.success()).unwrap_or(false) {
        common::skip("kernel row of inline_convert", "mount -o loop failed");
        return;
    }
    let tx_before = jbd2_transactions();
    let mut kernel = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let t = Instant::now();
        let f = std::fs::OpenOptions::new().write(true).open(mnt.join(format!("f{i}"))).unwrap();
        f.write_all_at(b"x", WRITE_AT).unwrap();
        drop(f);
        kernel.push(t.elapsed());
    }
    run(Command::new("sync").arg("-f").arg(&mnt));
    let tx_after = jbd2_transactions();
    run(Command::new("umount").arg(&mnt));
    let (k50, k99) = percentiles(kernel);
    println!(
        "{:<44} {:>8.1}us {:>8.1}us",
        "kernel: write past inline capacity",
        k50.as_secs_f64() * 1e6,
        k99.as_secs_f64() * 1e6
    );
    println!(
        "ratio ours/kernel: p50 {:.2}x, p99 {:.2}x",
        p50.as_secs_f64() / k50.as_secs_f64(),
        p99.as_secs_f64() / k99.as_secs_f64()
    );
    if let (Some(x), Some(y)) = (tx_before, tx_after) {
        println!("kernel: {} jbd2 transactions for {FILES} conversions (batched by its commit timer)", y - x);
    }
}
