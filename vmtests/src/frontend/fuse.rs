//! FUSE requests as a guest kernel sends them over virtio-fs, and their
//! replies, with `fuse-abi` structs.
//!
//! A [`Request`] is a header's worth of fields, the argument bytes (the op
//! struct and names) and an optional payload (WRITE data), plus the room
//! the reply may take. The builders below make the usual ones; hostile
//! tests build others by hand (any opcode, node, argument bytes, or a
//! `len` field that lies).

use fuse_abi::linux::*;
use zerocopy::{FromBytes, IntoBytes};

/// Size of `fuse_in_header`.
pub const IN_HEADER: usize = std::mem::size_of::<fuse_in_header>();
/// Size of `fuse_out_header`.
pub const OUT_HEADER: usize = std::mem::size_of::<fuse_out_header>();

/// One request, before it is put in a descriptor chain.
#[derive(Debug, Clone)]
pub struct Request {
    /// The opcode (`fuse_opcode as u32`, or anything for hostile tests).
    pub opcode: u32,
    /// The node it acts on.
    pub nodeid: u64,
    /// Caller credentials.
    pub uid: u32,
    /// Caller credentials.
    pub gid: u32,
    /// Caller pid.
    pub pid: u32,
    /// Arguments after the header (op struct, names).
    pub args: Vec<u8>,
    /// Payload after the arguments (WRITE data), in descriptors of its own.
    pub payload: Vec<u8>,
    /// Room for the reply body (after `fuse_out_header`); with
    /// `no_reply` nothing writable is offered at all (FORGET).
    pub reply_size: u32,
    /// The request expects no reply (FORGET, BATCH_FORGET).
    pub no_reply: bool,
    /// Overrides the header's `len` field (hostile tests); normally
    /// header + args + payload.
    pub len_override: Option<u32>,
}

impl Request {
    /// A request of `op` on `nodeid` with argument bytes `args` and room for
    /// a reply body of `reply_size`.
    pub fn new(op: fuse_opcode, nodeid: u64, args: Vec<u8>, reply_size: u32) -> Request {
        Request {
            opcode: op as u32,
            nodeid,
            uid: 0,
            gid: 0,
            pid: 1,
            args,
            payload: Vec::new(),
            reply_size,
            no_reply: false,
            len_override: None,
        }
    }

    /// The header and the arguments, as the first readable bytes; `unique` is the request id.
    pub fn head_bytes(&self, unique: u64) -> Vec<u8> {
        let len = self.len_override.unwrap_or((IN_HEADER + self.args.len() + self.payload.len()) as u32);
        let h = fuse_in_header {
            len,
            opcode: self.opcode,
            unique,
            nodeid: self.nodeid,
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            total_extlen: 0,
            padding: 0,
        };
        [h.as_bytes(), &self.args].concat()
    }
}

/// A reply as it came back in the writable descriptors.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The request's opcode (for messages).
    pub opcode: u32,
    /// 0 or a positive errno.
    pub errno: i32,
    /// The body after `fuse_out_header`.
    pub body: Vec<u8>,
    /// `fuse_out_header.unique`.
    pub unique: u64,
    /// `fuse_out_header.len`.
    pub len: u32,
    /// The used-ring length the device reported.
    pub used_len: u32,
}

impl Reply {
    /// Parses the writable bytes `w` of a chain that the device reported
    /// `used_len` bytes for. Checks what a guest kernel checks: a header
    /// fits, `len` equals the used length, `unique` is ours, the error is
    /// 0 or a negated errno with no body.
    pub fn parse(opcode: u32, unique: u64, w: &[u8], used_len: u32) -> Result<Reply, String> {
        let got = &w[..(used_len as usize).min(w.len())];
        let Ok((h, body)) = fuse_out_header::read_from_prefix(got) else {
            return Err(format!("opcode {opcode}: reply of {used_len} bytes has no fuse_out_header"));
        };
        if h.unique != unique {
            return Err(format!("opcode {opcode}: reply unique {} for request {unique}", h.unique));
        }
        if h.len != used_len {
            return Err(format!("opcode {opcode}: reply len field {} but used length {used_len}", h.len));
        }
        if h.error > 0 || h.error <= -4096 {
            return Err(format!("opcode {opcode}: reply error field {}", h.error));
        }
        if h.error != 0 && !body.is_empty() {
            return Err(format!("opcode {opcode}: error reply {} carries {} body bytes", h.error, body.len()));
        }
        Ok(Reply { opcode, errno: -h.error, body: body.to_vec(), unique, len: h.len, used_len })
    }

    /// The body, or a message naming the errno.
    pub fn ok(self) -> Result<Vec<u8>, i32> {
        if self.errno == 0 { Ok(self.body) } else { Err(self.errno) }
    }
}

