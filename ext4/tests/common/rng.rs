//! The seeded generator of the model tests.

#[allow(unused_imports)]
pub use testkit::Rng;
