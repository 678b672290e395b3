//! Extended attribute writes on mke2fs images, judged by e2fsck, debugfs,
//! our own reader and the kernel (read-only loop mount, when root).
//!
//! Each image gets a scripted phase (in-inode attributes, the spill into a
//! block, a block filled to ENOSPC, values too large, mode and name
//! errors, everything removed again) and a long pseudo-random phase of
//! sets, replaces and removes of every namespace and many sizes, ACLs
//! included, checked against a model after every operation.

mod common;
mod xattr_write_support;

use common::Scratch;
use common::tools::{mkfs, run};
use common::tree::{pattern, sample_acl};
use ext4::disk::features::Compat;
use ext4::disk::features::RoCompat;
use ext4::fs::xattr::write::SetMode;
use ext4::{Error, Ext4, OpenOptions};
use std::process::Command;
use xattr_write_support::*;

const FILES: [&str; 4] = ["/f0", "/f1", "/f2", "/f3"];
const DIR: &str = "/d";
const ACCESS: &[u8] = b"system.posix_acl_access";
const DEFAULT: &[u8] = b"system.posix_acl_default";

/// The ACLs the random phase sets: a full one, a minimal one, one without
/// entries (removes the attribute), one out of order (rejected).
fn acls() -> [Vec<u8>; 4] {
    const U: u32 = u32::MAX;
    [
        sample_acl(),
        acl_xattr(&[(0x01, 7, U), (0x04, 5, U), (0x20, 5, U)]),
        acl_xattr(&[]),
        acl_xattr(&[(0x04, 5, U), (0x01, 7, U), (0x20, 5, U)]),
    ]
}

fn blocks_512(fs: &Ext4, ino: u32) -> u64 {
    let huge = fs.superblock().ro_compat().has(RoCompat::HUGE_FILE);
    fs.read_inode(ino).unwrap().blocks_512(huge, fs.block_size())
}

fn file_acl(fs: &Ext4, ino: u32) -> u64 {
    fs.read_inode(ino).unwrap().file_acl()
}

/// Spill from the inode into a block, fill the block, errors, remove all.
fn scripted(fs: &Ext4, ino: u32, attrs: &mut Attrs, in_inode: bool) {
    let bs = fs.block_size() as usize;
    let cap = bs - 36;
    let blocks0 = blocks_512(fs, ino);
    let set = |n: &str, len: usize, mode| Op::Set(n.as_bytes().to_vec(), pattern(len as u64, len), mode);
    let ok = |attrs: &mut Attrs, op: Op| assert!(apply_checked(fs, ino, attrs, &op, cap).is_none(), "{op:?}");
    ok(attrs, set("user.s1", 4, SetMode::Create));
    ok(attrs, set("security.s2", 40, SetMode::Any));
    if in_inode {
        assert_eq!(file_acl(fs, ino), 0, "small attributes stay in the inode");
    }
    ok(attrs, set("trusted.s3", 40, SetMode::Any));
    assert_ne!(file_acl(fs, ino), 0, "the third attribute spills into a block");
    assert_eq!(blocks_512(fs, ino), blocks0 + bs as u64 / 512, "i_blocks counts the xattr block");
    ok(attrs, set("user.s1", 9, SetMode::Replace));
    // Values no block can hold.
    for len in [cap, 65537] {
        let r = apply(fs, ino, &set("user.huge", len, SetMode::Any));
        assert!(matches!(r, Err(Error::ValueTooLarge)), "{len}: {r:?}");
    }
    // Fill the block until nothing fits.
    let mut full = false;
    for i in 0..bs / 100 {
        let op = set(&format!("user.fill{i:02}"), 150, SetMode::Create);
        if let Some(e) = apply_checked(fs, ino, attrs, &op, cap) {
            assert!(matches!(e, Error::NoSpace));
            full = true;
            break;
        }
    }
    assert!(full, "the block never filled up");
    // Mode and name errors leave everything as it was.
    assert!(matches!(apply(fs, ino, &set("user.s1", 1, SetMode::Create)), Err(Error::Exists)));
    assert!(matches!(apply(fs, ino, &set("user.nope", 1, SetMode::Replace)), Err(Error::NoAttr)));
    assert!(matches!(apply(fs, ino, &Op::Remove(b"user.nope".to_vec())), Err(Error::NoAttr)));
    for name in ["bogus.x", "system.data", "system.richacl"] {
        let r = apply(fs, ino, &set(name, 1, SetMode::Any));
        assert!(matches!(r, Err(Error::Unsupported(_))), "{name}: {r:?}");
    }
    assert!(matches!(apply(fs, ino, &set("user.", 1, SetMode::Any)), Err(Error::InvalidName)));
    let long = format!("user.{}", "n".repeat(251));
    assert!(matches!(apply(fs, ino, &set(&long, 1, SetMode::Any)), Err(Error::InvalidName)));
    let bad_acl = Op::Set(ACCESS.to_vec(), acls()[3].clone(), SetMode::Any);
    assert!(matches!(apply(fs, ino, &bad_acl), Err(Error::InvalidArgument(_))));
    let inode = fs.read_inode(ino).unwrap();
    let got: Attrs = fs.list_xattrs(&inode).unwrap().into_iter().map(|x| (x.name, x.value)).collect();
    assert_eq!(&got, attrs, "failed operations changed nothing");
    // Remove everything: the block goes away, i_blocks with it.
    let names: Vec<Vec<u8>> = attrs.keys().cloned().collect();
    for n in names {
        ok(attrs, Op::Remove(n));
    }
    assert_eq!(file_acl(fs, ino), 0, "the empty block was released");
    assert_eq!(blocks_512(fs, ino), blocks0);
}

