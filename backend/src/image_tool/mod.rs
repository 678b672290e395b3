//! `ext4-virtiofsd image ...`: offline tools that read an image without
//! mounting it, with output a person can compare with debugfs.

mod format;

use crate::cli::ImageCommand;
use ext4::disk::inode::{S_IFDIR, S_IFREG};
use ext4::fs::dir::namespace::{NewInode, RenameFlags};
use ext4::{Ext4, FileType, Inode, OpenOptions};
use format::{escape, full_date, hex, mode_string, short_date, type_name};
use std::io::{self, Write};
use std::path::Path;

/// Errors of the image tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The ext4 core refused or failed.
    #[error("{path}: {source}")]
    Ext4 {
        /// Image path, or path inside the image.
        path: String,
        /// The core's error.
        #[source]
        source: ext4::Error,
    },
    /// The image is locked by another process (the message names it).
    #[error("{0}")]
    Locked(#[source] ext4::Error),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
    /// A command-line value is malformed.
    #[error("{0}")]
    Usage(String),
}

type Result<T> = std::result::Result<T, ToolError>;

fn ctx<T>(path: &str, r: ext4::Result<T>) -> Result<T> {
    r.map_err(|source| ToolError::Ext4 { path: path.to_string(), source })
}

/// Opens `image`, locked ([`ext4::io::image_lock`]): shared when
/// `read_only`, exclusive otherwise.
fn open_image(image: &Path, read_only: bool) -> Result<Ext4> {
    match Ext4::open(image, &OpenOptions { read_only, ..Default::default() }) {
        Err(e @ ext4::Error::ImageLocked { .. }) => Err(ToolError::Locked(e)),
        r => ctx(&image.display().to_string(), r),
    }
}

fn open(image: &Path) -> Result<Ext4> {
    // Read-only: inspecting never changes the image; a journal that needs
    // recovery is replayed in memory.
    open_image(image, true)
}

/// Opens `image` writable, runs `f`, then writes everything home and closes
/// the image cleanly (journal checkpointed, needs_recovery cleared).
fn modify(image: &Path, f: impl FnOnce(&Ext4) -> Result<()>) -> Result<()> {
    let shown = image.display().to_string();
    let fs = open_image(image, false)?;
    let r = f(&fs);
    let closed = ctx(&shown, fs.close());
    r.and(closed)
}

fn setattr(fs: &Ext4, path: &str, attr: &ext4::fs::inode::setattr::SetAttr) -> Result<()> {
    let (ino, _) = resolve(fs, path)?;
    ctx(path, fs.setattr(ino, attr)).map(|_| ())
}

fn map(fs: &Ext4, path: &str, offset: u64, len: Option<u64>, write: bool, out: &mut impl Write) -> Result<()> {
    let (ino, inode) = resolve(fs, path)?;
    let len = len.unwrap_or_else(|| inode.size().saturating_sub(offset).max(1));
    let m = ctx(path, fs.map_for_dax(ino, offset, len, write))?;
    writeln!(
        out,
        "{path}: inode {ino}, {} mapping of {len} bytes at offset {offset}",
        if write { "writable" } else { "read-only" }
    )?;
    writeln!(out, "{:>4} {:>14} {:>14} {:>12}", "ext", "file offset", "image offset", "length")?;
    for (i, p) in m.pieces.iter().enumerate() {
        match *p {
            ext4::fs::data::dax::DaxPiece::Image { file_offset, image_offset, len } => {
                writeln!(out, "{i:>4} {file_offset:>14} {image_offset:>14} {len:>12}")?
            }
            ext4::fs::data::dax::DaxPiece::Zero { file_offset, len } => {
                writeln!(out, "{i:>4} {file_offset:>14} {:>14} {len:>12}", "zero")?
            }
        }
    }
    fs.release_dax(m.id);
    Ok(())
}

