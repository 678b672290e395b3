//! Side-by-side runs of the same steps on the kernel's ext4 (a loop mount)
//! and on our host mount, for the fidelity tests (issue 12).

use super::{HostMount, KernelMount, Scratch, assert_fsck_clean, mkfs};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Host-mount arguments each comparison runs with: no cache, the default,
/// and the writeback cache.
pub const MODES: [&[&str]; 3] = [&["--cache", "never"], &[], &["--writeback"]];

/// What one step saw: its name and a description to compare.
pub type Seen = Vec<(String, String)>;

/// Runs `steps` on a kernel loop mount of a fresh image, then on the host
/// mount of a fresh image in each of [`MODES`], and lists the differences
/// (empty: everything equal). `None` after a loud skip.
pub fn compare(what: &str, steps: impl Fn(&Path) -> Seen) -> Option<Vec<String>> {
    if !HostMount::usable_or_skip(what) {
        return None;
    }
    let s = Scratch::new("fidelity");
    std::fs::set_permissions(s.join(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (kimg, kmnt) = (s.join("k.img"), s.join("kmnt"));
    mkfs(&kimg, "32M", &["-t", "ext4"]);
    let k = KernelMount::or_skip(&kimg, &kmnt, "", what)?;
    let expected = steps(k.path());
    k.unmount().unwrap();
    let mut wrong = Vec::new();
    for args in MODES {
        let (img, mnt) = (s.join("fs.img"), s.join("mnt"));
        mkfs(&img, "32M", &["-t", "ext4"]);
        let m = HostMount::new(&img, &mnt, args).unwrap();
        let got = steps(m.path());
        m.unmount().unwrap();
        assert_eq!(got.len(), expected.len(), "{what}: steps seen with {args:?}");
        for (g, e) in got.iter().zip(&expected) {
            if g != e {
                wrong.push(format!("{} with {args:?}: {}, the kernel: {}", e.0, g.1, e.1));
            }
        }
        assert_fsck_clean(&img);
    }
    Some(wrong)
}
