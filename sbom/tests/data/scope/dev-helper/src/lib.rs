//! Fixture crate.
/// Does nothing.
pub fn run() {}
