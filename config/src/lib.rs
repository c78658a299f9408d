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
pub use model::{
    Advisories, Component, Distribution, FipsPolicy, ImageSettings, Line, Source, Support,
};

use std::path::Path;

/// Largest distribution definition read (1 MiB; the built-in one is a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and validates a distribution definition. The file must be a regular file (a symbolic
/// link to one is fine) of at most [`MAX_CONFIG_BYTES`]: a FIFO, `/dev/zero` or another device
/// is refused at once, naming the file, rather than blocking or read without end.
pub fn load(path: &Path) -> Result<Distribution, ConfigError> {
    let io = |message: String| ConfigError::Io {
        path: path.to_path_buf(),
        message,
    };
    let bytes = distro_hostio::read_regular(path, MAX_CONFIG_BYTES, distro_hostio::Access::Any)
        .map_err(|e| io(e.why))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        io(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse(path, &text)
}

/// Validates a distribution definition held in memory; `path` is used for messages and to
/// resolve relative source repositories.
pub fn parse(path: &Path, text: &str) -> Result<Distribution, ConfigError> {
    raw::parse(path, text)
}
