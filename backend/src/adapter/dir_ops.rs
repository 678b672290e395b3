//! Directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR. Offsets are the
//! core's stable readdir cookies, so a listing resumes correctly across
//! requests even while entries are added or removed.

use super::Ext4Fs;
use super::access::{self, Caller, MAY_READ};
use super::attr::{dirent_type, entry_out};
use super::errno::{Errno, FsResult};
use super::nodes::node_of;
use crate::fuse::wire::ReplyBuf;
use ext4::{Inode, Timestamp};
use fuse_abi::linux::{fuse_dirent, fuse_entry_out, fuse_open_out};
use zerocopy::IntoBytes;

impl Ext4Fs {
    /// OPENDIR.
    pub fn opendir(&self, caller: &Caller<'_>, node: u64, flags: u32) -> FsResult<fuse_open_out> {
        let dir = self.dir(node)?;
        access::check(&self.fs, &dir, caller, MAY_READ)?;
        self.fs.open_inode(dir.ino);
        self.register_handle(dir.ino, flags, true)
    }

    /// RELEASEDIR.
    pub fn releasedir(&self, node: u64, fh: u64) -> FsResult<()> {
        let ino = self.nodes.inode_of(node)?;
        let h = self.handles.remove(fh, ino, true)?;
        Ok(self.fs.close_inode(h.ino)?)
    }

    /// READDIR / READDIRPLUS from cookie `offset`, filling at most `size`
    /// bytes of the reply. With `plus` every entry but "." and ".." comes
    /// with its attributes and counts as a lookup — each entry all or
    /// nothing: the lookup is counted exactly when the entry is in the
    /// reply. An entry that fails (or a directory block that does) after
    /// the first ends the reply early; only a reply that would be empty
    /// fails.
    pub fn readdir(&self, node: u64, fh: u64, offset: u64, size: u32, plus: bool, out: &mut ReplyBuf) -> FsResult<()> {
        let dir = self.dir(node)?;
        self.handles.get(fh, dir.ino, true)?;
        let start = out.body_len();
        let limit = start + size as usize;
        // Inodes changed since (about) now may be numbers reused after the
        // entry was read: those are checked again once referenced.
        let recent = Timestamp::now().secs - 1;
        let mut err = None;
        let walked = self.fs.read_dir(&dir, offset, &mut |e, next| {
            let dirent = fuse_dirent {
                ino: e.ino as u64,
                off: next,
                namelen: e.name.len() as u32,
                type_: dirent_type(e.file_type),
                name: Default::default(),
            };
            let dot = e.name == b"." || e.name == b"..";
            let head = if plus { std::mem::size_of::<fuse_entry_out>() } else { 0 };
            let len = (head + std::mem::size_of::<fuse_dirent>() + e.name.len()).next_multiple_of(8);
            if out.body_len() + len > limit {
                return false;
            }
            if plus {
                // "." and ".." carry node id 0, and so does an entry whose
                // inode changed under us: the client takes no reference.
                let mut entry = fuse_entry_out::default();
                if !dot {
                    match self.child(e.ino) {
                        Ok(inode) => {
                            self.nodes.add_lookup(&self.fs, e.ino);
                            match self.still_named(&dir, &e.name, &inode, recent) {
                                Ok(Some(fresh)) => entry = entry_out(&self.fs, &fresh, &self.opts),
                                Ok(None) => self.nodes.forget(&self.fs, node_of(e.ino), 1),
                                Err(x) => {
                                    self.nodes.forget(&self.fs, node_of(e.ino), 1);
                                    err = Some(x);
                                    return false;
                                }
                            }
                        }
                        Err(x) => {
                            err = Some(x);
                            return false;
                        }
                    }
                }
                out.push(&entry);
            }
            out.push_bytes(dirent.as_bytes());
            out.push_bytes(&e.name);
            out.pad8();
            true
        });
        let err = walked.err().map(Errno::from).or(err);
        match err {
            // Entries already in the reply were counted and stay: the reply
            // ends before the broken one. Only an empty reply fails.
            Some(e) if out.body_len() == start => Err(e),
            Some(e) => {
                log::warn!("READDIRPLUS of inode {} ends early: {e:?}", dir.ino);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// For READDIRPLUS, with a reference on `inode` held: the inode as it
    /// is now if `name` in `dir` still leads to it with the same generation,
    /// `None` if not. Only inodes changed after `recent` (seconds) can be
    /// numbers reused since the entry was read; older ones are taken as read.
    fn still_named(&self, dir: &Inode, name: &[u8], inode: &Inode, recent: i64) -> FsResult<Option<Inode>> {
        if inode.ctime().secs < recent {
            return Ok(Some(inode.clone()));
        }
        let now = self.fs.read_inode(inode.ino)?;
        let same = now.generation() == inode.generation()
            && now.file_type().is_some()
            && self.name_leads_to(dir.ino, name, inode.ino)?;
        Ok(same.then_some(now))
    }
}
