//! Crash consistency of a real workload. A seeded sequence of 240
//! operations (create, writes of many sizes, truncate, mkdir, rename,
//! unlink, symlink, setxattr; half the unlinked or replaced files are held
//! open and closed later, so they pass through the orphan list, and some
//! are still open at the end) runs on an image through a
//! [`RecordingDevice`], with an fsync (a commit: it makes everything
//! durable) after some of them. The model's state is kept after every
//! operation.
//!
//! For every flush point and two torn states between each pair of flushes
//! (whole blocks persisted or not), the crashed image is recovered by our
//! open and by `e2fsck -fy`. Both must leave a clean file system
//! (`e2fsck -fn` exit 0). Our recovered tree (names, types, sizes, symlink
//! targets, user xattrs) must equal the model state after some operation
//! between the last commit that completed before the crash and the next
//! commit: nothing committed is lost and every operation is atomic. File
//! bytes must each hold a value the file had in one of those states (an
//! overwrite in place of committed data may reach the disk before its
//! commit, as in ext4's data=ordered mode, and a shrinking truncate zeroes
//! the rest of the new last block in place); so every file untouched since
//! the last commit holds exactly its committed bytes. e2fsck's recovery
//! (on every third point) must hold the same file bytes as ours (`debugfs dump`).

mod common;

use common::rng::Rng;
use common::tools::{fsck, mkfs};
use common::{Scratch, tree};
use ext4::fs::dir::namespace::NewInode;
use ext4::fs::xattr::write::SetMode;
use ext4::io::recording_device::{CrashPoint, RecordingDevice};
use ext4::io::{FileDevice, MemDevice};
use ext4::{Ext4, FileType, OpenOptions, ROOT_INO};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const OPS: usize = 240;
const MAX_FILE: u64 = 96 * 1024;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    File { ino: u32, data: Arc<Vec<u8>>, xattrs: BTreeMap<Vec<u8>, Vec<u8>> },
    Dir,
    Symlink(Vec<u8>),
}

/// Path ("/d1/f3") to node.
type State = BTreeMap<String, Node>;

/// One node without file bytes: path, inode number (files) or kind, size,
/// symlink target, user xattrs.
type Shape = (String, u32, u64, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Everything but file bytes (files carry their inode number).
fn shape(s: &State) -> Vec<Shape> {
    s.iter()
        .map(|(p, n)| match n {
            Node::File { ino, data, xattrs } => {
                (p.clone(), *ino, data.len() as u64, vec![], xattrs.clone().into_iter().collect())
            }
            Node::Dir => (p.clone(), 0, 0, vec![], vec![]),
            Node::Symlink(t) => (p.clone(), 1, 0, t.clone(), vec![]),
        })
        .collect()
}

fn reg() -> NewInode {
    NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None }
}

/// Reads the whole tree with our reader.
fn read_state(fs: &Ext4) -> State {
    let mut out = State::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((ino, path)) = stack.pop() {
        let dir = fs.read_inode(ino).unwrap();
        let mut entries = Vec::new();
        fs.read_dir(&dir, 0, &mut |e, _| {
            entries.push(e.clone());
            true
        })
        .unwrap();
        for e in entries {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let p = format!("{path}/{}", String::from_utf8(e.name.clone()).unwrap());
            let inode = fs.read_live_inode(e.ino).unwrap();
            let node = match inode.file_type() {
                Some(FileType::Directory) => {
                    stack.push((e.ino, p.clone()));
                    Node::Dir
                }
                Some(FileType::Symlink) => Node::Symlink(fs.read_link(&inode).unwrap()),
                Some(FileType::Regular) => {
                    let mut data = vec![0u8; inode.size() as usize];
                    assert_eq!(fs.read(&inode, 0, &mut data).unwrap(), data.len(), "{p}");
                    let xattrs = fs
                        .list_xattrs(&inode)
                        .unwrap()
                        .into_iter()
                        .filter(|x| x.name.starts_with(b"user."))
                        .map(|x| (x.name, x.value))
                        .collect();
                    Node::File { ino: e.ino, data: Arc::new(data), xattrs }
                }
                other => panic!("{p}: unexpected type {other:?}"),
            };
            out.insert(p, node);
        }
    }
    out
}

struct Workload {
    /// State after operation i (0: the start).
    states: Vec<State>,
    /// (flushes when the commit returned, operation index it covers).
    commits: Vec<(usize, usize)>,
}

