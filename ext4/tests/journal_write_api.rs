//! The commit triggers and the writers `Ext4` picks: the commit timer, the
//! commit of a large running transaction when the next operation begins,
//! `close()` on journaled and journal-less images, and what a read-only
//! file system refuses.

mod common;
mod journal_support;
mod journal_write_support;

use common::Scratch;
use common::tools::{assert_fsck_clean, mkfs};
use ext4::{Error, Ext4, OpenOptions};
use journal_support::*;
use journal_write_support::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn image(s: &Scratch, args: &[&str]) -> PathBuf {
    let src = s.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), pattern(1, 100)).unwrap();
    std::fs::write(src.join("big"), pattern(2, 200 * 1024)).unwrap();
    let img = s.join("img");
    mkfs(&img, "16M", Some(&src), args);
    img
}

/// The mtime of `path` as the image holds it now: read through a file
/// opened without the image lock, since a writer may still hold it.
fn mtime(img: &Path, path: &str) -> i64 {
    let dev = ext4::io::FileDevice::from_file(std::fs::File::open(img).unwrap()).unwrap();
    let fs = Ext4::open_device(Arc::new(dev), &read_only()).unwrap();
    fs.read_inode(inode_of(img, path)).unwrap().mtime().secs
}

#[test]
fn commit_timer_commits_and_stops() {
    let s = Scratch::new("jw-timer");
    let img = image(&s, &["-t", "ext4", "-b", "1024"]);
    let ino = inode_of(&img, "/a");
    let opts = OpenOptions { commit_interval: Duration::from_millis(10), ..read_write() };
    let fs = Arc::new(Ext4::open(&img, &opts).unwrap());
    let timer = fs.start_commit_timer().unwrap();
    let tx = fs.tx().unwrap();
    let mut h = fs.begin().unwrap();
    stage_mtime(&fs, &mut h, ino, 1_500_000_000);
    h.finish();
    // The timer commits without being asked; bounded only as a safeguard
    // against a hang (a minute for a 10 ms timer).
    let mut waited = 0;
    while tx.stats().commits == 0 {
        assert!(waited < 6000, "the commit timer never committed");
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    assert!(needs_recovery(&img), "committed, not checkpointed");
    drop(timer);
    fs.close().unwrap();
    assert!(!needs_recovery(&img));
    assert_fsck_clean(&img);
    assert_eq!(mtime(&img, "/a"), 1_500_000_000);

    // A timer never keeps the file system alive.
    let timer = fs.start_commit_timer().unwrap();
    let weak = Arc::downgrade(&fs);
    drop(fs);
    assert!(weak.upgrade().is_none());
    drop(timer);
}

#[test]
fn read_only_refuses_timer_and_handles() {
    let s = Scratch::new("jw-ro");
    let img = image(&s, &["-t", "ext4"]);
    let fs = Arc::new(Ext4::open(&img, &read_only()).unwrap());
    assert!(matches!(fs.start_commit_timer(), Err(Error::ReadOnly)));
    assert!(matches!(fs.begin(), Err(Error::ReadOnly)));
    fs.close().unwrap();
}

#[test]
fn large_running_transaction_is_committed_at_the_next_begin() {
    let s = Scratch::new("jw-large");
    let img = image(&s, &["-t", "ext4", "-b", "1024"]);
    let blocks = file_blocks(&Ext4::open(&img, &read_only()).unwrap(), inode_of(&img, "/big"));
    let fs = Ext4::open(&img, &read_write()).unwrap();
    let tx = fs.tx().unwrap();
    let bs = fs.block_size() as usize;
    // The 1024-block journal takes transactions of up to 255 blocks; the
    // running one is committed once it holds more than a quarter of that.
    let mut staged = 0;
    for (n, chunk) in blocks.chunks(10).take(10).enumerate() {
        let mut h = fs.begin().unwrap();
        assert_eq!(tx.stats().commits, u64::from(staged > 63), "begin after {staged} blocks");
        for &b in chunk {
            h.write(b, magic_block(bs, n as u8));
        }
        h.finish();
        staged += chunk.len();
        assert_eq!(tx.needs_commit(), tx.running_blocks() > 63);
    }
    assert_eq!(tx.stats().commits, 1);
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    let data = debugfs_bytes(&img, "cat /big");
    for (n, _) in blocks.chunks(10).take(10).enumerate() {
        let at = n * 10 * bs;
        assert!(data[at..at + bs] == magic_block(bs, n as u8)[..], "block {}", n * 10);
    }
}

#[test]
fn journal_less_images_write_home_directly() {
    let s = Scratch::new("jw-ext2");
    let img = image(&s, &["-t", "ext2"]);
    let ino = inode_of(&img, "/a");
    let fs = Ext4::open(&img, &read_write()).unwrap();
    let mut h = fs.begin().unwrap();
    stage_mtime(&fs, &mut h, ino, 1_600_000_000);
    h.finish();
    fs.tx().unwrap().commit().unwrap();
    assert_eq!(mtime(&img, "/a"), 1_600_000_000, "home at commit");
    fs.close().unwrap();
    assert_fsck_clean(&img);
}

/// fsync costs one commit while the log has room: no checkpoint (the
/// journal holds the change until the log needs the room, a sync or the
/// close), and nothing at all to commit is a data flush only. Replaying
/// the journal after a crash right after the fsync gives the change back.
#[test]
fn fsync_is_one_commit_and_no_checkpoint() {
    let s = Scratch::new("jw-fsync");
    let img = image(&s, &["-t", "ext4", "-b", "4096"]);
    let ino = inode_of(&img, "/a");
    let fs = Ext4::open(&img, &read_write()).unwrap();
    let tx = fs.tx().unwrap();
    let before = tx.stats();
    for i in 0..5u64 {
        fs.write(ino, 100 + i * 10, b"0123456789").unwrap();
        fs.fsync().unwrap();
    }
    let after = tx.stats();
    assert_eq!(after.commits - before.commits, 5, "one commit per fsync");
    assert_eq!(after.checkpoints, before.checkpoints, "fsync does not checkpoint while the log has room");
    fs.fsync().unwrap();
    assert_eq!(tx.stats().commits, after.commits, "nothing to commit: no transaction");
    // A crash now (the file system dropped without close): the journal
    // holds what was fsynced.
    drop(fs);
    let fs = Ext4::open(&img, &read_only()).unwrap();
    assert!(fs.recovery_report().is_some(), "the fsynced changes are in the journal, not yet home");
    let inode = fs.read_inode(ino).unwrap();
    let mut buf = vec![0u8; 10];
    fs.read(&inode, 140, &mut buf).unwrap();
    assert_eq!(buf, b"0123456789");
}
