//! Races of the core's concurrency model, each made deterministic by a
//! device that stops one thread at the critical I/O (see
//! `ext4::fs::inode::lock` and `ext4::io::cache`): a data write or fill
//! paused between its mapping lookup and its device write while another
//! thread truncates or writes the same file, and a metadata read paused
//! between the device read and its cache fill while another thread
//! publishes, commits and checkpoints a newer version.
//!
//! Each test lets the racing thread run until it either finishes (the bug:
//! nothing made it wait) or waits for the inode lock (the fix), then lets
//! the paused thread go. No timing is involved.

mod common;

use common::Scratch;
use common::tools::mkfs;
use ext4::fs::data::fallocate::FallocMode;
use ext4::fs::dir::namespace::NewInode;
use ext4::fs::inode::setattr::SetAttr;
use ext4::io::{BlockDevice, FileDevice};
use ext4::{Ext4, OpenOptions};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use testkit::assert_fsck_clean as fsck_clean;

/// Which device access the trap catches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    /// Pauses before the read: the caller has looked its block up.
    ReadBefore,
    /// Pauses after the read: the caller holds what it read.
    ReadAfter,
    /// Pauses before the write.
    Write,
}

/// A one-shot trap: the first access of its kind starting inside `range`
/// reports itself and waits for the test's go-ahead.
struct Trap {
    access: Access,
    range: Range<u64>,
    entered: Sender<()>,
    go: Receiver<()>,
}

/// A file device with at most one armed trap.
struct GateDevice {
    inner: FileDevice,
    trap: Mutex<Option<Trap>>,
}

impl GateDevice {
    fn open(path: &std::path::Path) -> Arc<GateDevice> {
        Arc::new(GateDevice { inner: FileDevice::open(path, false).unwrap(), trap: Mutex::new(None) })
    }

    /// Arms the trap; returns (entered, go) ends for the test.
    fn arm(&self, access: Access, range: Range<u64>) -> (Receiver<()>, Sender<()>) {
        let (entered_tx, entered_rx) = channel();
        let (go_tx, go_rx) = channel();
        *self.trap.lock().unwrap() = Some(Trap { access, range, entered: entered_tx, go: go_rx });
        (entered_rx, go_tx)
    }

    fn check(&self, access: Access, offset: u64) {
        let trap = {
            let mut t = self.trap.lock().unwrap();
            match &*t {
                Some(trap) if trap.access == access && trap.range.contains(&offset) => t.take(),
                _ => None,
            }
        };
        if let Some(trap) = trap {
            trap.entered.send(()).unwrap();
            trap.go.recv().unwrap();
        }
    }
}

impl BlockDevice for GateDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> ext4::Result<()> {
        self.check(Access::ReadBefore, offset);
        let r = self.inner.read_at(buf, offset);
        self.check(Access::ReadAfter, offset);
        r
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> ext4::Result<()> {
        self.check(Access::Write, offset);
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> ext4::Result<()> {
        self.inner.flush()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

fn new_file() -> NewInode {
    NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None }
}

/// A fresh 4 KiB-block ext4 image (no inline data) opened writable on a gate.
fn setup(name: &str) -> (Scratch, std::path::PathBuf, Arc<GateDevice>, Arc<Ext4>) {
    let scratch = Scratch::new(name);
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", None, &["-t", "ext4", "-b", "4096", "-O", "^inline_data"]);
    let dev = GateDevice::open(&img);
    let fs = Arc::new(Ext4::open_device(dev.clone(), &OpenOptions::default()).unwrap());
    (scratch, img, dev, fs)
}

fn pblk(fs: &Ext4, ino: u32, lblk: u64) -> Option<u64> {
    match fs.map_block(&fs.read_inode(ino).unwrap(), lblk).unwrap() {
        ext4::Mapping::Mapped { pblk, .. } => Some(pblk),
        ext4::Mapping::Hole { .. } => None,
    }
}

fn contents(fs: &Ext4, ino: u32) -> Vec<u8> {
    let inode = fs.read_inode(ino).unwrap();
    let mut buf = vec![0u8; inode.size() as usize];
    fs.read(&inode, 0, &mut buf).unwrap();
    buf
}

/// Waits until `paused` reaches the trap; a thread that finishes without
/// reaching it fails the test (the setup no longer exercises the race).
fn wait_trapped<T>(entered: &Receiver<()>, paused: &std::thread::ScopedJoinHandle<'_, T>) {
    loop {
        match entered.try_recv() {
            Ok(()) => return,
            Err(_) if paused.is_finished() => panic!("the paused thread never reached the trap"),
            Err(_) => std::thread::yield_now(),
        }
    }
}

/// Runs `racer` on its own thread until it finishes or waits for an inode
/// lock, then lets the paused thread go (`go`) and joins both.
fn race<T: Send>(
    fs: &Ext4,
    go: Sender<()>,
    paused: std::thread::ScopedJoinHandle<'_, T>,
    racer: impl FnOnce() + Send,
) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            racer();
            done.store(true, Ordering::SeqCst);
        });
        while !done.load(Ordering::SeqCst) && fs.inode_locks().waiters() == 0 {
            std::thread::yield_now();
        }
        go.send(()).unwrap();
    });
    paused.join().unwrap()
}

