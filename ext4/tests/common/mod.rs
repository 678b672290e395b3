//! Shared support for the ext4 integration tests: scratch directories,
//! the real e2fsprogs tools as oracles, and generated source trees.
#![allow(dead_code)]

pub mod kernel;
pub mod models;
pub mod rng;
pub mod tools;
pub mod tree;

use std::path::{Path, PathBuf};

/// A scratch directory removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    /// A fresh, empty directory named after `tag`.
    pub fn new(tag: &str) -> Scratch {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ext4-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }

    /// A path inside the scratch directory.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("EXT4_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Whether the test process runs as root (device nodes, loop mounts).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Reports a loud skip notice: tests never pass silently for what they did
/// not check. The test harness captures test output, so the notice also goes
/// to the file named by `EXT4_SKIP_LOG` (scripts/test.sh prints it at the end).
pub fn skip(what: &str, why: &str) {
    let line = format!("SKIPPED: {what}: {why}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("EXT4_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}
