//! The vhost-user virtio-fs device of one frontend connection: what it
//! offers (features, protocol features, queues, config space) and how the
//! vring threads hand queue work to the device's worker pool.
//!
//! Queue 0 is the high-priority queue (FORGET, INTERRUPT), queues 1..=N
//! are request queues; all of them feed one bounded worker pool
//! ([`crate::fuse::dispatch::serve_requests`]), never a thread per request.

use super::chain::Mem;
use super::config_space::FsConfigSpace;
use super::queue::{self, InFlight, Requests, Taken, Vring};
use super::shmem::VhostShmem;
use crate::dax::DaxWindow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use vhost::vhost_user::Backend;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserShMemConfig, VhostUserVirtioFeatures};
use vhost_user_backend::VhostUserBackend;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vm_memory::GuestMemoryAtomic;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier};

/// Largest queue the device accepts (the virtio maximum for split queues).
pub const MAX_QUEUE_SIZE: usize = 32768;

/// How long GET_VRING_BASE waits for a queue's requests to be answered.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// One virtio-fs device, for one frontend connection.
pub struct FsDevice {
    config: FsConfigSpace,
    num_queues: usize,
    event_idx: AtomicBool,
    mem: RwLock<Option<GuestMemoryAtomic<Mem>>>,
    work: Mutex<Option<Sender<Taken>>>,
    inflight: Vec<Arc<InFlight>>,
    /// The backend request channel (SET_BACKEND_REQ_FD), for SHMEM_MAP.
    backend_req: Mutex<Option<Backend>>,
    /// The DAX window of this session, when the daemon offers one.
    window: Option<Arc<DaxWindow>>,
}

impl FsDevice {
    /// A device with `request_queues` request queues and, if given, a DAX
    /// window; returns it and the request source its worker pool serves.
    pub fn new(
        config: FsConfigSpace,
        request_queues: usize,
        window: Option<Arc<DaxWindow>>,
    ) -> (Arc<FsDevice>, Requests) {
        let (tx, rx) = channel();
        let num_queues = 1 + request_queues.max(1);
        let dev = FsDevice {
            config,
            num_queues,
            event_idx: AtomicBool::new(false),
            mem: RwLock::new(None),
            work: Mutex::new(Some(tx)),
            inflight: (0..num_queues).map(|_| Arc::new(InFlight::default())).collect(),
            backend_req: Mutex::new(None),
            window,
        };
        (Arc::new(dev), Requests::new(rx))
    }

    /// Stops feeding the worker pool: once the requests already handed
    /// over are answered, its workers end.
    pub fn close(&self) {
        self.work.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Requests taken off the queues and not answered.
    pub fn in_flight(&self) -> usize {
        self.inflight.iter().map(|f| f.count()).sum()
    }

    /// Whether the frontend gave a backend request channel.
    pub fn has_backend_channel(&self) -> bool {
        self.backend_req.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

impl VhostUserBackend for FsDevice {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        self.num_queues
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let base = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::BACKEND_SEND_FD;
        if self.window.is_some() { base | VhostUserProtocolFeatures::SHMEM } else { base }
    }

    fn get_shmem_config(&self) -> std::io::Result<VhostUserShMemConfig> {
        match &self.window {
            // Region 0 is virtio-fs's cache window.
            Some(w) => Ok(VhostUserShMemConfig::new(1, &[w.size()])),
            None => Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no DAX window (--cache-size 0)")),
        }
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Release);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        self.config.read(offset, size)
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<Mem>) -> std::io::Result<()> {
        *self.mem.write().unwrap_or_else(|p| p.into_inner()) = Some(mem);
        Ok(())
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        if let Some(w) = &self.window {
            w.set_channel(Arc::new(VhostShmem(backend.clone())));
        }
        *self.backend_req.lock().unwrap_or_else(|p| p.into_inner()) = Some(backend);
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn stop_vring(&self, queue_index: u32) -> std::io::Result<()> {
        // GET_VRING_BASE: the frontend reads the ring's position next, so
        // every request taken off it must be answered first.
        if let Some(f) = self.inflight.get(queue_index as usize)
            && !f.wait_idle(STOP_WAIT)
        {
            log::warn!("queue {queue_index} stopped with {} requests unanswered", f.count());
        }
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> std::io::Result<()> {
        if evset != EventSet::IN {
            log::warn!("unexpected event set {evset:?} on queue {device_event}");
            return Ok(());
        }
        let idx = device_event as usize;
        let Some(vring) = vrings.get(idx) else {
            log::warn!("event for unknown queue {idx}");
            return Ok(());
        };
        let Some(mem) = self.mem.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            log::warn!("queue {idx} kicked before the memory table");
            return Ok(());
        };
        let work = self.work.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(work) = work else {
            log::debug!("queue {idx} kicked while the session ends");
            return Ok(());
        };
        queue::drain(vring, &mem, self.event_idx.load(Ordering::Acquire), &self.inflight[idx], &work);
        Ok(())
    }
}
