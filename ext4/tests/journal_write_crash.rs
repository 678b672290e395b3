//! Crash atomicity of journaled writes. An image is opened on a
//! [`RecordingDevice`] and goes through many transactions, each rewriting a
//! random set of a file's blocks (journaled as metadata, some beginning
//! with the jbd2 magic) and sometimes an inode's mtime; some revoke a block
//! that then receives unjournaled data (the block reused as file data, the
//! case revoke records exist for); one checkpoint happens on request, the
//! others when the log fills, and the log wraps.
//!
//! Then, for every flush point of the recorded history and two torn states
//! between each pair of flushes (a random subset of the pending writes, per
//! block), our recovery must yield exactly the state after transactions
//! 1..m, for an m between the transactions durable at that point and those
//! whose commit block may have reached the disk: every transaction whole or
//! not at all, none committed before the point lost, and no revoked block
//! overwritten by a stale copy. On a sample of points e2fsck's replay must
//! agree block for block and leave a clean file system.

mod common;
mod journal_support;
mod journal_write_support;

use common::Scratch;
use common::tools::{assert_fsck_clean, mkfs};
use ext4::Ext4;
use ext4::io::recording_device::{CrashPoint, Op, RecordingDevice};
use ext4::io::{BlockDevice, MemDevice};
use journal_support::*;
use journal_write_support::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// Blocks of the rewritten file.
const FILE_BLOCKS: usize = 160;
/// Files whose mtimes transactions change.
const MTIME_FILES: usize = 6;
const TRANSACTIONS: u32 = 140;
/// Stamp of the unjournaled data written into revoked blocks.
const DATA_STAMP: u32 = 0xDA7A_0000;

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Contents of file block `j` as written by transaction `tid` (0: as
/// mke2fs wrote it; `DATA_STAMP + j`: unjournaled data). The stamp at
/// bytes 8..16 names the writer; some blocks begin with the jbd2 magic.
fn content(tid: u32, j: usize, bs: usize) -> Vec<u8> {
    let mut b = pattern(tid as u64 * 1000 + j as u64, bs);
    b[..4].copy_from_slice(if (tid as usize + j) % 5 == 0 { &[0xC0, 0x3B, 0x39, 0x98] } else { b"DATA" });
    b[8..12].copy_from_slice(&tid.to_le_bytes());
    b[12..16].copy_from_slice(&(j as u32).to_le_bytes());
    b
}

fn stamp(block: &[u8]) -> (u32, u32) {
    (u32::from_le_bytes(block[8..12].try_into().unwrap()), u32::from_le_bytes(block[12..16].try_into().unwrap()))
}

/// One transaction of the history.
struct Tx {
    tid: u32,
    /// File blocks (by index) written.
    writes: Vec<usize>,
    /// (file index, mtime) set.
    mtime: Option<(usize, u32)>,
    /// Flush count after which it is durable.
    durable_at: usize,
}

/// A file block revoked by a transaction and then given unjournaled data.
struct Retired {
    j: usize,
    /// Index in the history of the revoking transaction.
    by: usize,
    /// Flush count after which the data is durable.
    data_durable_at: usize,
}

struct History {
    bs: usize,
    base: Vec<u8>,
    file: Vec<u64>,
    inodes: Vec<u32>,
    orig_mtimes: Vec<u32>,
    txs: Vec<Tx>,
    retired: Vec<Retired>,
    dev: Arc<RecordingDevice>,
    /// Byte offset of the journal superblock.
    jsb_offset: u64,
}

fn build(case: &str, bs: usize, mkfs_args: &[&str], s: &Scratch) -> History {
    let src = s.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..FILE_BLOCKS).flat_map(|j| content(0, j, bs)).collect();
    std::fs::write(src.join("f"), data).unwrap();
    for i in 0..MTIME_FILES {
        std::fs::write(src.join(format!("m{i}")), format!("{i}")).unwrap();
    }
    let img = s.join("base");
    mkfs(&img, "8M", Some(&src), mkfs_args);
    let f_ino = inode_of(&img, "/f");
    let jsb_block: u64 = String::from_utf8_lossy(&debugfs_bytes(&img, "bmap <8> 0")).trim().parse().unwrap();
    let inodes: Vec<u32> = (0..MTIME_FILES).map(|i| inode_of(&img, &format!("/m{i}"))).collect();
    let base = std::fs::read(&img).unwrap();

    let dev = Arc::new(RecordingDevice::new(Arc::new(MemDevice::new(base.clone()))));
    let fs = Ext4::open_device(dev.clone(), &read_write()).unwrap();
    let file = file_blocks(&fs, f_ino);
    assert_eq!(file.len(), FILE_BLOCKS);
    let orig_mtimes: Vec<u32> = inodes.iter().map(|&i| fs.read_inode(i).unwrap().mtime().secs as u32).collect();
    let tx = fs.tx().unwrap();
    let mut rng = Rng(0x1234_5678_9ABC_DEF1 ^ bs as u64);
    let mut txs: Vec<Tx> = Vec::new();
    let mut retired: Vec<Retired> = Vec::new();
    let is_retired = |retired: &[Retired], j: usize| retired.iter().any(|r| r.j == j);
    for n in 0..TRANSACTIONS {
        let mut h = fs.begin().unwrap();
        let mut writes = Vec::new();
        // Mostly small transactions; every 4th is larger than the log's
        // reserve, so it reaches into space a checkpoint just released.
        let count = if n % 4 == 3 { 100 + rng.below(60) } else { 1 + rng.below(20) };
        for _ in 0..count {
            let j = rng.below(FILE_BLOCKS as u64) as usize;
            if !writes.contains(&j) && !is_retired(&retired, j) {
                writes.push(j);
            }
        }
        if writes.is_empty() {
            writes.extend((0..FILE_BLOCKS).find(|&j| !is_retired(&retired, j)));
        }
        // The tid this transaction gets (commit returns it; checked below).
        let tid = fs.tx().unwrap().stats().commits as u32 + 1;
        for &j in &writes {
            h.write(file[j], content(tid, j, bs));
        }
        let mtime = (n % 3 == 0).then(|| (rng.below(MTIME_FILES as u64) as usize, 1_000_000 + tid));
        if let Some((i, t)) = mtime {
            stage_mtime(&fs, &mut h, inodes[i], t);
        }
        // Every 10th transaction retires a block some earlier one wrote.
        let revoke = (n % 10 == 9)
            .then(|| {
                txs.iter()
                    .rev()
                    .flat_map(|t| t.writes.iter().copied())
                    .find(|&j| !writes.contains(&j) && !is_retired(&retired, j))
            })
            .flatten();
        if let Some(j) = revoke {
            h.revoke(file[j]);
        }
        h.finish();
        assert_eq!(tx.commit().unwrap(), Some(tid), "{case}");
        txs.push(Tx { tid, writes, mtime, durable_at: dev.flushes() });
        if let Some(j) = revoke {
            // Reused as file data: written home, made durable by the next
            // commit's first flush (ordered mode).
            dev.write_at(&content(DATA_STAMP, j, bs), file[j] * bs as u64).unwrap();
            retired.push(Retired { j, by: txs.len() - 1, data_durable_at: dev.flushes() + 1 });
        }
        if n == 30 {
            tx.checkpoint().unwrap();
        }
    }
    let stats = tx.stats();
    eprintln!("{case}: {stats:?}, {} flushes, {} retired blocks", dev.flushes(), retired.len());
    // Some checkpoints were forced by a full log, which wrapped.
    assert!(stats.checkpoints >= 2, "{case}: {stats:?}");
    assert!(stats.logged_blocks + 2 * stats.commits > 1024, "{case}: {stats:?}");
    drop(fs);
    History { bs, base, file, inodes, orig_mtimes, txs, retired, dev, jsb_offset: jsb_block * bs as u64 }
}

