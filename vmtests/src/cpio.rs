//! A writer for the `newc` cpio format the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst): every
//! entry is a 110-byte ASCII header, its NUL-terminated name and its data,
//! each padded to 4 bytes; the archive ends with `TRAILER!!!`. Entries are
//! written with owner root and mtime 0, so the same inputs give the same
//! bytes, and device nodes need no `mknod` on the host.

use std::io::{self, Write};

/// An initramfs archive being written.
pub struct Newc<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl<W: Write> Newc<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        Newc { out, ino: 0, written: 0 }
    }

    /// Adds a directory (`path` without a leading slash, e.g. `bin`).
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | perm, 2, (0, 0), b"")
    }

    /// Adds a regular file with the given contents and permission bits.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | perm, 1, (0, 0), data)
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | perm, 1, (major, minor), b"")
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), b"")?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| io::Error::other(format!("{name}: too large for newc")))?;
        self.ino += 1;
        let ino = if name == "TRAILER!!!" { 0 } else { self.ino };
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0, // uid
            0, // gid
            0, // mtime
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() + 1,
            0, // check
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - self.written % 4) % 4;
        self.put(&[0u8; 3][..n as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_cpio_reads_them() {
        let mut a = Newc::new(Vec::new());
        a.dir("bin", 0o755).unwrap();
        a.file("bin/x", 0o755, b"hello").unwrap();
        a.symlink("bin/y", "x").unwrap();
        a.char_dev("console", 0o600, 5, 1).unwrap();
        let bytes = a.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(&bytes[..6], b"070701");
        // The second header starts on the 4-byte boundary after "bin\0".
        assert_eq!(&bytes[116..122], b"070701");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("bin/x\0") && text.contains("hello") && text.contains("TRAILER!!!"));
        // GNU cpio (scripts/setup.sh installs it) as the judge.
        let child = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            testkit::skip("cpio cross-check of the newc writer", "GNU cpio is not installed (scripts/setup.sh)");
            return;
        };
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{list}");
        for want in ["drwxr-xr-x", "bin/x", "bin/y -> x", "crw-------", "console", "hello".len().to_string().as_str()] {
            assert!(list.contains(want), "{want} missing from:\n{list}");
        }
    }
}
