//! Hashing and writing of SBOM files for the `distro` crate's callers (`cmd/sbom.rs`,
//! `cmd/image.rs`, `cmd/release.rs`), through [`distro_hostio`], naming the file in
//! [`SbomError`]s; this crate calls [`distro_hostio`] directly.

use std::path::Path;

use crate::SbomError;

/// Hex SHA-256 of a file's content (streamed; binaries can be large).
pub fn sha256_file(path: &Path) -> Result<String, SbomError> {
    distro_hostio::sha256_file(path).map_err(|e| SbomError::io("reading", path, e))
}

/// Writes an SBOM document to `path` atomically, readable by everyone (0644: documents are
/// public). A destination the user named that is a stream (`/dev/stdout`, `/dev/null`, a FIFO)
/// is written in place rather than replaced ([`distro_hostio::write_output`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SbomError> {
    Ok(distro_hostio::write_output(
        path,
        bytes,
        distro_hostio::PUBLIC,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `-o /dev/null` once replaced the device with a file. A destination that is
    /// not a regular file (here a FIFO) is written in place and stays what it was.
    #[test]
    fn special_destinations_are_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils) failed");
        let reader_path = fifo.clone();
        let reader = std::thread::spawn(move || std::fs::read(reader_path).unwrap_or_default());
        assert!(write_atomic(&fifo, b"data").is_ok());
        assert_eq!(reader.join().unwrap_or_default(), b"data");
        let ft = std::fs::metadata(&fifo).map(|m| m.file_type());
        assert!(ft.is_ok_and(|t| t.is_fifo()));
    }

    /// A regular file is replaced atomically with the new content.
    #[test]
    fn regular_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("x.json");
        assert!(write_atomic(&f, b"one").is_ok());
        assert!(write_atomic(&f, b"two").is_ok());
        assert_eq!(std::fs::read(&f).unwrap_or_default(), b"two");
    }

    /// An SBOM is a public artifact: 0644, not the temporary file's 0600.
    #[test]
    fn sboms_are_world_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("sbom").join("mesh-proxy.cdx.json");
        assert!(write_atomic(&f, b"{}").is_ok());
        let mode = std::fs::metadata(&f)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o644);
    }
}