/// Pseudo-random operations on every file, checked against the model.
fn random_ops(fs: &Ext4, model: &mut Model, seed: u64, count: usize) {
    let bs = fs.block_size() as usize;
    let cap = bs - 36;
    let long = format!("user.{}", "l".repeat(200));
    let names: Vec<&[u8]> = vec![
        b"user.a",
        b"user.b",
        b"user.c",
        b"user.dd",
        b"user.name_of_medium_length",
        long.as_bytes(),
        b"trusted.t1",
        b"trusted.t2",
        b"security.s",
        b"security.selinux",
        b"gnu.g",
        ACCESS,
        DEFAULT,
    ];
    let sizes = [0, 1, 2, 3, 4, 5, 8, 13, 31, 64, 100, 180, 300, bs / 4, bs / 3];
    let paths: Vec<String> = model.keys().cloned().collect();
    let mut rng = Rng::new(seed);
    for i in 0..count {
        let path = &paths[rng.below(paths.len())];
        let mut name = names[rng.below(names.len())];
        if name == DEFAULT && path != DIR {
            name = ACCESS;
        }
        let kind = rng.below(10);
        let mode = match kind {
            5 => SetMode::Create,
            6 => SetMode::Replace,
            _ => SetMode::Any,
        };
        let value = if is_acl(name) {
            acls()[rng.below(4)].clone()
        } else {
            let len = sizes[rng.below(sizes.len())];
            pattern((i as u64) << 8 | seed, len)
        };
        let op = if (7..=8).contains(&kind) { Op::Remove(name.to_vec()) } else { Op::Set(name.to_vec(), value, mode) };
        let ino = fs.resolve_path(path.as_bytes(), false).unwrap();
        let attrs = model.get_mut(path).unwrap();
        if matches!(&op, Op::Set(n, v, _) if is_acl(n) && *v == acls()[3]) {
            let before = our_attrs(fs, path);
            assert!(matches!(apply(fs, ino, &op), Err(Error::InvalidArgument(_))), "{op:?}");
            assert_eq!(our_attrs(fs, path), before);
            continue;
        }
        apply_checked(fs, ino, attrs, &op, cap);
        assert_eq!(&our_attrs(fs, path), attrs, "{path} after {op:?}");
        if i % 97 == 96 {
            fs.close().unwrap();
        }
    }
}

fn run_case(tag: &str, args: &[&str], in_inode: bool) {
    let scratch = Scratch::new(&format!("xw-{tag}"));
    let src = scratch.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for (i, f) in FILES.iter().enumerate() {
        std::fs::write(src.join(&f[1..]), pattern(i as u64, 100 * i)).unwrap();
    }
    std::fs::write(src.join("d/x"), b"x").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), args);
    let mut model: Model = FILES.iter().chain([&DIR]).map(|p| (p.to_string(), Attrs::new())).collect();
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f0", false).unwrap();
        scripted(&fs, ino, model.get_mut("/f0").unwrap(), in_inode);
        fs.close().unwrap();
    }
    check_image(&scratch, &img, &model);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        random_ops(&fs, &mut model, tag.len() as u64, 500);
        fs.close().unwrap();
    }
    assert!(model.values().filter(|a| !a.is_empty()).count() >= 3, "the random phase left too little to check");
    check_image(&scratch, &img, &model);
    check_kernel(&format!("xattr_write_oracle {tag}: kernel view"), &scratch, &img, &model);
}

#[test]
fn ext4_4k_metadata_csum() {
    run_case("ext4-4k", &["-t", "ext4", "-b", "4096", "-I", "256"], true);
}

#[test]
fn ext4_1k_metadata_csum() {
    run_case("ext4-1k", &["-t", "ext4", "-b", "1024", "-I", "256"], true);
}

#[test]
fn ext4_4k_no_metadata_csum() {
    run_case("ext4-nocsum", &["-t", "ext4", "-I", "256", "-O", "^metadata_csum"], true);
}

#[test]
fn ext3_128_byte_inodes() {
    run_case("ext3-128", &["-t", "ext3", "-b", "1024", "-I", "128"], false);
}

/// Without the ext_attr feature, the first attribute turns it on (as the
/// kernel does), or e2fsck would reject the xattr block.
#[test]
fn ext_attr_feature_is_set() {
    let scratch = Scratch::new("xw-noextattr");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "16M", Some(&src), &["-t", "ext4", "-O", "^ext_attr"]);
    let mut model = Model::new();
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        assert!(!fs.superblock().compat().has(Compat::EXT_ATTR));
        let ino = fs.resolve_path(b"/f", false).unwrap();
        let attrs = model.entry("/f".to_string()).or_default();
        for (n, len) in [("user.small", 3), ("user.big", 500)] {
            let op = Op::Set(n.as_bytes().to_vec(), pattern(len, len as usize), SetMode::Any);
            assert!(apply_checked(&fs, ino, attrs, &op, 4096 - 36).is_none());
        }
        fs.close().unwrap();
    }
    let features = run(Command::new("dumpe2fs").arg("-h").arg(&img));
    assert!(features.lines().any(|l| l.starts_with("Filesystem features:") && l.contains("ext_attr")), "{features}");
    check_image(&scratch, &img, &model);
}
