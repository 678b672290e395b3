//! Typed errors of the ext4 core. Every error carries the structure and the
//! place it concerns; mapping to errno happens at the FUSE boundary only.

use std::fmt;

/// Where on the image a problem was found, for error messages a person can
/// check with `debugfs` or `dumpe2fs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The primary superblock.
    Superblock,
    /// A block group (its descriptor or bitmaps).
    Group(u32),
    /// An inode by number.
    Inode(u32),
    /// A file-system block by physical number.
    Block(u64),
    /// A block of an inode's data, by inode and logical block number.
    FileBlock { ino: u32, lblk: u64 },
    /// A block of the journal, by its journal-relative number.
    JournalBlock(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Superblock => write!(f, "superblock"),
            Location::Group(g) => write!(f, "group {g}"),
            Location::Inode(i) => write!(f, "inode {i}"),
            Location::Block(b) => write!(f, "block {b}"),
            Location::FileBlock { ino, lblk } => write!(f, "inode {ino} logical block {lblk}"),
            Location::JournalBlock(b) => write!(f, "journal block {b}"),
        }
    }
}

/// Errors of the ext4 core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The underlying image could not be read or written.
    #[error("I/O error at byte {offset} of the image: {source}")]
    Io {
        /// Byte offset of the failed access.
        offset: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image ends before a structure it references.
    #[error("{what} at {location} lies beyond the end of the image")]
    OutOfBounds {
        /// The structure that was being read.
        what: &'static str,
        /// Where it was supposed to be.
        location: Location,
    },
    /// A stored checksum does not match the structure's contents.
    #[error("checksum mismatch in {what} at {location}")]
    Checksum {
        /// The structure whose checksum failed.
        what: &'static str,
        /// Where it is.
        location: Location,
    },
    /// A structure holds values that cannot be valid.
    #[error("corrupt {what} at {location}: {reason}")]
    Corrupt {
        /// The structure that is corrupt.
        what: &'static str,
        /// Where it is.
        location: Location,
        /// What is wrong with it.
        reason: String,
    },
    /// The image uses an incompatible feature this implementation does not know.
    #[error("unsupported incompatible feature flags {0:#x}")]
    UnsupportedIncompat(u32),
    /// The image uses a feature that this implementation recognises but cannot serve.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A write was attempted on a file system opened read-only.
    #[error("file system is read-only")]
    ReadOnly,
    /// The file system was shut down ([`crate::Ext4::shutdown`]): nothing
    /// changes any more until it is opened again.
    #[error("file system is shut down")]
    ShutDown,
    /// No such file, directory or attribute.
    #[error("not found")]
    NotFound,
    /// An extended attribute does not exist.
    #[error("no such extended attribute")]
    NoAttr,
    /// An extended attribute value larger than this file system can ever
    /// store (over 64 KiB, or over what an empty xattr block holds): E2BIG.
    #[error("extended attribute value too large")]
    ValueTooLarge,
    /// The inode is not a directory but a directory operation was asked.
    #[error("inode {0} is not a directory")]
    NotADirectory(u32),
    /// The inode is a directory but a file operation was asked.
    #[error("inode {0} is a directory")]
    IsADirectory(u32),
    /// The inode is not a symbolic link.
    #[error("inode {0} is not a symbolic link")]
    NotASymlink(u32),
    /// A name is longer than 255 bytes or contains '/' or NUL.
    #[error("invalid name")]
    InvalidName,
    /// The name (a directory entry or an extended attribute) already exists (EEXIST).
    #[error("name already exists")]
    Exists,
    /// A caller passed an argument out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A path walk met too many symbolic links or a loop.
    #[error("too many levels of symbolic links")]
    SymlinkLoop,
    /// A file's block mapping cannot hold what was asked (logical block
    /// beyond what the map addresses, or an extent tree at its maximum depth): EFBIG.
    #[error("inode {0}: file too big for its block mapping")]
    FileTooBig(u32),
    /// A link count would exceed what the format allows (EMLINK).
    #[error("inode {0}: too many links")]
    TooManyLinks(u32),
    /// A directory to remove or replace is not empty (ENOTEMPTY).
    #[error("directory inode {0} is not empty")]
    NotEmpty(u32),
    /// Blocks are in use by a guest mapping and cannot be freed now (EBUSY).
    #[error("busy: {0}")]
    Busy(String),
    /// No free block is left to allocate (ENOSPC).
    #[error("no space left on the file system")]
    NoSpace,
    /// No free inode is left to allocate (ENOSPC).
    #[error("no free inodes left on the file system")]
    NoInodes,
    /// Another process (or another open in this one) holds the image's
    /// lock: a writer excludes everyone, readers exclude writers.
    #[error("image {} is in use: another process has it open for {}, so it cannot be opened for {}", path.display(), gerund(held), gerund(wanted))]
    ImageLocked {
        /// The image file.
        path: std::path::PathBuf,
        /// What this open wanted: "read" or "write".
        wanted: &'static str,
        /// What the holder has it open for: "read" or "write".
        held: &'static str,
    },
}

impl Error {
    /// Shorthand for a [`Error::Corrupt`] error.
    pub fn corrupt(what: &'static str, location: Location, reason: impl Into<String>) -> Self {
        Error::Corrupt { what, location, reason: reason.into() }
    }
}

/// "writing" for "write", "reading" for "read" (error messages).
fn gerund(what: &str) -> &'static str {
    if what == "write" { "writing" } else { "reading" }
}

/// Result type of the ext4 core.
pub type Result<T> = std::result::Result<T, Error>;