fn parent_of(path: &str) -> &str {
    &path[..path.rfind('/').unwrap()]
}

fn name_of(path: &str) -> &[u8] {
    &path.as_bytes()[path.rfind('/').unwrap() + 1..]
}

fn run_workload(fs: &Ext4, rec: &RecordingDevice, seed: u64) -> Workload {
    let mut rng = Rng(seed);
    let mut state = read_state(fs);
    let mut inos: BTreeMap<String, u32> = BTreeMap::new();
    inos.insert(String::new(), ROOT_INO);
    for p in state.keys() {
        inos.insert(p.clone(), fs.resolve_path(p.as_bytes(), false).unwrap());
    }
    let mut states = vec![state.clone()];
    let mut commits = vec![(0, 0)];
    let mut next_name = 0u32;
    // Inodes held open (as a FUSE client would) when their last name went.
    let mut held: Vec<u32> = Vec::new();
    for op in 1..=OPS {
        let dirs: Vec<String> = std::iter::once(String::new())
            .chain(state.iter().filter(|(_, n)| matches!(n, Node::Dir)).map(|(p, _)| p.clone()))
            .filter(|p| p != "/lost+found")
            .collect();
        let files: Vec<String> =
            state.iter().filter(|(_, n)| matches!(n, Node::File { .. })).map(|(p, _)| p.clone()).collect();
        let links: Vec<String> =
            state.iter().filter(|(_, n)| !matches!(n, Node::Dir)).map(|(p, _)| p.clone()).collect();
        let pick = |rng: &mut Rng, v: &[String]| v[rng.below(v.len() as u64) as usize].clone();
        let kind = rng.below(100);
        next_name += 1;
        if files.len() < 4 || kind < 14 {
            let dir = pick(&mut rng, &dirs);
            let p = format!("{dir}/f{next_name}");
            let ino = fs.create(inos[&dir], name_of(&p), reg()).unwrap().ino;
            inos.insert(p.clone(), ino);
            state.insert(p, Node::File { ino, data: Arc::new(vec![]), xattrs: BTreeMap::new() });
        } else if kind < 50 {
            let p = pick(&mut rng, &files);
            let Some(Node::File { data, .. }) = state.get_mut(&p) else { unreachable!() };
            let len = match rng.below(4) {
                0 => 1 + rng.below(100),
                1 => 1 + rng.below(4096),
                2 => 4096 * (1 + rng.below(4)),
                _ => 1 + rng.below(40_000),
            };
            let off = rng.below(data.len() as u64 + 8192).min(MAX_FILE - len);
            let bytes = tree::pattern(rng.next(), len as usize);
            assert_eq!(fs.write(inos[&p], off, &bytes).unwrap(), bytes.len());
            let d = Arc::make_mut(data);
            let end = (off + len) as usize;
            if d.len() < end {
                d.resize(end, 0);
            }
            d[off as usize..end].copy_from_slice(&bytes);
        } else if kind < 60 {
            let p = pick(&mut rng, &files);
            let Some(Node::File { data, .. }) = state.get_mut(&p) else { unreachable!() };
            let size = rng.below(data.len() as u64 + 10_000).min(MAX_FILE);
            fs.truncate(inos[&p], size).unwrap();
            Arc::make_mut(data).resize(size as usize, 0);
        } else if kind < 66 {
            let dir = pick(&mut rng, &dirs);
            let p = format!("{dir}/d{next_name}");
            let ino = fs.mkdir(inos[&dir], name_of(&p), NewInode { mode: 0o40755, ..reg() }).unwrap().ino;
            inos.insert(p.clone(), ino);
            state.insert(p, Node::Dir);
        } else if kind < 76 {
            let src = pick(&mut rng, &links);
            let dst =
                if rng.chance(40) { pick(&mut rng, &links) } else { format!("{}/r{next_name}", pick(&mut rng, &dirs)) };
            if dst != src {
                if state.contains_key(&dst) && rng.chance(50) {
                    fs.open_inode(inos[&dst]);
                    held.push(inos[&dst]);
                }
                fs.rename(
                    inos[parent_of(&src)],
                    name_of(&src),
                    inos[parent_of(&dst)],
                    name_of(&dst),
                    Default::default(),
                )
                .unwrap();
                let node = state.remove(&src).unwrap();
                let ino = inos.remove(&src).unwrap();
                state.insert(dst.clone(), node);
                inos.insert(dst, ino);
            }
        } else if kind < 84 {
            let p = pick(&mut rng, &links);
            if rng.chance(50) {
                fs.open_inode(inos[&p]);
                held.push(inos[&p]);
            }
            fs.unlink(inos[parent_of(&p)], name_of(&p)).unwrap();
            state.remove(&p);
            inos.remove(&p);
        } else if kind < 90 {
            let dir = pick(&mut rng, &dirs);
            let p = format!("{dir}/s{next_name}");
            let len = if rng.chance(50) { 1 + rng.below(59) } else { 60 + rng.below(400) };
            let target: Vec<u8> = (0..len).map(|i| b'a' + ((i * 7 + next_name as u64) % 26) as u8).collect();
            let ino = fs.symlink(inos[&dir], name_of(&p), &target, 0, 0).unwrap().ino;
            inos.insert(p.clone(), ino);
            state.insert(p, Node::Symlink(target));
        } else {
            let p = pick(&mut rng, &files);
            let Some(Node::File { xattrs, .. }) = state.get_mut(&p) else { unreachable!() };
            let name = format!("user.k{}", rng.below(4)).into_bytes();
            let value = tree::pattern(rng.next(), rng.length(20, 10, 300) as usize);
            // A full xattr block refuses the attribute and changes nothing.
            match fs.setxattr(inos[&p], &name, &value, SetMode::Any) {
                Ok(()) => {
                    xattrs.insert(name, value);
                }
                Err(ext4::Error::NoSpace) => {}
                Err(e) => panic!("setxattr {p}: {e}"),
            }
        }
        if !held.is_empty() && op < OPS - 40 && rng.chance(15) {
            fs.close_inode(held.swap_remove(rng.below(held.len() as u64) as usize)).unwrap();
        }
        states.push(state.clone());
        if rng.chance(12) || op == OPS {
            fs.tx().unwrap().commit().unwrap();
            commits.push((rec.flushes(), op));
        }
    }
    assert!(!held.is_empty(), "some orphans stay open across the final close");
    assert_ne!(fs.current_superblock().unwrap().last_orphan, 0);
    fs.close().unwrap();
    commits.push((rec.flushes(), OPS));
    Workload { states, commits }
}