/// What a recovered image holds: each file block's stamp and the mtimes.
struct Observed {
    blocks: Vec<Vec<u8>>,
    mtimes: Vec<u32>,
}

fn observe(h: &History, dev: &dyn BlockDevice, fs: &Ext4) -> Observed {
    let blocks = h
        .file
        .iter()
        .map(|&b| {
            let mut buf = vec![0u8; h.bs];
            dev.read_at(&mut buf, b * h.bs as u64).unwrap();
            buf
        })
        .collect();
    let mtimes = h.inodes.iter().map(|&i| fs.read_inode(i).unwrap().mtime().secs as u32).collect();
    Observed { blocks, mtimes }
}

/// Whether `o` is exactly the state after the first `m` transactions, for
/// a crash after flush `k` (blocks whose state is unknowable skipped).
fn matches(h: &History, o: &Observed, m: usize, k: usize) -> Result<(), String> {
    let mut last: HashMap<usize, u32> = HashMap::new();
    let mut mtimes = h.orig_mtimes.clone();
    for t in &h.txs[..m] {
        for &j in &t.writes {
            last.insert(j, t.tid);
        }
        if let Some((i, v)) = t.mtime {
            mtimes[i] = v;
        }
    }
    if o.mtimes != mtimes {
        return Err(format!("mtimes {:?}, expected {mtimes:?}", o.mtimes));
    }
    for j in 0..FILE_BLOCKS {
        let expect = match h.retired.iter().find(|r| r.j == j) {
            // Revoked: never replayed from older copies again, so once its
            // new data is durable, that is what it holds. Before, either.
            Some(r) if r.by < m => {
                if k < r.data_durable_at {
                    continue;
                }
                DATA_STAMP
            }
            _ => last.get(&j).copied().unwrap_or(0),
        };
        if o.blocks[j] != content(expect, j, h.bs) {
            return Err(format!("file block {j} holds {:?}, expected stamp {expect}", stamp(&o.blocks[j])));
        }
    }
    Ok(())
}

