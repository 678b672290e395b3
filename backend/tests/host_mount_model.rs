//! The concurrency model through the host mount: four processes at once, in
//! every cache mode, create, write, truncate, punch, rename, link and
//! unlink files in their own directories and in a shared one, and read
//! them back while the others work.
//!
//! Every file's name starts with its tag (`t<tag>-`), and every byte ever
//! written to it is that tag, so any read must show only the tag and zeros.
//! Each process keeps an exact model of its own files and checks them at
//! the end; the parent then reads every file through the mount, unmounts
//! (the daemon must exit cleanly), judges the image with `e2fsck -fn` and
//! reads every file again through the ext4 core: the same bytes.
//!
//! The workers are this test binary run again with `EXT4_MODEL_WORKER` set
//! (so the file has its own `main`: `harness = false` in Cargo.toml).

mod common;

use common::{HostMount, Rng, Scratch, assert_fsck_clean, mkfs};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROCESSES: usize = 4;
const OPS: usize = 400;
const MAX_SIZE: u64 = 96 * 1024;

fn tag_of(name: &str) -> u8 {
    name.strip_prefix('t').and_then(|r| r.split('-').next()).and_then(|t| t.parse().ok()).expect("tagged name")
}

fn check_tags(path: &Path, tag: u8) -> Vec<u8> {
    // A concurrent unlink or rename may take the name away: that is fine.
    let Ok(data) = std::fs::read(path) else { return Vec::new() };
    if let Some(i) = data.iter().position(|&b| b != 0 && b != tag) {
        panic!("{path:?} (tag {tag}) holds byte {} at {i}: another file's data", data[i]);
    }
    data
}

fn punch(f: &std::fs::File, off: u64, len: u64) {
    // SAFETY: fallocate on a valid open descriptor with plain integer
    // arguments; it touches no memory of ours.
    let r = unsafe {
        libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off as i64, len as i64)
    };
    assert_eq!(r, 0, "punch hole: {}", std::io::Error::last_os_error());
}

/// One worker process: `me` works in `own` (exactly modelled) and `shared`.
fn worker(me: usize, own: &Path, shared: &Path, seed: u64) {
    let mut rng = Rng(seed);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut next = 0u32;
    let mut fresh = |tag: u8| {
        next += 1;
        format!("t{tag}-p{me}-{next}")
    };
    for _ in 0..OPS {
        let off = rng.below(MAX_SIZE - 8192);
        let len = 1 + rng.below(8192);
        match rng.below(100) {
            // Private files: an exact model.
            0..10 => {
                let tag = (me * 60 + 1 + rng.below(59) as usize) as u8;
                let name = fresh(tag);
                std::fs::write(own.join(&name), []).unwrap();
                model.insert(name, Vec::new());
            }
            10..55 if !model.is_empty() => {
                let name = model.keys().nth(rng.below(model.len() as u64) as usize).unwrap().clone();
                let tag = tag_of(&name);
                let path = own.join(&name);
                let content = model.get_mut(&name).unwrap();
                let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
                match rng.below(5) {
                    0 | 1 => {
                        f.seek(SeekFrom::Start(off)).unwrap();
                        f.write_all(&vec![tag; len as usize]).unwrap();
                        let end = (off + len) as usize;
                        if content.len() < end {
                            content.resize(end, 0);
                        }
                        content[off as usize..end].fill(tag);
                    }
                    2 => {
                        let size = rng.below(MAX_SIZE);
                        f.set_len(size).unwrap();
                        content.resize(size as usize, 0);
                    }
                    3 => {
                        punch(&f, off, len);
                        let end = ((off + len) as usize).min(content.len());
                        if (off as usize) < end {
                            content[off as usize..end].fill(0);
                        }
                    }
                    _ => {
                        let mut got = Vec::new();
                        f.read_to_end(&mut got).unwrap();
                        assert!(got == *content, "{path:?}: differs from the model");
                    }
                }
            }
            55..62 if !model.is_empty() => {
                let name = model.keys().nth(rng.below(model.len() as u64) as usize).unwrap().clone();
                let new = fresh(tag_of(&name));
                std::fs::rename(own.join(&name), own.join(&new)).unwrap();
                let c = model.remove(&name).unwrap();
                model.insert(new, c);
            }
            62..66 if !model.is_empty() => {
                let name = model.keys().nth(rng.below(model.len() as u64) as usize).unwrap().clone();
                std::fs::remove_file(own.join(&name)).unwrap();
                model.remove(&name);
            }
            // The shared directory: everything races; tags only.
            66..72 => {
                let tag = (me * 60 + 1 + rng.below(59) as usize) as u8;
                std::fs::write(shared.join(fresh(tag)), vec![tag; len as usize]).unwrap();
            }
            _ => {
                let names: Vec<String> = std::fs::read_dir(shared)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().into_string().unwrap())
                    .collect();
                if names.is_empty() {
                    continue;
                }
                let name = &names[rng.below(names.len() as u64) as usize];
                let tag = tag_of(name);
                let path = shared.join(name);
                let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&path) else { continue };
                match rng.below(7) {
                    0 | 1 => {
                        f.write_all_at(&vec![tag; len as usize], off).unwrap();
                    }
                    2 => f.set_len(rng.below(MAX_SIZE)).unwrap(),
                    3 => punch(&f, off, len),
                    4 => {
                        let _ = std::fs::hard_link(&path, shared.join(fresh(tag)));
                    }
                    5 => {
                        let _ = std::fs::rename(&path, shared.join(fresh(tag)));
                    }
                    _ => {
                        if rng.chance(30) {
                            let _ = std::fs::remove_file(&path);
                        } else {
                            check_tags(&path, tag);
                        }
                    }
                }
            }
        }
    }
    for (name, content) in &model {
        let got = std::fs::read(own.join(name)).unwrap();
        assert!(got == *content, "{name}: differs from the model at the end");
    }
}

