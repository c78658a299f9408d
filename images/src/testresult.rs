//! The conformance suite's results as an in-toto test-result attestation
//! (`https://in-toto.io/attestation/test-result/v0.1`, [`distro_schema::TestResult`]).
//!
//! [`from_summary`] turns a [`ConformanceSummary`] into the predicate: one test per
//! `<profile>/<scenario>` that ran, `passedTests` / `warnedTests` (passed in a profile with
//! warnings, e.g. version skew that ran one build on both sides) / `failedTests`, and the
//! `configuration` the run used as ResourceDescriptors with digests: the line (its source
//! commit), every binary under test (sha256 from `build.json`) and every profile file. It is
//! deterministic, so attaching the same summary again adds nothing ([`crate::cosign::attest`]
//! skips a statement that is already the newest of its type).
//!
//! [`check`] is what `distro verify --require-test-result` applies to the newest verified
//! attestation of the type: the predicate must parse and be consistent, and `FAILED` fails.

use std::collections::BTreeMap;
use std::path::Path;

use distro_schema::{
    ConformanceSummary, Outcome, ResourceDescriptor, TestResult, TestResultStatus,
    TEST_RESULT_PREDICATE,
};

use crate::cosign::{self, AttestOutcome, Predicate};
use crate::error::{Error, Result};
use crate::keys::SigningKey;
use crate::store::Store;

/// The predicate type.
pub const PREDICATE_TEST_RESULT: &str = TEST_RESULT_PREDICATE;

/// Largest summary read (a whole matrix with observations is tens of KiB).
const MAX_SUMMARY_BYTES: u64 = 16 << 20;

/// Reads a `summary.json` written by `distro conformance` (or a directory holding one).
pub fn read_summary(path: &Path) -> Result<ConformanceSummary> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    let bytes =
        distro_hostio::read_bounded(&file, distro_hostio::Symlinks::Follow, MAX_SUMMARY_BYTES)
            .map_err(|e| Error::io("reading the conformance summary", &file, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid(
            file.display().to_string(),
            format!("not a conformance summary written by `distro conformance` ({e})"),
        )
    })
}

fn descriptor(name: String, digest: BTreeMap<String, String>) -> ResourceDescriptor {
    ResourceDescriptor {
        uri: None,
        name: Some(name),
        digest,
        annotations: BTreeMap::new(),
    }
}

