//! The FUSE server driven directly, without a kernel: a well-formed
//! session works end to end, and every kind of malformed request — a
//! truncated header, a length that lies, an unknown opcode, a name without
//! NUL, a short argument structure, node ids never looked up, stale or
//! foreign handles — gets an error reply (or, without a header, none),
//! changes nothing, and leaves the server serving. Then thousands of
//! seeded random corruptions of valid requests; the image is
//! `e2fsck -fn` clean at the end.

mod common;

use common::client::{Client, cat, cstr};
use common::{Rng, Scratch, assert_fsck_clean, mkfs};
use ext4::{Ext4, OpenOptions};
use ext4_virtiofsd::fuse::server::ServerOptions;
use fuse_abi::linux::*;
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

fn image(tag: &str) -> (Scratch, std::path::PathBuf) {
    let s = Scratch::new(tag);
    let img = s.join("fs.img");
    mkfs(&img, "64M", &["-t", "ext4", "-b", "4096", "-O", "inline_data"]);
    (s, img)
}

#[test]
fn a_wellformed_session_works_end_to_end() {
    let (_s, img) = image("proto-ok");
    let mut c = Client::new(&img);
    assert_eq!(
        c.errno(fuse_opcode::FUSE_GETATTR, FUSE_ROOT_ID, fuse_getattr_in::default().as_bytes()),
        libc::EIO,
        "before INIT"
    );
    let init = c.init();
    assert_eq!((init.major, init.minor), (7, 40));
    assert_eq!(init.max_write, 1 << 20);
    assert_ne!(init.flags & FUSE_POSIX_ACL, 0);
    assert_ne!(init.flags & FUSE_DO_READDIRPLUS, 0);
    assert_eq!(init.flags & FUSE_WRITEBACK_CACHE, 0, "writeback is opt-in");
    let (node, fh) = c.create(FUSE_ROOT_ID, "hello");
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let w = c.write(node, fh, 0, &data);
    assert_eq!(w.errno, 0);
    assert_eq!(fuse_write_out::read_from_bytes(&w.body).unwrap().size, 10_000);
    assert_eq!(c.read(node, fh, 0, 1 << 20).body, data);
    assert_eq!(c.release(node, fh), 0);
    let e = c.lookup(FUSE_ROOT_ID, "hello").unwrap();
    assert_eq!((e.nodeid, e.attr.size, e.attr.mode), (node, 10_000, 0o100644));
    assert_eq!(c.root_names(), vec![".", "..", "hello", "lost+found"]);
    c.finish();
    assert_fsck_clean(&img);
}

#[test]
fn init_negotiation() {
    let (_s, img) = image("proto-init");
    let init = |c: &mut Client, major, minor, flags: u64| {
        let i = fuse_init_in {
            major,
            minor,
            max_readahead: 1 << 17,
            flags: flags as u32 | FUSE_INIT_EXT,
            flags2: (flags >> 32) as u32,
            unused: [0; 11],
        };
        c.call(fuse_opcode::FUSE_INIT, 0, i.as_bytes())
    };
    let mut c = Client::new(&img);
    // Too old a client, a future major (answered with ours, to retry), then 7.31.
    assert_eq!(init(&mut c, 7, 30, u64::MAX).errno, libc::EPROTO);
    assert_eq!(init(&mut c, 6, 40, u64::MAX).errno, libc::EPROTO);
    let r = init(&mut c, 8, 0, u64::MAX);
    let out = fuse_init_out::read_from_bytes(&r.body).unwrap();
    assert_eq!((r.errno, out.major, out.minor), (0, 7, 40));
    assert_eq!(
        c.errno(fuse_opcode::FUSE_GETATTR, FUSE_ROOT_ID, fuse_getattr_in::default().as_bytes()),
        libc::EIO,
        "not initialised yet"
    );
    let r = init(&mut c, 7, 31, (FUSE_POSIX_ACL | FUSE_ASYNC_READ) as u64);
    let out = fuse_init_out::read_from_bytes(&r.body).unwrap();
    assert_eq!(out.minor, 31);
    assert_eq!(out.flags & !FUSE_INIT_EXT, FUSE_POSIX_ACL | FUSE_ASYNC_READ, "only what both sides offer");
    assert_eq!(out.max_pages, 256);
    assert_eq!(c.errno(fuse_opcode::FUSE_GETATTR, FUSE_ROOT_ID, fuse_getattr_in::default().as_bytes()), 0);
    // Without FUSE_SETXATTR_EXT, SETXATTR carries the 8-byte structure.
    let x = fuse_setxattr_in { size: 5, flags: 0, ..Default::default() };
    let req = cat(&[&x.as_bytes()[..8], &cstr("user.old"), b"value"]);
    assert_eq!(c.errno(fuse_opcode::FUSE_SETXATTR, FUSE_ROOT_ID, &req), 0);
    let g = fuse_getxattr_in { size: 64, padding: 0 };
    assert_eq!(c.ok(fuse_opcode::FUSE_GETXATTR, FUSE_ROOT_ID, &cat(&[g.as_bytes(), &cstr("user.old")])), b"value");
    c.finish();
    // With a DAX window and the writeback cache configured.
    let mut c = Client::with_options(&img, ServerOptions { writeback: true, dax: true, ..ServerOptions::default() });
    let r = init(&mut c, 7, 40, u64::MAX);
    let out = fuse_init_out::read_from_bytes(&r.body).unwrap();
    assert_ne!(out.flags & FUSE_WRITEBACK_CACHE, 0);
    assert_ne!(out.flags & FUSE_MAP_ALIGNMENT, 0);
    assert_ne!(((out.flags2 as u64) << 32) & FUSE_HAS_INODE_DAX, 0);
    assert_eq!(out.map_alignment, 12, "pages of 4 KiB");
    c.finish();
    assert_fsck_clean(&img);
}

