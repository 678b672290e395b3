//! Namespace operations: create (regular files, devices, FIFOs, sockets),
//! mkdir, symlink, link, unlink, rmdir and rename. Each is one handle, so
//! each is atomic in the journal; link counts follow dir_nlink rules.

use crate::disk::dir_entry::file_type_code;
use crate::disk::features::{Incompat, RoCompat};
use crate::disk::inode::{
    FL_EXTENTS, FileType, GOOD_OLD_INODE_SIZE, Inode, RawInode, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, Timestamp,
};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::data::write::{now, set_size, touch_ctime, touch_mtime};
use crate::fs::inode::setattr::{INHERITED_FLAGS, flags_for_type};
use crate::fs::map::extent_tree::init_root;
use crate::journal::transaction::Handle;

/// Largest link count before dir_nlink makes a directory's count 1 ("many").
const LINK_MAX: u16 = 65000;
/// Longest symlink target (a block at most, like the kernel's PATH_MAX bound).
const SYMLINK_MAX: usize = 4095;

/// Who creates an inode and with which mode (file type bits included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewInode {
    /// Mode with the file type bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for character and block devices (Linux dev_t encoding).
    pub rdev: u32,
    /// POSIX ACL creation semantics: `Some(umask)` applies the parent's
    /// default ACL, or this umask when it has none, as an ACL-enabled
    /// kernel mount does ([`Ext4::inherit_acls_in`]); `None` creates the
    /// inode with `mode` exactly.
    pub umask: Option<u16>,
}

/// How rename treats an existing target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// Fail with [`Error::Exists`] if the target exists (RENAME_NOREPLACE).
    pub noreplace: bool,
    /// Swap source and target, which must both exist (RENAME_EXCHANGE).
    pub exchange: bool,
    /// Leave a whiteout (a character device 0:0 with no permission bits,
    /// owned by this uid and gid) under the old name (RENAME_WHITEOUT, for
    /// overlayfs). Not with `exchange`.
    pub whiteout: Option<(u32, u32)>,
}

fn encode_rdev(block: &mut [u8; 60], rdev: u32) {
    let (major, minor) = ((rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00));
    block.fill(0);
    if major < 256 && minor < 256 {
        // Old encoding, as the kernel writes small numbers.
        block[..4].copy_from_slice(&((major << 8) | minor).to_le_bytes());
    } else {
        let new = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        block[4..8].copy_from_slice(&new.to_le_bytes());
    }
}

impl Ext4 {
    /// Builds a fresh in-memory inode record for `ino`.
    fn fresh_inode(&self, h: &Handle<'_>, ino: u32, attr: &NewInode, t: Timestamp) -> Result<Inode> {
        let old = self.read_inode_in(h, ino).ok();
        let sb = self.superblock();
        let isz = self.geometry().inode_size as usize;
        let mut bytes = vec![0u8; isz];
        let extra = if isz > GOOD_OLD_INODE_SIZE {
            let want = if sb.want_extra_isize != 0 { sb.want_extra_isize } else { 32 };
            (want as usize).min(isz - GOOD_OLD_INODE_SIZE).min(RawInode::SIZE - GOOD_OLD_INODE_SIZE) as u16 & !3
        } else {
            0
        };
        if isz > GOOD_OLD_INODE_SIZE {
            bytes[GOOD_OLD_INODE_SIZE..GOOD_OLD_INODE_SIZE + 2].copy_from_slice(&extra.to_le_bytes());
        }
        let mut inode = Inode::parse(ino, &bytes, None)?;
        let (s, x) = t.encode();
        let raw = &mut inode.raw;
        raw.mode = attr.mode;
        raw.uid_lo = attr.uid as u16;
        raw.uid_hi = (attr.uid >> 16) as u16;
        raw.gid_lo = attr.gid as u16;
        raw.gid_hi = (attr.gid >> 16) as u16;
        raw.links_count = 1;
        (raw.atime, raw.ctime, raw.mtime, raw.crtime) = (s, s, s, s);
        (raw.atime_extra, raw.ctime_extra, raw.mtime_extra, raw.crtime_extra) = (x, x, x, x);
        raw.extra_isize = extra;
        // A new generation for every reuse of the inode number.
        raw.generation = old.map_or(0, |o| o.generation()).wrapping_add(1).wrapping_add(t.nsecs);
        match FileType::from_mode(attr.mode) {
            Some(FileType::Regular | FileType::Directory) => {
                if sb.incompat().has(Incompat::EXTENTS) {
                    raw.flags |= FL_EXTENTS;
                    init_root(&mut raw.block);
                }
            }
            Some(FileType::CharDevice | FileType::BlockDevice) => encode_rdev(&mut raw.block, attr.rdev),
            Some(_) => {}
            None => return Err(Error::InvalidArgument(format!("mode {:o} has no file type", attr.mode))),
        }
        Ok(inode)
    }

