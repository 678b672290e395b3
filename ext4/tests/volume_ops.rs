//! Volume-wide requests and the flags around them, with e2fsprogs and the
//! kernel as oracles:
//!
//! - FITRIM ([`Ext4::trim`]) punches exactly the free blocks out of the
//!   image file (its allocated size drops by them, their bytes read as
//!   zeros), leaves every file, the journal and blocks reserved by an
//!   allocation in flight alone, refuses what `ext4_trim_fs` refuses, and
//!   runs safely beside writers (an allocation waits while a group is
//!   punched: a test pauses FITRIM inside its discard);
//! - the volume label is set in one handle, read back, shown by dumpe2fs,
//!   and refused past 16 bytes;
//! - new inodes inherit SYNC, DIRSYNC, NODUMP, NOATIME and DAX from their
//!   directory, kept per type, as the kernel's ext4 (which is asked the
//!   same through a loop mount);
//! - RENAME_WHITEOUT leaves a 0:0 character device with mode 0 under the
//!   old name, e2fsck-clean.

mod common;

use common::Scratch;
use common::kernel::Mount;
use common::tools::{assert_fsck_clean, debugfs, mkfs, run};
use ext4::disk::inode::{FL_DAX, FL_DIRSYNC, FL_NOATIME, FL_NODUMP, FL_SYNC, S_IFCHR, S_IFDIR, S_IFREG};
use ext4::fs::dir::namespace::{NewInode, RenameFlags};
use ext4::{Error, Ext4, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn image(s: &Scratch, name: &str, size: &str) -> PathBuf {
    let img = s.join(name);
    mkfs(&img, size, None, &["-t", "ext4", "-b", "4096"]);
    img
}

fn new(mode: u16) -> NewInode {
    NewInode { mode, uid: 0, gid: 0, rdev: 0, umask: None }
}

fn file(fs: &Ext4, parent: u32, name: &str, data: &[u8]) -> u32 {
    let ino = fs.create(parent, name.as_bytes(), new(S_IFREG | 0o644)).unwrap().ino;
    fs.write(ino, 0, data).unwrap();
    ino
}

fn contents(fs: &Ext4, ino: u32) -> Vec<u8> {
    let inode = fs.read_inode(ino).unwrap();
    let mut buf = vec![0u8; inode.size() as usize];
    let n = fs.read(&inode, 0, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn allocated_bytes(img: &Path) -> u64 {
    std::fs::metadata(img).unwrap().blocks() * 512
}

fn junk(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

#[test]
fn trim_punches_exactly_the_free_blocks_out_of_the_image() {
    let s = Scratch::new("trim");
    let img = image(&s, "fs.img", "64M");
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let keep = junk(3 << 20, 7);
    let kept = file(&fs, ext4::ROOT_INO, "keep", &keep);
    // Data that is then freed: its blocks are free but hold bytes.
    let gone = file(&fs, ext4::ROOT_INO, "gone", &junk(24 << 20, 9));
    let gone_inode = fs.read_inode(gone).unwrap();
    let gone_blocks: Vec<u64> =
        fs.file_extents(&gone_inode).unwrap().iter().flat_map(|e| e.pblk..e.pblk + e.len).collect();
    assert_eq!(gone_blocks.len(), (24 << 20) / 4096);
    fs.unlink(ext4::ROOT_INO, b"gone").unwrap();
    fs.sync().unwrap();
    let before = allocated_bytes(&img);
    let free = fs.statfs().unwrap().free_blocks;
    let trimmed = fs.trim(0, u64::MAX, 0).unwrap();
    assert_eq!(trimmed, free * 4096, "FITRIM answers every free block");
    fs.sync().unwrap();
    let after = allocated_bytes(&img);
    assert!(before - after >= 24 << 20, "the freed 24 MiB left the image file ({before} → {after} bytes)");
    let raw = std::fs::read(&img).unwrap();
    for b in gone_blocks {
        let at = (b * 4096) as usize;
        assert!(raw[at..at + 4096].iter().all(|&x| x == 0), "freed block {b} reads as zeros");
    }
    assert_eq!(contents(&fs, kept), keep, "a file in use keeps its data");
    // A second FITRIM finds the same free blocks (already holes).
    assert_eq!(fs.trim(0, u64::MAX, 0).unwrap(), free * 4096);
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    assert_eq!(contents(&fs, kept), keep);
}

#[test]
fn trim_takes_the_kernels_arguments() {
    let s = Scratch::new("trim-args");
    let img = image(&s, "fs.img", "64M");
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let size = fs.geometry().blocks_count * 4096;
    let group = fs.geometry().blocks_per_group as u64 * 4096;
    for (start, len, min) in
        [(size, u64::MAX, 0), (u64::MAX, 1 << 20, 0), (0, 0, 0), (0, 100, 0), (0, u64::MAX, group + 4096)]
    {
        assert!(
            matches!(fs.trim(start, len, min), Err(Error::InvalidArgument(_))),
            "FITRIM start {start} len {len} minlen {min} must be EINVAL"
        );
    }
    // A range: only its free blocks. The last group's free run counts.
    let last = fs.geometry().group_count - 1;
    let from = fs.geometry().group_first_block(last) * 4096;
    let part = fs.trim(from, u64::MAX, 0).unwrap();
    assert!(part > 0 && part <= size - from);
    // start + len past the end (overflow) is clipped, not refused.
    assert_eq!(fs.trim(from, u64::MAX - 1, 0).unwrap(), part);
    // Runs shorter than minlen stay: a whole group is longer than any run
    // in a group that holds metadata.
    assert!(fs.trim(0, u64::MAX, group).unwrap() <= fs.statfs().unwrap().free_blocks * 4096);
    fs.close().unwrap();
    drop(fs);
    let ro = Ext4::open(&img, &OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
    assert!(matches!(ro.trim(0, u64::MAX, 0), Err(Error::ReadOnly)), "a read-only open trims nothing");
}

#[test]
fn trim_leaves_reserved_blocks_and_runs_beside_writers() {
    let s = Scratch::new("trim-writers");
    let img = image(&s, "fs.img", "128M");
    let fs = Arc::new(Ext4::open(&img, &OpenOptions::default()).unwrap());
    // Blocks reserved by an allocate → write → set_blocks in flight hold
    // their data until mapped.
    let r = fs.allocate(0, 8).unwrap();
    let data = junk(8 * 4096, 3);
    fs.write_reserved(&r, &data).unwrap();
    fs.trim(0, u64::MAX, 0).unwrap();
    let mut raw = vec![0u8; data.len()];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&img).unwrap(), &mut raw, r.start() * 4096).unwrap();
    assert!(raw == data, "reserved blocks keep the bytes written into them");
    drop(r);
    // Writers create, fill, delete and fsync while FITRIM loops.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trimmer = {
        let (fs, stop) = (fs.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds < 3 {
                fs.trim(0, u64::MAX, 0).unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    let writers: Vec<_> = (0..3u8)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..40u32 {
                    let name = format!("w{t}-{i}");
                    let body = junk(((i as usize % 7) + 1) * 37_000, t.wrapping_mul(17).wrapping_add(i as u8));
                    let ino = file(&fs, ext4::ROOT_INO, &name, &body);
                    if i % 3 == 0 {
                        fs.unlink(ext4::ROOT_INO, name.as_bytes()).unwrap();
                    } else {
                        kept.push((ino, body));
                    }
                    if i % 10 == 0 {
                        fs.fsync().unwrap();
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<(u32, Vec<u8>)> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(trimmer.join().unwrap() >= 3);
    for (ino, body) in &kept {
        assert!(contents(&fs, *ino) == *body, "inode {ino} keeps what was written while FITRIM ran");
    }
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    for (ino, body) in &kept {
        assert!(contents(&fs, *ino) == *body, "inode {ino} after reopening");
    }
}

/// A device whose first discard stops until released: the moment a
/// FITRIM has looked at a group's bitmap and is punching its free runs.
struct PauseOnDiscard {
    inner: Arc<dyn ext4::io::BlockDevice>,
    /// (paused, released)
    state: Arc<(std::sync::Mutex<(bool, bool)>, std::sync::Condvar)>,
}

impl ext4::io::BlockDevice for PauseOnDiscard {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> ext4::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> ext4::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> ext4::Result<()> {
        self.inner.flush()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn discard(&self, offset: u64, len: u64) -> ext4::Result<()> {
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().unwrap();
        st.0 = true;
        cv.notify_all();
        while !st.1 {
            st = cv.wait(st).unwrap();
        }
        drop(st);
        self.inner.discard(offset, len)
    }
}

/// The race FITRIM must not lose: between its look at a group's bitmap and
/// the hole it punches, an allocation takes one of those free blocks and
/// writes data there, which the punch then zeroes. Paused inside the
/// first discard, FITRIM holds the journal handle, so a writer that needs
/// blocks waits until the punch is done, and its data survives.
#[test]
fn an_allocation_waits_while_fitrim_punches_a_group() {
    let s = Scratch::new("trim-race");
    let img = image(&s, "fs.img", "64M");
    let state = Arc::new((std::sync::Mutex::new((false, false)), std::sync::Condvar::new()));
    let file_dev = Arc::new(ext4::io::FileDevice::open(&img, false).unwrap());
    let dev = Arc::new(PauseOnDiscard { inner: file_dev, state: state.clone() });
    let fs = Arc::new(Ext4::open_device(dev, &OpenOptions::default()).unwrap());
    file(&fs, ext4::ROOT_INO, "gone", &junk(8 << 20, 5));
    fs.unlink(ext4::ROOT_INO, b"gone").unwrap();
    fs.fsync().unwrap();
    let trimmer = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.trim(0, u64::MAX, 0).unwrap())
    };
    {
        let (lock, cv) = &*state;
        let mut st = lock.lock().unwrap();
        while !st.0 {
            st = cv.wait(st).unwrap();
        }
    }
    let body = junk(1 << 20, 77);
    let writer = {
        let (fs, body) = (fs.clone(), body.clone());
        std::thread::spawn(move || {
            let ino = file(&fs, ext4::ROOT_INO, "new", &body);
            fs.fsync().unwrap();
            ino
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!writer.is_finished(), "an allocation went ahead while FITRIM was punching the free blocks it saw");
    {
        let (lock, cv) = &*state;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }
    assert!(trimmer.join().unwrap() > 0);
    let ino = writer.join().unwrap();
    assert!(contents(&fs, ino) == body, "the data written after the trim survives it");
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    assert!(contents(&fs, ino) == body, "and is in the image");
}

#[test]
fn the_volume_label_is_set_in_one_handle_and_dumpe2fs_shows_it() {
    let s = Scratch::new("label");
    let img = image(&s, "fs.img", "16M");
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    assert_eq!(fs.label().unwrap(), b"");
    fs.set_label(b"sixteen-bytes-ok").unwrap();
    assert_eq!(fs.label().unwrap(), b"sixteen-bytes-ok");
    assert!(matches!(fs.set_label(b"seventeen-bytes-x"), Err(Error::InvalidArgument(_))));
    assert_eq!(fs.label().unwrap(), b"sixteen-bytes-ok", "a refused label changes nothing");
    fs.set_label(b"label.492").unwrap();
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    let out = run(Command::new("dumpe2fs").arg("-h").arg(&img));
    assert!(out.lines().any(|l| l.starts_with("Filesystem volume name:") && l.ends_with("label.492")), "{out}");
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    assert_eq!(fs.label().unwrap(), b"label.492");
    fs.set_label(b"").unwrap();
    fs.close().unwrap();
    drop(fs);
    assert!(run(Command::new("dumpe2fs").arg("-h").arg(&img)).contains("Filesystem volume name:   <none>"));
}

/// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS on a path of a kernel mount.
fn kernel_flags(p: &Path, set: Option<u32>) -> u32 {
    let f = std::fs::File::open(p).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut v: libc::c_long = 0;
    if let Some(flags) = set {
        v = flags as libc::c_long;
        // SAFETY: FS_IOC_SETFLAGS reads one long from a live local.
        assert_eq!(unsafe { libc::ioctl(fd, 0x4008_6602, &v) }, 0, "SETFLAGS {p:?}");
    }
    // SAFETY: FS_IOC_GETFLAGS writes one long into a live local.
    assert_eq!(unsafe { libc::ioctl(fd, 0x8008_6601, &mut v) }, 0, "GETFLAGS {p:?}");
    v as u32
}

const WATCHED: u32 = FL_SYNC | FL_DIRSYNC | FL_NODUMP | FL_NOATIME | FL_DAX;

#[test]
fn new_inodes_inherit_flags_as_the_kernels_ext4() {
    let s = Scratch::new("inherit");
    let img = image(&s, "fs.img", "16M");
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let dir = fs.mkdir(ext4::ROOT_INO, b"d", new(S_IFDIR | 0o755)).unwrap().ino;
    fs.set_flags(dir, WATCHED, WATCHED).unwrap();
    let f = file(&fs, dir, "f", b"x");
    let sub = fs.mkdir(dir, b"sub", new(S_IFDIR | 0o755)).unwrap().ino;
    let fifo = fs.create(dir, b"p", new(0o010644)).unwrap().ino;
    let link = fs.symlink(dir, b"l", b"f", 0, 0).unwrap().ino;
    let tmp = fs.tmpfile(dir, new(S_IFREG | 0o600)).unwrap().ino;
    let ours: Vec<u32> =
        [f, sub, fifo, link, tmp].iter().map(|&i| fs.read_inode(i).unwrap().flags() & WATCHED).collect();
    assert_eq!(ours[0], WATCHED & !FL_DIRSYNC, "a regular file takes all but DIRSYNC");
    assert_eq!(ours[1], WATCHED, "a directory takes all");
    assert_eq!(ours[2], FL_NODUMP | FL_NOATIME, "a FIFO takes nodump and noatime");
    assert_eq!(ours[3], FL_NODUMP | FL_NOATIME, "a symlink too");
    assert_eq!(ours[4], WATCHED & !FL_DIRSYNC, "an O_TMPFILE file as a regular file");
    // Setting what means nothing for the type is refused, as ext4 does.
    assert!(matches!(fs.set_flags(f, FL_DIRSYNC, FL_DIRSYNC), Err(Error::Unsupported(_))));
    fs.set_flags(f, 0, FL_DIRSYNC).unwrap();
    fs.close_inode(tmp).unwrap();
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);

    // The kernel's ext4, asked the same (no DAX flag: not every kernel
    // accepts it without a DAX device; it is checked through the host
    // mount in backend/tests/host_mount_fidelity.rs).
    let kimg = image(&s, "k.img", "16M");
    let Some(m) = Mount::or_skip(&kimg, &s.join("kmnt"), "", "flag inheritance on the kernel's ext4") else { return };
    let d = m.path().join("d");
    std::fs::create_dir(&d).unwrap();
    let asked = WATCHED & !FL_DAX;
    kernel_flags(&d, Some(kernel_flags(&d, None) | asked));
    std::fs::write(d.join("f"), b"x").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    let kernel: Vec<u32> = ["f", "sub"].iter().map(|n| kernel_flags(&d.join(n), None) & WATCHED).collect();
    assert_eq!(kernel, vec![ours[0] & !FL_DAX, ours[1] & !FL_DAX], "flags as the kernel gives them");
}

#[test]
fn rename_whiteout_leaves_a_character_device_0_0() {
    let s = Scratch::new("whiteout");
    let img = image(&s, "fs.img", "16M");
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let a = file(&fs, ext4::ROOT_INO, "a", b"moved");
    file(&fs, ext4::ROOT_INO, "c", b"replaced");
    let wh = RenameFlags { whiteout: Some((1000, 100)), ..RenameFlags::default() };
    fs.rename(ext4::ROOT_INO, b"a", ext4::ROOT_INO, b"b", wh).unwrap();
    let root = fs.read_inode(ext4::ROOT_INO).unwrap();
    let old = fs.lookup(&root, b"a").unwrap().expect("a whiteout under the old name");
    let w = fs.read_inode(old.ino).unwrap();
    assert_eq!((w.mode(), w.rdev(), w.uid(), w.gid(), w.links_count()), (S_IFCHR, 0, 1000, 100, 1));
    assert_eq!(fs.lookup(&root, b"b").unwrap().unwrap().ino, a);
    // Over an existing target, with NOREPLACE refused as usual.
    let both = RenameFlags { noreplace: true, whiteout: Some((0, 0)), ..RenameFlags::default() };
    assert!(matches!(fs.rename(ext4::ROOT_INO, b"b", ext4::ROOT_INO, b"c", both), Err(Error::Exists)));
    fs.rename(ext4::ROOT_INO, b"b", ext4::ROOT_INO, b"c", RenameFlags { whiteout: Some((0, 0)), ..Default::default() })
        .unwrap();
    assert_eq!(contents(&fs, fs.lookup(&root, b"c").unwrap().unwrap().ino), b"moved");
    let ex = RenameFlags { exchange: true, whiteout: Some((0, 0)), ..RenameFlags::default() };
    assert!(matches!(fs.rename(ext4::ROOT_INO, b"a", ext4::ROOT_INO, b"c", ex), Err(Error::InvalidArgument(_))));
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
    let shown = debugfs(&img, "stat /b");
    assert!(shown.contains("Type: character special") && shown.contains("Mode:  0000"), "{shown}");
    assert!(shown.contains("Device major/minor number: 00:00"), "{shown}");
}

#[test]
fn shutdown_stops_every_write_and_the_next_open_recovers() {
    use ext4::fs::shutdown::ShutdownMode;
    let s = Scratch::new("shutdown");
    for mode in [ShutdownMode::FlushLog, ShutdownMode::NoFlush] {
        let img = image(&s, "fs.img", "16M");
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let synced = file(&fs, ext4::ROOT_INO, "synced", b"fsynced before");
        // An open file unlinked before the shutdown: an orphan.
        let open = file(&fs, ext4::ROOT_INO, "open", b"unlinked while open");
        fs.open_inode(open);
        fs.unlink(ext4::ROOT_INO, b"open").unwrap();
        fs.fsync().unwrap();
        file(&fs, ext4::ROOT_INO, "completed", b"completed, not fsynced");
        fs.shutdown(mode).unwrap();
        let on_disk = std::fs::read(&img).unwrap();
        assert!(fs.is_shut_down());
        assert!(matches!(fs.create(ext4::ROOT_INO, b"late", new(S_IFREG | 0o644)), Err(Error::ShutDown)));
        assert!(matches!(fs.write(synced, 0, b"late"), Err(Error::ShutDown)));
        assert!(matches!(fs.set_label(b"late"), Err(Error::ShutDown)));
        assert!(matches!(fs.trim(0, u64::MAX, 0), Err(Error::ShutDown)));
        assert_eq!(contents(&fs, synced), b"fsynced before", "reads go on");
        fs.close_inode(open).unwrap();
        fs.shutdown(mode).unwrap();
        fs.close().unwrap();
        drop(fs);
        assert!(
            std::fs::read(&img).unwrap() == on_disk,
            "{mode:?}: nothing written after the shutdown, close included"
        );
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        assert!(fs.recovery_report().is_some(), "{mode:?}: the next open recovers the journal");
        assert!(fs.read_inode(open).unwrap().links_count() == 0, "the orphan was freed by the next open");
        let root = fs.read_inode(ext4::ROOT_INO).unwrap();
        assert_eq!(contents(&fs, fs.lookup(&root, b"synced").unwrap().unwrap().ino), b"fsynced before");
        let completed = fs.lookup(&root, b"completed").unwrap();
        match mode {
            ShutdownMode::FlushLog => assert_eq!(contents(&fs, completed.unwrap().ino), b"completed, not fsynced"),
            ShutdownMode::NoFlush => assert!(completed.is_none(), "without the log flush, uncommitted work is lost"),
        }
        fs.close().unwrap();
        drop(fs);
        assert_fsck_clean(&img);
    }
}
