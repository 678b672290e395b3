//! A VM without a VM: an in-process vhost-user frontend that drives a
//! virtio-fs backend as a guest kernel would, with no QEMU and no guest.
//!
//! - [`memory`]: guest memory in a shared memfd, several regions (two
//!   adjacent ones, so buffers can straddle mappings, and one after a gap),
//!   with an allocator of guest buffers;
//! - [`virtq`]: split virtqueues from the driver side (descriptor table,
//!   available and used rings, kick and call eventfds), with raw hooks for
//!   hostile tests (any descriptor, avail index jumps);
//! - [`session`]: the vhost-user handshake through the `vhost` crate's
//!   frontend (`SET_OWNER` ... `SET_VRING_ENABLE`, `GET_CONFIG`);
//! - [`fuse`]: FUSE requests (fuse-abi structs) and reply parsing;
//! - [`daemon`]: a daemon process started for a test, with its log;
//! - [`client`]: [`client::FuseClient`], many requests in flight per queue,
//!   every wait bounded by a hang guard;
//! - [`window`]: the DAX window (shared memory region 0), filled by the
//!   backend's SHMEM_MAP / SHMEM_UNMAP over the backend request channel.
//!
//! ```no_run
//! use vmtests::frontend::{FuseClient, SessionOptions};
//! let c = FuseClient::connect("/tmp/vhost.sock".as_ref(), &SessionOptions::default()).unwrap();
//! c.init().unwrap();
//! let e = c.lookup(1, "hello").unwrap();
//! ```

pub mod client;
pub mod daemon;
pub mod fuse;
pub mod memory;
pub mod session;
pub mod virtq;
pub mod window;

pub use client::{ChainShape, FuseClient, HANG_GUARD, Ticket};
pub use fuse::{Reply, Request};
pub use memory::{Buf, GuestRam, Layout};
pub use session::{FsConfig, Session, SessionOptions};
pub use virtq::{RawDesc, Seg, SplitQueue, Used};
pub use window::{DaxWindow, Piece};