    fn parent_dir_in(&self, h: &Handle<'_>, parent: u32) -> Result<Inode> {
        let dir = self.read_inode_in(h, parent)?;
        if !dir.is_dir() {
            return Err(Error::NotADirectory(parent));
        }
        if dir.links_count() == 0 {
            return Err(Error::NotFound);
        }
        Ok(dir)
    }

    /// The common start of every creation inside `h`: the parent must be a
    /// live directory without `name`; a new inode is allocated and given a
    /// fresh record. Returns (parent, new inode, creation time).
    fn start_create(
        &self,
        h: &mut Handle<'_>,
        parent: u32,
        name: &[u8],
        attr: &NewInode,
        is_dir: bool,
    ) -> Result<(Inode, Inode, Timestamp)> {
        let dir = self.parent_dir_in(h, parent)?;
        if self.find_entry_in(h, &dir, name)?.is_some() {
            return Err(Error::Exists);
        }
        if is_dir && dir.links_count() >= LINK_MAX && !self.superblock().ro_compat().has(RoCompat::DIR_NLINK) {
            return Err(Error::TooManyLinks(parent));
        }
        let t = now();
        let ino = self.alloc_inode(h, parent, is_dir)?;
        let mut inode = self.fresh_inode(h, ino, attr, t)?;
        inherit_flags(&dir, &mut inode);
        Ok((dir, inode, t))
    }

    /// Applies the parent's default ACL or the umask when `attr` asks for
    /// ACL semantics; after the inode's own structure (a directory's first
    /// block) exists, since an inherited ACL may need an xattr block.
    fn inherit_acls(&self, h: &mut Handle<'_>, dir: &Inode, inode: &mut Inode, attr: &NewInode) -> Result<()> {
        match attr.umask {
            Some(umask) => self.inherit_acls_in(h, dir, inode, umask),
            None => Ok(()),
        }
    }

    /// Creates a regular file, device node, FIFO or socket `name` in
    /// directory `parent`. With inline_data, a regular file's first write
    /// decides whether it is stored inline, as the kernel's does
    /// ([`Ext4::write`]).
    pub fn create(&self, parent: u32, name: &[u8], attr: NewInode) -> Result<Inode> {
        match FileType::from_mode(attr.mode) {
            Some(FileType::Directory) => return self.mkdir(parent, name, attr),
            Some(FileType::Symlink) | None => {
                return Err(Error::InvalidArgument(format!("create with mode {:o}", attr.mode)));
            }
            _ => {}
        }
        let mut h = self.begin()?;
        let (mut dir, mut inode, t) = self.start_create(&mut h, parent, name, &attr, false)?;
        let ino = inode.ino;
        self.inherit_acls(&mut h, &dir, &mut inode, &attr)?;
        self.write_inode(&mut h, &mut inode)?;
        self.note_new_file(&inode);
        let ft = inode.file_type().map(file_type_code).unwrap_or(0);
        self.add_entry(&mut h, &mut dir, name, ino, ft)?;
        touch_mtime(&mut dir, t);
        self.write_inode(&mut h, &mut dir)?;
        h.finish();
        Ok(inode)
    }

