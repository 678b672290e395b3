//! The DAX window of the in-process frontend: virtio-fs's shared memory
//! region 0, which the backend fills with SHMEM_MAP / SHMEM_UNMAP over the
//! backend request channel, as a VMM does for a guest.
//!
//! The window is one anonymous `PROT_NONE` reservation of the size
//! GET_SHMEM_CONFIG announced. SHMEM_MAP maps the received fd over a piece
//! of it (`MAP_SHARED | MAP_FIXED`, read-only or read-write per the
//! WRITABLE flag, after a first mapping read-write as QEMU 11 makes it,
//! whatever the flag); SHMEM_UNMAP puts `PROT_NONE` back over exactly that
//! piece. The checks are QEMU 11's (`hw/virtio/vhost-user-shmem.c`): shmid
//! 0 only, a nonzero page-aligned range inside the window, no map over a
//! live mapping, an unmap only of one live mapping exactly. A refused
//! message is acked with a negative errno and counted.
//!
//! Tests read and write the window through [`DaxWindow::read_window`] and
//! [`DaxWindow::write_window`], which refuse any byte no live mapping
//! covers (or that lies past the end of its file, where the CPU would
//! fault) instead of faulting; [`DaxWindow::as_ptr`] is the raw view for
//! the benchmark.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use vhost::vhost_user::message::{BackendReq, VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{Error as VuError, FrontendReqHandler, HandlerResult, VhostUserFrontendReqHandler};

/// The page size the window works in.
pub const PAGE: u64 = 4096;

/// One live mapping of the window, as the table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Offset in the window.
    pub shm_offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Mapped read-write (the WRITABLE flag).
    pub writable: bool,
    /// `st_dev` of the mapped file.
    pub dev: u64,
    /// `st_ino` of the mapped file.
    pub ino: u64,
    /// Offset in the mapped file.
    pub fd_offset: u64,
}

impl Piece {
    /// End of the piece in the window.
    pub fn end(&self) -> u64 {
        self.shm_offset + self.len
    }

    /// Whether it maps the file `f` (same device and inode).
    pub fn maps(&self, f: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.dev == f.dev() && self.ino == f.ino()
    }
}

/// What the backend asked for so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// SHMEM_MAP messages honoured.
    pub maps: u64,
    /// SHMEM_UNMAP messages honoured.
    pub unmaps: u64,
    /// Messages refused (nonzero ack).
    pub refusals: u64,
}

struct Live {
    piece: Piece,
    /// The mapped file (a duplicate of the received fd), to check its
    /// current size before touching the mapping.
    file: File,
}

#[derive(Default)]
struct State {
    /// Live mappings by window offset.
    live: BTreeMap<u64, Live>,
    counters: Counters,
    /// Why each refused message was refused, in order.
    refused: Vec<String>,
    /// Malformed messages that ended the channel.
    broken: Option<String>,
    /// SHMEM_MAPs to let through, then to fail on purpose
    /// ([`DaxWindow::fail_maps`]), and how many did.
    pass_maps: u64,
    fail_maps: u64,
    failed_on_purpose: u64,
}

/// The reservation and the table, shared by the window and its request
/// handler thread.
struct Shared {
    base: usize,
    size: u64,
    state: Mutex<State>,
    /// Held messages: (holding, messages waiting at the gate).
    gate: Mutex<(bool, u64)>,
    gate_cv: Condvar,
}

