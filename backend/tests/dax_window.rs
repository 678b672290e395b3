//! The DAX window's bookkeeping against a strict recording frontend (it
//! refuses overlapping maps and unmaps that do not match a map exactly, as
//! QEMU 11 does) on real images: what the window shows is read back
//! through the recorded mappings, and compared with the file's bytes and
//! blocks after every change. The same invariants through the vhost-user
//! wire and a real mmap'd window: vmtests/tests/frontend_dax.rs.

use ext4::disk::inode::FL_INLINE_DATA;
use ext4::fs::data::fallocate::FallocMode;
use ext4::{Ext4, OpenOptions};
use ext4_virtiofsd::dax::{DaxError, DaxWindow, ShmemChannel};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use testkit::{Scratch, assert_fsck_clean, run};

const MIB: u64 = 1 << 20;
const WINDOW: u64 = 16 * MIB;

/// One SHMEM_MAP the frontend honoured.
struct Mapped {
    len: u64,
    file: File,
    fd_offset: u64,
    writable: bool,
}

/// A frontend that keeps what it was asked to map and reads it back.
#[derive(Default)]
struct Recorder {
    maps: Mutex<BTreeMap<u64, Mapped>>,
    refused: Mutex<u64>,
}

impl Recorder {
    fn refuse(&self, why: String) -> io::Result<()> {
        *self.refused.lock().unwrap() += 1;
        Err(io::Error::other(why))
    }

    /// The window's bytes at `off..off+len`; every byte must be mapped.
    fn read(&self, off: u64, len: u64) -> Vec<u8> {
        let maps = self.maps.lock().unwrap();
        let mut out = Vec::with_capacity(len as usize);
        let mut pos = off;
        while pos < off + len {
            let (start, m) = maps.range(..=pos).next_back().filter(|(s, m)| **s + m.len > pos).unwrap_or_else(|| {
                panic!("window byte {pos:#x} is not mapped");
            });
            let n = (start + m.len - pos).min(off + len - pos);
            let mut b = vec![0u8; n as usize];
            m.file.read_exact_at(&mut b, m.fd_offset + (pos - start)).unwrap();
            out.extend(b);
            pos += n;
        }
        out
    }

    /// A store through the window (must hit a writable mapping).
    fn store(&self, off: u64, data: &[u8]) {
        let maps = self.maps.lock().unwrap();
        let (start, m) = maps.range(..=off).next_back().unwrap();
        assert!(m.writable && start + m.len >= off + data.len() as u64, "store into a read-only or short mapping");
        m.file.write_all_at(data, m.fd_offset + (off - start)).unwrap();
    }

    fn image_ranges(&self) -> Vec<(u64, u64)> {
        self.maps
            .lock()
            .unwrap()
            .values()
            .filter(|m| m.file.metadata().unwrap().len() > WINDOW)
            .map(|m| (m.fd_offset, m.len))
            .collect()
    }
}

impl ShmemChannel for Recorder {
    fn map(&self, shm_offset: u64, len: u64, fd: BorrowedFd<'_>, fd_offset: u64, writable: bool) -> io::Result<()> {
        let mut maps = self.maps.lock().unwrap();
        if len == 0 || shm_offset.checked_add(len).is_none_or(|e| e > WINDOW) {
            drop(maps);
            return self.refuse(format!("map {shm_offset:#x}+{len:#x} outside the window"));
        }
        if maps.range(..shm_offset + len).any(|(s, m)| s + m.len > shm_offset) {
            drop(maps);
            return self.refuse(format!("map {shm_offset:#x}+{len:#x} overlaps a mapping"));
        }
        let file = File::from(fd.try_clone_to_owned()?);
        maps.insert(shm_offset, Mapped { len, file, fd_offset, writable });
        Ok(())
    }

    fn unmap(&self, shm_offset: u64, len: u64) -> io::Result<()> {
        let mut maps = self.maps.lock().unwrap();
        match maps.get(&shm_offset) {
            Some(m) if m.len == len => {
                maps.remove(&shm_offset);
                Ok(())
            }
            _ => {
                drop(maps);
                self.refuse(format!("unmap {shm_offset:#x}+{len:#x} matches no mapping"))
            }
        }
    }
}

/// Equal bytes, or a panic naming the first difference (never the bytes).
#[track_caller]
fn same(got: Vec<u8>, want: Vec<u8>, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i:#x}: window {:#04x}, file {:#04x}", got[i], want[i]);
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i as u64).wrapping_mul(31).wrapping_add(seed * 7919) % 251) as u8).collect()
}

