//! Directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR. Offsets are the
//! core's stable readdir cookies, so a listing resumes correctly across
//! requests even while entries are added or removed.

use super::access::{self, Caller, MAY_READ};
use super::attr::{dirent_type, entry_out};
use super::errno::FsResult;
use super::Ext4Fs;
use crate::fuse::wire::ReplyBuf;
use fuse_abi::linux::{fuse_dirent, fuse_entry_out, fuse_open_out};
use zerocopy::IntoBytes;

impl Ext4Fs {
    /// OPENDIR.
    pub fn opendir(&self, caller: &Caller<'_>, node: u64, flags: u32) -> FsResult<fuse_open_out> {
        let dir = self.dir(node)?;
        access::check(&self.fs, &dir, caller, MAY_READ)?;
        self.fs.open_inode(dir.ino);
        Ok(self.register_handle(dir.ino, flags, true))
    }

    /// RELEASEDIR.
    pub fn releasedir(&self, node: u64, fh: u64) -> FsResult<()> {
        let ino = self.nodes.inode_of(node)?;
        let h = self.handles.remove(fh, ino, true)?;
        Ok(self.fs.close_inode(h.ino)?)
    }

    /// READDIR / READDIRPLUS from cookie `offset`, filling at most `size`
    /// bytes of the reply. With `plus` every entry but "." and ".." comes
    /// with its attributes and counts as a lookup.
    pub fn readdir(&self, node: u64, fh: u64, offset: u64, size: u32, plus: bool, out: &mut ReplyBuf) -> FsResult<()> {
        let dir = self.dir(node)?;
        self.handles.get(fh, dir.ino, true)?;
        let start = out.body_len();
        let limit = start + size as usize;
        let mut err = None;
        self.fs.read_dir(&dir, offset, &mut |e, next| {
            let dirent = fuse_dirent { ino: e.ino as u64, off: next, namelen: e.name.len() as u32, type_: dirent_type(e.file_type), name: Default::default() };
            let dot = e.name == b"." || e.name == b"..";
            let mut entry = None;
            if plus && !dot {
                match self.child(e.ino) {
                    Ok(inode) => entry = Some(entry_out(&self.fs, &inode, &self.opts)),
                    Err(x) => {
                        err = Some(x);
                        return false;
                    }
                }
            }
            let head = if plus { std::mem::size_of::<fuse_entry_out>() } else { 0 };
            let len = (head + std::mem::size_of::<fuse_dirent>() + e.name.len()).next_multiple_of(8);
            if out.body_len() + len > limit {
                return false;
            }
            if plus {
                match &entry {
                    Some(en) => {
                        out.push(en);
                        self.nodes.add_lookup(&self.fs, e.ino);
                    }
                    // "." and ".." carry node id 0: the client takes no reference.
                    None => out.push(&fuse_entry_out::default()),
                }
            }
            out.push_bytes(dirent.as_bytes());
            out.push_bytes(&e.name);
            out.pad8();
            true
        })?;
        match err {
            // Entries already in the reply were counted; report the
            // broken one only if nothing could be returned.
            Some(e) if out.body_len() == start => Err(e),
            _ => Ok(()),
        }
    }
}
