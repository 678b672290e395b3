//! Benchmark through the in-process vhost-user frontend ("a VM without a
//! VM", `vmtests::frontend`): `ext4-virtiofsd serve` on an ext4 image beside
//! virtiofsd 1.14 (the Rust daemon from crates.io) serving a kernel loop
//! mount of a copy of the same image, in one run (issue 10, acceptance 6).
//!
//! The image: `mke2fs -q -F -t ext4 -E lazy_itable_init=0,lazy_journal_init=1
//! -d SRC IMG 1G`, where SRC holds `data`, a 256 MiB file of random bytes.
//! virtiofsd gets `cp --sparse=always` of it, loop-mounted
//! (`mount -o loop`), as its `--shared-dir`.
//!
//! Rows, each with 1 and with 4 request queues (one driver thread per
//! queue, the requests spread over the queues round-robin, [`DEPTH`] in
//! flight on every queue):
//!
//! 1. 20 000 READs of 4 KiB at random 4 KiB-aligned offsets of `data`
//!    (every reply compared with the file's bytes);
//! 2. `data` read sequentially in 1 MiB READs (every 16th compared);
//! 3. 256 MiB written to a new file in 1 MiB WRITEs, then FSYNC: the time
//!    ends when the FSYNC reply is back;
//! 4. 10 000 files in a fresh directory: CREATE, then RELEASE + GETATTR,
//!    then UNLINK + FORGET (in batches of [`DEPTH`] files per queue).
//!
//! virtiofsd 1.14 offers one request queue: its 4-queue rows put the same
//! number of requests in flight (4 × [`DEPTH`]) on that one queue. No guest
//! buffer crosses the seam of the frontend's adjacent memory regions
//! (virtiofsd 1.14 drops such a chain without a reply).
//!
//! Both daemons run with `--cache auto` (the default of both: the cache
//! mode only shapes the replies' timeouts and open flags, as there is no
//! guest kernel here), their default thread pools (ours: one worker per
//! core, at least 2; virtiofsd 1.14: 0, requests handled on each queue's
//! thread) and EVENT_IDX. The image files stay in the host page cache
//! (warm); the best of `BENCH_RUNS` runs (default 3) per row and daemon is
//! printed as a markdown table with the ratio ours / virtiofsd (below 1.00x:
//! ours is faster). A daemon is started per run and queue count.
//!
//! Run with `cargo bench -p vmtests --bench frontend` (as root for the
//! virtiofsd column). Our daemon is built with `cargo build --release`
//! (or taken from `BENCH_OURS_BIN`); virtiofsd from `VIRTIOFSD_BIN`, else
//! `target/vmrig/virtiofsd/bin/virtiofsd`, installed with
//!
//! ```text
//! apt-get install libseccomp-dev libcap-ng-dev
//! cargo install virtiofsd --version 1.14.0 --locked --root target/vmrig/virtiofsd
//! ```
//!
//! `BENCH_PEERS=ours,virtiofsd` and `BENCH_QUEUES=1|4` run a subset;
//! `BENCH_EVENT_IDX=0` leaves EVENT_IDX unnegotiated. `BENCH_OURS_ARGS` and `BENCH_VIRTIOFSD_ARGS` (split at whitespace) are
//! added to the daemons' command lines (e.g. `--thread-pool-size 2`).
//! Without virtiofsd, or without root (loop mount), the virtiofsd column is
//! skipped with a `SKIPPED:` line.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fuse_abi::linux::*;
use testkit::{Rng, Scratch};
use vmtests::frontend::daemon::Daemon;
use vmtests::frontend::{FuseClient, Reply, Request, SessionOptions, Ticket, fuse};

/// Size of the file read and of the file written.
const FILE_SIZE: u64 = 256 << 20;
/// 4 KiB random reads.
const RANDOM_READS: usize = 20_000;
/// Files created, stat'ed and unlinked.
const FILES: usize = 10_000;
/// Requests in flight on every queue.
const DEPTH: usize = 8;
/// Size of the sequential requests.
const CHUNK: u64 = 1 << 20;
/// Request queue counts, one set of rows each.
const QUEUES: [usize; 2] = [1, 4];

