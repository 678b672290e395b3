//! The one place where ext4 core errors become errno values: the FUSE
//! boundary. Corruption is logged with its location before it is reduced
//! to EIO, so an operator can find it with debugfs.

use ext4::Error;

/// A positive errno value for a FUSE error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    /// I/O error (also: corrupt image structures).
    pub const EIO: Errno = Errno(libc::EIO);
    /// Bad file handle.
    pub const EBADF: Errno = Errno(libc::EBADF);
    /// Permission denied.
    pub const EACCES: Errno = Errno(libc::EACCES);
    /// Exists.
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    /// Cross-device or otherwise impossible link.
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    /// Not a directory.
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    /// Is a directory.
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// Read-only file system.
    pub const EROFS: Errno = Errno(libc::EROFS);
    /// Result too large for the buffer (xattr sizes).
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    /// Name too long.
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    /// Not implemented.
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    /// No such attribute.
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    /// Operation not supported.
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    /// Stale node id.
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    /// Interrupted.
    pub const EINTR: Errno = Errno(libc::EINTR);
    /// Resource temporarily unavailable (a lock held by someone else).
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    /// No locks available (too many blocked lock requests).
    pub const ENOLCK: Errno = Errno(libc::ENOLCK);
    /// Deadlock would occur.
    pub const EDEADLK: Errno = Errno(libc::EDEADLK);
    /// Protocol error.
    pub const EPROTO: Errno = Errno(libc::EPROTO);
    /// Not a tty (unknown ioctl).
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);
    /// Past the end of data (SEEK_DATA/SEEK_HOLE).
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    /// File too large.
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    /// Too many open files (the session's handle table is full).
    pub const EMFILE: Errno = Errno(libc::EMFILE);
}

impl From<Error> for Errno {
    fn from(e: Error) -> Errno {
        let n = match &e {
            Error::Io { .. } | Error::OutOfBounds { .. } | Error::Checksum { .. } | Error::Corrupt { .. } => {
                log::error!("{e}");
                libc::EIO
            }
            Error::UnsupportedIncompat(_) | Error::Unsupported(_) => libc::EOPNOTSUPP,
            Error::ReadOnly => libc::EROFS,
            Error::ShutDown => libc::EIO,
            Error::NotFound => libc::ENOENT,
            Error::NoAttr => libc::ENODATA,
            Error::ValueTooLarge => libc::E2BIG,
            Error::NotADirectory(_) => libc::ENOTDIR,
            Error::IsADirectory(_) => libc::EISDIR,
            Error::NotASymlink(_) => libc::EINVAL,
            Error::InvalidName => libc::EINVAL,
            Error::Exists => libc::EEXIST,
            Error::InvalidArgument(_) => libc::EINVAL,
            Error::SymlinkLoop => libc::ELOOP,
            Error::FileTooBig(_) => libc::EFBIG,
            Error::TooManyLinks(_) => libc::EMLINK,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::Busy(_) | Error::ImageLocked { .. } => libc::EBUSY,
            Error::NoSpace | Error::NoInodes => libc::ENOSPC,
        };
        Errno(n)
    }
}

/// Result of an adapter operation.
pub type FsResult<T> = Result<T, Errno>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_is_eio_and_limits_are_specific() {
        let c = Error::corrupt("inode", ext4::Location::Inode(12), "bad");
        assert_eq!(Errno::from(c), Errno::EIO);
        assert_eq!(Errno::from(Error::NotEmpty(3)).0, libc::ENOTEMPTY);
        assert_eq!(Errno::from(Error::NoInodes).0, libc::ENOSPC);
        assert_eq!(Errno::from(Error::NoAttr), Errno::ENODATA);
    }
}
