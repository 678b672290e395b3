//! Shared support for the ext4 integration tests: scratch directories,
//! the real e2fsprogs tools as oracles, and generated source trees.
#![allow(dead_code)]

pub mod kernel;
pub mod models;
pub mod rng;
pub mod tools;
pub mod tree;

#[allow(unused_imports)]
pub use testkit::{Scratch, is_root, skip};