#[test]
fn malformed_requests_get_errors_and_change_nothing() {
    let (_s, img) = image("proto-bad");
    let mut c = Client::new(&img);
    c.init();
    let (node, fh) = c.create(FUSE_ROOT_ID, "file");
    assert_eq!(c.write(node, fh, 0, b"original").errno, 0);

    // Shorter than a header: nothing to reply to.
    assert!(c.send_raw(&[1, 2, 3]).is_none());
    assert!(c.send_raw(&[]).is_none());
    // A header whose length lies, both ways.
    let mut req = c.request(fuse_opcode::FUSE_GETATTR as u32, FUSE_ROOT_ID, fuse_getattr_in::default().as_bytes());
    req[0..4].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(c.send_raw(&req).unwrap().errno, libc::EINVAL);
    req[0..4].copy_from_slice(&20u32.to_le_bytes());
    assert_eq!(c.send_raw(&req).unwrap().errno, libc::EINVAL);
    // Extension length beyond the request.
    let mut req = c.request(fuse_opcode::FUSE_GETATTR as u32, FUSE_ROOT_ID, &[]);
    req[36..38].copy_from_slice(&200u16.to_le_bytes());
    assert_eq!(c.send_raw(&req).unwrap().errno, libc::EINVAL);
    // Unknown and unsupported opcodes.
    for op in [0u32, 7, 19, 37, 40, 999, 4096, u32::MAX] {
        let req = c.request(op, FUSE_ROOT_ID, &[0; 64]);
        assert_eq!(c.send_raw(&req).unwrap().errno, libc::ENOSYS, "opcode {op}");
    }
    // Names without their NUL.
    assert_eq!(c.errno(fuse_opcode::FUSE_LOOKUP, FUSE_ROOT_ID, b"file"), libc::EINVAL);
    let m = fuse_mkdir_in { mode: 0o755, umask: 0 };
    assert_eq!(c.errno(fuse_opcode::FUSE_MKDIR, FUSE_ROOT_ID, &cat(&[m.as_bytes(), b"dir"])), libc::EINVAL);
    assert_eq!(c.errno(fuse_opcode::FUSE_SYMLINK, FUSE_ROOT_ID, &cat(&[&cstr("l"), b"target"])), libc::EINVAL);
    let r = fuse_rename_in { newdir: FUSE_ROOT_ID };
    assert_eq!(
        c.errno(fuse_opcode::FUSE_RENAME, FUSE_ROOT_ID, &cat(&[r.as_bytes(), &cstr("file"), b"new"])),
        libc::EINVAL
    );
    assert_eq!(c.errno(fuse_opcode::FUSE_UNLINK, FUSE_ROOT_ID, b"file"), libc::EINVAL);
    // Names the file system cannot hold.
    assert_eq!(
        c.errno(fuse_opcode::FUSE_MKDIR, FUSE_ROOT_ID, &cat(&[m.as_bytes(), &cstr(&"x".repeat(256))])),
        libc::ENAMETOOLONG
    );
    assert_eq!(c.errno(fuse_opcode::FUSE_MKDIR, FUSE_ROOT_ID, &cat(&[m.as_bytes(), &cstr("a/b")])), libc::EINVAL);
    assert_eq!(c.errno(fuse_opcode::FUSE_MKDIR, FUSE_ROOT_ID, &cat(&[m.as_bytes(), &cstr("")])), libc::EINVAL);
    // Argument structures cut short.
    assert_eq!(c.errno(fuse_opcode::FUSE_SETATTR, node, &[0; 40]), libc::EINVAL);
    assert_eq!(c.errno(fuse_opcode::FUSE_READ, node, &[0; 8]), libc::EINVAL);
    assert_eq!(c.errno(fuse_opcode::FUSE_WRITE, node, &[0; 16]), libc::EINVAL);
    assert_eq!(c.errno(fuse_opcode::FUSE_GETLK, node, &[0; 20]), libc::EINVAL);
    // A WRITE whose size says more than it carries.
    let w = fuse_write_in { fh, offset: 0, size: 4096, ..Default::default() };
    assert_eq!(c.errno(fuse_opcode::FUSE_WRITE, node, &cat(&[w.as_bytes(), b"short"])), libc::EINVAL);
    // A SETXATTR whose value size lies.
    let x = fuse_setxattr_in { size: 100, flags: 0, setxattr_flags: 0, padding: 0 };
    assert_eq!(c.errno(fuse_opcode::FUSE_SETXATTR, node, &cat(&[x.as_bytes(), &cstr("user.k"), b"v"])), libc::EINVAL);
    // Node ids never looked up, or beyond any inode number.
    for bad in [3u64, 8, 11, 12345, 1 << 40, u64::MAX] {
        assert_eq!(
            c.errno(fuse_opcode::FUSE_GETATTR, bad, fuse_getattr_in::default().as_bytes()),
            libc::ESTALE,
            "node {bad}"
        );
        assert_eq!(c.errno(fuse_opcode::FUSE_LOOKUP, bad, &cstr("x")), libc::ESTALE, "node {bad}");
    }
    let l = fuse_link_in { oldnodeid: 12345 };
    assert_eq!(c.errno(fuse_opcode::FUSE_LINK, FUSE_ROOT_ID, &cat(&[l.as_bytes(), &cstr("ln")])), libc::ESTALE);
    // Offsets at the end of the 64-bit range.
    let (node2, fh2) = c.create(FUSE_ROOT_ID, "other");
    let cp = fuse_copy_file_range_in {
        fh_in: fh,
        off_in: u64::MAX - 1,
        nodeid_out: node2,
        fh_out: fh2,
        off_out: 0,
        len: 100,
        flags: 0,
    };
    assert_eq!(c.errno(fuse_opcode::FUSE_COPY_FILE_RANGE, node, cp.as_bytes()), libc::EINVAL);
    let cp = fuse_copy_file_range_in { off_in: 0, off_out: u64::MAX, ..cp };
    assert_eq!(c.errno(fuse_opcode::FUSE_COPY_FILE_RANGE, node, cp.as_bytes()), libc::EINVAL);
    assert_ne!(c.write(node, fh, u64::MAX - 2, b"abcd").errno, 0);
    let fa = fuse_fallocate_in { fh, offset: u64::MAX - 10, length: 100, mode: 0, padding: 0 };
    assert_eq!(c.errno(fuse_opcode::FUSE_FALLOCATE, node, fa.as_bytes()), libc::EINVAL);
    let lk = fuse_lk_in {
        fh,
        owner: 1,
        lk: fuse_file_lock { start: 10, end: 5, type_: libc::F_WRLCK as u32, pid: 1 },
        lk_flags: 0,
        padding: 0,
    };
    assert_eq!(c.errno(fuse_opcode::FUSE_SETLK, node, lk.as_bytes()), libc::EINVAL);
    assert_eq!(c.release(node2, fh2), 0);
    assert_eq!(c.errno(fuse_opcode::FUSE_UNLINK, FUSE_ROOT_ID, &cstr("other")), 0);
    // Handles that were never opened, belong to another node, are of the
    // wrong kind, or were released.
    assert_eq!(c.read(node, 999, 0, 10).errno, libc::EBADF);
    assert_eq!(c.write(node, 999, 0, b"x").errno, libc::EBADF);
    assert_eq!(c.read(FUSE_ROOT_ID, fh, 0, 10).errno, libc::EBADF);
    let rd = fuse_read_in { fh, size: 4096, ..Default::default() };
    assert_eq!(c.errno(fuse_opcode::FUSE_READDIR, FUSE_ROOT_ID, rd.as_bytes()), libc::EBADF);
    assert_eq!(c.release(node, fh), 0);
    assert_eq!(c.release(node, fh), libc::EBADF);
    assert_eq!(c.read(node, fh, 0, 10).errno, libc::EBADF);
    assert_eq!(c.write(node, fh, 0, b"overwrite").errno, libc::EBADF);
    // Forgetting what was never known, and a BATCH_FORGET that lies.
    let f = fuse_forget_in { nlookup: 5 };
    let req = c.request(fuse_opcode::FUSE_FORGET as u32, 777, f.as_bytes());
    assert!(c.send_raw(&req).is_none());
    let b = fuse_batch_forget_in { count: 1_000_000, dummy: 0 };
    let one = fuse_forget_one { nodeid: 888, nlookup: 1 };
    let req = c.request(fuse_opcode::FUSE_BATCH_FORGET as u32, 0, &cat(&[b.as_bytes(), one.as_bytes()]));
    assert!(c.send_raw(&req).is_none());
    // An enormous READ size is clamped, not allocated.
    let o = fuse_open_in { flags: libc::O_RDONLY as u32, open_flags: 0 };
    let fh = fuse_open_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_OPEN, node, o.as_bytes())).unwrap().fh;
    assert_eq!(c.read(node, fh, 0, u32::MAX).body, b"original");
    assert_eq!(c.release(node, fh), 0);

    // Nothing of the above changed the file system.
    assert_eq!(c.root_names(), vec![".", "..", "file", "lost+found"]);
    let e = c.lookup(FUSE_ROOT_ID, "file").unwrap();
    assert_eq!(e.attr.size, 8);
    c.finish();
    assert_fsck_clean(&img);
}

