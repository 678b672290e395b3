//! Benchmark of the host mount (`ext4-virtiofsd mount IMG MNT`, our ext4 core
//! behind /dev/fuse) side by side in one run with Debian's `fuse2fs` (the
//! e2fsprogs FUSE driver; it does not write the journal) and the kernel's
//! ext4 on a loop mount, on the same image contents:
//!
//! 1. `tar -xf` of a generated 20 000-file tree (nested directories, sizes
//!    mostly 0..16 KiB, some of 16..256 KiB and a few of 1..4 MiB, about
//!    280 MiB) from an archive on tmpfs (/dev/shm) onto the fresh mount. The
//!    time runs until the data is durable: tar, then `umount`, then the FUSE
//!    server's exit (it closes the image on unmount), then an fsync of the
//!    image file — the same end for every peer (`sync -f` would not do:
//!    FUSE over /dev/fuse does not pass syncfs to the server);
//! 2. `find MNT -ls > /dev/null` of that tree, cold: on a fresh mount (new
//!    server process / new loop mount), so no peer has the tree in its
//!    dentry, inode or page cache;
//! 3. a 1 GiB sequential write of non-zero data in 1 MiB `write`s to a new
//!    file, then `fsync` of the file (on the same mount as row 2);
//! 4. a 1 GiB sequential read of that file in 1 MiB `read`s, cold: after a
//!    remount. Each block's stamp (chunk and block number) is checked, and
//!    the whole contents of every 16th chunk (same cost for every peer).
//!
//! "Cold" is about the mount's caches: the image file itself stays in the
//! host's page cache for every peer alike (the servers and the loop device
//! all read it through that cache), so the rows measure the file system
//! stacks, not the disk. Mount and unmount are outside the timed sections
//! except in row 1.
//!
//! Every peer gets a fresh image per run from the same mke2fs command
//! (`common::mkfs`: `mke2fs -q -F -t ext4 -E
//! lazy_itable_init=0,lazy_journal_init=1 IMG 4G`, a sparse file with ext4
//! defaults whose inode tables are zeroed by mke2fs, so that the kernel runs
//! no lazyinit thread in the background of its rows). The table shows the best of `BENCH_RUNS` runs (default 3) per row
//! and peer, and the ratios ours / fuse2fs and ours / kernel (below 1.00x:
//! ours is faster). After the runs `e2fsck -fn` judges our last image.
//!
//! Run (as root) with `cargo bench -p ext4-virtiofsd --bench host_mount`;
//! cargo builds the `ext4-virtiofsd` binary first and the bench runs it from
//! `CARGO_BIN_EXE_ext4-virtiofsd` (target/release/ext4-virtiofsd). The
//! whole bench takes about 5 to 10 minutes, most of it in fuse2fs.
//! Environment: `BENCH_RUNS=N`; `BENCH_PEERS=ours,fuse2fs,kernel` (a
//! subset); `BENCH_CACHE=never|auto|always` is passed to our mount as
//! `--cache` (default: the daemon's default), `BENCH_OURS_ARGS` (split at
//! whitespace, e.g. `--writeback`) too. Without root, /dev/fuse or
//! fuse2fs it prints `SKIPPED: ...` and exits 0; if our binary has no
//! working `mount` subcommand, our column is skipped the same way.
//!
//! Mounts go through `tests/common` (`HostMount`, `Fuse2fsMount` — which
//! runs `fuse2fs -f IMG MNT -o allow_other` —, `KernelMount`); their
//! unmount waits for the server's exit by polling every 20 ms, a bound on
//! the error that this adds to row 1.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Fuse2fsMount, HostMount, KernelMount, Rng, Scratch};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Files in the generated tree.
const FILES: usize = 20_000;
/// Size of the sequential file.
const BIG: u64 = 1 << 30;
/// Write and read size of the sequential rows.
const CHUNK: usize = 1 << 20;

const ROWS: [&str; 4] = [
    "tar -xf 20 000 files, until durable",
    "find -ls of the tree (cold)",
    "1 GiB sequential write + fsync",
    "1 GiB sequential read (cold)",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Ours,
    Fuse2fs,
    Kernel,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Ours => "ours",
            Peer::Fuse2fs => "fuse2fs",
            Peer::Kernel => "kernel",
        }
    }
}

