//! Issue 11's acceptance 1 and 2 through the in-process frontend with a DAX
//! window (`vmtests::frontend::window`): `ext4-virtiofsd serve --cache-size`
//! fills the window with SHMEM_MAP / SHMEM_UNMAP, which the frontend honours
//! by mmap as strictly as QEMU 11 (a refused message fails the test).
//!
//! The invariants (from the issue), each with its tests:
//! 1. the window never shows a block that is not, at that moment, the
//!    mapped file's block at that offset: `truncate_punch_unlink_never_show_freed_blocks`,
//!    `other_ways_to_free_mapped_blocks` (O_TRUNC, rename over, hard links),
//!    `hostile_nodes_and_far_offsets` (no directory or symlink blocks), and
//!    the piece table checked against debugfs `ex` after the daemon exits
//!    (`assert_pieces_are_the_files`, in several tests);
//! 2. after any reply the window equals FUSE_READ of the same range, zeros
//!    for holes and past EOF: `window_equals_read_after_every_reply`
//!    (random operations), `two_mappings_of_one_range_stay_coherent`,
//!    `one_file_many_ops_two_mappings_agree`,
//!    `stores_past_eof_in_the_last_page_never_become_file_data`, and after
//!    every step of the other tests;
//! 3. stores through a writable mapping reach the image and survive
//!    REMOVEMAPPING, FSYNC and daemon stop: `stores_through_writable_mapping_reach_the_image`,
//!    `writable_mapping_stays_writable_as_the_file_grows`, `mappings_end_with_their_session`;
//! 4. waiting for the frontend's ack deadlocks nothing (`slow_frontend_deadlocks_nothing`:
//!    with the VMM holding a SHMEM_MAP, another queue gets LOOKUP, GETATTR
//!    and READ done, and WRITE, CREATE, truncate and FSYNC once the VMM
//!    answers); truncate, punch hole and unlink of mapped blocks never fail
//!    with EBUSY (`truncate_punch_unlink_never_show_freed_blocks`).
//!
//! Acceptance 1's other cases: `inline_file_converts_at_setup_in_one_transaction`
//! (one commit block in the journal), `multi_extent_file_maps_as_pieces`,
//! `read_only_mapping_cannot_be_written`, `file_grown_by_write_reads_through_its_mapping`,
//! `eight_threads_on_inline_files_match_a_model`, and around them
//! `conversion_at_setup_races_writes_to_the_same_file`,
//! `fallocate_collapse_insert_copy_keep_mappings_coherent`,
//! `reclaim_through_a_small_window`, `removemapping_cuts_and_spans`,
//! `vmm_that_cannot_map_gets_errors_not_confusion`, `inode_dax_policy_marks_files`,
//! `window_from_the_config_file`, `no_window_without_cache_size`.
//! Acceptance 2 (a hostile guest): `hostile_setupmapping_and_removemapping`,
//! `hostile_nodes_and_far_offsets`. Every image is e2fsck-clean at the end.
//!
//! Every wait for a reply is bounded by the client's hang guard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuse_abi::linux::*;
use testkit::{Rng, Scratch};
use vmtests::frontend::daemon::{Daemon, ext4_serve, ext4_virtiofsd_binary};
use vmtests::frontend::{DaxWindow, FuseClient, Piece, SessionOptions, fuse};

const TAG: &str = "ext4dax";
/// The window the daemon announces (`--cache-size`).
const WINDOW: u64 = 64 << 20;
/// Linux maps 2 MiB ranges (FUSE_DAX_SZ).
const RANGE: u64 = 2 << 20;
const READ: u64 = FUSE_SETUPMAPPING_FLAG_READ as u64;
const RW: u64 = (FUSE_SETUPMAPPING_FLAG_READ | FUSE_SETUPMAPPING_FLAG_WRITE) as u64;
/// Linux sends `fh` -1 for SETUPMAPPING.
const NO_FH: u64 = u64::MAX;
const PAGE: u64 = 4096;

fn pattern(tag: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    Rng(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).fill(&mut v);
    v
}

/// A 64 MiB image (4 KiB blocks, inline_data, metadata_csum) made by
/// `mke2fs -d` from `files`.
fn image_with(s: &Scratch, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let tree = s.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for (name, data) in files {
        std::fs::write(tree.join(name), data).unwrap();
    }
    let image = s.join("fs.img");
    testkit::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data,metadata_csum", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg("64M"),
    );
    image
}

fn debugfs(image: &Path, req: &str) -> String {
    let out = Command::new("debugfs").args(["-R", req]).arg(image).output().expect("run debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn debugfs_cat(image: &Path, path: &str) -> Vec<u8> {
    Command::new("debugfs").args(["-R", &format!("cat /{path}")]).arg(image).output().unwrap().stdout
}

/// One extent as debugfs `ex` shows it.
#[derive(Debug, Clone, Copy)]
struct Extent {
    lblk: u64,
    len: u64,
    pblk: u64,
    unwritten: bool,
}

/// The extents of `path` by debugfs `ex`.
fn extents(image: &Path, path: &str) -> Vec<Extent> {
    let mut out = Vec::new();
    for line in debugfs(image, &format!("ex /{path}")).lines().skip(1) {
        let t: Vec<&str> = line.split_whitespace().collect();
        let dashes: Vec<usize> = (0..t.len()).filter(|&i| t[i] == "-").collect();
        let [d0, d1] = dashes[..] else { continue }; // an index node
        let num = |i: usize| t[i].parse::<u64>().unwrap_or_else(|_| panic!("debugfs ex /{path}: {line:?}"));
        out.push(Extent { lblk: num(d0 - 1), len: num(d1 + 2), pblk: num(d1 - 1), unwritten: line.contains("Uninit") });
    }
    out
}

/// `i_size` of `path` by debugfs `stat`.
fn file_size(image: &Path, path: &str) -> u64 {
    let st = debugfs(image, &format!("stat /{path}"));
    let v = st.split("Size: ").nth(1).and_then(|t| t.split_whitespace().next());
    v.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("debugfs stat /{path}: {st}"))
}

/// Invariant 1 against the image, after the daemon exited: every page of
/// the window pieces `pieces` (window offset `slot` holding `path` from file
/// offset `foffset`) that maps the image is that file's own block at that
/// offset; every other page is a hole, an unwritten block or past EOF.
fn assert_pieces_are_the_files(image: &Path, pieces: &[Piece], slots: &[(u64, &str, u64)]) {
    let meta = image_meta(image);
    let mut files: BTreeMap<&str, (Vec<Extent>, u64)> = BTreeMap::new();
    for p in pieces {
        let Some(&(slot, path, foffset)) = slots.iter().find(|(s, _, _)| *s <= p.shm_offset && p.end() <= s + RANGE)
        else {
            panic!("piece {p:#x?} lies in no slot the test mapped: {slots:?}");
        };
        let (ext, size) = files.entry(path).or_insert_with(|| (extents(image, path), file_size(image, path))).clone();
        for k in 0..p.len / PAGE {
            let lblk = (foffset + p.shm_offset - slot) / PAGE + k;
            let hit = ext
                .iter()
                .find(|e| e.lblk <= lblk && lblk < e.lblk + e.len)
                .map(|e| (e.pblk + lblk - e.lblk, e.unwritten));
            let what = format!("{path} block {lblk} at window {:#x}", p.shm_offset + k * PAGE);
            if p.maps(&meta) {
                let Some((phys, unwritten)) = hit else {
                    panic!("{what}: maps image block {} over a hole", p.fd_offset / PAGE + k)
                };
                assert_eq!(phys * PAGE, p.fd_offset + k * PAGE, "{what}: maps another block of the image");
                assert!(lblk * PAGE < size.next_multiple_of(PAGE), "{what}: an image block past EOF ({size})");
                let _ = unwritten; // a writable mapping may map an unwritten block the guest then writes
            } else {
                assert!(
                    hit.is_none_or(|(_, unwritten)| unwritten) || lblk * PAGE >= size,
                    "{what}: data block {hit:?} of a {size}-byte file mapped as zeros"
                );
            }
        }
    }
}

/// A daemon serving `image` with a window of [`WINDOW`] bytes.
fn start(bin: &Path, image: &Path, s: &Scratch, name: &str, extra: &[&str]) -> Daemon {
    let socket = s.join(format!("{name}.sock"));
    let mut cmd = ext4_serve(bin, image, &socket, TAG, 4, false);
    if !extra.contains(&"--cache-size") {
        cmd.args(["--cache-size", &WINDOW.to_string()]);
    }
    cmd.args(extra);
    Daemon::start(cmd, &socket, &s.join(format!("{name}.log"))).unwrap_or_else(|e| panic!("{e}"))
}

/// Connects with a DAX window and `queues` request queues, INIT as a guest
/// mounted `-o dax`.
fn connect(d: &Daemon, queues: usize) -> (FuseClient, Arc<DaxWindow>) {
    connect_sized(d, queues, WINDOW)
}

/// [`connect`] to a daemon that announces a window of `window` bytes.
fn connect_sized(d: &Daemon, queues: usize, window: u64) -> (FuseClient, Arc<DaxWindow>) {
    let opts = SessionOptions { request_queues: queues, dax_window: true, event_idx: true, ..Default::default() };
    let c = FuseClient::connect(&d.socket, &opts).unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    let w = c.window().expect("the session has a window").clone();
    assert_eq!(w.size(), window, "GET_SHMEM_CONFIG region 0");
    let o = c
        .init_with(fuse::DAX_INIT_FLAGS, (FUSE_HAS_INODE_DAX >> 32) as u32)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    assert!(o.flags & FUSE_MAP_ALIGNMENT != 0, "the daemon does not negotiate FUSE_MAP_ALIGNMENT: {o:?}");
    assert!(o.map_alignment <= 12, "map_alignment {} exceeds the page size", o.map_alignment);
    (c, w)
}

