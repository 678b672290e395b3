//! Extended attributes, POSIX ACLs, inline data and symlink targets read
//! from images built by `mke2fs -d`, checked against the source tree
//! (python3 `os.listxattr`/`os.getxattr`, `getfacl`) and `debugfs`.
//!
//! Needs e2fsprogs, python3, and the Debian packages `attr` (setfattr) and
//! `acl` (setfacl, getfacl).

use ext4::disk::acl::Acl;
use ext4::disk::inode::FL_INLINE_DATA;
use ext4::disk::xattr::{entry_hash, parse_block};
use ext4::{Error, Ext4, Location, OpenOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("ext4-xattr-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("src")).unwrap();
        Scratch(p)
    }
    fn src(&self) -> PathBuf {
        self.0.join("src")
    }
    fn img(&self) -> PathBuf {
        self.0.join("img")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Builds the image from `s.src()` with mke2fs and checks it with e2fsck.
fn mkfs(s: &Scratch, block_size: u32, features: &str) {
    let bs = block_size.to_string();
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-I",
            "256",
            "-b",
            &bs,
            "-O",
            features,
            "-d",
            path_str(&s.src()),
            path_str(&s.img()),
            "16M",
        ],
    );
    run("e2fsck", &["-fn", path_str(&s.img())]);
}

fn open(s: &Scratch) -> Ext4 {
    Ext4::open(s.img(), &OpenOptions { read_only: true, ..Default::default() }).unwrap()
}

/// `debugfs -R "stat /name"`.
fn debugfs_stat(s: &Scratch, name: &str) -> String {
    run("debugfs", &["-R", &format!("stat /{name}"), path_str(&s.img())])
}

/// The number after `key` in debugfs stat output.
fn stat_field(stat: &str, key: &str) -> u64 {
    let rest = &stat[stat.find(key).unwrap_or_else(|| panic!("no {key} in {stat}")) + key.len()..];
    let word = rest.split_whitespace().next().unwrap();
    match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => word.parse().unwrap(),
    }
}

fn ino_of(s: &Scratch, name: &str) -> u32 {
    stat_field(&debugfs_stat(s, name), "Inode:") as u32
}

