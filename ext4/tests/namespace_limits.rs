//! Limits of the namespace operations: over-long names, a full inode table,
//! link count overflow, RENAME_NOREPLACE and RENAME_EXCHANGE across
//! parents, and moving a directory below itself. Each returns its
//! errno-style error (or does the swap) and leaves the image fsck-clean.

mod common;

use common::Scratch;
use common::tools::{assert_fsck_clean, debugfs, mkfs};
use ext4::fs::dir::namespace::{NewInode, RenameFlags};
use ext4::{Error, Ext4, OpenOptions, ROOT_INO};
use std::path::Path;

const FILE: NewInode = NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None };
const DIR: NewInode = NewInode { mode: 0o040755, uid: 0, gid: 0, rdev: 0, umask: None };

/// A fresh image from a source tree built by `fill`.
fn image(scratch: &Scratch, size: &str, args: &[&str], fill: impl FnOnce(&Path)) -> std::path::PathBuf {
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    fill(&src);
    let img = scratch.join("fs.img");
    mkfs(&img, size, Some(&src), args);
    img
}

/// Names in directory `ino`, "." and ".." left out, sorted.
fn names(fs: &Ext4, ino: u32) -> Vec<Vec<u8>> {
    let dir = fs.read_inode(ino).unwrap();
    let mut out = Vec::new();
    fs.read_dir(&dir, 0, &mut |e, _| {
        if e.name != b"." && e.name != b".." {
            out.push(e.name.clone());
        }
        true
    })
    .unwrap();
    out.sort();
    out
}

#[test]
fn names_over_255_bytes_are_invalid() {
    let scratch = Scratch::new("nl-names");
    let img = image(&scratch, "8M", &["-t", "ext4"], |src| {
        std::fs::write(src.join("f"), b"x").unwrap();
        std::fs::create_dir(src.join("d")).unwrap();
    });
    let long = vec![b'n'; 256];
    let max = vec![b'm'; 255];
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let f = fs.resolve_path(b"/f", false).unwrap();
        let d = fs.resolve_path(b"/d", false).unwrap();
        assert!(matches!(fs.create(ROOT_INO, &long, FILE), Err(Error::InvalidName)));
        assert!(matches!(fs.mkdir(ROOT_INO, &long, DIR), Err(Error::InvalidName)));
        assert!(matches!(fs.symlink(ROOT_INO, &long, b"f", 0, 0), Err(Error::InvalidName)));
        assert!(matches!(fs.symlink(ROOT_INO, &long, &[b't'; 100], 0, 0), Err(Error::InvalidName)));
        assert!(matches!(fs.link(f, d, &long), Err(Error::InvalidName)));
        assert!(matches!(fs.rename(ROOT_INO, b"f", d, &long, RenameFlags::default()), Err(Error::InvalidName)));
        assert!(matches!(fs.rename(ROOT_INO, &long, d, b"g", RenameFlags::default()), Err(Error::InvalidName)));
        // Exactly 255 bytes is fine.
        fs.create(d, &max, FILE).unwrap();
        assert_eq!(names(&fs, d), vec![max.clone()]);
        assert_eq!(names(&fs, ROOT_INO), vec![b"d".to_vec(), b"f".to_vec(), b"lost+found".to_vec()]);
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
    assert!(debugfs(&img, "ls /d").contains(std::str::from_utf8(&max).unwrap()));
}

#[test]
fn creating_until_no_inodes_are_left() {
    let scratch = Scratch::new("nl-inodes");
    let img = image(&scratch, "8M", &["-t", "ext4", "-N", "32"], |_| {});
    let mut created = Vec::new();
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let total = fs.statfs().unwrap().inodes;
        let sub = fs.mkdir(ROOT_INO, b"sub", DIR).unwrap().ino;
        let mut i = 0u32;
        let err = loop {
            assert!(i as u64 <= total, "more files created than the image has inodes");
            let (parent, name) = if i % 2 == 0 { (ROOT_INO, format!("r{i}")) } else { (sub, format!("s{i}")) };
            let r = if i % 5 == 4 {
                fs.mkdir(parent, name.as_bytes(), DIR)
            } else {
                fs.create(parent, name.as_bytes(), FILE)
            };
            match r {
                Ok(_) => created.push((parent, name.into_bytes())),
                Err(e) => break e,
            }
            i += 1;
        };
        assert!(matches!(err, Error::NoInodes), "{err:?}");
        assert_eq!(fs.statfs().unwrap().free_inodes, 0);
        assert!(matches!(fs.symlink(sub, b"l", b"target", 0, 0), Err(Error::NoInodes)));
        for parent in [ROOT_INO, sub] {
            let mut want: Vec<Vec<u8>> = created.iter().filter(|(p, _)| *p == parent).map(|(_, n)| n.clone()).collect();
            if parent == ROOT_INO {
                want.extend([b"lost+found".to_vec(), b"sub".to_vec()]);
            }
            want.sort();
            assert_eq!(names(&fs, parent), want);
        }
        fs.close().unwrap();
    }
    assert!(created.len() > 10, "only {} created", created.len());
    assert_fsck_clean(&img);
    let listing = debugfs(&img, "ls /sub");
    for (p, n) in &created {
        if *p != ROOT_INO {
            assert!(listing.contains(std::str::from_utf8(n).unwrap()), "debugfs misses {n:?}");
        }
    }
}