/// Every regular file under `dir`: relative path → contents, tags checked.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["shared", "p0", "p1", "p2", "p3"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            out.insert(PathBuf::from(sub).join(&name), check_tags(&e.path(), tag_of(&name)));
        }
    }
    out
}

fn run_mode(args: &[&str], seed: u64) {
    let s = Scratch::new("mount-model");
    let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
    mkfs(&img, "128M", &["-t", "ext4", "-O", "inline_data", "-I", "256"]);
    let m = HostMount::new(&img, &mnt, args).unwrap();
    for d in ["shared", "p0", "p1", "p2", "p3"] {
        std::fs::create_dir(mnt.join(d)).unwrap();
    }
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            Command::new(std::env::current_exe().unwrap())
                .env(
                    "EXT4_MODEL_WORKER",
                    format!(
                        "{p} {} {} {}",
                        mnt.join(format!("p{p}")).display(),
                        mnt.join("shared").display(),
                        seed * 10 + p as u64
                    ),
                )
                .spawn()
                .unwrap()
        })
        .collect();
    for (p, mut c) in children.into_iter().enumerate() {
        assert!(c.wait().unwrap().success(), "{args:?}: worker {p} failed");
    }
    let seen = snapshot(&mnt);
    m.unmount().unwrap();
    assert_fsck_clean(&img);
    let fs = ext4::Ext4::open(&img, &ext4::OpenOptions { read_only: true, ..Default::default() }).unwrap();
    for (path, data) in &seen {
        let ino = fs.resolve_path(format!("/{}", path.display()).as_bytes(), false).unwrap();
        let inode = fs.read_inode(ino).unwrap();
        let mut buf = vec![0u8; inode.size() as usize];
        fs.read(&inode, 0, &mut buf).unwrap();
        assert!(buf == *data, "{args:?}: {path:?} differs between the mount and the image");
    }
    println!("host_mount_model {args:?}: {} files checked", seen.len());
}

fn main() {
    if let Ok(spec) = std::env::var("EXT4_MODEL_WORKER") {
        let parts: Vec<&str> = spec.split(' ').collect();
        worker(parts[0].parse().unwrap(), Path::new(parts[1]), Path::new(parts[2]), parts[3].parse().unwrap());
        return;
    }
    if !HostMount::usable_or_skip("host mount model (several processes, every cache mode)") {
        return;
    }
    let seeds = 1 + std::env::var("EXT4_SOAK").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in 0..seeds {
        for args in [&["--cache", "never"][..], &["--cache", "auto"], &["--cache", "always"], &["--writeback"]] {
            run_mode(args, seed);
        }
    }
    println!("test host_mount_model ... ok");
}