#[test]
fn random_corruptions_of_valid_requests_never_break_the_server() {
    let (_s, img) = image("proto-fuzz");
    let mut c = Client::new(&img);
    c.init();
    let (node, fh) = c.create(FUSE_ROOT_ID, "victim");
    assert_eq!(c.write(node, fh, 0, &[7u8; 9000]).errno, 0);
    let m = fuse_mkdir_in { mode: 0o755, umask: 0 };
    c.ok(fuse_opcode::FUSE_MKDIR, FUSE_ROOT_ID, &cat(&[m.as_bytes(), &cstr("dir")]));
    let o = fuse_open_in { flags: libc::O_RDONLY as u32, open_flags: 0 };
    let dfh = fuse_open_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_OPENDIR, FUSE_ROOT_ID, o.as_bytes())).unwrap().fh;
    let templates: Vec<Vec<u8>> = vec![
        c.request(
            fuse_opcode::FUSE_READDIR as u32,
            FUSE_ROOT_ID,
            fuse_read_in { fh: dfh, offset: 0, size: 4096, ..Default::default() }.as_bytes(),
        ),
        c.request(
            fuse_opcode::FUSE_READDIRPLUS as u32,
            FUSE_ROOT_ID,
            fuse_read_in { fh: dfh, offset: 12, size: 4096, ..Default::default() }.as_bytes(),
        ),
        c.request(fuse_opcode::FUSE_LOOKUP as u32, FUSE_ROOT_ID, &cstr("victim")),
        c.request(fuse_opcode::FUSE_GETATTR as u32, node, fuse_getattr_in::default().as_bytes()),
        c.request(
            fuse_opcode::FUSE_READ as u32,
            node,
            fuse_read_in { fh, size: 4096, ..Default::default() }.as_bytes(),
        ),
        c.request(
            fuse_opcode::FUSE_WRITE as u32,
            node,
            &cat(&[fuse_write_in { fh, offset: 100, size: 4, ..Default::default() }.as_bytes(), b"abcd"]),
        ),
        c.request(
            fuse_opcode::FUSE_SETATTR as u32,
            node,
            fuse_setattr_in { valid: FATTR_MODE, mode: 0o100600, ..Default::default() }.as_bytes(),
        ),
        c.request(fuse_opcode::FUSE_MKDIR as u32, FUSE_ROOT_ID, &cat(&[m.as_bytes(), &cstr("d2")])),
        c.request(
            fuse_opcode::FUSE_SETXATTR as u32,
            node,
            &cat(&[fuse_setxattr_in { size: 3, ..Default::default() }.as_bytes(), &cstr("user.x"), b"val"]),
        ),
        c.request(
            fuse_opcode::FUSE_GETXATTR as u32,
            node,
            &cat(&[fuse_getxattr_in { size: 100, padding: 0 }.as_bytes(), &cstr("user.x")]),
        ),
        c.request(
            fuse_opcode::FUSE_RENAME as u32,
            FUSE_ROOT_ID,
            &cat(&[fuse_rename_in { newdir: FUSE_ROOT_ID }.as_bytes(), &cstr("d2"), &cstr("d3")]),
        ),
        c.request(
            fuse_opcode::FUSE_FALLOCATE as u32,
            node,
            fuse_fallocate_in { fh, offset: 0, length: 8192, mode: 0, padding: 0 }.as_bytes(),
        ),
        c.request(
            fuse_opcode::FUSE_LSEEK as u32,
            node,
            fuse_lseek_in { fh, offset: 0, whence: libc::SEEK_HOLE as u32, padding: 0 }.as_bytes(),
        ),
        c.request(fuse_opcode::FUSE_STATFS as u32, FUSE_ROOT_ID, &[]),
        c.request(
            fuse_opcode::FUSE_SETLK as u32,
            node,
            fuse_lk_in {
                fh,
                owner: 1,
                lk: fuse_file_lock { start: 0, end: 10, type_: libc::F_WRLCK as u32, pid: 1 },
                lk_flags: 0,
                padding: 0,
            }
            .as_bytes(),
        ),
    ];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut replies = 0;
    for _ in 0..20_000 {
        let mut req = templates[rng.below(templates.len() as u64) as usize].clone();
        for _ in 0..1 + rng.below(4) {
            if req.is_empty() {
                break;
            }
            match rng.below(4) {
                0 => {
                    // Flip a byte anywhere, the header included.
                    let i = rng.below(req.len() as u64) as usize;
                    req[i] ^= 1 << rng.below(8);
                }
                1 => {
                    // Overwrite an argument byte.
                    let last = req.len() - 1;
                    let i = (40 + rng.below((req.len().saturating_sub(40)).max(1) as u64) as usize).min(last);
                    req[i] = rng.next() as u8;
                }
                2 => req.truncate(rng.below(req.len() as u64 + 1) as usize),
                _ => req.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
            }
        }
        // Keep the opcode away from DESTROY (which ends the session) most of the time.
        if req.len() >= 8 && u32::from_le_bytes(req[4..8].try_into().unwrap()) == fuse_opcode::FUSE_DESTROY as u32 {
            continue;
        }
        if c.send_raw(&req).is_some() {
            replies += 1;
        }
    }
    assert!(replies > 10_000, "most corrupted requests still get a reply ({replies})");
    // Still serving. The victim may have grown to fill the disk (random
    // fallocates) and stays allocated after its unlink: corrupted opcodes
    // opened it without ever releasing it. DESTROY ends the session and
    // frees it.
    assert_eq!(c.release(node, fh), 0);
    assert_eq!(c.errno(fuse_opcode::FUSE_UNLINK, FUSE_ROOT_ID, &cstr("victim")), 0);
    assert!(c.lookup(FUSE_ROOT_ID, "dir").is_ok());
    let (n2, fh2) = c.create(FUSE_ROOT_ID, "after");
    assert_eq!(c.read(n2, fh2, 0, 100).errno, 0);
    assert_eq!(c.release(n2, fh2), 0);
    c.finish();
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
    assert!(fs.statfs().unwrap().free_blocks > 10_000, "the session's orphans were freed at its end");
}