    /// Creates directory `name` in `parent`.
    pub fn mkdir(&self, parent: u32, name: &[u8], attr: NewInode) -> Result<Inode> {
        let attr = NewInode { mode: S_IFDIR | (attr.mode & !S_IFMT), ..attr };
        let mut h = self.begin()?;
        let (mut dir, mut inode, t) = self.start_create(&mut h, parent, name, &attr, true)?;
        let ino = inode.ino;
        inode.raw.links_count = 2;
        self.new_directory(&mut h, &mut inode, parent)?;
        self.inherit_acls(&mut h, &dir, &mut inode, &attr)?;
        self.write_inode(&mut h, &mut inode)?;
        self.add_entry(&mut h, &mut dir, name, ino, crate::disk::dir_entry::FT_DIR)?;
        // ".." of the child links the parent; past LINK_MAX dir_nlink says 1.
        adjust_links(&mut dir, 1);
        touch_mtime(&mut dir, t);
        self.write_inode(&mut h, &mut dir)?;
        h.finish();
        Ok(inode)
    }

    /// Creates symbolic link `name` in `parent` pointing at `target`: fast
    /// (in the inode) below 60 bytes, else in a data block written before
    /// the handle that maps it (allocate → write → set_blocks).
    pub fn symlink(&self, parent: u32, name: &[u8], target: &[u8], uid: u32, gid: u32) -> Result<Inode> {
        if target.is_empty() || target.len() > SYMLINK_MAX.min(self.block_size() as usize - 1) || target.contains(&0) {
            return Err(Error::InvalidArgument("symlink target must be 1..4095 bytes without NUL".into()));
        }
        let attr = NewInode { mode: S_IFLNK | 0o777, uid, gid, rdev: 0, umask: None };
        let reservation = if target.len() >= 60 {
            let r = self.allocate(self.data_goal(parent, false), 1)?;
            self.write_reserved(&r, target)?;
            Some(r)
        } else {
            None
        };
        let mut h = self.begin()?;
        let (mut dir, mut inode, t) = self.start_create(&mut h, parent, name, &attr, false)?;
        let ino = inode.ino;
        match reservation {
            None => {
                inode.raw.block[..target.len()].copy_from_slice(target);
                set_size(&mut inode, target.len() as u64);
                self.write_inode(&mut h, &mut inode)?;
            }
            Some(r) => {
                if self.superblock().incompat().has(Incompat::EXTENTS) {
                    inode.raw.flags |= FL_EXTENTS;
                    init_root(&mut inode.raw.block);
                }
                set_size(&mut inode, target.len() as u64);
                self.set_blocks(&mut h, &mut inode, 0, r, false)?;
            }
        }
        self.add_entry(&mut h, &mut dir, name, ino, crate::disk::dir_entry::FT_SYMLINK)?;
        touch_mtime(&mut dir, t);
        self.write_inode(&mut h, &mut dir)?;
        h.finish();
        Ok(inode)
    }

    /// Creates a regular file without a name (O_TMPFILE) for directory
    /// `parent`: allocated near it, with no links, on the orphan list and
    /// held open once for the caller ([`Ext4::close_inode`] frees it unless
    /// [`Ext4::link`] named it first). One handle.
    pub fn tmpfile(&self, parent: u32, attr: NewInode) -> Result<Inode> {
        if FileType::from_mode(attr.mode) != Some(FileType::Regular) {
            return Err(Error::InvalidArgument(format!("tmpfile with mode {:o}", attr.mode)));
        }
        let mut h = self.begin()?;
        let dir = self.parent_dir_in(&h, parent)?;
        let ino = self.alloc_inode(&mut h, parent, false)?;
        let mut inode = self.fresh_inode(&h, ino, &attr, now())?;
        inherit_flags(&dir, &mut inode);
        self.inherit_acls(&mut h, &dir, &mut inode, &attr)?;
        self.note_new_file(&inode);
        inode.raw.links_count = 0;
        self.orphan_new_in(&mut h, &mut inode)?;
        h.finish();
        Ok(inode)
    }

