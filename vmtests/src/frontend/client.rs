//! [`FuseClient`]: FUSE requests over the virtqueues of a [`Session`], many
//! in flight per queue, with a hang guard on every wait.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fuse_abi::linux::*;
use vmm_sys_util::eventfd::EventFd;

use super::fuse::{self, OUT_HEADER, Reply, Request};
use super::memory::Buf;
use super::session::{Session, SessionOptions};
use super::virtq::{Seg, SplitQueue, Used};

/// How a request is laid out in descriptors.
#[derive(Debug, Clone, Copy)]
pub struct ChainShape {
    /// Largest descriptor for the payload and the reply data (they are cut
    /// into pieces of at most this many bytes); the header+arguments and the
    /// reply header always have descriptors of their own.
    pub max_seg: u32,
    /// Leave this many unused bytes between the buffers of one chain, so
    /// that no two descriptors are adjacent in guest memory.
    pub spacing: u64,
    /// Put the payload and the reply data across the seam of regions 0 and 1
    /// when it is free (one buffer in two mappings).
    pub straddle: bool,
    /// Send the chain through one indirect descriptor (only when the
    /// backend offered `VIRTIO_RING_F_INDIRECT_DESC`).
    pub indirect: bool,
}

impl Default for ChainShape {
    fn default() -> ChainShape {
        ChainShape { max_seg: 1 << 20, spacing: 0, straddle: false, indirect: false }
    }
}

/// A request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// The queue it went on.
    pub queue: usize,
    /// Its `unique`.
    pub unique: u64,
}

struct InFlight {
    unique: u64,
    opcode: u32,
    descs: Vec<u16>,
    bufs: Vec<Buf>,
    writable: Vec<Seg>,
    no_reply: bool,
}

#[derive(Default)]
struct Lane {
    pending: HashMap<u16, InFlight>,
    done: HashMap<u64, Result<Reply, String>>,
    /// Used elements that match no request of ours (raw chains, or a
    /// device returning a head twice).
    stray: Vec<Used>,
}

/// A FUSE client over a vhost-user session: what a guest kernel's virtio-fs
/// driver does, in process.
pub struct FuseClient {
    /// The session (guest memory, queues, control connection).
    pub session: Session,
    /// The limit of every wait for a reply: a hang guard, not a timing
    /// assertion (default 120 s).
    pub hang_guard: Duration,
    /// How requests are laid out.
    pub shape: Mutex<ChainShape>,
    /// INIT's reply, once sent.
    pub init_out: Mutex<Option<fuse_init_out>>,
    unique: AtomicU64,
    lanes: Vec<Mutex<Lane>>,
    calls: Vec<EventFd>,
}

/// The default hang guard.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

impl FuseClient {
    /// Connects to `socket` and sets up the session (no INIT yet).
    pub fn connect(socket: &Path, opts: &SessionOptions) -> Result<FuseClient, String> {
        Ok(Self::over(Session::connect(socket, opts)?))
    }

    /// A client over an existing session.
    pub fn over(session: Session) -> FuseClient {
        let n = session.queues.len();
        let calls = session.queues.iter().map(|q| q.lock().unwrap().call.try_clone().expect("dup eventfd")).collect();
        FuseClient {
            session,
            hang_guard: HANG_GUARD,
            shape: Mutex::new(ChainShape::default()),
            init_out: Mutex::new(None),
            unique: AtomicU64::new(0),
            lanes: (0..n).map(|_| Mutex::new(Lane::default())).collect(),
            calls,
        }
    }

    /// Number of request queues (1..=n are request queues, 0 is high priority).
    pub fn request_queues(&self) -> usize {
        self.session.request_queues()
    }

    /// Allocates guest buffers for `data` (readable) or `len` writable bytes,
    /// cut into `max_seg` pieces, honouring spacing and straddling.
    fn place(&self, shape: &ChainShape, len: usize, write: bool, segs: &mut Vec<Seg>, bufs: &mut Vec<Buf>) -> Vec<Seg> {
        let ram = &self.session.ram;
        let mut out = Vec::new();
        let mut left = len as u64;
        let mut first = true;
        while left > 0 {
            let n = left.min(shape.max_seg as u64);
            let b = if shape.straddle && first && n >= 2 {
                ram.alloc_at(ram.seam() - n / 2, n).or_else(|| ram.alloc(n + shape.spacing, 64))
            } else {
                ram.alloc(n + shape.spacing, 64)
            }
            .expect("guest memory for a request: too much in flight");
            first = false;
            bufs.push(b);
            let s = Seg { addr: b.addr, len: n as u32, write };
            segs.push(s);
            out.push(s);
            left -= n;
        }
        out
    }