#[test]
fn linking_until_too_many_links() {
    let scratch = Scratch::new("nl-links");
    let img = image(&scratch, "64M", &["-t", "ext4", "-N", "64"], |src| {
        std::fs::write(src.join("f"), b"linked").unwrap();
        std::fs::create_dir(src.join("l")).unwrap();
    });
    let links;
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let f = fs.resolve_path(b"/f", false).unwrap();
        let l = fs.resolve_path(b"/l", false).unwrap();
        let mut n = 0u32;
        let err = loop {
            assert!(n < 70_000, "no link limit");
            match fs.link(f, l, format!("{n:x}").as_bytes()) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::TooManyLinks(i) if i == f), "{err:?}");
        links = fs.read_inode(f).unwrap().links_count();
        assert_eq!(links as u32, n + 1);
        assert_eq!(links, 65000);
        // Still refused, and a removal makes room again.
        assert!(matches!(fs.link(f, ROOT_INO, b"more"), Err(Error::TooManyLinks(_))));
        fs.unlink(l, b"0").unwrap();
        fs.link(f, ROOT_INO, b"more").unwrap();
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
    assert!(debugfs(&img, "stat /f").contains("Links: 65000"));
}

#[test]
fn rename_noreplace_exchange_and_loops() {
    let scratch = Scratch::new("nl-rename");
    let img = image(&scratch, "8M", &["-t", "ext4"], |src| {
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::create_dir_all(src.join("b/y/inner")).unwrap();
        std::fs::write(src.join("a/x"), b"file x").unwrap();
        std::fs::write(src.join("a/other"), b"other").unwrap();
        std::fs::create_dir_all(src.join("p/q/r")).unwrap();
    });
    let (a, b, x, y);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        a = fs.resolve_path(b"/a", false).unwrap();
        b = fs.resolve_path(b"/b", false).unwrap();
        x = fs.resolve_path(b"/a/x", false).unwrap();
        y = fs.resolve_path(b"/b/y", false).unwrap();
        let noreplace = RenameFlags { noreplace: true, ..RenameFlags::default() };
        assert!(matches!(fs.rename(a, b"x", a, b"other", noreplace), Err(Error::Exists)));
        assert!(matches!(fs.rename(a, b"x", b, b"y", noreplace), Err(Error::Exists)));
        // Nothing moved.
        assert_eq!(fs.resolve_path(b"/a/x", false).unwrap(), x);
        let (la, lb) = (fs.read_inode(a).unwrap().links_count(), fs.read_inode(b).unwrap().links_count());
        // Exchange a file in /a with a directory in /b.
        let exchange = RenameFlags { exchange: true, ..RenameFlags::default() };
        fs.rename(a, b"x", b, b"y", exchange).unwrap();
        assert_eq!(fs.resolve_path(b"/a/x", false).unwrap(), y);
        assert_eq!(fs.resolve_path(b"/b/y", false).unwrap(), x);
        assert_eq!(fs.resolve_path(b"/a/x/..", false).unwrap(), a);
        assert_eq!(fs.resolve_path(b"/a/x/inner/../..", false).unwrap(), a);
        assert_eq!(fs.read_inode(a).unwrap().links_count(), la + 1);
        assert_eq!(fs.read_inode(b).unwrap().links_count(), lb - 1);
        // A directory cannot move below itself, nor into itself.
        let p = fs.resolve_path(b"/p", false).unwrap();
        let r = fs.resolve_path(b"/p/q/r", false).unwrap();
        assert!(fs.rename(ROOT_INO, b"p", r, b"p2", RenameFlags::default()).is_err());
        assert!(fs.rename(ROOT_INO, b"p", p, b"p2", RenameFlags::default()).is_err());
        assert!(fs.rename(r, b"..", ROOT_INO, b"z", RenameFlags::default()).is_err());
        assert_eq!(fs.resolve_path(b"/p/q/r", false).unwrap(), r);
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
    // debugfs sees the swap: /a/x a directory whose ".." is /a, /b/y the file.
    let ls = debugfs(&img, "ls -p /a");
    assert!(ls.contains(&format!("/{y}/040755/")) && ls.contains("/x/"), "{ls}");
    let ls = debugfs(&img, "ls -p /a/x");
    assert!(ls.contains(&format!("/{a}/040755/0/0/../")), "{ls}");
    let ls = debugfs(&img, "ls -p /b");
    assert!(ls.contains(&format!("/{x}/100644/")) && ls.contains("/y/"), "{ls}");
    assert_eq!(debugfs(&img, "cat /b/y"), "file x");
}
