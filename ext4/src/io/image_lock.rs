//! Locks on image files, as QEMU locks its images: an open file
//! description lock (`F_OFD_SETLK`) over the whole file, exclusive for a
//! writable open and shared for a read-only one. The lock belongs to the
//! open file and lives exactly as long as its descriptor, so two writers
//! (or a writer and a reader) can never use one image at once, while
//! readers share it. Locks of two opens conflict even inside one process.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a conflict is retried before the open is refused: a child
/// process being spawned by another thread holds copies of every
/// descriptor (and so its locks) between fork and exec, so a lock just
/// dropped by a close can linger for an instant.
const RETRY_FOR: Duration = Duration::from_millis(500);
/// Pause between retries.
const PAUSE: Duration = Duration::from_millis(10);

/// A whole-file lock request of type `typ` (`F_RDLCK`, `F_WRLCK`).
fn whole_file(typ: i32) -> libc::flock {
    // SAFETY: `flock` is plain old data, for which all zeros is a valid value
    // (and `l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    fl
}

/// `fcntl(fd, cmd, &mut fl)` for the OFD lock commands.
fn fcntl_lock(file: &File, cmd: libc::c_int, fl: &mut libc::flock) -> std::io::Result<()> {
    // SAFETY: `fd` is open for the lifetime of `file`, and `fl` is a valid,
    // exclusively borrowed `flock` that the kernel reads and (for GETLK) fills.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, fl as *mut libc::flock) };
    if r == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Locks the image `file` (opened from `path`) for writing (exclusive) or
/// reading (shared). [`Error::ImageLocked`] when another open holds a
/// conflicting lock (retried for [`RETRY_FOR`] first). On file systems
/// without locks (ENOLCK, EINVAL, EOPNOTSUPP) the image is used unlocked,
/// with a warning.
pub fn lock(file: &File, path: &Path, write: bool) -> Result<()> {
    let typ = if write { libc::F_WRLCK } else { libc::F_RDLCK };
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        let err = match fcntl_lock(file, libc::F_OFD_SETLK, &mut whole_file(typ)) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match err.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => {}
            Some(libc::ENOLCK | libc::EINVAL | libc::EOPNOTSUPP) => {
                log::warn!(
                    "{}: cannot lock the image ({err}); another process may use it at the same time",
                    path.display()
                );
                return Ok(());
            }
            _ => return Err(Error::Io { offset: 0, source: err }),
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(PAUSE);
    }
    // Name the holder's kind (a holder that let go meanwhile counts as a writer).
    let mut probe = whole_file(typ);
    fcntl_lock(file, libc::F_OFD_GETLK, &mut probe).map_err(|source| Error::Io { offset: 0, source })?;
    let held = if probe.l_type as i32 == libc::F_RDLCK { "read" } else { "write" };
    Err(Error::ImageLocked { path: path.to_path_buf(), wanted: if write { "write" } else { "read" }, held })
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::io::FileDevice;

    fn image(tag: &str) -> (testkit::Scratch, std::path::PathBuf) {
        let s = testkit::Scratch::new(tag);
        let p = s.join("img");
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        (s, p)
    }

    fn refused(r: crate::Result<FileDevice>) -> (String, &'static str, &'static str) {
        match r {
            Err(e @ Error::ImageLocked { wanted, held, .. }) => (e.to_string(), wanted, held),
            other => panic!("expected ImageLocked, got {other:?}"),
        }
    }

    #[test]
    fn a_writer_excludes_everyone_and_readers_share() {
        let (_s, img) = image("image-lock");
        let writer = FileDevice::open(&img, false).unwrap();
        let (msg, wanted, held) = refused(FileDevice::open(&img, false));
        assert_eq!((wanted, held), ("write", "write"));
        assert!(
            msg.contains(&img.display().to_string()) && msg.contains("another process has it open for writing"),
            "{msg}"
        );
        let (msg, wanted, held) = refused(FileDevice::open(&img, true));
        assert_eq!((wanted, held), ("read", "write"), "{msg}");
        drop(writer);

        let r1 = FileDevice::open(&img, true).unwrap();
        let r2 = FileDevice::open(&img, true).expect("readers share");
        let (msg, wanted, held) = refused(FileDevice::open(&img, false));
        assert_eq!((wanted, held), ("write", "read"));
        assert!(msg.contains("open for reading"), "{msg}");
        drop(r1);
        refused(FileDevice::open(&img, false));
        drop(r2);
        let w = FileDevice::open(&img, false).expect("free once the readers are gone");
        drop(w);
        FileDevice::open(&img, false).expect("the lock goes with the descriptor");
    }
}
