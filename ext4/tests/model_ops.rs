//! Model-based random testing of every namespace and data operation:
//! seeded sequences applied to an image through our API and to a plain host
//! directory (the model). After each sequence `e2fsck -fn` is clean, and
//! both our reader and debugfs (`rdump`) see exactly the model.
//!
//! `EXT4_SOAK=N` runs N extra seeds per configuration (a long soak).

mod common;

use common::rng::Rng;
use common::tools::{assert_fsck_clean, mkfs, run};
use common::{Scratch, tree};
use ext4::fs::dir::namespace::{NewInode, RenameFlags};
use ext4::fs::inode::setattr::SetAttr;
use ext4::{Ext4, OpenOptions};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every path of the model (relative), with whether it is a directory.
fn model_paths(root: &Path) -> Vec<(PathBuf, bool)> {
    let mut all = Vec::new();
    tree::walk(root, &mut all);
    all.into_iter()
        .map(|p| {
            let dir = std::fs::symlink_metadata(&p).unwrap().is_dir();
            (p.strip_prefix(root).unwrap().to_path_buf(), dir)
        })
        .filter(|(p, _)| p.as_os_str() != "lost+found")
        .collect()
}

/// A random index below `n`.
fn pick(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

fn img_path(rel: &Path) -> Vec<u8> {
    [b"/".as_slice(), rel.as_os_str().as_bytes()].concat()
}

fn parent_and_name(fs: &Ext4, rel: &Path) -> (u32, Vec<u8>) {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let ino = fs.resolve_path(&img_path(parent), false).unwrap();
    (ino, rel.file_name().unwrap().as_bytes().to_vec())
}

/// One random operation, applied to the model and the image alike.
/// Returns which kind ran (0..KINDS), or None when its precondition was unmet.
fn step(fs: &Ext4, model: &Path, rng: &mut Rng, n: usize) -> Option<usize> {
    let paths = model_paths(model);
    let dirs: Vec<PathBuf> =
        std::iter::once(PathBuf::new()).chain(paths.iter().filter(|p| p.1).map(|p| p.0.clone())).collect();
    let files: Vec<PathBuf> = paths
        .iter()
        .filter(|p| std::fs::symlink_metadata(model.join(&p.0)).unwrap().is_file())
        .map(|p| p.0.clone())
        .collect();
    let new_name = |rng: &mut Rng| format!("n{}-{}", n, "x".repeat(pick(rng, 40)));
    let dir = dirs[pick(rng, dirs.len())].clone();
    let owner = NewInode { mode: 0, uid: 0, gid: 0, rdev: 0, umask: None };
    let kind = rng.below(KINDS as u64) as usize;
    match kind {
        0 | 1 => {
            let rel = dir.join(new_name(rng));
            std::fs::write(model.join(&rel), b"").unwrap();
            std::fs::set_permissions(model.join(&rel), PermissionsExt::from_mode(0o644)).unwrap();
            let (p, name) = parent_and_name(fs, &rel);
            fs.create(p, &name, NewInode { mode: 0o100644, ..owner }).unwrap();
        }
        2..=4 if !files.is_empty() => {
            let rel = &files[pick(rng, files.len())];
            let len = [1, 50, 3000, 20_000][pick(rng, 4)] + pick(rng, 100);
            let size = std::fs::metadata(model.join(rel)).unwrap().len() as usize;
            let off = pick(rng, size + 5000);
            let data = tree::pattern(n as u64, len);
            let f = std::fs::OpenOptions::new().write(true).open(model.join(rel)).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, &data, off as u64).unwrap();
            let ino = fs.resolve_path(&img_path(rel), false).unwrap();
            fs.write(ino, off as u64, &data).unwrap();
        }
        5 if !files.is_empty() => {
            let rel = &files[pick(rng, files.len())];
            let size = pick(rng, 30_000) as u64;
            std::fs::OpenOptions::new().write(true).open(model.join(rel)).unwrap().set_len(size).unwrap();
            let ino = fs.resolve_path(&img_path(rel), false).unwrap();
            fs.setattr(ino, &SetAttr { size: Some(size), ..Default::default() }).unwrap();
        }
        6 => {
            let rel = dir.join(new_name(rng));
            std::fs::create_dir(model.join(&rel)).unwrap();
            std::fs::set_permissions(model.join(&rel), PermissionsExt::from_mode(0o755)).unwrap();
            let (p, name) = parent_and_name(fs, &rel);
            fs.mkdir(p, &name, NewInode { mode: 0o755, ..owner }).unwrap();
        }
        7 if !paths.is_empty() => {
            // unlink a file or symlink, or rmdir an empty directory
            let (rel, is_dir) = paths[pick(rng, paths.len())].clone();
            let (p, name) = parent_and_name(fs, &rel);
            if is_dir {
                if std::fs::read_dir(model.join(&rel)).unwrap().next().is_none() {
                    std::fs::remove_dir(model.join(&rel)).unwrap();
                    fs.rmdir(p, &name).unwrap();
                } else {
                    assert!(matches!(fs.rmdir(p, &name), Err(ext4::Error::NotEmpty(_))));
                }
            } else {
                std::fs::remove_file(model.join(&rel)).unwrap();
                fs.unlink(p, &name).unwrap();
            }
        }
        8 if !paths.is_empty() => {
            // rename anything to a new name in any directory it can move to
            let (rel, is_dir) = paths[pick(rng, paths.len())].clone();
            let target_dir = dirs[pick(rng, dirs.len())].clone();
            if is_dir && target_dir.starts_with(&rel) {
                return None;
            }
            let to = target_dir.join(new_name(rng));
            std::fs::rename(model.join(&rel), model.join(&to)).unwrap();
            let (op, on) = parent_and_name(fs, &rel);
            let (np, nn) = parent_and_name(fs, &to);
            fs.rename(op, &on, np, &nn, RenameFlags::default()).unwrap();
        }
        9 if files.len() >= 2 => {
            // rename a file over another file
            let a = files[pick(rng, files.len())].clone();
            let b = files[pick(rng, files.len())].clone();
            if a == b {
                return None;
            }
            std::fs::rename(model.join(&a), model.join(&b)).unwrap();
            let (op, on) = parent_and_name(fs, &a);
            let (np, nn) = parent_and_name(fs, &b);
            fs.rename(op, &on, np, &nn, RenameFlags::default()).unwrap();
        }
        10 if !files.is_empty() => {
            let rel = files[pick(rng, files.len())].clone();
            let to = dir.join(new_name(rng));
            std::fs::hard_link(model.join(&rel), model.join(&to)).unwrap();
            let ino = fs.resolve_path(&img_path(&rel), false).unwrap();
            let (p, name) = parent_and_name(fs, &to);
            fs.link(ino, p, &name).unwrap();
        }
        11 => {
            let rel = dir.join(new_name(rng));
            let target = "t/".repeat(1 + pick(rng, 60));
            std::os::unix::fs::symlink(&target, model.join(&rel)).unwrap();
            let (p, name) = parent_and_name(fs, &rel);
            fs.symlink(p, &name, target.as_bytes(), 0, 0).unwrap();
        }
        12 if !files.is_empty() => {
            let rel = &files[pick(rng, files.len())];
            let mode = [0o600, 0o644, 0o755, 0o4711][pick(rng, 4)];
            std::fs::set_permissions(model.join(rel), PermissionsExt::from_mode(mode)).unwrap();
            let ino = fs.resolve_path(&img_path(rel), false).unwrap();
            fs.setattr(ino, &SetAttr { mode: Some(mode as u16), ..Default::default() }).unwrap();
        }
        13 => {
            // A burst of creations in one directory: crosses the linear ->
            // htree threshold and leaf splits.
            for i in 0..80 {
                let rel = dir.join(format!("burst{n}-{i}-{}", "y".repeat(30)));
                std::fs::write(model.join(&rel), b"").unwrap();
                std::fs::set_permissions(model.join(&rel), PermissionsExt::from_mode(0o600)).unwrap();
                let (p, name) = parent_and_name(fs, &rel);
                fs.create(p, &name, NewInode { mode: 0o100600, ..owner }).unwrap();
            }
        }
        14 if !files.is_empty() => {
            let rel = &files[rng.below(files.len() as u64) as usize];
            let name = format!("user.k{}", rng.below(6));
            let value = tree::pattern(n as u64, [3, 40, 600][rng.below(3) as usize]);
            let ino = fs.resolve_path(&img_path(rel), false).unwrap();
            match fs.setxattr(ino, name.as_bytes(), &value, ext4::fs::xattr::write::SetMode::Any) {
                // The inode and its one xattr block are full (ENOSPC, as the
                // kernel says): nothing changed, so the model stays as it is.
                Err(ext4::Error::NoSpace) => return None,
                r => r.unwrap(),
            }
            tree::set_xattr(&model.join(rel), &name, &value);
        }
        15 => {
            let with_attrs: Vec<&PathBuf> = files.iter().filter(|f| !tree::xattrs(&model.join(f)).is_empty()).collect();
            if with_attrs.is_empty() {
                return None;
            }
            let rel = with_attrs[rng.below(with_attrs.len() as u64) as usize];
            let ino = fs.resolve_path(&img_path(rel), false).unwrap();
            let present = tree::xattrs(&model.join(rel));
            let (name, _) = &present[rng.below(present.len() as u64) as usize];
            let c = std::ffi::CString::new(model.join(rel).as_os_str().as_bytes()).unwrap();
            let cn = std::ffi::CString::new(name.clone()).unwrap();
            // SAFETY: valid NUL-terminated strings.
            assert_eq!(unsafe { libc::lremovexattr(c.as_ptr(), cn.as_ptr()) }, 0);
            fs.removexattr(ino, name).unwrap();
        }
        16 if !files.is_empty() => {
            // fallocate in every mode; the model is changed with the host's
            // own fallocate(2), the image with ours.
            use ext4::fs::data::fallocate::FallocMode;
            let rel = &files[rng.below(files.len() as u64) as usize];
            let off = rng.below(40_000);
            let len = 1 + rng.below(30_000);
            let (mode, flags) = match rng.below(4) {
                0 => (FallocMode::Default, 0),
                1 => (FallocMode::KeepSize, libc::FALLOC_FL_KEEP_SIZE),
                2 => (FallocMode::PunchHole, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE),
                _ => (FallocMode::ZeroRange { keep_size: false }, libc::FALLOC_FL_ZERO_RANGE),
            };
            let ino = fs.resolve_path(&img_path(rel), false).unwrap();
            match fs.fallocate(ino, mode, off, len) {
                // Block-mapped files take only punch (EOPNOTSUPP, as the kernel).
                Err(ext4::Error::Unsupported(_)) => return None,
                r => r.unwrap(),
            }
            let f = std::fs::OpenOptions::new().write(true).open(model.join(rel)).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: fallocate on an open descriptor.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), flags, off as i64, len as i64) };
            assert_eq!(r, 0, "host fallocate: {}", std::io::Error::last_os_error());
        }
        17 => {
            let rel = dir.join(new_name(rng));
            let c = std::ffi::CString::new(model.join(&rel).as_os_str().as_bytes()).unwrap();
            // SAFETY: valid path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
            std::fs::set_permissions(model.join(&rel), PermissionsExt::from_mode(0o640)).unwrap();
            let (p, name) = parent_and_name(fs, &rel);
            fs.create(p, &name, NewInode { mode: 0o010640, ..owner }).unwrap();
        }
        _ => return None,
    }
    Some(kind)
}

