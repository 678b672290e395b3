//! The concurrency model under load: eight threads mix write, truncate,
//! punch, zero-range, fallocate, create, unlink, rename, link, setattr and
//! xattr changes on private and shared files of a few directories, against
//! one open file system.
//!
//! Every byte a file ever holds is its own tag (or zero), so any read, at
//! any moment, must show only the file's tag and zeros: a byte of another
//! tag is data that crossed files. Operations that commute (writes of the
//! one tag, fallocate) run on a shared file at the same time; those that
//! do not (truncate, punch, zero-range, setattr, xattrs) hold the file's
//! test lock exclusively, so the model stays exact and the end state must
//! equal it: contents, modes, xattrs and every directory's names, before
//! and after a clean close and reopen; `e2fsck -fn` judges the image.
//! "Wild" files take every operation at once, truncate and punch racing
//! writes: no model can say what they hold, but they too must hold only
//! their own tag and zeros — the race of a write with a truncate whose
//! freed block another file takes shows up there as a foreign tag.
//!
//! `EXT4_SOAK=N` runs N more seeds per configuration.

mod common;

use common::Scratch;
use common::tools::mkfs;
use ext4::fs::data::fallocate::FallocMode;
use ext4::fs::dir::namespace::{NewInode, RenameFlags};
use ext4::fs::inode::setattr::SetAttr;
use ext4::fs::xattr::write::SetMode;
use ext4::{Ext4, OpenOptions, ROOT_INO};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use testkit::{Rng, assert_fsck_clean};

const THREADS: usize = 8;
const MAX_SIZE: u64 = 160 * 1024;
const MAX_IO: u64 = 20 * 1024;

/// What the test knows a file holds.
#[derive(Debug)]
struct FileModel {
    alive: bool,
    content: Vec<u8>,
    mode: u16,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// One file: its identity, its test lock and its model.
struct File {
    ino: u32,
    tag: u8,
    /// The thread that alone changes its data, or `None` when shared.
    owner: Option<usize>,
    /// Every operation runs at once on it; no exact model.
    wild: bool,
    /// Shared for commuting operations, exclusive for the others.
    lock: RwLock<()>,
    model: Mutex<FileModel>,
}

/// A directory entry of the model: (directory index, name).
type Name = (usize, Vec<u8>);

struct World {
    fs: Ext4,
    dirs: Vec<u32>,
    files: Mutex<Vec<Arc<File>>>,
    /// The namespace; namespace operations hold it (they are serialised by
    /// the core's handle anyway), data operations never take it.
    names: Mutex<BTreeMap<Name, usize>>,
    next_name: std::sync::atomic::AtomicU64,
}

fn new_inode(mode: u16) -> NewInode {
    NewInode { mode, uid: 0, gid: 0, rdev: 0, umask: None }
}

impl World {
    fn file(&self, id: usize) -> Arc<File> {
        self.files.lock().unwrap()[id].clone()
    }

    fn fresh_name(&self) -> Vec<u8> {
        format!("n{}", self.next_name.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).into_bytes()
    }

    /// Picks a live file: one of `me`'s own or a shared one.
    fn pick_file(&self, rng: &mut Rng, me: usize) -> Option<Arc<File>> {
        let files = self.files.lock().unwrap();
        let want_shared = rng.chance(50);
        let candidates: Vec<&Arc<File>> = files
            .iter()
            .filter(|f| if want_shared { f.owner.is_none() } else { f.owner == Some(me) })
            .filter(|f| f.model.lock().unwrap().alive)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[rng.below(candidates.len() as u64) as usize].clone())
    }

    /// Drops the test's reference to a file that lost its last name: the
    /// core frees it (after every in-flight operation on it).
    fn retire(&self, file: &File) {
        let _x = file.lock.write().unwrap();
        file.model.lock().unwrap().alive = false;
        self.fs.close_inode(file.ino).unwrap();
    }

