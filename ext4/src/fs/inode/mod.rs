//! Inodes: records in the inode table ([`table`]), attribute changes
//! ([`setattr`]), access times and their policy ([`atime`]), open counts
//! and the orphan list ([`orphan`]), and the per-inode I/O locks
//! ([`lock`]).

pub mod atime;
pub mod lock;
pub mod orphan;
pub mod setattr;
pub mod table;
