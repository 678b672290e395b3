//! Issue 10's acceptance 1, 3 and 4 through the in-process frontend ("a VM
//! without a VM") against `ext4-virtiofsd serve`:
//!
//! - `tree_and_every_operation`: an image made by `mke2fs -d` from a
//!   generated tree reads back equal to the tree (READDIRPLUS, LOOKUP,
//!   GETATTR, OPEN/READ, READLINK); then every operation of the list;
//!   the daemon exits 0 when the frontend leaves; e2fsck clean; debugfs
//!   reads what was written.
//! - `four_queues_sixteen_in_flight_model`: 4 request queues, 16 requests
//!   in flight on each, writes interleaved record by record on shared files
//!   and namespace operations in a shared directory: the result equals a
//!   model; e2fsck clean.
//! - `hostile_guest`: bad descriptor chains, avail index jumps, node ids
//!   never looked up, lying headers, a flood on every queue: error replies
//!   or dropped chains, the daemon keeps answering, nothing written outside
//!   the writable descriptors, the image clean.
//! - `reconnect_and_second_daemon_refused`: frontend A writes and leaves,
//!   frontend B sees A's data (with `--keep-running`, and across a
//!   restart); the image is clean after each disconnect; a second daemon on
//!   the served image is refused.
//!
//! Every wait for a reply is bounded by the client's hang guard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fuse_abi::linux::*;
use testkit::{Rng, Scratch};
use vmtests::frontend::daemon::{Daemon, ext4_serve, ext4_virtiofsd_binary};
use vmtests::frontend::{ChainShape, FuseClient, SessionOptions, fuse};

const TAG: &str = "ext4fe";

/// What a generated tree holds, by relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

/// A seeded tree of dirs, files (empty, inline-sized, one block, many
/// blocks) and symlinks, written under `root`.
fn make_tree(root: &Path, seed: u64) -> BTreeMap<String, Node> {
    let mut rng = Rng(seed);
    let mut tree = BTreeMap::new();
    let mut dirs = vec![String::new()];
    for i in 0..60 {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let name = format!("{}n{i}", if parent.is_empty() { String::new() } else { format!("{parent}/") });
        match rng.below(10) {
            0..=1 => {
                std::fs::create_dir(root.join(&name)).unwrap();
                dirs.push(name.clone());
                tree.insert(name, Node::Dir);
            }
            2 => {
                let target = format!("target-{}", "t".repeat(rng.below(100) as usize));
                std::os::unix::fs::symlink(&target, root.join(&name)).unwrap();
                tree.insert(name, Node::Symlink(target));
            }
            k => {
                let len = match k {
                    3 => 0,
                    4..=5 => rng.below(60),
                    6..=7 => rng.below(5000),
                    _ => rng.below(300_000),
                } as usize;
                let mut data = vec![0; len];
                rng.fill(&mut data);
                std::fs::write(root.join(&name), &data).unwrap();
                tree.insert(name, Node::File(data));
            }
        }
    }
    tree
}

/// An image of 64 MiB made by `mke2fs -d tree` (inline_data, metadata_csum).
fn make_image(s: &Scratch, seed: u64) -> (PathBuf, BTreeMap<String, Node>) {
    let tree_dir = s.join("tree");
    std::fs::create_dir(&tree_dir).unwrap();
    let tree = make_tree(&tree_dir, seed);
    let image = s.join("fs.img");
    testkit::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data,metadata_csum", "-d"])
            .arg(&tree_dir)
            .arg(&image)
            .arg("64M"),
    );
    (image, tree)
}

