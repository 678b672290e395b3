//! Judging files of an image against in-memory models of their bytes: our
//! reader, e2fsck, the kernel and debugfs must all agree with the models.

use super::Scratch;
use super::tools::{assert_fsck_clean, run, with_kernel_mount};
use ext4::Ext4;
use std::path::Path;
use std::process::Command;

/// Our reader returns exactly `models[i]` for the files `inos[i]` (named
/// `names[i]` in messages).
pub fn reader_matches(fs: &Ext4, tag: &str, names: &[String], inos: &[u32], models: &[Vec<u8>]) {
    for (f, ino) in inos.iter().enumerate() {
        let inode = fs.read_inode(*ino).unwrap();
        assert_eq!(inode.size() as usize, models[f].len(), "{tag}: size of {}", names[f]);
        let mut got = vec![0u8; models[f].len()];
        assert_eq!(fs.read(&inode, 0, &mut got).unwrap(), got.len());
        assert!(got == models[f], "{tag}: our reader differs on {}", names[f]);
    }
}

/// The closed image at `img` is fsck-clean, and the kernel (when it can
/// mount; loud skip otherwise) and debugfs read exactly the models for the
/// files `/names[i]`.
pub fn image_matches(img: &Path, scratch: &Scratch, tag: &str, names: &[String], models: &[Vec<u8>]) {
    assert_fsck_clean(img);
    with_kernel_mount(img, &scratch.join("mnt"), &format!("{tag}: kernel read-back"), |mnt| {
        for (f, n) in names.iter().enumerate() {
            assert!(std::fs::read(mnt.join(n)).unwrap() == models[f], "{tag}: the kernel reads other bytes for {n}");
        }
    });
    for (f, n) in names.iter().enumerate() {
        let out = scratch.join(format!("out-{n}"));
        run(Command::new("debugfs").arg("-R").arg(format!("dump /{n} {}", out.display())).arg(img));
        assert!(std::fs::read(&out).unwrap() == models[f], "{tag}: debugfs reads other bytes for {n}");
    }
}