/// The DAX window: the reservation, the table of live mappings and the
/// thread that serves the backend request channel. Dropping it stops the
/// thread and unmaps the whole window.
pub struct DaxWindow {
    shared: Arc<Shared>,
    /// Our end of the channel (the thread's socket), shut down on drop.
    ours: RawFd,
    /// The backend's end, to send with SET_BACKEND_REQ_FD.
    theirs: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

fn refuse<T>(st: &mut State, why: String) -> HandlerResult<T> {
    st.counters.refusals += 1;
    st.refused.push(why);
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

impl Shared {
    /// Waits while a test holds the gate ([`DaxWindow::hold`]).
    fn pass_gate(&self) {
        let mut g = self.gate.lock().unwrap();
        g.1 += 1;
        self.gate_cv.notify_all();
        while g.0 {
            g = self.gate_cv.wait(g).unwrap();
        }
        g.1 -= 1;
    }

    /// Puts `PROT_NONE` anonymous memory over `[off, off + len)`.
    fn reserve(&self, off: u64, len: u64) -> io::Result<()> {
        // SAFETY: the range lies inside our own reservation (checked by the
        // callers), so MAP_FIXED replaces only window pages, never other
        // memory of the process; nothing holds references into it (every
        // access copies under the state lock, which the callers hold).
        let p = unsafe {
            libc::mmap(
                (self.base + off as usize) as *mut libc::c_void,
                len as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    fn check_range(&self, shmid: u8, off: u64, len: u64) -> Result<(), String> {
        if shmid != 0 {
            return Err(format!("shmid {shmid}: only region 0 exists"));
        }
        if len == 0 {
            return Err(format!("zero length at {off:#x}"));
        }
        if off % PAGE != 0 || len % PAGE != 0 {
            return Err(format!("[{off:#x}, +{len:#x}) is not page-aligned"));
        }
        match off.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(format!("[{off:#x}, +{len:#x}) is outside the window of {:#x} bytes", self.size)),
        }
    }
}

impl VhostUserFrontendReqHandler for Shared {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        self.pass_gate();
        let (shmid, off, len, flags, fd_offset) = (req.shmid, req.shm_offset, req.len, req.flags, req.fd_offset);
        let mut st = self.state.lock().unwrap();
        if let Err(why) = self.check_range(shmid, off, len) {
            return refuse(&mut st, format!("SHMEM_MAP: {why}"));
        }
        let Some(flags) = VhostUserMMapFlags::from_bits(flags) else {
            return refuse(&mut st, format!("SHMEM_MAP: unknown flags {flags:#x}"));
        };
        if fd_offset % PAGE != 0 || fd_offset.checked_add(len).is_none() {
            return refuse(&mut st, format!("SHMEM_MAP: fd offset {fd_offset:#x} (+{len:#x})"));
        }
        if let Some(l) = st.live.range(..off + len).next_back().filter(|(_, l)| l.piece.end() > off) {
            let p = l.1.piece;
            return refuse(
                &mut st,
                format!("SHMEM_MAP: [{off:#x}, +{len:#x}) overlaps the mapping [{:#x}, +{:#x})", p.shm_offset, p.len),
            );
        }
        if st.pass_maps > 0 {
            st.pass_maps -= 1;
        } else if st.fail_maps > 0 {
            st.fail_maps -= 1;
            st.failed_on_purpose += 1;
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        // SAFETY: BorrowedFd of a descriptor the request handler owns for
        // the duration of this call; it is duplicated before use.
        let file = match unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) }.try_clone_to_owned() {
            Ok(f) => File::from(f),
            Err(e) => return refuse(&mut st, format!("SHMEM_MAP: dup of the fd: {e}")),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return refuse(&mut st, format!("SHMEM_MAP: fstat: {e}")),
        };
        let writable = flags.contains(VhostUserMMapFlags::WRITABLE);
        let at = (self.base + off as usize) as *mut libc::c_void;
        // QEMU 11 maps every piece PROT_READ | PROT_WRITE whatever the flag
        // says (the guest's page tables enforce read-only): an fd that
        // cannot be mapped so (opened read-only, a write-sealed memfd) is
        // refused there, so it is here.
        // SAFETY: [off, off + len) was checked to lie inside our
        // reservation, which belongs to this window alone; MAP_FIXED swaps
        // its PROT_NONE pages for the file. The table lock is held, so no
        // copy in or out of the window runs meanwhile.
        let p = unsafe {
            libc::mmap(
                at,
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                fd_offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // A failed MAP_FIXED may have dropped the old pages: reserve again.
            let _ = self.reserve(off, len);
            return refuse(
                &mut st,
                format!("SHMEM_MAP: mmap of [{off:#x}, +{len:#x}) PROT_READ|PROT_WRITE (as QEMU 11 does): {e}"),
            );
        }
        // A read-only piece is read-only for the guest: our stores through
        // it are refused by the table, and by the page protection too.
        // SAFETY: mprotect of the pages just mapped, inside our reservation.
        if !writable && unsafe { libc::mprotect(at, len as usize, libc::PROT_READ) } != 0 {
            let e = io::Error::last_os_error();
            let _ = self.reserve(off, len);
            return refuse(&mut st, format!("SHMEM_MAP: mprotect of [{off:#x}, +{len:#x}) read-only: {e}"));
        }
        use std::os::unix::fs::MetadataExt;
        let piece = Piece { shm_offset: off, len, writable, dev: meta.dev(), ino: meta.ino(), fd_offset };
        st.live.insert(off, Live { piece, file });
        st.counters.maps += 1;
        Ok(0)
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        self.pass_gate();
        let (shmid, off, len) = (req.shmid, req.shm_offset, req.len);
        let mut st = self.state.lock().unwrap();
        if let Err(why) = self.check_range(shmid, off, len) {
            return refuse(&mut st, format!("SHMEM_UNMAP: {why}"));
        }
        if st.live.get(&off).is_none_or(|l| l.piece.len != len) {
            return refuse(&mut st, format!("SHMEM_UNMAP: [{off:#x}, +{len:#x}) is not one live mapping"));
        }
        if let Err(e) = self.reserve(off, len) {
            return refuse(&mut st, format!("SHMEM_UNMAP: mmap PROT_NONE over [{off:#x}, +{len:#x}): {e}"));
        }
        st.live.remove(&off);
        st.counters.unmaps += 1;
        Ok(0)
    }
}

/// Peeks at the next message header on `fd` without consuming it: (code,
/// flags, size), or `None` at EOF or on an error.
fn peek_header(fd: RawFd) -> Option<(u32, u32, u32)> {
    let mut h = [0u8; 12];
    // SAFETY: recv into a local buffer of the given length; MSG_PEEK leaves
    // the bytes (and any attached fds) queued for the handler.
    let n = unsafe { libc::recv(fd, h.as_mut_ptr().cast(), h.len(), libc::MSG_PEEK | libc::MSG_WAITALL) };
    if n != 12 {
        return None;
    }
    let w = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
    Some((w(0), w(4), w(8)))
}

/// Bytes queued on `fd`.
fn pending(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r < 0 { 0 } else { n as usize }
}

/// Sends a negative ack (-EINVAL) for the message `code`, as the handler
/// does for a refusal, when the vhost crate dropped the message before its
/// handler saw it (its own validation: zero length, unknown flags).
fn nack(fd: RawFd, code: u32) {
    const VERSION_1: u32 = 0x1;
    const REPLY: u32 = 0x4;
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&code.to_le_bytes());
    m.extend_from_slice(&(VERSION_1 | REPLY).to_le_bytes());
    m.extend_from_slice(&8u32.to_le_bytes());
    m.extend_from_slice(&(-(libc::EINVAL as i64) as u64).to_le_bytes());
    // SAFETY: send of a local buffer of the given length.
    unsafe { libc::send(fd, m.as_ptr().cast(), m.len(), libc::MSG_NOSIGNAL) };
}

/// Serves the channel until it ends (EOF, or our shutdown on drop).
fn serve(mut h: FrontendReqHandler<Shared>, shared: Arc<Shared>) {
    const NEED_REPLY: u32 = 0x8;
    let fd = h.as_raw_fd();
    loop {
        let Some((code, flags, size)) = peek_header(fd) else { return };
        match h.handle_request() {
            Ok(_) | Err(VuError::ReqHandlerError(_)) => {}
            Err(VuError::InvalidMessage)
                if (code == BackendReq::SHMEM_MAP as u32 || code == BackendReq::SHMEM_UNMAP as u32)
                    && size as usize == std::mem::size_of::<VhostUserMMap>()
                    && pending(fd) == 0 =>
            {
                // The whole message was read and failed the crate's own
                // validation (zero length, overflow, unknown flags): a
                // refusal, as QEMU's handler would answer it.
                let mut st = shared.state.lock().unwrap();
                st.counters.refusals += 1;
                st.refused.push(format!("message {code}: invalid (zero length, overflow or unknown flags)"));
                drop(st);
                if flags & NEED_REPLY != 0 {
                    nack(fd, code);
                }
            }
            Err(e) => {
                // Malformed or a broken socket: QEMU closes the channel.
                shared.state.lock().unwrap().broken = Some(format!("backend channel ended at message {code}: {e}"));
                // SAFETY: shutdown(2) of the handler's own socket.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                return;
            }
        }
    }
}

impl DaxWindow {
    /// Reserves a window of `size` bytes (a nonzero multiple of the page
    /// size) and starts serving a new backend request channel; with
    /// `reply_ack` every message that asks for it is acked.
    pub fn new(size: u64, reply_ack: bool) -> io::Result<DaxWindow> {
        if size == 0 || size % PAGE != 0 || size > isize::MAX as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("window size {size:#x}")));
        }
        // SAFETY: a fresh anonymous PROT_NONE mapping at an address the
        // kernel chooses; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let shared = Arc::new(Shared {
            base: base as usize,
            size,
            state: Mutex::new(State::default()),
            gate: Mutex::new((false, 0)),
            gate_cv: Condvar::new(),
        });
        let fail = |e: io::Error| {
            // SAFETY: unmapping the reservation made above, unused so far.
            unsafe { libc::munmap(base, size as usize) };
            e
        };
        let mut h = FrontendReqHandler::new(shared.clone()).map_err(|e| fail(io::Error::other(e)))?;
        h.set_reply_ack_flag(reply_ack);
        // SAFETY: the handler's backend-side socket, alive while `h` is;
        // duplicated at once.
        let theirs = unsafe { BorrowedFd::borrow_raw(h.get_tx_raw_fd()) }.try_clone_to_owned().map_err(fail)?;
        let ours = h.as_raw_fd();
        let s2 = shared.clone();
        let thread = std::thread::Builder::new().name("dax-window".into()).spawn(move || serve(h, s2)).map_err(fail)?;
        Ok(DaxWindow { shared, ours, theirs, thread: Some(thread) })
    }

    /// The backend's end of the channel, for SET_BACKEND_REQ_FD (or a
    /// test's fake backend).
    pub fn backend_socket(&self) -> BorrowedFd<'_> {
        self.theirs.as_fd()
    }

    /// Size of the window.
    pub fn size(&self) -> u64 {
        self.shared.size
    }

    /// The first byte of the window, for the benchmark: only bytes of live
    /// mappings (see [`DaxWindow::pieces`]) may be read through it, and
    /// only while the backend does not unmap them.
    pub fn as_ptr(&self) -> *const u8 {
        self.shared.base as *const u8
    }

    /// The live mappings, by window offset.
    pub fn pieces(&self) -> Vec<Piece> {
        self.shared.state.lock().unwrap().live.values().map(|l| l.piece).collect()
    }

    /// The live mappings that intersect `[off, off + len)`.
    pub fn pieces_in(&self, off: u64, len: u64) -> Vec<Piece> {
        let end = off.saturating_add(len);
        self.pieces().into_iter().filter(|p| p.shm_offset < end && p.end() > off).collect()
    }

    /// Holds every SHMEM_MAP / SHMEM_UNMAP before it is handled (so not
    /// acked) until the guard is dropped: a slow VMM, to show that the
    /// backend waits for the frontend without blocking other requests.
    pub fn hold(&self) -> Hold<'_> {
        self.shared.gate.lock().unwrap().0 = true;
        Hold(&self.shared)
    }

    /// Messages waiting at the gate of [`DaxWindow::hold`].
    pub fn held(&self) -> u64 {
        self.shared.gate.lock().unwrap().1
    }

    /// Waits up to `limit` until at least `n` messages wait at the gate.
    pub fn wait_held(&self, n: u64, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut g = self.shared.gate.lock().unwrap();
        while g.1 < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self.shared.gate_cv.wait_timeout(g, left).unwrap().0;
        }
        true
    }

    /// Lets the next `skip` valid SHMEM_MAPs through, then makes `n` fail
    /// (ENOMEM), as a VMM that cannot map more would; they are not counted
    /// as refusals. `fail_maps(0, 0)` ends it.
    pub fn fail_maps(&self, skip: u64, n: u64) {
        let mut st = self.shared.state.lock().unwrap();
        (st.pass_maps, st.fail_maps) = (skip, n);
    }

    /// SHMEM_MAPs failed on purpose so far.
    pub fn failed_on_purpose(&self) -> u64 {
        self.shared.state.lock().unwrap().failed_on_purpose
    }

    /// Counters of honoured and refused messages.
    pub fn counters(&self) -> Counters {
        self.shared.state.lock().unwrap().counters
    }

    /// Why each refused message was refused, in order.
    pub fn refusals(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().refused.clone()
    }

    /// Why the channel ended, if a malformed message or a broken socket
    /// ended it.
    pub fn broken(&self) -> Option<String> {
        self.shared.state.lock().unwrap().broken.clone()
    }

    /// Checks that live mappings cover `[off, off + len)` without a gap,
    /// each byte inside its file's current size and, with `write`, writable.
    fn covered(st: &MutexGuard<'_, State>, size: u64, off: u64, len: u64, write: bool) -> Result<(), String> {
        let end = off
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| format!("[{off:#x}, +{len:#x}) is outside the window of {size:#x} bytes"))?;
        let mut at = off;
        while at < end {
            let Some((_, l)) = st.live.range(..=at).next_back().filter(|(_, l)| l.piece.end() > at) else {
                return Err(format!("window byte {at:#x} is not mapped"));
            };
            let p = l.piece;
            if write && !p.writable {
                return Err(format!(
                    "window byte {at:#x} is in the read-only mapping [{:#x}, +{:#x})",
                    p.shm_offset, p.len
                ));
            }
            let upto = p.end().min(end);
            let file_end = p.fd_offset + (upto - p.shm_offset);
            let fsize = l.file.metadata().map_err(|e| format!("fstat of a mapped file: {e}"))?.len();
            if file_end.next_multiple_of(PAGE) > fsize.next_multiple_of(PAGE) {
                return Err(format!(
                    "window byte {:#x} maps past the end of its file ({fsize} bytes, piece at {:#x}): it would fault",
                    p.shm_offset + fsize.saturating_sub(p.fd_offset),
                    p.shm_offset
                ));
            }
            at = upto;
        }
        Ok(())
    }

    /// Copies `[off, off + dst.len())` of the window into `dst`; refused
    /// (nothing read) when any byte is not covered by a live mapping.
    pub fn copy_out(&self, off: u64, dst: &mut [u8]) -> Result<(), String> {
        let st = self.shared.state.lock().unwrap();
        Self::covered(&st, self.shared.size, off, dst.len() as u64, false)?;
        // SAFETY: every byte of the source is mapped readable inside its
        // file (checked above) and stays mapped while the lock is held (the
        // handler takes it to map or unmap); the source may change under
        // us (the daemon writes the file), so it is only copied, never
        // borrowed; `dst` is our own buffer.
        unsafe {
            std::ptr::copy_nonoverlapping((self.shared.base + off as usize) as *const u8, dst.as_mut_ptr(), dst.len())
        };
        Ok(())
    }

    /// `len` bytes of the window at `off`; refused when any byte is not
    /// covered by a live mapping.
    pub fn read_window(&self, off: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut v = vec![0; len];
        self.copy_out(off, &mut v)?;
        Ok(v)
    }

    /// Stores `data` at `off` in the window (a guest's store through a
    /// mapping); refused (nothing written) when any byte is not covered by
    /// a live writable mapping.
    pub fn write_window(&self, off: u64, data: &[u8]) -> Result<(), String> {
        let st = self.shared.state.lock().unwrap();
        Self::covered(&st, self.shared.size, off, data.len() as u64, true)?;
        // SAFETY: every byte of the destination is mapped read-write inside
        // its file (checked above) and stays mapped while the lock is held;
        // `data` is our own buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), (self.shared.base + off as usize) as *mut u8, data.len())
        };
        Ok(())
    }
}