/// An image with an inline file, a 3 MiB file and a sparse file.
fn image(tag: &str) -> (Scratch, std::path::PathBuf) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("tiny"), b"sixty bytes of inline data, more or less, in the inode body!").unwrap();
    std::fs::write(src.join("big"), pattern(1, 3 * MIB as usize)).unwrap();
    let sparse = File::create(src.join("sparse")).unwrap();
    sparse.write_all_at(&pattern(2, 4096), 0).unwrap();
    sparse.write_all_at(&pattern(3, 4096), MIB - 4096).unwrap();
    drop(sparse);
    let img = scratch.join("fs.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "inline_data", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("64M"));
    (scratch, img)
}

struct Rig {
    fs: Arc<Ext4>,
    window: Arc<DaxWindow>,
    fe: Arc<Recorder>,
}

fn open(img: &Path, read_only: bool) -> Rig {
    let fs = Arc::new(Ext4::open(img, &OpenOptions { read_only, ..OpenOptions::default() }).unwrap());
    let file = std::fs::OpenOptions::new().read(true).write(!read_only).open(img).unwrap();
    let window = DaxWindow::new(fs.clone(), file, WINDOW).unwrap();
    let fe = Arc::new(Recorder::default());
    window.set_channel(fe.clone());
    Rig { fs, window, fe }
}

impl Rig {
    fn ino(&self, p: &str) -> u32 {
        self.fs.resolve_path(p.as_bytes(), false).unwrap()
    }

    /// What FUSE_READ returns for `off..off+len` of `ino`, zeros past EOF.
    fn file_bytes(&self, ino: u32, off: u64, len: u64) -> Vec<u8> {
        let inode = self.fs.read_inode(ino).unwrap();
        let mut b = vec![0u8; len as usize];
        let n = self.fs.read(&inode, off, &mut b).unwrap();
        b[n..].fill(0);
        b
    }

    /// Invariant 1: every image range the frontend maps lies inside the
    /// blocks of some mapped file (never metadata or free space).
    fn assert_only_file_blocks(&self, inos: &[u32]) {
        let bs = self.fs.block_size() as u64;
        let mut owned: Vec<(u64, u64)> = Vec::new();
        for &ino in inos {
            let inode = self.fs.read_inode(ino).unwrap();
            for e in self.fs.file_extents(&inode).unwrap() {
                owned.push((e.pblk * bs, e.len * bs));
            }
        }
        for (off, len) in self.fe.image_ranges() {
            assert!(
                owned.iter().any(|(s, l)| off >= *s && off + len <= s + l),
                "the window maps image bytes {off:#x}+{len:#x}, which no mapped file owns"
            );
        }
    }

    fn close(self, img: &Path) {
        self.window.close();
        assert_eq!(self.fs.dax_pin_count(), 0, "pins left after the session");
        self.fs.close().unwrap();
        assert_fsck_clean(img);
    }
}

#[test]
fn inline_file_converts_at_setup_and_its_bytes_show() {
    let (_s, img) = image("dax-inline");
    let r = open(&img, false);
    let t = r.ino("/tiny");
    assert!(r.fs.read_inode(t).unwrap().has_flag(FL_INLINE_DATA));
    let want = r.file_bytes(t, 0, 2 * MIB);
    r.window.setup(t, 0, 2 * MIB, 4 * MIB, false).unwrap();
    assert_eq!(r.window.counters().conversions(), 1);
    assert!(!r.fs.read_inode(t).unwrap().has_flag(FL_INLINE_DATA), "not converted");
    same(r.fe.read(4 * MIB, 2 * MIB), want, "inline file in the window");
    r.assert_only_file_blocks(&[t]);
    // A second mapping of the converted file converts nothing.
    r.window.setup(t, 0, 2 * MIB, 6 * MIB, true).unwrap();
    assert_eq!(r.window.counters().conversions(), 1);
    // A store through the writable mapping is the file's data.
    r.fe.store(6 * MIB + 3, b"STORED");
    assert_eq!(&r.file_bytes(t, 0, 9)[3..], b"STORED");
    assert_eq!(*r.fe.refused.lock().unwrap(), 0);
    r.close(&img);
}

