//! Shared support for the xattr write tests: a model of every file's
//! attributes, operations applied through our API inside handles, and the
//! oracles that judge the image afterwards (e2fsck, debugfs, our reader,
//! and the kernel through a read-only loop mount).
#![allow(dead_code)]

pub use crate::common::kernel::Mount;
use crate::common::tools::{assert_fsck_clean, run};
use crate::common::tree::xattrs;
use crate::common::{Scratch, is_root, skip};
use ext4::disk::acl::Acl;
use ext4::disk::xattr::{XattrEntry, pad, split_name};
use ext4::fs::xattr::write::SetMode;
use ext4::{Error, Ext4, OpenOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Attributes of one file: full name → value as user space sees it.
pub type Attrs = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every file's expected attributes, by absolute path in the image.
pub type Model = BTreeMap<String, Attrs>;

/// Whether `name` is one of the POSIX ACL attributes.
pub fn is_acl(name: &[u8]) -> bool {
    name == b"system.posix_acl_access" || name == b"system.posix_acl_default"
}

/// The value as stored on disk: ACLs in the ext4 format.
pub fn stored_value(name: &[u8], value: &[u8]) -> Vec<u8> {
    if is_acl(name) { Acl::from_xattr(value).unwrap().to_disk() } else { value.to_vec() }
}

/// Bytes the attributes take in a container (entries and padded values).
pub fn space(attrs: &Attrs) -> usize {
    attrs
        .iter()
        .map(|(n, v)| {
            let (_, suffix) = split_name(n).unwrap();
            XattrEntry::record_len(suffix.len()) + pad(stored_value(n, v).len())
        })
        .sum()
}

/// An ACL in the posix_acl_xattr format from `(tag, perm, id)` triples.
pub fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// One xattr operation on a file.
#[derive(Clone)]
pub enum Op {
    Set(Vec<u8>, Vec<u8>, SetMode),
    Remove(Vec<u8>),
}

impl std::fmt::Debug for Op {
    /// Names in text, values by length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Set(n, v, m) => write!(f, "set {} ({} bytes, {m:?})", String::from_utf8_lossy(n), v.len()),
            Op::Remove(n) => write!(f, "remove {}", String::from_utf8_lossy(n)),
        }
    }
}

/// Applies `op` to inode `ino` in one handle, finished only on success.
pub fn apply(fs: &Ext4, ino: u32, op: &Op) -> ext4::Result<()> {
    let mut h = fs.begin()?;
    let mut inode = fs.read_inode_in(&h, ino)?;
    match op {
        Op::Set(name, value, mode) => fs.set_xattr(&mut h, &mut inode, name, value, *mode)?,
        Op::Remove(name) => fs.remove_xattr(&mut h, &mut inode, name)?,
    }
    h.finish();
    Ok(())
}

/// Applies `op` and checks the outcome against the model, which it
/// updates: mode errors exactly; NoSpace only when the attributes could
/// not all fit in one block (`block_cap` bytes), success whenever they do.
/// Returns the error, if any.
pub fn apply_checked(fs: &Ext4, ino: u32, attrs: &mut Attrs, op: &Op, block_cap: usize) -> Option<Error> {
    let result = apply(fs, ino, op);
    match op {
        Op::Set(name, value, mode) => {
            let exists = attrs.contains_key(name);
            match (mode, exists) {
                (SetMode::Create, true) => {
                    assert!(matches!(result, Err(Error::Exists)), "{op:?}: {result:?}");
                    return result.err();
                }
                (SetMode::Replace, false) => {
                    assert!(matches!(result, Err(Error::NoAttr)), "{op:?}: {result:?}");
                    return result.err();
                }
                _ => {}
            }
            if is_acl(name) && value.len() == 4 {
                result.unwrap_or_else(|e| panic!("{op:?}: {e}"));
                attrs.remove(name);
                return None;
            }
            let mut after = attrs.clone();
            after.insert(name.clone(), value.clone());
            match result {
                Ok(()) => {
                    *attrs = after;
                    None
                }
                Err(Error::NoSpace) => {
                    assert!(space(&after) > block_cap, "{op:?}: NoSpace although everything fits one block");
                    Some(Error::NoSpace)
                }
                Err(e) => panic!("{op:?}: {e}"),
            }
        }
        Op::Remove(name) => {
            if attrs.remove(name).is_some() {
                result.unwrap_or_else(|e| panic!("{op:?}: {e}"));
                None
            } else {
                assert!(matches!(result, Err(Error::NoAttr)), "{op:?}: {result:?}");
                result.err()
            }
        }
    }
}

