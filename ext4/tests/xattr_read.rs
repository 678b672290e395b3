//! Extended attributes, POSIX ACLs, inline data and symlink targets read
//! from images built by `mke2fs -d`, checked against the source tree
//! (llistxattr/lgetxattr, `getfacl`) and `debugfs`.
//!
//! Needs e2fsprogs and the Debian package `acl` (setfacl, getfacl).

mod common;

use common::Scratch;
use common::tools::{assert_fsck_clean, debugfs, mkfs, run};
use common::tree::{pattern, set_xattr, xattrs};
use ext4::disk::acl::Acl;
use ext4::disk::inode::FL_INLINE_DATA;
use ext4::disk::xattr::{entry_hash, parse_block};
use ext4::{Error, Ext4, Location, OpenOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A source directory and the image built from it.
struct Image {
    scratch: Scratch,
}

impl Image {
    fn new(tag: &str) -> Image {
        let scratch = Scratch::new(&format!("xattr-{tag}"));
        std::fs::create_dir(scratch.join("src")).unwrap();
        Image { scratch }
    }
    fn src(&self, name: &str) -> std::path::PathBuf {
        self.scratch.join("src").join(name)
    }
    fn img(&self) -> std::path::PathBuf {
        self.scratch.join("img")
    }
    /// Builds the image with 256-byte inodes and checks it with e2fsck.
    fn mkfs(&self, block_size: u32, features: &str) {
        let bs = block_size.to_string();
        let args = ["-t", "ext4", "-I", "256", "-b", &bs, "-O", features];
        mkfs(&self.img(), "16M", Some(&self.scratch.join("src")), &args);
        assert_fsck_clean(&self.img());
    }
    fn open(&self) -> Ext4 {
        Ext4::open(self.img(), &OpenOptions { read_only: true, ..Default::default() }).unwrap()
    }
    /// `debugfs -R "stat /name"`.
    fn stat(&self, name: &str) -> String {
        debugfs(&self.img(), &format!("stat /{name}"))
    }
    fn ino(&self, name: &str) -> u32 {
        stat_field(&self.stat(name), "Inode:") as u32
    }
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

/// Runs a tool on a path and returns its output.
fn tool(cmd: &str, args: &[&str], path: &Path) -> String {
    run(Command::new(cmd).args(args).arg(path))
}

fn xattrs_match_source(block_size: u32, features: &str) {
    let im = Image::new(&format!("attrs-{block_size}"));
    let (big, many_count) = if block_size >= 4096 { (3000, 20) } else { (700, 8) };
    let f = |n: &str| {
        let p = im.src(n);
        std::fs::write(&p, b"some data\n").unwrap();
        p
    };
    let small = f("small");
    set_xattr(&small, "user.a", b"1");
    set_xattr(&small, "trusted.t", b"tv");
    set_xattr(&small, "security.s", &[0, 1, 2]);
    set_xattr(&small, "user.empty", b"");
    let large = f("large");
    set_xattr(&large, "user.big", &pattern(7, big));
    set_xattr(&large, "user.s", b"short");
    let many = f("many");
    for i in 0..many_count {
        set_xattr(&many, &format!("user.attr{i:02}"), &pattern(i as u64, 30 + i));
    }
    set_xattr(&f("utf"), "user.\u{e9}t\u{e9}", "\u{fc}ber".as_bytes());
    f("plain");
    tool("setfacl", &["-m", "u:1000:r,g:50:rw,u:2000:rwx"], &f("acl"));
    let dacl = im.src("dacl");
    std::fs::create_dir(&dacl).unwrap();
    tool("setfacl", &["-m", "u:3:w"], &dacl);
    tool("setfacl", &["-d", "-m", "u:1000:rx,g:7:r"], &dacl);
    im.mkfs(block_size, features);
    let fs = im.open();

    let mut saw_block = false;
    for name in ["small", "large", "many", "utf", "plain", "acl", "dacl"] {
        let inode = fs.read_inode(im.ino(name)).unwrap();
        let want: BTreeMap<Vec<u8>, Vec<u8>> = xattrs(&im.src(name)).into_iter().collect();
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
    assert_ne!(fs.read_inode(im.ino("large")).unwrap().file_acl(), 0);

    // ACLs rendered like getfacl.
    for (name, has_default) in [("acl", false), ("dacl", true)] {
        let inode = fs.read_inode(im.ino(name)).unwrap();
        let access = Acl::from_xattr(&fs.get_xattr(&inode, b"system.posix_acl_access").unwrap()).unwrap();
        let mut text = access.to_text(false);
        if has_default {
            let default = Acl::from_xattr(&fs.get_xattr(&inode, b"system.posix_acl_default").unwrap()).unwrap();
            text += &default.to_text(true);
        }
        let want = tool("getfacl", &["-n", "-E", "--omit-header"], &im.src(name));
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
    let im = Image::new("csum");
    let p = im.src("f");
    std::fs::write(&p, b"x").unwrap();
    set_xattr(&p, "user.big", &pattern(1, 3000));
    im.mkfs(4096, "metadata_csum");
    let ino = im.ino("f");
    let blk = stat_field(&im.stat("f"), "File ACL:");
    assert_ne!(blk, 0);
    // Flip one byte of the value area, near the end of the block.
    let mut img = std::fs::read(im.img()).unwrap();
    img[(blk * 4096 + 4000) as usize] ^= 0x40;
    std::fs::write(im.img(), &img).unwrap();
    let fs = im.open();
    let inode = fs.read_inode(ino).unwrap();
    match fs.get_xattr(&inode, b"user.big") {
        Err(Error::Checksum { location: Location::Block(b), .. }) => assert_eq!(b, blk),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn inline_data_matches_source() {
    let im = Image::new("inline");
    // With 256-byte inodes, 60 bytes of i_block plus 68 in the xattr area.
    const MAX_INLINE: usize = 128;
    let sizes = [0usize, 1, 59, 60, 61, 100, 127, MAX_INLINE, MAX_INLINE + 1];
    for &n in &sizes {
        std::fs::write(im.src(&format!("f{n}")), pattern(n as u64, n)).unwrap();
    }
    // Inline data next to a user xattr.
    let p = im.src("withattr");
    std::fs::write(&p, pattern(3, 70)).unwrap();
    set_xattr(&p, "user.k", b"v");
    im.mkfs(4096, "inline_data,metadata_csum");
    let fs = im.open();
    let check = |name: &str, want: &[u8]| {
        let inode = fs.read_inode(im.ino(name)).unwrap();
        let flagged = stat_field(&im.stat(name), "Flags:") as u32 & FL_INLINE_DATA != 0;
        assert_eq!(inode.has_flag(FL_INLINE_DATA), flagged);
        assert_eq!(inode.size(), want.len() as u64);
        if want.len() <= MAX_INLINE {
            assert!(flagged, "{name} should be inline");
            let data = fs.inline_data(&inode).unwrap();
            assert!(data.len() >= want.len() && data.len() >= 60);
            assert_eq!(&data[..want.len()], want, "{name}");
        } else {
            assert!(!flagged, "{name} should not be inline");
            assert!(matches!(fs.inline_data(&inode), Err(Error::InvalidArgument(_))));
        }
    };
    for &n in &sizes {
        check(&format!("f{n}"), &pattern(n as u64, n));
    }
    check("withattr", &pattern(3, 70));
    let inode = fs.read_inode(im.ino("withattr")).unwrap();
    assert_eq!(fs.get_xattr(&inode, b"user.k").unwrap(), b"v");
}

fn target(len: usize, c: char) -> String {
    std::iter::repeat_n(c, len).collect()
}

#[test]
fn fast_and_inline_symlinks() {
    let im = Image::new("symlinks");
    let links = [("l5", 5), ("l59", 59), ("l60", 60), ("l100", 100), ("l128", 128)];
    for (name, len) in links {
        std::os::unix::fs::symlink(target(len, 'a'), im.src(name)).unwrap();
    }
    // A fast symlink whose xattr block counts in i_blocks.
    let p = im.src("lattr");
    std::os::unix::fs::symlink("short", &p).unwrap();
    set_xattr(&p, "trusted.big", &pattern(9, 2000));
    std::fs::write(im.src("file"), b"x").unwrap();
    im.mkfs(4096, "inline_data,metadata_csum");
    let fs = im.open();
    for (name, len) in links {
        let inode = fs.read_inode(im.ino(name)).unwrap();
        assert_eq!(inode.has_flag(FL_INLINE_DATA), len >= 60, "{name}");
        assert_eq!(fs.read_link(&inode).unwrap(), target(len, 'a').as_bytes(), "{name}");
    }
    let inode = fs.read_inode(im.ino("lattr")).unwrap();
    assert_ne!(inode.file_acl(), 0);
    assert_eq!(fs.read_link(&inode).unwrap(), b"short");
    assert_eq!(fs.get_xattr(&inode, b"trusted.big").unwrap(), pattern(9, 2000));
    let file = fs.read_inode(im.ino("file")).unwrap();
    assert!(matches!(fs.read_link(&file), Err(Error::NotASymlink(_))));
}

#[test]
fn slow_symlinks() {
    let im = Image::new("slow-symlinks");
    let links = [("l59", 59), ("l60", 60), ("l100", 100), ("l1000", 1000), ("l4000", 4000)];
    for (name, len) in links {
        std::os::unix::fs::symlink(target(len, 'b'), im.src(name)).unwrap();
    }
    im.mkfs(4096, "^inline_data");
    let fs = im.open();
    for (name, len) in links {
        let inode = fs.read_inode(im.ino(name)).unwrap();
        assert_eq!(inode.blocks_512(true, 4096) != 0, len >= 60, "{name}: slow symlinks own a block");
        assert_eq!(fs.read_link(&inode).unwrap(), target(len, 'b').as_bytes(), "{name}");
    }
}