    /// Adds hard link `name` in `parent` to inode `ino` (not a directory).
    pub fn link(&self, ino: u32, parent: u32, name: &[u8]) -> Result<Inode> {
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        if inode.is_dir() {
            return Err(Error::IsADirectory(ino));
        }
        if inode.links_count() == 0 {
            // Only an open orphan (an O_TMPFILE file) can get a name back.
            self.unorphan_in(&mut h, &mut inode)?;
        }
        if inode.links_count() >= LINK_MAX {
            return Err(Error::TooManyLinks(ino));
        }
        let mut dir = self.parent_dir_in(&h, parent)?;
        let t = now();
        let ft = inode.file_type().map(file_type_code).unwrap_or(0);
        self.add_entry(&mut h, &mut dir, name, ino, ft)?;
        inode.raw.links_count += 1;
        touch_ctime(&mut inode, t);
        self.write_inode(&mut h, &mut inode)?;
        touch_mtime(&mut dir, t);
        self.write_inode(&mut h, &mut dir)?;
        h.finish();
        Ok(inode)
    }

    /// Removes `name` (not a directory) from `parent`; frees the inode when
    /// that was its last link, or orphans it while it is open
    /// ([`Ext4::open_inode`]).
    pub fn unlink(&self, parent: u32, name: &[u8]) -> Result<()> {
        self.remove_name(parent, name, false)
    }

    /// Removes empty directory `name` from `parent`.
    pub fn rmdir(&self, parent: u32, name: &[u8]) -> Result<()> {
        self.remove_name(parent, name, true)
    }

    fn remove_name(&self, parent: u32, name: &[u8], want_dir: bool) -> Result<()> {
        if name == b"." || name == b".." {
            return Err(Error::InvalidArgument("cannot remove . or ..".into()));
        }
        let mut h = self.begin()?;
        let mut dir = self.parent_dir_in(&h, parent)?;
        let entry = self.find_entry_in(&h, &dir, name)?.ok_or(Error::NotFound)?;
        let mut inode = self.read_inode_in(&h, entry.ino)?;
        if inode.is_dir() != want_dir {
            return Err(if want_dir { Error::NotADirectory(entry.ino) } else { Error::IsADirectory(entry.ino) });
        }
        if want_dir && !self.dir_is_empty_in(&h, &inode)? {
            return Err(Error::NotEmpty(entry.ino));
        }
        let t = now();
        self.remove_entry(&mut h, &mut dir, name)?;
        if want_dir {
            if dir.raw.links_count > 2 {
                dir.raw.links_count -= 1;
            }
            inode.raw.links_count = 0;
        } else {
            inode.raw.links_count = inode.raw.links_count.saturating_sub(1);
        }
        touch_mtime(&mut dir, t);
        self.write_inode(&mut h, &mut dir)?;
        touch_ctime(&mut inode, t);
        if inode.raw.links_count == 0 {
            self.release_inode_in(&mut h, &mut inode, t)?;
        } else {
            self.write_inode(&mut h, &mut inode)?;
        }
        h.finish();
        Ok(())
    }

    /// Releases everything an inode owns (blocks, xattrs) and the inode
    /// itself, inside `h`.
    pub fn free_inode_in(&self, h: &mut Handle<'_>, inode: &mut Inode, t: Timestamp) -> Result<()> {
        let was_dir = inode.is_dir();
        let fast_symlink = inode.is_symlink()
            && !inode.has_flag(FL_EXTENTS)
            && inode.size() < 60
            && inode.blocks_512(false, self.block_size()) == 0;
        if !fast_symlink
            && !matches!(
                inode.file_type(),
                Some(FileType::CharDevice | FileType::BlockDevice | FileType::Fifo | FileType::Socket)
            )
        {
            self.unmap_blocks_in(h, inode, 0, u64::MAX)?;
        }
        self.release_xattr_block(h, inode)?;
        self.may_inline().remove(&inode.ino);
        self.atimes.forget(inode.ino);
        self.dax_inode_freed(inode.ino);
        inode.raw.links_count = 0;
        inode.raw.dtime = t.secs as u32;
        set_size(inode, 0);
        self.write_inode(h, inode)?;
        self.free_inode(h, inode.ino, was_dir)
    }