/// The states a crash right after flush `n` (or torn after it) may leave.
fn window(w: &Workload, n: usize) -> &[State] {
    let k = w.commits.iter().rposition(|&(f, _)| f <= n).unwrap();
    let lo = w.commits[k].1;
    let hi = w.commits.get(k + 1).map_or(OPS, |c| c.1);
    &w.states[lo..=hi]
}

/// Judges a recovered tree against the possible states.
fn check(got: &State, cands: &[State], bs: usize, what: &str) {
    let s = shape(got);
    assert!(
        cands.iter().any(|c| shape(c) == s),
        "{what}: recovered tree matches no state between the last commit and the next:\n{:#?}",
        s.iter().map(|x| (&x.0, x.1, x.2)).collect::<Vec<_>>()
    );
    for (p, n) in got {
        let Node::File { ino, data, .. } = n else { continue };
        // The file under any of its names (it may be renamed later on).
        let versions: Vec<&Arc<Vec<u8>>> = cands
            .iter()
            .flat_map(|c| c.values())
            .filter_map(|v| match v {
                Node::File { ino: i, data: d, .. } if i == ino => Some(d),
                _ => None,
            })
            .collect();
        for (i, b) in data.iter().enumerate() {
            // A shrinking truncate zeroes the tail of the new last block in
            // place, before its commit.
            let ok = versions
                .iter()
                .any(|d| d.get(i) == Some(b) || *b == 0 && d.len() <= i && i < d.len().next_multiple_of(bs));
            assert!(ok, "{what}: {p} byte {i} = {b:#x} is in no state since the last commit");
        }
    }
}

