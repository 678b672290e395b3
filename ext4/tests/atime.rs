//! Access times: the relatime, strictatime and noatime policies (and
//! nodiratime) decide as the kernel's `atime_needs_update` does; a new
//! atime is pending (shown by every inode read at once) and costs no
//! transaction until something commits; fsync, sync, close, the commit
//! timer and a full pending set write it (into the running transaction); it persists e2fsck-clean; a
//! read-only open never records one; an inode freed (or given an explicit
//! atime) with an atime pending loses it, and nothing lands on a freed or
//! reused inode record.

mod common;

use common::Scratch;
use common::tools::{assert_fsck_clean, debugfs, mkfs};
use ext4::disk::inode::{FL_NOATIME, S_IFDIR, S_IFREG, Timestamp};
use ext4::fs::dir::namespace::NewInode;
use ext4::fs::inode::atime::{AtimeOptions, AtimePolicy, PENDING_LIMIT};
use ext4::fs::inode::setattr::SetAttr;
use ext4::{Ext4, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

fn at(secs: i64) -> Timestamp {
    Timestamp { secs, nsecs: 0 }
}

fn opts(atime: &str) -> OpenOptions {
    OpenOptions { atime: atime.parse::<AtimeOptions>().unwrap(), ..OpenOptions::default() }
}

/// An empty 16 MiB ext4 image (256-byte inodes, journal).
fn image(s: &Scratch) -> PathBuf {
    let img = s.join("fs.img");
    mkfs(&img, "16M", None, &["-t", "ext4", "-b", "1024", "-N", "6000"]);
    img
}

fn new_file(fs: &Ext4, name: &str, dir: bool) -> u32 {
    let mode = if dir { S_IFDIR | 0o755 } else { S_IFREG | 0o644 };
    let inode =
        fs.create(ext4::ROOT_INO, name.as_bytes(), NewInode { mode, uid: 0, gid: 0, rdev: 0, umask: None }).unwrap();
    if !dir {
        fs.write(inode.ino, 0, b"some data").unwrap();
    }
    inode.ino
}

/// Sets atime, mtime and ctime of `ino` to `now` plus the offsets.
fn set_times(fs: &Ext4, ino: u32, now: i64, (a, m, c): Times) {
    let attr =
        SetAttr { atime: Some(at(now + a)), mtime: Some(at(now + m)), ctime: Some(at(now + c)), ..Default::default() };
    fs.setattr(ino, &attr).unwrap();
}

/// Reads the atime of `path` from the closed image with a fresh read-only open.
fn atime_on_disk(img: &Path, path: &str) -> Timestamp {
    let fs = Ext4::open(img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
    let ino = fs.resolve_path(path.as_bytes(), false).unwrap();
    fs.read_inode(ino).unwrap().atime()
}

/// Offsets of (atime, mtime, ctime) from now, in seconds.
type Times = (i64, i64, i64);

/// (name, directory, times, moves under relatime): the kernel's
/// relatime_need_update, case by case.
const CASES: [(&str, bool, Times, bool); 8] = [
    ("old", false, (-2 * DAY, -3 * DAY, -3 * DAY), true),
    ("before_mtime", false, (-2 * HOUR, -HOUR, -3 * HOUR), true),
    ("equal_mtime", false, (-HOUR, -HOUR, -2 * HOUR), true),
    ("before_ctime", false, (-2 * HOUR, -3 * HOUR, -HOUR), true),
    ("fresh", false, (-HOUR, -2 * HOUR, -2 * HOUR), false),
    ("nearly_a_day", false, (-DAY + 60, -2 * DAY, -2 * DAY), false),
    ("old_dir", true, (-2 * DAY, -3 * DAY, -3 * DAY), true),
    ("fresh_dir", true, (-HOUR, -2 * HOUR, -2 * HOUR), false),
];

/// Every case under `policy`: the answer of touch_atime, the atime every
/// inode read shows at once, and after close the atime on disk (and
/// debugfs agreeing on one of them), image e2fsck-clean.
fn policy_case(policy: &str, expect: impl Fn(bool, bool) -> bool) {
    let s = Scratch::new(&format!("atime-{policy}"));
    let img = image(&s);
    let fs = Ext4::open(&img, &opts(policy)).unwrap();
    let now = Timestamp::now().secs;
    let mut inos = Vec::new();
    for (name, dir, times, _) in CASES {
        let ino = new_file(&fs, name, dir);
        set_times(&fs, ino, now, times);
        inos.push(ino);
    }
    // chattr +A keeps the atime under every policy.
    let pinned = new_file(&fs, "pinned", false);
    fs.set_flags(pinned, FL_NOATIME, FL_NOATIME).unwrap();
    set_times(&fs, pinned, now, (-2 * DAY, -3 * DAY, -3 * DAY));
    fs.sync().unwrap();

    let mut want = Vec::new();
    for (&(name, dir, (a, _, _), relatime), &ino) in CASES.iter().zip(&inos) {
        let moves = expect(relatime, dir);
        let before = fs.read_inode(ino).unwrap().atime();
        assert_eq!(before, at(now + a), "{policy}/{name}: times set");
        assert_eq!(fs.touch_atime(ino).unwrap(), moves, "{policy}/{name}: touch_atime answer");
        let shown = fs.read_inode(ino).unwrap().atime();
        if moves {
            assert!(shown.secs >= now, "{policy}/{name}: stat shows the new atime at once ({shown:?})");
        } else {
            assert_eq!(shown, before, "{policy}/{name}: atime kept");
        }
        want.push((name, shown));
    }
    assert!(!fs.touch_atime(pinned).unwrap(), "{policy}: FL_NOATIME");
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    for (name, shown) in &want {
        assert_eq!(atime_on_disk(&img, &format!("/{name}")), *shown, "{policy}/{name}: atime on disk after close");
    }
    assert_eq!(atime_on_disk(&img, "/pinned"), at(now - 2 * DAY));
    // debugfs reads the same seconds.
    let stat = debugfs(&img, "stat /old");
    let line = stat.lines().find(|l| l.trim_start().starts_with("atime:")).expect("atime line");
    let secs = i64::from_str_radix(line.split_once("0x").unwrap().1.split(':').next().unwrap(), 16).unwrap();
    assert_eq!(secs, want[0].1.secs & 0xffff_ffff, "debugfs atime of /old: {line}");
}

#[test]
fn relatime_moves_only_stale_atimes() {
    policy_case("relatime", |relatime, _| relatime);
}

#[test]
fn strictatime_moves_every_atime() {
    policy_case("strictatime", |_, _| true);
}

#[test]
fn noatime_moves_none() {
    policy_case("noatime", |_, _| false);
}

#[test]
fn nodiratime_keeps_directories() {
    policy_case("strictatime,nodiratime", |_, dir| !dir);
    policy_case("relatime,nodiratime", |relatime, dir| relatime && !dir);
}

#[test]
fn default_policy_is_relatime() {
    assert_eq!(OpenOptions::default().atime, AtimeOptions { policy: AtimePolicy::Relatime, nodiratime: false });
}

#[test]
fn reads_cost_no_transaction_until_a_commit() {
    let s = Scratch::new("atime-batch");
    let img = image(&s);
    let fs = Ext4::open(&img, &opts("strictatime")).unwrap();
    let files: Vec<u32> = (0..40).map(|i| new_file(&fs, &format!("f{i}"), false)).collect();
    fs.sync().unwrap();
    let tx = fs.tx().unwrap();
    let commits = tx.stats().commits;
    assert_eq!(tx.running_blocks(), 0);
    let mut buf = [0u8; 16];
    let mut last = Vec::new();
    for round in 0..25 {
        for &ino in &files {
            let inode = fs.read_inode(ino).unwrap();
            assert_eq!(fs.read(&inode, 0, &mut buf).unwrap(), 9);
            fs.touch_atime(ino).unwrap();
            if round == 24 {
                last.push(fs.read_inode(ino).unwrap().atime());
            }
        }
    }
    assert_eq!(tx.stats().commits, commits, "1000 reads committed nothing");
    assert_eq!(tx.running_blocks(), 0, "1000 reads staged nothing in the running transaction");
    assert_eq!(fs.pending_atimes().len(), files.len(), "one pending atime per inode");
    fs.fsync().unwrap();
    assert_eq!(tx.stats().commits, commits + 1, "fsync: one commit, with the atimes");
    assert!(fs.pending_atimes().is_empty());
    for (&ino, t) in files.iter().zip(&last) {
        assert_eq!(fs.read_inode(ino).unwrap().atime(), *t);
    }
    // Nothing more to write: fsync commits nothing.
    fs.fsync().unwrap();
    assert_eq!(tx.stats().commits, commits + 1);
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    assert_eq!(atime_on_disk(&img, "/f7"), last[7]);
}

#[test]
fn a_full_pending_set_joins_the_running_transaction() {
    let s = Scratch::new("atime-full");
    let src = s.join("src");
    std::fs::create_dir(&src).unwrap();
    let n = PENDING_LIMIT + 20;
    for i in 0..n {
        std::fs::write(src.join(format!("f{i}")), b"").unwrap();
    }
    let img = s.join("fs.img");
    mkfs(&img, "16M", Some(&src), &["-t", "ext4", "-b", "1024", "-N", "6000"]);
    let fs = Ext4::open(&img, &opts("strictatime")).unwrap();
    let inos: Vec<u32> = (0..n).map(|i| fs.resolve_path(format!("/f{i}").as_bytes(), false).unwrap()).collect();
    let tx = fs.tx().unwrap();
    let commits = tx.stats().commits;
    let mut wrote = false;
    for &ino in &inos {
        assert!(fs.touch_atime(ino).unwrap());
        assert!(fs.pending_atimes().len() <= PENDING_LIMIT, "the pending set stays bounded");
        wrote |= tx.running_blocks() > 0 || tx.stats().commits > commits;
    }
    assert!(wrote, "a full set was written into the running transaction");
    // Over a thousand inode table blocks do not fit one transaction of
    // this small log: it commits when it needs room (as jbd2 does), not
    // per read.
    let made = tx.stats().commits - commits;
    assert!(made <= (n / 64) as u64, "{made} commits for {n} atimes");
    let shown: Vec<Timestamp> = inos.iter().map(|&i| fs.read_inode(i).unwrap().atime()).collect();
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
    for (&ino, t) in inos.iter().zip(&shown) {
        assert_eq!(fs.read_inode(ino).unwrap().atime(), *t, "inode {ino}");
    }
}

#[test]
fn sync_and_close_write_pending_atimes() {
    let s = Scratch::new("atime-sync");
    let img = image(&s);
    let fs = Ext4::open(&img, &opts("relatime")).unwrap();
    let ino = new_file(&fs, "f", false);
    let now = Timestamp::now().secs;
    set_times(&fs, ino, now, (-2 * DAY, -3 * DAY, -3 * DAY));
    fs.sync().unwrap();
    assert!(fs.touch_atime(ino).unwrap());
    let t = fs.read_inode(ino).unwrap().atime();
    fs.sync().unwrap();
    assert!(fs.pending_atimes().is_empty());
    // sync checkpointed: the home copy has it even without close.
    assert_eq!(fs.tx().unwrap().running_blocks(), 0);
    drop(fs);
    assert_eq!(atime_on_disk(&img, "/f"), t);
    assert_fsck_clean(&img);
}

#[test]
fn commit_timer_writes_pending_atimes() {
    let s = Scratch::new("atime-timer");
    let img = image(&s);
    let o = OpenOptions { commit_interval: Duration::from_millis(10), ..opts("strictatime") };
    let fs = Arc::new(Ext4::open(&img, &o).unwrap());
    let ino = new_file(&fs, "f", false);
    fs.sync().unwrap();
    let timer = fs.start_commit_timer().unwrap();
    let commits = fs.tx().unwrap().stats().commits;
    assert!(fs.touch_atime(ino).unwrap());
    let t = fs.read_inode(ino).unwrap().atime();
    // Bounded only as a safeguard against a hang (a minute for a 10 ms timer).
    let mut waited = 0;
    while !fs.pending_atimes().is_empty() || fs.tx().unwrap().stats().commits == commits {
        assert!(waited < 6000, "the commit timer never wrote the atime");
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    drop(timer);
    fs.close().unwrap();
    drop(fs);
    assert_eq!(atime_on_disk(&img, "/f"), t);
    assert_fsck_clean(&img);
}

#[test]
fn read_only_never_records_an_atime() {
    let s = Scratch::new("atime-ro");
    let img = image(&s);
    let fs = Ext4::open(&img, &opts("strictatime")).unwrap();
    let ino = new_file(&fs, "f", false);
    fs.close().unwrap();
    drop(fs);
    let before = std::fs::read(&img).unwrap();
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..opts("strictatime") }).unwrap();
    let atime = fs.read_inode(ino).unwrap().atime();
    assert!(!fs.touch_atime(ino).unwrap());
    assert!(fs.pending_atimes().is_empty());
    assert_eq!(fs.read_inode(ino).unwrap().atime(), atime);
    fs.close().unwrap();
    drop(fs);
    assert!(std::fs::read(&img).unwrap() == before, "a read-only open wrote the image");
}

#[test]
fn an_explicit_atime_replaces_a_pending_one() {
    let s = Scratch::new("atime-explicit");
    let img = image(&s);
    let fs = Ext4::open(&img, &opts("strictatime")).unwrap();
    let ino = new_file(&fs, "f", false);
    assert!(fs.touch_atime(ino).unwrap());
    let explicit = at(1_234_567_890);
    fs.setattr(ino, &SetAttr { atime: Some(explicit), ..Default::default() }).unwrap();
    assert_eq!(fs.read_inode(ino).unwrap().atime(), explicit);
    assert!(fs.pending_atimes().is_empty());
    // A pending atime rides along with another change of the inode.
    assert!(fs.touch_atime(ino).unwrap());
    let t = fs.read_inode(ino).unwrap().atime();
    let chmod = fs.setattr(ino, &SetAttr { mode: Some(0o600), ..Default::default() }).unwrap();
    assert_eq!(chmod.atime(), t, "the inode a change returns carries the pending atime");
    fs.close().unwrap();
    drop(fs);
    assert_eq!(atime_on_disk(&img, "/f"), t);
    assert_fsck_clean(&img);
}

#[test]
fn a_file_deleted_with_a_pending_atime_loses_nothing() {
    let s = Scratch::new("atime-deleted");
    let img = image(&s);
    let fs = Ext4::open(&img, &opts("strictatime")).unwrap();
    let keep = new_file(&fs, "keep", false);
    let gone = new_file(&fs, "gone", false);
    let open = new_file(&fs, "open", false);
    fs.sync().unwrap();

    // Unlinked with nobody holding it: freed at once, its atime forgotten.
    assert!(fs.touch_atime(gone).unwrap());
    assert!(fs.touch_atime(keep).unwrap());
    let kept = fs.read_inode(keep).unwrap().atime();
    fs.unlink(ext4::ROOT_INO, b"gone").unwrap();
    assert_eq!(fs.pending_atimes().get(gone), None, "a freed inode has no pending atime");
    // Its number is taken again by a new file, whose atime is its own.
    let reused = new_file(&fs, "new", false);
    assert_eq!(reused, gone, "the freed number is reused");
    let born = fs.read_inode(reused).unwrap().atime();

    // Unlinked while open: an orphan keeps its pending atime until freed.
    fs.open_inode(open);
    assert!(fs.touch_atime(open).unwrap());
    fs.unlink(ext4::ROOT_INO, b"open").unwrap();
    assert!(fs.pending_atimes().get(open).is_some());
    fs.fsync().unwrap();
    assert!(fs.touch_atime(open).unwrap());
    fs.close_inode(open).unwrap();
    assert_eq!(fs.pending_atimes().get(open), None);

    // The fsync wrote the live file's atime; nothing else is left.
    assert!(fs.pending_atimes().is_empty());
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    assert_eq!(atime_on_disk(&img, "/keep"), kept);
    assert_eq!(atime_on_disk(&img, "/new"), born);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
    assert_eq!(fs.read_inode(open).unwrap().links_count(), 0, "the orphan was freed");
}
