//! Support shared by the integration tests and benchmarks of every crate
//! in the workspace: scratch directories, loud skips (a test never passes
//! silently for what it did not check), running external tools, `e2fsck`
//! as a judge, and a seeded pseudo-random generator.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory, removed on drop unless `EXT4_TEST_KEEP` is set.
pub struct Scratch {
    /// Its path.
    pub path: PathBuf,
}

impl Scratch {
    /// A fresh, empty directory named after `tag`. The name is short
    /// (`$TMPDIR/e4-TAG-PID-N`): mount points inside it may hold Unix
    /// sockets, whose paths may not exceed 107 bytes.
    pub fn new(tag: &str) -> Scratch {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("e4-{tag}-{}-{n}", std::process::id()));
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

/// Whether the process runs as root (device nodes, loop and FUSE mounts).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Reports a loud skip notice. The test harness captures test output, so
/// the notice also goes to the file named by `EXT4_SKIP_LOG`
/// (scripts/test.sh prints those lines at the end).
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

/// Runs a command, panicking with its status and output if it fails;
/// returns its standard output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `e2fsck -fn` and returns (clean, output).
pub fn fsck(image: &Path) -> (bool, String) {
    let out = Command::new("e2fsck").arg("-fn").arg(image).output().expect("run e2fsck");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Asserts that `e2fsck -fn` finds nothing to fix, with its output in the
/// panic message.
pub fn assert_fsck_clean(image: &Path) {
    let (ok, text) = fsck(image);
    assert!(ok, "e2fsck -fn {image:?} is not clean:\n{text}");
}

/// splitmix64: a small, seeded, deterministic generator.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with `percent` percent probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A length in `1..=short` with `percent` chance, else in `1..=long`.
    pub fn length(&mut self, percent: u64, short: u64, long: u64) -> u64 {
        let n = if self.chance(percent) { short } else { long };
        1 + self.below(n)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_seeded_and_bounded() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert_eq!((0..5).map(|_| a.next()).collect::<Vec<_>>(), (0..5).map(|_| b.next()).collect::<Vec<_>>());
        assert!((0..1000).all(|_| a.below(10) < 10));
        assert_eq!(a.below(0), 0);
        let mut buf = [0u8; 13];
        a.fill(&mut buf);
        assert!(buf.iter().any(|&x| x != 0));
    }

    #[test]
    fn scratch_dirs_are_fresh_and_removed() {
        let p = {
            let s = Scratch::new("kit");
            std::fs::write(s.join("f"), b"x").unwrap();
            s.path.clone()
        };
        assert!(std::env::var_os("EXT4_TEST_KEEP").is_some() || !p.exists());
    }
}