fn fsck_fix(img: &Path, what: &str) {
    let out = Command::new("e2fsck").arg("-fy").arg(img).output().unwrap();
    assert!(out.status.code().unwrap_or(8) <= 1, "{what}: e2fsck -fy:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// Compares e2fsck's recovered image with our recovered tree, file by file.
fn compare_dumps(img: &Path, got: &State, dir: &Path, what: &str) {
    let files: Vec<(&String, &Arc<Vec<u8>>)> = got
        .iter()
        .filter_map(|(p, n)| match n {
            Node::File { data, .. } => Some((p, data)),
            _ => None,
        })
        .collect();
    let cmds: String = files
        .iter()
        .enumerate()
        .map(|(i, (p, _))| format!("dump {p} {}\n", dir.join(i.to_string()).display()))
        .collect();
    let cmdfile = dir.join("cmds");
    std::fs::write(&cmdfile, cmds).unwrap();
    let out = Command::new("debugfs").arg("-f").arg(&cmdfile).arg(img).output().unwrap();
    assert!(out.status.success(), "{what}: debugfs");
    for (i, (p, data)) in files.iter().enumerate() {
        let f = dir.join(i.to_string());
        let dumped = std::fs::read(&f)
            .unwrap_or_else(|_| panic!("{what}: debugfs could not dump {p}: {}", String::from_utf8_lossy(&out.stderr)));
        assert!(dumped == ***data, "{what}: {p} differs between e2fsck's recovery and ours");
        std::fs::remove_file(f).unwrap();
    }
}

fn crash_workload(tag: &str, size: &str, args: &[&str], seed: u64) {
    let scratch = Scratch::new(tag);
    let img = scratch.join("fs.img");
    mkfs(&img, size, None, args);
    let base = std::fs::read(&img).unwrap();
    let rec = Arc::new(RecordingDevice::new(Arc::new(FileDevice::open(&img, false).unwrap())));
    let w = {
        let fs = Ext4::open_device(rec.clone(), &OpenOptions::default()).unwrap();
        run_workload(&fs, &rec, seed)
    };
    let flushes = rec.flushes();
    assert!(w.commits.len() > 20, "enough commits: {}", w.commits.len());
    // The recorder still holds the image (and its lock): read through an unlocked file.
    let plain = Arc::new(FileDevice::from_file(std::fs::File::open(&img).unwrap()).unwrap());
    let unit =
        Ext4::open_device(plain, &OpenOptions { read_only: true, ..Default::default() }).unwrap().block_size() as u64;
    let mut points: Vec<CrashPoint> = (0..=flushes).map(CrashPoint::AfterFlush).collect();
    for seed in 0..2 {
        points.extend((0..flushes).filter(|n| rec.writes_after_flush(*n) > 1).map(|n| CrashPoint::Torn {
            after_flush: n,
            unit,
            seed: (n * 2 + seed) as u64,
        }));
    }
    eprintln!("{tag}: {} commits, {flushes} flushes, {} crash points", w.commits.len(), points.len());
    let dumps = scratch.join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    for (i, point) in points.iter().enumerate() {
        let after = match *point {
            CrashPoint::AfterFlush(n) => n,
            CrashPoint::Torn { after_flush, .. } => after_flush,
        };
        let what = format!("{tag} {point:?}");
        let cands = window(&w, after);
        let crashed = rec.image_at(&base, *point);
        let dev = Arc::new(MemDevice::new(crashed.clone()));
        let got = {
            let fs =
                Ext4::open_device(dev.clone(), &OpenOptions::default()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
            let got = read_state(&fs);
            fs.close().unwrap();
            got
        };
        check(&got, cands, unit as usize, &what);
        let ours = scratch.join("ours.img");
        std::fs::write(&ours, dev.contents()).unwrap();
        let (clean, text) = fsck(&ours);
        assert!(clean, "{what}: e2fsck -fn after our recovery:\n{text}");
        // e2fsck's recovery on a sample of the points.
        if i % 3 == 0 {
            let theirs = scratch.join("theirs.img");
            std::fs::write(&theirs, &crashed).unwrap();
            fsck_fix(&theirs, &what);
            let (clean, text) = fsck(&theirs);
            assert!(clean, "{what}: e2fsck -fn after e2fsck -fy:\n{text}");
            compare_dumps(&theirs, &got, &dumps, &what);
        }
    }
}

#[test]
fn workload_survives_crashes_4k() {
    crash_workload("crash-workload-4k", "32M", &["-t", "ext4", "-b", "4096"], 0x5eed_0001);
}

#[test]
fn workload_survives_crashes_1k_inline() {
    crash_workload("crash-workload-1k", "32M", &["-t", "ext4", "-b", "1024", "-O", "inline_data"], 0x5eed_0002);
}
