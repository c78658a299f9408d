//! Fixture.
pub fn hello() {}
