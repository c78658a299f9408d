//! File operations of the build stage, with errors that name the path. Atomic writes, digests
//! and subprocesses are [`distro_hostio`]'s, called directly; this module only adds the JSON
//! and copy conventions of a build's outputs.

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

/// Writes `value` as pretty JSON, atomically and world-readable (0644): what a build writes
/// (evidence, provenance, build.json) is published.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), BuildError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| BuildError::Io {
        action: "serialising",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    Ok(distro_hostio::write_atomic(
        path,
        &text,
        distro_hostio::PUBLIC,
    )?)
}

/// Copies a file atomically, keeping its permission bits (a binary stays executable).
pub(crate) fn copy_atomic(from: &Path, to: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt as _;
    let bytes = std::fs::read(from).map_err(io("reading", from))?;
    let mode = std::fs::metadata(from)
        .map_err(io("reading metadata of", from))?
        .permissions()
        .mode()
        & 0o7777;
    Ok(distro_hostio::write_atomic(to, &bytes, mode)?)
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

    /// A copied binary keeps its execute bits.
    #[test]
    fn copies_keep_the_mode() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let from = dir.path().join("built");
        assert!(std::fs::write(&from, b"\x7fELF").is_ok());
        assert!(std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o755)).is_ok());
        let to = dir.path().join("bin").join("mesh-proxy");
        assert!(super::copy_atomic(&from, &to).is_ok());
        let mode = std::fs::metadata(&to)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o755);
    }
}
