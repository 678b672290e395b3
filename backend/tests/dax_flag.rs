//! The DAX inode flag (FS_XFLAG_DAX, `xfs_io -c "chattr +x"`) set through
//! FUSE_IOCTL, as a guest or a host mount sets it: under `--inode-dax flag`
//! (what `-o dax=inode` guests get by default) the flagged file's
//! attributes carry FUSE_ATTR_DAX at once, clearing it takes it away, and
//! files and directories made in a flagged directory inherit it. As in
//! ext4, a flagged file's first small write does not make it inline.

mod common;

use common::client::{Client, cat, cstr};
use common::{Scratch, mkfs};
use ext4_virtiofsd::adapter::AdapterOptions;
use ext4_virtiofsd::dax::InodeDax;
use ext4_virtiofsd::fuse::server::ServerOptions;
use fuse_abi::linux::*;
use zerocopy::{FromBytes, IntoBytes};

const FS_IOC_FSGETXATTR: u32 = 0x801C_581F;
const FS_IOC_FSSETXATTR: u32 = 0x401C_5820;
const FS_XFLAG_DAX: u32 = 0x8000;

/// `xfs_io -c "chattr +x"` (or `-x`): FSGETXATTR, change the bit, FSSETXATTR.
fn chattr_x(c: &mut Client, node: u64, fh: u64, dir: bool, on: bool) {
    let mut fsx = c.ioctl(node, fh, dir, FS_IOC_FSGETXATTR, &[], 28);
    let x = u32::from_le_bytes(fsx[..4].try_into().unwrap());
    let x = if on { x | FS_XFLAG_DAX } else { x & !FS_XFLAG_DAX };
    fsx[..4].copy_from_slice(&x.to_le_bytes());
    c.ioctl(node, fh, dir, FS_IOC_FSSETXATTR, &fsx, 0);
}

fn dax_attr(c: &mut Client, node: u64) -> bool {
    let g = fuse_getattr_in::default();
    let a = fuse_attr_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_GETATTR, node, g.as_bytes())).unwrap();
    a.attr.flags & FUSE_ATTR_DAX != 0
}

#[test]
fn the_dax_flag_set_through_fuse_marks_files_for_dax_inode_guests() {
    let s = Scratch::new("dax-flag");
    let img = s.join("fs.img");
    mkfs(&img, "32M", &["-t", "ext4", "-O", "inline_data"]);
    let adapter = AdapterOptions { dax: Some(InodeDax::Flag), ..AdapterOptions::default() };
    let mut c = Client::with_all_options(&img, adapter, ServerOptions::default());
    c.init();
    let (plain, plain_fh) = c.create(FUSE_ROOT_ID, "plain");
    assert!(!dax_attr(&mut c, plain));
    chattr_x(&mut c, plain, plain_fh, false, true);
    assert!(dax_attr(&mut c, plain), "chattr +x marks the file at once");
    chattr_x(&mut c, plain, plain_fh, false, false);
    assert!(!dax_attr(&mut c, plain), "chattr -x unmarks it");

    let m = fuse_mkdir_in { mode: 0o755, umask: 0 };
    let body = c.ok(fuse_opcode::FUSE_MKDIR, FUSE_ROOT_ID, &cat(&[m.as_bytes(), &cstr("d")]));
    let d = fuse_entry_out::read_from_bytes(&body).unwrap().nodeid;
    let o = fuse_open_in { flags: libc::O_RDONLY as u32, open_flags: 0 };
    let d_fh = fuse_open_out::read_from_bytes(&c.ok(fuse_opcode::FUSE_OPENDIR, d, o.as_bytes())).unwrap().fh;
    chattr_x(&mut c, d, d_fh, true, true);
    assert!(!dax_attr(&mut c, d), "directories are never mapped");
    let (small, small_fh) = c.create(d, "small");
    assert_eq!(c.write(small, small_fh, 0, b"sixty bytes or less stay inline").errno, 0);
    assert!(dax_attr(&mut c, small), "a file made in a +x directory inherits the flag");
    let stored = c.fs.read_inode(small as u32).unwrap();
    assert!(!stored.has_flag(ext4::disk::inode::FL_INLINE_DATA), "a DAX-flagged file is never made inline, as in ext4");
    let body = c.ok(fuse_opcode::FUSE_MKDIR, d, &cat(&[m.as_bytes(), &cstr("sub")]));
    let sub = fuse_entry_out::read_from_bytes(&body).unwrap().nodeid;
    let (deep, _) = c.create(sub, "deep");
    assert!(dax_attr(&mut c, deep), "and so does a file below a subdirectory made there");
    let fs = c.fs.clone();
    c.finish();
    drop(fs);
    common::assert_fsck_clean(&img);
}
