//! `ext4-virtiofsd` as a library: the FUSE protocol server ([`fuse`]),
//! the ext4 adapter that gives it file system semantics ([`adapter`]),
//! the host mount over /dev/fuse ([`host`]) and the vhost-user virtio-fs
//! device ([`vhost`]). The binary adds the
//! command line and the offline image tools.

pub mod adapter;
pub mod dax;
pub mod fuse;
pub mod host;
pub mod vhost;