/// A hold on the window's messages ([`DaxWindow::hold`]); released on drop.
pub struct Hold<'a>(&'a Shared);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.gate.lock().unwrap().0 = false;
        self.0.gate_cv.notify_all();
    }
}

impl Drop for DaxWindow {
    fn drop(&mut self) {
        // SAFETY: shutdown(2) of our end of the channel, still open (the
        // thread owns it until it returns): its recv returns EOF.
        unsafe { libc::shutdown(self.ours, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // SAFETY: the thread is gone, so no handler maps into the window any
        // more; the reservation (with every mapping in it) is ours alone.
        unsafe { libc::munmap(self.shared.base as *mut libc::c_void, self.shared.size as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use vhost::vhost_user::Backend;

    /// A fake backend on the window's channel, with SHMEM and REPLY_ACK.
    fn backend(w: &DaxWindow) -> Backend {
        let b = Backend::from_stream(UnixStream::from(w.backend_socket().try_clone_to_owned().unwrap()));
        b.set_shmem_flag(true);
        b.set_reply_ack_flag(true);
        b
    }

    fn msg(shmid: u8, fd_offset: u64, shm_offset: u64, len: u64, writable: bool) -> VhostUserMMap {
        let flags = if writable { VhostUserMMapFlags::WRITABLE.bits() } else { 0 };
        VhostUserMMap { shmid, padding: [0; 7], fd_offset, shm_offset, len, flags }
    }

    /// A temporary file of `pages` pages, page `i` filled with byte `i + 1`.
    fn file(pages: u64) -> File {
        let mut f = tempfile();
        for i in 0..pages {
            f.write_all(&[(i + 1) as u8; PAGE as usize]).unwrap();
        }
        f
    }

    fn tempfile() -> File {
        // SAFETY: memfd_create with a valid name; the descriptor is owned by the File.
        let fd = unsafe { libc::memfd_create(c"dax-window-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) }
    }

    #[test]
    fn map_read_write_unmap() {
        let w = DaxWindow::new(16 * PAGE, true).unwrap();
        let b = backend(&w);
        let f = file(4);
        // Pages 1..3 of the file at window page 2, writable.
        b.shmem_map(&msg(0, PAGE, 2 * PAGE, 2 * PAGE, true), &f).unwrap();
        let got = w.read_window(2 * PAGE, 2 * PAGE as usize).unwrap();
        assert!(got[..PAGE as usize].iter().all(|&x| x == 2) && got[PAGE as usize..].iter().all(|&x| x == 3));
        // A store reaches the file.
        w.write_window(2 * PAGE + 10, b"hello").unwrap();
        let mut back = [0u8; 5];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut back, PAGE + 10).unwrap();
        assert_eq!(&back, b"hello");
        // A byte before, after, or straddling the mapping is refused.
        assert!(w.read_window(PAGE, 1).unwrap_err().contains("not mapped"));
        assert!(w.read_window(4 * PAGE, 1).is_err());
        assert!(w.read_window(4 * PAGE - 1, 2).is_err());
        assert!(w.read_window(16 * PAGE, 1).unwrap_err().contains("outside"));
        let p = w.pieces();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].shm_offset, p[0].len, p[0].writable, p[0].fd_offset), (2 * PAGE, 2 * PAGE, true, PAGE));
        assert!(p[0].maps(&f.metadata().unwrap()));
        b.shmem_unmap(&msg(0, 0, 2 * PAGE, 2 * PAGE, false)).unwrap();
        assert!(w.read_window(2 * PAGE, 1).is_err());
        assert!(w.pieces().is_empty());
        assert_eq!(w.counters(), Counters { maps: 1, unmaps: 1, refusals: 0 });
    }

    #[test]
    fn read_only_mapping_refuses_writes() {
        let w = DaxWindow::new(8 * PAGE, true).unwrap();
        let b = backend(&w);
        let f = file(2);
        b.shmem_map(&msg(0, 0, 0, PAGE, false), &f).unwrap();
        b.shmem_map(&msg(0, PAGE, PAGE, PAGE, true), &f).unwrap();
        assert!(w.write_window(0, b"x").unwrap_err().contains("read-only"));
        // A store across both is refused as a whole: nothing written.
        assert!(w.write_window(PAGE - 1, b"xy").is_err());
        assert_eq!(w.read_window(PAGE - 1, 2).unwrap(), [1, 2]);
        w.write_window(PAGE, b"y").unwrap();
        assert_eq!(w.read_window(0, 2 * PAGE as usize).unwrap()[PAGE as usize], b'y');
        assert!(!w.pieces()[0].writable && w.pieces()[1].writable);
    }

    #[test]
    fn refusals_as_qemu() {
        let w = DaxWindow::new(8 * PAGE, true).unwrap();
        let b = backend(&w);
        let f = file(8);
        b.shmem_map(&msg(0, 0, 2 * PAGE, 2 * PAGE, false), &f).unwrap();
        let bad_maps = [
            msg(1, 0, 0, PAGE, false),                   // shmid 1
            msg(0, 0, 7 * PAGE, 2 * PAGE, false),        // past the end
            msg(0, 0, 8 * PAGE, PAGE, false),            // at the end
            msg(0, 0, u64::MAX - PAGE + 1, PAGE, false), // wraps
            msg(0, 0, 0, 0, false),                      // zero length (the crate's own check)
            msg(0, 0, PAGE, 2 * PAGE, false),            // overlaps the start
            msg(0, 0, 3 * PAGE, PAGE, false),            // inside
            msg(0, 0, 3 * PAGE, 2 * PAGE, false),        // overlaps the end
            msg(0, 1, 0, PAGE, false),                   // unaligned file offset
            msg(0, 0, 1, PAGE, false),                   // unaligned window offset
        ];
        for (i, m) in bad_maps.iter().enumerate() {
            assert!(b.shmem_map(m, &f).is_err(), "map {i} was accepted");
        }
        let bad_unmaps = [
            msg(0, 0, 2 * PAGE, PAGE, false),     // part of a mapping
            msg(0, 0, 2 * PAGE, 3 * PAGE, false), // more than one mapping
            msg(0, 0, 0, PAGE, false),            // nothing there
            msg(1, 0, 2 * PAGE, 2 * PAGE, false), // shmid 1
        ];
        for (i, m) in bad_unmaps.iter().enumerate() {
            assert!(b.shmem_unmap(m).is_err(), "unmap {i} was accepted");
        }
        let n = (bad_maps.len() + bad_unmaps.len()) as u64;
        assert_eq!(w.counters(), Counters { maps: 1, unmaps: 0, refusals: n }, "{:#?}", w.refusals());
        assert_eq!(w.refusals().len() as u64, n);
        assert!(w.broken().is_none());
        // The table is untouched and the channel still serves.
        assert_eq!(w.read_window(2 * PAGE, 1).unwrap(), [1]);
        b.shmem_unmap(&msg(0, 0, 2 * PAGE, 2 * PAGE, false)).unwrap();
        b.shmem_map(&msg(0, 0, 0, 8 * PAGE, false), &f).unwrap();
        assert_eq!(w.read_window(7 * PAGE, 1).unwrap(), [8]);
    }

    #[test]
    fn fds_qemu_cannot_map_writable_are_refused() {
        let w = DaxWindow::new(4 * PAGE, true).unwrap();
        let b = backend(&w);
        let f = file(1);
        // Opened read-only: refused even for a read-only piece (QEMU 11
        // maps every piece PROT_WRITE).
        let ro = File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        assert!(b.shmem_map(&msg(0, 0, 0, PAGE, true), &ro).is_err());
        assert!(b.shmem_map(&msg(0, 0, 0, PAGE, false), &ro).is_err());
        assert!(w.read_window(0, 1).is_err(), "the range stays unmapped");
        // A memfd sealed against writes: refused; against resizing only: fine.
        let sealed = |seals: libc::c_int| {
            // SAFETY: memfd_create with a valid name; owned by the File.
            let fd = unsafe { libc::memfd_create(c"sealed".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
            assert!(fd >= 0);
            // SAFETY: a fresh descriptor nothing else owns.
            let m = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            m.set_len(PAGE).unwrap();
            // SAFETY: fcntl(F_ADD_SEALS) on our own memfd.
            assert_eq!(unsafe { libc::fcntl(m.as_raw_fd(), libc::F_ADD_SEALS, seals) }, 0);
            m
        };
        let ws = sealed(libc::F_SEAL_WRITE);
        assert!(b.shmem_map(&msg(0, 0, 0, PAGE, false), &ws).is_err());
        let rs = sealed(libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL);
        b.shmem_map(&msg(0, 0, 0, PAGE, false), &rs).unwrap();
        assert_eq!(w.read_window(0, 1).unwrap(), [0]);
        assert!(w.write_window(0, b"x").is_err(), "a read-only piece took a store");
        assert_eq!(w.counters().refusals, 3);
    }

    #[test]
    fn mapping_past_the_end_of_its_file_is_not_read() {
        let w = DaxWindow::new(4 * PAGE, true).unwrap();
        let b = backend(&w);
        let f = file(1);
        // mmap accepts a range past EOF (as for QEMU); touching it would fault.
        b.shmem_map(&msg(0, 0, 0, 2 * PAGE, false), &f).unwrap();
        assert_eq!(w.read_window(0, PAGE as usize).unwrap(), vec![1; PAGE as usize]);
        assert!(w.read_window(PAGE, 1).unwrap_err().contains("past the end"));
        f.set_len(2 * PAGE).unwrap();
        assert_eq!(w.read_window(PAGE, 1).unwrap(), [0]);
    }

    #[test]
    fn hold_delays_the_ack() {
        let w = DaxWindow::new(4 * PAGE, true).unwrap();
        let b = backend(&w);
        let f = file(1);
        let h = w.hold();
        std::thread::scope(|s| {
            let t = s.spawn(|| b.shmem_map(&msg(0, 0, 0, PAGE, false), &f).is_ok());
            assert!(w.wait_held(1, std::time::Duration::from_secs(60)), "the map never reached the gate");
            assert!(w.pieces().is_empty(), "handled while held");
            drop(h);
            assert!(t.join().unwrap());
        });
        assert_eq!(w.held(), 0);
        assert_eq!(w.read_window(0, 1).unwrap(), [1]);
    }

    #[test]
    fn malformed_message_ends_the_channel() {
        let w = DaxWindow::new(4 * PAGE, true).unwrap();
        let mut s = UnixStream::from(w.backend_socket().try_clone_to_owned().unwrap());
        // SHMEM_MAP (9) without its fd, asking for an ack: QEMU closes the
        // channel on a malformed message.
        let mut m = Vec::new();
        for v in [BackendReq::SHMEM_MAP as u32, 0x1 | 0x8, 40] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        m.extend_from_slice(vm_memory::ByteValued::as_slice(&msg(0, 0, 0, PAGE, false)));
        s.write_all(&m).unwrap();
        let mut ack = [0u8; 1];
        // The channel ends: EOF (or a reset), never an ack.
        let n = std::io::Read::read(&mut s, &mut ack).unwrap_or(0);
        assert_eq!(n, 0, "an ack for a malformed message");
        assert!(w.broken().is_some_and(|b| b.contains("message 9")), "{:?}", w.broken());
        assert!(w.pieces().is_empty());
    }

    #[test]
    fn drop_stops_the_channel() {
        let w = DaxWindow::new(4 * PAGE, true).unwrap();
        let b = backend(&w);
        let f = file(1);
        b.shmem_map(&msg(0, 0, 0, PAGE, false), &f).unwrap();
        drop(w);
        assert!(b.shmem_map(&msg(0, 0, PAGE, PAGE, false), &f).is_err());
    }
}
