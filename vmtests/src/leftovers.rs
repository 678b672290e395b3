//! Checking, on the host after a run, the files the guest program left in
//! the share (`vmtest/` at its root): contents of the kept files, the
//! hard-linked pair, the symlink, the kept xattr and the 10 000-entry
//! directory. The same checks run on a served host directory
//! ([`HostDir`]) and on an ext4 image read by `debugfs` ([`ImageView`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pattern;

/// Read access to a share after the run; paths are relative to its root.
pub trait ShareView {
    /// A regular file's contents.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
    /// A symbolic link's target.
    fn readlink(&self, path: &str) -> Result<Vec<u8>, String>;
    /// An extended attribute's value.
    fn xattr(&self, path: &str, name: &str) -> Result<Vec<u8>, String>;
    /// Inode number and link count.
    fn inode_links(&self, path: &str) -> Result<(u64, u64), String>;
    /// A directory's entry names, without `.` and `..`.
    fn list(&self, path: &str) -> Result<Vec<String>, String>;
}

/// Every mismatch between the share and what the guest program leaves
/// (empty when all is there).
pub fn check(view: &dyn ShareView) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, want) in pattern::leftovers() {
        match view.read(path) {
            Ok(got) if got == want => {}
            Ok(got) => {
                let at = got.iter().zip(&want).position(|(a, b)| a != b);
                bad.push(format!("{path}: {} bytes (expected {}), first difference at {at:?}", got.len(), want.len()));
            }
            Err(e) => bad.push(format!("{path}: {e}")),
        }
    }
    match (view.inode_links("vmtest/keep/hard1"), view.inode_links("vmtest/keep/hard2")) {
        (Ok(a), Ok(b)) if a == b && a.1 == 2 => {}
        (a, b) => bad.push(format!("hard1 {a:?} and hard2 {b:?} should be one inode with 2 links")),
    }
    match view.readlink("vmtest/keep/link") {
        Ok(t) if t == pattern::LINK_TARGET.as_bytes() => {}
        other => bad.push(format!("vmtest/keep/link: {other:?}, expected {:?}", pattern::LINK_TARGET)),
    }
    let (name, value) = pattern::XATTR_KEPT;
    match view.xattr("vmtest/keep/xattr", name) {
        Ok(v) if v == value => {}
        other => bad.push(format!("vmtest/keep/xattr {name}: {other:?}")),
    }
    match view.list("vmtest/big") {
        Ok(mut names) => {
            names.sort();
            let mut want: Vec<_> = (0..pattern::BIG_DIR_ENTRIES).map(pattern::big_name).collect();
            want.sort();
            if names != want {
                bad.push(format!("vmtest/big: {} entries, expected the {} the guest created", names.len(), want.len()));
            }
        }
        Err(e) => bad.push(format!("vmtest/big: {e}")),
    }
    bad
}

/// A served host directory, read with the host's own system calls.
pub struct HostDir(pub PathBuf);

impl HostDir {
    fn at(&self, path: &str) -> PathBuf {
        self.0.join(path)
    }
}

impl ShareView for HostDir {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.at(path)).map_err(|e| e.to_string())
    }

    fn readlink(&self, path: &str) -> Result<Vec<u8>, String> {
        use std::os::unix::ffi::OsStrExt;
        std::fs::read_link(self.at(path)).map(|t| t.as_os_str().as_bytes().to_vec()).map_err(|e| e.to_string())
    }

    fn xattr(&self, path: &str, name: &str) -> Result<Vec<u8>, String> {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::CString::new(self.at(path).as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let n = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65536];
        // SAFETY: NUL-terminated strings; the buffer is valid for writes of
        // buf.len() bytes.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    fn inode_links(&self, path: &str) -> Result<(u64, u64), String> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(self.at(path)).map(|m| (m.ino(), m.nlink())).map_err(|e| e.to_string())
    }

    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        std::fs::read_dir(self.at(path))
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect())
            .map_err(|e| e.to_string())
    }
}

