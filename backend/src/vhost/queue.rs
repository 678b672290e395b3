//! Queue handling: chains are taken off a virtqueue by the vring thread
//! (notifications suppressed while draining, EVENT_IDX honoured), checked,
//! and handed to the device's worker pool as requests; a worker answers
//! a request into the writable part of its own chain, then `add_used` and
//! a notification when the guest wants one. Malformed chains are given
//! back empty with a log line.

use super::chain::{Chain, ChainSink, ChainSource, Mem};
use crate::fuse::dispatch::{Incoming, Payload, RequestSource};
use crate::fuse::server::Server;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vhost_user_backend::{VringRwLock, VringT};
use virtio_queue::QueueOwnedT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic};

/// The vring type of the device.
pub type Vring = VringRwLock<GuestMemoryAtomic<Mem>>;

/// Requests taken off one queue and not answered yet, and whether the
/// queue's available ring was found broken (reported once, not per kick).
#[derive(Debug, Default)]
pub struct InFlight {
    count: Mutex<usize>,
    zero: Condvar,
    broken_reported: AtomicBool,
}

impl InFlight {
    fn add(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn done(&self) {
        let mut c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.zero.notify_all();
        }
    }

    /// Waits up to `limit` for every request to be answered; returns
    /// whether they were.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *c > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            c = self.zero.wait_timeout(c, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// Requests in flight.
    pub fn count(&self) -> usize {
        *self.count.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Gives a used chain back to the guest and notifies it when it asked.
fn give_back(vring: &Vring, head: u16, len: u32) {
    let notify = {
        let mut v = vring.get_mut();
        if let Err(e) = v.add_used(head, len) {
            log::error!("add_used of chain {head}: {e}");
            return;
        }
        // Without EVENT_IDX this is always true.
        v.needs_notification().unwrap_or(true)
    };
    if notify && let Err(e) = vring.signal_used_queue() {
        log::debug!("notifying the guest: {e}");
    }
}

/// A request on its way through the worker pool: its chain and the way
/// back to its queue.
pub struct VirtioRequest {
    chain: Chain,
    vring: Vring,
    inflight: Arc<InFlight>,
    source: Option<ChainSource>,
    sink: Option<ChainSink>,
    answered: bool,
}

impl VirtioRequest {
    fn finish(mut self: Box<Self>, len: u32) {
        give_back(&self.vring, self.chain.head(), len);
        self.answered = true;
        self.inflight.done();
    }
}

impl Drop for VirtioRequest {
    fn drop(&mut self) {
        // A request dropped unanswered (a worker unwinding, the pool shut
        // down) still gives its chain back, empty.
        if !self.answered {
            give_back(&self.vring, self.chain.head(), 0);
            self.inflight.done();
        }
    }
}

impl Incoming for VirtioRequest {
    fn payload(&mut self) -> Payload<'_> {
        Payload {
            write: self.source.as_mut().map(|s| s as &mut dyn ext4::fs::data::io::DataSource),
            read: self.sink.as_mut().map(|s| s as &mut dyn crate::fuse::wire::ReplySink),
        }
    }

    fn reply(self: Box<Self>, reply: &[u8], external: usize) -> io::Result<()> {
        let r = self.chain.write_reply(reply, external);
        let len = *r.as_ref().unwrap_or(&0);
        self.finish(len);
        r.map(|_| ())
    }

    fn no_reply(self: Box<Self>) {
        self.finish(0);
    }
}

/// A chain taken off a queue, not yet looked at by a worker.
pub struct Taken {
    chain: Chain,
    vring: Vring,
    inflight: Arc<InFlight>,
}

/// Drains queue `vring` into `work`: pops every available chain, checks
/// it, and sends it to the workers; a malformed chain is given back
/// empty. With EVENT_IDX the guest's notifications are off while
/// draining and the queue is looked at again after turning them on.
///
/// A queue whose available index runs more than the queue size ahead of
/// what was taken is broken (the guest wrote nonsense): nothing is taken
/// from it until the frontend sets it up again, the problem is logged once,
/// and this returns at once — re-checking it would spin the vring thread
/// and starve the device's other queues.
pub fn drain(
    vring: &Vring,
    mem: &GuestMemoryAtomic<Mem>,
    event_idx: bool,
    inflight: &Arc<InFlight>,
    work: &Sender<Taken>,
) {
    loop {
        let mem: Arc<Mem> = mem.memory().into_inner();
        if event_idx && let Err(e) = vring.disable_notification() {
            log::warn!("disabling notifications: {e}");
        }
        let mut taken = Vec::new();
        let broken = {
            let mut v = vring.get_mut();
            let q = v.get_queue_mut();
            match q.iter(mem.clone()) {
                Ok(iter) => {
                    for chain in iter {
                        let head = chain.head_index();
                        taken.push((head, Chain::parse(mem.clone(), chain)));
                    }
                    None
                }
                Err(e) => Some(e),
            }
        };
        if let Some(e) = broken {
            if !inflight.broken_reported.swap(true, Ordering::Relaxed) {
                log::warn!("queue ignored until the frontend sets it up again: {e}");
            }
            return;
        }
        inflight.broken_reported.store(false, Ordering::Relaxed);
        for (head, chain) in taken {
            match chain {
                Ok(chain) => {
                    inflight.add();
                    if let Err(e) = work.send(Taken { chain, vring: vring.clone(), inflight: inflight.clone() }) {
                        // The pool is gone (session ending): give it back.
                        let t = e.0;
                        give_back(&t.vring, t.chain.head(), 0);
                        t.inflight.done();
                    }
                }
                Err(e) => {
                    log::warn!("malformed descriptor chain {head} dropped: {e}");
                    give_back(vring, head, 0);
                }
            }
        }
        if !event_idx {
            return;
        }
        match vring.enable_notification() {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                log::warn!("enabling notifications: {e}");
                return;
            }
        }
    }
}

/// The worker pool's side of the queues: requests from every queue of a
/// device, in arrival order.
pub struct Requests {
    rx: Mutex<Receiver<Taken>>,
}

impl Requests {
    /// Requests sent through `rx`.
    pub fn new(rx: Receiver<Taken>) -> Self {
        Requests { rx: Mutex::new(rx) }
    }
}

/// Room for a request's header and arguments (WRITE data stays in guest
/// memory): the largest are SETXATTR with a 64 KiB value and names.
pub const HEAD_BUFFER: usize = 64 * 1024 + 8 * 1024;

impl RequestSource for Requests {
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Box<dyn Incoming>)>> {
        loop {
            let taken = match self.rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                Ok(t) => t,
                Err(_) => return Ok(None),
            };
            let Taken { chain, vring, inflight } = taken;
            let mut req = Box::new(VirtioRequest { chain, vring, inflight, source: None, sink: None, answered: false });
            match req.chain.copy_head(buf) {
                Ok((n, source)) => {
                    req.source = source;
                    req.sink = Some(req.chain.sink());
                    return Ok(Some((n, req)));
                }
                Err(e) => {
                    log::warn!("{:?}: cannot read the request: {e}; dropped", req.chain);
                    req.no_reply();
                }
            }
        }
    }

    fn buffer_size(&self, _server: &Server) -> usize {
        HEAD_BUFFER
    }
}
