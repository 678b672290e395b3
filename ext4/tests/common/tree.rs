//! Generated source trees covering every kind of file the reader must
//! handle, and a walk of the source that the tests compare an image with.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, symlink};
use std::path::{Path, PathBuf};

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Sets an xattr on `p` without following symlinks.
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let (cp, cn) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings and a live buffer of the given length.
    let r = unsafe { libc::lsetxattr(cp.as_ptr(), cn.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(r, 0, "lsetxattr {p:?} {name}: {}", std::io::Error::last_os_error());
}

/// All xattrs of `p` (not following symlinks), sorted by name.
pub fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let cp = cstr(p);
    let mut names = vec![0u8; 65536];
    // SAFETY: valid path and a buffer of the given length.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {p:?}: {}", std::io::Error::last_os_error());
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        // SAFETY: valid strings and a buffer of the given length.
        let m = unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        assert!(m >= 0, "lgetxattr {p:?}: {}", std::io::Error::last_os_error());
        val.truncate(m as usize);
        out.push((name.to_vec(), val));
    }
    out.sort();
    out
}

/// Sets atime and mtime (with nanoseconds) without following symlinks.
pub fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let cp = cstr(p);
    let ts =
        [libc::timespec { tv_sec: atime.0, tv_nsec: atime.1 }, libc::timespec { tv_sec: mtime.0, tv_nsec: mtime.1 }];
    // SAFETY: valid path and a two-element timespec array.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, cp.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {p:?}: {}", std::io::Error::last_os_error());
}

fn mknod(p: &Path, mode: libc::mode_t, dev: libc::dev_t) -> bool {
    let cp = cstr(p);
    // SAFETY: valid path; mknod has no memory preconditions.
    unsafe { libc::mknod(cp.as_ptr(), mode, dev) == 0 }
}