    fn create(&self, rng: &mut Rng, me: usize) {
        let mut names = self.names.lock().unwrap();
        let dir = rng.below(self.dirs.len() as u64) as usize;
        let name = self.fresh_name();
        let inode = self.fs.create(self.dirs[dir], &name, new_inode(0o100644)).unwrap();
        self.fs.open_inode(inode.ino);
        let mut files = self.files.lock().unwrap();
        let id = files.len();
        files.push(Arc::new(File {
            ino: inode.ino,
            tag: (id % 250) as u8 + 1,
            owner: (!rng.chance(40)).then_some(me),
            wild: rng.chance(30),
            lock: RwLock::new(()),
            model: Mutex::new(FileModel { alive: true, content: Vec::new(), mode: 0o644, xattrs: BTreeMap::new() }),
        }));
        names.insert((dir, name), id);
    }

    fn link(&self, rng: &mut Rng) {
        let mut names = self.names.lock().unwrap();
        if names.is_empty() {
            return;
        }
        let id = *names.values().nth(rng.below(names.len() as u64) as usize).unwrap();
        let dir = rng.below(self.dirs.len() as u64) as usize;
        let name = self.fresh_name();
        self.fs.link(self.file(id).ino, self.dirs[dir], &name).unwrap();
        names.insert((dir, name), id);
    }

    fn unlink(&self, rng: &mut Rng) {
        let retired = {
            let mut names = self.names.lock().unwrap();
            if names.is_empty() {
                return;
            }
            let key = names.keys().nth(rng.below(names.len() as u64) as usize).unwrap().clone();
            self.fs.unlink(self.dirs[key.0], &key.1).unwrap();
            let id = names.remove(&key).unwrap();
            (!names.values().any(|&v| v == id)).then_some(id)
        };
        if let Some(id) = retired {
            self.retire(&self.file(id));
        }
    }

    fn rename(&self, rng: &mut Rng) {
        let retired = {
            let mut names = self.names.lock().unwrap();
            if names.is_empty() {
                return;
            }
            let src = names.keys().nth(rng.below(names.len() as u64) as usize).unwrap().clone();
            let dst: Name = if rng.chance(30) {
                names.keys().nth(rng.below(names.len() as u64) as usize).unwrap().clone()
            } else {
                (rng.below(self.dirs.len() as u64) as usize, self.fresh_name())
            };
            self.fs.rename(self.dirs[src.0], &src.1, self.dirs[dst.0], &dst.1, RenameFlags::default()).unwrap();
            let id = names[&src];
            match names.get(&dst).copied() {
                // Two names of one inode (or the same name): POSIX does nothing.
                Some(v) if v == id => None,
                victim => {
                    names.remove(&src);
                    names.insert(dst, id);
                    victim.filter(|v| !names.values().any(|x| x == v))
                }
            }
        };
        if let Some(id) = retired {
            self.retire(&self.file(id));
        }
    }

