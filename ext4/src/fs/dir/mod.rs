//! Directories: lookup and listing ([`read`]), entry changes in linear
//! ([`write`]), hashed ([`htree`]) and inline ([`inline`]) directories, the
//! namespace operations ([`namespace`]) and path resolution ([`path`]).

pub mod htree;
pub mod inline;
pub mod namespace;
pub mod path;
pub mod read;
pub mod write;