fn start(bin: &Path, image: &Path, s: &Scratch, name: &str, queues: usize, keep: bool) -> Daemon {
    let socket = s.join(format!("{name}.sock"));
    Daemon::start(ext4_serve(bin, image, &socket, TAG, queues, keep), &socket, &s.join(format!("{name}.log")))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn connect(d: &Daemon, queues: usize) -> FuseClient {
    let opts = SessionOptions { request_queues: queues, queue_size: 256, event_idx: true, ..Default::default() };
    let c = FuseClient::connect(&d.socket, &opts).unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    let cfg = c.session.negotiated.config.clone().expect("ext4-virtiofsd answers GET_CONFIG");
    assert_eq!(cfg.tag, TAG);
    assert_eq!(cfg.num_request_queues as usize, queues);
    assert_eq!(c.request_queues(), queues, "negotiated {:?}", c.session.negotiated);
    c.init().unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    c
}

/// Disconnects, waits for the daemon to exit by itself (no --keep-running)
/// and checks it exited 0.
fn finish(c: FuseClient, mut d: Daemon) {
    drop(c);
    let (st, signalled) = d.stop(Duration::from_secs(60));
    assert!(!signalled && st.is_some_and(|s| s.success()), "daemon did not exit 0 by itself: {st:?}\n{}", d.log_text());
}

fn pattern(tag: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    Rng(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).fill(&mut v);
    v
}

/// Walks the served tree through READDIRPLUS / LOOKUP / READ / READLINK.
fn walk(c: &FuseClient, node: u64, prefix: &str, out: &mut BTreeMap<String, Node>) {
    for d in c.readdir_all(node, true).unwrap() {
        if d.name == "." || d.name == ".." || (prefix.is_empty() && d.name == "lost+found") {
            continue;
        }
        let path = if prefix.is_empty() { d.name.clone() } else { format!("{prefix}/{}", d.name) };
        let e = c.lookup(node, &d.name).unwrap();
        if let Some(pe) = d.entry {
            assert_eq!(pe.nodeid, e.nodeid, "{path}: READDIRPLUS and LOOKUP disagree");
            assert_eq!(pe.attr.mode, e.attr.mode, "{path}");
        }
        let a = c.getattr(e.nodeid).unwrap();
        assert_eq!(a.ino, e.attr.ino);
        match a.mode & libc::S_IFMT {
            libc::S_IFDIR => {
                out.insert(path.clone(), Node::Dir);
                walk(c, e.nodeid, &path, out);
            }
            libc::S_IFLNK => {
                let t = c.ok(&fuse::readlink(e.nodeid)).unwrap();
                out.insert(path, Node::Symlink(String::from_utf8(t).unwrap()));
            }
            libc::S_IFREG => {
                let fh = c.open(e.nodeid, libc::O_RDONLY).unwrap();
                let data = c.read_all(e.nodeid, fh, 128 << 10).unwrap();
                assert_eq!(data.len() as u64, a.size, "{path}: size");
                c.release(e.nodeid, fh).unwrap();
                out.insert(path, Node::File(data));
            }
            m => panic!("{path}: unexpected mode {m:o}"),
        }
    }
}

fn debugfs_cat(image: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("debugfs").args(["-R", &format!("cat /{path}")]).arg(image).output().unwrap();
    out.stdout
}

#[test]
fn tree_and_every_operation() {
    let s = Scratch::new("fe-ext4-tree");
    let (image, tree) = make_image(&s, 10);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", 1, false);
    let c = connect(&d, 1);

    let mut seen = BTreeMap::new();
    walk(&c, FUSE_ROOT_ID, "", &mut seen);
    assert_eq!(seen.len(), tree.len());
    for (p, n) in &tree {
        assert_eq!(seen.get(p), Some(n), "{p} differs from the tree");
    }

    // Every operation, payloads split and straddling the region seam.
    *c.shape.lock().unwrap() = ChainShape { max_seg: 16 << 10, spacing: 64, straddle: true, indirect: false };
    let dir =
        c.ok(&fuse::mkdir(FUSE_ROOT_ID, "new", 0o755)).map(|b| fuse::parse::<fuse_entry_out>(&b).unwrap()).unwrap();
    assert_eq!(dir.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    let (f, fh) = c.create(dir.nodeid, "f", 0o644).unwrap();
    let data = pattern(7, 200_000);
    assert_eq!(c.write(f.nodeid, fh, 0, &data[..100_000]).unwrap(), 100_000);
    assert_eq!(c.write(f.nodeid, fh, 100_000, &data[100_000..]).unwrap(), 100_000);
    assert_eq!(c.read_all(f.nodeid, fh, 60_000).unwrap(), data);
    assert_eq!(c.getattr(f.nodeid).unwrap().size, 200_000);
    // FALLOCATE past the end (size grows), then the hole after it for LSEEK.
    assert_eq!(c.call(&fuse::fallocate(f.nodeid, fh, 0, 1 << 20, 0)).errno, 0);
    assert_eq!(c.getattr(f.nodeid).unwrap().size, 1 << 20);
    assert_eq!(c.write(f.nodeid, fh, 3 << 20, b"tail").unwrap(), 4);
    let seek = |off: u64, whence: i32| {
        c.ok(&fuse::lseek(f.nodeid, fh, off, whence as u32)).map(|b| fuse::parse::<fuse_lseek_out>(&b).unwrap().offset)
    };
    assert_eq!(seek(0, libc::SEEK_DATA), Ok(0));
    let hole = seek(0, libc::SEEK_HOLE).unwrap();
    assert!((200_000..=3 << 20).contains(&hole), "SEEK_HOLE {hole}");
    assert_eq!(seek((2 << 20) + 5, libc::SEEK_DATA), Ok(3 << 20), "SEEK_DATA to the tail block");
    assert_eq!(c.call(&fuse::fsync(f.nodeid, fh, false)).errno, 0);
    assert_eq!(c.call(&fuse::setxattr(f.nodeid, "user.colour", b"blue", 0)).errno, 0);
    assert_eq!(c.ok(&fuse::getxattr(f.nodeid, "user.colour", 64)).unwrap(), b"blue");
    let size = fuse::parse::<fuse_getxattr_out>(&c.ok(&fuse::getxattr(f.nodeid, "user.colour", 0)).unwrap()).unwrap();
    assert_eq!(size.size, 4);
    let l = c
        .ok(&fuse::link(f.nodeid, FUSE_ROOT_ID, "f-link"))
        .map(|b| fuse::parse::<fuse_entry_out>(&b).unwrap())
        .unwrap();
    assert_eq!((l.nodeid, l.attr.nlink), (f.nodeid, 2));
    let sl = c.ok(&fuse::symlink(dir.nodeid, "s", "f")).map(|b| fuse::parse::<fuse_entry_out>(&b).unwrap()).unwrap();
    assert_eq!(c.ok(&fuse::readlink(sl.nodeid)).unwrap(), b"f");
    assert_eq!(c.call(&fuse::rename(FUSE_ROOT_ID, "f-link", dir.nodeid, "g")).errno, 0);
    assert_eq!(c.lookup(FUSE_ROOT_ID, "f-link").unwrap_err(), libc::ENOENT);
    assert_eq!(c.lookup(dir.nodeid, "g").unwrap().nodeid, f.nodeid);
    let (tmp, tfh) = c.create(dir.nodeid, "tmp", 0o600).unwrap();
    c.release(tmp.nodeid, tfh).unwrap();
    assert_eq!(c.call(&fuse::unlink(dir.nodeid, "tmp", false)).errno, 0);
    assert_eq!(c.lookup(dir.nodeid, "tmp").unwrap_err(), libc::ENOENT);
    assert_eq!(c.call(&fuse::mkdir(dir.nodeid, "sub", 0o700)).errno, 0);
    assert_eq!(c.call(&fuse::unlink(dir.nodeid, "sub", true)).errno, 0);
    let st = fuse::parse::<fuse_statfs_out>(&c.ok(&fuse::statfs(FUSE_ROOT_ID)).unwrap()).unwrap().st;
    assert_eq!(st.bsize, 4096);
    // The total leaves out the metadata overhead, as the kernel's ext4 reports it.
    assert!(st.blocks < 16384 && st.bfree > 0 && st.bfree < st.blocks, "statfs {st:?}");
    // An existing tree file, overwritten in the middle.
    let (path, old) = tree
        .iter()
        .find_map(|(p, n)| match n {
            Node::File(d) if d.len() > 10_000 => Some((p.clone(), d.clone())),
            _ => None,
        })
        .expect("a big file in the tree");
    let mut node = FUSE_ROOT_ID;
    for part in path.split('/') {
        node = c.lookup(node, part).unwrap().nodeid;
    }
    let ofh = c.open(node, libc::O_RDWR).unwrap();
    assert_eq!(c.write(node, ofh, 5000, b"OVERWRITTEN").unwrap(), 11);
    c.release(node, ofh).unwrap();
    c.release(f.nodeid, fh).unwrap();
    let names: Vec<_> = c.readdir_all(dir.nodeid, false).unwrap().into_iter().map(|d| d.name).collect();
    let mut names: Vec<_> = names.into_iter().filter(|n| n != "." && n != "..").collect();
    names.sort();
    assert_eq!(names, ["f", "g", "s"]);
    assert!(c.call_on(1, &fuse::forget(f.nodeid, 1)).is_ok());
    assert_eq!(c.call(&fuse::destroy()).errno, 0);
    finish(c, d);

    testkit::assert_fsck_clean(&image);
    let mut want = data.clone();
    want.resize(3 << 20, 0);
    want.extend_from_slice(b"tail");
    assert!(debugfs_cat(&image, "new/g") == want, "debugfs reads another new/g");
    let mut old = old;
    old[5000..5011].copy_from_slice(b"OVERWRITTEN");
    assert!(debugfs_cat(&image, &path) == old, "debugfs reads another {path}");
}

/// Record size of the model test: four queues' records share every block.
const REC: usize = 1000;
const RECS: usize = 64;
const FILES: usize = 4;

#[test]
fn four_queues_sixteen_in_flight_model() {
    let s = Scratch::new("fe-ext4-model");
    let (image, _) = make_image(&s, 11);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", 4, false);
    let c = connect(&d, 4);
    let files: Vec<(u64, u64)> = (0..FILES)
        .map(|k| {
            let (e, fh) = c.create(FUSE_ROOT_ID, &format!("shared{k}"), 0o644).unwrap();
            (e.nodeid, fh)
        })
        .collect();
    let ns = c
        .ok(&fuse::mkdir(FUSE_ROOT_ID, "ns", 0o755))
        .map(|b| fuse::parse::<fuse_entry_out>(&b).unwrap())
        .unwrap()
        .nodeid;

    // Each queue owns the records r with r % 4 == q - 1 of every shared
    // file; a batch of 16 requests touches distinct records and names, so
    // the result does not depend on the order in which the daemon runs a
    // batch, only on what each queue sent.
    type Model = (BTreeMap<(usize, usize), Vec<u8>>, std::collections::BTreeSet<String>);
    let models: Vec<Model> = std::thread::scope(|sc| {
        let hs: Vec<_> = (1..=4usize)
            .map(|q| {
                let (c, files) = (&c, &files);
                sc.spawn(move || {
                    let mut rng = Rng(1000 + q as u64);
                    let mut recs: BTreeMap<(usize, usize), Vec<u8>> = BTreeMap::new();
                    let mut names = std::collections::BTreeSet::new();
                    let mut max_inflight = 0;
                    for round in 0..25 {
                        let mut batch = Vec::new();
                        let mut used = std::collections::BTreeSet::new();
                        // 10 writes of distinct records.
                        while batch.len() < 10 {
                            let k = rng.below(FILES as u64) as usize;
                            let r = (rng.below((RECS / 4) as u64) as usize) * 4 + (q - 1);
                            if !used.insert((k, r)) {
                                continue;
                            }
                            let data = pattern((q * 1_000_000 + round * 100 + batch.len()) as u64, REC);
                            let (n, fh) = files[k];
                            let t = c.submit(q, &fuse::write(n, fh, (r * REC) as u64, &data)).unwrap();
                            recs.insert((k, r), data);
                            batch.push((t, None));
                        }
                        // 3 reads of records written in earlier rounds (not this one).
                        let old: Vec<_> =
                            recs.iter().filter(|(kr, _)| !used.contains(*kr)).map(|(kr, d)| (*kr, d.clone())).collect();
                        for _ in 0..3 {
                            if old.is_empty() {
                                break;
                            }
                            let ((k, r), want) = old[rng.below(old.len() as u64) as usize].clone();
                            let (n, fh) = files[k];
                            batch.push((
                                c.submit(q, &fuse::read(n, fh, (r * REC) as u64, REC as u32)).unwrap(),
                                Some(want),
                            ));
                        }
                        // Namespace: a new symlink, a rename and an unlink of older names.
                        let name = format!("q{q}-r{round}");
                        batch.push((c.submit(q, &fuse::symlink(ns, &name, "target")).unwrap(), None));
                        let mut olds: Vec<String> = names.iter().cloned().collect();
                        if let Some(o) = olds.pop().filter(|o: &String| !o.ends_with("-mv")) {
                            batch.push((c.submit(q, &fuse::rename(ns, &o, ns, &format!("{o}-mv"))).unwrap(), None));
                            names.remove(&o);
                            names.insert(format!("{o}-mv"));
                        }
                        if olds.len() > 3 {
                            let o = olds[rng.below(olds.len() as u64) as usize].clone();
                            batch.push((c.submit(q, &fuse::unlink(ns, &o, false)).unwrap(), None));
                            names.remove(&o);
                        }
                        names.insert(name);
                        while batch.len() < 16 {
                            batch.push((c.submit(q, &fuse::getattr(files[batch.len() % FILES].0)).unwrap(), None));
                        }
                        max_inflight = max_inflight.max(c.in_flight(q));
                        for (t, want) in batch {
                            let r = c.wait(t).unwrap_or_else(|e| panic!("queue {q}: {e}"));
                            assert_eq!(r.errno, 0, "queue {q} round {round}: opcode {} failed", r.opcode);
                            if let Some(w) = want {
                                assert!(r.body == w, "queue {q} round {round}: a read returned other bytes");
                            }
                        }
                    }
                    eprintln!("queue {q}: up to {max_inflight} requests in flight");
                    (recs, names)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // The model: every record's last data, zeros elsewhere up to the
    // highest record written; the names every queue left.
    let mut want_files = vec![Vec::new(); FILES];
    let mut want_names = std::collections::BTreeSet::new();
    for (recs, names) in &models {
        for ((k, r), data) in recs {
            let f: &mut Vec<u8> = &mut want_files[*k];
            if f.len() < (r + 1) * REC {
                f.resize((r + 1) * REC, 0);
            }
            f[r * REC..(r + 1) * REC].copy_from_slice(data);
        }
        want_names.extend(names.iter().cloned());
    }
    for (k, &(n, fh)) in files.iter().enumerate() {
        assert!(c.read_all(n, fh, 32 << 10).unwrap() == want_files[k], "shared{k} differs from the model");
        c.release(n, fh).unwrap();
    }
    let got: std::collections::BTreeSet<String> =
        c.readdir_all(ns, true).unwrap().into_iter().map(|d| d.name).filter(|n| n != "." && n != "..").collect();
    assert_eq!(got, want_names);
    finish(c, d);
    testkit::assert_fsck_clean(&image);
    for (k, want) in want_files.iter().enumerate() {
        assert!(debugfs_cat(&image, &format!("shared{k}")) == *want, "debugfs: shared{k} differs from the model");
    }
}

use vmtests::frontend::virtq::{F_INDIRECT, F_NEXT, F_WRITE};
use vmtests::frontend::{GuestRam, RawDesc, SplitQueue};

/// Canary bytes around hostile chains: nothing but the writable
/// descriptors' ranges may change.
const CANARY: u8 = 0x5a;
const ARENA: u64 = 64 << 10;

/// A valid GETATTR header (with its argument) for raw chains.
fn getattr_bytes(unique: u64, node: u64) -> Vec<u8> {
    fuse::getattr(node).head_bytes(unique)
}

/// How a raw chain is published: its head in the next ring slot, or a
/// bare available index.
enum Post {
    Head(u16),
    Idx(u16),
}

struct Hostile<'a> {
    c: &'a FuseClient,
    d: Daemon,
    arena: u64,
    log: Vec<String>,
}

impl Hostile<'_> {
    /// Posts a raw chain on queue `q`: `build` gets the ring, guest memory,
    /// the arena's address and `n` free descriptor indexes, writes the
    /// descriptors and returns the guest ranges the device may write and how
    /// to publish the chain (done after a snapshot of the arena). Then: a used element within 3 s or none (a dropped chain),
    /// the arena intact outside those ranges, the daemon alive and answering
    /// a normal request on queue `check_q`.
    fn case(
        &mut self,
        name: &str,
        q: usize,
        n: usize,
        check_q: usize,
        build: impl FnOnce(&mut SplitQueue, &GuestRam, u64, &[u16]) -> (Vec<(u64, u64)>, Post),
    ) {
        let ram = &self.c.session.ram;
        ram.write(self.arena, &vec![CANARY; ARENA as usize]);
        let mut before = Vec::new();
        let writable = self.c.with_queue(q, |sq, ram| {
            let idx = sq.take_descs(n).expect("free descriptors");
            let (w, post) = build(sq, ram, self.arena, &idx);
            before = ram.read(self.arena, ARENA as usize);
            match post {
                Post::Head(h) => sq.push_avail(ram, h),
                Post::Idx(i) => sq.set_avail_idx(ram, i),
            }
            sq.kick();
            w
        });
        let used = self.c.take_stray(q, 1, Duration::from_secs(3));
        let mut outcome = match used.first() {
            None => "dropped (no used element)".to_string(),
            Some(u) if u.len == 0 => format!("used, nothing written (head {})", u.id),
            Some(u) => format!("used, {} bytes written", u.len),
        };
        if let (Some(u), [(w, _), ..]) = (used.first(), writable.as_slice()) {
            if u.len as usize >= fuse::OUT_HEADER {
                let h = fuse::parse::<fuse_out_header>(&ram.read(*w, 16)).unwrap();
                outcome += &format!(", reply error {}", h.error);
            }
        }
        let now = ram.read(self.arena, ARENA as usize);
        for (i, &b) in now.iter().enumerate() {
            let a = self.arena + i as u64;
            if b != before[i] && !writable.iter().any(|&(s, l)| a >= s && a < s + l) {
                panic!("{name}: the daemon wrote guest byte {a:#x} outside the chain's writable descriptors");
            }
        }
        assert!(self.d.running(), "{name}: the daemon died:\n{}", self.d.log_text());
        let r = self.c.call_on(check_q, &fuse::getattr(FUSE_ROOT_ID));
        let r =
            r.unwrap_or_else(|e| panic!("{name}: no answer to a normal request after it: {e}\n{}", self.d.log_text()));
        assert_eq!(r.errno, 0, "{name}: GETATTR of the root after it failed");
        self.log.push(format!("{name}: {outcome}"));
    }
}

#[test]
fn hostile_guest() {
    let s = Scratch::new("fe-ext4-hostile");
    let (image, tree) = make_image(&s, 12);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", 4, true);
    let mut c = connect(&d, 4);
    // Still a hang guard: a normal request takes milliseconds.
    c.hang_guard = Duration::from_secs(30);
    let (victim, vfh) = c.create(FUSE_ROOT_ID, "victim", 0o644).unwrap();
    let vdata = pattern(99, 10_000);
    c.write(victim.nodeid, vfh, 0, &vdata).unwrap();
    let arena = c.session.ram.alloc(ARENA, 4096).unwrap().addr;
    let (gap, _) = c.session.ram.gap();
    let end = c.session.ram.end();
    let mut h = Hostile { c: &c, d, arena, log: Vec::new() };
    let hdr = |ram: &GuestRam, at: u64, node: u64| {
        let b = getattr_bytes(1 << 40, node);
        ram.write(at, &b);
        b.len() as u32
    };

    // Addresses outside guest memory.
    for (name, addr) in
        [("header in the gap", gap + 64), ("header past the end", end + 4096), ("header at 2^63", 1 << 63)]
    {
        h.case(name, 1, 2, 1, |sq, ram, a, i| {
            sq.write_desc(ram, i[0], RawDesc { addr, len: 56, flags: F_NEXT, next: i[1] });
            sq.write_desc(ram, i[1], RawDesc { addr: a, len: 256, flags: F_WRITE, next: 0 });
            (vec![(a, 256)], Post::Head(i[0]))
        });
    }
    h.case("reply buffer in the gap", 1, 2, 1, |sq, ram, a, i| {
        let l = hdr(ram, a, FUSE_ROOT_ID);
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: l, flags: F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: gap - 16, len: 4096, flags: F_WRITE, next: 0 });
        (vec![], Post::Head(i[0]))
    });
    // Lengths that overflow.
    h.case("length runs 4 GiB past the arena", 1, 2, 1, |sq, ram, a, i| {
        let l = hdr(ram, a, FUSE_ROOT_ID);
        let _ = l;
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: u32::MAX, flags: F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: a + 8192, len: 256, flags: F_WRITE, next: 0 });
        (vec![(a + 8192, 256)], Post::Head(i[0]))
    });
    h.case("address + length wraps 2^64", 1, 2, 1, |sq, ram, a, i| {
        sq.write_desc(ram, i[0], RawDesc { addr: u64::MAX - 15, len: 64, flags: F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: a, len: 256, flags: F_WRITE, next: 0 });
        (vec![(a, 256)], Post::Head(i[0]))
    });
    h.case("writable length wraps 2^64", 1, 2, 1, |sq, ram, a, i| {
        let l = hdr(ram, a, FUSE_ROOT_ID);
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: l, flags: F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: u64::MAX - 100, len: 4096, flags: F_WRITE, next: 0 });
        (vec![], Post::Head(i[0]))
    });
    // Chains that loop or point out of the table.
    h.case("two-descriptor loop", 1, 2, 1, |sq, ram, a, i| {
        let l = hdr(ram, a, FUSE_ROOT_ID);
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: l, flags: F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: a + 4096, len: 256, flags: F_WRITE | F_NEXT, next: i[0] });
        (vec![(a + 4096, 256)], Post::Head(i[0]))
    });
    h.case("self loop", 1, 1, 1, |sq, ram, a, i| {
        let l = hdr(ram, a, FUSE_ROOT_ID);
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: l, flags: F_NEXT, next: i[0] });
        (vec![], Post::Head(i[0]))
    });
    h.case("next beyond the table", 1, 1, 1, |sq, ram, a, i| {
        let l = hdr(ram, a, FUSE_ROOT_ID);
        let size = sq.size;
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: l, flags: F_NEXT, next: size + 7 });
        (vec![], Post::Head(i[0]))
    });
    h.case("head beyond the table", 1, 0, 1, |sq, _ram, _a, _i| {
        let size = sq.size;
        (vec![], Post::Head(size + 3))
    });
    // Readable and writable in the wrong order.
    h.case("writable before readable", 1, 2, 1, |sq, ram, a, i| {
        let l = hdr(ram, a + 4096, FUSE_ROOT_ID);
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: 256, flags: F_WRITE | F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: a + 4096, len: l, flags: 0, next: 0 });
        (vec![(a, 256)], Post::Head(i[0]))
    });
    h.case("only writable", 1, 1, 1, |sq, ram, a, i| {
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: 4096, flags: F_WRITE, next: 0 });
        (vec![(a, 4096)], Post::Head(i[0]))
    });
    h.case("header of 10 bytes", 1, 2, 1, |sq, ram, a, i| {
        hdr(ram, a, FUSE_ROOT_ID);
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: 10, flags: F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: a + 4096, len: 256, flags: F_WRITE, next: 0 });
        (vec![(a + 4096, 256)], Post::Head(i[0]))
    });
    h.case("zero-length descriptors", 1, 3, 1, |sq, ram, a, i| {
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: 0, flags: F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: a, len: 0, flags: F_NEXT, next: i[2] });
        sq.write_desc(ram, i[2], RawDesc { addr: a, len: 0, flags: F_WRITE, next: 0 });
        (vec![], Post::Head(i[0]))
    });
    h.case("reply room smaller than a reply header", 1, 2, 1, |sq, ram, a, i| {
        let l = hdr(ram, a, FUSE_ROOT_ID);
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: l, flags: F_NEXT, next: i[1] });
        sq.write_desc(ram, i[1], RawDesc { addr: a + 4096, len: 7, flags: F_WRITE, next: 0 });
        (vec![(a + 4096, 7)], Post::Head(i[0]))
    });
    // Indirect descriptors gone wrong.
    h.case("indirect table outside memory", 1, 1, 1, |sq, ram, _a, i| {
        sq.write_desc(ram, i[0], RawDesc { addr: gap + 8, len: 64, flags: F_INDIRECT, next: 0 });
        (vec![], Post::Head(i[0]))
    });
    h.case("indirect table of 17 bytes", 1, 1, 1, |sq, ram, a, i| {
        sq.write_desc(ram, i[0], RawDesc { addr: a, len: 17, flags: F_INDIRECT, next: 0 });
        (vec![], Post::Head(i[0]))
    });
    h.case("indirect inside indirect, looping", 1, 1, 1, |sq, ram, a, i| {
        let t = a + 1024;
        let e0 = RawDesc { addr: t, len: 32, flags: F_INDIRECT | F_NEXT, next: 1 };
        let e1 = RawDesc { addr: t, len: 32, flags: F_NEXT, next: 0 };
        for (k, e) in [e0, e1].iter().enumerate() {
            let mut b = Vec::new();
            b.extend_from_slice(&e.addr.to_le_bytes());
            b.extend_from_slice(&e.len.to_le_bytes());
            b.extend_from_slice(&e.flags.to_le_bytes());
            b.extend_from_slice(&e.next.to_le_bytes());
            ram.write(t + 16 * k as u64, &b);
        }
        sq.write_desc(ram, i[0], RawDesc { addr: t, len: 32, flags: F_INDIRECT, next: 0 });
        (vec![], Post::Head(i[0]))
    });

    // Headers that lie, opcodes that do not exist, node ids never looked up.
    let mut lie = fuse::getattr(FUSE_ROOT_ID);
    lie.len_override = Some(10_000);
    let mut short = fuse::getattr(FUSE_ROOT_ID);
    short.len_override = Some(3);
    let mut bogus_op = fuse::getattr(FUSE_ROOT_ID);
    bogus_op.opcode = 9999;
    let never = 0x00de_adbe_ef00u64;
    let mut must_fail = vec![
        ("len field past the chain", lie),
        ("len field shorter than the header", short),
        ("opcode 9999", bogus_op),
        ("GETATTR never-looked-up node", fuse::getattr(never)),
        ("LOOKUP in a never-looked-up parent", fuse::lookup(never, "x")),
        ("READ never-looked-up node", fuse::read(never, 1, 0, 4096)),
        ("WRITE never-looked-up node", fuse::write(never, 1, 0, b"evil")),
        ("WRITE victim with an fh never opened", fuse::write(victim.nodeid, 0xfff_ffff, 0, b"evil")),
        ("SETXATTR never-looked-up node", fuse::setxattr(never, "user.x", b"evil", 0)),
        ("CREATE in a never-looked-up parent", fuse::create(never, "x", libc::O_RDWR, 0o644)),
        ("LINK of a never-looked-up node", fuse::link(never, FUSE_ROOT_ID, "evil-link")),
        ("RENAME into a never-looked-up dir", fuse::rename(FUSE_ROOT_ID, "victim", never, "x")),
        ("UNLINK in a never-looked-up parent", fuse::unlink(never, "victim", false)),
        ("FALLOCATE never-looked-up node", fuse::fallocate(never, 1, 0, 1 << 30, 0)),
        ("LSEEK with an fh never opened", fuse::lseek(victim.nodeid, 0xfff_fffe, 0, libc::SEEK_DATA as u32)),
    ];
    for (name, req) in must_fail.drain(..) {
        let r = c.call_on(2, &req).unwrap_or_else(|e| panic!("{name}: {e}\n{}", h.d.log_text()));
        assert_ne!(r.errno, 0, "{name}: succeeded");
        h.log.push(format!("{name}: errno {}", r.errno));
    }
    // FORGET of a node never looked up: no reply, no harm.
    c.call_on(2, &fuse::forget(never, 5)).unwrap();
    assert!(c.getattr(FUSE_ROOT_ID).is_ok());

    // An available-ring index that jumps: a small jump on queue 3 makes the
    // daemon read ring slots never filled (queue 3 has carried nothing yet:
    // head 0 of a zeroed table, a zero-length chain). A jump past the queue
    // size is `hostile_avail_index_past_queue_size`.
    h.case("avail index +5 over unfilled slots", 3, 0, 1, |sq, _ram, _a, _i| {
        let to = sq.avail_idx().wrapping_add(5);
        (vec![], Post::Idx(to))
    });

    // A flood on every queue: 300 requests each, as many in flight as the
    // ring takes, a mix of good and bad; every one answered.
    std::thread::scope(|sc| {
        for q in 1..=4usize {
            let (c, victim) = (&c, victim.nodeid);
            sc.spawn(move || {
                let mine = format!("flood{q}");
                let (f, fh) = c.create(FUSE_ROOT_ID, &mine, 0o644).unwrap();
                let mut ts = Vec::new();
                for i in 0..300u64 {
                    let req = match i % 6 {
                        0 => fuse::getattr(victim),
                        1 => fuse::lookup(FUSE_ROOT_ID, "no-such-name"),
                        2 => fuse::write(f.nodeid, fh, i * 100, &[q as u8; 100]),
                        3 => fuse::read(f.nodeid, fh, 0, 8192),
                        4 => fuse::getattr(never + i),
                        _ => fuse::statfs(FUSE_ROOT_ID),
                    };
                    ts.push(c.submit(q, &req).unwrap());
                }
                for t in ts {
                    c.wait(t).unwrap_or_else(|e| panic!("flood on queue {q}: {e}"));
                }
                let got = c.read_all(f.nodeid, fh, 64 << 10).unwrap();
                let mut want = vec![0u8; 29_700];
                for i in (2..300).step_by(6) {
                    want[i * 100..i * 100 + 100].fill(q as u8);
                }
                assert!(got == want, "flood{q} differs from its writes");
                c.release(f.nodeid, fh).unwrap();
            });
        }
    });
    h.log.push("flood: 4 x 300 requests, every one answered".into());

    let Hostile { mut d, log, .. } = h;
    for l in &log {
        eprintln!("hostile: {l}");
    }

    // Nothing written outside what a request may touch: a second frontend
    // (the daemon keeps running) sees the tree as made, the victim intact.
    c.release(victim.nodeid, vfh).unwrap();
    drop(c);
    let c = connect(&d, 4);
    let mut seen = BTreeMap::new();
    walk(&c, FUSE_ROOT_ID, "", &mut seen);
    assert_eq!(seen.remove("victim"), Some(Node::File(vdata)));
    for q in 1..=4 {
        assert!(matches!(seen.remove(&format!("flood{q}")), Some(Node::File(_))));
    }
    assert_eq!(seen, tree, "the tree changed");
    drop(c);
    let (st, _) = d.terminate();
    assert!(st.is_some_and(|s| s.success()), "daemon exit {st:?}\n{}", d.log_text());
    testkit::assert_fsck_clean(&image);
}