/// The daemon's `dax counters:` line: (setupmappings, removemappings,
/// conversions, remaps).
fn dax_counters(log: &str) -> Option<[u64; 4]> {
    let line = log.lines().rev().find(|l| l.contains("dax counters:"))?;
    let get = |k: &str| {
        let i = line.find(&format!("{k}="))? + k.len() + 1;
        line[i..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    Some([get("setupmappings")?, get("removemappings")?, get("conversions")?, get("remaps")?])
}

/// Disconnects, waits for the daemon to exit 0 by itself, checks that the
/// window refused nothing the daemon sent and the image is e2fsck-clean.
/// Returns the log.
fn finish(c: FuseClient, w: &DaxWindow, mut d: Daemon, image: &Path) -> String {
    drop(c);
    let (st, signalled) = d.stop(Duration::from_secs(60));
    let log = d.log_text();
    assert!(!signalled && st.is_some_and(|s| s.success()), "daemon did not exit 0 by itself: {st:?}\n{log}");
    assert_window_sane(w, &log);
    testkit::assert_fsck_clean(image);
    log
}

/// The daemon never sent a SHMEM message QEMU 11 refuses, nor a malformed one.
fn assert_window_sane(w: &DaxWindow, log: &str) {
    assert_eq!(w.counters().refusals, 0, "the window refused: {:#?}\n{log}", w.refusals());
    assert!(w.broken().is_none(), "{:?}\n{log}", w.broken());
}

/// `len` bytes of `node` at `off` by FUSE_READ, zeros past EOF.
fn fuse_bytes(c: &FuseClient, q: usize, node: u64, fh: u64, off: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        let n = (len - out.len() as u64).min(128 << 10) as u32;
        let r = c.call_on(q, &fuse::read(node, fh, off + out.len() as u64, n)).unwrap_or_else(|e| panic!("{e}"));
        let b = r.ok().unwrap_or_else(|e| panic!("READ of node {node} at {off}: errno {e}"));
        let short = (b.len() as u32) < n;
        out.extend(b);
        if short {
            break;
        }
    }
    out.resize(len as usize, 0);
    out
}

/// Invariant 2: the window at `moffset` equals FUSE_READ of `[foffset,
/// foffset + len)` of `node`.
#[allow(clippy::too_many_arguments)]
fn assert_coherent(
    c: &FuseClient,
    q: usize,
    w: &DaxWindow,
    node: u64,
    fh: u64,
    foffset: u64,
    moffset: u64,
    len: u64,
    what: &str,
) {
    let win = w.read_window(moffset, len as usize).unwrap_or_else(|e| {
        panic!("{what}: window [{moffset:#x}, +{len:#x}) of node {node}: {e}\npieces {:#x?}", w.pieces_in(moffset, len))
    });
    let rd = fuse_bytes(c, q, node, fh, foffset, len);
    if let Some(i) = (0..win.len()).find(|&i| win[i] != rd[i]) {
        panic!(
            "{what}: node {node} file offset {:#x} (window {:#x}): window has {:#04x}, FUSE_READ {:#04x}\npieces {:#x?}",
            foffset + i as u64,
            moffset + i as u64,
            win[i],
            rd[i],
            w.pieces_in(moffset, len)
        );
    }
}

fn entry(c: &FuseClient, name: &str) -> fuse_entry_out {
    c.lookup(FUSE_ROOT_ID, name).unwrap_or_else(|e| panic!("LOOKUP {name}: errno {e}"))
}

fn alive(c: &FuseClient, d: &Daemon) {
    assert!(c.getattr(FUSE_ROOT_ID).is_ok(), "the daemon stopped answering\n{}", d.log_text());
}

/// The image's identity, to tell image pieces from zero-memfd pieces.
fn image_meta(image: &Path) -> std::fs::Metadata {
    std::fs::metadata(image).unwrap()
}

#[test]
fn inline_file_converts_at_setup_in_one_transaction() {
    let s = Scratch::new("dax-inline");
    let small = b"an inline file: sixty bytes of data, stored in the inode....".to_vec();
    assert_eq!(small.len(), 60);
    let image = image_with(&s, &[("small", small.clone()), ("other", b"stays inline".to_vec())]);
    assert!(debugfs(&image, "stat /small").contains("Size of inline data"), "mke2fs did not make /small inline");
    let bin = ext4_virtiofsd_binary();
    let meta = image_meta(&image);

    let d = start(&bin, &image, &s, "a", &[]);
    let (c, w) = connect(&d, 1);
    let e = entry(&c, "small");
    c.setup_mapping(e.nodeid, NO_FH, 0, RANGE, READ, 0)
        .unwrap_or_else(|er| panic!("SETUPMAPPING of an inline file: errno {er}\n{}", d.log_text()));
    // Its bytes show in the window, the rest of the 2 MiB reads zero.
    let win = w.read_window(0, RANGE as usize).unwrap_or_else(|er| panic!("{er}: {:#x?}", w.pieces()));
    assert_eq!(&win[..60], &small[..], "the inline bytes in the window");
    assert!(win[60..].iter().all(|&b| b == 0), "past EOF reads zero");
    // The first page is a block of the image (converted), the rest zeros.
    let pieces = w.pieces();
    let first = pieces.iter().find(|p| p.shm_offset == 0).expect("a piece at 0");
    assert!(first.maps(&meta), "page 0 of the converted file should map the image: {pieces:#x?}");
    assert!(!first.writable);
    let log = d.log_text();
    let converted = log.lines().filter(|l| l.contains(&format!("inode {} converted from inline data", e.attr.ino)));
    assert_eq!(converted.count(), 1, "one conversion line for inode {} in the log:\n{log}", e.attr.ino);
    // Commit (FSYNC), then kill the daemon: the log still holds every
    // transaction since the last checkpoint.
    let fh = c.open(e.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(c.call(&fuse::fsync(e.nodeid, fh, false)).errno, 0);
    let mut d = d;
    let _ = d.child.kill();
    let _ = d.child.wait();
    drop(c);
    let log = debugfs(&image, "logdump");
    let commits = log.matches("(commit block)").count();
    assert_eq!(commits, 1, "the journal should hold exactly one transaction (the conversion):\n{log}");
    assert_window_sane(&w, "");

    // A restart replays it: the file is extent-mapped with the right bytes.
    let d = start(&bin, &image, &s, "b", &[]);
    let (c, w2) = connect(&d, 1);
    let e = entry(&c, "small");
    let fh = c.open(e.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(c.read_all(e.nodeid, fh, 4096).unwrap(), small);
    c.setup_mapping(e.nodeid, NO_FH, 0, RANGE, READ, RANGE).unwrap();
    assert_coherent(&c, 1, &w2, e.nodeid, fh, 0, RANGE, RANGE, "after replay");
    let log = finish(c, &w2, d, &image);
    assert_eq!(dax_counters(&log).map(|k| k[2]), Some(0), "no conversion the second time:\n{log}");
    let st = debugfs(&image, "stat /small");
    assert!(!st.contains("Size of inline data") && st.contains("EXTENTS:"), "not extent-mapped:\n{st}");
    assert_eq!(debugfs_cat(&image, "small"), small);
    assert!(debugfs(&image, "stat /other").contains("Size of inline data"), "an unmapped file stays inline");
}

/// Writes 4 KiB blocks to `a` and `b` in turn, so that `a` gets several
/// extents; then a block of `a` after a hole.
fn fragmented(c: &FuseClient, a: (u64, u64), b: (u64, u64), blocks: u64) -> Vec<u8> {
    let mut model = Vec::new();
    for i in 0..blocks {
        let da = pattern(100 + i, PAGE as usize);
        assert_eq!(c.write(a.0, a.1, i * PAGE, &da).unwrap(), PAGE as u32);
        model.extend(&da);
        assert_eq!(c.write(b.0, b.1, i * PAGE, &pattern(200 + i, PAGE as usize)).unwrap(), PAGE as u32);
    }
    let tail = pattern(300, 5000);
    let at = 1 << 20;
    assert_eq!(c.write(a.0, a.1, at, &tail).unwrap(), 5000);
    model.resize(at as usize, 0);
    model.extend(&tail);
    model
}

#[test]
fn multi_extent_file_maps_as_pieces() {
    let s = Scratch::new("dax-extents");
    let image = image_with(&s, &[]);
    let bin = ext4_virtiofsd_binary();
    let meta = image_meta(&image);
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let (a, fa) = c.create(FUSE_ROOT_ID, "a", 0o644).unwrap();
    let (b, fb) = c.create(FUSE_ROOT_ID, "b", 0o644).unwrap();
    let model = fragmented(&c, (a.nodeid, fa), (b.nodeid, fb), 24);
    assert_eq!(c.call(&fuse::fsync(a.nodeid, fa, false)).errno, 0);
    let m = 3 * RANGE;
    c.setup_mapping(a.nodeid, NO_FH, 0, RANGE, READ, m).unwrap();
    let image_pieces: Vec<Piece> = w.pieces_in(m, RANGE).into_iter().filter(|p| p.maps(&meta)).collect();
    assert!(image_pieces.len() >= 3, "a fragmented file should map as several image pieces: {:#x?}", w.pieces());
    let win = w.read_window(m, RANGE as usize).unwrap();
    let mut want = model.clone();
    want.resize(RANGE as usize, 0);
    assert!(win == want, "window differs from the file's bytes");
    // Reads across every border between pieces.
    for p in w.pieces_in(m, RANGE).iter().skip(1) {
        let at = p.shm_offset - 100;
        assert_eq!(w.read_window(at, 200).unwrap(), want[(at - m) as usize..(at - m) as usize + 200]);
    }
    assert_coherent(&c, 1, &w, a.nodeid, fa, 0, m, RANGE, "fragmented file");
    let snapshot = w.pieces_in(m, RANGE);
    let log = finish(c, &w, d, &image);
    assert!(log.contains("dax counters:"), "{log}");
    assert_pieces_are_the_files(&image, &snapshot, &[(m, "a", 0)]);
    assert_eq!(debugfs_cat(&image, "a"), model);
}

#[test]
fn read_only_mapping_cannot_be_written() {
    let s = Scratch::new("dax-ro");
    let data = pattern(1, 3 * PAGE as usize + 10);
    let image = image_with(&s, &[("f", data.clone())]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let e = entry(&c, "f");
    c.setup_mapping(e.nodeid, NO_FH, 0, RANGE, READ, 0).unwrap();
    assert!(w.pieces_in(0, RANGE).iter().all(|p| !p.writable), "{:#x?}", w.pieces());
    let err = w.write_window(0, b"x").unwrap_err();
    assert!(err.contains("read-only"), "{err}");
    // Linux upgrades by asking again for write at the same offset: the
    // old pieces are replaced (unmapped first, QEMU refuses overlaps).
    let before = w.counters();
    c.setup_mapping(e.nodeid, NO_FH, 0, RANGE, RW, 0).unwrap();
    let after = w.counters();
    assert!(after.unmaps > before.unmaps, "the read pieces were not unmapped: {before:?} {after:?}");
    let inside: Vec<Piece> =
        w.pieces_in(0, data.len() as u64).into_iter().filter(|p| p.shm_offset < 3 * PAGE).collect();
    assert!(inside.iter().all(|p| p.writable), "pages inside EOF should be writable now: {:#x?}", w.pieces());
    w.write_window(5, b"stored").unwrap();
    // Past EOF stays read-only zeros.
    assert!(w.write_window(RANGE - 1, b"x").is_err(), "past EOF is writable: {:#x?}", w.pieces());
    let fh = c.open(e.nodeid, libc::O_RDONLY).unwrap();
    assert_coherent(&c, 1, &w, e.nodeid, fh, 0, 0, RANGE, "after the upgrade");
    finish(c, &w, d, &image);
    let mut want = data;
    want[5..11].copy_from_slice(b"stored");
    assert_eq!(debugfs_cat(&image, "f"), want);
}

#[test]
fn file_grown_by_write_reads_through_its_mapping() {
    let s = Scratch::new("dax-grow");
    let image = image_with(&s, &[("inline", b"tiny".to_vec()), ("ext", pattern(2, 5000))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    for (k, (name, len)) in [("inline", 4u64), ("ext", 5000)].into_iter().enumerate() {
        let e = entry(&c, name);
        let fh = c.open(e.nodeid, libc::O_RDWR).unwrap();
        let m = k as u64 * RANGE;
        c.setup_mapping(e.nodeid, NO_FH, 0, RANGE, READ, m).unwrap();
        assert_coherent(&c, 1, &w, e.nodeid, fh, 0, m, RANGE, name);
        // Grow inside the first page, to several pages, with a hole, and
        // past the 2 MiB range: each read through the same mapping.
        let steps: [(u64, usize); 4] = [(len, 100), (6000, 70_000), (300_000, 4096), (RANGE - 10, 30)];
        for (i, (off, n)) in steps.into_iter().enumerate() {
            let data = pattern(10 * k as u64 + i as u64, n);
            assert_eq!(c.write(e.nodeid, fh, off, &data).unwrap(), n as u32);
            assert_coherent(&c, 1, &w, e.nodeid, fh, 0, m, RANGE, &format!("{name}: after WRITE {i}"));
        }
    }
    let log = finish(c, &w, d, &image);
    assert!(dax_counters(&log).is_some_and(|k| k[0] == 2 && k[2] == 1 && k[3] > 0), "counters:\n{log}");
}

/// Checks that every byte of the window range is either the file's old
/// byte or zero: the window never shows another file's data.
fn only_old_or_zero(w: &DaxWindow, m: u64, old: &[u8], from: usize, what: &str) {
    let win = w.read_window(m, old.len()).unwrap_or_else(|e| panic!("{what}: {e}"));
    for i in from..old.len() {
        assert!(
            win[i] == 0,
            "{what}: window byte {i:#x} is {:#04x} after the blocks were freed (old {:#04x})",
            win[i],
            old[i]
        );
    }
}

#[test]
fn truncate_punch_unlink_never_show_freed_blocks() {
    let s = Scratch::new("dax-free");
    let image = image_with(&s, &[]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let size = 1usize << 20;
    let mk = |name: &str, tag: u64| {
        let (e, fh) = c.create(FUSE_ROOT_ID, name, 0o644).unwrap();
        let data = pattern(tag, size);
        for (i, ch) in data.chunks(256 << 10).enumerate() {
            c.write(e.nodeid, fh, (i * (256 << 10)) as u64, ch).unwrap();
        }
        assert_eq!(c.call(&fuse::fsync(e.nodeid, fh, false)).errno, 0);
        (e.nodeid, fh, data)
    };
    // Another file takes the freed blocks and writes over them.
    let reuse = |name: &str, tag: u64| {
        let (e, fh) = c.create(FUSE_ROOT_ID, name, 0o644).unwrap();
        c.write(e.nodeid, fh, 0, &pattern(tag, 8 << 20)).unwrap();
        assert_eq!(c.call(&fuse::fsync(e.nodeid, fh, false)).errno, 0);
        c.release(e.nodeid, fh).unwrap();
    };

    // Truncate to a size inside a block: the tail of that block and every
    // later page read zero, through the mapping the guest keeps.
    let (t, tfh, tdata) = mk("t", 1);
    c.setup_mapping(t, NO_FH, 0, RANGE, RW, 0).unwrap();
    let r = c.call(&fuse::truncate(t, 100_000));
    assert_eq!(r.errno, 0, "truncate of a mapped file");
    let cut = &tdata[..size];
    assert_eq!(w.read_window(0, 100_000).unwrap(), tdata[..100_000]);
    only_old_or_zero(&w, 0, cut, 100_000, "after truncate");
    reuse("r1", 11);
    only_old_or_zero(&w, 0, cut, 100_000, "after truncate and reuse");
    assert_coherent(&c, 1, &w, t, tfh, 0, 0, RANGE, "after truncate");

    // Punch a hole: zeros there, the rest intact.
    let (p, pfh, pdata) = mk("p", 2);
    c.setup_mapping(p, NO_FH, 0, RANGE, READ, RANGE).unwrap();
    let mode = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    assert_eq!(c.call(&fuse::fallocate(p, pfh, 16 << 10, 64 << 10, mode)).errno, 0, "punch of a mapped range");
    reuse("r2", 12);
    let win = w.read_window(RANGE, size).unwrap();
    assert!(win[16 << 10..80 << 10].iter().all(|&b| b == 0), "punched range shows data");
    assert!(win[..16 << 10] == pdata[..16 << 10] && win[80 << 10..] == pdata[80 << 10..], "outside the hole");
    assert_coherent(&c, 1, &w, p, pfh, 0, RANGE, RANGE, "after punch");

    // Unlink while mapped and open: the blocks go at the last release and
    // FORGET; from then on the window shows zeros, never the reuser's data.
    let (u, ufh, udata) = mk("u", 3);
    c.setup_mapping(u, NO_FH, 0, RANGE, RW, 2 * RANGE).unwrap();
    assert_eq!(c.call(&fuse::unlink(FUSE_ROOT_ID, "u", false)).errno, 0, "unlink of a mapped file");
    assert_eq!(w.read_window(2 * RANGE, size).unwrap(), udata, "unlinked but open: still its data");
    c.release(u, ufh).unwrap();
    let _ = c.submit(1, &fuse::forget(u, 1)).unwrap();
    // FORGET has no reply: a later request on the same queue is the sync
    // point only if the daemon handles them in order, so poll (bounded)
    // and check every look: the file's bytes or zeros, nothing else.
    let deadline = std::time::Instant::now() + c.hang_guard;
    loop {
        alive(&c, &d);
        let win = w.read_window(2 * RANGE, size).unwrap_or_default();
        if !win.is_empty() {
            assert!(win.iter().zip(&udata).all(|(a, b)| a == b || *a == 0), "foreign bytes in the window");
        }
        if win.is_empty() || win.iter().all(|&b| b == 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "hang guard: the unlinked file's blocks stay mapped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let zeroed = w.pieces_in(2 * RANGE, RANGE);
    reuse("r3", 13);
    if let Ok(win) = w.read_window(2 * RANGE, size) {
        let nz = win.iter().position(|&b| b != 0);
        assert!(
            nz.is_none(),
            "the freed blocks of an unlinked file show through the window at {nz:#x?} (new data: {}): pieces {:#x?}, before the reuse {zeroed:#x?}\nimage {:?}\n{}",
            win[..] == pattern(13, 8 << 20)[..size],
            w.pieces_in(2 * RANGE, RANGE),
            image_meta(&image),
            d.log_text()
        );
    }
    finish(c, &w, d, &image);
}

#[test]
fn stores_through_writable_mapping_reach_the_image() {
    let s = Scratch::new("dax-store");
    let image = image_with(&s, &[("inline", b"inline bytes".to_vec()), ("big", pattern(5, 3 << 20))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let mut model: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    model.insert("inline", b"inline bytes".to_vec());
    model.insert("big", pattern(5, 3 << 20));
    // A sparse file: a hole inside i_size gets blocks for a writable mapping.
    let (sp, spfh) = c.create(FUSE_ROOT_ID, "sparse", 0o644).unwrap();
    c.write(sp.nodeid, spfh, 200_000, b"end").unwrap();
    let mut sparse = vec![0; 200_003];
    sparse[200_000..].copy_from_slice(b"end");
    model.insert("sparse", sparse);

    // (name, file offset, window slot, stores at file offsets)
    let plan: [(&str, u64, u64, &[u64]); 4] = [
        ("inline", 0, 0, &[0, 7]),
        ("big", 0, 1, &[0, 4095, 1 << 20]),
        ("big", RANGE, 2, &[0, 100]),
        ("sparse", 0, 3, &[0, 50_000, 199_990]),
    ];
    for (i, (name, foff, slot, stores)) in plan.iter().enumerate() {
        let e = entry(&c, name);
        let m = slot * RANGE;
        c.setup_mapping(e.nodeid, NO_FH, *foff, RANGE, RW, m)
            .unwrap_or_else(|er| panic!("SETUPMAPPING {name}: errno {er}\n{}", d.log_text()));
        let fh = c.open(e.nodeid, libc::O_RDWR).unwrap();
        let file = model.get_mut(name).unwrap();
        for (j, &at) in stores.iter().enumerate() {
            let data = pattern(1000 + 10 * i as u64 + j as u64, 10);
            let n = data.len().min(file.len().saturating_sub((foff + at) as usize));
            w.write_window(m + at, &data[..n]).unwrap_or_else(|er| panic!("store into {name}+{at}: {er}"));
            file[(foff + at) as usize..(foff + at) as usize + n].copy_from_slice(&data[..n]);
        }
        assert_coherent(&c, 1, &w, e.nodeid, fh, *foff, m, RANGE, &format!("{name} after stores"));
        match i {
            // Survives REMOVEMAPPING ...
            0 | 3 => c.remove_mapping(e.nodeid, &[(m, RANGE)]).unwrap(),
            // ... and FSYNC.
            _ => assert_eq!(c.call(&fuse::fsync(e.nodeid, fh, false)).errno, 0),
        }
        let got = c.read_all(e.nodeid, fh, 128 << 10).unwrap();
        assert!(&got == file, "{name}: FUSE_READ after the stores differs from the model");
        c.release(e.nodeid, fh).unwrap();
    }
    // ... and daemon stop (the window keeps the last mappings meanwhile).
    finish(c, &w, d, &image);
    for (name, want) in &model {
        assert!(&debugfs_cat(&image, name) == want, "{name} on the image differs from the model");
    }
}

#[test]
fn window_equals_read_after_every_reply() {
    let s = Scratch::new("dax-coherent");
    let image = image_with(&s, &[("i0", b"0123456789".to_vec()), ("i1", pattern(3, 59)), ("e0", pattern(4, 70_000))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let names = ["i0", "i1", "e0"];
    let files: Vec<(u64, u64)> = names
        .iter()
        .map(|n| {
            let e = entry(&c, n);
            (e.nodeid, c.open(e.nodeid, libc::O_RDWR).unwrap())
        })
        .collect();
    // Window slot → (file index, file offset). Both inline files are
    // mapped first (converted at setup; a WRITE would convert them too).
    let mut mapped: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    for (k, &(node, _)) in files.iter().enumerate().take(2) {
        c.setup_mapping(node, NO_FH, 0, RANGE, READ, 8 * RANGE + k as u64 * RANGE).unwrap();
        mapped.insert(8 + k as u64, (k, 0));
    }
    let mut rng = Rng(11);
    for step in 0..300 {
        let k = rng.below(3) as usize;
        let (node, fh) = files[k];
        let op = rng.below(9);
        let what = format!("step {step}: op {op} on {}", names[k]);
        match op {
            0 | 1 => {
                let slot = rng.below(8);
                let foff = rng.below(2) * RANGE;
                let flags = if rng.chance(50) { RW } else { READ };
                c.setup_mapping(node, NO_FH, foff, RANGE, flags, slot * RANGE)
                    .unwrap_or_else(|e| panic!("{what}: SETUPMAPPING errno {e}\n{}", d.log_text()));
                mapped.insert(slot, (k, foff));
            }
            2 => {
                if let Some(&slot) = mapped.keys().nth(rng.below(mapped.len().max(1) as u64) as usize) {
                    c.remove_mapping(node, &[(slot * RANGE, RANGE)]).unwrap_or_else(|e| panic!("{what}: errno {e}"));
                    mapped.remove(&slot);
                }
            }
            3 | 4 => {
                let off = rng.length(70, 9000, 3 << 20);
                let data = pattern(step, rng.length(70, 300, 200_000) as usize);
                c.write(node, fh, off, &data).unwrap_or_else(|e| panic!("{what}: WRITE errno {e}"));
            }
            5 => {
                let size = rng.length(60, 5000, 3 << 20);
                assert_eq!(c.call(&fuse::truncate(node, size)).errno, 0, "{what}");
            }
            6 => {
                let off = rng.below(1 << 20);
                let mode =
                    if rng.chance(50) { (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32 } else { 0 };
                let e = c.call(&fuse::fallocate(node, fh, off, rng.length(70, 8192, 1 << 20) + 1, mode)).errno;
                assert!(e == 0 || e == libc::EOPNOTSUPP, "{what}: FALLOCATE errno {e}");
            }
            _ => {
                // A store through a writable mapping of this file, inside i_size.
                let size = c.getattr(node).unwrap().size;
                let cand: Vec<(u64, u64)> = mapped
                    .iter()
                    .filter(|(_, (f, foff))| *f == k && *foff < size)
                    .map(|(s, (_, foff))| (*s, *foff))
                    .collect();
                if let Some(&(slot, foff)) = cand.first() {
                    let at = rng.below((size - foff).min(RANGE));
                    let all_w = w.pieces_in(slot * RANGE + at, 1).iter().all(|p| p.writable);
                    if all_w {
                        w.write_window(slot * RANGE + at, &[step as u8 | 1]).unwrap_or_else(|e| panic!("{what}: {e}"));
                    }
                }
            }
        }
        for (&slot, &(f, foff)) in &mapped {
            let (n, h) = files[f];
            assert_coherent(&c, 1, &w, n, h, foff, slot * RANGE, RANGE, &what);
        }
    }
    let snapshot = w.pieces();
    let log = finish(c, &w, d, &image);
    assert!(dax_counters(&log).is_some_and(|k| k[2] == 2), "both inline files converted once:\n{log}");
    let slots: Vec<(u64, &str, u64)> = mapped.iter().map(|(&s, &(k, foff))| (s * RANGE, names[k], foff)).collect();
    assert_pieces_are_the_files(&image, &snapshot, &slots);
}

#[test]
fn eight_threads_on_inline_files_match_a_model() {
    let s = Scratch::new("dax-threads");
    const FILES: usize = 4;
    const THREADS: usize = 8;
    let init: Vec<Vec<u8>> = (0..FILES).map(|k| pattern(k as u64, 20 + 10 * k)).collect();
    let names: Vec<String> = (0..FILES).map(|k| format!("f{k}")).collect();
    let list: Vec<(&str, Vec<u8>)> = names.iter().map(|n| n.as_str()).zip(init.iter().cloned()).collect();
    let image = image_with(&s, &list);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 4);
    let nodes: Vec<u64> = names.iter().map(|n| entry(&c, n).nodeid).collect();
    let fhs: Vec<u64> = nodes.iter().map(|&n| c.open(n, libc::O_RDWR).unwrap()).collect();
    // Per file: the model, and a lock the test holds across each change
    // and its model update (the history is then a sequence per file).
    let model: Vec<Mutex<Vec<u8>>> = init.into_iter().map(Mutex::new).collect();
    let slot = |t: usize, k: usize| ((t * FILES + k) as u64) * RANGE;
    assert!(slot(THREADS - 1, FILES - 1) + RANGE <= WINDOW);

    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let (c, w, model, nodes, fhs) = (&c, &w, &model, &nodes, &fhs);
            sc.spawn(move || {
                let q = 1 + t % 4;
                // Everyone maps every inline file at once: concurrent conversions.
                for (k, &node) in nodes.iter().enumerate() {
                    let r = c.call_on(q, &fuse::setupmapping(node, NO_FH, 0, RANGE, READ, slot(t, k))).unwrap();
                    assert_eq!(r.errno, 0, "thread {t}: SETUPMAPPING of f{k}");
                }
                let mut rng = Rng(1000 + t as u64);
                for i in 0..60 {
                    let k = rng.below(FILES as u64) as usize;
                    let (node, fh, m) = (nodes[k], fhs[k], slot(t, k));
                    let mut f = model[k].lock().unwrap();
                    let what = format!("thread {t} step {i} f{k}");
                    match rng.below(5) {
                        4 => {
                            // Reclaim and map again (the guest's LRU at work).
                            let r = c.call_on(q, &fuse::removemapping(node, &[(m, RANGE)])).unwrap();
                            assert_eq!(r.errno, 0, "{what}: REMOVEMAPPING");
                            assert!(w.read_window(m, 1).is_err(), "{what}: mapped after REMOVEMAPPING");
                            let r = c.call_on(q, &fuse::setupmapping(node, NO_FH, 0, RANGE, READ, m)).unwrap();
                            assert_eq!(r.errno, 0, "{what}: SETUPMAPPING after REMOVEMAPPING");
                        }
                        0 => {
                            let off = rng.below(6000);
                            let data = pattern((t * 1000 + i) as u64, rng.length(70, 50, 3000) as usize);
                            let r = c.call_on(q, &fuse::write(node, fh, off, &data)).unwrap();
                            assert_eq!(r.errno, 0, "{what}: WRITE");
                            let end = off as usize + data.len();
                            if f.len() < end {
                                f.resize(end, 0);
                            }
                            f[off as usize..end].copy_from_slice(&data);
                        }
                        1 => {
                            let size = if rng.chance(60) { rng.below(60) } else { rng.below(9000) };
                            assert_eq!(c.call_on(q, &fuse::truncate(node, size)).unwrap().errno, 0, "{what}: truncate");
                            f.resize(size as usize, 0);
                        }
                        2 if !f.is_empty() => {
                            let r = c.call_on(q, &fuse::setupmapping(node, NO_FH, 0, RANGE, RW, m)).unwrap();
                            assert_eq!(r.errno, 0, "{what}: SETUPMAPPING write");
                            let at = rng.below(f.len() as u64) as usize;
                            let n = (f.len() - at).min(16);
                            let data = pattern((t * 7000 + i) as u64, n);
                            w.write_window(m + at as u64, &data).unwrap_or_else(|e| panic!("{what}: store: {e}"));
                            f[at..at + n].copy_from_slice(&data);
                        }
                        _ => {
                            let r = c.call_on(q, &fuse::setupmapping(node, NO_FH, 0, RANGE, READ, m)).unwrap();
                            assert_eq!(r.errno, 0, "{what}: SETUPMAPPING read");
                        }
                    }
                    // The thread's own mapping shows the model, zeros after it.
                    let win = w.read_window(m, RANGE as usize).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(win[..f.len()] == f[..], "{what}: window differs from the model");
                    assert!(win[f.len()..].iter().all(|&b| b == 0), "{what}: window past EOF not zero");
                    drop(f);
                }
            });
        }
    });
    for k in 0..FILES {
        let f = model[k].lock().unwrap();
        let got = c.read_all(nodes[k], fhs[k], 64 << 10).unwrap();
        assert!(got == *f, "f{k}: FUSE_READ differs from the model");
        for t in 0..THREADS {
            assert_coherent(&c, 1, &w, nodes[k], fhs[k], 0, slot(t, k), RANGE, &format!("f{k} slot of thread {t}"));
        }
    }
    let snapshot = w.pieces();
    let log = finish(c, &w, d, &image);
    assert_eq!(dax_counters(&log).map(|k| k[2]), Some(FILES as u64), "each inline file converted once:\n{log}");
    let slots: Vec<(u64, &str, u64)> = (0..THREADS)
        .flat_map(|t| (0..FILES).map(move |k| (t, k)))
        .map(|(t, k)| (slot(t, k), names[k].as_str(), 0))
        .collect();
    assert_pieces_are_the_files(&image, &snapshot, &slots);
    for k in 0..FILES {
        assert!(
            debugfs_cat(&image, &names[k]) == *model[k].lock().unwrap(),
            "f{k} on the image differs from the model"
        );
    }
}

#[test]
fn slow_frontend_deadlocks_nothing() {
    let s = Scratch::new("dax-slow");
    let image = image_with(&s, &[("inline", b"converted while the VMM is slow".to_vec()), ("b", pattern(8, 1 << 20))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 2);
    let a = entry(&c, "inline").nodeid;
    let b = entry(&c, "b").nodeid;
    let bfh = c.open(b, libc::O_RDWR).unwrap();
    // The VMM holds every SHMEM message: the SETUPMAPPING (which converts
    // the inline file first) waits for its ack ...
    let hold = w.hold();
    std::thread::scope(|sc| {
        let t = sc.spawn(|| c.call_on(1, &fuse::setupmapping(a, NO_FH, 0, RANGE, RW, 0)));
        assert!(w.wait_held(1, c.hang_guard), "no SHMEM_MAP reached the frontend\n{}", d.log_text());
        // ... while the other queue gets lookups and reads of other files
        // done (they take no DAX lock) ...
        let q = 2;
        let ok = |r: Result<fuse::Reply, String>, what: &str| {
            let r = r.unwrap_or_else(|e| panic!("{what} while a SHMEM_MAP waits for its ack: {e}\n{}", d.log_text()));
            assert_eq!(r.errno, 0, "{what}");
        };
        ok(c.call_on(q, &fuse::lookup(FUSE_ROOT_ID, "b")), "LOOKUP");
        ok(c.call_on(q, &fuse::getattr(b)), "GETATTR");
        ok(c.call_on(q, &fuse::read(b, bfh, 4096, 8192)), "READ");
        // ... and changes of other files, which the daemon may hold behind
        // the window lock (its design: docs of backend/src/dax), complete
        // once the VMM answers: no deadlock.
        let changes = [
            ("WRITE", fuse::write(b, bfh, 100, b"while held")),
            ("CREATE", fuse::create(FUSE_ROOT_ID, "new", libc::O_RDWR | libc::O_CREAT, 0o644)),
            ("truncate", fuse::truncate(b, 500_000)),
            ("FSYNC", fuse::fsync(b, bfh, false)),
        ];
        let tickets: Vec<_> = changes.iter().map(|(what, r)| (*what, c.submit(q, r).unwrap())).collect();
        // Let them reach the daemon (and wait there) before the VMM answers.
        std::thread::sleep(Duration::from_millis(200));
        assert!(w.held() >= 1 && !t.is_finished(), "the SETUPMAPPING went through while held");
        drop(hold);
        for (what, tk) in tickets {
            ok(c.wait(tk), what);
        }
        let r = t.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.errno, 0, "SETUPMAPPING after the hold");
    });
    let afh = c.open(a, libc::O_RDONLY).unwrap();
    assert_coherent(&c, 1, &w, a, afh, 0, 0, RANGE, "after the slow map");
    let log = finish(c, &w, d, &image);
    assert_eq!(dax_counters(&log).map(|k| k[2]), Some(1), "{log}");
    let mut want = pattern(8, 500_000);
    want[100..110].copy_from_slice(b"while held");
    assert!(debugfs_cat(&image, "b") == want, "b on the image");
}

/// ORs `fl` into the inode flags of `path` (debugfs, daemon stopped).
fn add_inode_flags(image: &Path, path: &str, fl: u32) {
    let st = debugfs(image, &format!("stat /{path}"));
    let flags = st.split("Flags: 0x").nth(1).and_then(|t| t.split_whitespace().next());
    let flags = u32::from_str_radix(flags.unwrap_or_else(|| panic!("no Flags in {st}")), 16).unwrap();
    debugfs_w(image, &format!("set_inode_field /{path} flags {:#x}", flags | fl));
}

#[test]
fn inode_dax_policy_marks_files() {
    let s = Scratch::new("dax-policy");
    let image = image_with(&s, &[("plain", pattern(1, 5000)), ("marked", pattern(2, 5000)), ("tiny", b"x".to_vec())]);
    debugfs_w(&image, "mkdir /dir");
    const FS_DAX_FL: u32 = 0x0200_0000;
    add_inode_flags(&image, "marked", FS_DAX_FL);
    add_inode_flags(&image, "dir", FS_DAX_FL);
    testkit::assert_fsck_clean(&image);
    let bin = ext4_virtiofsd_binary();
    // policy → the names that carry FUSE_ATTR_DAX
    let cases: [(&str, &[&str]); 3] = [("flag", &["marked"]), ("always", &["plain", "marked", "tiny"]), ("never", &[])];
    for (policy, want) in cases {
        let d = start(&bin, &image, &s, policy, &["--inode-dax", policy]);
        let (c, w) = connect(&d, 1);
        let o = c.init_out.lock().unwrap().expect("INIT reply");
        assert!(o.flags2 as u64 & (FUSE_HAS_INODE_DAX >> 32) != 0, "{policy}: FUSE_HAS_INODE_DAX not negotiated");
        for name in ["plain", "marked", "tiny", "dir"] {
            let e = entry(&c, name);
            let dax = e.attr.flags & FUSE_ATTR_DAX != 0;
            assert_eq!(dax, want.contains(&name), "--inode-dax {policy}: FUSE_ATTR_DAX of {name} in LOOKUP");
            let a = c.getattr(e.nodeid).unwrap();
            assert_eq!(a.flags & FUSE_ATTR_DAX != 0, dax, "--inode-dax {policy}: GETATTR of {name} disagrees");
        }
        // The policy only marks; any regular file may still be mapped.
        let e = entry(&c, "plain");
        c.setup_mapping(e.nodeid, NO_FH, 0, RANGE, READ, 0).unwrap();
        let fh = c.open(e.nodeid, libc::O_RDONLY).unwrap();
        assert_coherent(&c, 1, &w, e.nodeid, fh, 0, 0, RANGE, policy);
        finish(c, &w, d, &image);
    }
}

#[test]
fn fallocate_collapse_insert_copy_keep_mappings_coherent() {
    let s = Scratch::new("dax-falloc");
    let image = image_with(&s, &[("src", pattern(31, 300_000))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let src = entry(&c, "src").nodeid;
    let sfh = c.open(src, libc::O_RDONLY).unwrap();
    let (f, fh) = c.create(FUSE_ROOT_ID, "f", 0o644).unwrap();
    let f = f.nodeid;
    c.write(f, fh, 0, &pattern(32, 1 << 20)).unwrap();
    // Two mappings of the file: the first 2 MiB read-only, the next
    // writable (past EOF for now).
    c.setup_mapping(f, NO_FH, 0, RANGE, READ, 0).unwrap();
    c.setup_mapping(f, NO_FH, RANGE, RANGE, RW, RANGE).unwrap();
    let check = |what: &str| {
        assert_coherent(&c, 1, &w, f, fh, 0, 0, RANGE, what);
        assert_coherent(&c, 1, &w, f, fh, RANGE, RANGE, RANGE, what);
    };
    check("start");
    let fa = |off: u64, len: u64, mode: i32, what: &str| {
        let e = c.call(&fuse::fallocate(f, fh, off, len, mode as u32)).errno;
        assert_eq!(e, 0, "{what}: errno {e}\n{}", d.log_text());
        check(what);
    };
    fa(1 << 20, 1 << 20, 0, "fallocate growing the file (unwritten blocks)");
    fa(3 << 20, 4096, libc::FALLOC_FL_KEEP_SIZE, "fallocate past EOF, keep size");
    fa(64 << 10, 64 << 10, libc::FALLOC_FL_ZERO_RANGE, "zero range");
    fa(128 << 10, 256 << 10, libc::FALLOC_FL_COLLAPSE_RANGE, "collapse range (blocks move)");
    fa(256 << 10, 512 << 10, libc::FALLOC_FL_INSERT_RANGE, "insert range (blocks move)");
    let r = c.call(&fuse::copy_file_range(src, sfh, 4096, f, fh, 40_000, 200_000));
    assert_eq!(r.errno, 0, "COPY_FILE_RANGE into a mapped file");
    check("copy_file_range into the file");
    let r = c.call(&fuse::copy_file_range(src, sfh, 0, f, fh, (2 << 20) - 4096, 100_000));
    assert_eq!(r.errno, 0, "COPY_FILE_RANGE growing the file into the writable mapping");
    check("copy_file_range across the two mappings");
    let size = c.getattr(f).unwrap().size;
    w.write_window(RANGE + 8192, b"stored").unwrap_or_else(|e| panic!("store inside EOF ({size}): {e}"));
    let snapshot = w.pieces();
    let want = fuse_bytes(&c, 1, f, fh, 0, size);
    assert_eq!(&want[RANGE as usize + 8192..RANGE as usize + 8198], b"stored");
    finish(c, &w, d, &image);
    assert!(debugfs_cat(&image, "f") == want, "the image differs from what FUSE_READ returned");
    assert_pieces_are_the_files(&image, &snapshot, &[(0, "f", 0), (RANGE, "f", RANGE)]);
}

#[test]
fn writable_mapping_stays_writable_as_the_file_grows() {
    // Linux keeps a range it mapped writable and stores into any page of it
    // inside i_size without asking again: after the file grows (truncate
    // up, WRITE past EOF leaving a hole, fallocate), those pages must take
    // stores.
    let s = Scratch::new("dax-grow-rw");
    let image = image_with(&s, &[("inline", b"small".to_vec()), ("ext", pattern(40, 5000))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let mut failures = Vec::new();
    for (k, name) in ["inline", "ext"].into_iter().enumerate() {
        let n = entry(&c, name).nodeid;
        let fh = c.open(n, libc::O_RDWR).unwrap();
        let m = k as u64 * RANGE;
        c.setup_mapping(n, NO_FH, 0, RANGE, RW, m).unwrap();
        let mut store = |at: u64, what: &str| {
            let tag = format!("{name}: {what}");
            let size = c.getattr(n).unwrap().size;
            let data = &tag.as_bytes()[..tag.len().min((size - at) as usize)];
            match w.write_window(m + at, data) {
                Ok(()) => {
                    let got = fuse_bytes(&c, 1, n, fh, at, data.len() as u64);
                    assert_eq!(got, data, "{tag}: the store does not read back");
                }
                Err(e) => failures.push(format!("{tag}: {e}")),
            }
        };
        store(1, "inside EOF");
        assert_eq!(c.call(&fuse::truncate(n, 1 << 20)).errno, 0);
        store(500_000, "after truncate up");
        c.write(n, fh, 1_500_000, b"end").unwrap();
        store(1_200_000, "in the hole a WRITE past EOF left");
        assert_eq!(c.call(&fuse::fallocate(n, fh, 1_500_003, 300_000, 0)).errno, 0);
        store(1_700_000, "in what fallocate added");
        assert_coherent(&c, 1, &w, n, fh, 0, m, RANGE, name);
    }
    finish(c, &w, d, &image);
    assert!(failures.is_empty(), "stores a Linux guest would make were refused:\n{}", failures.join("\n"));
}

#[test]
fn two_mappings_of_one_range_stay_coherent() {
    // A hole read through one mapping, then filled by a writable mapping of
    // the same range elsewhere in the window (SETUPMAPPING fills holes
    // inside i_size) and stored into: the first mapping shows the store
    // after the next reply (Linux maps a range once per inode; a hostile or
    // multi-queue guest may map it twice).
    let s = Scratch::new("dax-twice");
    let image = image_with(&s, &[]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let (e, fh) = c.create(FUSE_ROOT_ID, "sparse", 0o644).unwrap();
    let n = e.nodeid;
    c.write(n, fh, 0, b"head").unwrap();
    c.write(n, fh, 100_000, b"tail").unwrap();
    c.setup_mapping(n, NO_FH, 0, RANGE, READ, 0).unwrap();
    assert_coherent(&c, 1, &w, n, fh, 0, 0, RANGE, "read mapping of a sparse file");
    c.setup_mapping(n, NO_FH, 0, RANGE, RW, RANGE).unwrap();
    assert_coherent(&c, 1, &w, n, fh, 0, 0, RANGE, "the read mapping after the holes were filled");
    w.write_window(RANGE + 50_000, b"stored in a filled hole").unwrap();
    alive(&c, &d);
    assert_coherent(&c, 1, &w, n, fh, 0, RANGE, RANGE, "the writable mapping");
    assert_coherent(&c, 1, &w, n, fh, 0, 0, RANGE, "the read mapping after a store through the other");
    let snapshot = w.pieces();
    finish(c, &w, d, &image);
    assert_pieces_are_the_files(&image, &snapshot, &[(0, "sparse", 0), (RANGE, "sparse", 0)]);
}

#[test]
fn stores_past_eof_in_the_last_page_never_become_file_data() {
    // A guest may store past EOF inside the last page of a writable
    // mapping (the page is the file's block); those bytes are not file
    // data: when the file grows (truncate up, WRITE past the end) they read
    // as zeros, as on the kernel's ext4.
    let s = Scratch::new("dax-tail");
    let image = image_with(&s, &[("a", pattern(70, 5000)), ("b", pattern(71, 5000)), ("i", b"inline".to_vec())]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let mut models = BTreeMap::new();
    let mut bad = Vec::new();
    for (k, (name, grow)) in [("a", "truncate"), ("b", "write"), ("i", "truncate")].into_iter().enumerate() {
        let n = entry(&c, name).nodeid;
        let fh = c.open(n, libc::O_RDWR).unwrap();
        let m = k as u64 * RANGE;
        c.setup_mapping(n, NO_FH, 0, RANGE, RW, m).unwrap();
        let size = c.getattr(n).unwrap().size;
        let page_end = size.next_multiple_of(PAGE);
        w.write_window(m + size, &vec![0xee; (page_end - size) as usize])
            .unwrap_or_else(|e| panic!("{name}: store past EOF in the last page: {e}"));
        let mut model = fuse_bytes(&c, 1, n, fh, 0, size);
        match grow {
            "truncate" => assert_eq!(c.call(&fuse::truncate(n, 3 * PAGE)).errno, 0),
            _ => {
                c.write(n, fh, 3 * PAGE - 4, b"tail").unwrap();
            }
        }
        model.resize(3 * PAGE as usize, 0);
        if grow == "write" {
            model[3 * PAGE as usize - 4..].copy_from_slice(b"tail");
        }
        let got = fuse_bytes(&c, 1, n, fh, 0, 3 * PAGE);
        if let Some(i) = (0..got.len()).find(|&i| got[i] != model[i]) {
            bad.push(format!(
                "{name}: after {grow} up, byte {i} (old EOF {size}) reads {:#04x}, not {:#04x}",
                got[i], model[i]
            ));
        }
        assert_coherent(&c, 1, &w, n, fh, 0, m, RANGE, name);
        models.insert(name, model);
    }
    finish(c, &w, d, &image);
    for (name, model) in models {
        if debugfs_cat(&image, name) != model {
            bad.push(format!("{name} on the image differs"));
        }
    }
    assert!(bad.is_empty(), "stores past EOF became file data:\n{}", bad.join("\n"));
}

#[test]
fn mappings_end_with_their_session() {
    // With --keep-running, a frontend leaves with mappings in place; the
    // next one frees those files' blocks (truncate, unlink) and gets them
    // back: nothing stays pinned for a window that is gone.
    let s = Scratch::new("dax-sessions");
    let image = image_with(&s, &[("x", pattern(80, 3 << 20)), ("inline", b"inline".to_vec())]);
    let bin = ext4_virtiofsd_binary();
    let socket = s.join("k.sock");
    let mut cmd = ext4_serve(&bin, &image, &socket, TAG, 1, true);
    cmd.args(["--cache-size", &WINDOW.to_string()]);
    let mut d = Daemon::start(cmd, &socket, &s.join("k.log")).unwrap_or_else(|e| panic!("{e}"));
    let bfree =
        |c: &FuseClient| fuse::parse::<fuse_statfs_out>(&c.ok(&fuse::statfs(FUSE_ROOT_ID)).unwrap()).unwrap().st.bfree;
    let (c, w) = connect(&d, 1);
    let base = bfree(&c);
    for (i, name) in ["x", "inline"].into_iter().enumerate() {
        let n = entry(&c, name).nodeid;
        c.setup_mapping(n, NO_FH, 0, RANGE, RW, i as u64 * RANGE).unwrap();
    }
    c.setup_mapping(entry(&c, "x").nodeid, NO_FH, RANGE, RANGE, READ, 2 * RANGE).unwrap();
    w.write_window(0, b"stored before leaving").unwrap();
    drop(c);
    assert_window_sane(&w, &d.log_text());
    let (c, w2) = connect(&d, 1);
    let x = entry(&c, "x").nodeid;
    let fh = c.open(x, libc::O_RDONLY).unwrap();
    assert_eq!(c.read(x, fh, 0, 21).unwrap(), b"stored before leaving", "the store of the first session");
    c.release(x, fh).unwrap();
    assert_eq!(c.call(&fuse::truncate(x, 0)).errno, 0);
    assert_eq!(c.call(&fuse::unlink(FUSE_ROOT_ID, "x", false)).errno, 0);
    assert_eq!(c.call(&fuse::unlink(FUSE_ROOT_ID, "inline", false)).errno, 0);
    let _ = c.submit(1, &fuse::forget(x, 1)).unwrap();
    alive(&c, &d);
    // x's 3 MiB and the inline file's new block are free again (the first
    // session's lookups are gone with it).
    let now = bfree(&c);
    assert!(now >= base + (3 << 20) / PAGE, "blocks stay pinned by a gone session: bfree {base} then {now}");
    assert!(w2.pieces().is_empty(), "the new session's window got pieces: {:#x?}", w2.pieces());
    drop(c);
    let (st, _) = d.terminate();
    assert!(st.is_some(), "{}", d.log_text());
    assert_window_sane(&w2, &d.log_text());
    testkit::assert_fsck_clean(&image);
}

#[test]
fn removemapping_cuts_and_spans() {
    // Not what Linux sends (it removes whole ranges), but a guest may: a
    // removal inside a mapping keeps its other parts, mapped and coherent;
    // one across two mappings and the gap between removes both.
    let s = Scratch::new("dax-cut");
    let image = image_with(&s, &[("f", pattern(90, 3 << 20))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let n = entry(&c, "f").nodeid;
    let fh = c.open(n, libc::O_RDWR).unwrap();
    c.setup_mapping(n, NO_FH, 0, RANGE, RW, 0).unwrap();
    c.remove_mapping(n, &[(RANGE / 4, RANGE / 2)]).unwrap();
    assert!(w.pieces_in(RANGE / 4, RANGE / 2).is_empty(), "the cut part is still mapped: {:#x?}", w.pieces());
    assert_coherent(&c, 1, &w, n, fh, 0, 0, RANGE / 4, "the part before the cut");
    assert_coherent(&c, 1, &w, n, fh, 3 * RANGE / 4, 3 * RANGE / 4, RANGE / 4, "the part after the cut");
    // The parts left still follow the file.
    c.write(n, fh, 10, b"written after the cut").unwrap();
    assert_eq!(c.call(&fuse::truncate(n, 1_800_000)).errno, 0);
    assert_coherent(&c, 1, &w, n, fh, 0, 0, RANGE / 4, "before the cut, after WRITE and truncate");
    assert_coherent(&c, 1, &w, n, fh, 3 * RANGE / 4, 3 * RANGE / 4, RANGE / 4, "after the cut, after truncate");
    c.remove_mapping(n, &[(0, RANGE / 4)]).unwrap();
    c.remove_mapping(n, &[(3 * RANGE / 4, RANGE / 4)]).unwrap();
    assert!(w.pieces().is_empty(), "{:#x?}", w.pieces());
    // Two mappings and the gap between them in one removal.
    c.setup_mapping(n, NO_FH, 0, RANGE, READ, 0).unwrap();
    c.setup_mapping(n, NO_FH, RANGE, RANGE, READ, 2 * RANGE).unwrap();
    c.remove_mapping(n, &[(0, 3 * RANGE)]).unwrap();
    assert!(w.pieces().is_empty(), "{:#x?}", w.pieces());
    // Several entries in one request, one of them never mapped: refused
    // (EINVAL), and the window keeps the mapping it had.
    c.setup_mapping(n, NO_FH, 0, RANGE, READ, 0).unwrap();
    let r = c.call(&fuse::removemapping(n, &[(0, RANGE), (4 * RANGE, RANGE)]));
    if r.errno == 0 {
        assert!(w.pieces().is_empty(), "accepted but not removed: {:#x?}", w.pieces());
    } else {
        assert_coherent(&c, 1, &w, n, fh, 0, 0, RANGE, "after a refused removal");
    }
    finish(c, &w, d, &image);
}

#[test]
fn other_ways_to_free_mapped_blocks() {
    // OPEN with O_TRUNC, RENAME over a mapped file, and an unlink that
    // leaves another hard link: the window shows zeros for freed blocks
    // (never the data of a file that reuses them), the file's bytes while
    // they are still its own.
    let s = Scratch::new("dax-otrunc");
    let image =
        image_with(&s, &[("t", pattern(91, 1 << 20)), ("r", pattern(92, 1 << 20)), ("l", pattern(93, 1 << 20))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let t = entry(&c, "t").nodeid;
    let r = entry(&c, "r").nodeid;
    let l = entry(&c, "l").nodeid;
    for (i, n) in [t, r, l].into_iter().enumerate() {
        c.setup_mapping(n, NO_FH, 0, RANGE, READ, i as u64 * RANGE).unwrap();
    }
    let reuse = |name: &str, tag: u64| {
        let (e, fh) = c.create(FUSE_ROOT_ID, name, 0o644).unwrap();
        c.write(e.nodeid, fh, 0, &pattern(tag, 6 << 20)).unwrap();
        assert_eq!(c.call(&fuse::fsync(e.nodeid, fh, false)).errno, 0);
        c.release(e.nodeid, fh).unwrap();
    };
    let zeros = |m: u64, what: &str| {
        let win = w.read_window(m, 1 << 20).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(win.iter().all(|&b| b == 0), "{what}: the window shows freed blocks' new contents");
    };
    // OPEN with O_TRUNC truncates (FUSE_ATOMIC_O_TRUNC).
    let fh = c.open(t, libc::O_RDWR | libc::O_TRUNC).unwrap();
    assert_eq!(c.getattr(t).unwrap().size, 0, "O_TRUNC did not truncate");
    reuse("n1", 94);
    zeros(0, "after OPEN O_TRUNC");
    assert_coherent(&c, 1, &w, t, fh, 0, 0, RANGE, "after OPEN O_TRUNC");
    // RENAME over r: r's last link goes (its node is still looked up, so
    // its blocks stay until FORGET).
    let (o, ofh) = c.create(FUSE_ROOT_ID, "other", 0o644).unwrap();
    c.write(o.nodeid, ofh, 0, b"replacement").unwrap();
    c.release(o.nodeid, ofh).unwrap();
    assert_eq!(c.call(&fuse::rename(FUSE_ROOT_ID, "other", FUSE_ROOT_ID, "r")).errno, 0);
    assert_eq!(w.read_window(RANGE, 1 << 20).unwrap(), pattern(92, 1 << 20), "r replaced but still looked up");
    let _ = c.submit(1, &fuse::forget(r, 1)).unwrap();
    alive(&c, &d);
    reuse("n2", 95);
    if let Ok(win) = w.read_window(RANGE, 1 << 20) {
        let old = pattern(92, 1 << 20);
        assert!(win.iter().zip(&old).all(|(a, b)| a == b || *a == 0), "r's window shows another file's data");
    }
    // A second link keeps l's blocks: unlinking one name changes nothing.
    assert_eq!(c.call(&fuse::link(l, FUSE_ROOT_ID, "l2")).errno, 0);
    assert_eq!(c.call(&fuse::unlink(FUSE_ROOT_ID, "l", false)).errno, 0);
    reuse("n3", 96);
    assert_eq!(w.read_window(2 * RANGE, 1 << 20).unwrap(), pattern(93, 1 << 20), "l still has a link");
    finish(c, &w, d, &image);
    assert!(debugfs_cat(&image, "l2") == pattern(93, 1 << 20));
}

#[test]
fn vmm_that_cannot_map_gets_errors_not_confusion() {
    // The VMM fails SHMEM_MAPs (out of memory, say): SETUPMAPPING fails,
    // the daemon keeps serving, and its idea of the window stays the
    // frontend's (no unmap of what is not mapped, no overlap later).
    let s = Scratch::new("dax-vmmfail");
    let image = image_with(&s, &[("f", pattern(97, 3 << 20)), ("i", b"inline".to_vec())]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let f = entry(&c, "f").nodeid;
    let fh = c.open(f, libc::O_RDWR).unwrap();
    let i = entry(&c, "i").nodeid;
    // The 3 MiB file's second range maps as an image piece and a zero
    // piece (in that order): fail the first, then the second (the first
    // must be undone).
    for (k, fail_after) in [0u64, 1].into_iter().enumerate() {
        let m = k as u64 * RANGE;
        w.fail_maps(fail_after, 1);
        let before = w.failed_on_purpose();
        let r = c.call(&fuse::setupmapping(f, NO_FH, RANGE, RANGE, READ, m));
        w.fail_maps(0, 0);
        assert!(w.failed_on_purpose() > before, "no SHMEM_MAP was sent");
        assert_ne!(r.errno, 0, "SETUPMAPPING succeeded though the VMM failed a map");
        alive(&c, &d);
        assert!(w.pieces_in(m, RANGE).is_empty(), "a failed SETUPMAPPING left pieces: {:#x?}", w.pieces());
        // The same range maps fine afterwards.
        c.setup_mapping(f, NO_FH, RANGE, RANGE, READ, m)
            .unwrap_or_else(|e| panic!("retry: errno {e}\n{}", d.log_text()));
        assert_coherent(&c, 1, &w, f, fh, RANGE, m, RANGE, "after a failed map");
    }
    // An inline file whose conversion happened but whose map failed: the
    // file reads right, maps on retry, converted once.
    w.fail_maps(0, 1);
    assert_ne!(c.call(&fuse::setupmapping(i, NO_FH, 0, RANGE, RW, 4 * RANGE)).errno, 0);
    let ifh = c.open(i, libc::O_RDWR).unwrap();
    assert_eq!(c.read(i, ifh, 0, 100).unwrap(), b"inline");
    c.setup_mapping(i, NO_FH, 0, RANGE, RW, 4 * RANGE).unwrap();
    assert_coherent(&c, 1, &w, i, ifh, 0, 4 * RANGE, RANGE, "inline after a failed map");
    // A WRITE that must remap a piece while the VMM fails: the WRITE's data
    // is on the image whatever the window says.
    w.fail_maps(0, 1);
    let r = c.call(&fuse::write(f, fh, RANGE + 100, b"written while the VMM fails"));
    w.fail_maps(0, 0);
    assert!(r.errno == 0 || r.errno == libc::EIO, "WRITE while the VMM fails: errno {}", r.errno);
    assert_eq!(c.read(f, fh, RANGE + 100, 27).unwrap(), b"written while the VMM fails");
    alive(&c, &d);
    finish(c, &w, d, &image);
}

#[test]
fn conversion_at_setup_races_writes_to_the_same_file() {
    // A SETUPMAPPING that converts an inline file and a WRITE that grows
    // the same file (converting it too) on two queues at once: either
    // order, the bytes are the WRITE's plus the old ones, the mapping shows
    // them, e2fsck is clean.
    let s = Scratch::new("dax-race");
    let image = image_with(&s, &[]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 2);
    let mut models = Vec::new();
    for round in 0..40u64 {
        let name = format!("r{round}");
        let (e, fh) = c.create(FUSE_ROOT_ID, &name, 0o644).unwrap();
        let n = e.nodeid;
        let first = pattern(round, 40);
        c.write(n, fh, 0, &first).unwrap();
        let m = (round % 16) * RANGE;
        let flags = if round % 2 == 0 { RW } else { READ };
        let (off, len) = [(20u64, 30usize), (100, 50), (3000, 2000), (40, 10)][round as usize % 4];
        let data = pattern(1000 + round, len);
        std::thread::scope(|sc| {
            let a = sc.spawn(|| c.call_on(1, &fuse::setupmapping(n, NO_FH, 0, RANGE, flags, m)));
            let b = sc.spawn(|| c.call_on(2, &fuse::write(n, fh, off, &data)));
            assert_eq!(a.join().unwrap().unwrap().errno, 0, "round {round}: SETUPMAPPING");
            assert_eq!(b.join().unwrap().unwrap().errno, 0, "round {round}: WRITE");
        });
        let mut model = first;
        model.resize(model.len().max(off as usize + len), 0);
        model[off as usize..off as usize + len].copy_from_slice(&data);
        assert!(c.read_all(n, fh, 8192).unwrap() == model, "round {round}: READ differs from the model");
        assert_coherent(&c, 1, &w, n, fh, 0, m, RANGE, &format!("round {round}"));
        c.release(n, fh).unwrap();
        models.push((name, model));
    }
    let log = finish(c, &w, d, &image);
    // The 20 rounds whose WRITE keeps the file inline (50 bytes) convert at
    // setup whatever the order; the others at setup or in the WRITE.
    assert!(dax_counters(&log).is_some_and(|k| (20..=40).contains(&k[2])), "conversions at setup:\n{log}");
    for (name, model) in models {
        assert!(debugfs_cat(&image, &name) == model, "{name} on the image differs from the model");
    }
}

/// Pages of the file range that two slots both map: an image block in
/// one must be the same image block in the other.
fn assert_slots_agree(w: &DaxWindow, meta: &std::fs::Metadata, a: u64, b: u64, what: &str) {
    let page_of = |slot: u64, k: u64| {
        w.pieces_in(slot + k * PAGE, 1).first().map(|p| (p.maps(meta), p.fd_offset + (slot + k * PAGE - p.shm_offset)))
    };
    for k in 0..RANGE / PAGE {
        let (x, y) = (page_of(a, k), page_of(b, k));
        if let (Some((true, fx)), Some((iy, fy))) | (Some((iy, fy)), Some((true, fx))) = (x, y) {
            assert!(
                iy && fx == fy,
                "{what}: file page {k}: one mapping shows image byte {fx:#x}, the other {:?}",
                (iy, fy)
            );
        }
    }
}

#[test]
fn one_file_many_ops_two_mappings_agree() {
    let s = Scratch::new("dax-agree");
    let image = image_with(&s, &[("f", b"inline data".to_vec())]);
    let bin = ext4_virtiofsd_binary();
    let meta = image_meta(&image);
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let n = entry(&c, "f").nodeid;
    let fh = c.open(n, libc::O_RDWR).unwrap();
    let (a, b) = (0, RANGE);
    c.setup_mapping(n, NO_FH, 0, RANGE, READ, a).unwrap();
    c.setup_mapping(n, NO_FH, 0, RANGE, READ, b).unwrap();
    let mut rng = Rng(77);
    let mut log = Vec::new();
    for step in 0..400 {
        let slot = if rng.chance(50) { a } else { b };
        let op = match rng.below(5) {
            0 => {
                let off = rng.below(6000);
                let len = rng.length(70, 50, 3000);
                c.write(n, fh, off, &pattern(step, len as usize)).unwrap();
                format!("WRITE {off}+{len}")
            }
            1 => {
                let size = if rng.chance(60) { rng.below(60) } else { rng.below(9000) };
                assert_eq!(c.call(&fuse::truncate(n, size)).errno, 0);
                format!("truncate {size}")
            }
            2 => {
                c.setup_mapping(n, NO_FH, 0, RANGE, RW, slot).unwrap();
                format!("SETUPMAPPING RW at {slot:#x}")
            }
            3 => {
                c.remove_mapping(n, &[(slot, RANGE)]).unwrap();
                c.setup_mapping(n, NO_FH, 0, RANGE, READ, slot).unwrap();
                format!("REMOVEMAPPING + SETUPMAPPING READ at {slot:#x}")
            }
            _ => {
                c.setup_mapping(n, NO_FH, 0, RANGE, READ, slot).unwrap();
                format!("SETUPMAPPING READ at {slot:#x}")
            }
        };
        log.push(op);
        let what = format!("step {step}, after: {}", log[log.len().saturating_sub(6)..].join("; "));
        assert_slots_agree(&w, &meta, a, b, &what);
        assert_coherent(&c, 1, &w, n, fh, 0, a, RANGE, &what);
        assert_coherent(&c, 1, &w, n, fh, 0, b, RANGE, &what);
    }
    finish(c, &w, d, &image);
}

#[test]
fn reclaim_through_a_small_window() {
    // 40 MiB of data through an 8 MiB window (4 ranges): the guest reclaims
    // the oldest range (REMOVEMAPPING) to map the next, as Linux does when
    // its window is full, and keeps checking what it maps.
    let s = Scratch::new("dax-reclaim");
    let data = pattern(21, 40 << 20);
    let image = image_with(&s, &[("big", data.clone())]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &["--cache-size", "8M"]);
    let (c, w) = connect_sized(&d, 1, 8 << 20);
    let e = entry(&c, "big");
    let fh = c.open(e.nodeid, libc::O_RDWR).unwrap();
    let mut model = data;
    let slots = 4u64;
    let mut lru: std::collections::VecDeque<u64> = (0..slots).collect();
    let mut owner: BTreeMap<u64, u64> = BTreeMap::new(); // slot → file range
    let mut rng = Rng(5);
    for step in 0..120u64 {
        let range = rng.below(20);
        let slot = match owner.iter().find(|(_, r)| **r == range) {
            Some((&sl, _)) => sl,
            None => {
                let sl = lru.pop_front().unwrap();
                if owner.remove(&sl).is_some() {
                    c.remove_mapping(e.nodeid, &[(sl * RANGE, RANGE)])
                        .unwrap_or_else(|er| panic!("step {step}: errno {er}"));
                    assert!(w.pieces_in(sl * RANGE, RANGE).is_empty(), "step {step}: REMOVEMAPPING left pieces");
                }
                let flags = if rng.chance(50) { RW } else { READ };
                c.setup_mapping(e.nodeid, NO_FH, range * RANGE, RANGE, flags, sl * RANGE).unwrap();
                owner.insert(sl, range);
                lru.push_back(sl);
                sl
            }
        };
        let m = slot * RANGE;
        let off = rng.below(RANGE - 64);
        let at = (range * RANGE + off) as usize;
        assert_eq!(w.read_window(m + off, 64).unwrap(), model[at..at + 64], "step {step}: range {range}");
        if w.pieces_in(m + off, 8).iter().all(|p| p.writable) {
            let b = pattern(1000 + step, 8);
            w.write_window(m + off, &b).unwrap();
            model[at..at + 8].copy_from_slice(&b);
        } else {
            // Writes through FUSE show in the read mapping.
            let b = pattern(2000 + step, 8);
            c.write(e.nodeid, fh, at as u64, &b).unwrap();
            model[at..at + 8].copy_from_slice(&b);
            assert_eq!(w.read_window(m + off, 8).unwrap(), b, "step {step}: WRITE not seen through the mapping");
        }
    }
    for (&sl, &r) in &owner {
        assert_coherent(&c, 1, &w, e.nodeid, fh, r * RANGE, sl * RANGE, RANGE, "at the end");
    }
    let log = finish(c, &w, d, &image);
    assert!(dax_counters(&log).is_some_and(|k| k[1] > 0), "no REMOVEMAPPING counted:\n{log}");
    assert!(debugfs_cat(&image, "big") == model, "the image differs from the model");
}

#[test]
fn window_from_the_config_file() {
    let s = Scratch::new("dax-config");
    let image = image_with(&s, &[("f", pattern(60, 5000))]);
    let bin = ext4_virtiofsd_binary();
    let socket = s.join("c.sock");
    let config = s.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "image = {:?}\nsocket_path = {:?}\ntag = {TAG:?}\ncache_size = \"16M\"\ninode_dax = \"always\"\n",
            image.to_str().unwrap(),
            socket.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("serve").arg("--config").arg(&config).args(["--log-level", "info"]);
    let d = Daemon::start(cmd, &socket, &s.join("c.log")).unwrap_or_else(|e| panic!("{e}"));
    let (c, w) = connect_sized(&d, 1, 16 << 20);
    let e = entry(&c, "f");
    assert!(e.attr.flags & FUSE_ATTR_DAX != 0, "inode_dax = \"always\" from the config");
    c.setup_mapping(e.nodeid, NO_FH, 0, RANGE, READ, 7 * RANGE).unwrap();
    let fh = c.open(e.nodeid, libc::O_RDONLY).unwrap();
    assert_coherent(&c, 1, &w, e.nodeid, fh, 0, 7 * RANGE, RANGE, "config window");
    assert_ne!(c.call(&fuse::setupmapping(e.nodeid, NO_FH, 0, RANGE, READ, 8 * RANGE)).errno, 0, "past 16M");
    finish(c, &w, d, &image);
}

#[test]
fn no_window_without_cache_size() {
    let s = Scratch::new("dax-none");
    let image = image_with(&s, &[("f", b"data".to_vec())]);
    let bin = ext4_virtiofsd_binary();
    for (name, extra) in [("default", &[][..]), ("zero", &["--cache-size", "0"][..])] {
        let socket = s.join(format!("{name}.sock"));
        let mut cmd = ext4_serve(&bin, &image, &socket, TAG, 1, false);
        cmd.args(extra);
        let d = Daemon::start(cmd, &socket, &s.join(format!("{name}.log"))).unwrap_or_else(|e| panic!("{e}"));
        // A VMM that wants a window is told there is none ...
        let opts = SessionOptions { dax_window: true, ..Default::default() };
        let err = FuseClient::connect(&d.socket, &opts).err().expect("a window without --cache-size");
        assert!(err.contains("SHMEM"), "{name}: {err}");
        drop(d);
        // ... and a guest asking for mappings without one gets an error.
        let d = Daemon::start(
            {
                let mut cmd = ext4_serve(&bin, &image, &socket, TAG, 1, false);
                cmd.args(extra);
                cmd
            },
            &socket,
            &s.join(format!("{name}-2.log")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = FuseClient::connect(&d.socket, &SessionOptions::default()).unwrap();
        c.init_with(fuse::DAX_INIT_FLAGS, 0).unwrap();
        let n = entry(&c, "f").nodeid;
        assert_ne!(c.call(&fuse::setupmapping(n, NO_FH, 0, RANGE, READ, 0)).errno, 0, "{name}: SETUPMAPPING");
        assert_ne!(c.call(&fuse::removemapping(n, &[(0, RANGE)])).errno, 0, "{name}: REMOVEMAPPING");
        alive(&c, &d);
        drop(c);
        let mut d = d;
        assert!(d.stop(Duration::from_secs(60)).0.is_some_and(|s| s.success()), "{}", d.log_text());
    }
    testkit::assert_fsck_clean(&image);
}

#[test]
fn hostile_setupmapping_and_removemapping() {
    let s = Scratch::new("dax-hostile");
    let data = pattern(9, 3 << 20);
    let image = image_with(&s, &[("f", data.clone()), ("i", b"inline".to_vec())]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    let e = entry(&c, "f");
    let n = e.nodeid;
    let fh = c.open(n, libc::O_RDONLY).unwrap();
    c.setup_mapping(n, NO_FH, 0, RANGE, READ, 0).unwrap();
    let bad: [(&str, u64, u64, u64, u64, u64); 11] = [
        // (what, node, foffset, len, flags, moffset)
        ("moffset at the window's end", n, 0, RANGE, READ, WINDOW),
        ("range past the window's end", n, 0, RANGE, READ, WINDOW - PAGE),
        ("moffset far outside", n, 0, RANGE, READ, 1 << 50),
        ("moffset + len overflows", n, 0, RANGE, READ, u64::MAX - PAGE + 1),
        ("foffset + len overflows", n, u64::MAX - PAGE + 1, RANGE, READ, RANGE),
        ("len overflows the window", n, 0, u64::MAX - PAGE + 1, READ, RANGE),
        ("unaligned moffset", n, 0, RANGE, READ, RANGE + 1),
        ("unaligned foffset", n, 1, RANGE, READ, RANGE),
        ("unaligned len", n, 0, 1000, READ, RANGE),
        ("zero len", n, 0, 0, READ, RANGE),
        ("node never looked up", 0xdead_beef, 0, RANGE, READ, RANGE),
    ];
    let mut accepted = Vec::new();
    for (what, node, foff, len, flags, moff) in bad {
        let r = c.call(&fuse::setupmapping(node, NO_FH, foff, len, flags, moff));
        if r.errno == 0 {
            accepted.push(what);
            let _ = c.remove_mapping(node, &[(moff, len.next_multiple_of(PAGE))]);
        }
        alive(&c, &d);
    }

    // A mapping overlapping a live one replaces it: the daemon unmaps the
    // old pieces first, QEMU would refuse an overlapping SHMEM_MAP.
    c.setup_mapping(n, NO_FH, RANGE, RANGE, READ, RANGE / 2).unwrap_or_else(|e| {
        panic!("overlapping SETUPMAPPING: errno {e}; window refused {:#?}\n{}", w.refusals(), d.log_text())
    });
    assert_coherent(&c, 1, &w, n, fh, RANGE, RANGE / 2, RANGE, "overlapping map");
    if let Ok(rest) = w.read_window(0, (RANGE / 2) as usize) {
        assert!(rest == data[..(RANGE / 2) as usize], "what remains of the old mapping is not its data");
    }
    let bad_remove: [(&str, fuse::Request); 8] = [
        ("a range never mapped", fuse::removemapping(n, &[(8 * RANGE, RANGE)])),
        ("an unaligned length", fuse::removemapping(n, &[(RANGE / 2, 1000)])),
        ("an unaligned offset", fuse::removemapping(n, &[(RANGE / 2 + 1000, PAGE)])),
        ("a range outside the window", fuse::removemapping(n, &[(WINDOW, RANGE)])),
        ("a range that overflows", fuse::removemapping(n, &[(u64::MAX - PAGE + 1, RANGE)])),
        ("count larger than the request", fuse::removemapping_count(n, 5, &[(RANGE / 2, RANGE)])),
        ("count u32::MAX", fuse::removemapping_count(n, u32::MAX, &[(RANGE / 2, RANGE)])),
        ("count 1 with no entry", fuse::removemapping_count(n, 1, &[])),
    ];
    for (what, req) in bad_remove {
        let before = w.pieces();
        let r = c.call(&req);
        if r.errno == 0 {
            accepted.push(what);
        } else if w.pieces() != before {
            accepted.push(what);
            panic!(
                "REMOVEMAPPING of {what} failed (errno {}) but changed the window: {before:#x?} -> {:#x?}",
                r.errno,
                w.pieces()
            );
        }
        alive(&c, &d);
    }

    // The live mapping survived all of it.
    assert_coherent(&c, 1, &w, n, fh, RANGE, RANGE / 2, RANGE, "after hostile requests");
    c.remove_mapping(n, &[(RANGE / 2, RANGE)]).unwrap();
    assert!(w.pieces_in(RANGE / 2, RANGE).is_empty(), "REMOVEMAPPING left pieces: {:#x?}", w.pieces());

    // Writable mappings of files that may not be written.
    let attrs = [("immutable", 0x10u32, libc::EPERM), ("append", 0x20, libc::EPERM)];
    for (name, _, _) in attrs {
        let (x, xfh) = c.create(FUSE_ROOT_ID, name, 0o644).unwrap();
        c.write(x.nodeid, xfh, 0, b"data").unwrap();
        c.release(x.nodeid, xfh).unwrap();
    }
    finish(c, &w, d, &image);
    for (name, fl, _) in attrs {
        add_inode_flags(&image, name, fl);
    }
    testkit::assert_fsck_clean(&image);
    let d = start(&bin, &image, &s, "d2", &[]);
    let (c, w) = connect(&d, 1);
    for (i, (name, _, errno)) in attrs.into_iter().enumerate() {
        let x = entry(&c, name).nodeid;
        let r = c.call(&fuse::setupmapping(x, NO_FH, 0, RANGE, RW, i as u64 * RANGE));
        assert_eq!(r.errno, errno, "writable mapping of an {name} file");
        c.setup_mapping(x, NO_FH, 0, RANGE, READ, i as u64 * RANGE).unwrap();
        assert!(w.write_window(i as u64 * RANGE, b"x").is_err(), "{name}: writable");
    }
    finish(c, &w, d, &image);

    // A read-only image: writable mappings are EROFS; read mappings work;
    // an inline file is never converted (the image does not change).
    let before = std::fs::read(&image).unwrap();
    let d = start(&bin, &image, &s, "d3", &["--read-only"]);
    let (c, w) = connect(&d, 1);
    let f = entry(&c, "f").nodeid;
    let i = entry(&c, "i").nodeid;
    assert_eq!(c.call(&fuse::setupmapping(f, NO_FH, 0, RANGE, RW, 0)).errno, libc::EROFS);
    assert!(w.pieces().is_empty(), "a refused mapping left pieces: {:#x?}", w.pieces());
    c.setup_mapping(f, NO_FH, 0, RANGE, READ, 0).unwrap();
    let ffh = c.open(f, libc::O_RDONLY).unwrap();
    assert_coherent(&c, 1, &w, f, ffh, 0, 0, RANGE, "read-only image");
    assert_eq!(c.call(&fuse::setupmapping(i, NO_FH, 0, RANGE, RW, RANGE)).errno, libc::EROFS);
    let r = c.call(&fuse::setupmapping(i, NO_FH, 0, RANGE, READ, RANGE));
    if r.errno == 0 {
        let ifh = c.open(i, libc::O_RDONLY).unwrap();
        assert_coherent(&c, 1, &w, i, ifh, 0, RANGE, RANGE, "inline file on a read-only image");
    }
    drop(c);
    let mut d = d;
    let (st, _) = d.stop(Duration::from_secs(60));
    assert!(st.is_some_and(|s| s.success()), "{}", d.log_text());
    assert_window_sane(&w, &d.log_text());
    assert!(std::fs::read(&image).unwrap() == before, "a read-only session changed the image");
    assert!(accepted.is_empty(), "hostile SETUPMAPPING / REMOVEMAPPING accepted: {accepted:?}");
}

#[test]
fn hostile_nodes_and_far_offsets() {
    let s = Scratch::new("dax-nodes");
    let image = image_with(&s, &[("f", pattern(50, 10_000))]);
    let bin = ext4_virtiofsd_binary();
    let d = start(&bin, &image, &s, "d", &[]);
    let (c, w) = connect(&d, 1);
    // Directories and symlinks are no files to map: their blocks are
    // metadata, which the window never shows.
    let dir =
        c.ok(&fuse::mkdir(FUSE_ROOT_ID, "dir", 0o755)).map(|b| fuse::parse::<fuse_entry_out>(&b).unwrap()).unwrap();
    for i in 0..200 {
        let (e, fh) = c.create(dir.nodeid, &format!("entry-with-a-long-name-{i:04}"), 0o644).unwrap();
        c.release(e.nodeid, fh).unwrap();
    }
    let slow = "t".repeat(300);
    let sl =
        c.ok(&fuse::symlink(FUSE_ROOT_ID, "slow", &slow)).map(|b| fuse::parse::<fuse_entry_out>(&b).unwrap()).unwrap();
    let fast =
        c.ok(&fuse::symlink(FUSE_ROOT_ID, "fast", "x")).map(|b| fuse::parse::<fuse_entry_out>(&b).unwrap()).unwrap();
    for (what, node) in [
        ("the root", FUSE_ROOT_ID),
        ("a directory", dir.nodeid),
        ("a symlink", sl.nodeid),
        ("a fast symlink", fast.nodeid),
    ] {
        for flags in [READ, RW] {
            let r = c.call(&fuse::setupmapping(node, NO_FH, 0, RANGE, flags, 0));
            assert_ne!(r.errno, 0, "SETUPMAPPING of {what} (flags {flags}) accepted: pieces {:#x?}", w.pieces());
        }
    }
    assert!(w.pieces().is_empty(), "{:#x?}", w.pieces());
    // Far past EOF: zeros, and a writable mapping there allocates nothing.
    let f = entry(&c, "f").nodeid;
    let fh = c.open(f, libc::O_RDWR).unwrap();
    let free =
        |c: &FuseClient| fuse::parse::<fuse_statfs_out>(&c.ok(&fuse::statfs(FUSE_ROOT_ID)).unwrap()).unwrap().st.bfree;
    let before = free(&c);
    for (i, foff) in [1u64 << 30, 1 << 40].into_iter().enumerate() {
        let m = i as u64 * RANGE;
        c.setup_mapping(f, NO_FH, foff, RANGE, RW, m)
            .unwrap_or_else(|e| panic!("SETUPMAPPING at {foff:#x}: errno {e}"));
        assert_coherent(&c, 1, &w, f, fh, foff, m, RANGE, "far past EOF");
        assert!(w.pieces_in(m, RANGE).iter().all(|p| !p.writable), "writable pieces past EOF: {:#x?}", w.pieces());
    }
    assert_eq!(free(&c), before, "a writable mapping past EOF allocated blocks");
    // Beyond the largest file ext4 holds (16 TiB with 4 KiB blocks).
    let r = c.call(&fuse::setupmapping(f, NO_FH, 1 << 50, RANGE, READ, 2 * RANGE));
    if r.errno == 0 {
        assert_coherent(&c, 1, &w, f, fh, 1 << 50, 2 * RANGE, RANGE, "beyond the largest file");
    }
    alive(&c, &d);
    finish(c, &w, d, &image);
}

fn debugfs_w(image: &Path, req: &str) {
    let out = Command::new("debugfs").args(["-w", "-R", req]).arg(image).output().expect("run debugfs");
    assert!(out.status.success(), "debugfs -w {req}: {}", String::from_utf8_lossy(&out.stderr));
}
