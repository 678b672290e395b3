//! A FUSE client without a kernel: builds requests by hand and hands them
//! to a [`Server`] directly, for the protocol tests (`fuse_protocol`,
//! `hostile_bounds`).

use ext4::{Ext4, OpenOptions};
use ext4_virtiofsd::adapter::access::NoGroups;
use ext4_virtiofsd::adapter::{AdapterOptions, Ext4Fs};
use ext4_virtiofsd::fuse::server::{Outcome, Server, ServerOptions};
use ext4_virtiofsd::fuse::wire::ReplyBuf;
use fuse_abi::linux::*;
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

/// A client that builds requests by hand.
pub struct Client {
    /// The server under test.
    pub server: Arc<Server>,
    /// The image it serves.
    pub fs: Arc<Ext4>,
    /// The last request id used.
    pub unique: u64,
    out: ReplyBuf,
    deferred: Vec<std::thread::JoinHandle<i32>>,
}

/// A reply: errno (0 or positive) and body.
#[derive(Debug)]
pub struct Reply {
    /// 0 or a positive errno.
    pub errno: i32,
    /// The reply body.
    pub body: Vec<u8>,
}

/// The concatenation of `parts`.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `s` with a NUL.
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

impl Client {
    /// A client of a fresh server with default settings on `img`.
    pub fn new(img: &std::path::Path) -> Client {
        Self::with_options(img, ServerOptions::default())
    }

    /// A client of a server with these protocol settings.
    pub fn with_options(img: &std::path::Path, opts: ServerOptions) -> Client {
        Self::with_all_options(img, AdapterOptions::default(), opts)
    }

    /// A client of a server with these adapter and server settings.
    pub fn with_all_options(img: &std::path::Path, adapter: AdapterOptions, opts: ServerOptions) -> Client {
        let fs = Arc::new(Ext4::open(img, &OpenOptions::default()).unwrap());
        let adapter = Arc::new(Ext4Fs::new(fs.clone(), adapter, Box::new(NoGroups)));
        let server = Arc::new(Server::new(adapter, opts));
        Client { server, fs, unique: 0, out: ReplyBuf::new(), deferred: Vec::new() }
    }

    /// A whole request: header (next unique, uid 0) and `args`.
    pub fn request(&mut self, opcode: u32, node: u64, args: &[u8]) -> Vec<u8> {
        self.unique += 2;
        let hdr = fuse_in_header {
            len: (std::mem::size_of::<fuse_in_header>() + args.len()) as u32,
            opcode,
            unique: self.unique,
            nodeid: node,
            uid: 0,
            gid: 0,
            pid: 0,
            total_extlen: 0,
            padding: 0,
        };
        cat(&[hdr.as_bytes(), args])
    }

