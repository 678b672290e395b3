//! One descriptor chain of a virtqueue as the FUSE server's seam wants it:
//! the readable part (request header, arguments, WRITE data) and the
//! writable part (reply header, READ data) as runs of guest memory,
//! checked once when the chain is taken off the queue (every address
//! inside guest memory, readable before writable, no length overflow).
//!
//! Headers and arguments are copied out ([`Chain::copy_head`]); file data
//! never is: [`ChainSource`] writes a WRITE's data to the image with
//! `pwritev` straight from guest memory, [`ChainSink`] reads a READ's data
//! with `preadv` straight into it. Guest memory is reached only through
//! `vm-memory`'s volatile slices and raw I/O vectors, never as `&[u8]`
//! (the guest can change it while we look).

use ext4::fs::data::io::{DataSink, DataSource};
use ext4::io::BlockDevice;
use std::sync::Arc;
use virtio_queue::DescriptorChain;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryMmap, Permissions, VolatileSlice,
};

use crate::fuse::wire::{OUT_HEADER_SIZE, ReplySink, count_bounced};

/// Guest memory as the device maps it.
pub type Mem = GuestMemoryMmap<()>;

/// Most descriptors one chain may have (a guest cannot make us build an
/// I/O vector of unbounded length).
pub const MAX_DESCRIPTORS: usize = 1024;

/// Why a chain cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A readable descriptor after a writable one (virtio 2.7.4.2).
    #[error("readable descriptor after a writable one")]
    WrongOrder,
    /// More descriptors than [`MAX_DESCRIPTORS`].
    #[error("more than {MAX_DESCRIPTORS} descriptors")]
    TooManyDescriptors,
    /// Lengths that add up past 4 GiB.
    #[error("descriptor lengths overflow")]
    Overflow,
    /// A descriptor outside guest memory.
    #[error("descriptor {addr:#x}+{len:#x} is outside guest memory")]
    OutsideMemory {
        /// Its guest address.
        addr: u64,
        /// Its length.
        len: u32,
    },
}

/// A contiguous piece of guest memory inside one memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    addr: GuestAddress,
    len: usize,
}

/// A run of guest memory made of pieces, each inside one region.
#[derive(Debug, Clone, Default)]
pub struct Pieces {
    pieces: Vec<Piece>,
    len: usize,
}

impl Pieces {
    /// Appends `addr..addr+len`, split at region boundaries; an address
    /// outside guest memory is an error.
    fn push(&mut self, mem: &Mem, addr: GuestAddress, len: u32, perm: Permissions) -> Result<(), ChainError> {
        let outside = ChainError::OutsideMemory { addr: addr.raw_value(), len };
        if len == 0 {
            return Ok(());
        }
        if !GuestMemory::check_range(mem, addr, len as usize, perm) {
            return Err(outside);
        }
        let mut at = addr;
        for slice in GuestMemory::get_slices(mem, addr, len as usize, perm).map_err(|_| outside.clone())? {
            let slice = slice.map_err(|_| outside.clone())?;
            let n = slice.len();
            self.pieces.push(Piece { addr: at, len: n });
            at = at.checked_add(n as u64).ok_or(outside.clone())?;
        }
        self.len = self.len.checked_add(len as usize).ok_or(ChainError::Overflow)?;
        Ok(())
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The volatile slices covering bytes `at..at+len` (which must lie
    /// within the run), in order.
    fn slices<'m>(&self, mem: &'m Mem, at: usize, len: usize) -> std::io::Result<Vec<VolatileSlice<'m, ()>>> {
        let mut out = Vec::new();
        let (mut skip, mut want) = (at, len);
        for p in &self.pieces {
            if want == 0 {
                break;
            }
            if skip >= p.len {
                skip -= p.len;
                continue;
            }
            let n = (p.len - skip).min(want);
            let addr = p.addr.checked_add(skip as u64).ok_or_else(|| std::io::Error::other("address overflow"))?;
            let s = GuestMemoryBackend::get_slice(mem, addr, n).map_err(std::io::Error::other)?;
            out.push(s);
            skip = 0;
            want -= n;
        }
        if want != 0 {
            return Err(std::io::Error::other(format!("{len} bytes at {at} run past the chain's {} bytes", self.len)));
        }
        Ok(out)
    }