/// An in-memory transport: requests queued by the test, replies collected.
struct Queue {
    requests: std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>,
    replies: std::sync::Mutex<Vec<Vec<u8>>>,
    more: std::sync::Condvar,
    closed: std::sync::atomic::AtomicBool,
}

impl ext4_virtiofsd::fuse::dispatch::Transport for Queue {
    fn receive(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        let mut q = self.requests.lock().unwrap();
        loop {
            if let Some(r) = q.pop_front() {
                buf[..r.len()].copy_from_slice(&r);
                return Ok(Some(r.len()));
            }
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(None);
            }
            q = self.more.wait_timeout(q, std::time::Duration::from_millis(20)).unwrap().0;
        }
    }

    fn send(&self, reply: &[u8]) -> std::io::Result<()> {
        self.replies.lock().unwrap().push(reply.to_vec());
        Ok(())
    }
}

/// The worker pool over a transport: every request answered once, a
/// blocked F_SETLKW answered when the conflicting lock goes (while the pool
/// keeps serving), and `serve` returning when the transport closes.
#[test]
fn the_worker_pool_serves_and_lock_waits_do_not_block_it() {
    let (_s, img) = image("proto-pool");
    let mut c = Client::new(&img);
    let init = fuse_init_in {
        major: 7,
        minor: 40,
        max_readahead: 1 << 17,
        flags: u32::MAX,
        flags2: u32::MAX,
        unused: [0; 11],
    };
    let q = Arc::new(Queue {
        requests: Default::default(),
        replies: Default::default(),
        more: Default::default(),
        closed: Default::default(),
    });
    let server = c.server.clone();
    let t = q.clone();
    let pool = std::thread::spawn(move || ext4_virtiofsd::fuse::dispatch::serve(server, t, 2));
    let push = |q: &Queue, r: Vec<u8>| {
        q.requests.lock().unwrap().push_back(r);
        q.more.notify_all();
    };
    let wait_replies = |q: &Queue, n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while q.replies.lock().unwrap().len() < n {
            assert!(std::time::Instant::now() < deadline, "replies stalled at {}", q.replies.lock().unwrap().len());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    push(&q, c.request(fuse_opcode::FUSE_INIT as u32, 0, init.as_bytes()));
    wait_replies(&q, 1);
    // The file is made directly on the same server; the rest goes through the pool.
    let (node, fh) = c.create(FUSE_ROOT_ID, "locked");
    let lock = |owner: u64, typ: i32| fuse_lk_in {
        fh,
        owner,
        lk: fuse_file_lock { start: 0, end: 99, type_: typ as u32, pid: owner as u32 },
        lk_flags: 0,
        padding: 0,
    };
    push(&q, c.request(fuse_opcode::FUSE_SETLK as u32, node, lock(1, libc::F_WRLCK).as_bytes()));
    wait_replies(&q, 2);
    let waiter = c.request(fuse_opcode::FUSE_SETLKW as u32, node, lock(2, libc::F_WRLCK).as_bytes());
    let waiter_unique = fuse_in_header::read_from_prefix(&waiter).unwrap().0.unique;
    push(&q, waiter);
    // The pool keeps serving while that request waits.
    for _ in 0..50 {
        push(&q, c.request(fuse_opcode::FUSE_GETATTR as u32, node, fuse_getattr_in::default().as_bytes()));
    }
    wait_replies(&q, 52);
    assert!(
        q.replies
            .lock()
            .unwrap()
            .iter()
            .all(|r| fuse_out_header::read_from_prefix(r).unwrap().0.unique != waiter_unique),
        "the waiter is not answered while the lock is held"
    );
    push(&q, c.request(fuse_opcode::FUSE_SETLK as u32, node, lock(1, libc::F_UNLCK).as_bytes()));
    wait_replies(&q, 54);
    let replies = q.replies.lock().unwrap().clone();
    let got =
        replies.iter().map(|r| fuse_out_header::read_from_prefix(r).unwrap().0).find(|h| h.unique == waiter_unique);
    assert_eq!(got.map(|h| h.error), Some(0), "the waiter got the lock once it was free");
    q.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    pool.join().unwrap().unwrap();
    assert_eq!(c.release(node, fh), 0);
    c.finish();
    assert_fsck_clean(&img);
}

/// Every entry reply carries the inode's generation (LOOKUP, CREATE,
/// MKDIR, MKNOD, SYMLINK, LINK, READDIRPLUS), and a reused inode number
/// comes with a new one.
#[test]
fn entries_carry_the_inode_generation() {
    let (_s, img) = image("proto-gen");
    let mut c = Client::new(&img);
    c.init();
    let generation = |c: &Client, node: u64| c.fs.read_inode(node as u32).unwrap().generation() as u64;
    let (file, fh) = c.create(FUSE_ROOT_ID, "file");
    assert_eq!(c.release(file, fh), 0);
    let mut entries = vec![("lookup", c.lookup(FUSE_ROOT_ID, "file").unwrap())];
    let m = fuse_mkdir_in { mode: 0o755, umask: 0 };
    let body = c.ok(fuse_opcode::FUSE_MKDIR, FUSE_ROOT_ID, &cat(&[m.as_bytes(), &cstr("dir")]));
    entries.push(("mkdir", fuse_entry_out::read_from_bytes(&body).unwrap()));
    let mk = fuse_mknod_in { mode: 0o10644, rdev: 0, umask: 0, padding: 0 };
    let body = c.ok(fuse_opcode::FUSE_MKNOD, FUSE_ROOT_ID, &cat(&[mk.as_bytes(), &cstr("fifo")]));
    entries.push(("mknod", fuse_entry_out::read_from_bytes(&body).unwrap()));
    let body = c.ok(fuse_opcode::FUSE_SYMLINK, FUSE_ROOT_ID, &cat(&[&cstr("sym"), &cstr("file")]));
    entries.push(("symlink", fuse_entry_out::read_from_bytes(&body).unwrap()));
    let l = fuse_link_in { oldnodeid: file };
    let body = c.ok(fuse_opcode::FUSE_LINK, FUSE_ROOT_ID, &cat(&[l.as_bytes(), &cstr("hard")]));
    entries.push(("link", fuse_entry_out::read_from_bytes(&body).unwrap()));
    let cr = fuse_create_in { flags: libc::O_RDWR as u32, mode: 0o100644, umask: 0o022, open_flags: 0 };
    let body = c.ok(fuse_opcode::FUSE_CREATE, FUSE_ROOT_ID, &cat(&[cr.as_bytes(), &cstr("created")]));
    let (created, rest) = fuse_entry_out::read_from_prefix(&body).unwrap();
    entries.push(("create", created));
    assert_eq!(c.release(created.nodeid, fuse_open_out::read_from_bytes(rest).unwrap().fh), 0);
    // READDIRPLUS of the root.
    let o = fuse_open_in { flags: libc::O_RDONLY as u32, open_flags: 0 };
    let dfh = fuse_open_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_OPENDIR, FUSE_ROOT_ID, o.as_bytes())).unwrap().fh;
    let body = c.ok(
        fuse_opcode::FUSE_READDIRPLUS,
        FUSE_ROOT_ID,
        fuse_read_in { fh: dfh, size: 1 << 16, ..Default::default() }.as_bytes(),
    );
    let mut b = &body[..];
    let mut plus = 0;
    while !b.is_empty() {
        let (e, rest) = fuse_entry_out::read_from_prefix(b).unwrap();
        let (d, rest) = fuse_dirent::read_from_prefix(rest).unwrap();
        if e.nodeid != 0 {
            entries.push(("readdirplus", e));
            plus += 1;
        }
        let len = (std::mem::size_of::<fuse_dirent>() + d.namelen as usize).next_multiple_of(8);
        b = &rest[len - std::mem::size_of::<fuse_dirent>()..];
    }
    assert!(plus >= 6, "READDIRPLUS entries with attributes: {plus}");
    for (what, e) in &entries {
        assert_eq!(e.generation, generation(&c, e.nodeid), "{what} of node {}", e.nodeid);
    }
    assert!(entries.iter().any(|(_, e)| e.generation != 0), "generations are set");
    // A number freed and reused has a new generation.
    let (n, f) = c.create(FUSE_ROOT_ID, "once");
    let old = generation(&c, n);
    assert_eq!(c.release(n, f), 0);
    assert_eq!(c.errno(fuse_opcode::FUSE_UNLINK, FUSE_ROOT_ID, &cstr("once")), 0);
    let req = c.request(fuse_opcode::FUSE_FORGET as u32, n, fuse_forget_in { nlookup: 1 }.as_bytes());
    assert!(c.send_raw(&req).is_none());
    for i in 0..50 {
        let (n2, f2) = c.create(FUSE_ROOT_ID, &format!("again{i}"));
        assert_eq!(c.release(n2, f2), 0);
        if n2 == n {
            assert_ne!(generation(&c, n2), old, "reused inode {n} kept its generation");
            break;
        }
    }
    let r = fuse_release_in { fh: dfh, ..Default::default() };
    c.ok(fuse_opcode::FUSE_RELEASEDIR, FUSE_ROOT_ID, r.as_bytes());
    c.finish();
    assert_fsck_clean(&img);
}