    /// Renames `old_name` in `old_parent` to `new_name` in `new_parent`,
    /// replacing a compatible target (a file over a file, an empty
    /// directory over a directory), or failing per `flags`.
    pub fn rename(
        &self,
        old_parent: u32,
        old_name: &[u8],
        new_parent: u32,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        if flags.exchange && (flags.noreplace || flags.whiteout.is_some()) {
            return Err(Error::InvalidArgument("RENAME_EXCHANGE with RENAME_NOREPLACE or RENAME_WHITEOUT".into()));
        }
        for n in [old_name, new_name] {
            if n == b"." || n == b".." {
                return Err(Error::InvalidArgument("cannot rename . or ..".into()));
            }
        }
        let mut h = self.begin()?;
        let t = now();
        let mut odir = self.parent_dir_in(&h, old_parent)?;
        let src = self.find_entry_in(&h, &odir, old_name)?.ok_or(Error::NotFound)?;
        let mut ndir = if new_parent == old_parent { odir.clone() } else { self.parent_dir_in(&h, new_parent)? };
        let dst = self.find_entry_in(&h, &ndir, new_name)?;
        if old_parent == new_parent && old_name == new_name {
            return Ok(());
        }
        let mut sinode = self.read_inode_in(&h, src.ino)?;
        // A directory may not move below itself.
        if sinode.is_dir() && new_parent != old_parent && self.is_ancestor_in(&h, src.ino, new_parent)? {
            return Err(Error::InvalidArgument("cannot move a directory below itself".into()));
        }
        let sft = sinode.file_type().map(file_type_code).unwrap_or(0);
        if flags.exchange {
            let dst = dst.ok_or(Error::NotFound)?;
            let mut dinode = self.read_inode_in(&h, dst.ino)?;
            if dinode.is_dir() && old_parent != new_parent && self.is_ancestor_in(&h, dst.ino, old_parent)? {
                return Err(Error::InvalidArgument("cannot move a directory below itself".into()));
            }
            let dft = dinode.file_type().map(file_type_code).unwrap_or(0);
            self.set_entry(&mut h, &mut ndir, new_name, src.ino, sft)?;
            if old_parent == new_parent {
                odir = ndir.clone();
            }
            self.set_entry(&mut h, &mut odir, old_name, dst.ino, dft)?;
            if old_parent != new_parent {
                if sinode.is_dir() {
                    self.set_entry(&mut h, &mut sinode, b"..", new_parent, crate::disk::dir_entry::FT_DIR)?;
                }
                if dinode.is_dir() {
                    self.set_entry(&mut h, &mut dinode, b"..", old_parent, crate::disk::dir_entry::FT_DIR)?;
                }
                let delta = sinode.is_dir() as i32 - dinode.is_dir() as i32;
                adjust_links(&mut ndir, delta);
                adjust_links(&mut odir, -delta);
            }
            touch_ctime(&mut dinode, t);
            self.write_inode(&mut h, &mut dinode)?;
        } else {
            if let Some(dst) = &dst {
                if flags.noreplace {
                    return Err(Error::Exists);
                }
                if dst.ino == src.ino {
                    // Both names link the same inode: POSIX says do nothing.
                    return Ok(());
                }
                let mut dinode = self.read_inode_in(&h, dst.ino)?;
                match (sinode.is_dir(), dinode.is_dir()) {
                    (true, false) => return Err(Error::NotADirectory(dst.ino)),
                    (false, true) => return Err(Error::IsADirectory(dst.ino)),
                    (true, true) if !self.dir_is_empty_in(&h, &dinode)? => return Err(Error::NotEmpty(dst.ino)),
                    _ => {}
                }
                self.set_entry(&mut h, &mut ndir, new_name, src.ino, sft)?;
                if dinode.is_dir() {
                    dinode.raw.links_count = 0;
                    adjust_links(&mut ndir, -1);
                } else {
                    dinode.raw.links_count = dinode.raw.links_count.saturating_sub(1);
                }
                touch_ctime(&mut dinode, t);
                if dinode.raw.links_count == 0 {
                    self.release_inode_in(&mut h, &mut dinode, t)?;
                } else {
                    self.write_inode(&mut h, &mut dinode)?;
                }
            } else {
                self.add_entry(&mut h, &mut ndir, new_name, src.ino, sft)?;
            }
            if old_parent == new_parent {
                odir = ndir.clone();
            }
            match flags.whiteout {
                Some((uid, gid)) => {
                    let wh = self.new_whiteout(&mut h, &odir, uid, gid, t)?;
                    self.set_entry(&mut h, &mut odir, old_name, wh, crate::disk::dir_entry::FT_CHRDEV)?;
                }
                None => {
                    self.remove_entry(&mut h, &mut odir, old_name)?;
                }
            }
            if old_parent == new_parent {
                ndir = odir.clone();
            }
            if sinode.is_dir() && old_parent != new_parent {
                self.set_entry(&mut h, &mut sinode, b"..", new_parent, crate::disk::dir_entry::FT_DIR)?;
                adjust_links(&mut odir, -1);
                adjust_links(&mut ndir, 1);
            }
        }
        touch_ctime(&mut sinode, t);
        self.write_inode(&mut h, &mut sinode)?;
        touch_mtime(&mut odir, t);
        self.write_inode(&mut h, &mut odir)?;
        if old_parent != new_parent {
            touch_mtime(&mut ndir, t);
            self.write_inode(&mut h, &mut ndir)?;
        }
        h.finish();
        Ok(())
    }