/// An available index that jumps past the queue size on one queue: the
/// daemon must not hang or spin, and must go on answering on the other
/// queues (it ignores the broken queue until the frontend sets it up
/// again, with one log line; before, it re-checked the queue in a loop,
/// logged millions of iterator errors and starved the other queue).
#[test]
fn hostile_avail_index_past_queue_size() {
    let s = Scratch::new("fe-ext4-jump");
    let (image, _) = make_image(&s, 13);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", 2, false);
    let mut c = connect(&d, 2);
    c.hang_guard = Duration::from_secs(30);
    let arena = c.session.ram.alloc(ARENA, 4096).unwrap().addr;
    let mut h = Hostile { c: &c, d, arena, log: Vec::new() };
    h.case("avail index +1000", 2, 0, 1, |sq, _ram, _a, _i| {
        let to = sq.avail_idx().wrapping_add(1000);
        (vec![], Post::Idx(to))
    });
    let Hostile { mut d, .. } = h;
    drop(c);
    let (st, _) = d.stop(Duration::from_secs(30));
    assert!(st.is_some_and(|s| s.success()), "daemon exit {st:?}");
    testkit::assert_fsck_clean(&image);
}

#[test]
fn reconnect_and_second_daemon_refused() {
    let s = Scratch::new("fe-ext4-reconnect");
    let (image, tree) = make_image(&s, 14);
    let bin = ext4_virtiofsd_binary();
    let data_a = pattern(21, 150_000);
    let data_b = pattern(22, 3000);

    // --keep-running: A writes and leaves; the image is clean while the
    // daemon waits; B sees A's data and writes more.
    let mut d = start(&bin, &image, &s, "keep", 1, true);
    let a = connect(&d, 1);
    let (f, fh) = a.create(FUSE_ROOT_ID, "from-a", 0o644).unwrap();
    a.write(f.nodeid, fh, 0, &data_a).unwrap();
    a.release(f.nodeid, fh).unwrap();

    // A second daemon on the served image is refused, naming the conflict.
    let other = s.join("other.sock");
    let out = ext4_serve(&bin, &image, &other, "other", 1, false).output().unwrap();
    let msg = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a second daemon served the same image: {msg}");
    let m = msg.to_lowercase();
    assert!(m.contains("lock") || m.contains("in use"), "the refusal does not name the conflict: {msg}");
    assert!(!other.exists(), "the refused daemon left a socket");

    drop(a);
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.running(), "--keep-running daemon exited after the first frontend:\n{}", d.log_text());
    let (clean, report) = testkit::fsck(&image);
    assert!(clean, "image not clean between frontends:\n{report}\n{}", d.log_text());
    let b = connect(&d, 1);
    let e = b.lookup(FUSE_ROOT_ID, "from-a").unwrap();
    let fh = b.open(e.nodeid, libc::O_RDWR).unwrap();
    assert!(b.read_all(e.nodeid, fh, 64 << 10).unwrap() == data_a, "B reads other bytes than A wrote");
    b.write(e.nodeid, fh, 0, &data_b).unwrap();
    b.release(e.nodeid, fh).unwrap();
    drop(b);
    let (st, _) = d.terminate();
    assert!(st.is_some_and(|s| s.success()), "SIGTERM exit {st:?}\n{}", d.log_text());
    testkit::assert_fsck_clean(&image);

    // Without --keep-running: the daemon exits 0 when C leaves; a new
    // daemon's D sees everything.
    let d = start(&bin, &image, &s, "once", 1, false);
    let c = connect(&d, 1);
    let mut want = data_a.clone();
    want[..3000].copy_from_slice(&data_b);
    let e = c.lookup(FUSE_ROOT_ID, "from-a").unwrap();
    let fh = c.open(e.nodeid, libc::O_RDONLY).unwrap();
    assert!(c.read_all(e.nodeid, fh, 64 << 10).unwrap() == want, "after a restart: other bytes");
    c.release(e.nodeid, fh).unwrap();
    assert_eq!(c.call(&fuse::mkdir(FUSE_ROOT_ID, "from-c", 0o755)).errno, 0);
    finish(c, d);
    testkit::assert_fsck_clean(&image);
    let d = start(&bin, &image, &s, "again", 1, false);
    let c = connect(&d, 1);
    let mut seen = BTreeMap::new();
    walk(&c, FUSE_ROOT_ID, "", &mut seen);
    assert_eq!(seen.remove("from-a"), Some(Node::File(want)));
    assert_eq!(seen.remove("from-c"), Some(Node::Dir));
    assert_eq!(seen, tree);
    finish(c, d);
    testkit::assert_fsck_clean(&image);
}
