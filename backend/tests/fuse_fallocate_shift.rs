//! FUSE_FALLOCATE with FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE,
//! sent to the server directly (the kernel's FUSE client refuses these modes
//! before sending; other clients may not): the modes are served as ext4
//! serves them, combinations with other flags are EINVAL as in
//! vfs_fallocate, misaligned ranges and ranges reaching the end of the file
//! are EINVAL, and refusals change nothing. The image is `e2fsck -fn`
//! clean afterwards.

mod common;

use common::client::Client;
use common::{Scratch, assert_fsck_clean, mkfs};
use fuse_abi::linux::*;
use zerocopy::IntoBytes;

const KEEP_SIZE: u32 = 0x01;
const COLLAPSE: u32 = 0x08;
const INSERT: u32 = 0x20;

fn fallocate(c: &mut Client, node: u64, fh: u64, mode: u32, offset: u64, length: u64) -> i32 {
    let fa = fuse_fallocate_in { fh, offset, length, mode, padding: 0 };
    c.errno(fuse_opcode::FUSE_FALLOCATE, node, fa.as_bytes())
}

#[test]
fn collapse_and_insert_through_the_server() {
    let s = Scratch::new("proto-shift");
    let img = s.join("fs.img");
    mkfs(&img, "32M", &["-t", "ext4", "-b", "4096"]);
    let mut c = Client::new(&img);
    c.init();
    let (node, fh) = c.create(FUSE_ROOT_ID, "f");
    let mut model: Vec<u8> = (0..10 * 4096u32).map(|i| (i / 4096 * 16 + i % 7) as u8).collect();
    assert_eq!(c.write(node, fh, 0, &model).errno, 0);

    assert_eq!(fallocate(&mut c, node, fh, COLLAPSE, 4096, 2 * 4096), 0);
    model.drain(4096..3 * 4096);
    assert_eq!(fallocate(&mut c, node, fh, INSERT, 2 * 4096, 3 * 4096), 0);
    model.splice(2 * 4096..2 * 4096, vec![0u8; 3 * 4096]);
    assert_eq!(c.read(node, fh, 0, 1 << 20).body, model);
    assert_eq!(c.lookup(FUSE_ROOT_ID, "f").unwrap().attr.size, model.len() as u64);

    for (mode, off, len, want, why) in [
        (COLLAPSE | KEEP_SIZE, 0, 4096, libc::EINVAL, "collapse with another flag"),
        (INSERT | KEEP_SIZE, 0, 4096, libc::EINVAL, "insert with another flag"),
        (COLLAPSE | INSERT, 0, 4096, libc::EINVAL, "both"),
        (COLLAPSE, 100, 4096, libc::EINVAL, "misaligned offset"),
        (INSERT, 0, 4000, libc::EINVAL, "misaligned length"),
        (COLLAPSE, 4096, model.len() as u64 - 4096, libc::EINVAL, "collapse reaching EOF"),
        (INSERT, model.len() as u64, 4096, libc::EINVAL, "insert at EOF"),
    ] {
        assert_eq!(fallocate(&mut c, node, fh, mode, off, len), want, "{why}");
    }
    assert_eq!(c.read(node, fh, 0, 1 << 20).body, model, "refusals change nothing");

    assert_eq!(c.release(node, fh), 0);
    c.finish();
    assert_fsck_clean(&img);
}