/// `s` with a NUL.
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn entry_room() -> u32 {
    std::mem::size_of::<fuse_entry_out>() as u32
}

/// What a guest mounted with `-o dax` adds to [`INIT_FLAGS`]:
/// `FUSE_MAP_ALIGNMENT` (and `FUSE_HAS_INODE_DAX` in flags2 for
/// `-o dax=inode`).
pub const DAX_INIT_FLAGS: u32 = INIT_FLAGS | FUSE_MAP_ALIGNMENT;

/// The flags this frontend offers at INIT: what a virtio-fs guest commonly
/// offers, without DAX, SETXATTR_EXT or writeback caching.
pub const INIT_FLAGS: u32 = FUSE_ASYNC_READ
    | FUSE_POSIX_LOCKS
    | FUSE_ATOMIC_O_TRUNC
    | FUSE_EXPORT_SUPPORT
    | FUSE_BIG_WRITES
    | FUSE_DONT_MASK
    | FUSE_FLOCK_LOCKS
    | FUSE_DO_READDIRPLUS
    | FUSE_READDIRPLUS_AUTO
    | FUSE_ASYNC_DIO
    | FUSE_PARALLEL_DIROPS
    | FUSE_MAX_PAGES
    | FUSE_INIT_EXT;

/// INIT as a 7.38 guest with `flags`.
pub fn init(flags: u32) -> Request {
    init_ext(flags, 0)
}

/// INIT as a 7.38 guest with `flags` and `flags2` (the high half of the
/// 64-bit flags: `FUSE_HAS_INODE_DAX >> 32` ...).
pub fn init_ext(flags: u32, flags2: u32) -> Request {
    let i = fuse_init_in { major: 7, minor: 38, max_readahead: 1 << 17, flags, flags2, unused: [0; 11] };
    Request::new(fuse_opcode::FUSE_INIT, 0, i.as_bytes().to_vec(), std::mem::size_of::<fuse_init_out>() as u32)
}

/// LOOKUP of `name` in `parent`.
pub fn lookup(parent: u64, name: &str) -> Request {
    Request::new(fuse_opcode::FUSE_LOOKUP, parent, cstr(name), entry_room())
}

/// GETATTR of `node`.
pub fn getattr(node: u64) -> Request {
    let g = fuse_getattr_in::default();
    Request::new(fuse_opcode::FUSE_GETATTR, node, g.as_bytes().to_vec(), std::mem::size_of::<fuse_attr_out>() as u32)
}

/// OPEN (or OPENDIR with `dir`) with `flags`.
pub fn open(node: u64, flags: i32, dir: bool) -> Request {
    let o = fuse_open_in { flags: flags as u32, open_flags: 0 };
    let op = if dir { fuse_opcode::FUSE_OPENDIR } else { fuse_opcode::FUSE_OPEN };
    Request::new(op, node, o.as_bytes().to_vec(), std::mem::size_of::<fuse_open_out>() as u32)
}

/// READ of up to `size` bytes at `offset`.
pub fn read(node: u64, fh: u64, offset: u64, size: u32) -> Request {
    let r = fuse_read_in { fh, offset, size, ..Default::default() };
    Request::new(fuse_opcode::FUSE_READ, node, r.as_bytes().to_vec(), size)
}

/// READDIR (or READDIRPLUS with `plus`) of up to `size` bytes from `offset`.
pub fn readdir(node: u64, fh: u64, offset: u64, size: u32, plus: bool) -> Request {
    let r = fuse_read_in { fh, offset, size, ..Default::default() };
    let op = if plus { fuse_opcode::FUSE_READDIRPLUS } else { fuse_opcode::FUSE_READDIR };
    Request::new(op, node, r.as_bytes().to_vec(), size)
}

/// WRITE of `data` at `offset`.
pub fn write(node: u64, fh: u64, offset: u64, data: &[u8]) -> Request {
    let w = fuse_write_in { fh, offset, size: data.len() as u32, ..Default::default() };
    let mut r = Request::new(fuse_opcode::FUSE_WRITE, node, w.as_bytes().to_vec(), 8);
    r.payload = data.to_vec();
    r
}

/// CREATE of `name` in `parent` with `flags` and `mode`.
pub fn create(parent: u64, name: &str, flags: i32, mode: u32) -> Request {
    let c = fuse_create_in { flags: flags as u32, mode, umask: 0, open_flags: 0 };
    let room = entry_room() + std::mem::size_of::<fuse_open_out>() as u32;
    Request::new(fuse_opcode::FUSE_CREATE, parent, [c.as_bytes(), &cstr(name)].concat(), room)
}

