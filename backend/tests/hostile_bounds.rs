//! Hostile requests against the server, driven directly without a kernel:
//! huge offsets and sizes, floods of lock waiters, handles and lock
//! records past their caps, deep lookups. Each is answered (an errno where
//! the request cannot be served), a normal request afterwards is answered
//! right, the process's memory grows by less than a generous bound per
//! flood, and the image is `e2fsck -fn` clean at the end. SEEK_DATA and
//! SEEK_HOLE read only the mapping blocks on the way to their answer.

mod common;

use common::client::{Client, cat, cstr};
use common::{Scratch, assert_fsck_clean, mkfs};
use ext4::io::{CountingDevice, FileDevice};
use ext4::{Ext4, OpenOptions};
use ext4_virtiofsd::adapter::access::NoGroups;
use ext4_virtiofsd::adapter::{AdapterOptions, Ext4Fs};
use ext4_virtiofsd::fuse::server::ServerOptions;
use fuse_abi::linux::*;
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

/// Memory measurements are process-wide: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How much a flood may grow the process's resident memory.
const GROWTH_BOUND: u64 = 64 << 20;

/// A field (in KiB) of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line =
        status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Runs `flood` and checks that VmRSS and VmHWM grew by less than [`GROWTH_BOUND`].
fn bounded(what: &str, flood: impl FnOnce()) {
    let (rss, hwm) = (status_bytes("VmRSS:"), status_bytes("VmHWM:"));
    flood();
    let (rss2, hwm2) = (status_bytes("VmRSS:"), status_bytes("VmHWM:"));
    assert!(rss2.saturating_sub(rss) < GROWTH_BOUND, "{what}: VmRSS grew from {rss} to {rss2}");
    assert!(hwm2.saturating_sub(hwm) < GROWTH_BOUND, "{what}: VmHWM grew from {hwm} to {hwm2}");
}

fn image(tag: &str) -> (Scratch, std::path::PathBuf) {
    let s = Scratch::new(tag);
    let img = s.join("fs.img");
    mkfs(&img, "64M", &["-t", "ext4", "-b", "4096", "-O", "inline_data"]);
    (s, img)
}

/// A normal request after a flood is answered right.
fn still_serving(c: &mut Client, node: u64, fh: u64) {
    assert_eq!(c.errno(fuse_opcode::FUSE_GETATTR, FUSE_ROOT_ID, fuse_getattr_in::default().as_bytes()), 0);
    let r = c.read(node, fh, 0, 16);
    assert_eq!((r.errno, &r.body[..]), (0, &b"canary"[..]));
}

fn open(c: &mut Client, node: u64) -> Result<u64, i32> {
    let o = fuse_open_in { flags: libc::O_RDWR as u32, open_flags: 0 };
    let r = c.call(fuse_opcode::FUSE_OPEN, node, o.as_bytes());
    if r.errno != 0 {
        return Err(r.errno);
    }
    Ok(fuse_open_out::read_from_bytes(&r.body).unwrap().fh)
}

fn lock(fh: u64, owner: u64, start: u64, end: u64, typ: i32) -> fuse_lk_in {
    fuse_lk_in {
        fh,
        owner,
        lk: fuse_file_lock { start, end, type_: typ as u32, pid: owner as u32 },
        lk_flags: 0,
        padding: 0,
    }
}

