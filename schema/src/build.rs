//! The record `distro build --format json` prints and writes as `build.json`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fips::CmvpStatus;

/// Everything a build of one release line produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BuildRecord {
    /// Version of this document's schema.
    pub schema_version: String,
    /// Distribution name from distro.toml.
    pub distribution: String,
    /// Release line (`0.1`).
    pub line: String,
    /// What was built.
    pub source: SourceRecord,
    /// sha256 of the Cargo.lock the build used.
    pub cargo_lock_sha256: String,
    /// Patches applied to the source before building, in order.
    pub patches: Vec<String>,
    /// One entry per component.
    pub components: Vec<ComponentRecord>,
}

/// The source a line was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceRecord {
    /// Git repository as given in distro.toml (resolved to an absolute path or URL).
    pub repository: String,
    /// The ref from distro.toml.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit it resolved to.
    pub commit: String,
    /// SOURCE_DATE_EPOCH used for the build (the commit's committer time).
    pub source_date_epoch: i64,
}

/// One built component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentRecord {
    /// Component name.
    pub name: String,
    /// Cargo package.
    pub package: String,
    /// Path of the built binary.
    pub binary: String,
    /// sha256 of the binary.
    pub sha256: String,
    /// FIPS summary (details in the evidence file).
    pub fips: FipsSummary,
    /// Path of the FIPS evidence JSON.
    pub evidence: String,
    /// Path of the in-toto provenance statement.
    pub provenance: String,
    /// Cargo features the binary was built with (default features off, so the whole set);
    /// absent in records written before it was recorded. The SBOM stage resolves the
    /// dependency graph with exactly these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

/// The FIPS facts a release pipeline checks first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FipsSummary {
    /// Every FIPS check held.
    pub mode: bool,
    /// Module version found in the binary (`AWS-LC FIPS 3.6.0`), or the table's line.
    pub module_version: String,
    /// CMVP certificate number, when the module line has one.
    pub cmvp_certificate: Option<u32>,
    /// CMVP status.
    pub cmvp_status: CmvpStatus,
}