/// An ACL in the posix_acl_xattr format (version 2): user::rw-,
/// user:1234:r--, group::r--, group:77:rw-, mask::rw-, other::---.
pub fn sample_acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1234),
        (0x04, 4, u32::MAX),
        (0x08, 6, 77),
        (0x10, 6, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// What a generated tree contains, for tests that want specific entries.
pub struct TreeInfo {
    /// Whether device nodes were created (needs root).
    pub device_nodes: bool,
    /// Directory large enough to be htree-indexed.
    pub big_dir: PathBuf,
}

/// Builds the standard source tree under `root` (which must exist and be
/// empty): every kind of file, size class and metadata the reader serves.
/// `big_dir_entries` sizes the htree directory.
pub fn build(root: &Path, big_dir_entries: usize) -> TreeInfo {
    let f = |name: &str, data: &[u8]| {
        let p = root.join(name);
        fs::write(&p, data).unwrap();
        p
    };
    f("empty", b"");
    for n in [1usize, 59, 60, 61, 100, 150] {
        f(&format!("inline_{n}"), &pattern(n as u64, n));
    }
    f("one_block", &pattern(7, 4096));
    f("three_blocks_odd", &pattern(8, 3 * 4096 + 17));
    f("medium", &pattern(9, 300_000));

    // Fragmented: data in every other 4 KiB block gives many extents, and
    // a deeper extent tree than fits in the inode.
    let frag = fs::File::create(root.join("fragmented")).unwrap();
    for i in 0..40u64 {
        frag.write_all_at(&pattern(100 + i, 4096), i * 8192).unwrap();
    }
    drop(frag);

    // Sparse with holes at start, middle and end.
    let sparse = fs::File::create(root.join("sparse")).unwrap();
    sparse.write_all_at(&pattern(200, 5000), 1 << 20).unwrap();
    sparse.write_all_at(&pattern(201, 10), 3 << 20).unwrap();
    sparse.set_len(8 << 20).unwrap();
    drop(sparse);

    // Past 4 GiB: needs large_file, triple-indirect blocks on ext2/3 at 1 KiB.
    let huge = fs::File::create(root.join("huge_sparse")).unwrap();
    huge.write_all_at(&pattern(300, 4096), 5 << 30).unwrap();
    huge.write_all_at(&pattern(301, 3000), 0).unwrap();
    drop(huge);

    // Deep path.
    let mut deep = root.join("deep");
    for i in 0..24 {
        deep = deep.join(format!("level{i:02}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf.txt"), b"at the bottom\n").unwrap();

    // Directories: empty, small, and large (htree).
    fs::create_dir(root.join("empty_dir")).unwrap();
    fs::create_dir(root.join("small_dir")).unwrap();
    for i in 0..10 {
        fs::write(root.join("small_dir").join(format!("f{i}")), format!("small {i}\n")).unwrap();
    }
    let big_dir = root.join("big_dir");
    fs::create_dir(&big_dir).unwrap();
    for i in 0..big_dir_entries {
        let name = format!("entry-with-a-longer-name-{i:06}-{}", "x".repeat(i % 40));
        fs::write(big_dir.join(name), if i % 7 == 0 { format!("{i}") } else { String::new() }).unwrap();
    }
    // Names with non-ASCII bytes.
    let odd = root.join("names");
    fs::create_dir(&odd).unwrap();
    fs::write(odd.join("übergröße"), b"utf8").unwrap();
    fs::write(odd.join(std::ffi::OsStr::from_bytes(b"raw\xff\xfebytes")), b"raw").unwrap();
    fs::write(odd.join("x".repeat(255)), b"max name").unwrap();

    // Symlinks: fast (< 60 bytes), medium (inline with inline_data, else slow), long (slow).
    symlink("one_block", root.join("link_fast")).unwrap();
    symlink(format!("deep/{}", "a".repeat(80)), root.join("link_medium")).unwrap();
    symlink("b/".repeat(500), root.join("link_long")).unwrap();
    symlink("does/not/exist", root.join("link_dangling")).unwrap();

    // Hard link.
    fs::hard_link(root.join("one_block"), root.join("one_block_hardlink")).unwrap();

    // Xattrs: small (in-inode) and large (external block), several namespaces, and ACLs.
    let x = f("with_xattrs", b"xattrs here\n");
    set_xattr(&x, "user.small", b"v");
    set_xattr(&x, "user.empty", b"");
    set_xattr(&x, "trusted.t", b"trusted value");
    set_xattr(&x, "security.s", b"security value");
    let xb = f("with_big_xattr", b"big xattr\n");
    set_xattr(&xb, "user.big", &pattern(400, 900));
    set_xattr(&xb, "user.small", b"1");
    let acl = f("with_acl", b"acl\n");
    set_xattr(&acl, "system.posix_acl_access", &sample_acl());
    fs::create_dir(root.join("acl_dir")).unwrap();
    set_xattr(&root.join("acl_dir"), "system.posix_acl_default", &sample_acl());
    set_xattr(&root.join("acl_dir"), "system.posix_acl_access", &sample_acl());

    // Special files.
    let fifo = cstr(&root.join("fifo"));
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    let device_nodes = mknod(&root.join("chardev"), libc::S_IFCHR | 0o600, libc::makedev(1, 3))
        && mknod(&root.join("blockdev"), libc::S_IFBLK | 0o660, libc::makedev(259, 70000))
        && mknod(&root.join("oldchar"), libc::S_IFCHR | 0o644, libc::makedev(4, 64));

    // Ownership and modes.
    let owned = f("owned", b"owned\n");
    std::os::unix::fs::chown(&owned, Some(100_000), Some(70_000)).ok();
    fs::set_permissions(&owned, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let sticky = root.join("sticky_dir");
    fs::create_dir(&sticky).unwrap();
    fs::set_permissions(&sticky, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();

    // Times: set every entry's times (bottom-up so directories keep theirs),
    // atime after mtime so that reading the tree does not move atime.
    let mut all = Vec::new();
    walk(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().chain(std::iter::once(&root.to_path_buf())).enumerate() {
        let s = 1_600_000_000 + (i as i64) * 1013;
        set_times(p, (s + 500, (i as i64 * 7919) % 1_000_000_000), (s, (i as i64 * 104_729) % 1_000_000_000));
    }
    TreeInfo { device_nodes, big_dir }
}

/// Every path below `root` (not `root` itself).
pub fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let is_dir = fs::symlink_metadata(&p).unwrap().is_dir();
        out.push(p.clone());
        if is_dir {
            walk(&p, out);
        }
    }
}
