//! Mounting and unmounting a FUSE file system on the host with mount(2)
//! (the daemon runs as root; no fusermount helper).

use ext4::fs::inode::atime::AtimePolicy;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// File system type shown in /proc/mounts.
pub const FSTYPE: &str = "fuse.ext4-virtiofsd";

/// File system type of a mount without a subtype (`--no-subtype`): what
/// tools that expect a FUSE mount to be plain `fuse` look for (xfstests'
/// FSTYP=fuse compares it with df's type column).
pub const PLAIN_FSTYPE: &str = "fuse";

/// The type to mount with: [`FSTYPE`], or [`PLAIN_FSTYPE`] without a subtype.
pub fn fstype(subtype: bool) -> &'static str {
    if subtype { FSTYPE } else { PLAIN_FSTYPE }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// The mount(2) flags of a host mount.
#[derive(Debug, Clone, Copy)]
pub struct MountFlags {
    /// Mount read-only.
    pub read_only: bool,
    /// Honour device nodes (otherwise `nodev`: an image may hold any
    /// device node, e.g. one made by a guest).
    pub dev: bool,
    /// Honour setuid/setgid bits on exec (otherwise `nosuid`).
    pub suid: bool,
    /// When reads move atimes; only shows in the mount's flags (FUSE
    /// inodes are `S_NOATIME` to the kernel: the daemon keeps atimes).
    pub atime: ext4::fs::inode::atime::AtimeOptions,
}

impl MountFlags {
    /// The `MS_*` flags for mount(2).
    pub fn ms_flags(&self) -> libc::c_ulong {
        let mut flags = 0;
        if !self.dev {
            flags |= libc::MS_NODEV;
        }
        if !self.suid {
            flags |= libc::MS_NOSUID;
        }
        if self.read_only {
            flags |= libc::MS_RDONLY;
        }
        flags |= match self.atime.policy {
            AtimePolicy::Relatime => libc::MS_RELATIME,
            AtimePolicy::Strictatime => libc::MS_STRICTATIME,
            AtimePolicy::Noatime => libc::MS_NOATIME,
        };
        if self.atime.nodiratime {
            flags |= libc::MS_NODIRATIME;
        }
        flags
    }
}

/// Mounts the FUSE connection `fd` on `target` as type `fstype` (see
/// [`fstype`]) with `flags`, open to every user (allow_other: the daemon
/// checks permissions itself).
pub fn mount(source: &Path, target: &Path, fd: i32, fstype: &str, flags: MountFlags) -> io::Result<()> {
    let src = cstr(source)?;
    let tgt = cstr(target)?;
    let fstype = CString::new(fstype).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "type contains NUL"))?;
    let opts = CString::new(format!("fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other")).expect("no NUL");
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let r = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fstype.as_ptr(), flags.ms_flags(), opts.as_ptr().cast()) };
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

/// Sets the read-ahead of the FUSE mount of type `fstype` at `target` to `kib` KiB through
/// its backing device's sysfs entry. The kernel starts FUSE mounts at its
/// default (128 KiB), whatever max_pages allows: larger read-ahead means
/// fewer, larger READ requests for sequential reads. The device number
/// comes from /proc/self/mountinfo: stat'ing the mount point would ask the
/// file system itself, which is not serving yet.
pub fn set_readahead(target: &Path, fstype: &str, kib: u32) -> io::Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let target = std::fs::canonicalize(target)?;
    let dev = mountinfo_device(&info, &target, fstype)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "mount not in /proc/self/mountinfo"))?;
    std::fs::write(format!("/sys/class/bdi/{dev}/read_ahead_kb"), kib.to_string())
}

/// The `major:minor` of the last mount of type `fstype` at `target` in a
/// mountinfo text (fields: id, parent, major:minor, root, mount point, ...,
/// "-", fstype, ...). Mount points with spaces are octal-escaped there.
fn mountinfo_device(info: &str, target: &Path, fstype: &str) -> Option<String> {
    let want = target.to_str()?.replace(' ', "\\040");
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f.len() > 4 && f[4] == want && f.get(sep + 1) == Some(&fstype)).then(|| f[2].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_of_a_mount_from_mountinfo() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    90 22 0:44 / /mnt/a\\040b rw,nosuid - fuse.ext4-virtiofsd img rw\n\
                    91 22 0:45 / /mnt/c rw - fuse.other x rw\n";
        assert_eq!(mountinfo_device(info, Path::new("/mnt/a b"), FSTYPE).as_deref(), Some("0:44"));
        assert_eq!(mountinfo_device(info, Path::new("/mnt/c"), FSTYPE), None);
    }

    #[test]
    fn nodev_and_nosuid_unless_asked() {
        let atime = ext4::fs::inode::atime::AtimeOptions::default();
        let flags = MountFlags { read_only: false, dev: false, suid: false, atime };
        assert_eq!(flags.ms_flags() & (libc::MS_NODEV | libc::MS_NOSUID), libc::MS_NODEV | libc::MS_NOSUID);
        let flags = MountFlags { dev: true, ..flags };
        assert_eq!(flags.ms_flags() & (libc::MS_NODEV | libc::MS_NOSUID), libc::MS_NOSUID);
        let flags = MountFlags { suid: true, read_only: true, ..flags };
        assert_eq!(flags.ms_flags() & (libc::MS_NODEV | libc::MS_NOSUID | libc::MS_RDONLY), libc::MS_RDONLY);
    }

    #[test]
    fn plain_type_without_subtype() {
        assert_eq!(fstype(true), "fuse.ext4-virtiofsd");
        assert_eq!(fstype(false), "fuse");
        let info = "90 22 0:44 / /mnt/a rw - fuse.ext4-virtiofsd img rw\n\
                    91 22 0:46 / /mnt/b rw - fuse img rw\n";
        assert_eq!(mountinfo_device(info, Path::new("/mnt/b"), fstype(false)).as_deref(), Some("0:46"));
        assert_eq!(mountinfo_device(info, Path::new("/mnt/a"), fstype(false)), None);
    }
}
