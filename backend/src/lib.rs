//! `ext4-virtiofsd` as a library: the FUSE protocol server ([`fuse`]),
//! the ext4 adapter that gives it file system semantics ([`adapter`]),
//! and the host mount over /dev/fuse ([`host`]). The binary adds the
//! command line and the offline image tools.

pub mod adapter;
pub mod fuse;
pub mod host;