/// Defect 1: a write paused between its lookup and its device write while
/// the file is truncated, the freeing committed and a new file takes the
/// freed block. The resumed write must not land in the new file.
#[test]
fn paused_overwrite_never_lands_in_a_block_truncate_freed() {
    let (_s, img, dev, fs) = setup("race-trunc-write");
    let a = fs.create(ext4::ROOT_INO, b"a", new_file()).unwrap().ino;
    fs.open_inode(a);
    fs.write(a, 0, &[b'A'; 4096]).unwrap();
    fs.sync().unwrap();
    let p = pblk(&fs, a, 0).unwrap();
    let (entered, go) = dev.arm(Access::Write, p * 4096..p * 4096 + 4096);
    let mut b = 0;
    std::thread::scope(|s| {
        let w = s.spawn(|| fs.write(a, 0, &[b'X'; 4096]).unwrap());
        wait_trapped(&entered, &w);
        race(&fs, go, w, || {
            fs.truncate(a, 0).unwrap();
            fs.sync().unwrap();
            b = fs.create(ext4::ROOT_INO, b"b", new_file()).unwrap().ino;
            fs.write(b, 0, &[b'B'; 4096]).unwrap();
            fs.sync().unwrap();
        });
    });
    // With the bug, b took a's freed block and holds the resumed write.
    assert!(contents(&fs, b) == vec![b'B'; 4096], "file b holds another file's data");
    assert_eq!(fs.read_inode(a).unwrap().size(), 0, "the truncate came after the write");
    fs.close_inode(a).unwrap();
    fs.close().unwrap();
    drop(fs);
    fsck_clean(&img);
}

/// Defect 1, read side: a read paused after its mapping lookup while the
/// file is truncated and a new file takes the block returns only the
/// file's own bytes.
#[test]
fn paused_read_never_returns_another_files_data() {
    let (_s, img, dev, fs) = setup("race-trunc-read");
    let a = fs.create(ext4::ROOT_INO, b"a", new_file()).unwrap().ino;
    fs.open_inode(a);
    fs.write(a, 0, &[b'A'; 4096]).unwrap();
    fs.sync().unwrap();
    let p = pblk(&fs, a, 0).unwrap();
    let (entered, go) = dev.arm(Access::ReadBefore, p * 4096..p * 4096 + 4096);
    std::thread::scope(|s| {
        let r = s.spawn(|| {
            let inode = fs.read_inode(a).unwrap();
            let mut buf = vec![0u8; 4096];
            let n = fs.read(&inode, 0, &mut buf).unwrap();
            buf.truncate(n);
            buf
        });
        wait_trapped(&entered, &r);
        let seen = race(&fs, go, r, || {
            fs.truncate(a, 0).unwrap();
            fs.sync().unwrap();
            let b = fs.create(ext4::ROOT_INO, b"b", new_file()).unwrap().ino;
            fs.write(b, 0, &[b'B'; 4096]).unwrap();
            fs.sync().unwrap();
        });
        assert!(seen == vec![b'A'; 4096], "the read returned another file's data");
    });
    fs.close_inode(a).unwrap();
    fs.close().unwrap();
    drop(fs);
    fsck_clean(&img);
}

