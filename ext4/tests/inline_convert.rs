//! The signature feature: inline-data files convert by allocate → write →
//! set_blocks, in exactly one transaction, with no handle open while the
//! data block is written; the results are what e2fsck and debugfs expect.

mod common;

use common::tools::{assert_fsck_clean, debugfs, mkfs, run};
use common::{Scratch, tree};
use ext4::io::{BlockDevice, FileDevice};
use ext4::{Ext4, OpenOptions};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Records every write with whether a journal handle was open at the time.
struct Watching {
    inner: FileDevice,
    fs: OnceLock<Weak<Ext4>>,
    writes: Mutex<Vec<(u64, usize, bool)>>,
}

impl BlockDevice for Watching {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> ext4::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> ext4::Result<()> {
        let open = self.fs.get().and_then(Weak::upgrade).is_some_and(|fs| fs.tx().is_ok_and(|tx| tx.handle_open()));
        self.writes.lock().unwrap().push((offset, buf.len(), open));
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> ext4::Result<()> {
        self.inner.flush()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

/// Largest inline file for 256-byte inodes: 60 bytes in i_block plus the
/// room system.data has in the in-inode xattr area.
const MAX_INLINE_256: usize = 128;

#[test]
fn inline_files_convert_cleanly_in_one_transaction() {
    let scratch = Scratch::new("inline-convert");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let sizes = [0usize, 1, 59, 60, 61, 100, MAX_INLINE_256];
    for n in sizes {
        std::fs::write(src.join(format!("f{n}")), tree::pattern(n as u64, n)).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-b", "4096", "-I", "256", "-O", "inline_data"]);
    for n in sizes {
        let stat = debugfs(&img, &format!("stat /f{n}"));
        assert!(stat.contains("Size of inline data"), "f{n} is not inline to start with:\n{stat}");
    }
    let dev = Arc::new(Watching {
        inner: FileDevice::open(&img, false).unwrap(),
        fs: OnceLock::new(),
        writes: Mutex::new(Vec::new()),
    });
    {
        let fs = Arc::new(Ext4::open_device(dev.clone(), &OpenOptions::default()).unwrap());
        dev.fs.set(Arc::downgrade(&fs)).unwrap();
        let bs = fs.block_size() as u64;
        for n in sizes {
            let ino = fs.resolve_path(format!("/f{n}").as_bytes(), false).unwrap();
            fs.tx().unwrap().commit().unwrap();
            let before = fs.tx().unwrap().stats().commits;
            dev.writes.lock().unwrap().clear();
            assert!(fs.convert_inline(ino).unwrap(), "f{n} converted");
            assert!(!fs.convert_inline(ino).unwrap(), "f{n} converts only once");
            fs.tx().unwrap().commit().unwrap();
            let commits = fs.tx().unwrap().stats().commits - before;
            assert_eq!(commits, 1, "f{n}: one transaction per conversion");
            let inode = fs.read_inode(ino).unwrap();
            assert!(!inode.has_flag(ext4::disk::inode::FL_INLINE_DATA));
            let extents = fs.file_extents(&inode).unwrap();
            if n == 0 {
                assert!(extents.is_empty());
                continue;
            }
            assert_eq!(extents.len(), 1);
            // The data block was written while no handle was open.
            let at = extents[0].pblk * bs;
            let data_writes: Vec<_> = dev.writes.lock().unwrap().iter().filter(|w| w.0 == at).cloned().collect();
            assert!(!data_writes.is_empty(), "f{n}: data block write not seen");
            assert!(data_writes.iter().all(|w| !w.2), "f{n}: data written with a handle open");
        }
        fs.sync().unwrap();
    }
    assert_fsck_clean(&img);
    let bs_sectors = 4096 / 512;
    for n in sizes {
        let out = scratch.join(format!("out{n}"));
        run(Command::new("debugfs").arg("-R").arg(format!("dump /f{n} {}", out.display())).arg(&img));
        assert_eq!(std::fs::read(&out).unwrap(), tree::pattern(n as u64, n), "debugfs cat of f{n}");
        let stat = debugfs(&img, &format!("stat /f{n}"));
        assert!(!stat.contains("inline data"), "f{n} still inline:\n{stat}");
        assert!(stat.contains("Flags: 0x80000"), "f{n} not extent-mapped:\n{stat}");
        let blocks = if n == 0 { 0 } else { bs_sectors };
        assert!(stat.contains(&format!("Blockcount: {blocks}")), "f{n} block count:\n{stat}");
    }
}

#[test]
fn writes_past_inline_capacity_convert_and_small_writes_stay_inline() {
    let scratch = Scratch::new("inline-grow");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"0123456789").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-O", "inline_data"]);
    let mut model = b"0123456789".to_vec();
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f", false).unwrap();
        fs.write(ino, 50, b"still inline, past i_block into system.data").unwrap();
        model.resize(50, 0);
        model.extend_from_slice(b"still inline, past i_block into system.data");
        assert!(fs.read_inode(ino).unwrap().has_flag(ext4::disk::inode::FL_INLINE_DATA));
        let big = tree::pattern(5, 10_000);
        fs.write(ino, 20, &big).unwrap();
        model.resize(20 + big.len().max(model.len() - 20), 0);
        model[20..20 + big.len()].copy_from_slice(&big);
        assert!(!fs.read_inode(ino).unwrap().has_flag(ext4::disk::inode::FL_INLINE_DATA));
        fs.sync().unwrap();
    }
    assert_fsck_clean(&img);
    let out = scratch.join("out");
    run(Command::new("debugfs").arg("-R").arg(format!("dump /f {}", out.display())).arg(&img));
    assert_eq!(std::fs::read(&out).unwrap(), model);
}

#[test]
fn inline_directories_convert_to_one_extent_mapped_block() {
    let scratch = Scratch::new("inline-dir-convert");
    let src = scratch.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/a"), b"a").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-b", "4096", "-I", "256", "-O", "inline_data"]);
    assert!(debugfs(&img, "stat /d").contains("Size of inline data"), "/d starts inline");
    let mut names = vec!["a".to_string()];
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let d = fs.resolve_path(b"/d", false).unwrap();
        let attr = ext4::fs::dir::namespace::NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None };
        while fs.read_inode(d).unwrap().has_flag(ext4::disk::inode::FL_INLINE_DATA) {
            let name = format!("entry-{:02}", names.len());
            fs.create(d, name.as_bytes(), attr).unwrap();
            names.push(name);
            assert!(names.len() < 100, "never converted");
        }
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
    let stat = debugfs(&img, "stat /d");
    assert!(!stat.contains("inline data"), "still inline:\n{stat}");
    assert!(stat.contains("Flags: 0x80000") && stat.contains("EXTENTS"), "not extent-mapped:\n{stat}");
    assert!(stat.contains("Blockcount: 8"), "one 4 KiB block:\n{stat}");
    let listing = debugfs(&img, "ls /d");
    for n in &names {
        assert!(listing.contains(n.as_str()), "{n} missing after conversion:\n{listing}");
    }
}
