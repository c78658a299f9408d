//! The conformance summary: what `distro conformance --format json` prints and what a release
//! keeps in its record (and attaches to each image as the in-toto test-result predicate).
//!
//! Modelled on Gateway API's `ConformanceReport`: per profile (environment) a result, the counts
//! and every scenario's outcome; the JUnit XML, Markdown and HTML reports are renderings of it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The summary of one conformance run (or of merged shards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConformanceSummary {
    /// Version of this document's shape ([`crate::SCHEMA_VERSION`]).
    pub schema_version: String,
    /// The distribution line under test (its directory name in the build output, e.g. `1.2`).
    pub line: String,
    /// The line version skew and upgrade profiles ran against (`--previous-line`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_line: Option<String>,
    /// Component versions under test (`mesh-proxy` → `0.1.0`), from each line's `build.json`;
    /// keys of the previous line are prefixed `previous/`.
    pub versions: BTreeMap<String, String>,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// Wall time of the whole run, in milliseconds.
    pub duration_ms: u64,
    /// `I/N` when this is one shard of a sharded run; absent for a whole run or a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Totals over every profile.
    pub totals: Counts,
    /// One entry per profile that was selected.
    pub profiles: Vec<ProfileResult>,
    /// Facts a reader must know to judge the run (e.g. the same output passed as both lines).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The command that reproduces this run.
    pub reproduce: String,
}

/// Scenario counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    /// Scenarios that ran and passed.
    pub passed: u32,
    /// Scenarios that ran and failed (or could not run because the environment failed).
    pub failed: u32,
    /// Scenarios deselected (`--scenario`) or not reached.
    pub skipped: u32,
    /// Scenarios whose required capabilities the profile does not have.
    pub unsupported: u32,
}

impl Counts {
    /// Adds one outcome.
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Unsupported => self.unsupported += 1,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.unsupported += other.unsupported;
    }
}

/// The outcome of one scenario (or, for a profile, the worst of its scenarios).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Ran and passed.
    Passed,
    /// Not selected, or not reached.
    Skipped,
    /// The profile lacks a capability the scenario needs.
    Unsupported,
    /// Ran and failed.
    Failed,
}

impl Outcome {
    /// `passed`, `failed`, `skipped`, `unsupported`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Unsupported => "unsupported",
        }
    }
}

/// One profile (environment) of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileResult {
    /// Profile name (its file stem under `conformance/profiles/`).
    pub name: String,
    /// What customer environment it emulates.
    pub description: String,
    /// `failed` if any scenario failed or the environment could not be brought up, else
    /// `passed` if any passed, else `skipped`.
    pub result: Outcome,
    /// The profile's counts.
    pub counts: Counts,
    /// Wall time including bring-up and tear-down, in milliseconds.
    pub duration_ms: u64,
    /// Capabilities the profile declares.
    pub capabilities: Vec<String>,
    /// The files that define the profile (`<name>.toml`, `<name>.thresholds.toml`) → hex
    /// sha256 of their contents, so a reader can tell exactly which environment ran.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub definition_sha256: BTreeMap<String, String>,
    /// Why the profile's passes are weaker than they look (e.g. version skew ran the same build
    /// as both lines, or container hosts ran bare binaries): its passed scenarios count as
    /// *warned* in the test-result attestation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why the environment could not be brought up, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_error: Option<String>,
    /// Every scenario, in table order.
    pub scenarios: Vec<ScenarioResult>,
}

/// One scenario in one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioResult {
    /// Scenario name (see `distro conformance --list`).
    pub name: String,
    /// What it checks.
    pub description: String,
    /// Its outcome.
    pub outcome: Outcome,
    /// Wall time, in milliseconds.
    pub duration_ms: u64,
    /// For a failure: what was observed, naming environment and scenario; for unsupported: the
    /// missing capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Measurements worth keeping (request counts, latencies), as `key=value` lines.
    #[serde(default)]
    pub observations: Vec<String>,
}

/// `predicateType` of the in-toto test-result predicate.
pub const TEST_RESULT_PREDICATE: &str = "https://in-toto.io/attestation/test-result/v0.1";

/// The in-toto test-result predicate v0.1
/// (<https://github.com/in-toto/attestation/blob/main/spec/predicates/test-result.md>): the
/// result of one invocation of a test suite. `distro attest --test-result` builds it from a
/// [`ConformanceSummary`]; `distro verify --require-test-result` checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TestResult {
    /// The result of the whole run.
    pub result: TestResultStatus,
    /// What the tests ran with (required by the spec): here the line under test and every
    /// profile, each a ResourceDescriptor with a digest.
    pub configuration: Vec<crate::intoto::ResourceDescriptor>,
    /// Link to the test run, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Tests that passed without warnings (`<profile>/<scenario>`).
    #[serde(rename = "passedTests", default)]
    pub passed_tests: Vec<String>,
    /// Tests that passed with a warning (the profile's `warnings`).
    #[serde(rename = "warnedTests", default)]
    pub warned_tests: Vec<String>,
    /// Tests that failed.
    #[serde(rename = "failedTests", default)]
    pub failed_tests: Vec<String>,
}

/// `result` of a [`TestResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TestResultStatus {
    /// Every test that ran passed, none with a warning.
    Passed,
    /// None failed, some passed with a warning.
    Warned,
    /// At least one failed.
    Failed,
}

impl TestResultStatus {
    /// `PASSED`, `WARNED` or `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            TestResultStatus::Passed => "PASSED",
            TestResultStatus::Warned => "WARNED",
            TestResultStatus::Failed => "FAILED",
        }
    }
}
