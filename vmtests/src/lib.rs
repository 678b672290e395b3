//! End-to-end tests of ext4-virtiofsd with real guests: the QEMU rig.
//!
//! - [`prep`]: prepares, on a fresh machine and cached in `target/vmrig/`,
//!   QEMU and busybox (Debian packages), a Debian cloud kernel and its
//!   virtio-fs modules, the static guest test program (`vmtests/guest`)
//!   and an initramfs;
//! - [`qemu`]: one TCG boot against a vhost-user-fs socket, console to a
//!   file, with a hang guard, under QEMU 7.2 or QEMU 11;
//! - [`sid`]: QEMU 11 (the DAX window) in a Debian sid chroot;
//! - [`rig`]: a whole run: daemon up, boot, `VMTEST` lines parsed, daemon
//!   down; the peer daemon (QEMU's C virtiofsd) and `ext4-virtiofsd serve`;
//! - [`mapfiles`]: the image of the mmap cases (inline, sparse,
//!   multi-extent files) and its checks after a run;
//! - [`leftovers`]: the host-side check of the files a run leaves behind,
//!   on a directory or an ext4 image;
//! - [`pattern`]: file contents and names shared with the guest program;
//! - [`cpio`]: the initramfs archive writer;
//! - [`bench_image`]: the one-file image the benchmarks serve;
//! - [`demo`]: the demo (an inline file mapped through DAX in a guest);
//! - [`frontend`]: a VM without a VM, an in-process vhost-user frontend.
//!
//! See `vmtests/README.md` for how to run it.

#![warn(missing_docs)]

pub mod bench_image;
pub mod cpio;
pub mod demo;
pub mod frontend;
pub mod leftovers;
pub mod mapfiles;
#[path = "../guest/src/pattern.rs"]
pub mod pattern;
pub mod prep;
pub mod qemu;
pub mod rig;
pub mod sid;
