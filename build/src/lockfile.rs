//! Reading Cargo.lock: which versions of which packages a build will use.

use std::path::Path;

use serde::Deserialize;

use crate::BuildError;

/// A parsed Cargo.lock.
#[derive(Debug, Clone, Deserialize)]
pub struct Lockfile {
    /// Every package entry.
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// One `[[package]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct LockedPackage {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Source (`registry+...`, `git+...`), absent for path packages.
    #[serde(default)]
    pub source: Option<String>,
    /// sha256 of the .crate, for registry packages.
    #[serde(default)]
    pub checksum: Option<String>,
}

impl Lockfile {
    /// Reads and parses a lockfile.
    pub fn read(path: &Path) -> Result<Self, BuildError> {
        let text = std::fs::read_to_string(path).map_err(|e| BuildError::Lockfile {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
            help: "commit Cargo.lock in the source repository: FIPS builds are --locked".into(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses lockfile text; `path` is for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, BuildError> {
        toml::from_str(text).map_err(|e| BuildError::Lockfile {
            path: path.to_path_buf(),
            message: format!("not a valid Cargo.lock: {}", e.message()),
            help: "regenerate it with `cargo generate-lockfile` and commit it".into(),
        })
    }

    /// Every locked version of `name`.
    pub fn versions_of(&self, name: &str) -> Vec<&LockedPackage> {
        self.packages.iter().filter(|p| p.name == name).collect()
    }
}
