//! Reading request arguments and building replies: the byte-level half of
//! the FUSE protocol. Every length the client sends is checked here, so
//! the rest of the server only ever sees whole, typed structures.

use ext4::fs::data::io::DataSink;
use fuse_abi::linux::fuse_out_header;
use std::sync::atomic::{AtomicU64, Ordering};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// File payload bytes that passed through a buffer of the daemon's own
/// (the READ reply buffer of a contiguous transport, the request buffer
/// holding a WRITE's data) instead of moving straight between the image
/// and the transport's memory. A virtio-fs request never adds to it: its
/// data moves between the image file and guest memory by `preadv` /
/// `pwritev`. Tests read it to prove that.
static BOUNCED_PAYLOAD: AtomicU64 = AtomicU64::new(0);

/// Total of file payload bytes that went through a daemon buffer so far
/// (see [`count_bounced`]).
pub fn bounced_payload_bytes() -> u64 {
    BOUNCED_PAYLOAD.load(Ordering::Relaxed)
}

/// Counts `n` payload bytes that went through a daemon buffer.
pub fn count_bounced(n: usize) {
    BOUNCED_PAYLOAD.fetch_add(n as u64, Ordering::Relaxed);
}

/// Where a transport that keeps READ data out of the reply buffer wants it:
/// the file data is placed right after the reply's buffered part (the
/// header) by the sink, e.g. straight into a descriptor chain's writable
/// guest memory.
pub trait ReplySink: DataSink {
    /// Most bytes the sink can take.
    fn capacity(&self) -> usize;
}

/// A request that does not hold what its opcode needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the structure being read.
    #[error("request too short: {what} needs {need} bytes, {have} left")]
    Short {
        /// The structure being read.
        what: &'static str,
        /// Its size.
        need: usize,
        /// Bytes left in the request.
        have: usize,
    },
    /// A name or path without its terminating NUL.
    #[error("{0} is not NUL-terminated")]
    Unterminated(&'static str),
}

/// Sequential reader over the argument bytes of one request.
#[derive(Debug, Clone, Copy)]
pub struct ArgReader<'a> {
    buf: &'a [u8],
}

impl<'a> ArgReader<'a> {
    /// Reads from `buf`, the bytes after the request header.
    pub fn new(buf: &'a [u8]) -> Self {
        ArgReader { buf }
    }

    /// The next `T`, copied out (the request buffer has no alignment promise).
    pub fn read<T: FromBytes + KnownLayout + Immutable>(&mut self, what: &'static str) -> Result<T, WireError> {
        let need = std::mem::size_of::<T>();
        match T::read_from_prefix(self.buf) {
            Ok((v, rest)) => {
                self.buf = rest;
                Ok(v)
            }
            Err(_) => Err(WireError::Short { what, need, have: self.buf.len() }),
        }
    }

    /// The next `T` when the client sent at least `min` bytes of it and
    /// nothing after it (INIT of older protocol minors is shorter); missing
    /// fields are zero.
    pub fn read_compat<T: FromBytes + KnownLayout + Immutable + IntoBytes + Default>(
        &mut self,
        what: &'static str,
        min: usize,
    ) -> Result<T, WireError> {
        let len = self.buf.len().min(std::mem::size_of::<T>());
        if len < min {
            return Err(WireError::Short { what, need: min, have: self.buf.len() });
        }
        self.read_sized(what, len)
    }

    /// The next `len` bytes as the start of a `T` whose other fields are
    /// zero: a structure that an older form of the request sends shorter,
    /// with more arguments after it.
    pub fn read_sized<T: FromBytes + KnownLayout + Immutable + IntoBytes + Default>(
        &mut self,
        what: &'static str,
        len: usize,
    ) -> Result<T, WireError> {
        let len = len.min(std::mem::size_of::<T>());
        let bytes = self.read_bytes(len, what)?;
        let mut v = T::default();
        v.as_mut_bytes()[..len].copy_from_slice(bytes);
        Ok(v)
    }

    /// The next NUL-terminated string, without its NUL.
    pub fn read_cstr(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.buf.iter().position(|&b| b == 0).ok_or(WireError::Unterminated(what))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// The next `len` bytes.
    pub fn read_bytes(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < len {
            return Err(WireError::Short { what, need: len, have: self.buf.len() });
        }
        let (a, b) = self.buf.split_at(len);
        self.buf = b;
        Ok(a)
    }

    /// Everything not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// Size of the reply header.
pub const OUT_HEADER_SIZE: usize = std::mem::size_of::<fuse_out_header>();

/// A reply under construction: the header slot, then the body. One buffer
/// per worker, reused; file data is read straight into its tail. The
/// buffer only grows: bytes past the reply's length are stale and never
/// sent, so a large read does not pay for zeroing its space first.
#[derive(Debug, Default)]
pub struct ReplyBuf {
    buf: Vec<u8>,
    len: usize,
    /// Body bytes a [`ReplySink`] placed after the buffered part.
    external: usize,
}

impl ReplyBuf {
    /// An empty reply buffer.
    pub fn new() -> Self {
        ReplyBuf { buf: Vec::with_capacity(64 << 10), len: 0, external: 0 }
    }

    /// Makes `n` more bytes available past the current length.
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.len..end]
    }