/// A LOOKUP racing with the unlink of its name and the reuse of the inode
/// number under another name never answers the other file's attributes
/// under the looked-up name (seeded stress; the race is not forced).
#[test]
fn lookups_racing_reuse_never_answer_another_file() {
    use ext4_virtiofsd::adapter::access::NoGroups;
    use ext4_virtiofsd::adapter::{AdapterOptions, Ext4Fs};
    let (_s, img) = image("proto-race");
    let fs = Arc::new(Ext4::open(&img, &OpenOptions::default()).unwrap());
    let a = Arc::new(Ext4Fs::new(fs.clone(), AdapterOptions::default(), Box::new(NoGroups)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = a.caller(0, 0, 0);
            for i in 0..3000 {
                // "x" is always mode 0600, "y" always 0640; each freed at once so its number is reused.
                for (name, mode) in [(&b"x"[..], 0o100600), (&b"y"[..], 0o100640)] {
                    let (e, o) = a.create(&c, FUSE_ROOT_ID, name, mode, libc::O_RDWR as u32, 0).unwrap();
                    a.release(e.nodeid, o.fh, 0, 0).unwrap();
                    a.forget(e.nodeid, 1);
                    a.unlink(&c, FUSE_ROOT_ID, name).unwrap_or_else(|e| panic!("unlink {i}: {e:?}"));
                }
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let c = a.caller(0, 0, 0);
    let mut found = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if let Ok(e) = a.lookup(&c, FUSE_ROOT_ID, b"x") {
            assert_eq!(e.attr.mode, 0o100600, "LOOKUP of x answered another file");
            a.forget(e.nodeid, 1);
            found += 1;
        }
    }
    churn.join().unwrap();
    assert!(found > 0 || a.node_count() == 0);
    a.end_session();
    assert_eq!(a.node_count(), 0);
    fs.close().unwrap();
    drop(a);
    drop(fs);
    assert_fsck_clean(&img);
}

/// A request of `uid`:`gid` carrying `ext` (whole 8-byte records) after its
/// arguments.
fn request_with_ext(
    c: &mut Client,
    opcode: fuse_opcode,
    node: u64,
    ids: (u32, u32),
    args: &[u8],
    ext: &[u8],
) -> Vec<u8> {
    c.unique += 2;
    let hdr = fuse_in_header {
        len: (std::mem::size_of::<fuse_in_header>() + args.len() + ext.len()) as u32,
        opcode: opcode as u32,
        unique: c.unique,
        nodeid: node,
        uid: ids.0,
        gid: ids.1,
        pid: 4242,
        total_extlen: (ext.len() / 8) as u16,
        padding: 0,
    };
    cat(&[hdr.as_bytes(), args, ext])
}

/// A FUSE_EXT_GROUPS record naming `groups`.
fn groups_ext(groups: &[u32]) -> Vec<u8> {
    let mut body = (groups.len() as u32).to_le_bytes().to_vec();
    for g in groups {
        body.extend_from_slice(&g.to_le_bytes());
    }
    let size = (8 + body.len()).next_multiple_of(8);
    let mut v = (size as u32).to_le_bytes().to_vec();
    v.extend_from_slice(&(fuse_ext_type::FUSE_EXT_GROUPS as u32).to_le_bytes());
    v.extend_from_slice(&body);
    v.resize(size, 0);
    v
}

/// FUSE_CREATE_SUPP_GROUP: a guest's supplementary group reaches the daemon
/// only as the extension the kernel adds to create-like requests. A caller
/// whose write permission on a directory comes from such a group may
/// create in it with the extension and not without; other requests never
/// take groups from it; a malformed extension is EINVAL.
#[test]
fn create_supp_group_grants_what_the_group_grants() {
    let (_s, img) = image("proto-suppgroup");
    let mut c = Client::new(&img);
    let init = c.init();
    assert_ne!(((init.flags2 as u64) << 32) & FUSE_CREATE_SUPP_GROUP, 0, "FUSE_CREATE_SUPP_GROUP is negotiated");
    let m = fuse_mkdir_in { mode: 0o770, umask: 0 };
    let dir = fuse_entry_out::read_from_bytes(&c.ok(
        fuse_opcode::FUSE_MKDIR,
        FUSE_ROOT_ID,
        &cat(&[m.as_bytes(), &cstr("team")]),
    ))
    .unwrap()
    .nodeid;
    let sa = fuse_setattr_in { valid: FATTR_GID | FATTR_MODE, gid: 50, mode: 0o40770, ..Default::default() };
    c.ok(fuse_opcode::FUSE_SETATTR, dir, sa.as_bytes());
    let guest = (1000, 1000);
    let mk = |name: &str| cat(&[fuse_mkdir_in { mode: 0o755, umask: 0 }.as_bytes(), &cstr(name)]);

    let without = request_with_ext(&mut c, fuse_opcode::FUSE_MKDIR, dir, guest, &mk("a"), &[]);
    assert_eq!(c.send_raw(&without).unwrap().errno, libc::EACCES, "no group, no write permission");
    let other = request_with_ext(&mut c, fuse_opcode::FUSE_MKDIR, dir, guest, &mk("b"), &groups_ext(&[51]));
    assert_eq!(c.send_raw(&other).unwrap().errno, libc::EACCES, "another group grants nothing");
    let with = request_with_ext(&mut c, fuse_opcode::FUSE_MKDIR, dir, guest, &mk("c"), &groups_ext(&[50]));
    let r = c.send_raw(&with).unwrap();
    assert_eq!(r.errno, 0, "the carried group grants write permission");
    let made = fuse_entry_out::read_from_bytes(&r.body).unwrap();
    assert_eq!((made.attr.uid, made.attr.gid), guest, "the new directory belongs to the caller");
    let cr = fuse_create_in { flags: libc::O_RDWR as u32, mode: 0o100644, umask: 0o022, open_flags: 0 };
    let file = request_with_ext(
        &mut c,
        fuse_opcode::FUSE_CREATE,
        dir,
        guest,
        &cat(&[cr.as_bytes(), &cstr("f")]),
        &groups_ext(&[50]),
    );
    let r = c.send_raw(&file).unwrap();
    assert_eq!(r.errno, 0, "CREATE takes the group too");
    let (e, rest) = fuse_entry_out::read_from_prefix(&r.body).unwrap();
    assert_eq!(c.release(e.nodeid, fuse_open_out::read_from_bytes(rest).unwrap().fh), 0);
    // Not a create: the extension grants nothing (the kernel never sends it
    // there), so an unlink by the guest in the group's directory fails.
    let unlink = request_with_ext(&mut c, fuse_opcode::FUSE_UNLINK, dir, guest, &cstr("f"), &groups_ext(&[50]));
    assert_eq!(c.send_raw(&unlink).unwrap().errno, libc::EACCES);
    // A malformed extension (a record that claims more groups than it has).
    let mut bad = groups_ext(&[50]);
    bad[8..12].copy_from_slice(&9u32.to_le_bytes());
    let req = request_with_ext(&mut c, fuse_opcode::FUSE_MKDIR, dir, guest, &mk("d"), &bad);
    assert_eq!(c.send_raw(&req).unwrap().errno, libc::EINVAL);
    assert_eq!(c.lookup(dir, "d").unwrap_err(), libc::ENOENT, "nothing made");
    c.finish();
    assert_fsck_clean(&img);
}

/// FUSE_EXPORT_SUPPORT: the kernel decodes a file handle (open_by_handle_at,
/// an NFS export) of an inode it forgot with LOOKUP "." on the node id, an
/// inode number never looked up in this session, and reconnects a
/// directory with LOOKUP "..". "." answers any in-use inode with a new
/// lookup reference and its generation; free, deleted, reserved and
/// out-of-range numbers are ESTALE and leave no reference behind; ".."
/// answers the parent. No search permission is asked (as ext4's export
/// operations ask none).
#[test]
fn lookups_of_dot_and_dotdot_answer_forgotten_inodes() {
    let (_s, img) = image("proto-export");
    let mut c = Client::new(&img);
    let init = c.init();
    assert_ne!(init.flags & FUSE_EXPORT_SUPPORT, 0, "FUSE_EXPORT_SUPPORT is negotiated");
    let forget = |c: &mut Client, node: u64, n: u64| {
        let req = c.request(fuse_opcode::FUSE_FORGET as u32, node, fuse_forget_in { nlookup: n }.as_bytes());
        assert!(c.send_raw(&req).is_none());
    };
    let mkdir = |c: &mut Client, parent: u64, name: &str, mode: u32| {
        let m = fuse_mkdir_in { mode, umask: 0 };
        fuse_entry_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_MKDIR, parent, &cat(&[m.as_bytes(), &cstr(name)])))
            .unwrap()
            .nodeid
    };
    let nodes = |c: &Client| c.server.fs().node_count();
    // d (mode 0700) holds f and the directory e; then the client forgets them all.
    let d = mkdir(&mut c, FUSE_ROOT_ID, "d", 0o700);
    let e = mkdir(&mut c, d, "e", 0o755);
    let (f, fh) = c.create(d, "f");
    assert_eq!(c.write(f, fh, 0, b"data").errno, 0);
    assert_eq!(c.release(f, fh), 0);
    for n in [d, e, f] {
        forget(&mut c, n, 1);
    }
    assert_eq!(nodes(&c), 0);
    assert_eq!(c.errno(fuse_opcode::FUSE_GETATTR, f, fuse_getattr_in::default().as_bytes()), libc::ESTALE);

    // "." of forgotten nodes, a file and directories, by an unprivileged
    // caller who could not search d.
    for (node, kind) in [(f, libc::S_IFREG), (e, libc::S_IFDIR), (d, libc::S_IFDIR)] {
        let req = request_with_ext(&mut c, fuse_opcode::FUSE_LOOKUP, node, (1000, 1000), &cstr("."), &[]);
        let r = c.send_raw(&req).unwrap();
        assert_eq!(r.errno, 0, "LOOKUP . of node {node}");
        let entry = fuse_entry_out::read_from_bytes(&r.body).unwrap();
        let inode = c.fs.read_inode(node as u32).unwrap();
        assert_eq!((entry.nodeid, entry.attr.ino), (node, node));
        assert_eq!(entry.generation, inode.generation() as u64);
        assert_eq!(entry.attr.mode & libc::S_IFMT, kind);
    }
    assert_eq!(nodes(&c), 3, "one reference each");
    assert_eq!(c.read(f, 0, 0, 10).errno, libc::EBADF, "the node is known again (the handle is not)");
    let e2 = c.lookup(f, ".").unwrap();
    assert_eq!(e2.nodeid, f);
    forget(&mut c, f, 2);
    assert!(!c.fs.is_inode_open(f as u32), "both references of f were counted and released");

    // ".." of directories; "." and ".." of the root are the root.
    assert_eq!(c.lookup(e, "..").unwrap().nodeid, d);
    assert_eq!(c.lookup(d, "..").unwrap().nodeid, FUSE_ROOT_ID);
    assert_eq!(c.lookup(FUSE_ROOT_ID, "..").unwrap().nodeid, FUSE_ROOT_ID);
    assert_eq!(c.lookup(FUSE_ROOT_ID, ".").unwrap().nodeid, FUSE_ROOT_ID);

    // ".." of a file is ENOTDIR; of a node the client does not know, ESTALE.
    assert_eq!(c.lookup(f, ".").unwrap().nodeid, f);
    assert_eq!(c.lookup(f, "..").unwrap_err(), libc::ENOTDIR);
    forget(&mut c, f, 1);
    assert_eq!(c.lookup(f, "..").unwrap_err(), libc::ESTALE);

    // A freed inode, and a deleted one still open (which the client that
    // holds it never asks for by number): ESTALE, and no reference taken.
    let (g, gfh) = c.create(d, "g");
    assert_eq!(c.errno(fuse_opcode::FUSE_UNLINK, d, &cstr("f")), 0);
    assert_eq!(c.errno(fuse_opcode::FUSE_UNLINK, d, &cstr("g")), 0);
    let before = nodes(&c);
    assert_eq!(c.lookup(f, ".").unwrap_err(), libc::ESTALE, "freed");
    assert!(!c.fs.is_inode_open(f as u32));
    assert_eq!(c.lookup(g, ".").unwrap_err(), libc::ESTALE, "deleted, open");
    assert_eq!(nodes(&c), before);
    assert_eq!(c.release(g, gfh), 0);
    forget(&mut c, g, 1);
    assert!(!c.fs.is_inode_open(g as u32), "the orphan went with its last reference");

    // Numbers that are no inode of a file: 2 (the root is node 1), the
    // journal, never used, past the end, beyond 32 bits.
    let count = c.fs.superblock().inodes_count as u64;
    for bad in [2, 8, count, count + 1, 1 << 32, u64::MAX] {
        assert_eq!(c.lookup(bad, ".").unwrap_err(), libc::ESTALE, "node {bad}");
        assert_eq!(c.lookup(bad, "..").unwrap_err(), libc::ESTALE, "node {bad}");
    }
    assert_ne!(c.lookup(0, ".").unwrap_err(), 0, "node 0");
    assert_eq!(nodes(&c), before - 1);
    for n in [2, 8, count] {
        assert!(!c.fs.is_inode_open(n as u32), "inode {n} left open");
    }
    c.finish();
    assert_fsck_clean(&img);
}
