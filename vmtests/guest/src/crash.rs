//! The crash cases: `crash_workload` writes files outside `vmtest/` (in
//! `crash/`, which the next boot's setup leaves alone) and fsyncs them one
//! after the other, printing `VMCRASH synced NAME LEN` after each fsync of
//! the file and its directory, with unsynced writes in between; it never
//! ends by itself: the host kills the daemon and QEMU after some markers.
//! The files are written three ways in turn: an extending `write()`, a
//! `write()` into a file already sized with `ftruncate` (under DAX this
//! goes through the window), and stores through a shared mapping + msync.
//! After the daemon's restart, `crash_check` reads everything in `crash/`
//! back (the host then checks each synced file's exact contents).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::pattern::{crash_file_len, crash_file_name, crash_file_seed, pattern};
use crate::{Ctx, Mapping, Outcome, say};

/// The folder of the crash files: `MNT/crash` (the case root is `MNT/vmtest`).
fn crash_dir(root: &Path) -> std::path::PathBuf {
    root.parent().expect("the case root has a parent").join("crash")
}

/// crash_workload: synced files with markers, unsynced churn between them.
pub fn case_workload(root: &Path) -> Outcome {
    let d = crash_dir(root);
    fs::create_dir_all(&d).ctx("mkdir", &d)?;
    let dir = File::open(&d).ctx("open", &d)?;
    let churn = d.join("churn");
    let c = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&churn).ctx("create", &churn)?;
    for i in 0.. {
        let name = crash_file_name(i);
        let p = d.join(&name);
        let data = pattern(crash_file_seed(i), crash_file_len(i));
        let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p).ctx("create", &p)?;
        match i % 3 {
            0 => f.write_all(&data).ctx("write", &p)?,
            1 => {
                f.set_len(data.len() as u64).ctx("ftruncate", &p)?;
                f.write_all_at(&data, 0).ctx("pwrite", &p)?;
            }
            _ => {
                f.set_len(data.len() as u64).ctx("ftruncate", &p)?;
                let mut m = Mapping::new(&f, data.len(), libc::PROT_READ | libc::PROT_WRITE).ctx("mmap", &p)?;
                m.bytes().copy_from_slice(&data);
                m.msync().ctx("msync", &p)?;
            }
        }
        // Unsynced churn: overwrite part of a 1 MiB file and create a file
        // that is never synced.
        c.write_all_at(&pattern(i as u64, 64 << 10), ((i % 16) * (64 << 10)) as u64).ctx("pwrite", &churn)?;
        fs::write(d.join(format!("unsynced{i}")), pattern(i as u64 + 7, 3000)).ctx("write", &d)?;
        f.sync_all().ctx("fsync", &p)?;
        dir.sync_all().ctx("fsync dir", &d)?;
        say(&format!("VMCRASH synced {name} {}", data.len()));
    }
    Ok(())
}

/// crash_check: after the recovery every file in `crash/` can be read;
/// reports how many there are.
pub fn case_check(root: &Path) -> Outcome {
    let d = crash_dir(root);
    let mut n = 0;
    for e in fs::read_dir(&d).ctx("readdir", &d)? {
        let p = e.ctx("readdir", &d)?.path();
        fs::read(&p).ctx("read", &p)?;
        n += 1;
    }
    say(&format!("VMINFO crash_check files {n}"));
    Ok(())
}
