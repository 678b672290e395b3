//! The daemon's life: open (and lock) the image, create the socket with
//! safe permissions, serve one frontend connection at a time, and leave
//! the image clean at every disconnect and at SIGINT/SIGTERM.

use super::chain::Mem;
use super::config_space::FsConfigSpace;
use super::device::FsDevice;
use super::options::{Listen, ServeSettings};
use crate::adapter::access::NoGroups;
use crate::adapter::{AdapterOptions, Ext4Fs};
use crate::dax::DaxWindow;
use crate::fuse::dispatch;
use crate::fuse::server::{Server, ServerOptions};
use ext4::{Ext4, OpenOptions};
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::GuestMemoryAtomic;

/// Errors of `serve`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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
    /// Something else (the message says what).
    #[error("{0}")]
    Other(String),
}

/// What the signal thread and the main loop share.
enum State {
    /// Waiting for a frontend.
    Accepting,
    /// Serving one; this ends it.
    Serving(vhost_user_backend::ShutdownHandle),
    /// A signal came: end after the current session.
    Stopping,
}

struct Shared {
    state: Mutex<State>,
    fs: Arc<Ext4>,
    socket: Option<PathBuf>,
}

/// Blocks SIGINT and SIGTERM in this thread (and every thread started
/// later) and starts the thread that takes them.
fn block_signals() -> Result<libc::sigset_t, ServeError> {
    // SAFETY: plain libc signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            return Err(ServeError::Other(format!("blocking signals: {}", std::io::Error::from_raw_os_error(r))));
        }
        Ok(set)
    }
}

fn watch_signals(set: libc::sigset_t, shared: Arc<Shared>) {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: waits for a signal of the blocked set.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            log::info!("signal {sig}: stopping");
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            match std::mem::replace(&mut *st, State::Stopping) {
                State::Serving(h) => h.shutdown(),
                State::Accepting => {
                    // No session: close the image now and leave.
                    match shared.fs.close() {
                        Ok(()) => log::info!("image closed clean"),
                        Err(e) => log::error!("closing the image: {e}"),
                    }
                    if let Some(s) = &shared.socket {
                        let _ = std::fs::remove_file(s);
                    }
                    std::process::exit(0);
                }
                State::Stopping => {}
            }
        })
        .expect("start the signal thread");
}

/// Looks up a group by name or number.
fn group_id(name: &str) -> Result<libc::gid_t, ServeError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name).map_err(|_| ServeError::Other(format!("bad group name {name:?}")))?;
    // SAFETY: getgrnam with a NUL-terminated name; the result is read at once.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        return Err(ServeError::Other(format!("no group {name:?}")));
    }
    // SAFETY: non-null result of getgrnam.
    Ok(unsafe { (*g).gr_gid })
}

/// Creates the listening socket at `path`: mode 0600, or 0660 owned by
/// `group`; never world-accessible, not even for an instant (umask).
fn bind_socket(path: &Path, group: Option<&str>) -> Result<Listener, ServeError> {
    let gid = group.map(group_id).transpose()?;
    let os = |what: &str, e: std::io::Error| ServeError::Other(format!("{what} {}: {e}", path.display()));
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path).map_err(|e| os("removing the stale socket", e))?
        }
        Ok(_) => return Err(ServeError::Other(format!("{} exists and is not a socket", path.display()))),
        Err(_) => {}
    }
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| os("binding", e))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| os("giving the socket to its group", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|e| os("chmod", e))?;
    }
    Ok(Listener::from(listener))
}

/// Serves the image as `settings` say until the frontend leaves (or, with
/// `keep_running`, until a signal).
pub fn run(settings: &ServeSettings) -> Result<(), ServeError> {
    let sigset = block_signals()?;
    let image = &settings.image;
    if image.is_dir() {
        return Err(ServeError::Other(format!(
            "{} is a directory: ext4-virtiofsd serves an ext4 image file (virtiofsd serves directories)",
            image.display()
        )));
    }
    let img_err = |source| ServeError::Image { path: image.clone(), source };
    let open = OpenOptions { read_only: settings.read_only, atime: settings.atime, ..OpenOptions::default() };
    let fs = match Ext4::open(image, &open) {
        Err(e @ ext4::Error::ImageLocked { .. }) => return Err(ServeError::Locked(e)),
        r => Arc::new(r.map_err(img_err)?),
    };
    let config = FsConfigSpace::new(&settings.tag, settings.request_queues as u32)
        .map_err(|e| ServeError::Other(e.to_string()))?;
    let mut listener = match &settings.listen {
        Listen::Path(p) => bind_socket(p, settings.socket_group.as_deref())?,
        // SAFETY: the caller (libvirt) handed us this listening socket.
        Listen::Fd(fd) => unsafe { Listener::from_raw_fd(*fd) },
    };
    let socket = match &settings.listen {
        Listen::Path(p) => Some(p.clone()),
        Listen::Fd(_) => None,
    };
    let shared = Arc::new(Shared { state: Mutex::new(State::Accepting), fs: fs.clone(), socket: socket.clone() });
    watch_signals(sigset, shared.clone());
    let _timer = if fs.is_read_only() { None } else { Some(fs.start_commit_timer().map_err(img_err)?) };
    log::info!("serving {} (tag {}) on {:?}", image.display(), settings.tag, settings.listen);
    let result = loop {
        let r = session(settings, &fs, config.clone(), &mut listener, &shared);
        // Every disconnect leaves the image clean.
        let closed = fs.close().map_err(img_err);
        if let Err(e) = r {
            break Err(e);
        }
        closed?;
        let stopping = matches!(*shared.state.lock().unwrap_or_else(|p| p.into_inner()), State::Stopping);
        if stopping || !settings.keep_running {
            break Ok(());
        }
        *shared.state.lock().unwrap_or_else(|p| p.into_inner()) = State::Accepting;
        log::info!("frontend gone; waiting for the next one");
    };
    drop(_timer);
    fs.close().map_err(img_err)?;
    if let Some(s) = socket {
        let _ = std::fs::remove_file(s);
    }
    result
}

