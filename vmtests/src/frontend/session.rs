//! The vhost-user session: the handshake a VMM does with a vhost-user-fs
//! backend, through the `vhost` crate's frontend side.
//!
//! Order (as QEMU does it, give or take): SET_OWNER, GET_FEATURES,
//! GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM (MQ), GET_CONFIG (CONFIG: tag and
//! queue count), SET_FEATURES, SET_MEM_TABLE (the memfd regions), then per
//! queue SET_VRING_NUM/ADDR/BASE/CALL/KICK/ENABLE. With REPLY_ACK every
//! message that has no reply of its own asks for an ack, so a refusal shows
//! up at the message that caused it.
//!
//! With [`SessionOptions::dax_window`] the frontend also negotiates SHMEM,
//! BACKEND_REQ and BACKEND_SEND_FD, asks GET_SHMEM_CONFIG, reserves region
//! 0 as a [`DaxWindow`] and hands the backend its request channel
//! (SET_BACKEND_REQ_FD), as QEMU does for `vhost-user-fs` with a cache.

use std::path::Path;
use std::sync::{Arc, Mutex};

use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserHeaderFlag};
use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::{VhostBackend, VringConfigData};

use super::memory::{GuestRam, Layout};
use super::virtq::SplitQueue;
use super::window::DaxWindow;

/// `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;

/// The protocol features a DAX window needs besides REPLY_ACK.
pub const DAX_PROTOCOL: VhostUserProtocolFeatures = VhostUserProtocolFeatures::SHMEM
    .union(VhostUserProtocolFeatures::BACKEND_REQ)
    .union(VhostUserProtocolFeatures::BACKEND_SEND_FD);

/// What the frontend asks for.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Request queues wanted (the high-priority queue comes on top); fewer
    /// are set up when the backend offers fewer.
    pub request_queues: usize,
    /// Entries per queue.
    pub queue_size: u16,
    /// Negotiate EVENT_IDX when offered.
    pub event_idx: bool,
    /// Guest memory layout.
    pub layout: Layout,
    /// Set up a DAX window (shared memory region 0) and the backend
    /// request channel; the backend must offer SHMEM, BACKEND_REQ,
    /// BACKEND_SEND_FD and REPLY_ACK and announce a nonzero region 0.
    pub dax_window: bool,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            request_queues: 1,
            queue_size: 256,
            event_idx: false,
            layout: Layout::default(),
            dax_window: false,
        }
    }
}

/// The device configuration of virtio-fs (GET_CONFIG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// The tag, up to its first NUL.
    pub tag: String,
    /// `num_request_queues`.
    pub num_request_queues: u32,
}

/// What was negotiated.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// Virtio features the backend offered.
    pub offered: u64,
    /// Virtio features acked.
    pub features: u64,
    /// Protocol features the backend offered.
    pub offered_protocol: VhostUserProtocolFeatures,
    /// Protocol features acked.
    pub protocol: VhostUserProtocolFeatures,
    /// GET_QUEUE_NUM (or 2 without MQ).
    pub max_queues: u64,
    /// GET_CONFIG, when the backend offers CONFIG.
    pub config: Option<FsConfig>,
}

/// A connected, set-up vhost-user session: guest memory, the queues
/// (index 0 is the high-priority queue, 1.. the request queues) and the
/// control connection. Dropping it disconnects.
pub struct Session {
    /// Guest memory shared with the backend.
    pub ram: Arc<GuestRam>,
    /// The queues, each behind its own lock.
    pub queues: Vec<Mutex<SplitQueue>>,
    /// The control connection.
    pub frontend: Mutex<Frontend>,
    /// What was negotiated.
    pub negotiated: Negotiated,
    /// The DAX window, when asked for (shared, so a test can keep
    /// inspecting it after the session ends).
    pub window: Option<Arc<DaxWindow>>,
}

fn ctx<T, E: std::fmt::Debug>(what: &str, r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| format!("vhost-user {what}: {e:?}"))
}

