//! Atomic writes and digests.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::BuildError;

pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |source| BuildError::Io {
        action,
        path,
        source,
    }
}

pub(crate) fn create_dir(path: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(path).map_err(io("creating directory", path))
}

pub(crate) fn canonical(path: &Path) -> Result<PathBuf, BuildError> {
    path.canonicalize().map_err(io("resolving", path))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file. The file is readable by everyone (0644): what a build
/// writes (evidence, provenance, build.json) is published. The temporary file starts 0600, so
/// the mode is set before the rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir(dir)?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(io("creating a temporary file in", dir))?;
    tmp.write_all(bytes).map_err(io("writing", path))?;
    tmp.as_file().sync_all().map_err(io("syncing", path))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(io("setting permissions of", path))?;
    tmp.persist(path).map_err(|e| BuildError::Io {
        action: "renaming into place",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), BuildError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| BuildError::Io {
        action: "serialising",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Copies a file atomically, keeping its permissions.
pub(crate) fn copy_atomic(from: &Path, to: &Path) -> Result<(), BuildError> {
    let bytes = std::fs::read(from).map_err(io("reading", from))?;
    write_atomic(to, &bytes)?;
    let perms = std::fs::metadata(from)
        .map_err(io("reading metadata of", from))?
        .permissions();
    std::fs::set_permissions(to, perms).map_err(io("setting permissions of", to))
}

/// Hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, BuildError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    Ok(sha256_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    /// Evidence, provenance and build records are public artifacts: 0644, not the temporary
    /// file's 0600.
    #[test]
    fn atomic_writes_are_world_readable() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("evidence").join("mesh-proxy.fips.json");
        assert!(super::write_json(&p, &serde_json::json!({"mode": true})).is_ok());
        let mode = std::fs::metadata(&p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o644);
    }
}
