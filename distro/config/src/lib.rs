//! The distribution definition: what a distribution ships and how long it supports it.
//!
//! A distribution is one `distro.toml`: its name, its support policy (months per minor line),
//! its FIPS policy, the components it builds (cargo package, binary, features, whether FIPS is
//! required) and its release lines (version, release date, git source and ref). [`load`] reads
//! and validates the whole file; every error carries the file, line and column of the offending
//! value and says what to change, in the way cargo-deny points at its own config.
#![forbid(unsafe_code)]

mod error;
mod model;
mod raw;

pub use error::{ConfigError, Location};
pub use model::{Advisories, Component, Distribution, FipsPolicy, Line, Source, Support};

use std::path::Path;

/// Reads and validates a distribution definition.
pub fn load(path: &Path) -> Result<Distribution, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// Validates a distribution definition held in memory; `path` is used for messages and to
/// resolve relative source repositories.
pub fn parse(path: &Path, text: &str) -> Result<Distribution, ConfigError> {
    raw::parse(path, text)
}