/// Kinds of operations `step` chooses from.
const KINDS: usize = 18;

/// Compares our reader's view of the image with the model.
fn compare_with_reader(fs: &Ext4, model: &Path) {
    let mut inodes: BTreeMap<u64, u32> = BTreeMap::new();
    for (rel, is_dir) in model_paths(model) {
        let p = model.join(&rel);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ino = fs.resolve_path(&img_path(&rel), false).unwrap_or_else(|e| panic!("{rel:?}: {e}"));
        let inode = fs.read_inode(ino).unwrap();
        assert_eq!(inode.mode() as u32, md.mode(), "mode of {rel:?}");
        // Hard links: the same model inode is the same image inode.
        if let Some(&other) = inodes.get(&md.ino()) {
            assert_eq!(other, ino, "{rel:?} is a hard link");
        }
        inodes.insert(md.ino(), ino);
        assert_eq!(inode.links_count() as u64, md.nlink(), "links of {rel:?}");
        if is_dir {
            let mut names = Vec::new();
            fs.read_dir(&inode, 0, &mut |e, _| {
                names.push(e.name.clone());
                true
            })
            .unwrap();
            let mut want: Vec<Vec<u8>> =
                std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
            want.push(b".".to_vec());
            want.push(b"..".to_vec());
            names.sort();
            want.sort();
            assert_eq!(names, want, "listing of {rel:?}");
        } else if md.is_symlink() {
            assert_eq!(fs.read_link(&inode).unwrap(), std::fs::read_link(&p).unwrap().as_os_str().as_bytes());
        } else if !md.is_file() {
            assert_eq!(inode.file_type(), Some(ext4::FileType::Fifo), "{rel:?}");
        } else {
            let mut got: Vec<(Vec<u8>, Vec<u8>)> =
                fs.list_xattrs(&inode).unwrap().into_iter().map(|x| (x.name, x.value)).collect();
            got.sort();
            assert_eq!(got, tree::xattrs(&p), "xattrs of {rel:?}");
            let want = std::fs::read(&p).unwrap();
            let mut got = vec![0u8; inode.size() as usize];
            assert_eq!(fs.read(&inode, 0, &mut got).unwrap(), got.len());
            if got != want {
                let first = got.iter().zip(&want).position(|(a, b)| a != b);
                panic!("data of {rel:?}: sizes {} vs {}, first difference at {first:?}", got.len(), want.len());
            }
        }
    }
}

