//! Hashing and atomic writing of the files this crate reads and produces.

use std::io::{Read, Write};
use std::path::Path;

use crate::SbomError;

/// Hex SHA-256 of a file's content (read in chunks; binaries can be large).
pub fn sha256_file(path: &Path) -> Result<String, SbomError> {
    let mut f = std::fs::File::open(path).map_err(|e| SbomError::io("opening", path, e))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| SbomError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// Hex SHA-256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a partial document.
///
/// A destination that exists and is not a regular file (`/dev/stdout`, `/dev/null`, a FIFO) is
/// written in place: renaming over it would replace the device or pipe with a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SbomError> {
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() && !meta.is_dir() {
            return std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|mut f| f.write_all(bytes))
                .map_err(|e| SbomError::io("writing", path, e));
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| SbomError::io("creating directory", dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| SbomError::io("creating a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| SbomError::io("writing", tmp.path().to_path_buf(), e))?;
    // Documents are public: readable by everyone, like any other release artifact.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| SbomError::io("setting permissions of", tmp.path().to_path_buf(), e))?;
    }
    tmp.persist(path)
        .map_err(|e| SbomError::io("renaming into place", path, e.error))?;
    Ok(())
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
        if !made.is_ok_and(|s| s.success()) {
            return;
        }
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