/// Sets xattr `name` on `path` (not following symlinks) via python3.
fn setxattr(path: &Path, name: &str, value: &[u8]) {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    let code = format!(
        "import os,sys; os.setxattr(sys.argv[1], bytes.fromhex('{}'), bytes.fromhex('{hex}'), follow_symlinks=False)",
        name.as_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    run("python3", &["-c", &code, path_str(path)]);
}

/// The source's xattrs as python3 sees them (names and values as bytes).
fn source_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let code = "import os,sys\n\
                p=sys.argv[1]\n\
                for n in os.listxattr(p, follow_symlinks=False):\n\
                \x20   print(os.fsencode(n).hex(), os.getxattr(p, n, follow_symlinks=False).hex())";
    let unhex = |h: &str| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect();
    run("python3", &["-c", code, path_str(path)])
        .lines()
        .map(|l| {
            let mut w = l.split(' ');
            (unhex(w.next().unwrap()), unhex(w.next().unwrap_or("")))
        })
        .collect()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

fn xattrs_match_source(block_size: u32, features: &str) {
    let s = Scratch::new(&format!("attrs-{block_size}"));
    let src = s.src();
    let (big, many_count) = if block_size >= 4096 { (3000, 20) } else { (700, 8) };
    let f = |n: &str| {
        let p = src.join(n);
        std::fs::write(&p, b"some data\n").unwrap();
        p
    };
    let small = f("small");
    setxattr(&small, "user.a", b"1");
    setxattr(&small, "trusted.t", b"tv");
    setxattr(&small, "security.s", &[0, 1, 2]);
    setxattr(&small, "user.empty", b"");
    let large = f("large");
    setxattr(&large, "user.big", &pattern(big, 7));
    setxattr(&large, "user.s", b"short");
    let many = f("many");
    for i in 0..many_count {
        setxattr(&many, &format!("user.attr{i:02}"), &pattern(30 + i, i as u8));
    }
    let utf = f("utf");
    setxattr(&utf, "user.\u{e9}t\u{e9}", "\u{fc}ber".as_bytes());
    f("plain");
    let acl = f("acl");
    run("setfacl", &["-m", "u:1000:r,g:50:rw,u:2000:rwx", path_str(&acl)]);
    let dacl = src.join("dacl");
    std::fs::create_dir(&dacl).unwrap();
    run("setfacl", &["-m", "u:3:w", path_str(&dacl)]);
    run("setfacl", &["-d", "-m", "u:1000:rx,g:7:r", path_str(&dacl)]);
    mkfs(&s, block_size, features);
    let fs = open(&s);

    let mut saw_block = false;
    for name in ["small", "large", "many", "utf", "plain", "acl", "dacl"] {
        let inode = fs.read_inode(ino_of(&s, name)).unwrap();
        let want = source_xattrs(&src.join(name));
        let listed = fs.list_xattrs(&inode).unwrap();
        let got: BTreeMap<Vec<u8>, Vec<u8>> = listed.iter().map(|x| (x.name.clone(), x.value.clone())).collect();
        assert_eq!(got.len(), listed.len(), "{name}: duplicate names");
        assert_eq!(got, want, "{name}: xattrs differ from the source");
        for (n, v) in &want {
            assert_eq!(&fs.get_xattr(&inode, n).unwrap(), v, "{name}: get_xattr {}", String::from_utf8_lossy(n));
        }
        assert!(matches!(fs.get_xattr(&inode, b"user.nope"), Err(Error::NoAttr)));
        assert!(matches!(fs.get_xattr(&inode, b"bogus.x"), Err(Error::NoAttr)));
        assert!(!got.contains_key(&b"system.data"[..]));
        if inode.has_flag(FL_INLINE_DATA) {
            // Hidden from the list, but readable.
            fs.get_xattr(&inode, b"system.data").unwrap();
        }
        // Entry hashes that mke2fs wrote into the xattr block match ours.
        let blk = inode.file_acl();
        if blk != 0 {
            saw_block = true;
            let data = fs.read_meta_block(blk, "xattr block").unwrap();
            let (_, attrs) = parse_block(&data, blk, fs.csum_seed()).unwrap();
            for a in attrs {
                assert_eq!(a.entry.hash, entry_hash(&a.entry.name, &a.value, false), "{name}: hash of {:?}", a.entry);
            }
        }
    }
    assert!(saw_block, "no attribute went to an external block");
    assert!(fs.read_inode(ino_of(&s, "large")).unwrap().file_acl() != 0);

    // ACLs rendered like getfacl.
    for (name, has_default) in [("acl", false), ("dacl", true)] {
        let inode = fs.read_inode(ino_of(&s, name)).unwrap();
        let access = Acl::from_xattr(&fs.get_xattr(&inode, b"system.posix_acl_access").unwrap()).unwrap();
        let mut text = access.to_text(false);
        if has_default {
            let default = Acl::from_xattr(&fs.get_xattr(&inode, b"system.posix_acl_default").unwrap()).unwrap();
            text += &default.to_text(true);
        }
        let want = run("getfacl", &["-n", "-E", "--omit-header", path_str(&src.join(name))]);
        assert_eq!(text.trim_end(), want.trim_end(), "{name}: ACL text");
    }
}

#[test]
fn xattrs_match_source_4k_inline_data_metadata_csum() {
    xattrs_match_source(4096, "inline_data,metadata_csum");
}

#[test]
fn xattrs_match_source_1k_without_metadata_csum() {
    xattrs_match_source(1024, "^metadata_csum");
}

#[test]
fn xattr_block_checksum_mismatch_names_the_block() {
    let s = Scratch::new("csum");
    let p = s.src().join("f");
    std::fs::write(&p, b"x").unwrap();
    setxattr(&p, "user.big", &pattern(3000, 1));
    mkfs(&s, 4096, "metadata_csum");
    let ino = ino_of(&s, "f");
    let blk = stat_field(&debugfs_stat(&s, "f"), "File ACL:");
    assert_ne!(blk, 0);
    // Flip one byte of the value area, near the end of the block.
    let mut img = std::fs::read(s.img()).unwrap();
    img[(blk * 4096 + 4000) as usize] ^= 0x40;
    std::fs::write(s.img(), &img).unwrap();
    let fs = open(&s);
    let inode = fs.read_inode(ino).unwrap();
    match fs.get_xattr(&inode, b"user.big") {
        Err(Error::Checksum { location: Location::Block(b), .. }) => assert_eq!(b, blk),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn inline_data_matches_source() {
    let s = Scratch::new("inline");
    let sizes = [0usize, 1, 59, 60, 61, 100, 127, 128, 129];
    for &n in &sizes {
        std::fs::write(s.src().join(format!("f{n}")), pattern(n, n as u8)).unwrap();
    }
    // Inline data next to a user xattr.
    let p = s.src().join("withattr");
    std::fs::write(&p, pattern(70, 3)).unwrap();
    setxattr(&p, "user.k", b"v");
    mkfs(&s, 4096, "inline_data,metadata_csum");
    let fs = open(&s);
    let check = |name: &str, want: &[u8]| {
        let stat = debugfs_stat(&s, name);
        let inode = fs.read_inode(ino_of(&s, name)).unwrap();
        let flagged = stat_field(&stat, "Flags:") as u32 & FL_INLINE_DATA != 0;
        assert_eq!(inode.has_flag(FL_INLINE_DATA), flagged);
        if want.len() <= 128 {
            assert!(flagged, "{name} should be inline");
            let data = fs.inline_data(&inode).unwrap();
            assert!(data.len() >= want.len() && data.len() >= 60);
            assert_eq!(&data[..want.len()], want, "{name}");
            assert_eq!(inode.size(), want.len() as u64);
        } else {
            assert!(!flagged, "{name} should not be inline");
            assert!(matches!(fs.inline_data(&inode), Err(Error::InvalidArgument(_))));
        }
    };
    for &n in &sizes {
        check(&format!("f{n}"), &pattern(n, n as u8));
    }
    check("withattr", &pattern(70, 3));
    let inode = fs.read_inode(ino_of(&s, "withattr")).unwrap();
    assert_eq!(fs.get_xattr(&inode, b"user.k").unwrap(), b"v");
}

fn target(len: usize, c: char) -> String {
    std::iter::repeat_n(c, len).collect()
}

#[test]
fn fast_and_inline_symlinks() {
    let s = Scratch::new("symlinks");
    let links = [("l5", 5), ("l59", 59), ("l60", 60), ("l100", 100), ("l128", 128)];
    for (name, len) in links {
        std::os::unix::fs::symlink(target(len, 'a'), s.src().join(name)).unwrap();
    }
    // A fast symlink whose xattr block counts in i_blocks.
    let p = s.src().join("lattr");
    std::os::unix::fs::symlink("short", &p).unwrap();
    setxattr(&p, "trusted.big", &pattern(2000, 9));
    std::fs::write(s.src().join("file"), b"x").unwrap();
    mkfs(&s, 4096, "inline_data,metadata_csum");
    let fs = open(&s);
    for (name, len) in links {
        let inode = fs.read_inode(ino_of(&s, name)).unwrap();
        assert_eq!(inode.has_flag(FL_INLINE_DATA), len >= 60, "{name}");
        assert_eq!(fs.read_link(&inode).unwrap(), target(len, 'a').as_bytes(), "{name}");
    }
    let inode = fs.read_inode(ino_of(&s, "lattr")).unwrap();
    assert_ne!(inode.file_acl(), 0);
    assert_eq!(fs.read_link(&inode).unwrap(), b"short");
    assert_eq!(fs.get_xattr(&inode, b"trusted.big").unwrap(), pattern(2000, 9));
    let file = fs.read_inode(ino_of(&s, "file")).unwrap();
    assert!(matches!(fs.read_link(&file), Err(Error::NotASymlink(_))));
}

#[test]
fn slow_symlinks() {
    let s = Scratch::new("slow-symlinks");
    let links = [("l59", 59), ("l60", 60), ("l100", 100), ("l1000", 1000), ("l4000", 4000)];
    for (name, len) in links {
        std::os::unix::fs::symlink(target(len, 'b'), s.src().join(name)).unwrap();
    }
    mkfs(&s, 4096, "^inline_data");
    let fs = open(&s);
    for (name, len) in links {
        let inode = fs.read_inode(ino_of(&s, name)).unwrap();
        assert_eq!(inode.blocks_512(true, 4096) != 0, len >= 60, "{name}: slow symlinks own a block");
        assert_eq!(fs.read_link(&inode).unwrap(), target(len, 'b').as_bytes(), "{name}");
    }
}