/// MKDIR of `name` in `parent`.
pub fn mkdir(parent: u64, name: &str, mode: u32) -> Request {
    let m = fuse_mkdir_in { mode, umask: 0 };
    Request::new(fuse_opcode::FUSE_MKDIR, parent, [m.as_bytes(), &cstr(name)].concat(), entry_room())
}

/// UNLINK (or RMDIR with `dir`) of `name` in `parent`.
pub fn unlink(parent: u64, name: &str, dir: bool) -> Request {
    let op = if dir { fuse_opcode::FUSE_RMDIR } else { fuse_opcode::FUSE_UNLINK };
    Request::new(op, parent, cstr(name), 0)
}

/// RENAME of `parent/name` to `newdir/newname`.
pub fn rename(parent: u64, name: &str, newdir: u64, newname: &str) -> Request {
    let r = fuse_rename_in { newdir };
    Request::new(fuse_opcode::FUSE_RENAME, parent, [r.as_bytes(), &cstr(name), &cstr(newname)].concat(), 0)
}

/// LINK of `node` as `newparent/newname`.
pub fn link(node: u64, newparent: u64, newname: &str) -> Request {
    let l = fuse_link_in { oldnodeid: node };
    Request::new(fuse_opcode::FUSE_LINK, newparent, [l.as_bytes(), &cstr(newname)].concat(), entry_room())
}

/// SYMLINK `parent/name` → `target`.
pub fn symlink(parent: u64, name: &str, target: &str) -> Request {
    Request::new(fuse_opcode::FUSE_SYMLINK, parent, [cstr(name), cstr(target)].concat(), entry_room())
}

/// READLINK of `node`.
pub fn readlink(node: u64) -> Request {
    Request::new(fuse_opcode::FUSE_READLINK, node, Vec::new(), 4096)
}

/// SETXATTR in the pre-SETXATTR_EXT layout (`size`, `flags`).
pub fn setxattr(node: u64, name: &str, value: &[u8], flags: u32) -> Request {
    let mut a = Vec::new();
    a.extend_from_slice(&(value.len() as u32).to_le_bytes());
    a.extend_from_slice(&flags.to_le_bytes());
    a.extend_from_slice(&cstr(name));
    a.extend_from_slice(value);
    Request::new(fuse_opcode::FUSE_SETXATTR, node, a, 0)
}

/// GETXATTR of `name` with room for `size` bytes (0: ask the size).
pub fn getxattr(node: u64, name: &str, size: u32) -> Request {
    let g = fuse_getxattr_in { size, padding: 0 };
    Request::new(fuse_opcode::FUSE_GETXATTR, node, [g.as_bytes(), &cstr(name)].concat(), size.max(8))
}

/// FSYNC of `fh` (`datasync`: only data).
pub fn fsync(node: u64, fh: u64, datasync: bool) -> Request {
    let f = fuse_fsync_in { fh, fsync_flags: datasync as u32, padding: 0 };
    Request::new(fuse_opcode::FUSE_FSYNC, node, f.as_bytes().to_vec(), 0)
}

/// STATFS.
pub fn statfs(node: u64) -> Request {
    Request::new(fuse_opcode::FUSE_STATFS, node, Vec::new(), std::mem::size_of::<fuse_statfs_out>() as u32)
}

/// FALLOCATE of `[offset, offset + length)` with `mode`.
pub fn fallocate(node: u64, fh: u64, offset: u64, length: u64, mode: u32) -> Request {
    let f = fuse_fallocate_in { fh, offset, length, mode, padding: 0 };
    Request::new(fuse_opcode::FUSE_FALLOCATE, node, f.as_bytes().to_vec(), 0)
}

/// LSEEK from `offset` with `whence` (SEEK_DATA / SEEK_HOLE ...).
pub fn lseek(node: u64, fh: u64, offset: u64, whence: u32) -> Request {
    let l = fuse_lseek_in { fh, offset, whence, padding: 0 };
    Request::new(fuse_opcode::FUSE_LSEEK, node, l.as_bytes().to_vec(), std::mem::size_of::<fuse_lseek_out>() as u32)
}

/// RELEASE (or RELEASEDIR with `dir`) of `fh`.
pub fn release(node: u64, fh: u64, dir: bool) -> Request {
    let r = fuse_release_in { fh, ..Default::default() };
    let op = if dir { fuse_opcode::FUSE_RELEASEDIR } else { fuse_opcode::FUSE_RELEASE };
    Request::new(op, node, r.as_bytes().to_vec(), 0)
}

/// FORGET `nlookup` lookups of `node` (no reply).
pub fn forget(node: u64, nlookup: u64) -> Request {
    let f = fuse_forget_in { nlookup };
    let mut r = Request::new(fuse_opcode::FUSE_FORGET, node, f.as_bytes().to_vec(), 0);
    r.no_reply = true;
    r
}