    /// Sends raw bytes; `None` when the server sends no reply.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Option<Reply> {
        match self.server.handle(bytes, &mut self.out) {
            Outcome::Reply(r) => {
                let (h, body) = fuse_out_header::read_from_prefix(r).unwrap();
                assert_eq!(h.len as usize, r.len(), "reply length field");
                assert!(h.error <= 0 && h.error > -4096, "error field {}", h.error);
                if h.error != 0 {
                    assert!(body.is_empty(), "error replies carry no body");
                }
                Some(Reply { errno: -h.error, body: body.to_vec() })
            }
            Outcome::NoReply => None,
            Outcome::Deferred(job) => {
                // A lock wait: on a thread of its own, as the dispatcher
                // runs it; it must end by the end of the session.
                self.deferred.push(std::thread::spawn(move || {
                    let mut out = ReplyBuf::new();
                    job(&mut out);
                    let (h, _) = fuse_out_header::read_from_prefix(out.bytes()).unwrap();
                    -h.error
                }));
                Some(Reply { errno: 0, body: Vec::new() })
            }
        }
    }

    /// Sends a request that must get a reply.
    pub fn call(&mut self, op: fuse_opcode, node: u64, args: &[u8]) -> Reply {
        let req = self.request(op as u32, node, args);
        self.send_raw(&req).expect("a reply")
    }

    /// Sends a request that must succeed; its reply body.
    pub fn ok(&mut self, op: fuse_opcode, node: u64, args: &[u8]) -> Vec<u8> {
        let r = self.call(op, node, args);
        assert_eq!(r.errno, 0, "{op:?} on node {node} failed");
        r.body
    }

    /// Sends a request; its errno (0 on success).
    pub fn errno(&mut self, op: fuse_opcode, node: u64, args: &[u8]) -> i32 {
        self.call(op, node, args).errno
    }

    /// INIT as a 7.40 kernel offering everything.
    pub fn init(&mut self) -> fuse_init_out {
        let init = fuse_init_in {
            major: 7,
            minor: 40,
            max_readahead: 1 << 17,
            flags: u32::MAX,
            flags2: u32::MAX,
            unused: [0; 11],
        };
        let body = self.ok(fuse_opcode::FUSE_INIT, 0, init.as_bytes());
        fuse_init_out::read_from_bytes(&body).unwrap()
    }

    /// LOOKUP of `name` in `parent`.
    pub fn lookup(&mut self, parent: u64, name: &str) -> Result<fuse_entry_out, i32> {
        let r = self.call(fuse_opcode::FUSE_LOOKUP, parent, &cstr(name));
        if r.errno != 0 {
            return Err(r.errno);
        }
        Ok(fuse_entry_out::read_from_bytes(&r.body).unwrap())
    }

    /// CREATE of a regular file, opened read-write: (node, fh).
    pub fn create(&mut self, parent: u64, name: &str) -> (u64, u64) {
        let c = fuse_create_in { flags: libc::O_RDWR as u32, mode: 0o100644, umask: 0o022, open_flags: 0 };
        let body = self.ok(fuse_opcode::FUSE_CREATE, parent, &cat(&[c.as_bytes(), &cstr(name)]));
        let (e, rest) = fuse_entry_out::read_from_prefix(&body).unwrap();
        let o = fuse_open_out::read_from_bytes(rest).unwrap();
        (e.nodeid, o.fh)
    }

    /// WRITE of `data` at `offset`.
    pub fn write(&mut self, node: u64, fh: u64, offset: u64, data: &[u8]) -> Reply {
        let w = fuse_write_in { fh, offset, size: data.len() as u32, ..Default::default() };
        self.call(fuse_opcode::FUSE_WRITE, node, &cat(&[w.as_bytes(), data]))
    }

    /// READ of up to `size` bytes at `offset`.
    pub fn read(&mut self, node: u64, fh: u64, offset: u64, size: u32) -> Reply {
        let r = fuse_read_in { fh, offset, size, ..Default::default() };
        self.call(fuse_opcode::FUSE_READ, node, r.as_bytes())
    }

    /// FUSE_IOCTL `cmd` on `node` through handle `fh` (a directory's with
    /// `dir`), restricted as the kernel sends it: `input` as the argument,
    /// up to `out_size` bytes back. The bytes the ioctl answered.
    pub fn ioctl(&mut self, node: u64, fh: u64, dir: bool, cmd: u32, input: &[u8], out_size: u32) -> Vec<u8> {
        let io = fuse_ioctl_in {
            fh,
            flags: if dir { FUSE_IOCTL_DIR } else { 0 },
            cmd,
            arg: 0,
            in_size: input.len() as u32,
            out_size,
        };
        let body = self.ok(fuse_opcode::FUSE_IOCTL, node, &cat(&[io.as_bytes(), input]));
        let (_, data) = fuse_ioctl_out::read_from_prefix(&body).unwrap();
        data.to_vec()
    }

    /// RELEASE of a file handle; its errno.
    pub fn release(&mut self, node: u64, fh: u64) -> i32 {
        let r = fuse_release_in { fh, ..Default::default() };
        self.errno(fuse_opcode::FUSE_RELEASE, node, r.as_bytes())
    }

    /// The names in the root directory, through OPENDIR/READDIR.
    pub fn root_names(&mut self) -> Vec<String> {
        let o = fuse_open_in { flags: libc::O_RDONLY as u32, open_flags: 0 };
        let fh =
            fuse_open_out::read_from_bytes(&self.ok(fuse_opcode::FUSE_OPENDIR, FUSE_ROOT_ID, o.as_bytes())).unwrap().fh;
        let mut names = Vec::new();
        let mut off = 0;
        loop {
            let r = fuse_read_in { fh, offset: off, size: 4096, ..Default::default() };
            let body = self.ok(fuse_opcode::FUSE_READDIR, FUSE_ROOT_ID, r.as_bytes());
            if body.is_empty() {
                break;
            }
            let mut b = &body[..];
            while !b.is_empty() {
                let (d, rest) = fuse_dirent::read_from_prefix(b).unwrap();
                names.push(String::from_utf8_lossy(&rest[..d.namelen as usize]).into_owned());
                off = d.off;
                let len = (std::mem::size_of::<fuse_dirent>() + d.namelen as usize).next_multiple_of(8);
                b = &rest[len - std::mem::size_of::<fuse_dirent>()..];
            }
        }
        let r = fuse_release_in { fh, ..Default::default() };
        self.ok(fuse_opcode::FUSE_RELEASEDIR, FUSE_ROOT_ID, r.as_bytes());
        names.sort();
        names
    }

    /// DESTROY, then waits for the lock waits still running and closes the image.
    pub fn finish(mut self) {
        self.ok(fuse_opcode::FUSE_DESTROY, 0, &[]);
        for w in self.deferred.drain(..) {
            let errno = w.join().unwrap();
            assert!(errno == 0 || errno == libc::EINTR, "a lock wait ended with errno {errno}");
        }
        self.fs.close().unwrap();
    }
}
