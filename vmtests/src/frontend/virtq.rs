//! The driver side of a split virtqueue in guest memory: descriptor table,
//! available ring, used ring, kick and call eventfds.
//!
//! Normal use: [`SplitQueue::add_chain`] writes a chain and publishes it,
//! [`SplitQueue::kick`] notifies the device, [`SplitQueue::pop_used`]
//! collects completions and [`SplitQueue::wait_call`] sleeps (bounded) on
//! the call eventfd. Hostile tests use the raw hooks: [`SplitQueue::write_desc`],
//! [`SplitQueue::push_avail`], [`SplitQueue::set_avail_idx`].

use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::memory::{Buf, GuestRam};

/// `VRING_DESC_F_NEXT`.
pub const F_NEXT: u16 = 1;
/// `VRING_DESC_F_WRITE`: device-writable.
pub const F_WRITE: u16 = 2;
/// `VRING_DESC_F_INDIRECT`.
pub const F_INDIRECT: u16 = 4;

/// One descriptor exactly as stored in the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawDesc {
    /// Guest physical address.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// `F_NEXT | F_WRITE | F_INDIRECT`.
    pub flags: u16,
    /// Next descriptor index (meaningful with `F_NEXT`).
    pub next: u16,
}

impl RawDesc {
    fn bytes(&self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..].copy_from_slice(&self.next.to_le_bytes());
        b
    }
}

/// One segment of a chain: a guest buffer and its direction.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    /// Guest address.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

/// A used-ring element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// The head descriptor index of the chain.
    pub id: u32,
    /// Bytes the device wrote.
    pub len: u32,
}

/// A split virtqueue, driver side.
pub struct SplitQueue {
    /// Queue size (a power of two).
    pub size: u16,
    /// Descriptor table.
    pub desc: Buf,
    /// Available ring.
    pub avail: Buf,
    /// Used ring.
    pub used: Buf,
    /// Kick: the driver writes, the device reads.
    pub kick: EventFd,
    /// Call: the device writes, the driver reads.
    pub call: EventFd,
    /// Whether EVENT_IDX was negotiated (then `used_event` is kept current).
    pub event_idx: bool,
    free: Vec<u16>,
    avail_idx: u16,
    last_used: u16,
}

impl SplitQueue {
    /// Allocates the rings of a queue of `size` entries in `ram` (zeroed).
    pub fn new(ram: &GuestRam, size: u16, event_idx: bool) -> SplitQueue {
        assert!(size.is_power_of_two() && size <= 32768);
        let n = size as u64;
        let desc = ram.alloc(16 * n, 16).expect("room for a descriptor table");
        let avail = ram.alloc(6 + 2 * n, 2).expect("room for an avail ring");
        let used = ram.alloc(6 + 8 * n, 4096).expect("room for a used ring");
        for b in [desc, avail, used] {
            ram.write(b.addr, &vec![0; b.len as usize]);
        }
        SplitQueue {
            size,
            desc,
            avail,
            used,
            kick: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
            call: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
            event_idx,
            free: (0..size).rev().collect(),
            avail_idx: 0,
            last_used: 0,
        }
    }

    /// Free descriptors left.
    pub fn free_descs(&self) -> usize {
        self.free.len()
    }

    /// Takes `n` free descriptor indexes (for raw chains); `None` if fewer are free.
    pub fn take_descs(&mut self, n: usize) -> Option<Vec<u16>> {
        (self.free.len() >= n).then(|| (0..n).map(|_| self.free.pop().unwrap()).collect())
    }

    /// Gives descriptor indexes back (after their chain was used).
    pub fn give_descs(&mut self, idx: impl IntoIterator<Item = u16>) {
        self.free.extend(idx);
    }

    /// Writes descriptor `index` of the table as given (any address,
    /// length, flags, next: the raw hook). `index` may be out of the table
    /// only if the caller wants to scribble past it: it is not checked.
    pub fn write_desc(&self, ram: &GuestRam, index: u16, d: RawDesc) {
        ram.write(self.desc.addr + 16 * index as u64, &d.bytes());
    }

