//! The in-process vhost-user frontend ("a VM without a VM") proven against a
//! daemon that exists: QEMU 7.2's C virtiofsd serving a host directory.
//! INIT, create / write / read back / readdir / unlink, every request queue
//! the daemon offers (it offers one request queue besides the
//! high-priority one), 16 requests in flight per queue, payloads split over
//! several descriptors, across the seam of two memory regions.

use std::time::Duration;

use fuse_abi::linux::*;
use vmtests::frontend::daemon::Daemon;
use vmtests::frontend::{ChainShape, FuseClient, SessionOptions, fuse};

/// The C daemon and a scratch dir, or a loud skip.
fn start(what: &str) -> Option<(testkit::Scratch, Daemon)> {
    if !testkit::is_root() {
        testkit::skip(what, "the C virtiofsd needs root (chroot sandbox)");
        return None;
    }
    let Some(bin) = vmtests::rig::qemu_virtiofsd() else {
        testkit::skip(what, "QEMU's C virtiofsd is missing (scripts/setup.sh installs qemu-system-x86)");
        return None;
    };
    let dir = testkit::Scratch::new("fe-virtiofsd");
    std::fs::create_dir(dir.join("share")).unwrap();
    std::fs::write(dir.join("share/hello"), b"hello from the host\n").unwrap();
    let socket = dir.join("vhost.sock");
    let cmd = vmtests::rig::qemu_virtiofsd_command(&bin, &dir.join("share"), &socket);
    let d = Daemon::start(cmd, &socket, &dir.join("daemon.log")).unwrap_or_else(|e| panic!("{e}"));
    Some((dir, d))
}

