//! The FUSE protocol, shared by every transport (the host's /dev/fuse,
//! virtio-fs queues): the wire format of requests and replies
//! ([`wire`]), the server that decodes each request, negotiates INIT and
//! calls the ext4 adapter ([`server`]), the DAX mapping requests
//! ([`mapping`]), and the worker pool that runs
//! requests from any transport ([`dispatch`]).

pub mod dispatch;
pub mod ext;
pub mod mapping;
pub mod server;
pub mod wire;