    /// Puts `req` on queue `queue` and kicks; returns its ticket. Waits
    /// (bounded) for free descriptors when the ring is full.
    pub fn submit(&self, queue: usize, req: &Request) -> Result<Ticket, String> {
        let unique = self.unique.fetch_add(2, Ordering::Relaxed) + 2;
        let shape = *self.shape.lock().unwrap();
        let ram = &self.session.ram;
        let head = req.head_bytes(unique);
        let (mut segs, mut bufs) = (Vec::new(), Vec::new());
        let hb = ram.alloc(head.len() as u64 + shape.spacing, 64).expect("guest memory for a header");
        ram.write(hb.addr, &head);
        bufs.push(hb);
        segs.push(Seg { addr: hb.addr, len: head.len() as u32, write: false });
        let mut off = 0;
        for s in self.place(&shape, req.payload.len(), false, &mut segs, &mut bufs) {
            ram.write(s.addr, &req.payload[off..off + s.len as usize]);
            off += s.len as usize;
        }
        let mut writable = Vec::new();
        if !req.no_reply {
            let rh = ram.alloc(OUT_HEADER as u64 + shape.spacing, 64).expect("guest memory for a reply header");
            ram.write(rh.addr, &[0xa5; OUT_HEADER]);
            bufs.push(rh);
            let s = Seg { addr: rh.addr, len: OUT_HEADER as u32, write: true };
            segs.push(s);
            writable.push(s);
            writable.extend(self.place(&shape, req.reply_size as usize, true, &mut segs, &mut bufs));
        }
        let deadline = Instant::now() + self.hang_guard;
        let indirect =
            shape.indirect && self.session.negotiated.features & super::session::VIRTIO_RING_F_INDIRECT_DESC != 0;
        let table = indirect.then(|| {
            let t = ram.alloc(16 * segs.len() as u64, 16).expect("guest memory for an indirect table");
            bufs.push(t);
            t
        });
        loop {
            {
                let mut q = self.session.queues[queue].lock().unwrap();
                let mut lane = self.lanes[queue].lock().unwrap();
                self.reap(&mut q, &mut lane);
                let added = match table {
                    Some(t) => q.add_indirect(ram, t, &segs),
                    None => q.add_chain(ram, &segs),
                };
                if let Some((h, descs)) = added {
                    lane.pending.insert(
                        h,
                        InFlight { unique, opcode: req.opcode, descs, bufs, writable, no_reply: req.no_reply },
                    );
                    q.kick();
                    return Ok(Ticket { queue, unique });
                }
            }
            if Instant::now() > deadline {
                return Err(format!("hang guard: no free descriptor on queue {queue} for {:?}", self.hang_guard));
            }
            self.calls[queue].read().ok();
            super::virtq::wait_readable(&self.calls[queue], Duration::from_millis(10));
        }
    }

    /// Collects every used element of `q` into `lane`.
    fn reap(&self, q: &mut SplitQueue, lane: &mut Lane) {
        let ram = &self.session.ram;
        while let Some(u) = q.pop_used(ram) {
            let Some(f) = lane.pending.remove(&(u.id as u16)).filter(|_| u.id < q.size as u32) else {
                lane.stray.push(u);
                continue;
            };
            let r = if f.no_reply {
                Ok(Reply { opcode: f.opcode, errno: 0, body: Vec::new(), unique: f.unique, len: 0, used_len: u.len })
            } else {
                let mut w = Vec::new();
                for s in &f.writable {
                    if w.len() >= u.len as usize {
                        break;
                    }
                    w.extend(ram.read(s.addr, s.len as usize));
                }
                let total: u64 = f.writable.iter().map(|s| s.len as u64).sum();
                if u.len as u64 > total {
                    Err(format!("opcode {}: used length {} beyond the {total} writable bytes", f.opcode, u.len))
                } else {
                    Reply::parse(f.opcode, f.unique, &w, u.len)
                }
            };
            q.give_descs(f.descs);
            for b in f.bufs {
                ram.release(b);
            }
            lane.done.insert(f.unique, r);
        }
    }