/// The test-result predicate for a conformance summary.
pub fn from_summary(s: &ConformanceSummary) -> TestResult {
    let (mut passed, mut warned, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for p in &s.profiles {
        for r in &p.scenarios {
            let name = format!("{}/{}", p.name, r.name);
            match r.outcome {
                Outcome::Passed if p.warnings.is_empty() => passed.push(name),
                Outcome::Passed => warned.push(name),
                Outcome::Failed => failed.push(name),
                Outcome::Skipped | Outcome::Unsupported => {}
            }
        }
        // An environment that could not be brought up (or cleaned up) failed even where no
        // scenario was reached.
        if p.setup_error.is_some() && !p.scenarios.iter().any(|r| r.outcome == Outcome::Failed) {
            failed.push(format!("{}/environment", p.name));
        }
    }
    let result = if !failed.is_empty() {
        TestResultStatus::Failed
    } else if !warned.is_empty() {
        TestResultStatus::Warned
    } else {
        TestResultStatus::Passed
    };

    let mut configuration = Vec::new();
    // The line under test: its source commit, with what the run was (versions, notes, the
    // command that reproduces it) as annotations.
    let mut line = ResourceDescriptor {
        uri: None,
        name: Some(format!("distro line {}", s.line)),
        digest: s
            .versions
            .get("source_commit")
            .map(|c| BTreeMap::from([("gitCommit".to_string(), c.clone())]))
            .unwrap_or_default(),
        annotations: BTreeMap::new(),
    };
    if line.digest.is_empty() {
        line.uri = Some(crate::PROJECT_URL.to_string());
    }
    let ann = &mut line.annotations;
    if let Some(prev) = &s.previous_line {
        ann.insert("previousLine".into(), prev.clone().into());
    }
    ann.insert("startedAt".into(), s.started_at.clone().into());
    ann.insert("reproduce".into(), s.reproduce.clone().into());
    if let Some(shard) = &s.shard {
        ann.insert("shard".into(), shard.clone().into());
    }
    if !s.notes.is_empty() {
        ann.insert("notes".into(), s.notes.clone().into());
    }
    ann.insert(
        "totals".into(),
        serde_json::json!({
            "passed": s.totals.passed, "failed": s.totals.failed,
            "skipped": s.totals.skipped, "unsupported": s.totals.unsupported,
        }),
    );
    configuration.push(line);
    // Every binary under test, by the digest `build.json` recorded.
    for (k, v) in &s.versions {
        if let Some(component) = k.strip_suffix(".sha256") {
            let (which, component) = match component.strip_prefix("previous/") {
                Some(c) => (s.previous_line.as_deref().unwrap_or("previous"), c),
                None => (s.line.as_str(), component),
            };
            configuration.push(descriptor(
                format!("{which}/bin/{component}"),
                BTreeMap::from([("sha256".to_string(), v.clone())]),
            ));
        }
    }
    // Every environment, by the digests of the files that define it.
    for p in &s.profiles {
        if p.definition_sha256.is_empty() {
            configuration.push(ResourceDescriptor {
                uri: Some(format!(
                    "{}/conformance/profiles/{}.toml",
                    crate::PROJECT_URL,
                    p.name
                )),
                name: Some(format!("conformance/profiles/{}.toml", p.name)),
                digest: BTreeMap::new(),
                annotations: BTreeMap::new(),
            });
        }
        for (file, d) in &p.definition_sha256 {
            configuration.push(descriptor(
                format!("conformance/profiles/{file}"),
                BTreeMap::from([("sha256".to_string(), d.clone())]),
            ));
        }
    }
    TestResult {
        result,
        configuration,
        url: None,
        passed_tests: passed,
        warned_tests: warned,
        failed_tests: failed,
    }
}

/// The predicate to attach, for [`cosign::attest`] alongside others.
pub fn predicate(s: &ConformanceSummary) -> Result<Predicate> {
    let body = serde_json::to_value(from_summary(s))
        .map_err(|e| Error::json("test-result predicate", e))?;
    Ok(Predicate {
        predicate_type: PREDICATE_TEST_RESULT.to_string(),
        body,
    })
}

/// Signs the summary's test-result statement and attaches it to the image `selector` names,
/// cosign-style (`sha256-<hex>.att`). Returns the image digest and what was done (nothing
/// added when the same statement is already the newest of its type).
pub fn attest(
    store: &mut dyn Store,
    selector: Option<&str>,
    subject_name: &str,
    key: &SigningKey,
    summary: &ConformanceSummary,
) -> Result<(String, AttestOutcome)> {
    let (digest, mut outs) =
        cosign::attest(store, selector, subject_name, key, &[predicate(summary)?])?;
    let out = outs.pop().ok_or_else(|| {
        Error::invalid(
            "test-result attestation",
            "attesting one predicate reported no outcome",
        )
    })?;
    Ok((digest, out))
}

/// Parses a test-result predicate and checks what the spec requires of it: `result` one of
/// `PASSED`/`WARNED`/`FAILED`, `configuration` present with every ResourceDescriptor naming a
/// `uri`, a `digest` or `content`, and a result consistent with the test lists (no `PASSED`
/// with failed tests, no `FAILED` without any).
pub fn parse(predicate: &serde_json::Value) -> std::result::Result<TestResult, String> {
    for field in ["result", "configuration"] {
        if predicate.get(field).is_none() {
            return Err(format!(
                "the test-result predicate has no `{field}` (required by {PREDICATE_TEST_RESULT})"
            ));
        }
    }
    let t: TestResult = serde_json::from_value(predicate.clone())
        .map_err(|e| format!("the test-result predicate does not parse: {e}"))?;
    let raw = predicate
        .get("configuration")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    for (i, (rd, raw)) in t.configuration.iter().zip(&raw).enumerate() {
        if rd.uri.is_none() && rd.digest.is_empty() && raw.get("content").is_none() {
            return Err(format!(
                "configuration[{i}] ({}) names no uri, digest or content (a ResourceDescriptor needs one)",
                rd.name.as_deref().unwrap_or("unnamed")
            ));
        }
    }
    match t.result {
        TestResultStatus::Passed | TestResultStatus::Warned if !t.failed_tests.is_empty() => {
            Err(format!(
                "the test-result says {} but lists failed tests: {}",
                t.result.as_str(),
                t.failed_tests.join(", ")
            ))
        }
        TestResultStatus::Passed if !t.warned_tests.is_empty() => Err(format!(
            "the test-result says PASSED but lists tests with warnings: {}",
            t.warned_tests.join(", ")
        )),
        TestResultStatus::Failed if t.failed_tests.is_empty() => {
            Err("the test-result says FAILED but lists no failed test".to_string())
        }
        _ => Ok(t),
    }
}

/// The policy check of `distro verify --require-test-result`: `(ok, detail)`. `PASSED` and
/// `WARNED` hold (a warning is said, with the tests it concerns); `FAILED`, or a predicate that
/// does not parse, fails naming the failed tests.
pub fn check(predicate: &serde_json::Value) -> (bool, String) {
    let t = match parse(predicate) {
        Ok(t) => t,
        Err(why) => return (false, why),
    };
    let line = t
        .configuration
        .first()
        .and_then(|c| c.name.clone())
        .unwrap_or_else(|| "unnamed configuration".into());
    let counts = format!(
        "{} passed, {} warned, {} failed ({line})",
        t.passed_tests.len(),
        t.warned_tests.len(),
        t.failed_tests.len()
    );
    match t.result {
        TestResultStatus::Passed => (true, format!("test-result PASSED: {counts}")),
        TestResultStatus::Warned => (
            true,
            format!(
                "test-result WARNED: {counts}; WARNING: passed with warnings: {}",
                t.warned_tests.join(", ")
            ),
        ),
        TestResultStatus::Failed => (
            false,
            format!(
                "test-result FAILED: {counts}; failed: {}",
                t.failed_tests.join(", ")
            ),
        ),
    }
}