/// The session's DAX window, when `--cache-size` asks for one: the image
/// file opened again for the frontend to map (read-only for a read-only
/// image, so the frontend cannot write through it).
fn dax_window(settings: &ServeSettings, fs: &Arc<Ext4>) -> Result<Option<Arc<DaxWindow>>, ServeError> {
    if settings.cache_size == 0 {
        return Ok(None);
    }
    let image = std::fs::OpenOptions::new()
        .read(true)
        .write(!fs.is_read_only())
        .open(&settings.image)
        .map_err(|e| ServeError::Other(format!("{}: opening for the DAX window: {e}", settings.image.display())))?;
    let w = DaxWindow::new(fs.clone(), image, settings.cache_size)
        .map_err(|e| ServeError::Other(format!("DAX window of {} bytes: {e}", settings.cache_size)))?;
    Ok(Some(w))
}

/// Serves one frontend connection: a fresh FUSE session, device and
/// worker pool; returns when the frontend is gone and every request of
/// the session is answered.
fn session(
    settings: &ServeSettings,
    fs: &Arc<Ext4>,
    config: FsConfigSpace,
    listener: &mut Listener,
    shared: &Shared,
) -> Result<(), ServeError> {
    let window = dax_window(settings, fs)?;
    let adapter_opts = AdapterOptions {
        cache: settings.cache,
        writeback: settings.writeback,
        dax: window.as_ref().map(|_| settings.inode_dax),
        ..AdapterOptions::default()
    };
    let adapter = Arc::new(Ext4Fs::new(fs.clone(), adapter_opts, Box::new(NoGroups)));
    let server_opts = ServerOptions {
        writeback: settings.writeback,
        max_lock_waiters: settings.max_lock_waiters,
        dax: window.is_some(),
        ..ServerOptions::default()
    };
    let server = Arc::new(Server::new(adapter.clone(), server_opts));
    if let Some(w) = &window {
        server.set_dax_window(w.clone());
    }
    let (device, requests) = FsDevice::new(config, settings.request_queues, window.clone());
    let threads = settings.threads;
    let pool = {
        let server = server.clone();
        std::thread::Builder::new()
            .name("fuse-pool".into())
            .spawn(move || dispatch::serve_requests(server, Arc::new(requests), threads))
            .map_err(|e| ServeError::Other(format!("starting the worker pool: {e}")))?
    };
    let mem = GuestMemoryAtomic::new(Mem::new());
    let mut daemon = VhostUserDaemon::new("ext4-virtiofsd".into(), device.clone(), mem)
        .map_err(|e| ServeError::Other(format!("creating the vhost-user daemon: {e}")))?;
    let served = match daemon.start(listener) {
        Err(e) => Err(ServeError::Other(format!("accepting a frontend: {e}"))),
        Ok(()) => {
            log::info!("frontend connected");
            {
                let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                match &*st {
                    State::Stopping => daemon.request_shutdown(),
                    _ => {
                        if let Some(h) = daemon.shutdown_handle() {
                            *st = State::Serving(h);
                        }
                    }
                }
            }
            match daemon.wait() {
                Ok(()) => Ok(()),
                Err(e) => {
                    // A frontend that breaks the protocol ends its session, not the daemon.
                    log::warn!("frontend session ended: {e}");
                    Ok(())
                }
            }
        }
    };
    // The vring threads end with the daemon; then the workers finish
    // what they hold and stop.
    drop(daemon);
    device.close();
    match pool.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!("worker pool: {e}"),
        Err(_) => log::error!("worker pool panicked"),
    }
    adapter.end_session();
    if let Some(w) = window {
        w.close();
    }
    log::info!("session over");
    served
}