/// Our reader's view of a file's attributes.
pub fn our_attrs(fs: &Ext4, path: &str) -> Attrs {
    let ino = fs.resolve_path(path.as_bytes(), false).unwrap();
    let inode = fs.read_inode(ino).unwrap();
    let list: Attrs = fs.list_xattrs(&inode).unwrap().into_iter().map(|x| (x.name, x.value)).collect();
    for (n, v) in &list {
        assert_eq!(&fs.get_xattr(&inode, n).unwrap(), v, "{path}: get_xattr {}", String::from_utf8_lossy(n));
    }
    list
}

/// `debugfs ea_list`: names and stored value lengths, `system.data` left out.
pub fn debugfs_ea_list(img: &Path, path: &str) -> BTreeMap<Vec<u8>, usize> {
    let out = run(Command::new("debugfs").arg("-R").arg(format!("ea_list {path}")).arg(img));
    let mut m = BTreeMap::new();
    for line in out.lines().filter(|l| l.starts_with("  ")) {
        let line = line.trim_start();
        let (name, rest) = line.split_once(" (").unwrap_or_else(|| panic!("ea_list line {line:?}"));
        let len: usize = rest.split_once(')').unwrap().0.parse().unwrap();
        if name != "system.data" {
            m.insert(name.as_bytes().to_vec(), len);
        }
    }
    m
}

/// Checks the image against the model: e2fsck clean; debugfs lists the
/// same names and reads the same stored values; our reader agrees.
pub fn check_image(scratch: &Scratch, img: &Path, model: &Model) {
    assert_fsck_clean(img);
    let fs = Ext4::open(img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let mut cmds = String::new();
    let mut expect = Vec::new();
    for (path, attrs) in model {
        assert_eq!(&our_attrs(&fs, path), attrs, "{path}: our reader");
        let listed = debugfs_ea_list(img, path);
        let want: BTreeMap<Vec<u8>, usize> = attrs.iter().map(|(n, v)| (n.clone(), stored_value(n, v).len())).collect();
        assert_eq!(listed, want, "{path}: debugfs ea_list");
        for (n, v) in attrs {
            let out = scratch.join(format!("ea{}", expect.len()));
            cmds.push_str(&format!("ea_get -r -f {} {path} {}\n", out.display(), String::from_utf8_lossy(n)));
            expect.push((out, path.clone(), n.clone(), stored_value(n, v)));
        }
    }
    let cmdfile = scratch.join("ea_get.cmds");
    std::fs::write(&cmdfile, cmds).unwrap();
    run(Command::new("debugfs").arg("-f").arg(&cmdfile).arg(img));
    for (out, path, n, want) in expect {
        let name = String::from_utf8_lossy(&n);
        let got = std::fs::read(&out).unwrap_or_else(|e| panic!("{path} {name}: no ea_get output: {e}"));
        assert!(got == want, "{path} {name}: debugfs ea_get differs");
        std::fs::remove_file(out).unwrap();
    }
}

/// Mounts the image read-only and checks that the kernel lists and reads
/// exactly the model's attributes (llistxattr/lgetxattr, what getfattr
/// uses). Skips loudly without root or loop mounts.
pub fn check_kernel(what: &str, scratch: &Scratch, img: &Path, model: &Model) {
    if !is_root() {
        skip(what, "not running as root, cannot loop-mount images");
        return;
    }
    let mnt = match Mount::new(img, &scratch.join("mnt"), None, "ro") {
        Ok(m) => m,
        Err(e) => {
            skip(what, &format!("mount -o loop,ro failed: {}", e.trim()));
            return;
        }
    };
    for (path, attrs) in model {
        let got: Attrs = xattrs(&mnt.0.join(path.trim_start_matches('/'))).into_iter().collect();
        assert_eq!(&got, attrs, "{what}: the kernel reads other attributes of {path}");
    }
}

/// Deterministic pseudo-random numbers (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}