/// Recovers `image` with e2fsck and checks it against our recovery.
fn check_with_e2fsck(h: &History, image: &[u8], ours: &Observed, path: &Path, what: &str) {
    std::fs::write(path, image).unwrap();
    let out = Command::new("e2fsck").arg("-fy").arg(path).output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{what}: e2fsck -fy: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_fsck_clean(path);
    let fixed = std::fs::read(path).unwrap();
    for (j, &b) in h.file.iter().enumerate() {
        let theirs = &fixed[b as usize * h.bs..(b as usize + 1) * h.bs];
        assert!(theirs == ours.blocks[j].as_slice(), "{what}: e2fsck and we disagree on file block {j}");
    }
    let fs = Ext4::open(path, &read_only()).unwrap();
    let mtimes: Vec<u32> = h.inodes.iter().map(|&i| fs.read_inode(i).unwrap().mtime().secs as u32).collect();
    assert_eq!(mtimes, ours.mtimes, "{what}: mtimes after e2fsck");
}

fn crash_everywhere(case: &str, bs: usize, mkfs_args: &[&str]) {
    let s = Scratch::new(&format!("jw-crash-{case}"));
    let h = build(case, bs, mkfs_args, &s);
    let flushes = h.dev.flushes();
    let durable = |k: usize| h.txs.iter().filter(|t| t.durable_at <= k).count();
    // Flush intervals that write the journal superblock (a checkpoint
    // moving the log tail, then the next transaction reusing the space)
    // get many torn states; the others two.
    let mut moves_tail = vec![false; flushes + 1];
    let mut k = 0;
    for op in h.dev.ops() {
        match op {
            Op::Flush => k += 1,
            Op::Write { offset, .. } if offset == h.jsb_offset => moves_tail[k] = true,
            Op::Write { .. } => {}
        }
    }
    let mut points = Vec::new();
    for (k, &moves_tail) in moves_tail.iter().enumerate() {
        points.push(CrashPoint::AfterFlush(k));
        if h.dev.writes_after_flush(k) > 0 {
            let seeds = if moves_tail { 32 } else { 2 };
            for seed in 0..seeds {
                points.push(CrashPoint::Torn { after_flush: k, unit: h.bs as u64, seed: k as u64 * 1000 + seed });
            }
        }
    }
    let mut checked_with_e2fsck = 0;
    for (n, point) in points.iter().enumerate() {
        let (k, torn) = match *point {
            CrashPoint::AfterFlush(k) => (k, false),
            CrashPoint::Torn { after_flush, .. } => (after_flush, true),
        };
        let image = h.dev.image_at(&h.base, *point);
        let what = format!("{case} {point:?}");
        let mem = Arc::new(MemDevice::new(image.clone()));
        let fs = Ext4::open_device(mem.clone(), &read_write()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        let observed = observe(&h, mem.as_ref(), &fs);
        drop(fs);
        let lo = durable(k);
        let hi = if torn { durable(k + 1) } else { lo };
        let verdicts: Vec<_> = (lo..=hi).map(|m| matches(&h, &observed, m, k)).collect();
        assert!(verdicts.iter().any(|v| v.is_ok()), "{what}: no transaction prefix {lo}..={hi} matches: {verdicts:?}");
        if n % 37 == 0 {
            check_with_e2fsck(&h, &image, &observed, &s.join("fsck.img"), &what);
            checked_with_e2fsck += 1;
        }
    }
    eprintln!("{case}: {} crash points, {checked_with_e2fsck} also replayed by e2fsck", points.len());
}

#[test]
fn crash_atomicity_csum_v3_1k() {
    crash_everywhere("csum_v3_1k", 1024, &["-t", "ext4", "-b", "1024"]);
}

#[test]
fn crash_atomicity_no_csum_4k() {
    crash_everywhere("no_csum_4k", 4096, &["-t", "ext4", "-b", "4096", "-O", "^metadata_csum"]);
}