    /// Copies bytes `at..at+buf.len()` out of guest memory into `buf`.
    pub fn read_at(&self, mem: &Mem, at: usize, buf: &mut [u8]) -> std::io::Result<()> {
        let mut done = 0;
        for s in self.slices(mem, at, buf.len())? {
            let n = s.len();
            s.read_slice(&mut buf[done..done + n], 0).map_err(std::io::Error::other)?;
            done += n;
        }
        Ok(())
    }

    /// Copies `buf` into guest memory at bytes `at..at+buf.len()`.
    pub fn write_at(&self, mem: &Mem, at: usize, buf: &[u8]) -> std::io::Result<()> {
        let mut done = 0;
        for s in self.slices(mem, at, buf.len())? {
            let n = s.len();
            s.write_slice(&buf[done..done + n], 0).map_err(std::io::Error::other)?;
            done += n;
        }
        Ok(())
    }

    /// Zeroes bytes `at..at+len`.
    fn zero_at(&self, mem: &Mem, at: usize, len: usize) -> std::io::Result<()> {
        static ZEROS: [u8; 4096] = [0; 4096];
        for s in self.slices(mem, at, len)? {
            let mut off = 0;
            while off < s.len() {
                let n = (s.len() - off).min(ZEROS.len());
                s.write_slice(&ZEROS[..n], off).map_err(std::io::Error::other)?;
                off += n;
            }
        }
        Ok(())
    }
}

