//! `ext4`: an ext4 file system implementation in userspace Rust.
//!
//! Layered bottom-up; a module never reaches upward:
//! - [`io`]: block devices (image file, memory, recovery overlay) and the metadata cache;
//! - [`disk`]: on-disk structures, each parsed into a typed value and
//!   serialized back by one piece of code, with its checksum;
//! - [`journal`]: jbd2 journal recovery;
//! - [`fs`]: the file system: open, inodes, file data, directories, xattrs, paths.
//!
//! Every public operation takes `&self`, and [`Ext4`] is `Send + Sync`.

pub mod disk;
pub mod error;
pub mod fs;
pub mod io;
pub mod journal;

pub use disk::extent::FileExtent;
pub use disk::inode::{FileType, Inode, ROOT_INO, Timestamp};
pub use error::{Error, Location, Result};
pub use fs::dir::read::DirEntry;
pub use fs::map::lookup::Mapping;
pub use fs::xattr::read::Xattr;
pub use fs::{Ext4, OpenOptions};

#[cfg(test)]
mod tests {
    #[test]
    fn ext4_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Ext4>();
    }
}