#[test]
fn multi_range_file_reads_right_and_truncate_shows_zeros_never_freed_blocks() {
    let (_s, img) = image("dax-trunc");
    let r = open(&img, false);
    let big = r.ino("/big");
    r.window.setup(big, 0, 2 * MIB, 0, false).unwrap();
    r.window.setup(big, 2 * MIB, 2 * MIB, 2 * MIB, false).unwrap();
    same(r.fe.read(0, 4 * MIB), r.file_bytes(big, 0, 4 * MIB), "window vs file");
    r.assert_only_file_blocks(&[big]);
    // Truncate frees mapped blocks: no EBUSY, the window shows zeros.
    r.fs.truncate(big, 4096).unwrap();
    same(r.fe.read(0, 4 * MIB), r.file_bytes(big, 0, 4 * MIB), "window vs file");
    // Another file takes the freed blocks and fills them: still zeros.
    let root = ext4::ROOT_INO;
    let attr = ext4::fs::dir::namespace::NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None };
    let other = r.fs.create(root, b"other", attr).unwrap().ino;
    r.fs.write(other, 0, &pattern(9, 3 * MIB as usize)).unwrap();
    same(r.fe.read(0, 4 * MIB), r.file_bytes(big, 0, 4 * MIB), "window vs file");
    r.assert_only_file_blocks(&[big]);
    // Extending again reads zeros through the mappings; a write shows up.
    r.fs.truncate(big, 3 * MIB).unwrap();
    r.window.refresh(big);
    r.fs.write(big, 2 * MIB + 100, b"grown").unwrap();
    r.window.refresh(big);
    same(r.fe.read(0, 4 * MIB), r.file_bytes(big, 0, 4 * MIB), "window vs file");
    r.assert_only_file_blocks(&[big]);
    assert_eq!(*r.fe.refused.lock().unwrap(), 0);
    r.close(&img);
}

#[test]
fn holes_fill_under_mappings_and_punch_under_a_writable_mapping_gets_new_blocks() {
    let (_s, img) = image("dax-holes");
    let r = open(&img, false);
    let sp = r.ino("/sparse");
    r.window.setup(sp, 0, 2 * MIB, 0, false).unwrap();
    same(r.fe.read(0, 2 * MIB), r.file_bytes(sp, 0, 2 * MIB), "window vs file");
    // A write into a hole under a read-only mapping is mapped at refresh.
    r.fs.write(sp, 8192, b"into the hole").unwrap();
    r.window.refresh(sp);
    same(r.fe.read(0, 2 * MIB), r.file_bytes(sp, 0, 2 * MIB), "window vs file");
    assert!(r.window.counters().remaps() >= 1);
    // A file grown past its mapping's EOF part reads right through it.
    r.fs.write(sp, MIB + 4096, b"grown by write").unwrap();
    r.window.refresh(sp);
    same(r.fe.read(0, 2 * MIB), r.file_bytes(sp, 0, 2 * MIB), "window vs file");
    // Writable: every page inside the file has a block; punch keeps that.
    let big = r.ino("/big");
    r.window.setup(big, 0, 2 * MIB, 4 * MIB, true).unwrap();
    r.fs.fallocate(big, FallocMode::PunchHole, 4096, 65536).unwrap();
    r.window.refresh(big);
    same(r.fe.read(4 * MIB, 2 * MIB), r.file_bytes(big, 0, 2 * MIB), "window vs file");
    r.fe.store(4 * MIB + 8192, b"after punch");
    assert_eq!(&r.file_bytes(big, 8192, 11), b"after punch");
    r.assert_only_file_blocks(&[sp, big]);
    assert_eq!(*r.fe.refused.lock().unwrap(), 0);
    r.close(&img);
}

#[test]
fn unlink_of_a_mapped_file_frees_nothing_the_window_shows() {
    let (_s, img) = image("dax-unlink");
    let r = open(&img, false);
    let big = r.ino("/big");
    r.fs.open_inode(big);
    r.window.setup(big, 0, 2 * MIB, 0, true).unwrap();
    r.fs.unlink(ext4::ROOT_INO, b"big").unwrap();
    // Still open: the mapping still shows the file.
    same(r.fe.read(0, 2 * MIB), r.file_bytes(big, 0, 2 * MIB), "window vs file");
    // The last close frees the blocks: the window switches to zeros first.
    r.fs.close_inode(big).unwrap();
    same(r.fe.read(0, 2 * MIB), vec![0u8; 2 * MIB as usize], "freed blocks");
    // A new file takes the freed inode number: the old mapping is not its.
    let attr = ext4::fs::dir::namespace::NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None };
    let reused = r.fs.create(ext4::ROOT_INO, b"reused", attr).unwrap().ino;
    assert_eq!(reused, big, "the test wants the freed inode number reused");
    r.fs.write(reused, 0, &pattern(5, 2 * MIB as usize)).unwrap();
    r.window.refresh(reused);
    same(r.fe.read(0, 2 * MIB), vec![0u8; 2 * MIB as usize], "a dead file's mapping after its number was reused");
    assert_eq!(*r.fe.refused.lock().unwrap(), 0);
    r.close(&img);
}