/// The same mke2fs command for every peer: 4 GiB sparse file, ext4
/// defaults; inode tables zeroed now, not by the kernel's lazyinit thread
/// in the background of its rows.
fn mkfs(image: &Path) {
    common::mkfs(image, "4G", &["-t", "ext4", "-E", "lazy_itable_init=0,lazy_journal_init=1"]);
}

/// A directory on tmpfs for the tree and its archive, removed on drop.
struct ShmDir(PathBuf);

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- the tree

/// Writes the tree under `root`: 20 top directories of 10 subdirectories of
/// 4 leaf directories (1 020 directories with files), 18 000 files spread
/// over all levels plus one flat directory of 2 000 files. Sizes: 95 % of
/// 0..16 KiB (skewed small), 5 % of 16..256 KiB, 1 in 1 000 of 1..4 MiB.
/// Returns (directories, files, bytes).
fn build_tree(root: &Path) -> (usize, usize, u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut dirs = Vec::new();
    for a in 0..20 {
        let da = root.join(format!("d{a:02}"));
        dirs.push(da.clone());
        for b in 0..10 {
            let db = da.join(format!("s{b}"));
            dirs.push(db.clone());
            for c in 0..4 {
                dirs.push(db.join(format!("t{c}")));
            }
        }
    }
    let flat = root.join("flat");
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::create_dir_all(&flat).unwrap();
    let ndirs = dirs.len() + 1;
    let mut buf = vec![0u8; 4 << 20];
    let mut bytes = 0u64;
    for i in 0..FILES {
        let path = if i < 2_000 {
            flat.join(format!("entry-{i:05}.o"))
        } else {
            dirs[(i * 7919) % dirs.len()].join(format!("file{i:05}.dat"))
        };
        let size = if i % 1000 == 999 {
            (1 << 20) + rng.below(3 << 20) as usize
        } else if i % 20 == 7 {
            (16 << 10) + rng.below(240 << 10) as usize
        } else {
            let u = rng.below(1 << 16) as usize;
            (u * u) >> 18 // 0..16 KiB, mean about 5 KiB
        };
        rng.fill(&mut buf[..size]);
        std::fs::write(&path, &buf[..size]).unwrap();
        bytes += size as u64;
    }
    (ndirs, FILES, bytes)
}

// --------------------------------------------------------------- mounting

/// Extra arguments for our daemon's `mount` (`--cache MODE` from
/// `BENCH_CACHE`, then `BENCH_OURS_ARGS`).
struct OurArgs(Vec<String>);

enum Mounted {
    Ours(HostMount),
    Fuse2fs(Fuse2fsMount),
    Kernel(KernelMount),
}

fn mount(peer: Peer, ours: &OurArgs, image: &Path, mnt: &Path) -> Result<Mounted, String> {
    Ok(match peer {
        Peer::Ours => {
            let args: Vec<&str> = ours.0.iter().map(|s| s.as_str()).collect();
            Mounted::Ours(HostMount::new(image, mnt, &args)?)
        }
        Peer::Fuse2fs => Mounted::Fuse2fs(Fuse2fsMount::new(image, mnt, "")?),
        Peer::Kernel => Mounted::Kernel(KernelMount::new(image, mnt, "")?),
    })
}

impl Mounted {
    /// Unmounts, waits for a FUSE server to exit with status 0 (having
    /// closed the image), then fsyncs the image file: afterwards everything
    /// written is durable, whoever wrote it.
    fn unmount(self, image: &Path) -> Result<(), String> {
        match self {
            Mounted::Ours(m) => m.unmount()?,
            Mounted::Fuse2fs(m) => m.unmount()?,
            Mounted::Kernel(m) => m.unmount()?,
        }
        std::fs::File::open(image).and_then(|f| f.sync_all()).map_err(|e| format!("fsync of {}: {e}", image.display()))
    }
}

// -------------------------------------------------------------- workloads

/// The 1 MiB chunk number `i` of the sequential file: a random block with
/// the chunk and block numbers stamped into the first bytes of every 4 KiB.
fn stamp(chunk: &mut [u8], i: u64) {
    for (b, blk) in chunk.chunks_mut(4096).enumerate() {
        blk[..8].copy_from_slice(&i.to_le_bytes());
        blk[8..16].copy_from_slice(&(b as u64).to_le_bytes());
    }
}

