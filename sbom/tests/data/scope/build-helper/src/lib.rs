//! Fixture crate.
/// Does nothing.
pub fn touch() {}
