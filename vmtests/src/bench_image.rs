//! The image the benchmarks serve: one file of given bytes in a 1 GiB ext4
//! image, its inode tables initialised up front so that no lazy init runs
//! while a benchmark measures.

use std::path::PathBuf;
use std::process::Command;
use testkit::Scratch;

/// Makes `scratch/NAME` holding the file `/data` with `data`.
pub fn one_file_image(scratch: &Scratch, name: &str, data: &[u8]) -> PathBuf {
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("data"), data).unwrap();
    let image = scratch.join(name);
    testkit::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=0,lazy_journal_init=1", "-d"])
            .arg(&src)
            .arg(&image)
            .arg("1G"),
    );
    std::fs::remove_dir_all(&src).unwrap();
    image
}