/// Moves `len` bytes between file `fd` at `offset` and guest memory
/// `at..at+len` of `run`, with one `preadv` (`to_guest`) or `pwritev` per
/// try, straight into or out of guest memory.
fn file_io(
    run: &Pieces,
    mem: &Mem,
    at: usize,
    len: usize,
    fd: i32,
    offset: u64,
    to_guest: bool,
) -> std::io::Result<()> {
    let slices = run.slices(mem, at, len)?;
    let (mut idx, mut skip, mut done) = (0usize, 0usize, 0usize);
    while done < len {
        // Guards keep each slice's host address valid during the call.
        let guards: Vec<_> = slices[idx..].iter().take(libc::UIO_MAXIOV as usize).map(|s| s.ptr_guard_mut()).collect();
        let iov: Vec<libc::iovec> = guards
            .iter()
            .zip(&slices[idx..])
            .enumerate()
            .map(|(i, (g, s))| {
                let off = if i == 0 { skip } else { 0 };
                // SAFETY: `off` is below the slice's length (it counts bytes of
                // this slice already done), so the pointer stays inside it.
                libc::iovec { iov_base: unsafe { g.as_ptr().add(off) }.cast(), iov_len: s.len() - off }
            })
            .collect();
        let pos = (offset + done as u64) as libc::off_t;
        // SAFETY: every iovec points into guest memory mapped for the
        // lifetime of `mem` (kept alive by the caller), with its length.
        let n = unsafe {
            if to_guest {
                libc::preadv(fd, iov.as_ptr(), iov.len() as i32, pos)
            } else {
                libc::pwritev(fd, iov.as_ptr(), iov.len() as i32, pos)
            }
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "image ends inside a read"));
        }
        // Step the cursor over the bytes moved.
        let mut n = n as usize;
        done += n;
        while n > 0 {
            let left = slices[idx].len() - skip;
            if n >= left {
                n -= left;
                idx += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// An I/O error of a transfer at image byte `offset` (for a fault in
/// guest memory, the image byte the transfer was for).
fn io_at(offset: u64) -> impl FnOnce(std::io::Error) -> ext4::Error {
    move |source| ext4::Error::Io { offset, source }
}

/// A descriptor chain taken off a queue and checked.
pub struct Chain {
    mem: Arc<Mem>,
    head: u16,
    readable: Pieces,
    writable: Pieces,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chain {} ({} readable, {} writable bytes)", self.head, self.readable.len, self.writable.len)
    }
}

impl Chain {
    /// Checks `chain` and records its memory runs. On error the chain
    /// must still be given back to the guest (its head index is in the error path's caller).
    pub fn parse<M>(mem: Arc<Mem>, chain: DescriptorChain<M>) -> Result<Chain, ChainError>
    where
        M: std::ops::Deref,
        M::Target: GuestMemory,
    {
        let head = chain.head_index();
        Self::from_descriptors(mem, head, chain)
    }

    /// A chain from its descriptors (in chain order).
    pub fn from_descriptors(
        mem: Arc<Mem>,
        head: u16,
        descs: impl IntoIterator<Item = Descriptor>,
    ) -> Result<Chain, ChainError> {
        let (mut readable, mut writable) = (Pieces::default(), Pieces::default());
        let mut total: u64 = 0;
        for (i, d) in descs.into_iter().enumerate() {
            if i >= MAX_DESCRIPTORS {
                return Err(ChainError::TooManyDescriptors);
            }
            total += d.len() as u64;
            if total > u32::MAX as u64 {
                return Err(ChainError::Overflow);
            }
            if d.is_write_only() {
                writable.push(&mem, d.addr(), d.len(), Permissions::Write)?;
            } else if !writable.pieces.is_empty() || writable.len != 0 {
                return Err(ChainError::WrongOrder);
            } else {
                readable.push(&mem, d.addr(), d.len(), Permissions::Read)?;
            }
        }
        Ok(Chain { mem, head, readable, writable })
    }

    /// The head descriptor's index (what `add_used` names).
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The readable run.
    pub fn readable(&self) -> &Pieces {
        &self.readable
    }

    /// The writable run.
    pub fn writable(&self) -> &Pieces {
        &self.writable
    }

    /// The guest memory the chain lives in.
    pub fn mem(&self) -> &Arc<Mem> {
        &self.mem
    }

    /// Copies the request header and arguments into `buf`: for a WRITE
    /// (opcode 16) only the header and `fuse_write_in` (80 bytes), whose
    /// data stays in guest memory; else every readable byte that fits.
    /// Returns the count copied and, for a WRITE, the payload's source.
    pub fn copy_head(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<ChainSource>)> {
        const IN_HEADER: usize = 40;
        const WRITE_HEAD: usize = IN_HEADER + 40;
        let avail = self.readable.len;
        if avail >= WRITE_HEAD && buf.len() >= WRITE_HEAD {
            let mut op = [0u8; 4];
            self.readable.read_at(&self.mem, 4, &mut op)?;
            if u32::from_le_bytes(op) == fuse_abi::linux::fuse_opcode::FUSE_WRITE as u32 {
                self.readable.read_at(&self.mem, 0, &mut buf[..WRITE_HEAD])?;
                let src = ChainSource {
                    mem: self.mem.clone(),
                    run: self.readable.clone(),
                    start: WRITE_HEAD,
                    len: avail - WRITE_HEAD,
                };
                return Ok((WRITE_HEAD, Some(src)));
            }
        }
        let n = avail.min(buf.len());
        self.readable.read_at(&self.mem, 0, &mut buf[..n])?;
        Ok((n, None))
    }

    /// Where READ data goes: the writable run after the reply header.
    pub fn sink(&self) -> ChainSink {
        ChainSink { mem: self.mem.clone(), run: self.writable.clone(), start: OUT_HEADER_SIZE, pos: 0 }
    }

    /// Writes the reply's buffered part at the start of the writable run;
    /// returns the number of bytes the chain now holds (`external` bytes a
    /// [`ChainSink`] placed follow). A reply that does not fit is cut to
    /// an error header (ERANGE), or to nothing when not even that fits.
    pub fn write_reply(&self, reply: &[u8], external: usize) -> std::io::Result<u32> {
        let total = reply.len().saturating_add(external);
        if total <= self.writable.len {
            self.writable.write_at(&self.mem, 0, reply)?;
            return Ok(total as u32);
        }
        log::warn!("{self:?}: reply of {total} bytes does not fit");
        if reply.len() >= OUT_HEADER_SIZE && self.writable.len >= OUT_HEADER_SIZE {
            let mut hdr = [0u8; OUT_HEADER_SIZE];
            hdr.copy_from_slice(&reply[..OUT_HEADER_SIZE]);
            hdr[0..4].copy_from_slice(&(OUT_HEADER_SIZE as u32).to_le_bytes());
            hdr[4..8].copy_from_slice(&(-libc::ERANGE).to_le_bytes());
            self.writable.write_at(&self.mem, 0, &hdr)?;
            return Ok(OUT_HEADER_SIZE as u32);
        }
        Ok(0)
    }
}

/// A WRITE's data, left in the chain's readable guest memory.
pub struct ChainSource {
    mem: Arc<Mem>,
    run: Pieces,
    start: usize,
    len: usize,
}

impl DataSource for ChainSource {
    fn len(&self) -> usize {
        self.len
    }

    fn write_to(&mut self, at: usize, len: usize, dev: &dyn BlockDevice, offset: u64) -> ext4::Result<()> {
        assert!(at.checked_add(len).is_some_and(|e| e <= self.len), "write past the source's end");
        match dev.raw_fd() {
            Some(fd) => file_io(&self.run, &self.mem, self.start + at, len, fd, offset, false).map_err(io_at(offset)),
            None => {
                // A device without a file: through a block-sized buffer.
                let mut buf = vec![0u8; len.min(4096)];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(buf.len());
                    self.run.read_at(&self.mem, self.start + at + done, &mut buf[..n]).map_err(io_at(offset))?;
                    dev.write_at(&buf[..n], offset + done as u64)?;
                    done += n;
                }
                count_bounced(len);
                Ok(())
            }
        }
    }

    fn copy_to(&mut self, at: usize, buf: &mut [u8]) -> ext4::Result<()> {
        assert!(at.checked_add(buf.len()).is_some_and(|e| e <= self.len), "copy past the source's end");
        self.run.read_at(&self.mem, self.start + at, buf).map_err(io_at(0))
    }
}