fn seq_write(path: &Path, base: &[u8]) -> std::io::Result<()> {
    let mut chunk = base.to_vec();
    let mut f = std::fs::File::create(path)?;
    for i in 0..BIG / CHUNK as u64 {
        stamp(&mut chunk, i);
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

fn seq_read(path: &Path, base: &[u8]) -> std::io::Result<()> {
    let mut expect = base.to_vec();
    let mut buf = vec![0u8; CHUNK];
    let mut f = std::fs::File::open(path)?;
    for i in 0..BIG / CHUNK as u64 {
        f.read_exact(&mut buf)?;
        // Every block's stamp; the whole contents of every 16th chunk
        // (comparing all of them would cost the fastest peer ~10 %).
        let good = if i % 16 == 0 {
            stamp(&mut expect, i);
            buf == expect
        } else {
            buf.chunks(4096)
                .enumerate()
                .all(|(b, blk)| blk[..8] == i.to_le_bytes() && blk[8..16] == (b as u64).to_le_bytes())
        };
        if !good {
            return Err(std::io::Error::other(format!("chunk {i} of the 1 GiB file reads back wrong")));
        }
    }
    if f.read(&mut buf)? != 0 {
        return Err(std::io::Error::other("the 1 GiB file is longer than written"));
    }
    Ok(())
}

fn ok(st: std::io::Result<std::process::ExitStatus>, what: &str) -> Result<(), String> {
    match st {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what}: {s}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// One run of the four rows for one peer on a fresh image.
fn run_peer(
    peer: Peer,
    ours: &OurArgs,
    work: &Path,
    archive: &Path,
    base: &[u8],
    check_tree: bool,
) -> Result<[Duration; 4], String> {
    let image = work.join(format!("{}.img", peer.name()));
    let mnt = work.join(format!("mnt-{}", peer.name()));
    mkfs(&image);
    let mut t = [Duration::ZERO; 4];

    let m = mount(peer, ours, &image, &mnt)?;
    let start = Instant::now();
    ok(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&mnt).status(), "tar -xf")?;
    m.unmount(&image)?;
    t[0] = start.elapsed();

    let m = mount(peer, ours, &image, &mnt)?;
    let start = Instant::now();
    ok(Command::new("find").arg(&mnt).arg("-ls").stdout(Stdio::null()).status(), "find -ls")?;
    t[1] = start.elapsed();
    if check_tree {
        // Untimed, first run only: every file's contents, size, mode, owner
        // and mtime against the archive.
        let out = Command::new("tar")
            .arg("--compare")
            .arg("-f")
            .arg(archive)
            .arg("-C")
            .arg(&mnt)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            return Err(format!("tar --compare: {}", text.lines().take(10).collect::<Vec<_>>().join("\n")));
        }
    }

    let big = mnt.join("big");
    let start = Instant::now();
    seq_write(&big, base).map_err(|e| format!("1 GiB write: {e}"))?;
    t[2] = start.elapsed();
    m.unmount(&image)?;

    let m = mount(peer, ours, &image, &mnt)?;
    let start = Instant::now();
    seq_read(&big, base).map_err(|e| format!("1 GiB read: {e}"))?;
    t[3] = start.elapsed();
    m.unmount(&image)?;
    Ok(t)
}

// ------------------------------------------------------------------- main

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    let whole = ms.round() as u64;
    // Thousands separated by a thin space, like the README's figures.
    let s = whole.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    format!("{out} ms")
}