/// SETATTR of the size (truncate).
pub fn truncate(node: u64, size: u64) -> Request {
    let s = fuse_setattr_in { valid: FATTR_SIZE, size, ..Default::default() };
    Request::new(fuse_opcode::FUSE_SETATTR, node, s.as_bytes().to_vec(), std::mem::size_of::<fuse_attr_out>() as u32)
}

/// COPY_FILE_RANGE of `len` bytes from `node`/`fh_in` at `off_in` to
/// `node_out`/`fh_out` at `off_out`.
pub fn copy_file_range(
    node: u64,
    fh_in: u64,
    off_in: u64,
    node_out: u64,
    fh_out: u64,
    off_out: u64,
    len: u64,
) -> Request {
    let c = fuse_copy_file_range_in { fh_in, off_in, nodeid_out: node_out, fh_out, off_out, len, flags: 0 };
    Request::new(
        fuse_opcode::FUSE_COPY_FILE_RANGE,
        node,
        c.as_bytes().to_vec(),
        std::mem::size_of::<fuse_write_out>() as u32,
    )
}

/// SETUPMAPPING: map `[foffset, foffset + len)` of `node` (through `fh`,
/// which Linux sends as `u64::MAX` when it has none) at `moffset` in the DAX
/// window; `flags` are `FUSE_SETUPMAPPING_FLAG_READ` / `_WRITE`.
pub fn setupmapping(node: u64, fh: u64, foffset: u64, len: u64, flags: u64, moffset: u64) -> Request {
    let m = fuse_setupmapping_in { fh, foffset, len, flags, moffset };
    Request::new(fuse_opcode::FUSE_SETUPMAPPING, node, m.as_bytes().to_vec(), 0)
}

/// REMOVEMAPPING of `ranges` (window offset, length), with `count` equal
/// to the number of ranges.
pub fn removemapping(node: u64, ranges: &[(u64, u64)]) -> Request {
    removemapping_count(node, ranges.len() as u32, ranges)
}

/// REMOVEMAPPING whose `count` field says `count` whatever `ranges` holds
/// (hostile tests: a count larger than the request).
pub fn removemapping_count(node: u64, count: u32, ranges: &[(u64, u64)]) -> Request {
    let mut a = fuse_removemapping_in { count }.as_bytes().to_vec();
    for &(moffset, len) in ranges {
        a.extend_from_slice(fuse_removemapping_one { moffset, len }.as_bytes());
    }
    Request::new(fuse_opcode::FUSE_REMOVEMAPPING, node, a, 0)
}

/// DESTROY.
pub fn destroy() -> Request {
    Request::new(fuse_opcode::FUSE_DESTROY, 0, Vec::new(), 0)
}

/// Parses a reply body as `T` (exact size or a prefix).
pub fn parse<T: FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(body: &[u8]) -> Result<T, String> {
    T::read_from_prefix(body)
        .map(|(t, _)| t)
        .map_err(|_| format!("reply body of {} bytes, want {}", body.len(), std::mem::size_of::<T>()))
}

/// One directory entry of READDIR or READDIRPLUS.
#[derive(Debug, Clone)]
pub struct Dirent {
    /// Inode number.
    pub ino: u64,
    /// Offset of the next entry.
    pub off: u64,
    /// `DT_*`.
    pub kind: u32,
    /// Name.
    pub name: String,
    /// READDIRPLUS: the entry (node id 0 for `.`/`..` by convention).
    pub entry: Option<fuse_entry_out>,
}

/// Parses a READDIR (`plus` false) or READDIRPLUS body.
pub fn parse_dirents(body: &[u8], plus: bool) -> Result<Vec<Dirent>, String> {
    let mut out = Vec::new();
    let mut b = body;
    let dsz = std::mem::size_of::<fuse_dirent>();
    while !b.is_empty() {
        let entry = if plus {
            let (e, rest) = fuse_entry_out::read_from_prefix(b).map_err(|_| "truncated direntplus".to_string())?;
            b = rest;
            Some(e)
        } else {
            None
        };
        let (d, rest) = fuse_dirent::read_from_prefix(b).map_err(|_| "truncated dirent".to_string())?;
        let n = d.namelen as usize;
        if n > rest.len() || n == 0 || n > 255 {
            return Err(format!("dirent namelen {n} with {} bytes left", rest.len()));
        }
        let name = String::from_utf8_lossy(&rest[..n]).into_owned();
        let rec = (dsz + n).next_multiple_of(8);
        if rec - dsz > rest.len() {
            return Err("dirent padding past the body".into());
        }
        out.push(Dirent { ino: d.ino, off: d.off, kind: d.type_, name, entry });
        b = &rest[rec - dsz..];
    }
    Ok(out)
}