    /// Writes `segs` as a chain over free descriptors and publishes it;
    /// returns the head and the descriptor indexes used (give them back
    /// with [`SplitQueue::give_descs`] once the chain is used), or `None`
    /// when not enough descriptors are free.
    pub fn add_chain(&mut self, ram: &GuestRam, segs: &[Seg]) -> Option<(u16, Vec<u16>)> {
        assert!(!segs.is_empty());
        let idx = self.take_descs(segs.len())?;
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let d = RawDesc {
                addr: s.addr,
                len: s.len,
                flags: if last { 0 } else { F_NEXT } | if s.write { F_WRITE } else { 0 },
                next: if last { 0 } else { idx[i + 1] },
            };
            self.write_desc(ram, idx[i], d);
        }
        self.push_avail(ram, idx[0]);
        Some((idx[0], idx))
    }

    /// Like [`SplitQueue::add_chain`] but through one indirect descriptor:
    /// the table of `segs` is written at `table` (16 bytes per segment).
    pub fn add_indirect(&mut self, ram: &GuestRam, table: Buf, segs: &[Seg]) -> Option<(u16, Vec<u16>)> {
        assert!(table.len >= 16 * segs.len() as u64);
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let d = RawDesc {
                addr: s.addr,
                len: s.len,
                flags: if last { 0 } else { F_NEXT } | if s.write { F_WRITE } else { 0 },
                next: if last { 0 } else { i as u16 + 1 },
            };
            ram.write(table.addr + 16 * i as u64, &d.bytes());
        }
        let idx = self.take_descs(1)?;
        self.write_desc(
            ram,
            idx[0],
            RawDesc { addr: table.addr, len: 16 * segs.len() as u32, flags: F_INDIRECT, next: 0 },
        );
        self.push_avail(ram, idx[0]);
        Some((idx[0], idx))
    }

    /// Puts `head` in the next available-ring slot and publishes it (the
    /// index store is ordered after the descriptor and ring writes).
    pub fn push_avail(&mut self, ram: &GuestRam, head: u16) {
        let slot = self.avail.addr + 4 + 2 * (self.avail_idx % self.size) as u64;
        ram.mem.write_obj(head.to_le(), GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::SeqCst);
        ram.mem.store(self.avail_idx.to_le(), GuestAddress(self.avail.addr + 2), Ordering::Release).unwrap();
    }

    /// Stores `idx` as the available index without filling ring slots (a
    /// jump: the device then reads whatever the slots hold). The driver's
    /// own notion follows it.
    pub fn set_avail_idx(&mut self, ram: &GuestRam, idx: u16) {
        self.avail_idx = idx;
        fence(Ordering::SeqCst);
        ram.mem.store(idx.to_le(), GuestAddress(self.avail.addr + 2), Ordering::Release).unwrap();
    }

    /// The available index as published.
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// Notifies the device.
    pub fn kick(&self) {
        let _ = self.kick.write(1);
    }

    /// The device's used index.
    pub fn used_idx(&self, ram: &GuestRam) -> u16 {
        u16::from_le(ram.mem.load(GuestAddress(self.used.addr + 2), Ordering::Acquire).unwrap())
    }

    /// The next used element, if the device has returned one.
    pub fn pop_used(&mut self, ram: &GuestRam) -> Option<Used> {
        if self.used_idx(ram) == self.last_used {
            return None;
        }
        fence(Ordering::SeqCst);
        let at = self.used.addr + 4 + 8 * (self.last_used % self.size) as u64;
        let id: u32 = ram.mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = ram.mem.read_obj(GuestAddress(at + 4)).unwrap();
        self.last_used = self.last_used.wrapping_add(1);
        if self.event_idx {
            // used_event: notify me when the device passes this index.
            let ue = self.avail.addr + 4 + 2 * self.size as u64;
            ram.mem.store(self.last_used.to_le(), GuestAddress(ue), Ordering::Release).unwrap();
        }
        Some(Used { id: u32::from_le(id), len: u32::from_le(len) })
    }

    /// Used elements collected so far (the driver's used index).
    pub fn last_used(&self) -> u16 {
        self.last_used
    }

    /// Waits up to `limit` for the call eventfd (a notification), consuming
    /// it; true when one came. Completions are read with `pop_used`, which
    /// callers should try again after this returns either way.
    pub fn wait_call(&self, limit: Duration) -> bool {
        wait_readable(&self.call, limit) && self.call.read().is_ok()
    }
}

/// Whether `fd` became readable within `limit`.
pub fn wait_readable(fd: &EventFd, limit: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one valid pollfd that lives across the call.
    let n = unsafe { libc::poll(&mut p, 1, limit.as_millis().min(i32::MAX as u128) as i32) };
    n > 0 && p.revents & libc::POLLIN != 0
}