#[test]
fn hostile_requests_are_refused_and_change_nothing() {
    let (_s, img) = image("dax-hostile");
    let r = open(&img, false);
    let big = r.ino("/big");
    let bad = |e: Result<(), DaxError>| assert!(matches!(e, Err(DaxError::Invalid(_))), "{e:?}");
    bad(r.window.setup(big, 0, 2 * MIB, WINDOW - MIB, false)); // past the window
    bad(r.window.setup(big, 0, 2 * MIB, WINDOW, false));
    bad(r.window.setup(big, 0, u64::MAX, 0, false)); // overflowing length
    bad(r.window.setup(big, u64::MAX - 4095, 2 * MIB, 0, false));
    bad(r.window.setup(big, 0, 2 * MIB, u64::MAX - 4095, false));
    bad(r.window.setup(big, 100, 4096, 0, false)); // misaligned
    bad(r.window.setup(big, 0, 0, 0, false)); // empty
    bad(r.window.setup(big, 0, 1000, 0, false)); // not whole pages
    r.window.setup(big, 0, 2 * MIB, 0, false).unwrap();
    bad(r.window.remove(&[(MIB, 1000)]));
    bad(r.window.remove(&[(MIB + 1, 4096)]));
    // A request with one bad range removes nothing, not even its good ones.
    assert!(matches!(r.window.remove(&[(0, 2 * MIB), (8 * MIB, 2 * MIB)]), Err(DaxError::NotMapped(..))));
    assert_eq!(r.window.mapping_count(), 1);
    r.window.remove(&[(0, 2 * MIB)]).unwrap();
    assert!(matches!(r.window.remove(&[(0, 2 * MIB)]), Err(DaxError::NotMapped(..))));
    bad(r.window.remove(&[(u64::MAX, 2)]));
    assert!(r.window.setup(ext4::ROOT_INO, 0, 4096, 0, false).is_err(), "a directory was mapped");
    assert!(r.window.setup(999_999, 0, 4096, 0, false).is_err(), "a bogus inode was mapped");
    assert_eq!(r.window.mapping_count(), 0);
    // Overlapping setups replace what they overlap (never two maps at once).
    r.window.setup(big, 0, 2 * MIB, 0, false).unwrap();
    r.window.setup(big, 2 * MIB, 2 * MIB, MIB, true).unwrap();
    assert_eq!(r.window.mapping_count(), 1);
    // Removing half of a mapping keeps the other half, still pinned.
    r.window.remove(&[(MIB, MIB)]).unwrap();
    assert_eq!(r.window.mapping_count(), 1);
    same(r.fe.read(2 * MIB, MIB), r.file_bytes(big, 3 * MIB, MIB), "window vs file");
    r.fs.truncate(big, 0).unwrap();
    same(r.fe.read(2 * MIB, MIB), vec![0u8; MIB as usize], "freed blocks");
    assert_eq!(*r.fe.refused.lock().unwrap(), 0, "the window sent something a strict frontend refuses");
    r.close(&img);
}

#[test]
fn read_only_images_refuse_writable_mappings_and_serve_inline_files_from_a_copy() {
    let (_s, img) = image("dax-ro");
    let before = std::fs::read(&img).unwrap();
    let r = open(&img, true);
    let t = r.ino("/tiny");
    assert!(matches!(r.window.setup(t, 0, 2 * MIB, 0, true), Err(DaxError::ReadOnly)));
    r.window.setup(t, 0, 2 * MIB, 0, false).unwrap();
    same(r.fe.read(0, 2 * MIB), r.file_bytes(t, 0, 2 * MIB), "window vs file");
    assert!(r.fs.read_inode(t).unwrap().has_flag(FL_INLINE_DATA), "a read-only image was converted");
    let big = r.ino("/big");
    r.window.setup(big, 2 * MIB, 2 * MIB, 2 * MIB, false).unwrap();
    same(r.fe.read(2 * MIB, 2 * MIB), r.file_bytes(big, 2 * MIB, 2 * MIB), "window vs file");
    r.window.close();
    r.fs.close().unwrap();
    assert_eq!(std::fs::read(&img).unwrap(), before, "a read-only session changed the image");
}

