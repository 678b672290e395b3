//! Guest benchmark of the DAX window (issue 11, acceptance 6, the guest
//! half): in a real guest under QEMU 11 (TCG, sid chroot), a 256 MiB file
//! read sequentially from start to end with 1 MiB `read()`s, cold, through
//! the DAX window (mounted `-o dax=always`: the guest asks FUSE_SETUPMAPPING
//! for 2 MiB ranges and copies out of the window) and through FUSE_READ
//! (mounted `-o dax=never`: every byte crosses the virtqueue into the page
//! cache). Same QEMU, same kernel, same image, same daemon options
//! (`ext4-virtiofsd serve --cache-size 512M`, release build); one boot per
//! mount and run. The guest times the read with its own clock (TCG: the
//! absolute figures are those of an emulated CPU; the ratio is what
//! counts) and checks every 16th MiB's first page against the pattern.
//!
//! The best of `BENCH_RUNS` runs (default 2) per mount is printed as a
//! markdown table with the ratio. Run with
//! `cargo bench -p vmtests --bench guest_dax` (root: QEMU 11 runs in a
//! chroot); our daemon is `cargo build --release`'s, or `BENCH_OURS_BIN`.
//! A missing prerequisite is printed as a skip.

use std::process::Command;

use testkit::Scratch;
use vmtests::pattern::{BENCH_SEED, pattern};
use vmtests::rig::{self, GuestRun};

/// The file's size.
const FILE_MIB: usize = 256;

fn main() {
    let what = "bench guest_dax";
    let Some(prep) = rig::prepared_or_skip(what) else { return };
    let Some(q11) = rig::qemu11_or_skip(what, &prep) else { return };
    let bin = vmtests::frontend::daemon::ext4_virtiofsd_release_binary();
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(2).max(1);
    let s = Scratch::new("benchdax");
    let tree = s.join("tree");
    std::fs::create_dir_all(tree.join("bench")).unwrap();
    std::fs::write(tree.join("bench/seq"), pattern(BENCH_SEED, FILE_MIB << 20)).unwrap();
    let image = s.join("bench.img");
    testkit::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data,metadata_csum", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg(format!("{}M", FILE_MIB + 128)),
    );
    std::fs::remove_dir_all(&tree).unwrap();

    let mut rows = Vec::new();
    for (mount, path) in [("dax=always", "DAX window"), ("dax=never", "FUSE_READ")] {
        let mut best: Option<f64> = None;
        let mut counters = String::new();
        for run_no in 0..runs {
            let mut run = GuestRun::new(&s.join(format!("logs-{mount}-{run_no}")));
            run.qemu11 = Some(q11.clone());
            run.serve_args = vec!["--cache-size".into(), "512M".into()];
            run.mount_opts = Some(mount.into());
            run.cases = Some(vec!["bench_seqread".into()]);
            let result = rig::run_ext4_image(&prep, &bin, &image, &run);
            result.assert_all_passed();
            let line = result
                .boot
                .console
                .lines()
                .find_map(|l| {
                    l.find("VMBENCH seqread ").map(|at| l[at + "VMBENCH seqread ".len()..].trim().to_string())
                })
                .expect("the guest printed no VMBENCH line");
            let (bytes, us) = line.split_once(' ').expect("VMBENCH seqread BYTES MICROSECONDS");
            let (bytes, us): (f64, f64) = (bytes.parse().unwrap(), us.parse().unwrap());
            let mbps = bytes / 1e6 / (us / 1e6);
            eprintln!("guest_dax: {mount} run {run_no}: {mbps:.1} MB/s");
            best = Some(best.map_or(mbps, |b: f64| b.max(mbps)));
            counters = result
                .daemon_log
                .lines()
                .rev()
                .find_map(|l| l.find("dax counters:").map(|at| l[at..].to_string()))
                .unwrap_or_default();
        }
        rows.push((mount, path, best.unwrap(), counters));
    }
    println!("\nGuest sequential read of a {FILE_MIB} MiB file (1 MiB read()s, cold), {} (TCG),", q11.version);
    println!("{} serve --cache-size 512M, best of {runs} boots per mount:\n", bin.display());
    println!("| guest mount | path | MB/s | daemon counters (last run) |");
    println!("|---|---|---:|---|");
    for (mount, path, mbps, counters) in &rows {
        println!("| `{mount}` | {path} | {mbps:.1} | {counters} |");
    }
    println!("\nratio DAX / FUSE_READ: {:.2}x", rows[0].2 / rows[1].2);
}