/// An ext4 image, read by `debugfs` (e2fsprogs: an oracle independent of
/// our ext4 core). The image must not be in use.
pub struct ImageView(pub PathBuf);

impl ImageView {
    /// `debugfs -R REQUEST IMAGE`: its stdout, or its complaint (debugfs
    /// exits 0 either way and reports errors on stderr after its banner).
    fn debugfs(&self, request: &str) -> Result<Vec<u8>, String> {
        let o = Command::new("debugfs")
            .arg("-R")
            .arg(request)
            .arg(&self.0)
            .output()
            .map_err(|e| format!("cannot run debugfs: {e}"))?;
        let err = String::from_utf8_lossy(&o.stderr);
        let complaints: Vec<&str> =
            err.lines().filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty()).collect();
        if !o.status.success() || !complaints.is_empty() {
            return Err(format!("debugfs -R {request:?}: {}", complaints.join(" | ")));
        }
        Ok(o.stdout)
    }

    fn abs(path: &str) -> String {
        assert!(!path.contains(['"', ' ']), "path {path:?} needs quoting in a debugfs request");
        format!("/{path}")
    }
}

impl ShareView for ImageView {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        let mut data = self.debugfs(&format!("cat {}", Self::abs(path)))?;
        // debugfs 1.47.0 `cat`s all 60 bytes of an inline file shorter
        // than that: cut to the inode's size.
        let stat = String::from_utf8_lossy(&self.debugfs(&format!("stat {}", Self::abs(path)))?).into_owned();
        let size = stat
            .split("Size: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("no Size in debugfs stat of {path}"))?;
        if data.len() > size {
            data.truncate(size);
        }
        Ok(data)
    }

    fn readlink(&self, path: &str) -> Result<Vec<u8>, String> {
        let stat = String::from_utf8_lossy(&self.debugfs(&format!("stat {}", Self::abs(path)))?).into_owned();
        if let Some(rest) = stat.lines().find_map(|l| l.trim().strip_prefix("Fast link dest: \"")) {
            return Ok(rest.strip_suffix('"').unwrap_or(rest).as_bytes().to_vec());
        }
        if !stat.contains("Type: symlink") {
            return Err(format!("{path} is not a symlink"));
        }
        // A slow symlink keeps its target in a data block.
        self.read(path)
    }

    fn xattr(&self, path: &str, name: &str) -> Result<Vec<u8>, String> {
        let mut v = self.debugfs(&format!("ea_get -V {} {name}", Self::abs(path)))?;
        // `ea_get -V` ends the raw value with a newline of its own.
        if v.last() == Some(&b'\n') {
            v.pop();
        }
        Ok(v)
    }

    fn inode_links(&self, path: &str) -> Result<(u64, u64), String> {
        let stat = String::from_utf8_lossy(&self.debugfs(&format!("stat {}", Self::abs(path)))?).into_owned();
        let field = |key: &str| -> Option<u64> {
            let at = stat.find(key)? + key.len();
            stat[at..].split_whitespace().next()?.parse().ok()
        };
        field("Inode:").zip(field("Links:")).ok_or_else(|| format!("no Inode/Links in debugfs stat of {path}"))
    }

    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        // `ls -p`: /INODE/MODE/UID/GID/NAME/SIZE/ per entry.
        let out = String::from_utf8_lossy(&self.debugfs(&format!("ls -p {}", Self::abs(path)))?).into_owned();
        Ok(out
            .lines()
            .filter_map(|l| l.split('/').nth(5).map(String::from))
            .filter(|n| n != "." && n != ".." && !n.is_empty())
            .collect())
    }
}

/// Builds an ext4 image (4 KiB blocks: the guest writes symlink targets
/// longer than 1 KiB) from a host directory with `mke2fs -d` (for
/// checking [`ImageView`] against what a run left in a directory).
pub fn image_from_dir(dir: &Path, image: &Path, size_mib: u32) {
    testkit::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
            .arg(dir)
            .arg(image)
            .arg(format!("{size_mib}M")),
    );
}
