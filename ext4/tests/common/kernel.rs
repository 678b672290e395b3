//! The Linux kernel as an oracle: loop mounts of test images.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop-mounted image, unmounted on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    /// Mounts `img` on `dir` with `-o loop[,opts]` (and `-t fstype` when
    /// given), or returns mount's complaint.
    pub fn new(img: &Path, dir: &Path, fstype: Option<&str>, opts: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("mount");
        if let Some(t) = fstype {
            cmd.args(["-t", t]);
        }
        let opts = if opts.is_empty() { "loop".to_string() } else { format!("loop,{opts}") };
        let out = cmd.arg("-o").arg(opts).arg(img).arg(dir).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Mount(dir.to_path_buf()))
    }

    /// Like [`Mount::new`], but without root or when mounting fails it
    /// reports a loud skip for `what` and returns `None`.
    pub fn or_skip(img: &Path, dir: &Path, opts: &str, what: &str) -> Option<Mount> {
        if !super::is_root() {
            super::skip(what, "not running as root, cannot loop-mount images");
            return None;
        }
        match Self::new(img, dir, None, opts) {
            Ok(m) => Some(m),
            Err(e) => {
                let shown = if opts.is_empty() { "loop".to_string() } else { format!("loop,{opts}") };
                super::skip(what, &format!("mount -o {shown} failed: {}", e.lines().next().unwrap_or("")));
                None
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