    /// Starts a new reply (clears the body, reserves the header).
    pub fn start(&mut self) {
        self.len = 0;
        self.external = 0;
        self.room(OUT_HEADER_SIZE).fill(0);
        self.len = OUT_HEADER_SIZE;
    }

    /// Appends a structure.
    pub fn push<T: IntoBytes + Immutable>(&mut self, v: &T) {
        self.push_bytes(v.as_bytes());
    }

    /// Appends raw bytes.
    pub fn push_bytes(&mut self, b: &[u8]) {
        self.room(b.len()).copy_from_slice(b);
        self.len += b.len();
    }

    /// Appends zero bytes up to the next multiple of 8 (dirent padding).
    pub fn pad8(&mut self) {
        let pad = self.body_len().next_multiple_of(8) - self.body_len();
        self.room(pad).fill(0);
        self.len += pad;
    }

    /// Body length so far.
    pub fn body_len(&self) -> usize {
        self.len - OUT_HEADER_SIZE
    }

    /// Grows the body by `len` bytes of unspecified content and returns
    /// them, for a read to fill in place; [`ReplyBuf::truncate_body`] trims
    /// what was not filled.
    pub fn tail(&mut self, len: usize) -> &mut [u8] {
        count_bounced(len);
        self.room(len);
        let start = self.len;
        self.len += len;
        &mut self.buf[start..start + len]
    }

    /// Cuts the body back to `len` bytes.
    pub fn truncate_body(&mut self, len: usize) {
        self.len = self.len.min(OUT_HEADER_SIZE + len);
    }

    /// Records `n` body bytes that a [`ReplySink`] placed after the
    /// buffered part of the reply (they count in the header's length).
    pub fn add_external(&mut self, n: usize) {
        self.external += n;
    }

    /// Body bytes placed by a [`ReplySink`] (0 for an error reply).
    pub fn external_len(&self) -> usize {
        self.external
    }

    /// The buffered part of the reply as last finished (header and body;
    /// [`ReplyBuf::external_len`] more bytes follow it in the transport).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Fills in the header and returns the whole reply. `error` is 0 or a
    /// negative errno; an error reply carries no body.
    pub fn finish(&mut self, unique: u64, error: i32) -> &[u8] {
        if error != 0 {
            self.len = OUT_HEADER_SIZE;
            self.external = 0;
        }
        let hdr = fuse_out_header { len: (self.len + self.external) as u32, error, unique };
        self.buf[..OUT_HEADER_SIZE].copy_from_slice(hdr.as_bytes());
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_abi::linux::fuse_read_in;

    #[test]
    fn short_structures_are_errors() {
        let mut r = ArgReader::new(&[0u8; 10]);
        assert!(matches!(r.read::<fuse_read_in>("read"), Err(WireError::Short { need: 40, have: 10, .. })));
    }

    #[test]
    fn names_need_their_nul() {
        let mut r = ArgReader::new(b"abc\0def");
        assert_eq!(r.read_cstr("name").unwrap(), b"abc");
        assert_eq!(r.read_cstr("name"), Err(WireError::Unterminated("name")));
    }

    #[test]
    fn compat_structures_zero_fill() {
        let mut r = ArgReader::new(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let v: fuse_abi::linux::fuse_mknod_in = r.read_compat("mknod", 8).unwrap();
        assert_eq!((v.mode, v.rdev, v.umask), (1, 2, 0));
        // A short structure followed by more arguments takes only its bytes.
        let mut r = ArgReader::new(b"\x05\0\0\0\x01\0\0\0user.k\0value");
        let v: fuse_abi::linux::fuse_setxattr_in = r.read_sized("setxattr", 8).unwrap();
        assert_eq!((v.size, v.flags, v.setxattr_flags), (5, 1, 0));
        assert_eq!(r.read_cstr("name").unwrap(), b"user.k");
    }

    #[test]
    fn stale_tail_bytes_are_never_sent() {
        let mut b = ReplyBuf::new();
        b.start();
        b.tail(100).fill(0xAA);
        let _ = b.finish(1, 0);
        b.start();
        let t = b.tail(100);
        t[..3].copy_from_slice(b"abc");
        b.truncate_body(3);
        assert_eq!(&b.finish(2, 0)[OUT_HEADER_SIZE..], b"abc");
        b.start();
        b.push_bytes(b"x");
        b.pad8();
        assert_eq!(&b.finish(3, 0)[OUT_HEADER_SIZE..], b"x\0\0\0\0\0\0\0");
    }

    #[test]
    fn error_replies_drop_the_body() {
        let mut b = ReplyBuf::new();
        b.start();
        b.push_bytes(b"data");
        let out = b.finish(7, -2).to_vec();
        assert_eq!(out.len(), OUT_HEADER_SIZE);
        let hdr = fuse_out_header::read_from_bytes(&out).unwrap();
        assert_eq!((hdr.len, hdr.error, hdr.unique), (16, -2, 7));
    }
}
