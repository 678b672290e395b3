//! The FUSE seam at the level of virtio descriptor chains, without a
//! frontend: requests are laid out in guest memory (`vm-memory`) and the
//! chains built with `virtio-queue`'s `mock` module, as a guest driver
//! would. A 1 MiB WRITE and READ whose data is split over several
//! non-contiguous descriptors of odd sizes land right, byte for byte;
//! the daemon allocates no buffer of the payload's size for them (a
//! counting allocator sees every allocation of this test process) and no
//! payload byte passes through a daemon buffer. Malformed chains (wrong
//! direction, outside guest memory, overflowing lengths, loops, too short,
//! lying lengths) are refused or answered with an error, never a panic.

mod common;

use common::client::{Client, cat};
use common::{Scratch, assert_fsck_clean, mkfs};
use ext4_virtiofsd::fuse::dispatch::Payload;
use ext4_virtiofsd::fuse::server::Outcome;
use ext4_virtiofsd::fuse::wire::{ReplyBuf, bounced_payload_bytes};
use ext4_virtiofsd::vhost::chain::{Chain, ChainError, Mem};
use fuse_abi::linux::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};
use zerocopy::{FromBytes, IntoBytes};

/// Counts allocations of at least [`BIG`] bytes made by a thread while
/// its `COUNTING` flag is on (the server runs the request on the test's
/// thread; other tests of the process run on threads of their own).
struct Counting;

const BIG: usize = 256 << 10;
static BIG_ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

fn set_counting(on: bool) {
    COUNTING.with(|c| c.set(on));
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() >= BIG && counting() {
            BIG_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same layout as given.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new >= BIG && counting() {
            BIG_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as for realloc.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1 << 20;
/// Guest RAM: 32 MiB at guest address 0 (queue structures at the start).
const RAM: usize = 32 << 20;

fn image(tag: &str) -> (Scratch, std::path::PathBuf) {
    let s = Scratch::new(tag);
    let img = s.join("fs.img");
    mkfs(&img, "64M", &["-t", "ext4", "-b", "4096", "-O", "inline_data"]);
    (s, img)
}

fn memory() -> Arc<Mem> {
    Arc::new(Mem::from_ranges(&[(GuestAddress(0), RAM)]).unwrap())
}

fn desc(addr: u64, len: u32, write: bool) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, if write { VRING_DESC_F_WRITE as u16 } else { 0 }, 0))
}

/// Builds the chain from `descs` through a mock split queue (its NEXT
/// links set as a driver would) and parses it.
fn chain(mem: &Arc<Mem>, descs: &[RawDescriptor]) -> Result<Chain, ChainError> {
    let q = MockSplitQueue::new(mem.as_ref(), 256);
    let c = q.build_desc_chain(descs).unwrap();
    Chain::parse(mem.clone(), c)
}

/// Runs one request held in `chain` through the server as the device's
/// worker does; returns the reply's header and the bytes the chain holds.
fn serve(c: &Client, chain: &Chain) -> Option<(fuse_out_header, u32)> {
    let mut buf = vec![0u8; 72 << 10];
    let (n, mut source) = chain.copy_head(&mut buf).unwrap();
    let mut sink = chain.sink();
    let mut out = ReplyBuf::new();
    let mut payload =
        Payload { write: source.as_mut().map(|s| s as &mut dyn ext4::fs::data::io::DataSource), read: Some(&mut sink) };
    match c.server.handle_with(&buf[..n], &mut payload, &mut out) {
        Outcome::Reply(_) => {}
        Outcome::NoReply => return None,
        Outcome::Deferred(_) => panic!("no lock waits here"),
    }
    let used = chain.write_reply(out.bytes(), out.external_len()).unwrap();
    let mut hdr = [0u8; 16];
    chain.writable().read_at(chain.mem(), 0, &mut hdr).unwrap();
    Some((fuse_out_header::read_from_bytes(&hdr).unwrap(), used))
}