/// Compares debugfs's `rdump` of the image with the model.
fn compare_with_debugfs(img: &Path, model: &Path, scratch: &Scratch) {
    let out = scratch.join("rdump");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir(&out).unwrap();
    run(Command::new("debugfs").arg("-R").arg(format!("rdump / {}", out.display())).arg(img));
    let dumped = out.join("");
    for (rel, _) in model_paths(model) {
        let (a, b) = (model.join(&rel), dumped.join(&rel));
        if std::fs::symlink_metadata(&a).unwrap().file_type().is_fifo() {
            // rdump extracts only files, directories and symlinks.
            continue;
        }
        let (ma, mb) = (
            std::fs::symlink_metadata(&a).unwrap(),
            std::fs::symlink_metadata(&b).unwrap_or_else(|e| panic!("debugfs lacks {rel:?}: {e}")),
        );
        assert_eq!(ma.file_type().is_dir(), mb.file_type().is_dir(), "{rel:?}");
        if ma.is_symlink() {
            assert_eq!(std::fs::read_link(&a).unwrap(), std::fs::read_link(&b).unwrap(), "{rel:?}");
        } else if ma.is_file() {
            let (want, got) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            // debugfs 1.47.0 dumps an inline-data file padded with zeros to
            // its whole inline area; the bytes up to i_size must match.
            let inline_padding =
                got.len() > want.len() && got.len() <= 256 && got[want.len()..].iter().all(|&x| x == 0);
            assert!(got == want || (got.starts_with(&want) && inline_padding), "debugfs data of {rel:?}");
        }
    }
}