/// A frontend that stops inside the first SHMEM_MAP until told to go on.
struct Pausing {
    inner: Recorder,
    gate: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl ShmemChannel for Pausing {
    fn map(&self, shm_offset: u64, len: u64, fd: BorrowedFd<'_>, fd_offset: u64, writable: bool) -> io::Result<()> {
        if let Some((paused, go_on)) = self.gate.lock().unwrap().take() {
            paused.send(()).unwrap();
            go_on.recv().unwrap();
        }
        self.inner.map(shm_offset, len, fd, fd_offset, writable)
    }

    fn unmap(&self, shm_offset: u64, len: u64) -> io::Result<()> {
        self.inner.unmap(shm_offset, len)
    }
}

/// The race between setting up a mapping and freeing its blocks: the
/// setup is paused after it resolved the blocks and while the frontend
/// maps them. A truncate started then must wait for the mapping to be in
/// place and then switch it to zeros; it must neither fail with EBUSY nor
/// free the blocks while the frontend is mapping them.
#[test]
fn a_truncate_during_map_setup_waits_and_then_unmaps() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::channel;
    let (_s, img) = image("dax-race");
    let fs = Arc::new(Ext4::open(&img, &OpenOptions::default()).unwrap());
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&img).unwrap();
    let window = DaxWindow::new(fs.clone(), file, WINDOW).unwrap();
    let (paused_tx, paused_rx) = channel();
    let (go_tx, go_rx) = channel();
    let fe = Arc::new(Pausing { inner: Recorder::default(), gate: Mutex::new(Some((paused_tx, go_rx))) });
    window.set_channel(fe.clone());
    let big = fs.resolve_path(b"/big", false).unwrap();
    let setup = {
        let window = window.clone();
        std::thread::spawn(move || window.setup(big, 0, 2 * MIB, 0, false))
    };
    paused_rx.recv().unwrap();
    let truncated = Arc::new(AtomicBool::new(false));
    let truncate = {
        let (fs, truncated) = (fs.clone(), truncated.clone());
        std::thread::spawn(move || {
            let r = fs.truncate(big, 0);
            truncated.store(true, Ordering::SeqCst);
            r
        })
    };
    // The truncate cannot get past the inode lock the setup holds.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!truncated.load(Ordering::SeqCst), "truncate ran while the blocks were being mapped");
    go_tx.send(()).unwrap();
    setup.join().unwrap().unwrap();
    truncate.join().unwrap().unwrap();
    same(fe.inner.read(0, 2 * MIB), vec![0u8; 2 * MIB as usize], "the window after the truncate");
    window.close();
    assert_eq!(fs.dax_pin_count(), 0);
    fs.close().unwrap();
    assert_fsck_clean(&img);
}

/// A guest may store past EOF inside the last page of a writable mapping
/// (the page is the file's last block). Growing the file — truncate up, a
/// write past the end, fallocate — must not turn those bytes into file
/// data: they read as zeros, as on the kernel's ext4 (generic/749).
#[test]
fn stores_past_eof_never_become_file_data_when_the_file_grows() {
    let (_s, img) = image("dax-eof");
    let r = open(&img, false);
    let attr = || ext4::fs::dir::namespace::NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None };
    type Grow<'a> = (&'a str, &'a dyn Fn(&Ext4, u32));
    let grow: [Grow; 3] = [
        ("truncate up", &|fs, ino| fs.truncate(ino, 8192).unwrap()),
        ("write past the end", &|fs, ino| {
            fs.write(ino, 6000, b"after a gap").unwrap();
        }),
        ("fallocate", &|fs, ino| fs.fallocate(ino, FallocMode::Default, 0, 16384).unwrap()),
    ];
    for (i, (how, grow)) in grow.iter().enumerate() {
        let name = format!("eof{i}");
        let ino = r.fs.create(ext4::ROOT_INO, name.as_bytes(), attr()).unwrap().ino;
        r.fs.write(ino, 0, &pattern(i as u64, 5000)).unwrap();
        let moffset = i as u64 * 2 * MIB;
        r.window.setup(ino, 0, 2 * MIB, moffset, true).unwrap();
        r.fe.store(moffset + 5000, &[0xee; 8192 - 5000]);
        same(r.file_bytes(ino, 5000, 3192), vec![0u8; 3192], how); // reads stop at EOF
        grow(&r.fs, ino);
        r.window.refresh(ino);
        let got = r.file_bytes(ino, 5000, 1000);
        same(got, vec![0u8; 1000], &format!("{how}: the old end's tail"));
        // Inside the file the window is the file; past EOF in the last page
        // it keeps what the guest stored there (as a shared page would).
        let size = r.fs.read_inode(ino).unwrap().size();
        same(r.fe.read(moffset, size), r.file_bytes(ino, 0, size), &format!("{how}: window vs file"));
    }
    r.close(&img);
}