    /// One data operation on a file `me` may change.
    fn data_op(&self, rng: &mut Rng, me: usize) {
        let Some(file) = self.pick_file(rng, me) else { return };
        let fs = &self.fs;
        let ino = file.ino;
        let off = rng.below(MAX_SIZE - MAX_IO);
        let short = rng.chance(50);
        let len = 1 + rng.below(if short { 300 } else { MAX_IO });
        let kind = rng.below(100);
        if kind < 45 || file.wild {
            // Commuting operations: shared.
            let _s = file.lock.read().unwrap();
            if !file.model.lock().unwrap().alive {
                return;
            }
            match kind {
                0..30 => {
                    assert_eq!(fs.write(ino, off, &vec![file.tag; len as usize]).unwrap(), len as usize);
                    let mut m = file.model.lock().unwrap();
                    let end = (off + len) as usize;
                    if m.content.len() < end {
                        m.content.resize(end, 0);
                    }
                    m.content[off as usize..end].fill(file.tag);
                }
                30..38 => {
                    fs.fallocate(ino, FallocMode::Default, off, len).unwrap();
                    let mut m = file.model.lock().unwrap();
                    let end = (off + len) as usize;
                    if m.content.len() < end {
                        m.content.resize(end, 0);
                    }
                }
                38..45 => self.check_tags(&file, false),
                _ => self.wild_op(&file, kind, off, len, rng),
            }
            return;
        }
        let _x = file.lock.write().unwrap();
        let mut m = file.model.lock().unwrap();
        if !m.alive {
            return;
        }
        match kind {
            45..55 => {
                let size = rng.below(MAX_SIZE);
                fs.truncate(ino, size).unwrap();
                m.content.resize(size as usize, 0);
            }
            55..63 => {
                fs.fallocate(ino, FallocMode::PunchHole, off, len).unwrap();
                let end = ((off + len) as usize).min(m.content.len());
                if (off as usize) < end {
                    m.content[off as usize..end].fill(0);
                }
            }
            63..70 => {
                let keep_size = rng.chance(50);
                fs.fallocate(ino, FallocMode::ZeroRange { keep_size }, off, len).unwrap();
                let end = (off + len) as usize;
                if !keep_size && m.content.len() < end {
                    m.content.resize(end, 0);
                }
                let end = end.min(m.content.len());
                if (off as usize) < end {
                    m.content[off as usize..end].fill(0);
                }
            }
            70..75 => {
                fs.fallocate(ino, FallocMode::KeepSize, off, len).unwrap();
            }
            75..82 => {
                let mode = 0o600 | rng.below(0o100) as u16;
                fs.setattr(ino, &SetAttr { mode: Some(mode), ..Default::default() }).unwrap();
                m.mode = mode;
            }
            82..92 => {
                let name = format!("user.k{}", rng.below(5)).into_bytes();
                let small = rng.chance(70);
                let value = vec![file.tag; 1 + rng.below(if small { 40 } else { 1500 }) as usize];
                match fs.setxattr(ino, &name, &value, SetMode::Any) {
                    Ok(()) => {
                        m.xattrs.insert(name, value);
                    }
                    // The attributes no longer fit the inode and one block
                    // (1 KiB blocks): refused whole, nothing changed.
                    Err(ext4::Error::ValueTooLarge | ext4::Error::NoSpace) => {}
                    Err(e) => panic!("setxattr: {e}"),
                }
            }
            92..96 => {
                let name = format!("user.k{}", rng.below(5)).into_bytes();
                match fs.removexattr(ino, &name) {
                    Ok(()) => assert!(m.xattrs.remove(&name).is_some(), "removed an xattr the model lacks"),
                    Err(ext4::Error::NoAttr) => assert!(!m.xattrs.contains_key(&name), "xattr missing"),
                    Err(e) => panic!("removexattr: {e}"),
                }
            }
            _ => {
                drop(m);
                self.check_tags(&file, true);
            }
        }
    }

    /// A non-commuting operation on a wild file, racing everything else on
    /// it: only success is checked here, contents by their tags.
    fn wild_op(&self, file: &File, kind: u64, off: u64, len: u64, rng: &mut Rng) {
        let fs = &self.fs;
        match kind {
            45..60 => fs.truncate(file.ino, rng.below(MAX_SIZE)).unwrap(),
            60..70 => fs.fallocate(file.ino, FallocMode::PunchHole, off, len).unwrap(),
            70..78 => fs.fallocate(file.ino, FallocMode::ZeroRange { keep_size: rng.chance(50) }, off, len).unwrap(),
            78..85 => fs.fallocate(file.ino, FallocMode::KeepSize, off, len).unwrap(),
            _ => self.check_tags(file, false),
        }
    }

    /// Reads the whole file: only its tag and zeros, and — when nothing
    /// else can change it (`exact`, or a private file) — exactly the model.
    fn check_tags(&self, file: &File, exact: bool) {
        let inode = self.fs.read_inode(file.ino).unwrap();
        let mut buf = vec![0u8; inode.size() as usize];
        let n = self.fs.read(&inode, 0, &mut buf).unwrap();
        buf.truncate(n);
        if let Some(i) = buf.iter().position(|&b| b != 0 && b != file.tag) {
            panic!("inode {} (tag {}) holds byte {} at {i}: another file's data", file.ino, file.tag, buf[i]);
        }
        if !file.wild && (exact || file.owner.is_some()) {
            let m = file.model.lock().unwrap();
            if buf != m.content {
                let at = buf.iter().zip(&m.content).position(|(a, b)| a != b);
                panic!(
                    "inode {}: contents differ from the model (len {} vs {}, first difference {at:?})",
                    file.ino,
                    buf.len(),
                    m.content.len()
                );
            }
        }
    }

