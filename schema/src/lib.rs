//! The JSON documents that other tools and people read, typed in one place.
//!
//! Every document the toolkit writes for someone else (the build record printed by
//! `distro build --format json`, the per-component FIPS evidence, the self-report printed by a
//! mesh binary's `fips-check`, the in-toto/SLSA provenance and the release record `release.json`) is defined here with serde and
//! schemars, so producers and consumers cannot drift apart. The JSON Schema of each is
//! snapshot-tested (`tests/schema.rs`): a change to a contract shows up as a snapshot diff.
#![forbid(unsafe_code)]

pub mod build;
pub mod conformance;
pub mod fips;
pub mod intoto;
pub mod release;

pub use build::{BuildRecord, ComponentRecord, FipsSummary, SourceRecord};
pub use conformance::{
    ConformanceSummary, Counts, Outcome, ProfileResult, ScenarioResult, TestResult,
    TestResultStatus, TEST_RESULT_PREDICATE,
};
pub use fips::{
    cmvp_certificate_url, cmvp_security_policy_url, ApprovedModeEnforcement, CmvpStatus,
    FactSource, FipsEvidence, FipsSelfCheck, ForbiddenCrypto, ModuleIdentity, ModuleLinkage,
    ModuleValidation, SymbolScan, TlsConfigFips, TlsConfigReport, FIPS_140_3, MODULE_NOT_PRODUCT,
};
pub use intoto::{ResourceDescriptor, Statement, Subject};
pub use release::{
    Artifact, Check, CheckResult, ComponentRelease, FipsFacts, ImageArtifacts, LineRelease, Pushed,
    ReleaseState, StageTiming,
};

/// Version of the documents in this crate; bumped on any incompatible change.
pub const SCHEMA_VERSION: &str = "1";