fn main() {
    let t_all = Instant::now();
    let what = "host_mount bench";
    if !Fuse2fsMount::usable_or_skip(what) {
        return; // root, /dev/fuse and fuse2fs: skipped loudly
    }
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let mut peers = vec![Peer::Ours, Peer::Fuse2fs, Peer::Kernel];
    if let Ok(list) = std::env::var("BENCH_PEERS") {
        peers.retain(|p| list.split(',').any(|w| w.trim() == p.name()));
    }
    let mut ours = OurArgs(std::env::var("BENCH_CACHE").map(|c| vec!["--cache".to_string(), c]).unwrap_or_default());
    if let Ok(extra) = std::env::var("BENCH_OURS_ARGS") {
        ours.0.extend(extra.split_whitespace().map(String::from));
    }
    if peers.contains(&Peer::Ours) {
        let bin = env!("CARGO_BIN_EXE_ext4-virtiofsd");
        let help = Command::new(bin).args(["mount", "--help"]).output();
        if !matches!(&help, Ok(o) if o.status.success()) {
            common::skip(&format!("{what}, our column"), &format!("{bin} has no working `mount` subcommand"));
            peers.retain(|p| *p != Peer::Ours);
        }
    }

    // The tree and its archive live on tmpfs; the images in the scratch
    // directory ($TMPDIR, on disk).
    let shm = ShmDir(PathBuf::from(format!("/dev/shm/e4vfs-host-mount-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&shm.0);
    let src = shm.0.join("tree");
    std::fs::create_dir_all(&src).unwrap();
    let (ndirs, nfiles, bytes) = build_tree(&src);
    let archive = shm.0.join("tree.tar");
    common::run(
        Command::new("tar")
            .args(["--sort=name", "--mtime=@1700000000", "--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("."),
    );
    std::fs::remove_dir_all(&src).unwrap();
    let work = Scratch::new("host-mount");
    let mut base = vec![0u8; CHUNK];
    Rng(0x5eed).fill(&mut base);

    println!(
        "host_mount: {nfiles} files in {ndirs} directories, {:.0} MiB (archive {:.0} MiB on /dev/shm); images in {}; best of {runs} runs; peers: {}{}",
        bytes as f64 / (1 << 20) as f64,
        std::fs::metadata(&archive).unwrap().len() as f64 / (1 << 20) as f64,
        work.path.display(),
        peers.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        if ours.0.is_empty() { String::new() } else { format!("; ours with {}", ours.0.join(" ")) }
    );

    let mut best: Vec<Option<[Duration; 4]>> = vec![None; peers.len()];
    let mut our_fsck = None;
    for r in 0..runs {
        for (pi, &peer) in peers.iter().enumerate() {
            let t = run_peer(peer, &ours, &work.path, &archive, &base, r == 0)
                .unwrap_or_else(|e| panic!("{} failed in run {}: {e}", peer.name(), r + 1));
            eprintln!(
                "run {} {:<8} {}",
                r + 1,
                peer.name(),
                t.iter().map(|d| format!("{:>10}", ms(*d))).collect::<Vec<_>>().join(" ")
            );
            let b = best[pi].get_or_insert(t);
            for i in 0..4 {
                b[i] = b[i].min(t[i]);
            }
            let image = work.join(format!("{}.img", peer.name()));
            if peer == Peer::Ours && r == runs - 1 {
                our_fsck = Some(std::panic::catch_unwind(|| common::assert_fsck_clean(&image)).is_ok());
            }
            let _ = std::fs::remove_file(&image);
        }
    }

    let col = |p: Peer| peers.iter().position(|q| *q == p).and_then(|i| best[i]);
    let (o, f, k) = (col(Peer::Ours), col(Peer::Fuse2fs), col(Peer::Kernel));
    let cell = |c: Option<[Duration; 4]>, i: usize| c.map(|t| ms(t[i])).unwrap_or_else(|| "skipped".into());
    let ratio = |a: Option<[Duration; 4]>, b: Option<[Duration; 4]>, i: usize| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a[i].as_secs_f64() / b[i].as_secs_f64()),
        _ => "-".into(),
    };
    println!();
    println!("| workload | ours | fuse2fs | kernel | ours / fuse2fs | ours / kernel |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (i, name) in ROWS.iter().enumerate() {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            cell(o, i),
            cell(f, i),
            cell(k, i),
            ratio(o, f, i),
            ratio(o, k, i)
        );
    }
    println!();
    match our_fsck {
        Some(true) => println!("e2fsck -fn of our image after the last run: clean"),
        Some(false) => println!("e2fsck -fn of our image after the last run: NOT CLEAN (its output is above)"),
        None => println!("e2fsck -fn of our image: not run (our column skipped)"),
    }
    println!("host_mount: total run time {:.0} s", t_all.elapsed().as_secs_f64());
}