/// Defect 2: two sub-block writes into one unwritten (fallocated) block.
/// The first one's zero-padded fill of the whole block is paused; the
/// second write must not be lost when it lands.
#[test]
fn sub_block_writes_into_an_unwritten_block_are_both_kept() {
    let (_s, img, dev, fs) = setup("race-unwritten");
    let a = fs.create(ext4::ROOT_INO, b"a", new_file()).unwrap().ino;
    fs.open_inode(a);
    fs.fallocate(a, FallocMode::Default, 0, 4096).unwrap();
    fs.sync().unwrap();
    let p = pblk(&fs, a, 0).unwrap();
    let (entered, go) = dev.arm(Access::Write, p * 4096..p * 4096 + 4096);
    std::thread::scope(|s| {
        let w1 = s.spawn(|| fs.write(a, 0, &[1u8; 100]).unwrap());
        wait_trapped(&entered, &w1);
        race(&fs, go, w1, || {
            fs.write(a, 200, &[2u8; 100]).unwrap();
        });
    });
    let got = contents(&fs, a);
    let mut want = vec![0u8; 4096];
    want[..100].fill(1);
    want[200..300].fill(2);
    assert!(got == want, "a successful write was lost");
    fs.close_inode(a).unwrap();
    fs.close().unwrap();
    drop(fs);
    fsck_clean(&img);
}

/// Defect 3: a metadata read paused between its device read and its cache
/// fill while a chmod publishes, commits and checkpoints the inode table
/// block. The stale fill must not land: the chmod survives later changes
/// and a reopen.
#[test]
fn stale_cache_fill_never_loses_a_published_change() {
    let (_s, img, dev, fs) = setup("race-cache-inode");
    let a = fs.create(ext4::ROOT_INO, b"a", new_file()).unwrap().ino;
    fs.close().unwrap();
    drop((fs, dev));
    // A fresh open: nothing cached.
    let dev = GateDevice::open(&img);
    let fs = Ext4::open_device(dev.clone(), &OpenOptions::default()).unwrap();
    let (blk, _) = fs.inode_position(a).unwrap();
    // Opening read the journal inode, which shares the block: start cold.
    fs.cache().clear();
    let (entered, go) = dev.arm(Access::ReadAfter, blk * 4096..blk * 4096 + 4096);
    std::thread::scope(|s| {
        let r = s.spawn(|| fs.read_inode(a).unwrap().mode());
        wait_trapped(&entered, &r);
        // The paused reader holds the old block; the chmod reads it itself
        // (the trap is spent), publishes, and the sync writes it home and
        // drops it from the dirty map.
        fs.setattr(a, &SetAttr { mode: Some(0o600), ..Default::default() }).unwrap();
        fs.sync().unwrap();
        go.send(()).unwrap();
        assert_eq!(r.join().unwrap() & 0o7777, 0o644, "the paused read saw the old version");
    });
    assert_eq!(fs.read_inode(a).unwrap().mode() & 0o7777, 0o600, "the cache serves a stale inode");
    // Another change to the same inode table block must not write the old
    // mode back.
    fs.setattr(a, &SetAttr { uid: Some(7), ..Default::default() }).unwrap();
    fs.close().unwrap();
    drop((fs, dev));
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let inode = fs.read_inode(a).unwrap();
    assert_eq!((inode.mode() & 0o7777, inode.uid()), (0o600, 7), "chmod lost after close and reopen");
    drop(fs);
    fsck_clean(&img);
}

/// Defect 3 with a block bitmap: a stale bitmap fill would hand a block out
/// twice.
#[test]
fn stale_bitmap_fill_never_allocates_a_block_twice() {
    let (_s, img, dev, fs) = setup("race-cache-bitmap");
    fs.close().unwrap();
    drop((fs, dev));
    let dev = GateDevice::open(&img);
    let fs = Ext4::open_device(dev.clone(), &OpenOptions::default()).unwrap();
    let bb = fs.group_desc(0).unwrap().block_bitmap();
    fs.cache().clear();
    let (entered, go) = dev.arm(Access::ReadAfter, bb * 4096..bb * 4096 + 4096);
    let mut first = 0;
    std::thread::scope(|s| {
        let r = s.spawn(|| fs.read_block_bitmap(0).unwrap());
        wait_trapped(&entered, &r);
        first = fs.create(ext4::ROOT_INO, b"first", new_file()).unwrap().ino;
        fs.write(first, 0, &[1u8; 4096]).unwrap();
        fs.sync().unwrap();
        go.send(()).unwrap();
        r.join().unwrap();
    });
    let second = fs.create(ext4::ROOT_INO, b"second", new_file()).unwrap().ino;
    fs.write(second, 0, &[2u8; 4096]).unwrap();
    let (p1, p2) = (pblk(&fs, first, 0).unwrap(), pblk(&fs, second, 0).unwrap());
    assert_ne!(p1, p2, "one block allocated to two files");
    assert!(contents(&fs, first) == vec![1u8; 4096], "the first file's data was overwritten");
    fs.close().unwrap();
    drop(fs);
    fsck_clean(&img);
}
