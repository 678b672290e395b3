//! The host mount: `ext4-virtiofsd mount IMG MOUNTPOINT` serves an image
//! through the host kernel's /dev/fuse, with a worker per core. It ends
//! when the mount point is unmounted or on SIGINT/SIGTERM (which unmount
//! it, lazily while it is busy, and close the image at once; a second
//! signal ends the daemon at once), and always closes the image cleanly:
//! journal committed and checkpointed, needs_recovery cleared. An aborted
//! connection ends the session like an unmount.

pub mod dev_fuse;
pub mod groups;
pub mod mount;

use crate::adapter::attr::CachePolicy;
use crate::adapter::{AdapterOptions, Ext4Fs};
use crate::fuse::dispatch;
use crate::fuse::server::{Server, ServerOptions};
use dev_fuse::DevFuse;
use ext4::{Ext4, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Errors of the host mount.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The image could not be opened or closed.
    #[error("{path}: {source}")]
    Image {
        /// The image.
        path: PathBuf,
        /// What the core said.
        #[source]
        source: ext4::Error,
    },
    /// The image is locked by another process (the message names it).
    #[error("{0}")]
    Locked(#[source] ext4::Error),
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Serve without ever writing the image.
    pub read_only: bool,
    /// What the kernel may cache.
    pub cache: CachePolicy,
    /// Worker threads (0: one per core, at least two).
    pub threads: usize,
    /// Let the kernel cache writes (FUSE writeback cache).
    pub writeback: bool,
    /// Most F_SETLKW requests waiting at once (ENOLCK beyond).
    pub max_lock_waiters: usize,
    /// Mount as `fuse.ext4-virtiofsd` (true) or plain `fuse` (false).
    pub subtype: bool,
    /// When reads move atimes.
    pub atime: ext4::fs::inode::atime::AtimeOptions,
    /// Honour device nodes (otherwise the mount is `nodev`).
    pub dev: bool,
    /// Honour setuid/setgid bits on exec (otherwise the mount is `nosuid`).
    pub suid: bool,
}

/// Blocks SIGINT and SIGTERM in this thread and the threads it starts
/// later, and starts a thread that, when one arrives, unmounts `target`
/// (lazily when busy) and closes the image in `served` at once: journal
/// committed and checkpointed, needs_recovery cleared, so that the image
/// is clean even if the daemon is killed while users remain. Their later
/// changes make it dirty again until the final close.
fn watch_signals(target: PathBuf, served: Arc<OnceLock<Arc<Ext4>>>) -> Result<(), MountError> {
    // SAFETY: plain libc signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            return Err(MountError::Os {
                what: "blocking signals".into(),
                source: std::io::Error::from_raw_os_error(r),
            });
        }
        let set_copy = set;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut sig = 0;
                // SAFETY: waits for a signal of the blocked set.
                if libc::sigwait(&set_copy, &mut sig) == 0 {
                    log::info!("signal {sig}: unmounting {}", target.display());
                    if let Err(e) = mount::unmount(&target) {
                        log::error!("unmounting {}: {e}", target.display());
                    }
                    match served.get().map(|fs| fs.close()) {
                        Some(Ok(())) => log::info!("image closed clean; serving the remaining users until they leave"),
                        Some(Err(e)) => log::error!("closing the image after signal {sig}: {e}"),
                        None => log::warn!("signal {sig} before the image was open"),
                    }
                }
                // A second signal ends the daemon at once, whatever is still
                // in flight: the image was closed clean by the first, and
                // what changed since is in the journal (recoverable).
                // SAFETY: as above.
                if libc::sigwait(&set_copy, &mut sig) == 0 {
                    log::warn!("second signal {sig}: exiting now");
                    std::process::exit(128 + sig);
                }
            })
            .map_err(|source| MountError::Os { what: "starting the signal thread".into(), source })?;
    }
    Ok(())
}

/// Once the kernel has answered INIT (which resets the mount's read-ahead
/// to at most its default), raises read-ahead to `kib`, so sequential
/// reads arrive as READs of max_write instead of 128 KiB.
fn raise_readahead_after_init(server: Arc<Server>, mountpoint: PathBuf, fstype: &'static str, kib: u32) {
    std::thread::spawn(move || {
        for _ in 0..1000 {
            if server.is_initialized() {
                if let Err(e) = mount::set_readahead(&mountpoint, fstype, kib) {
                    log::warn!("cannot raise read-ahead of {} to {kib} KiB: {e}", mountpoint.display());
                }
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
}

/// Mounts `image` on `mountpoint` and serves it until unmounted.
pub fn run(image: &Path, mountpoint: &Path, opts: &MountOptions) -> Result<(), MountError> {
    // First, before any thread exists: every thread must block the signals
    // so that only the watcher receives them.
    let served = Arc::new(OnceLock::new());
    watch_signals(mountpoint.to_path_buf(), served.clone())?;
    let img_err = |source| MountError::Image { path: image.to_path_buf(), source };
    let open = OpenOptions { read_only: opts.read_only, atime: opts.atime, ..OpenOptions::default() };
    let fs = match Ext4::open(image, &open) {
        Err(e @ ext4::Error::ImageLocked { .. }) => return Err(MountError::Locked(e)),
        r => Arc::new(r.map_err(img_err)?),
    };
    let _ = served.set(fs.clone());
    let _timer = if fs.is_read_only() { None } else { Some(fs.start_commit_timer().map_err(img_err)?) };
    let adapter_opts = AdapterOptions { cache: opts.cache, writeback: opts.writeback, ..AdapterOptions::default() };
    let adapter = Arc::new(Ext4Fs::new(fs.clone(), adapter_opts, Box::new(groups::ProcGroups)));
    let server_opts = ServerOptions {
        writeback: opts.writeback,
        max_lock_waiters: opts.max_lock_waiters,
        ..ServerOptions::default()
    };
    let server = Arc::new(Server::new(adapter.clone(), server_opts));
    let dev = Arc::new(DevFuse::open().map_err(|source| MountError::Os { what: "opening /dev/fuse".into(), source })?);
    adapter.set_invalidator(dev.clone());
    let fstype = mount::fstype(opts.subtype);
    let flags = mount::MountFlags { read_only: fs.is_read_only(), dev: opts.dev, suid: opts.suid, atime: opts.atime };
    mount::mount(image, mountpoint, dev.raw_fd(), fstype, flags)
        .map_err(|source| MountError::Os { what: format!("mounting on {}", mountpoint.display()), source })?;
    raise_readahead_after_init(server.clone(), mountpoint.to_path_buf(), fstype, server_opts.max_write / 1024);
    log::info!("serving {} on {}", image.display(), mountpoint.display());
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
    } else {
        opts.threads
    };
    let served = dispatch::serve(server, dev, threads);
    adapter.end_session();
    drop(_timer);
    fs.close().map_err(img_err)?;
    served.map_err(|source| MountError::Os { what: "reading /dev/fuse".into(), source })
}