fn sequence(tag: &str, args: &[&str], seed: u64, ops: usize) {
    sequence_sized(tag, args, seed, ops, "128M");
}

fn sequence_sized(tag: &str, args: &[&str], seed: u64, ops: usize, size: &str) {
    let scratch = Scratch::new(tag);
    let model = scratch.join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::create_dir(model.join("d")).unwrap();
    std::fs::write(model.join("d/seed"), b"seed file").unwrap();
    std::fs::set_permissions(model.join("d"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(model.join("d/seed"), PermissionsExt::from_mode(0o644)).unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, size, Some(&model), args);
    let mut rng = Rng(seed);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let mut ran = [0usize; KINDS];
        for n in 0..ops {
            if let Some(k) = step(&fs, &model, &mut rng, n) {
                ran[k] += 1;
            }
        }
        // Every kind of operation really ran (the model test is not vacuous).
        if ops >= 200 {
            assert!(ran.iter().all(|&c| c > 0), "{tag} seed {seed}: operation counts {ran:?}");
        }
        fs.sync().unwrap();
        compare_with_reader(&fs, &model);
    }
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    compare_with_reader(&fs, &model);
    compare_with_debugfs(&img, &model, &scratch);
}

fn seeds(base: u64, n: u64) -> impl Iterator<Item = u64> {
    let soak: u64 = std::env::var("EXT4_SOAK").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    base..base + n + soak
}

#[test]
fn model_ext4_4k() {
    for seed in seeds(100, 10) {
        sequence("model-4k", &["-t", "ext4", "-b", "4096"], seed, 250);
    }
}

#[test]
fn model_ext4_1k_inline() {
    for seed in seeds(200, 10) {
        sequence("model-1k", &["-t", "ext4", "-b", "1024", "-O", "inline_data"], seed, 250);
    }
}

#[test]
fn model_ext3_block_maps() {
    for seed in seeds(300, 8) {
        sequence("model-ext3", &["-t", "ext3", "-b", "1024"], seed, 250);
    }
}

#[test]
fn model_ext4_no_csum() {
    for seed in seeds(400, 8) {
        sequence("model-nocsum", &["-t", "ext4", "-O", "^metadata_csum"], seed, 250);
    }
}

/// Many short sequences (thousands in all), each on a fresh small image
/// and judged on its own: a different failure surface from the long ones
/// (early states, first conversions, first splits).
#[test]
fn model_many_short_sequences() {
    let configs: [&[&str]; 4] = [
        &["-t", "ext4", "-b", "4096"],
        &["-t", "ext4", "-b", "1024", "-O", "inline_data"],
        &["-t", "ext3", "-b", "1024"],
        &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"],
    ];
    let per_config = 500 + std::env::var("EXT4_SOAK").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 50;
    for (c, args) in configs.iter().enumerate() {
        for seed in 0..per_config {
            sequence_sized("model-short", args, 10_000 * (c as u64 + 1) + seed, 30, "16M");
        }
    }
}