/// A setfattr value: `0x...` hex or text.
fn parse_value(v: &str) -> Result<Vec<u8>> {
    match v.strip_prefix("0x") {
        Some(hex) if hex.len() % 2 == 0 => (0..hex.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| ToolError::Usage(format!("bad hex value {v:?}")))
            })
            .collect(),
        Some(_) => Err(ToolError::Usage(format!("bad hex value {v:?}"))),
        None => Ok(v.as_bytes().to_vec()),
    }
}

fn parse_mode(mode: &str) -> Result<u16> {
    u16::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| ToolError::Usage(format!("mode {mode:?} is not octal permission bits")))
}

/// The parent directory's inode and the last component of `path`.
fn split_parent<'p>(fs: &Ext4, path: &'p str) -> Result<(u32, &'p str)> {
    let trimmed = path.trim_end_matches('/');
    let (dir, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    if name.is_empty() || name == "." || name == ".." {
        return Err(ToolError::Usage(format!("{path:?} names no entry")));
    }
    let dir = if dir.is_empty() { "/" } else { dir };
    let (ino, inode) = resolve(fs, dir)?;
    if !inode.is_dir() {
        return ctx(dir, Err(ext4::Error::NotADirectory(ino)));
    }
    Ok((ino, name))
}

/// Creates or replaces the regular file at `path` with `data`.
fn put(fs: &Ext4, path: &str, data: &[u8]) -> Result<()> {
    let ino = match fs.resolve_path(path.as_bytes(), true) {
        Ok(ino) => {
            ctx(path, fs.truncate(ino, 0))?;
            ino
        }
        Err(ext4::Error::NotFound) => {
            let (parent, name) = split_parent(fs, path)?;
            let attr = NewInode { mode: S_IFREG | 0o644, uid: 0, gid: 0, rdev: 0, umask: None };
            ctx(path, fs.create(parent, name.as_bytes(), attr))?.ino
        }
        Err(e) => return ctx(path, Err(e)),
    };
    let mut off = 0;
    while off < data.len() {
        let n = ctx(path, fs.write(ino, off as u64, &data[off..]))?;
        off += n;
    }
    Ok(())
}

fn parse_owner(s: &str) -> Result<(u32, Option<u32>)> {
    let bad = || ToolError::Usage(format!("owner {s:?} is not UID[:GID]"));
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u.parse().map_err(|_| bad())?;
    let gid = g.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((uid, gid))
}

fn get(fs: &Ext4, path: &str, dest: &Path) -> Result<()> {
    let mut file = std::fs::File::create(dest)?;
    cat(fs, path, &mut file)?;
    file.sync_all()?;
    Ok(())
}

fn resolve(fs: &Ext4, path: &str) -> Result<(u32, Inode)> {
    let ino = ctx(path, fs.resolve_path(path.as_bytes(), false))?;
    let inode = ctx(path, fs.read_live_inode(ino))?;
    Ok((ino, inode))
}

/// Runs one `image` subcommand, writing to standard output.
pub fn run(cmd: ImageCommand) -> Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let r = match cmd {
        ImageCommand::Ls { image, path } => ls(&open(&image)?, &path, &mut out),
        ImageCommand::Stat { image, path } => stat(&open(&image)?, &path, &mut out),
        ImageCommand::Cat { image, path } => cat(&open(&image)?, &path, &mut out),
        ImageCommand::Readlink { image, path } => {
            let fs = open(&image)?;
            let (_, inode) = resolve(&fs, &path)?;
            let target = ctx(&path, fs.read_link(&inode))?;
            out.write_all(&target)?;
            out.write_all(b"\n")?;
            Ok(())
        }
        ImageCommand::Getfattr { image, path, name, hex } => {
            getfattr(&open(&image)?, &path, name.as_deref(), hex, &mut out)
        }
        ImageCommand::Tree { image, path } => tree(&open(&image)?, &path, &mut out),
        ImageCommand::Get { image, path, dest } => get(&open(&image)?, &path, &dest),
        ImageCommand::Put { image, source, path } => {
            let data = std::fs::read(&source).map_err(ToolError::Output)?;
            modify(&image, |fs| put(fs, &path, &data))
        }
        ImageCommand::Mkdir { image, path, mode } => {
            let mode = parse_mode(&mode)?;
            modify(&image, |fs| {
                let (parent, name) = split_parent(fs, &path)?;
                let attr = NewInode { mode: S_IFDIR | mode, uid: 0, gid: 0, rdev: 0, umask: None };
                ctx(&path, fs.mkdir(parent, name.as_bytes(), attr)).map(|_| ())
            })
        }
        ImageCommand::Rm { image, path } => modify(&image, |fs| {
            let (_, inode) = resolve(fs, &path)?;
            let (parent, name) = split_parent(fs, &path)?;
            if inode.is_dir() {
                ctx(&path, fs.rmdir(parent, name.as_bytes()))
            } else {
                ctx(&path, fs.unlink(parent, name.as_bytes()))
            }
        }),
        ImageCommand::Mv { image, from, to } => modify(&image, |fs| {
            let (op, on) = split_parent(fs, &from)?;
            let (np, nn) = split_parent(fs, &to)?;
            ctx(&from, fs.rename(op, on.as_bytes(), np, nn.as_bytes(), RenameFlags::default()))
        }),
        ImageCommand::Ln { image, target, path } => modify(&image, |fs| {
            let (ino, _) = resolve(fs, &target)?;
            let (parent, name) = split_parent(fs, &path)?;
            ctx(&path, fs.link(ino, parent, name.as_bytes())).map(|_| ())
        }),
        ImageCommand::Symlink { image, target, path } => modify(&image, |fs| {
            let (parent, name) = split_parent(fs, &path)?;
            ctx(&path, fs.symlink(parent, name.as_bytes(), target.as_bytes(), 0, 0)).map(|_| ())
        }),
        ImageCommand::Chmod { image, mode, path } => {
            let mode = parse_mode(&mode)?;
            modify(&image, |fs| {
                setattr(fs, &path, &ext4::fs::inode::setattr::SetAttr { mode: Some(mode), ..Default::default() })
            })
        }
        ImageCommand::Chown { image, owner, path } => {
            let (uid, gid) = parse_owner(&owner)?;
            modify(&image, |fs| {
                setattr(fs, &path, &ext4::fs::inode::setattr::SetAttr { uid: Some(uid), gid, ..Default::default() })
            })
        }
        ImageCommand::Map { image, path, offset, len, write } => {
            modify(&image, |fs| map(fs, &path, offset, len, write, &mut out))
        }
        ImageCommand::Setfattr { image, path, name, value, remove } => modify(&image, |fs| {
            let (ino, _) = resolve(fs, &path)?;
            if remove {
                ctx(&path, fs.removexattr(ino, name.as_bytes()))
            } else {
                let bytes = parse_value(&value)?;
                ctx(&path, fs.setxattr(ino, name.as_bytes(), &bytes, ext4::fs::xattr::write::SetMode::Any))
            }
        }),
        ImageCommand::Truncate { image, path, size } => modify(&image, |fs| {
            setattr(fs, &path, &ext4::fs::inode::setattr::SetAttr { size: Some(size), ..Default::default() })
        }),
    };
    match r.and_then(|()| out.flush().map_err(ToolError::from)) {
        // A closed pipe (`| head`) is not an error.
        Err(ToolError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn entries(fs: &Ext4, path: &str, dir: &Inode) -> Result<Vec<ext4::DirEntry>> {
    let mut v = Vec::new();
    ctx(
        path,
        fs.read_dir(dir, 0, &mut |e, _| {
            v.push(e.clone());
            true
        }),
    )?;
    Ok(v)
}

fn ls(fs: &Ext4, path: &str, out: &mut impl Write) -> Result<()> {
    let (ino, inode) = resolve(fs, path)?;
    if !inode.is_dir() {
        return ls_line(fs, ino, &inode, path.as_bytes(), out);
    }
    for e in entries(fs, path, &inode)? {
        let child = ctx(path, fs.read_inode(e.ino))?;
        ls_line(fs, e.ino, &child, &e.name, out)?;
    }
    Ok(())
}

fn ls_line(fs: &Ext4, ino: u32, inode: &Inode, name: &[u8], out: &mut impl Write) -> Result<()> {
    let _ = fs;
    let size = match inode.file_type() {
        Some(FileType::CharDevice | FileType::BlockDevice) => {
            let d = inode.rdev();
            format!("{:>3},{:>4}", (d >> 8) & 0xfff, (d & 0xff) | ((d >> 12) & 0xfff00))
        }
        _ => inode.size().to_string(),
    };
    writeln!(
        out,
        "{ino:>8} {:>6o} {} {:>6} {:>6} {:>12} {} {}",
        inode.mode(),
        mode_string(inode.mode()),
        inode.uid(),
        inode.gid(),
        size,
        short_date(inode.mtime()),
        escape(name)
    )?;
    Ok(())
}

fn stat(fs: &Ext4, path: &str, out: &mut impl Write) -> Result<()> {
    let (ino, inode) = resolve(fs, path)?;
    let sb = fs.superblock();
    let huge = sb.ro_compat().has(ext4::disk::features::RoCompat::HUGE_FILE);
    writeln!(
        out,
        "Inode: {ino}   Type: {}    Mode:  {:04o}   Flags: {:#x}",
        type_name(inode.file_type()),
        inode.mode() & 0o7777,
        inode.flags()
    )?;
    writeln!(out, "Generation: {}    Version: {:#010x}", inode.generation(), inode.raw.version_lo)?;
    writeln!(
        out,
        "User: {:>5}   Group: {:>5}   Project: {:>5}   Size: {}",
        inode.uid(),
        inode.gid(),
        inode.projid(),
        inode.size()
    )?;
    writeln!(out, "File ACL: {}", inode.file_acl())?;
    writeln!(out, "Links: {}   Blockcount: {}", inode.links_count(), inode.blocks_512(huge, fs.block_size()))?;
    writeln!(out, " ctime: {}", full_date(inode.ctime()))?;
    writeln!(out, " atime: {}", full_date(inode.atime()))?;
    writeln!(out, " mtime: {}", full_date(inode.mtime()))?;
    if let Some(cr) = inode.crtime() {
        writeln!(out, "crtime: {}", full_date(cr))?;
    }
    if inode.dtime() != 0 {
        writeln!(out, " dtime: {:#010x}", inode.dtime())?;
    }
    if inode.bytes.len() > 128 {
        writeln!(out, "Size of extra inode fields: {}", inode.raw.extra_isize)?;
    }
    if let Some(seed) = fs.csum_seed() {
        writeln!(out, "Inode checksum: {:#010x}", inode.compute_checksum(seed))?;
    }
    match inode.file_type() {
        Some(FileType::CharDevice | FileType::BlockDevice) => {
            let d = inode.rdev();
            writeln!(
                out,
                "Device major/minor number: {:02}:{:02}",
                (d >> 8) & 0xfff,
                (d & 0xff) | ((d >> 12) & 0xfff00)
            )?;
        }
        Some(FileType::Symlink) => {
            let target = ctx(path, fs.read_link(&inode))?;
            writeln!(out, "Link target: \"{}\"", escape(&target))?;
        }
        _ => {}
    }
    if inode.has_flag(ext4::disk::inode::FL_INLINE_DATA) {
        let data = ctx(path, fs.inline_data(&inode))?;
        writeln!(out, "Size of inline data: {}", data.len())?;
    } else if matches!(inode.file_type(), Some(FileType::Regular | FileType::Directory))
        || (inode.is_symlink() && inode.blocks_512(huge, fs.block_size()) > 0)
    {
        let extents = ctx(path, fs.file_extents(&inode))?;
        let label = if inode.has_flag(ext4::disk::inode::FL_EXTENTS) { "EXTENTS" } else { "BLOCKS" };
        writeln!(out, "{label}:")?;
        let pieces: Vec<String> = extents
            .iter()
            .map(|e| {
                let u = if e.unwritten { " [uninit]" } else { "" };
                if e.len == 1 {
                    format!("({}):{}{u}", e.lblk, e.pblk)
                } else {
                    format!("({}-{}):{}-{}{u}", e.lblk, e.lblk + e.len - 1, e.pblk, e.pblk + e.len - 1)
                }
            })
            .collect();
        writeln!(out, "{}", pieces.join(", "))?;
    }
    Ok(())
}

fn cat(fs: &Ext4, path: &str, out: &mut impl Write) -> Result<()> {
    let (ino, inode) = resolve(fs, path)?;
    if !inode.is_reg() {
        return ctx(path, Err(ext4::Error::InvalidArgument(format!("inode {ino} is not a regular file"))));
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = ctx(path, fs.read(&inode, off, &mut buf))?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        off += n as u64;
    }
}

fn getfattr(fs: &Ext4, path: &str, name: Option<&str>, as_hex: bool, out: &mut impl Write) -> Result<()> {
    let (_, inode) = resolve(fs, path)?;
    let attrs = match name {
        Some(n) => {
            vec![ext4::Xattr { name: n.as_bytes().to_vec(), value: ctx(path, fs.get_xattr(&inode, n.as_bytes()))? }]
        }
        None => ctx(path, fs.list_xattrs(&inode))?,
    };
    writeln!(out, "# file: {path}")?;
    for x in attrs {
        let value = if as_hex { hex(&x.value) } else { format!("\"{}\"", escape(&x.value)) };
        writeln!(out, "{}={value}", escape(&x.name))?;
        // ACLs also in getfacl's text form, one entry per line.
        let default = match x.name.as_slice() {
            b"system.posix_acl_access" => false,
            b"system.posix_acl_default" => true,
            _ => continue,
        };
        let acl = ctx(path, ext4::disk::acl::Acl::from_xattr(&x.value))?;
        for line in acl.to_text(default).lines() {
            writeln!(out, "#   {line}")?;
        }
    }
    Ok(())
}

fn tree(fs: &Ext4, path: &str, out: &mut impl Write) -> Result<()> {
    let (ino, inode) = resolve(fs, path)?;
    writeln!(out, "{path}")?;
    // Depth-first with an explicit stack of pending entries and a visited
    // set: a corrupt image whose directories form a cycle or a very deep
    // chain can neither loop nor overflow the stack.
    let mut visited = std::collections::HashSet::from([ino]);
    let root = path.trim_end_matches('/').to_string();
    let mut pending = entries(fs, path, &inode)?;
    pending.reverse();
    let mut stack = vec![(root, pending)];
    while let Some((dir_path, pending)) = stack.last_mut() {
        let Some(e) = pending.pop() else {
            stack.pop();
            continue;
        };
        if e.name == b"." || e.name == b".." {
            continue;
        }
        let dir_path = dir_path.clone();
        let child = ctx(&dir_path, fs.read_live_inode(e.ino))?;
        let indent = "  ".repeat(stack.len());
        let suffix = match child.file_type() {
            Some(FileType::Directory) => "/".to_string(),
            Some(FileType::Symlink) => format!(" -> {}", escape(&ctx(&dir_path, fs.read_link(&child))?)),
            Some(FileType::Regular) => format!("  ({} bytes)", child.size()),
            _ => format!("  [{}]", type_name(child.file_type())),
        };
        writeln!(out, "{indent}{}{suffix}", escape(&e.name))?;
        if child.is_dir() && visited.insert(e.ino) {
            let child_path = format!("{dir_path}/{}", String::from_utf8_lossy(&e.name));
            let mut children = entries(fs, &child_path, &child)?;
            children.reverse();
            stack.push((child_path, children));
        }
    }
    Ok(())
}