    /// Allocates and writes a whiteout inode for directory `dir` inside
    /// `h`: a character device 0:0 with mode bits 0 (the VFS's
    /// `WHITEOUT_MODE` and `WHITEOUT_DEV`). Returns its number; the caller
    /// links it.
    fn new_whiteout(&self, h: &mut Handle<'_>, dir: &Inode, uid: u32, gid: u32, t: Timestamp) -> Result<u32> {
        let attr = NewInode { mode: S_IFCHR, uid, gid, rdev: 0, umask: None };
        let ino = self.alloc_inode(h, dir.ino, false)?;
        let mut inode = self.fresh_inode(h, ino, &attr, t)?;
        inherit_flags(dir, &mut inode);
        self.write_inode(h, &mut inode)?;
        Ok(ino)
    }

    /// Whether directory `ancestor` is `dir` or one of its ancestors, as `h`
    /// sees the tree (bounded walk up through "..").
    fn is_ancestor_in(&self, h: &Handle<'_>, ancestor: u32, mut dir: u32) -> Result<bool> {
        for _ in 0..65536 {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == crate::disk::inode::ROOT_INO {
                return Ok(false);
            }
            let d = self.read_inode_in(h, dir)?;
            dir = self.find_entry_in(h, &d, b"..")?.ok_or(Error::NotFound)?.ino;
        }
        Err(Error::corrupt("directory", Location::Inode(dir), "\"..\" chain does not reach the root"))
    }
}

/// Gives a new inode the flags of its directory that new inodes inherit
/// ([`INHERITED_FLAGS`], kept per type), as the kernel's `__ext4_new_inode`.
fn inherit_flags(dir: &Inode, inode: &mut Inode) {
    inode.raw.flags |= flags_for_type(inode.file_type(), dir.flags() & INHERITED_FLAGS);
}

/// Changes a directory's link count for a subdirectory gained (+1) or lost
/// (-1), with dir_nlink's "1 means many" rule.
fn adjust_links(dir: &mut Inode, delta: i32) {
    let n = dir.raw.links_count;
    dir.raw.links_count = match delta {
        d if d > 0 => {
            if n == 1 || n >= LINK_MAX - 1 {
                1
            } else {
                n + 1
            }
        }
        d if d < 0 => {
            if n <= 2 {
                n.clamp(1, 2)
            } else {
                n - 1
            }
        }
        _ => n,
    };
}
