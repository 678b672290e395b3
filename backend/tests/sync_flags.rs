//! chattr +S and +D (FL_SYNC, FL_DIRSYNC): a request that changes a
//! flagged file, or the entries of a flagged directory, is durable before
//! its reply, as ext4's `IS_SYNC` / `IS_DIRSYNC` make the handle
//! synchronous. Shown by copying the image file right after each reply (a
//! crash at that moment) and opening the copy, which replays its journal:
//! what the flagged requests did is there, what an unflagged request did
//! is not yet (no commit timer runs in this in-process server).

mod common;

use common::client::{Client, cat, cstr};
use common::{Scratch, mkfs};
use ext4::{Ext4, OpenOptions};
use fuse_abi::linux::*;
use std::path::Path;
use zerocopy::{FromBytes, IntoBytes};

const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
const FL_SYNC: u64 = 0x8;
const FL_DIRSYNC: u64 = 0x1_0000;

/// chattr: FS_IOC_GETFLAGS, then FS_IOC_SETFLAGS with `add` set.
fn add_flags(c: &mut Client, node: u64, fh: u64, dir: bool, add: u64) {
    let old = c.ioctl(node, fh, dir, FS_IOC_GETFLAGS, &[], 8);
    let mut word = [0u8; 8];
    word[..old.len()].copy_from_slice(&old);
    let new = u64::from_le_bytes(word) | add;
    c.ioctl(node, fh, dir, FS_IOC_SETFLAGS, &new.to_le_bytes(), 0);
}

/// What a crash right now would leave: the image as it is on disk,
/// opened (its journal replayed in memory).
fn crash_copy(img: &Path, s: &Scratch, name: &str) -> Ext4 {
    let copy = s.join(name);
    std::fs::copy(img, &copy).unwrap();
    Ext4::open(&copy, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap()
}

fn read_path(fs: &Ext4, path: &str) -> Option<Vec<u8>> {
    let ino = fs.resolve_path(path.as_bytes(), true).ok()?;
    let inode = fs.read_inode(ino).unwrap();
    let mut buf = vec![0u8; inode.size() as usize];
    fs.read(&inode, 0, &mut buf).unwrap();
    Some(buf)
}

#[test]
fn flagged_files_and_directories_are_durable_before_the_reply() {
    let s = Scratch::new("sync-flags");
    let img = s.join("fs.img");
    mkfs(&img, "32M", &["-t", "ext4"]);
    let mut c = Client::new(&img);
    c.init();

    // A file flagged +S: its write is on disk when WRITE answers.
    let (s_node, s_fh) = c.create(FUSE_ROOT_ID, "s");
    add_flags(&mut c, s_node, s_fh, false, FL_SYNC);
    assert_eq!(c.write(s_node, s_fh, 0, b"synchronous").errno, 0);
    let after_sync_write = crash_copy(&img, &s, "copy1.img");
    assert_eq!(read_path(&after_sync_write, "/s").as_deref(), Some(&b"synchronous"[..]));

    // The control: an unflagged file's create and write are not yet.
    let (n_node, n_fh) = c.create(FUSE_ROOT_ID, "n");
    assert_eq!(c.write(n_node, n_fh, 0, b"lazy").errno, 0);
    let after_lazy_write = crash_copy(&img, &s, "copy2.img");
    assert_eq!(read_path(&after_lazy_write, "/n"), None, "without +S the reply comes before the commit");

    // A directory flagged +D: a file created in it is on disk when CREATE
    // answers (and with it everything before, the control file included).
    let m = fuse_mkdir_in { mode: 0o755, umask: 0 };
    let body = c.ok(fuse_opcode::FUSE_MKDIR, FUSE_ROOT_ID, &cat(&[m.as_bytes(), &cstr("d")]));
    let d = fuse_entry_out::read_from_bytes(&body).unwrap().nodeid;
    let o = fuse_open_in { flags: libc::O_RDONLY as u32, open_flags: 0 };
    let d_fh = fuse_open_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_OPENDIR, d, o.as_bytes())).unwrap().fh;
    add_flags(&mut c, d, d_fh, true, FL_DIRSYNC);
    c.create(d, "e");
    let after_dirsync_create = crash_copy(&img, &s, "copy3.img");
    assert_eq!(read_path(&after_dirsync_create, "/d/e").as_deref(), Some(&b""[..]));
    assert_eq!(read_path(&after_dirsync_create, "/n").as_deref(), Some(&b"lazy"[..]));

    // Files made in the +D directory do not inherit +S: their writes wait.
    let e = c.lookup(d, "e").unwrap().nodeid;
    let o = fuse_open_in { flags: libc::O_RDWR as u32, open_flags: 0 };
    let e_fh = fuse_open_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_OPEN, e, o.as_bytes())).unwrap().fh;
    assert_eq!(c.write(e, e_fh, 0, b"later").errno, 0);
    let after_plain_write = crash_copy(&img, &s, "copy4.img");
    assert_eq!(read_path(&after_plain_write, "/d/e").as_deref(), Some(&b""[..]));
    c.finish();
    common::assert_fsck_clean(&img);
}
