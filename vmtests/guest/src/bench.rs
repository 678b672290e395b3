//! bench_seqread: the guest half of the DAX read benchmark. Reads
//! `MNT/bench/seq` (prepared by the host) from start to end with 1 MiB
//! `read()`s, once cold (timed: through the DAX window under
//! `-o dax=always`, through FUSE_READ into the page cache under
//! `-o dax=never`), then checks sampled chunks against the pattern, and
//! prints `VMBENCH seqread <bytes> <microseconds>`.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use crate::pattern::{BENCH_SEED, pattern};
use crate::{Ctx, Outcome, compare, say};

/// bench_seqread: see the module documentation.
pub fn case_seqread(root: &Path) -> Outcome {
    let p = root.parent().expect("the case root has a parent").join("bench/seq");
    let mut f = File::open(&p).ctx("open", &p)?;
    let len = f.metadata().ctx("fstat", &p)?.len() as usize;
    let mut buf = vec![0u8; 1 << 20];
    let mut samples = Vec::new();
    let mut total = 0usize;
    let start = Instant::now();
    loop {
        let n = f.read(&mut buf).ctx("read", &p)?;
        if n == 0 {
            break;
        }
        // Keep every 16th MiB's first 4 KiB to check after the clock stops.
        if total.is_multiple_of(16 << 20) {
            samples.push((total, buf[..n.min(4096)].to_vec()));
        }
        total += n;
    }
    let us = start.elapsed().as_micros();
    ensure!(total == len, "read {total} bytes of {len}");
    let all = pattern(BENCH_SEED, len);
    for (off, got) in &samples {
        compare(&format!("bench/seq at {off}"), got, &all[*off..*off + got.len()])?;
    }
    say(&format!("VMBENCH seqread {total} {us}"));
    Ok(())
}
