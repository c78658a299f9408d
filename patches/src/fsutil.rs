//! The atomic write of the `distro` crate's patch commands, until they call [`distro_hostio`]
//! themselves (this crate calls it directly).

use std::path::Path;

use crate::error::PatchError;

/// [`distro_hostio::write_atomic`] with mode 0644 ([`distro_hostio::PUBLIC`]: patches, series
/// and VEX documents are published), kept for `distro/src/cmd/patches.rs`; nothing in this
/// crate uses it.
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
