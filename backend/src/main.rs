//! `ext4-virtiofsd`: entry point.
fn main() {}
