//! The DAX window: file ranges of the image mapped straight into a guest's
//! memory (virtio-fs shared memory region 0), set up with
//! FUSE_SETUPMAPPING and torn down with FUSE_REMOVEMAPPING.
//!
//! The daemon never touches the window itself: it asks the frontend (the
//! VMM) to map pieces of files into it, through a [`ShmemChannel`]
//! (vhost-user SHMEM_MAP / SHMEM_UNMAP). A piece is a range of the image
//! file (the mapped file's own blocks) or of a sealed, read-only memfd
//! (zeros; or, on a read-only image, a private copy of an inline file).
//!
//! Invariants (each has a test in `vmtests/tests/frontend_dax.rs`):
//! 1. The window never exposes a block that is not, at that moment, the
//!    mapped file's block at that offset. Pieces are resolved and installed
//!    under the inode's I/O lock ([`ext4::Ext4::map_for_dax_with`]); blocks
//!    under a mapping are pinned, and before a pinned block is freed (or a
//!    file's blocks move, as collapse and insert range do) the core calls
//!    [`DaxWindow::on_free`], which switches those pieces to zeros before it
//!    returns. The image pieces of a mapping are therefore never freed
//!    blocks, metadata or another file's data.
//! 2. After any reply, the window reads what FUSE_READ returns: holes,
//!    unwritten extents and the part past EOF map zeros; after a request
//!    that may change a mapped file's blocks or size (WRITE, SETATTR,
//!    FALLOCATE, COPY_FILE_RANGE) the server calls [`DaxWindow::refresh`]
//!    before it replies, which maps newly allocated blocks in.
//! 3. Stores through a writable mapping land in the image file's pages
//!    (the VMM maps the image with MAP_SHARED); FSYNC, SYNCFS and the
//!    session's end flush them with the image. Every page of a writable
//!    mapping inside `i_size` has a block of its own (holes are filled when
//!    the mapping is set up and again when the file grows under it, and a
//!    punched or truncated range under a writable mapping gets new zeroed
//!    blocks at the refresh), because a Linux guest stores through a
//!    writable range without asking again.
//! 4. Locks while waiting for the frontend: SHMEM messages are sent with
//!    the window lock held, and for setup and refresh also the inode's I/O
//!    lock (no journal handle); from [`DaxWindow::on_free`] also inside the
//!    freeing journal handle. No deadlock can arise because the frontend
//!    answers SHMEM requests without waiting for the daemon: the VMM serves
//!    them in its main loop, and the only daemon work its main loop ever
//!    waits for is the vhost-user front channel, whose thread takes none of
//!    these locks. The one wait in that thread, GET_VRING_BASE waiting for
//!    a queue's requests to finish, is bounded (`STOP_WAIT`), after which
//!    the VMM's main loop runs and acknowledges. Truncate, punch hole and
//!    unlink never fail with EBUSY because of a mapping: the pieces are
//!    switched to zeros first.
//!
//! Lock order (see docs/ARCHITECTURE.md): inode I/O lock → journal handle
//! → window lock → the core's DAX pin registry and the window's per-inode
//! mapping counts (leaves; a refresh of a file without mappings looks only
//! at the counts, so its writer never waits for a slow frontend).

pub mod channel;
pub mod pieces;
pub mod policy;
pub mod window;
pub mod zero;

pub use channel::ShmemChannel;
pub use policy::InodeDax;
pub use window::{DaxCounters, DaxError, DaxWindow};
