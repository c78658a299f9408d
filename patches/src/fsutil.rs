//! Atomic writes and digests.

use std::io::Write;
use std::path::Path;

use crate::error::PatchError;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees half a file. The file is readable by everyone (0644): patches, series and
/// VEX documents are published; the temporary file starts 0600, so the mode is set first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PatchError> {
    use std::os::unix::fs::PermissionsExt as _;
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
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(|e| PatchError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| PatchError::io(path, e.error))?;
    Ok(())
}

/// Lower-case hex sha256 of `bytes` (AWS-LC).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    /// A VEX document (or patch, or series) is a public artifact: 0644, not the temporary
    /// file's 0600.
    #[test]
    fn atomic_writes_are_world_readable() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("vex").join("fips-mesh-0.1.openvex.json");
        assert!(super::write_atomic(&p, b"{}").is_ok());
        let mode = std::fs::metadata(&p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o644);
    }
}