#[test]
fn hostile_requests_are_answered_and_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (_s, img) = image("hostile-bounds");
    let adapter = AdapterOptions { max_handles: 64, max_lock_records: 1000, ..AdapterOptions::default() };
    let server = ServerOptions { max_lock_waiters: 16, ..ServerOptions::default() };
    let mut c = Client::with_all_options(&img, adapter, server);
    c.init();
    let (node, fh) = c.create(FUSE_ROOT_ID, "canary");
    assert_eq!(c.write(node, fh, 0, b"canary").errno, 0);
    let x = fuse_setxattr_in { size: 4, flags: 0, setxattr_flags: 0, padding: 0 };
    assert_eq!(c.errno(fuse_opcode::FUSE_SETXATTR, node, &cat(&[x.as_bytes(), &cstr("user.k"), b"vvvv"])), 0);

    bounded("huge write offsets", || {
        let (n, f) = c.create(FUSE_ROOT_ID, "far");
        for off in [u64::MAX - 2, u64::MAX / 2, 1 << 62, i64::MAX as u64, 1 << 50] {
            let e = c.write(n, f, off, b"abcd").errno;
            assert!(e == libc::EFBIG || e == libc::EINVAL, "write at {off}: errno {e}");
        }
        assert_eq!(c.release(n, f), 0);
        still_serving(&mut c, node, fh);
    });

    bounded("huge xattr and readdir sizes", || {
        let g = fuse_getxattr_in { size: u32::MAX, padding: 0 };
        assert_eq!(c.ok(fuse_opcode::FUSE_GETXATTR, node, &cat(&[g.as_bytes(), &cstr("user.k")])), b"vvvv");
        assert_eq!(c.errno(fuse_opcode::FUSE_GETXATTR, node, &cat(&[g.as_bytes(), &cstr("user.none")])), libc::ENODATA);
        assert_eq!(c.ok(fuse_opcode::FUSE_LISTXATTR, node, g.as_bytes()), b"user.k\0");
        let o = fuse_open_in { flags: libc::O_RDONLY as u32, open_flags: 0 };
        let dfh =
            fuse_open_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_OPENDIR, FUSE_ROOT_ID, o.as_bytes())).unwrap().fh;
        for op in [fuse_opcode::FUSE_READDIR, fuse_opcode::FUSE_READDIRPLUS] {
            for off in [0, u64::MAX, 1 << 40] {
                let r = fuse_read_in { fh: dfh, offset: off, size: u32::MAX, ..Default::default() };
                let body = c.ok(op, FUSE_ROOT_ID, r.as_bytes());
                assert!(body.len() <= 1 << 20, "{op:?}: {} bytes", body.len());
            }
        }
        let r = fuse_release_in { fh: dfh, ..Default::default() };
        assert_eq!(c.errno(fuse_opcode::FUSE_RELEASEDIR, FUSE_ROOT_ID, r.as_bytes()), 0);
        still_serving(&mut c, node, fh);
    });

    bounded("a flood of lock waiters", || {
        c.ok(fuse_opcode::FUSE_SETLK, node, lock(fh, 1, 0, 99, libc::F_WRLCK).as_bytes());
        for owner in 2..18 {
            assert_eq!(
                c.errno(fuse_opcode::FUSE_SETLKW, node, lock(fh, owner, 0, 99, libc::F_WRLCK).as_bytes()),
                0,
                "deferred"
            );
        }
        // Each waiter is counted before its thread starts.
        assert_eq!(c.server.lock_waiters(), 16);
        for owner in 100..2100 {
            let e = c.errno(fuse_opcode::FUSE_SETLKW, node, lock(fh, owner, 0, 99, libc::F_WRLCK).as_bytes());
            assert_eq!(e, libc::ENOLCK, "waiter {owner} beyond the cap");
        }
        assert_eq!(c.server.lock_waiters(), 16);
        still_serving(&mut c, node, fh);
    });

    bounded("a flood of handles", || {
        let before = c.server.fs().handle_count();
        let mut fhs = Vec::new();
        let mut refused = 0;
        for _ in 0..5000 {
            match open(&mut c, node) {
                Ok(f) => fhs.push(f),
                Err(e) => {
                    assert_eq!(e, libc::EMFILE);
                    refused += 1;
                }
            }
        }
        assert_eq!(before + fhs.len(), 64, "the table filled up to its cap");
        assert_eq!(refused, 5000 - fhs.len());
        let cr = fuse_create_in { flags: libc::O_RDWR as u32, mode: 0o100644, umask: 0o022, open_flags: 0 };
        assert_eq!(
            c.errno(fuse_opcode::FUSE_CREATE, FUSE_ROOT_ID, &cat(&[cr.as_bytes(), &cstr("refused")])),
            libc::EMFILE
        );
        assert_eq!(c.lookup(FUSE_ROOT_ID, "refused").unwrap_err(), libc::ENOENT, "a refused CREATE creates nothing");
        let o = fuse_open_in { flags: libc::O_RDONLY as u32, open_flags: 0 };
        assert_eq!(c.errno(fuse_opcode::FUSE_OPENDIR, FUSE_ROOT_ID, o.as_bytes()), libc::EMFILE);
        for f in fhs.drain(..) {
            assert_eq!(c.release(node, f), 0);
        }
        assert_eq!(c.server.fs().handle_count(), before);
        let f = open(&mut c, node).expect("room again");
        assert_eq!(c.release(node, f), 0);
        still_serving(&mut c, node, fh);
    });

    bounded("a flood of lock records", || {
        let (n, f) = c.create(FUSE_ROOT_ID, "locks");
        let base = c.server.fs().lock_records();
        let mut refused = 0;
        for i in 0..5000u64 {
            let e = c.errno(fuse_opcode::FUSE_SETLK, n, lock(f, 7, i * 2, i * 2, libc::F_RDLCK).as_bytes());
            match e {
                0 => {}
                libc::ENOLCK => refused += 1,
                e => panic!("lock {i}: errno {e}"),
            }
        }
        assert_eq!(c.server.fs().lock_records(), 1000, "records filled up to the cap");
        assert_eq!(refused, 5000 - (1000 - base));
        // GETLK still answers, unlocking still works and frees the records.
        let getlk = lock(f, 8, 0, 0, libc::F_WRLCK);
        let got = fuse_lk_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_GETLK, n, getlk.as_bytes())).unwrap();
        assert_eq!((got.lk.start, got.lk.end, got.lk.type_), (0, 0, libc::F_RDLCK as u32));
        c.ok(fuse_opcode::FUSE_SETLK, n, lock(f, 7, 0, u64::MAX, libc::F_UNLCK).as_bytes());
        assert_eq!(c.server.fs().lock_records(), base);
        assert_eq!(c.release(n, f), 0);
        still_serving(&mut c, node, fh);
    });

    bounded("deep lookups", || {
        let m = fuse_mkdir_in { mode: 0o755, umask: 0 };
        let mut dir = FUSE_ROOT_ID;
        let mut chain = Vec::new();
        for _ in 0..300 {
            let e = fuse_entry_out::read_from_prefix(&c.ok(
                fuse_opcode::FUSE_MKDIR,
                dir,
                &cat(&[m.as_bytes(), &cstr("d")]),
            ))
            .unwrap()
            .0;
            chain.push(e.nodeid);
            dir = e.nodeid;
        }
        let mut dir = FUSE_ROOT_ID;
        for &expected in &chain {
            for _ in 0..10 {
                let e = c.lookup(dir, "d").unwrap();
                assert_eq!(e.nodeid, expected);
            }
            assert_eq!(c.lookup(dir, &"n".repeat(255)).unwrap_err(), libc::ENOENT);
            assert_eq!(c.lookup(dir, &"n".repeat(256)).unwrap_err(), libc::ENAMETOOLONG);
            dir = expected;
        }
        for &n in &chain {
            let f = fuse_forget_in { nlookup: 11 };
            let req = c.request(fuse_opcode::FUSE_FORGET as u32, n, f.as_bytes());
            assert!(c.send_raw(&req).is_none());
        }
        still_serving(&mut c, node, fh);
    });

    bounded("huge truncates and writes of inline files", || {
        for (i, off) in [1u64 << 40, 1 << 43, (16u64 << 40) - 4096].into_iter().enumerate() {
            let (n, f) = c.create(FUSE_ROOT_ID, &format!("inline{i}"));
            assert_eq!(c.write(n, f, 0, b"small inline file").errno, 0);
            let w = c.write(n, f, off, b"far away");
            assert!(w.errno == 0 || w.errno == libc::EFBIG, "write at {off}: errno {}", w.errno);
            let s = fuse_setattr_in { valid: FATTR_SIZE, size: off + 1, ..Default::default() };
            let e = c.errno(fuse_opcode::FUSE_SETATTR, n, s.as_bytes());
            assert!(e == 0 || e == libc::EFBIG, "truncate to {}: errno {e}", off + 1);
            let r = c.read(n, f, 0, 64);
            assert_eq!(&r.body[..17], b"small inline file");
            assert_eq!(c.release(n, f), 0);
        }
        still_serving(&mut c, node, fh);
    });

    assert_eq!(c.release(node, fh), 0);
    c.finish();
    assert_fsck_clean(&img);
}

