//! Atomic writes and digests.

use std::io::Write;
use std::path::Path;

use crate::error::PatchError;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PatchError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| PatchError::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| PatchError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| PatchError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| PatchError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| PatchError::io(path, e.error))?;
    Ok(())
}

/// Lower-case hex sha256 of `bytes` (AWS-LC).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}