fn pattern(tag: u64, len: usize) -> Vec<u8> {
    let mut rng = testkit::Rng(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut v = vec![0; len];
    rng.fill(&mut v);
    v
}

#[test]
fn c_virtiofsd_serves_the_frontend() {
    let Some((dir, daemon)) = start("frontend_virtiofsd") else { return };
    let opts = SessionOptions { request_queues: 2, queue_size: 128, ..Default::default() };
    workload(dir, daemon, &opts, false);
}

/// The same with EVENT_IDX negotiated and every chain behind an indirect
/// descriptor (the C daemon offers both).
#[test]
fn c_virtiofsd_event_idx_and_indirect() {
    let Some((dir, daemon)) = start("frontend_virtiofsd event_idx") else { return };
    let opts = SessionOptions { request_queues: 2, queue_size: 64, event_idx: true, ..Default::default() };
    workload(dir, daemon, &opts, true);
}

fn workload(dir: testkit::Scratch, mut daemon: Daemon, opts: &SessionOptions, indirect: bool) {
    let c = FuseClient::connect(&daemon.socket, opts).unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_text()));
    *c.shape.lock().unwrap() = ChainShape { indirect, ..Default::default() };
    let n = &c.session.negotiated;
    eprintln!(
        "virtiofsd: features {:#x}, protocol {:?}, queues {}, config {:?}: {} request queue(s)",
        n.offered,
        n.offered_protocol,
        n.max_queues,
        n.config,
        c.request_queues()
    );
    assert!(c.request_queues() >= 1);
    let negotiated_event_idx = n.features & vmtests::frontend::session::VIRTIO_RING_F_EVENT_IDX != 0;
    let init = c.init().unwrap();
    assert_eq!(init.major, 7);

    // The file the host put there.
    let e = c.lookup(FUSE_ROOT_ID, "hello").unwrap();
    let fh = c.open(e.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(c.read_all(e.nodeid, fh, 4096).unwrap(), b"hello from the host\n");
    c.release(e.nodeid, fh).unwrap();

    // Create, write 300 KiB through payloads split in 64 KiB descriptors,
    // spaced apart, the first across the seam of regions 0 and 1. Not across
    // the seam behind an indirect descriptor: libvhost-user counts the two
    // iovecs of one such descriptor against the table's length and panics
    // with "Looped descriptor" (a false positive of the C daemon).
    *c.shape.lock().unwrap() = ChainShape { max_seg: 64 << 10, spacing: 64, straddle: !indirect, indirect };
    let (e, fh) = c.create(FUSE_ROOT_ID, "big", 0o644).unwrap();
    let big = pattern(1, 300 << 10);
    for (i, chunk) in big.chunks(100 << 10).enumerate() {
        assert_eq!(c.write(e.nodeid, fh, (i * (100 << 10)) as u64, chunk).unwrap(), chunk.len() as u32);
    }
    assert_eq!(c.read(e.nodeid, fh, 0, 128 << 10).unwrap(), big[..128 << 10]);
    c.release(e.nodeid, fh).unwrap();
    *c.shape.lock().unwrap() = ChainShape { indirect, ..Default::default() };
    assert_eq!(std::fs::read(dir.join("share/big")).unwrap(), big, "host file differs");

    // 16 requests in flight on every request queue: creates, then writes,
    // then reads, each batch submitted before any reply is awaited.
    std::thread::scope(|s| {
        for q in 1..=c.request_queues() {
            let c = &c;
            s.spawn(move || {
                let names: Vec<String> = (0..16).map(|i| format!("q{q}-f{i}")).collect();
                let t: Vec<_> = names
                    .iter()
                    .map(|nm| {
                        c.submit(q, &fuse::create(FUSE_ROOT_ID, nm, libc::O_RDWR | libc::O_CREAT, 0o644)).unwrap()
                    })
                    .collect();
                let files: Vec<(u64, u64)> = t
                    .into_iter()
                    .map(|t| {
                        let b = c.wait(t).unwrap().ok().expect("create");
                        let e: fuse_entry_out = fuse::parse(&b).unwrap();
                        let o: fuse_open_out = fuse::parse(&b[std::mem::size_of::<fuse_entry_out>()..]).unwrap();
                        (e.nodeid, o.fh)
                    })
                    .collect();
                let data: Vec<Vec<u8>> = (0..16).map(|i| pattern((q * 100 + i) as u64, 5000 + 97 * i)).collect();
                let t: Vec<_> = files
                    .iter()
                    .zip(&data)
                    .map(|(&(n, fh), d)| c.submit(q, &fuse::write(n, fh, 0, d)).unwrap())
                    .collect();
                for (t, d) in t.into_iter().zip(&data) {
                    let w: fuse_write_out = fuse::parse(&c.wait(t).unwrap().ok().expect("write")).unwrap();
                    assert_eq!(w.size as usize, d.len());
                }
                let t: Vec<_> =
                    files.iter().map(|&(n, fh)| c.submit(q, &fuse::read(n, fh, 0, 64 << 10)).unwrap()).collect();
                for (t, d) in t.into_iter().zip(&data) {
                    assert_eq!(&c.wait(t).unwrap().ok().expect("read"), d);
                }
                for &(n, fh) in &files {
                    c.release(n, fh).unwrap();
                }
            });
        }
    });

    let names: Vec<String> = c.readdir_all(FUSE_ROOT_ID, false).unwrap().into_iter().map(|d| d.name).collect();
    for want in [".", "..", "hello", "big"].iter().map(|s| s.to_string()) {
        assert!(names.contains(&want), "readdir lacks {want}: {names:?}");
    }
    assert_eq!(names.iter().filter(|n| n.starts_with('q')).count(), 16 * c.request_queues());
    let plus = c.readdir_all(FUSE_ROOT_ID, true).unwrap();
    let hello = plus.iter().find(|d| d.name == "hello").expect("hello in readdirplus");
    assert_eq!(hello.entry.unwrap().attr.size, 20);

    // Unlink everything created; the host directory shows it.
    for nm in names.iter().filter(|n| n.starts_with('q') || *n == "big") {
        assert_eq!(c.call(&fuse::unlink(FUSE_ROOT_ID, nm, false)).errno, 0, "unlink {nm}");
    }
    assert_eq!(c.lookup(FUSE_ROOT_ID, "big").unwrap_err(), libc::ENOENT);
    let mut left: Vec<_> =
        std::fs::read_dir(dir.join("share")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["hello"]);

    // A node id never looked up: an error reply, not a crash.
    let r = c.call(&fuse::getattr(0xdead_beef));
    assert_ne!(r.errno, 0);
    assert!(c.getattr(FUSE_ROOT_ID).is_ok());

    drop(c);
    let (status, signalled) = daemon.stop(Duration::from_secs(10));
    eprintln!("virtiofsd ended: {status:?} (signalled: {signalled})");
    if opts.event_idx {
        assert!(negotiated_event_idx, "the C daemon offers EVENT_IDX");
    }
}