/// SEEK_DATA and SEEK_HOLE near the start of a file with thousands of
/// extents (an extent tree with dozens of leaves) read a few blocks, not
/// every leaf of the tree.
#[test]
fn seek_data_and_hole_walk_only_what_they_need() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (_s, img) = image("hostile-seek");
    let mut c = Client::new(&img);
    c.init();
    let (node, fh) = c.create(FUSE_ROOT_ID, "sparse");
    // Every other block written: 8000 one-block extents, about 24 leaves.
    for i in 0..8000u64 {
        assert_eq!(c.write(node, fh, i * 8192, &[1u8; 4096]).errno, 0);
    }
    assert_eq!(c.release(node, fh), 0);
    c.finish();
    assert_fsck_clean(&img);

    // The tree's size, from an open of its own (the counted one starts with a cold cache).
    let leaves = {
        let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
        let ino = fs.resolve_path(b"/sparse", false).unwrap();
        fs.file_extents(&fs.read_inode(ino).unwrap()).unwrap().len() / 340
    };
    assert!(leaves >= 20, "the file has a deep enough tree ({leaves} leaves)");
    let dev = Arc::new(CountingDevice::new(FileDevice::open(&img, true).unwrap()));
    let fs =
        Arc::new(Ext4::open_device(dev.clone(), &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap());
    let a = Ext4Fs::new(fs.clone(), AdapterOptions::default(), Box::new(NoGroups));
    let caller = a.caller(0, 0, 0);
    let e = a.lookup(&caller, FUSE_ROOT_ID, b"sparse").unwrap();
    let fh = a.open(&caller, e.nodeid, libc::O_RDONLY as u32, 0).unwrap().fh;
    let before = dev.reads();
    assert_eq!(a.lseek(e.nodeid, fh, 100, libc::SEEK_DATA as u32), Ok(100));
    assert_eq!(a.lseek(e.nodeid, fh, 100, libc::SEEK_HOLE as u32), Ok(4096));
    assert_eq!(a.lseek(e.nodeid, fh, 5000, libc::SEEK_DATA as u32), Ok(8192));
    let reads = dev.reads() - before;
    assert!(reads <= 4, "three seeks near the start read {reads} blocks (the tree has {leaves} leaves)");
    a.end_session();
}
