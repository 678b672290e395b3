//! File contents: where data goes and comes from ([`io`]), reads
//! ([`read`]), writes and truncate ([`write`]), [`fallocate`], inline data
//! ([`inline`]), symlink targets ([`symlink`]) and DAX mappings ([`dax`]).

pub mod dax;
pub mod fallocate;
pub mod inline;
pub mod io;
pub mod read;
pub mod symlink;
pub mod write;
