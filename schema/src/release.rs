//! The release record: `OUT/<line>/release.json`, printed by `distro release --format json`.
//!
//! One [`LineRelease`] per line flows from stage to stage inside `distro release`: the build
//! stage fills the source and the components' binaries, evidence and provenance, the SBOM stage
//! adds each component's SBOMs, the VEX stage the line's VEX, the image stage the image
//! layouts, and the publish stages the pushed references and their checks. It is written
//! (atomically) after every stage, so a release that was interrupted resumes from what the
//! record says is done, and a second run with nothing changed finds `state: published`, checks
//! the registry still holds it and does nothing. Every artifact is named by path and sha256, so
//! no later stage (or reader) guesses a file name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::build::SourceRecord;
use crate::conformance::ConformanceSummary;
use crate::fips::CmvpStatus;

/// Everything the release of one line produced, in stage order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LineRelease {
    /// Version of this document's schema ([`crate::SCHEMA_VERSION`]).
    pub schema_version: String,
    /// Distribution name from distro.toml.
    pub distribution: String,
    /// Release line (`0.2`).
    pub line: String,
    /// The release of the line (its `latest`, e.g. `0.2.0`): the image tag.
    pub version: String,
    /// How far the release got; see [`ReleaseState`].
    pub state: ReleaseState,
    /// sha256 of everything the local stages read (distro.toml, the line's resolved commit and
    /// patch queue, the advisory snapshot, the `distro` binary): a later run with the same
    /// fingerprint and intact artifacts redoes none of them.
    pub fingerprint: String,
    /// The source the line was built from.
    pub source: SourceRecord,
    /// The build record (`build.json`) the components come from.
    pub build_record: Artifact,
    /// Patches applied to the source, in series order.
    pub patches: Vec<String>,
    /// One entry per component, in distro.toml order.
    pub components: Vec<ComponentRelease>,
    /// The line's OpenVEX document, attested on every image; absent when there was nothing to
    /// state (then [`LineRelease::vex_note`] says why).
    pub vex: Option<Artifact>,
    /// Why there is no VEX document, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vex_note: Option<String>,
    /// Where the images went: `REGISTRY/NAMESPACE`; absent before the push stage.
    pub registry: Option<String>,
    /// Public key the pushed images were verified against (path and sha256 of the PEM).
    pub public_key: Option<Artifact>,
    /// The conformance run of this line's images, when the conformance stage ran.
    pub conformance: Option<ConformanceSummary>,
    /// Every check of every stage, in the order they ran.
    pub checks: Vec<Check>,
    /// Each stage's wall time, in the order they ran (a skipped stage takes ~0).
    pub stages: Vec<StageTiming>,
}

/// How far a release got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Built, documented and assembled locally; nothing pushed yet (or the push was cut short).
    Built,
    /// Pushed by digest, signed, attested and verified, and every tag moved to its digest.
    Published,
}

/// A file by path and content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    /// Its path (absolute, or as the stage that wrote it named it).
    pub path: String,
    /// sha256 of its content, hex. For an OCI layout: the image manifest's digest.
    pub sha256: String,
}

/// One component of the line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentRelease {
    /// Component name.
    pub name: String,
    /// Cargo package.
    pub package: String,
    /// Cargo features it was built with (default features off, so the whole set).
    pub features: Vec<String>,
    /// The built binary.
    pub binary: Artifact,
    /// FIPS facts from the built binary's evidence.
    pub fips: FipsFacts,
    /// FIPS evidence JSON.
    pub evidence: Artifact,
    /// in-toto SLSA provenance statement.
    pub provenance: Artifact,
    /// CycloneDX SBOM of the binary (from the resolved dependency graph).
    pub sbom: Option<Artifact>,
    /// SPDX 2.3 SBOM of the binary.
    pub spdx: Option<Artifact>,
    /// The OCI image, when the image stage ran.
    pub image: Option<ImageArtifacts>,
    /// Where it was pushed, when the push stage ran.
    pub pushed: Option<Pushed>,
}

/// FIPS facts the pipeline checks first (details in the evidence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FipsFacts {
    /// Every FIPS check of the binary held.
    pub mode: bool,
    /// Module version found in the binary.
    pub module_version: String,
    /// CMVP certificate number, when the module has one.
    pub cmvp_certificate: Option<u32>,
    /// CMVP status.
    pub cmvp_status: CmvpStatus,
}

/// One component's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageArtifacts {
    /// OCI image layout directory; `sha256` is the image manifest's digest (hex).
    pub layout: Artifact,
    /// Tag of the image in the layout (and in the registry once published).
    pub tag: String,
    /// Image SBOM (every file of every layer).
    pub sbom: Artifact,
    /// Iron Bank hardening manifest.
    pub hardening_manifest: Artifact,
}

/// An image in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pushed {
    /// `REGISTRY/REPO`.
    pub repository: String,
    /// Image manifest digest (`sha256:…`).
    pub digest: String,
    /// `REGISTRY/REPO@sha256:…`: what was signed, attested and verified.
    pub by_digest: String,
    /// The tag moved to the digest after verification.
    pub tag: String,
    /// Whether the tag points at the digest (only after verify passed).
    pub tagged: bool,
}

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    /// Stage that made it (`preflight`, `support`, `build`, `verify mesh-proxy`, …).
    pub stage: String,
    /// What was checked.
    pub name: String,
    /// Its result.
    pub result: CheckResult,
    /// What was found (or why it was skipped).
    pub detail: String,
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    /// It held.
    Passed,
    /// It did not.
    Failed,
    /// It was not run (the detail says why).
    Skipped,
}

/// One stage's wall time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StageTiming {
    /// Stage name.
    pub stage: String,
    /// Wall time, in milliseconds.
    pub duration_ms: u64,
    /// The stage found its work already done (a resumed or repeated release).
    pub skipped: bool,
}