/// The place for READ data: the chain's writable guest memory after the
/// reply header, filled in file order.
pub struct ChainSink {
    mem: Arc<Mem>,
    run: Pieces,
    start: usize,
    pos: usize,
}

impl ChainSink {
    fn take(&mut self, len: usize) -> ext4::Result<usize> {
        if len > self.capacity() {
            return Err(ext4::Error::InvalidArgument(format!(
                "{len} bytes do not fit the reply's {}",
                self.capacity()
            )));
        }
        let at = self.start + self.pos;
        self.pos += len;
        Ok(at)
    }
}

impl DataSink for ChainSink {
    fn read_from(&mut self, dev: &dyn BlockDevice, offset: u64, len: usize) -> ext4::Result<()> {
        let at = self.take(len)?;
        match dev.raw_fd() {
            Some(fd) => file_io(&self.run, &self.mem, at, len, fd, offset, true).map_err(io_at(offset)),
            None => {
                let mut buf = vec![0u8; len.min(4096)];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(buf.len());
                    dev.read_at(&mut buf[..n], offset + done as u64)?;
                    self.run.write_at(&self.mem, at + done, &buf[..n]).map_err(io_at(offset))?;
                    done += n;
                }
                count_bounced(len);
                Ok(())
            }
        }
    }

    fn zeros(&mut self, len: usize) -> ext4::Result<()> {
        let at = self.take(len)?;
        self.run.zero_at(&self.mem, at, len).map_err(io_at(0))
    }

    fn bytes(&mut self, data: &[u8]) -> ext4::Result<()> {
        let at = self.take(data.len())?;
        self.run.write_at(&self.mem, at, data).map_err(io_at(0))
    }
}

impl ReplySink for ChainSink {
    fn capacity(&self) -> usize {
        self.run.len().saturating_sub(self.start + self.pos)
    }
}