impl Session {
    /// Connects to `socket` and sets everything up.
    pub fn connect(socket: &Path, opts: &SessionOptions) -> Result<Session, String> {
        let ram = Arc::new(GuestRam::new(opts.layout).map_err(|e| format!("guest memory: {e}"))?);
        let mut fe = ctx("connect", Frontend::connect(socket, 2))?;
        ctx("SET_OWNER", fe.set_owner())?;
        let offered = ctx("GET_FEATURES", fe.get_features())?;
        if offered & VIRTIO_F_VERSION_1 == 0 {
            return Err(format!("the backend does not offer VIRTIO_F_VERSION_1 (features {offered:#x})"));
        }
        let mut features = VIRTIO_F_VERSION_1;
        if opts.event_idx {
            features |= offered & VIRTIO_RING_F_EVENT_IDX;
        }
        features |= offered & VIRTIO_RING_F_INDIRECT_DESC;
        let pf = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        let (mut offered_protocol, mut protocol) =
            (VhostUserProtocolFeatures::empty(), VhostUserProtocolFeatures::empty());
        if offered & pf != 0 {
            features |= pf;
            offered_protocol = ctx("GET_PROTOCOL_FEATURES", fe.get_protocol_features())?;
            let mut want = VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::CONFIG;
            if opts.dax_window {
                let dax = DAX_PROTOCOL | VhostUserProtocolFeatures::REPLY_ACK;
                if !offered_protocol.contains(dax) {
                    return Err(format!(
                        "a DAX window needs protocol features {dax:?}; the backend offers {offered_protocol:?}"
                    ));
                }
                want |= dax;
            }
            protocol = offered_protocol & want;
            ctx("SET_PROTOCOL_FEATURES", fe.set_protocol_features(protocol))?;
        } else if opts.dax_window {
            return Err("a DAX window needs VHOST_USER_F_PROTOCOL_FEATURES; the backend does not offer it".into());
        }
        let max_queues = if protocol.contains(VhostUserProtocolFeatures::MQ) {
            ctx("GET_QUEUE_NUM", fe.get_queue_num())?
        } else {
            2
        };
        let config = if protocol.contains(VhostUserProtocolFeatures::CONFIG) {
            let (_, buf) = ctx("GET_CONFIG", fe.get_config(0, 40, VhostUserConfigFlags::empty(), &[0; 40]))?;
            let tag = &buf[..36];
            let end = tag.iter().position(|&b| b == 0).unwrap_or(36);
            Some(FsConfig {
                tag: String::from_utf8_lossy(&tag[..end]).into_owned(),
                num_request_queues: u32::from_le_bytes(buf[36..40].try_into().unwrap()),
            })
        } else {
            None
        };
        if protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        let window = if opts.dax_window {
            let shm = ctx("GET_SHMEM_CONFIG", fe.get_shmem_config())?;
            let (n, size) = (shm.nregions, shm.memory_sizes[0]);
            if n < 1 || size == 0 {
                return Err(format!("GET_SHMEM_CONFIG: {n} region(s), region 0 of {size} bytes: no DAX window"));
            }
            let w = DaxWindow::new(size, true).map_err(|e| format!("DAX window of {size} bytes: {e}"))?;
            ctx("SET_BACKEND_REQ_FD", fe.set_backend_request_fd(&w.backend_socket()))?;
            Some(Arc::new(w))
        } else {
            None
        };
        ctx("SET_FEATURES", fe.set_features(features))?;
        ctx("SET_MEM_TABLE", fe.set_mem_table(&ram.regions()))?;
        let mut nq = 1 + opts.request_queues;
        nq = nq.min(max_queues as usize);
        if let Some(c) = &config {
            nq = nq.min(1 + c.num_request_queues as usize);
        }
        let event_idx = features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = Vec::new();
        for q in 0..nq {
            let vq = SplitQueue::new(&ram, opts.queue_size, event_idx);
            ctx("SET_VRING_NUM", fe.set_vring_num(q, opts.queue_size))?;
            let cfg = VringConfigData {
                queue_max_size: opts.queue_size,
                queue_size: opts.queue_size,
                flags: 0,
                desc_table_addr: ram.host_addr(vq.desc.addr),
                used_ring_addr: ram.host_addr(vq.used.addr),
                avail_ring_addr: ram.host_addr(vq.avail.addr),
                log_addr: None,
            };
            ctx("SET_VRING_ADDR", fe.set_vring_addr(q, &cfg))?;
            ctx("SET_VRING_BASE", fe.set_vring_base(q, 0))?;
            ctx("SET_VRING_CALL", fe.set_vring_call(q, &vq.call))?;
            ctx("SET_VRING_KICK", fe.set_vring_kick(q, &vq.kick))?;
            if features & pf != 0 {
                ctx("SET_VRING_ENABLE", fe.set_vring_enable(q, true))?;
            }
            queues.push(Mutex::new(vq));
        }
        fe.set_hdr_flags(VhostUserHeaderFlag::empty());
        let negotiated = Negotiated { offered, features, offered_protocol, protocol, max_queues, config };
        Ok(Session { ram, queues, frontend: Mutex::new(fe), negotiated, window })
    }

    /// Number of request queues set up (queues 1..=n).
    pub fn request_queues(&self) -> usize {
        self.queues.len() - 1
    }
}