    /// Waits (bounded by the hang guard) for the reply of `t`.
    pub fn wait(&self, t: Ticket) -> Result<Reply, String> {
        self.wait_for(t, self.hang_guard)
    }

    /// Waits up to `limit` for the reply of `t`; `Err` names a timeout.
    pub fn wait_for(&self, t: Ticket, limit: Duration) -> Result<Reply, String> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let mut q = self.session.queues[t.queue].lock().unwrap();
                let mut lane = self.lanes[t.queue].lock().unwrap();
                self.reap(&mut q, &mut lane);
                if let Some(r) = lane.done.remove(&t.unique) {
                    return r;
                }
                if !lane.pending.values().any(|f| f.unique == t.unique) {
                    return Err(format!("request {} is not in flight on queue {}", t.unique, t.queue));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "hang guard: no reply to request {} on queue {} within {:?} (the daemon hangs or dropped it)",
                    t.unique, t.queue, limit
                ));
            }
            if super::virtq::wait_readable(&self.calls[t.queue], Duration::from_millis(20)) {
                self.calls[t.queue].read().ok();
            }
        }
    }

    /// Sends `req` on `queue` and waits for its reply.
    pub fn call_on(&self, queue: usize, req: &Request) -> Result<Reply, String> {
        let t = self.submit(queue, req)?;
        self.wait(t)
    }

    /// Sends `req` on the first request queue; panics on a transport problem
    /// (a hang, a malformed reply), returns the reply otherwise.
    pub fn call(&self, req: &Request) -> Reply {
        self.call_on(1, req).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends `req`; its body, or its errno.
    pub fn ok(&self, req: &Request) -> Result<Vec<u8>, i32> {
        self.call(req).ok()
    }

    /// Raw access to queue `queue` for hostile tests: the ring and guest
    /// memory, under the queue's lock (completions of normal requests found
    /// meanwhile are still delivered).
    pub fn with_queue<R>(&self, queue: usize, f: impl FnOnce(&mut SplitQueue, &super::memory::GuestRam) -> R) -> R {
        let mut q = self.session.queues[queue].lock().unwrap();
        f(&mut q, &self.session.ram)
    }

    /// Waits up to `limit` for used elements that belong to no request of
    /// ours (raw chains) on `queue`, returning those seen so far.
    pub fn take_stray(&self, queue: usize, want: usize, limit: Duration) -> Vec<Used> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let mut q = self.session.queues[queue].lock().unwrap();
                let mut lane = self.lanes[queue].lock().unwrap();
                self.reap(&mut q, &mut lane);
                if lane.stray.len() >= want || Instant::now() > deadline {
                    return std::mem::take(&mut lane.stray);
                }
            }
            if super::virtq::wait_readable(&self.calls[queue], Duration::from_millis(20)) {
                self.calls[queue].read().ok();
            }
        }
    }

    /// Requests in flight on `queue`.
    pub fn in_flight(&self, queue: usize) -> usize {
        self.lanes[queue].lock().unwrap().pending.len()
    }

    // ---- the usual operations, on request queue 1 ----

    /// INIT with [`fuse::INIT_FLAGS`]; the reply is kept in `init_out`.
    pub fn init(&self) -> Result<fuse_init_out, String> {
        self.init_with(fuse::INIT_FLAGS, 0)
    }

    /// INIT with `flags` and `flags2`; the reply is kept in `init_out`.
    pub fn init_with(&self, flags: u32, flags2: u32) -> Result<fuse_init_out, String> {
        let r = self.call(&fuse::init_ext(flags, flags2));
        let body = r.ok().map_err(|e| format!("INIT failed with errno {e}"))?;
        let o: fuse_init_out = fuse::parse(&body)?;
        *self.init_out.lock().unwrap() = Some(o);
        Ok(o)
    }

    /// LOOKUP: the entry or an errno.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<fuse_entry_out, i32> {
        self.ok(&fuse::lookup(parent, name)).map(|b| fuse::parse(&b).expect("entry"))
    }

    /// GETATTR.
    pub fn getattr(&self, node: u64) -> Result<fuse_attr, i32> {
        self.ok(&fuse::getattr(node)).map(|b| fuse::parse::<fuse_attr_out>(&b).expect("attr").attr)
    }

    /// CREATE: (entry, fh).
    pub fn create(&self, parent: u64, name: &str, mode: u32) -> Result<(fuse_entry_out, u64), i32> {
        let b = self.ok(&fuse::create(parent, name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode))?;
        let e: fuse_entry_out = fuse::parse(&b).expect("entry");
        let o: fuse_open_out = fuse::parse(&b[std::mem::size_of::<fuse_entry_out>()..]).expect("open_out");
        Ok((e, o.fh))
    }

    /// OPEN: the fh.
    pub fn open(&self, node: u64, flags: i32) -> Result<u64, i32> {
        self.ok(&fuse::open(node, flags, false)).map(|b| fuse::parse::<fuse_open_out>(&b).expect("open_out").fh)
    }

    /// WRITE: bytes written.
    pub fn write(&self, node: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        self.ok(&fuse::write(node, fh, offset, data))
            .map(|b| fuse::parse::<fuse_write_out>(&b).expect("write_out").size)
    }

    /// READ.
    pub fn read(&self, node: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        self.ok(&fuse::read(node, fh, offset, size))
    }

    /// Reads the whole file through `fh` in pieces of `chunk`.
    pub fn read_all(&self, node: u64, fh: u64, chunk: u32) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        loop {
            let b = self.read(node, fh, out.len() as u64, chunk)?;
            if b.is_empty() {
                return Ok(out);
            }
            out.extend(b);
        }
    }

    /// RELEASE.
    pub fn release(&self, node: u64, fh: u64) -> Result<(), i32> {
        self.ok(&fuse::release(node, fh, false)).map(drop)
    }

    /// OPENDIR, READDIR(PLUS) until empty, RELEASEDIR: every entry.
    pub fn readdir_all(&self, node: u64, plus: bool) -> Result<Vec<fuse::Dirent>, i32> {
        let fh = self
            .ok(&fuse::open(node, libc::O_RDONLY, true))
            .map(|b| fuse::parse::<fuse_open_out>(&b).expect("open_out").fh)?;
        let mut all = Vec::new();
        let mut off = 0;
        loop {
            let b = self.ok(&fuse::readdir(node, fh, off, 8192, plus))?;
            if b.is_empty() {
                break;
            }
            let ents = fuse::parse_dirents(&b, plus).unwrap_or_else(|e| panic!("readdir reply: {e}"));
            off = ents.last().unwrap().off;
            all.extend(ents);
        }
        self.ok(&fuse::release(node, fh, true))?;
        Ok(all)
    }

    /// SETUPMAPPING of `[foffset, foffset + len)` of `node` at window offset
    /// `moffset` (`flags`: `FUSE_SETUPMAPPING_FLAG_READ` / `_WRITE`).
    pub fn setup_mapping(
        &self,
        node: u64,
        fh: u64,
        foffset: u64,
        len: u64,
        flags: u64,
        moffset: u64,
    ) -> Result<(), i32> {
        self.ok(&fuse::setupmapping(node, fh, foffset, len, flags, moffset)).map(drop)
    }

    /// REMOVEMAPPING of `ranges` (window offset, length), sent on `node`
    /// (Linux sends it on the inode whose ranges they are).
    pub fn remove_mapping(&self, node: u64, ranges: &[(u64, u64)]) -> Result<(), i32> {
        self.ok(&fuse::removemapping(node, ranges)).map(drop)
    }

    /// The session's DAX window (with [`SessionOptions::dax_window`]).
    pub fn window(&self) -> Option<&std::sync::Arc<super::window::DaxWindow>> {
        self.session.window.as_ref()
    }

    /// DESTROY (the daemon's session ends; the connection stays).
    pub fn destroy(&self) -> Result<(), i32> {
        self.ok(&fuse::destroy()).map(drop)
    }
}
