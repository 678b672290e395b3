//! Mounting and unmounting a FUSE file system on the host with mount(2)
//! (the daemon runs as root; no fusermount helper).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// File system type shown in /proc/mounts.
pub const FSTYPE: &str = "fuse.ext4-virtiofsd";

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Mounts the FUSE connection `fd` on `target`, open to every user
/// (allow_other: the daemon checks permissions itself).
pub fn mount(source: &Path, target: &Path, fd: i32, read_only: bool) -> io::Result<()> {
    let src = cstr(source)?;
    let tgt = cstr(target)?;
    let fstype = CString::new(FSTYPE).expect("no NUL");
    let opts = CString::new(format!("fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other")).expect("no NUL");
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let r = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fstype.as_ptr(), flags, opts.as_ptr().cast()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `target`; when it is busy, detaches it lazily so that no new
/// user can enter and the connection ends with its last user.
pub fn unmount(target: &Path) -> io::Result<()> {
    let tgt = cstr(target)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(tgt.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EBUSY) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
