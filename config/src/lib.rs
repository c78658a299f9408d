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
    let bytes = read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| io(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        io(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse(path, &text)
}

/// Opens with `O_NONBLOCK` (a FIFO does not stall the open), checks the type with `fstat` on
/// the open descriptor, and reads at most `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file"),
        ));
    }
    let too_big = |n: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is {n} bytes, more than the {limit} bytes a distribution definition may have"
            ),
        )
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut out = Vec::new();
    f.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_big(out.len() as u64));
    }
    Ok(out)
}

/// Validates a distribution definition held in memory; `path` is used for messages and to
/// resolve relative source repositories.
pub fn parse(path: &Path, text: &str) -> Result<Distribution, ConfigError> {
    raw::parse(path, text)
}
