//! On-disk structures of ext4 and jbd2. Each module parses one structure
//! into typed values, serializes it back, and computes its checksum.

pub mod acl;
pub mod checksum;
pub mod codec;
pub mod dir_entry;
pub mod dx;
pub mod dx_hash;
pub mod extent;
pub mod features;
pub mod group_desc;
pub mod inode;
pub mod jbd2;
pub mod orphan_file;
pub mod superblock;
pub mod xattr;