const ROWS: [&str; 4] = [
    "4 KiB random reads (20 000)",
    "1 MiB sequential reads, 256 MiB",
    "1 MiB sequential writes, 256 MiB + fsync",
    "create + stat + unlink, 10 000 files",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Ours,
    Virtiofsd,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Ours => "ours",
            Peer::Virtiofsd => "virtiofsd",
        }
    }
}

/// virtiofsd 1.14, or why not.
fn virtiofsd_binary() -> Result<PathBuf, String> {
    let bin = std::env::var_os("VIRTIOFSD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| vmtests::prep::cache_dir().join("virtiofsd/bin/virtiofsd"));
    if !bin.exists() {
        return Err(format!(
            "{} is missing; install it with: apt-get install libseccomp-dev libcap-ng-dev && \
             cargo install virtiofsd --version 1.14.0 --locked --root {} (or set VIRTIOFSD_BIN)",
            bin.display(),
            vmtests::prep::cache_dir().join("virtiofsd").display()
        ));
    }
    let v = Command::new(&bin).arg("--version").output().map_err(|e| format!("{}: {e}", bin.display()))?;
    let v = String::from_utf8_lossy(&v.stdout).trim().to_string();
    if !v.contains("1.14") {
        eprintln!("frontend bench: warning: {} says {v:?}, not 1.14", bin.display());
    }
    Ok(bin)
}

/// The 256 MiB file's contents.
fn data_bytes() -> Vec<u8> {
    let mut v = vec![0; FILE_SIZE as usize];
    Rng(0x5eed_f11e).fill(&mut v);
    v
}

/// The loop mount of virtiofsd's copy; unmounted on drop.
struct LoopMount(PathBuf);

impl LoopMount {
    fn new(image: &Path, mnt: &Path) -> Result<LoopMount, String> {
        std::fs::create_dir_all(mnt).map_err(|e| e.to_string())?;
        let out =
            Command::new("mount").arg("-o").arg("loop").arg(image).arg(mnt).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("mount -o loop: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(LoopMount(mnt.to_path_buf()))
    }

    fn sync(&self) {
        let _ = Command::new("sync").arg("-f").arg(&self.0).status();
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn start_daemon(peer: Peer, bin: &Path, what: &Path, s: &Scratch, queues: usize) -> Daemon {
    let socket = s.join(format!("{}-{queues}.sock", peer.name()));
    let mut cmd = Command::new(bin);
    match peer {
        Peer::Ours => {
            cmd.arg("serve").arg("--image").arg(what).arg("--socket-path").arg(&socket);
            cmd.args(["--tag", "bench", "--cache", "auto", "--log-level", "warn"]);
            cmd.args(["--num-request-queues", &queues.to_string()]);
            if let Ok(extra) = std::env::var("BENCH_OURS_ARGS") {
                cmd.args(extra.split_whitespace());
            }
        }
        Peer::Virtiofsd => {
            cmd.arg("--shared-dir").arg(what).arg("--socket-path").arg(&socket);
            cmd.args(["--sandbox", "none", "--cache", "auto", "--log-level", "warn"]);
            if let Ok(extra) = std::env::var("BENCH_VIRTIOFSD_ARGS") {
                cmd.args(extra.split_whitespace());
            }
        }
    }
    Daemon::start(cmd, &socket, &s.join(format!("{}-{queues}.log", peer.name()))).unwrap_or_else(|e| panic!("{e}"))
}

// -------------------------------------------------------------- the rows

fn unwrap_ok(r: Result<Reply, String>, what: &str) -> Vec<u8> {
    match r {
        Ok(r) => r.ok().unwrap_or_else(|e| panic!("{what}: errno {e}")),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Sends one request per item on `queue` (`req` builds it, or patches
/// one it keeps), keeping up to [`DEPTH`] in flight (waiting for the oldest
/// when the window is full); `check` sees every reply with its item.
fn pipeline<T>(
    c: &FuseClient,
    queue: usize,
    depth: usize,
    items: impl IntoIterator<Item = T>,
    mut req: impl FnMut(&T, &mut dyn FnMut(&Request) -> Ticket) -> Ticket,
    mut check: impl FnMut(T, Vec<u8>),
) {
    let mut window: VecDeque<(Ticket, T)> = VecDeque::with_capacity(depth);
    let mut submit = |r: &Request| c.submit(queue, r).unwrap_or_else(|e| panic!("{e}"));
    for it in items {
        if window.len() == depth {
            let (t, done) = window.pop_front().unwrap();
            check(done, unwrap_ok(c.wait(t), "request"));
        }
        let t = req(&it, &mut submit);
        window.push_back((t, it));
    }
    for (t, done) in window {
        check(done, unwrap_ok(c.wait(t), "request"));
    }
}

/// Runs `f(queue)` on one thread per request queue; the elapsed time.
fn on_every_queue(c: &FuseClient, f: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for q in 1..=c.request_queues() {
            let f = &f;
            s.spawn(move || f(q));
        }
    });
    start.elapsed()
}

fn entry_of(b: &[u8]) -> fuse_entry_out {
    fuse::parse(b).expect("entry")
}

fn open_of(b: &[u8]) -> u64 {
    fuse::parse::<fuse_open_out>(&b[std::mem::size_of::<fuse_entry_out>()..]).expect("open_out").fh
}

/// The four rows on a connected, initialised client, `depth` requests in
/// flight on each of its request queues.
fn rows(c: &FuseClient, data: &[u8], run: usize, depth: usize) -> [Duration; 4] {
    let nq = c.request_queues();
    let mut t = [Duration::ZERO; 4];
    let e = c.lookup(FUSE_ROOT_ID, "data").expect("lookup data");
    assert_eq!(e.attr.size, FILE_SIZE);
    let fh = c.open(e.nodeid, libc::O_RDONLY).expect("open data");

    // 1. 4 KiB random reads.
    let blocks = FILE_SIZE / 4096;
    t[0] = on_every_queue(c, |q| {
        let mut rng = Rng(0xbeef ^ (q as u64) << 32 ^ run as u64);
        let n = RANDOM_READS / nq + usize::from(q <= RANDOM_READS % nq);
        let offs: Vec<u64> = (0..n).map(|_| rng.below(blocks) * 4096).collect();
        pipeline(
            c,
            q,
            depth,
            offs,
            |&o, send| send(&fuse::read(e.nodeid, fh, o, 4096)),
            |o, b| assert!(b == data[o as usize..o as usize + 4096], "random read at {o}: wrong bytes"),
        );
    });

    // 2. 1 MiB sequential reads.
    let chunks = FILE_SIZE / CHUNK;
    t[1] = on_every_queue(c, |q| {
        let mine = (0..chunks).filter(|i| (i % nq as u64) as usize == q - 1);
        pipeline(
            c,
            q,
            depth,
            mine,
            |&i, send| send(&fuse::read(e.nodeid, fh, i * CHUNK, CHUNK as u32)),
            |i, b| {
                assert_eq!(b.len() as u64, CHUNK, "sequential read of chunk {i}");
                if i % 16 == 0 {
                    let o = (i * CHUNK) as usize;
                    assert!(b == data[o..o + CHUNK as usize], "sequential read of chunk {i}: wrong bytes");
                }
            },
        );
    });
    c.release(e.nodeid, fh).expect("release data");

    // 3. 1 MiB sequential writes + fsync.
    let name = format!("w{run}");
    let (we, wfh) = c.create(FUSE_ROOT_ID, &name, 0o644).expect("create the written file");
    let mut chunk = data[..CHUNK as usize].to_vec();
    chunk[..8].copy_from_slice(&(run as u64).to_le_bytes());
    let template = fuse::write(we.nodeid, wfh, 0, &chunk);
    let start = Instant::now();
    on_every_queue(c, |q| {
        let mine = (0..chunks).filter(|i| (i % nq as u64) as usize == q - 1);
        // One request whose offset is patched: no 1 MiB copy per request
        // on the frontend's side beyond the one into guest memory.
        let mut req = template.clone();
        pipeline(
            c,
            q,
            depth,
            mine,
            |&i, send| {
                req.args[8..16].copy_from_slice(&(i * CHUNK).to_le_bytes());
                send(&req)
            },
            |i, b| {
                let w: fuse_write_out = fuse::parse(&b).expect("write_out");
                assert_eq!(w.size as u64, CHUNK, "write of chunk {i}");
            },
        );
    });
    unwrap_ok(c.call_on(1, &fuse::fsync(we.nodeid, wfh, false)), "fsync");
    t[2] = start.elapsed();
    assert_eq!(c.getattr(we.nodeid).expect("getattr of the written file").size, FILE_SIZE);
    c.release(we.nodeid, wfh).expect("release the written file");
    assert_eq!(c.call(&fuse::unlink(FUSE_ROOT_ID, &name, false)).errno, 0, "unlink {name}");
    c.submit(1, &fuse::forget(we.nodeid, 1)).expect("forget");

    // 4. create + stat + unlink.
    let dname = format!("d{run}");
    let d = entry_of(&c.ok(&fuse::mkdir(FUSE_ROOT_ID, &dname, 0o755)).expect("mkdir")).nodeid;
    t[3] = on_every_queue(c, |q| {
        let mine: Vec<usize> = (0..FILES).filter(|i| i % nq == q - 1).collect();
        for batch in mine.chunks(depth) {
            let names: Vec<String> = batch.iter().map(|i| format!("file-{i:05}")).collect();
            let creates: Vec<Ticket> = names
                .iter()
                .map(|n| {
                    let r = fuse::create(d, n, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o644);
                    c.submit(q, &r).unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            let files: Vec<(u64, u64)> = creates
                .into_iter()
                .map(|t| {
                    let b = unwrap_ok(c.wait(t), "create");
                    (entry_of(&b).nodeid, open_of(&b))
                })
                .collect();
            let mut tickets = Vec::with_capacity(2 * depth);
            for &(n, fh) in &files {
                tickets.push(c.submit(q, &fuse::release(n, fh, false)).unwrap_or_else(|e| panic!("{e}")));
                tickets.push(c.submit(q, &fuse::getattr(n)).unwrap_or_else(|e| panic!("{e}")));
            }
            for t in tickets.drain(..) {
                unwrap_ok(c.wait(t), "release / getattr");
            }
            for (nm, &(n, _)) in names.iter().zip(&files) {
                tickets.push(c.submit(q, &fuse::unlink(d, nm, false)).unwrap_or_else(|e| panic!("{e}")));
                tickets.push(c.submit(q, &fuse::forget(n, 1)).unwrap_or_else(|e| panic!("{e}")));
            }
            for t in tickets {
                unwrap_ok(c.wait(t), "unlink / forget");
            }
        }
    });
    assert_eq!(c.call(&fuse::unlink(FUSE_ROOT_ID, &dname, true)).errno, 0, "rmdir {dname}");
    c.submit(1, &fuse::forget(d, 1)).expect("forget");
    t
}

/// One daemon, one queue count: start, connect, INIT, the rows, stop.
fn one(peer: Peer, bin: &Path, what: &Path, s: &Scratch, queues: usize, data: &[u8], run: usize) -> [Duration; 4] {
    let mut d = start_daemon(peer, bin, what, s, queues);
    let event_idx = std::env::var("BENCH_EVENT_IDX").map_or(true, |v| v != "0");
    let opts = SessionOptions { request_queues: queues, queue_size: 256, event_idx, ..Default::default() };
    let c = FuseClient::connect(&d.socket, &opts).unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    // No buffer across the seam of guest regions 0 and 1 (the frontend's
    // test layout): virtiofsd 1.14 drops a chain with such a descriptor
    // without a reply. Reserved for the session's life.
    let seam = c.session.ram.seam();
    c.session.ram.alloc_at(seam - 4096, 8192).expect("the seam is free before the first request");
    // A daemon that offers fewer request queues (virtiofsd 1.14 offers
    // one) gets the same number of requests in flight on those it has.
    let got = c.request_queues();
    assert!(got >= 1 && queues % got == 0, "{}: {queues} request queues asked, {got} set up", peer.name());
    let depth = DEPTH * queues / got;
    let init = c.init().unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    if run == 0 {
        eprintln!(
            "{}: {got} request queue(s) for {queues} asked, {depth} in flight on each; INIT max_write {}, \
             flags {:#x}",
            peer.name(),
            init.max_write,
            init.flags
        );
    }
    let t = rows(&c, data, run, depth);
    drop(c);
    let (st, signalled) = d.stop(Duration::from_secs(60));
    if signalled || !st.is_some_and(|s| s.success()) {
        eprintln!("{}: daemon ended with {st:?} (signalled: {signalled})\n{}", peer.name(), d.log_text());
    }
    t
}

fn ms(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 { format!("{} {:03} ms", ms / 1000, ms % 1000) } else { format!("{ms} ms") }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list / libtest probing: nothing to list
    }
    let t_all = Instant::now();
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let s = Scratch::new("febench");
    let data = data_bytes();
    let image = vmtests::bench_image::one_file_image(&s, "ours.img", &data);
    let ours = vmtests::frontend::daemon::ext4_virtiofsd_release_binary();

    let mut peers = vec![(Peer::Ours, ours, image.clone(), None)];
    let theirs = (|| {
        if !testkit::is_root() {
            return Err("the loop mount for virtiofsd needs root".to_string());
        }
        let bin = virtiofsd_binary()?;
        let copy = s.join("theirs.img");
        testkit::run(Command::new("cp").arg("--sparse=always").arg(&image).arg(&copy));
        let mnt = s.join("mnt");
        let m = LoopMount::new(&copy, &mnt)?;
        Ok((bin, mnt, m))
    })();
    match theirs {
        Ok((bin, mnt, m)) => peers.push((Peer::Virtiofsd, bin, mnt, Some(m))),
        Err(why) => testkit::skip("frontend bench: the virtiofsd column", &why),
    }
    println!(
        "frontend bench: {runs} run(s); 256 MiB file on a 1 GiB image; {DEPTH} requests in flight per queue; \
         peers: {}",
        peers.iter().map(|p| p.0.name()).collect::<Vec<_>>().join(", ")
    );

    // best[peer][queue set][row]
    let only_queues: Option<usize> = std::env::var("BENCH_QUEUES").ok().and_then(|s| s.parse().ok());
    let only_peer = std::env::var("BENCH_PEERS").ok();
    let mut best: Vec<Vec<Option<[Duration; 4]>>> = vec![vec![None; QUEUES.len()]; 2];
    for run in 0..runs {
        for (qi, &queues) in QUEUES.iter().enumerate() {
            if only_queues.is_some_and(|q| q != queues) {
                continue;
            }
            for (peer, bin, what, m) in &peers {
                if only_peer.as_deref().is_some_and(|p| !p.split(',').any(|p| p == peer.name())) {
                    continue;
                }
                let t = one(*peer, bin, what, &s, queues, &data, run);
                if let Some(m) = m {
                    m.sync();
                }
                eprintln!(
                    "run {} {queues} queue(s) {}: {}",
                    run + 1,
                    peer.name(),
                    t.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
                );
                let slot = &mut best[*peer as usize][qi];
                *slot = Some(match *slot {
                    None => t,
                    Some(b) => std::array::from_fn(|i| b[i].min(t[i])),
                });
            }
        }
    }
    drop(peers);
    let (ok, text) = testkit::fsck(&image);
    println!();
    println!("| row | queues | ours | virtiofsd | ours / virtiofsd |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (i, row) in ROWS.iter().enumerate() {
        for (qi, queues) in QUEUES.iter().enumerate() {
            let o = best[Peer::Ours as usize][qi].map(|t| t[i]);
            let v = best[Peer::Virtiofsd as usize][qi].map(|t| t[i]);
            let cell = |x: Option<Duration>| x.map(ms).unwrap_or_else(|| "skipped".into());
            let ratio = match (o, v) {
                (Some(o), Some(v)) => format!("{:.2}x", o.as_secs_f64() / v.as_secs_f64()),
                _ => "-".into(),
            };
            println!("| {row} | {queues} | {} | {} | {ratio} |", cell(o), cell(v));
        }
    }
    println!();
    if ok {
        println!("e2fsck -fn of our image after the runs: clean");
    } else {
        println!("e2fsck -fn of our image after the runs: NOT CLEAN\n{text}");
    }
    println!("frontend bench: total run time {:.0} s", t_all.elapsed().as_secs_f64());
}