fn header(c: &mut Client, opcode: fuse_opcode, node: u64, args: &[u8], extra: usize) -> Vec<u8> {
    let mut r = c.request(opcode as u32, node, args);
    let len = r.len() + extra;
    r[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    r
}

/// Odd-sized pieces adding up to `total`, at scattered guest addresses
/// from `base` (a gap between each).
fn scattered(base: u64, total: usize, write: bool) -> Vec<(u64, u32)> {
    let sizes = [4096 + 17, 100_000, 1, 333_333, 65_536, 7];
    let mut out = Vec::new();
    let (mut addr, mut left, mut i) = (base, total, 0);
    while left > 0 {
        let n = sizes[i % sizes.len()].min(left);
        out.push((addr, n as u32));
        addr += n as u64 + 4096 + (i as u64 * 13);
        left -= n;
        i += 1;
    }
    let _ = write;
    out
}

#[test]
fn a_1mib_write_and_read_split_over_descriptors_land_right_without_a_payload_buffer() {
    let (_s, img) = image("chain-io");
    let mut c = Client::new(&img);
    c.init();
    let (node, fh) = c.create(FUSE_ROOT_ID, "big");
    let mem = memory();
    let data: Vec<u8> = (0..MIB).map(|i| (i * 7 + i / 4096) as u8).collect();

    // WRITE: header + write_in in one descriptor, the data in pieces.
    let w = fuse_write_in { fh, offset: 4096, size: MIB as u32, ..Default::default() };
    let head = header(&mut c, fuse_opcode::FUSE_WRITE, node, w.as_bytes(), MIB);
    mem.write_slice(&head, GuestAddress(0x10_0000)).unwrap();
    let mut descs = vec![desc(0x10_0000, head.len() as u32, false)];
    let mut at = 0;
    for (addr, len) in scattered(0x20_0000, MIB, false) {
        mem.write_slice(&data[at..at + len as usize], GuestAddress(addr)).unwrap();
        descs.push(desc(addr, len, false));
        at += len as usize;
    }
    descs.push(desc(0x11_0000, 24, true));
    let ch = chain(&mem, &descs).unwrap();
    let bounced = bounced_payload_bytes();
    set_counting(true);
    let (h, used) = serve(&c, &ch).expect("a reply");
    set_counting(false);
    assert_eq!((h.error, h.len, used), (0, 24, 24));
    let mut wo = [0u8; 8];
    ch.writable().read_at(&mem, 16, &mut wo).unwrap();
    assert_eq!(fuse_write_out::read_from_bytes(&wo).unwrap().size, MIB as u32);

    // READ: the reply header shares its descriptor with the data's first
    // bytes; the rest of the data in pieces.
    let r = fuse_read_in { fh, offset: 4096, size: MIB as u32, ..Default::default() };
    let head = header(&mut c, fuse_opcode::FUSE_READ, node, r.as_bytes(), 0);
    mem.write_slice(&head, GuestAddress(0x10_0000)).unwrap();
    let mut descs = vec![desc(0x10_0000, head.len() as u32, false), desc(0x11_0000, 16 + 1000, true)];
    let pieces = scattered(0x80_0000, MIB - 1000, true);
    for &(addr, len) in &pieces {
        descs.push(desc(addr, len, true));
    }
    let ch = chain(&mem, &descs).unwrap();
    set_counting(true);
    let (h, used) = serve(&c, &ch).expect("a reply");
    set_counting(false);
    assert_eq!((h.error, h.len as usize, used as usize), (0, 16 + MIB, 16 + MIB));
    let mut got = vec![0u8; MIB];
    ch.writable().read_at(&mem, 16, &mut got).unwrap();
    assert!(got == data, "the READ data differs from what was written");
    // Every split landed right: check the piece borders directly too.
    let mut off = 1000;
    for &(addr, len) in &pieces {
        let mut b = [0u8; 1];
        mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
        assert_eq!(b[0], data[off], "first byte of the piece at {addr:#x}");
        off += len as usize;
    }

    assert_eq!(
        BIG_ALLOCS.load(Ordering::SeqCst),
        0,
        "allocations of {BIG} bytes or more while serving the 1 MiB requests"
    );
    assert_eq!(bounced_payload_bytes(), bounced, "payload bytes went through a daemon buffer");

    // The same file through the contiguous path agrees; that path does
    // buffer the payload, and the counters see it (they can see).
    set_counting(true);
    let rr = c.read(node, fh, 4096, MIB as u32);
    set_counting(false);
    assert!(BIG_ALLOCS.load(Ordering::SeqCst) > 0, "the counting allocator missed the contiguous READ's buffer");
    assert!(bounced_payload_bytes() >= bounced + MIB as u64);
    assert_eq!(rr.errno, 0);
    assert!(rr.body == data);
    assert_eq!(c.release(node, fh), 0);
    c.finish();
    assert_fsck_clean(&img);
}

#[test]
fn malformed_chains_are_refused_or_answered_with_an_error() {
    let (_s, img) = image("chain-bad");
    let mut c = Client::new(&img);
    c.init();
    let mem = memory();
    let getattr = header(&mut c, fuse_opcode::FUSE_GETATTR, FUSE_ROOT_ID, fuse_getattr_in::default().as_bytes(), 0);
    mem.write_slice(&getattr, GuestAddress(0x10_0000)).unwrap();
    let ok = desc(0x10_0000, getattr.len() as u32, false);
    let out = desc(0x11_0000, 4096, true);

    // Well-formed, for reference.
    let (h, _) = serve(&c, &chain(&mem, &[ok, out]).unwrap()).unwrap();
    assert_eq!(h.error, 0);
    // Writable before readable.
    assert_eq!(chain(&mem, &[out, ok]).err(), Some(ChainError::WrongOrder));
    // Outside guest memory, and straddling its end.
    assert!(matches!(chain(&mem, &[desc(RAM as u64 + 4096, 64, false), out]), Err(ChainError::OutsideMemory { .. })));
    assert!(matches!(chain(&mem, &[ok, desc(RAM as u64 - 8, 64, true)]), Err(ChainError::OutsideMemory { .. })));
    assert!(matches!(chain(&mem, &[desc(u64::MAX - 8, 64, false), out]), Err(ChainError::OutsideMemory { .. })));
    // Lengths that overflow 4 GiB together: virtio-queue ends the chain
    // before the overflowing descriptor, which leaves no writable part
    // (or the chain is refused): nothing can be written into it.
    let r = chain(&mem, &[ok, desc(0x11_0000, u32::MAX, true), desc(0x11_0000, u32::MAX, true)]);
    assert!(r.as_ref().map_or(true, |c| c.writable().is_empty()), "{r:?}");
    let r = Chain::from_descriptors(
        mem.clone(),
        0,
        [Descriptor::new(0x10_0000, u32::MAX, 0, 0), Descriptor::new(0x10_0000, 2, 0, 0)],
    );
    assert!(matches!(r, Err(ChainError::Overflow | ChainError::OutsideMemory { .. })), "{r:?}");
    // Too short for a header: no reply, the chain is given back empty.
    let short = chain(&mem, &[desc(0x10_0000, 20, false), out]).unwrap();
    assert!(serve(&c, &short).is_none());
    // A header whose length lies (says 4 KiB, carries 56 bytes).
    let mut lying = getattr.clone();
    lying[0..4].copy_from_slice(&4096u32.to_le_bytes());
    mem.write_slice(&lying, GuestAddress(0x12_0000)).unwrap();
    let (h, _) = serve(&c, &chain(&mem, &[desc(0x12_0000, lying.len() as u32, false), out]).unwrap()).unwrap();
    assert_eq!(h.error, -libc::EINVAL);
    // A reply that does not fit the writable part: cut to an error header.
    let (h, used) = serve(&c, &chain(&mem, &[ok, desc(0x11_0000, 20, true)]).unwrap()).unwrap();
    assert_eq!((h.error, used), (-libc::ERANGE, 16));
    // No writable part at all: nothing written, nothing used.
    let ch = chain(&mem, &[ok]).unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = ch.copy_head(&mut buf).unwrap();
    let mut o = ReplyBuf::new();
    let _ = c.server.handle_with(&buf[..n], &mut Payload::default(), &mut o);
    assert_eq!(ch.write_reply(o.bytes(), o.external_len()).unwrap(), 0);
    // A WRITE whose data is shorter than it says.
    let (node, fh) = c.create(FUSE_ROOT_ID, "w");
    let w = fuse_write_in { fh, offset: 0, size: 8192, ..Default::default() };
    let head = header(&mut c, fuse_opcode::FUSE_WRITE, node, w.as_bytes(), 100);
    mem.write_slice(&head, GuestAddress(0x13_0000)).unwrap();
    let (h, _) = serve(
        &c,
        &chain(&mem, &[desc(0x13_0000, head.len() as u32, false), desc(0x14_0000, 100, false), out]).unwrap(),
    )
    .unwrap();
    assert_eq!(h.error, -libc::EINVAL);
    // A READ asking more than the writable part holds gets what fits.
    let r = fuse_read_in { fh, offset: 0, size: 1 << 20, ..Default::default() };
    let head = header(&mut c, fuse_opcode::FUSE_READ, node, r.as_bytes(), 0);
    mem.write_slice(&head, GuestAddress(0x15_0000)).unwrap();
    let (h, _) =
        serve(&c, &chain(&mem, &[desc(0x15_0000, head.len() as u32, false), desc(0x16_0000, 100, true)]).unwrap())
            .unwrap();
    assert_eq!(h.error, 0);

    // A loop: descriptor 1 points back at 0. The chain ends after as many
    // descriptors as the queue has; the request's length no longer
    // matches and it is answered EINVAL (or refused); no hang, no panic.
    let q = MockSplitQueue::new(mem.as_ref(), 16);
    let looped = [
        RawDescriptor::from(Descriptor::new(0x10_0000, getattr.len() as u32, VRING_DESC_F_NEXT as u16, 1)),
        RawDescriptor::from(Descriptor::new(0x17_0000, 64, VRING_DESC_F_NEXT as u16, 0)),
    ];
    q.add_desc_chains(&looped, 0).unwrap();
    let mut queue: virtio_queue::Queue = q.create_queue().unwrap();
    let mut it = virtio_queue::QueueOwnedT::iter(&mut queue, mem.as_ref()).unwrap();
    let dc = it.next().unwrap();
    if let Ok(ch) = Chain::parse(mem.clone(), dc) {
        assert!(ch.readable().len() > getattr.len(), "the loop was cut at the queue size");
        assert!(ch.writable().is_empty());
        let mut buf = vec![0u8; 4096];
        let (n, _) = ch.copy_head(&mut buf).unwrap();
        let mut o = ReplyBuf::new();
        assert!(
            matches!(c.server.handle_with(&buf[..n], &mut Payload::default(), &mut o), Outcome::Reply(r) if r[4..8] == (-libc::EINVAL).to_le_bytes())
        );
    }
    assert_eq!(c.release(node, fh), 0);
    let _ = cat(&[]);
    c.finish();
    assert_fsck_clean(&img);
}