    /// Everything equals the model: names, contents, modes, xattrs.
    fn verify(&self, fs: &Ext4) {
        let names = self.names.lock().unwrap();
        let files = self.files.lock().unwrap();
        for (d, &dino) in self.dirs.iter().enumerate() {
            let dir = fs.read_inode(dino).unwrap();
            let mut seen = BTreeMap::new();
            fs.read_dir(&dir, 0, &mut |e, _| {
                seen.insert(e.name.clone(), e.ino);
                true
            })
            .unwrap();
            seen.remove(&b"."[..]);
            seen.remove(&b".."[..]);
            seen.retain(|n, _| !n.starts_with(b"dir") && n.as_slice() != b"lost+found");
            let want: BTreeMap<Vec<u8>, u32> =
                names.iter().filter(|((dd, _), _)| *dd == d).map(|((_, n), &id)| (n.clone(), files[id].ino)).collect();
            assert_eq!(seen, want, "directory {dino} differs from the model");
        }
        for f in files.iter() {
            let m = f.model.lock().unwrap();
            if !m.alive {
                continue;
            }
            let inode = fs.read_inode(f.ino).unwrap();
            let mut buf = vec![0u8; inode.size() as usize];
            fs.read(&inode, 0, &mut buf).unwrap();
            if f.wild {
                assert!(buf.iter().all(|&b| b == 0 || b == f.tag), "inode {}: another file's data", f.ino);
                continue;
            }
            assert!(buf == m.content, "inode {}: contents differ from the model", f.ino);
            assert_eq!(inode.mode() & 0o7777, m.mode, "inode {}: mode", f.ino);
            let xattrs: BTreeMap<Vec<u8>, Vec<u8>> = fs
                .list_xattrs(&inode)
                .unwrap()
                .into_iter()
                .filter(|x| x.name.starts_with(b"user."))
                .map(|x| (x.name, x.value))
                .collect();
            assert_eq!(xattrs, m.xattrs, "inode {}: xattrs", f.ino);
        }
    }
}

fn run(config: &str, mkfs_args: &[&str], seed: u64, ops_per_thread: usize) {
    let scratch = Scratch::new(&format!("conc-model-{config}-{seed}"));
    let img = scratch.join("fs.img");
    mkfs(&img, "256M", None, mkfs_args);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let mut dirs = vec![ROOT_INO];
    for i in 0..3 {
        dirs.push(fs.mkdir(ROOT_INO, format!("dir{i}").as_bytes(), new_inode(0o40755)).unwrap().ino);
    }
    let world = World {
        fs,
        dirs,
        files: Mutex::new(Vec::new()),
        names: Mutex::new(BTreeMap::new()),
        next_name: std::sync::atomic::AtomicU64::new(0),
    };
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let world = &world;
            s.spawn(move || {
                let mut rng = Rng(seed * 1000 + t as u64);
                for _ in 0..ops_per_thread {
                    match rng.below(100) {
                        0..8 => world.create(&mut rng, t),
                        8..12 => world.link(&mut rng),
                        12..17 => world.unlink(&mut rng),
                        17..23 => world.rename(&mut rng),
                        _ => world.data_op(&mut rng, t),
                    }
                }
            });
        }
    });
    world.verify(&world.fs);
    // Drop the test's references: every unnamed file is freed here.
    for f in world.files.lock().unwrap().iter() {
        if f.model.lock().unwrap().alive {
            world.fs.close_inode(f.ino).unwrap();
        }
    }
    world.fs.close().unwrap();
    let World { fs, .. } = &world;
    assert_eq!(fs.inode_locks().entries(), 0, "inode locks left behind");
    let reopened = {
        // Ext4 holds the image lock until dropped: verify through a
        // read-only open after the writable one is gone.
        let World { fs, dirs, files, names, next_name } = world;
        drop(fs);
        assert_fsck_clean(&img);
        let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
        World { fs, dirs, files, names, next_name }
    };
    reopened.verify(&reopened.fs);
}

fn seeds() -> u64 {
    1 + std::env::var("EXT4_SOAK").ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn eight_threads_match_the_model_4k_blocks() {
    for seed in 0..seeds() {
        run("4k", &["-t", "ext4", "-b", "4096", "-O", "^inline_data"], seed, 1000);
    }
}

#[test]
fn eight_threads_match_the_model_1k_blocks_inline_data() {
    for seed in 0..seeds() {
        run("1k-inline", &["-t", "ext4", "-b", "1024", "-I", "256", "-O", "inline_data"], seed + 100, 1000);
    }
}
