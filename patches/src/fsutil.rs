//! Atomic writes and digests of published files (patches, series, VEX documents), through
//! [`distro_hostio`].

use std::path::Path;

use crate::error::PatchError;

pub use distro_hostio::sha256_hex;

/// Writes `bytes` to `path` atomically ([`distro_hostio::write_atomic`]), readable by everyone
/// (0644): patches, series and VEX documents are published.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PatchError> {
    Ok(distro_hostio::write_atomic(
        path,
        bytes,
        distro_hostio::PUBLIC,
    )?)
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
