//! The vhost-user virtio-fs device: `ext4-virtiofsd serve`.
//!
//! - [`chain`]: one descriptor chain, checked, as the FUSE seam wants it
//!   (headers copied out, file data moved with preadv/pwritev in place);
//! - [`queue`]: taking chains off a virtqueue and giving them back;
//! - [`device`]: the `VhostUserBackend` (features, queues, config space);
//! - [`config_space`]: the virtio-fs config (tag, queue count);
//! - [`shmem`]: the DAX window's SHMEM_MAP / SHMEM_UNMAP channel;
//! - [`options`]: command line and config file;
//! - [`lifecycle`]: image, socket, sessions, signals.

pub mod chain;
pub mod config_space;
pub mod device;
pub mod lifecycle;
pub mod options;
pub mod queue;
pub mod shmem;

pub use lifecycle::{ServeError, run};
pub use options::{ServeArgs, ServeSettings};
