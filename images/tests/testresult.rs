//! The in-toto test-result predicate built from a conformance summary: its exact shape per the
//! spec (in-toto/attestation spec/predicates/test-result.md, v0.1; no JSON Schema is published,
//! so a strict round-trip and required-field checks), its result rules, and the checks verify
//! applies to it (bad documents refused).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};

use distro_images::testresult::{self, PREDICATE_TEST_RESULT};
use distro_schema::{
    ConformanceSummary, Counts, Outcome, ProfileResult, ScenarioResult, TestResult,
    TestResultStatus,
};
use serde_json::{json, Value};

fn scenario(name: &str, outcome: Outcome) -> ScenarioResult {
    ScenarioResult {
        name: name.into(),
        description: "d".into(),
        outcome,
        duration_ms: 5,
        message: (outcome == Outcome::Failed).then(|| format!("[p] {name}: observed 200")),
        observations: Vec::new(),
    }
}

fn profile(name: &str, scenarios: Vec<ScenarioResult>, warnings: Vec<String>) -> ProfileResult {
    let mut counts = Counts::default();
    for s in &scenarios {
        counts.add(s.outcome);
    }
    ProfileResult {
        name: name.into(),
        description: "d".into(),
        result: if counts.failed > 0 {
            Outcome::Failed
        } else {
            Outcome::Passed
        },
        counts,
        duration_ms: 10,
        capabilities: vec!["mtls".into()],
        definition_sha256: BTreeMap::from([(format!("{name}.toml"), "ab".repeat(32))]),
        warnings,
        setup_error: None,
        scenarios,
    }
}

fn summary(profiles: Vec<ProfileResult>) -> ConformanceSummary {
    let mut totals = Counts::default();
    for p in &profiles {
        totals.merge(&p.counts);
    }
    ConformanceSummary {
        schema_version: "1".into(),
        line: "0.2".into(),
        previous_line: Some("0.1".into()),
        versions: BTreeMap::from([
            ("source_commit".to_string(), "c0ffee".repeat(6) + "c0ff"),
            ("mesh-proxy.sha256".to_string(), "11".repeat(32)),
            ("previous/mesh-proxy.sha256".to_string(), "22".repeat(32)),
        ]),
        started_at: "2026-12-02T01:00:00Z".into(),
        duration_ms: 100,
        shard: None,
        totals,
        profiles,
        notes: Vec::new(),
        reproduce: "distro conformance --line out/0.2".into(),
    }
}

fn passing() -> ConformanceSummary {
    summary(vec![
        profile(
            "flat",
            vec![
                scenario("mtls-connectivity", Outcome::Passed),
                scenario("ca-rotation", Outcome::Unsupported),
                scenario("retries", Outcome::Skipped),
            ],
            vec![],
        ),
        profile(
            "wan",
            vec![scenario("mtls-connectivity", Outcome::Passed)],
            vec![],
        ),
    ])
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// A passing summary gives a PASSED predicate whose fields are exactly the spec's (url absent,
/// as no run URL is known), with `<profile>/<scenario>` names for the tests that ran, and
/// configuration descriptors that each carry a digest; it round-trips through the typed model.
#[test]
fn passing_summary_gives_a_passed_predicate_of_the_spec_shape() {
    let p = testresult::predicate(&passing()).unwrap();
    assert_eq!(p.predicate_type, PREDICATE_TEST_RESULT);
    assert_eq!(
        PREDICATE_TEST_RESULT,
        "https://in-toto.io/attestation/test-result/v0.1"
    );
    let b = &p.body;
    assert_eq!(
        keys(b),
        [
            "configuration",
            "failedTests",
            "passedTests",
            "result",
            "warnedTests"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(b["result"], "PASSED");
    assert_eq!(
        b["passedTests"],
        json!(["flat/mtls-connectivity", "wan/mtls-connectivity"])
    );
    assert_eq!(b["warnedTests"], json!([]));
    assert_eq!(b["failedTests"], json!([]));
    let conf = b["configuration"].as_array().unwrap();
    let names: Vec<&str> = conf.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "distro line 0.2",
            "0.2/bin/mesh-proxy",
            "0.1/bin/mesh-proxy",
            "conformance/profiles/flat.toml",
            "conformance/profiles/wan.toml"
        ]
    );
    assert_eq!(conf[0]["digest"]["gitCommit"].as_str().unwrap().len(), 40);
    assert_eq!(conf[1]["digest"]["sha256"], "11".repeat(32));
    for c in conf {
        // A ResourceDescriptor names at least one of uri, digest, content; ours a digest.
        assert!(
            c["digest"].as_object().is_some_and(|d| !d.is_empty()),
            "{c}"
        );
        for k in keys(c) {
            assert!(
                ["name", "uri", "digest", "annotations"].contains(&k.as_str()),
                "{k}"
            );
        }
    }
    let typed: TestResult = serde_json::from_value(b.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), *b);
    assert_eq!(testresult::parse(b).unwrap(), typed);
    let (ok, detail) = testresult::check(b);
    assert!(ok, "{detail}");
    assert!(
        detail.starts_with("test-result PASSED: 2 passed, 0 warned, 0 failed"),
        "{detail}"
    );
    // Deterministic: the same summary gives the same bytes (no duplicate on resume).
    assert_eq!(
        serde_json::to_vec(&testresult::predicate(&passing()).unwrap().body).unwrap(),
        serde_json::to_vec(b).unwrap()
    );
}

/// One failed scenario makes the result FAILED with that test listed, and the check fails
/// naming it; an environment that could not be brought up is a failed test too.
#[test]
fn a_failed_scenario_or_environment_makes_the_result_failed() {
    let mut s = passing();
    s.profiles[1]
        .scenarios
        .push(scenario("wrong-identity-refused", Outcome::Failed));
    let t = testresult::from_summary(&s);
    assert_eq!(t.result, TestResultStatus::Failed);
    assert_eq!(t.failed_tests, ["wan/wrong-identity-refused"]);
    let (ok, detail) = testresult::check(&serde_json::to_value(&t).unwrap());
    assert!(!ok);
    assert!(
        detail.contains("test-result FAILED") && detail.contains("wan/wrong-identity-refused"),
        "{detail}"
    );

    let mut s = passing();
    s.profiles[0].setup_error = Some("veth could not be created".into());
    let t = testresult::from_summary(&s);
    assert_eq!(t.result, TestResultStatus::Failed);
    assert_eq!(t.failed_tests, ["flat/environment"]);
}

/// Passes in a profile with warnings (skew that ran one build twice) are warned tests and the
/// result is WARNED, which verify accepts while saying so.
#[test]
fn passes_in_a_profile_with_warnings_are_warned() {
    let mut s = passing();
    s.profiles[1].warnings = vec!["skew uses the same build twice: N and N-1 are both x".into()];
    let t = testresult::from_summary(&s);
    assert_eq!(t.result, TestResultStatus::Warned);
    assert_eq!(t.passed_tests, ["flat/mtls-connectivity"]);
    assert_eq!(t.warned_tests, ["wan/mtls-connectivity"]);
    let (ok, detail) = testresult::check(&serde_json::to_value(&t).unwrap());
    assert!(ok, "{detail}");
    assert!(
        detail.contains("WARNED") && detail.contains("WARNING: passed with warnings: wan/"),
        "{detail}"
    );
}

/// Documents that break the spec or contradict themselves are refused with the reason.
#[test]
fn malformed_predicates_are_refused() {
    let good = testresult::predicate(&passing()).unwrap().body;
    let refused = |mutate: &dyn Fn(&mut Value), expect: &str| {
        let mut v = good.clone();
        mutate(&mut v);
        let (ok, detail) = testresult::check(&v);
        assert!(!ok, "accepted {v}");
        assert!(detail.contains(expect), "{expect:?} not in {detail:?}");
    };
    refused(
        &|v| {
            v.as_object_mut().unwrap().remove("result");
        },
        "has no `result`",
    );
    refused(
        &|v| {
            v.as_object_mut().unwrap().remove("configuration");
        },
        "has no `configuration`",
    );
    refused(&|v| v["result"] = json!("OK"), "does not parse");
    refused(&|v| v["passedTests"] = json!("flat"), "does not parse");
    refused(
        &|v| v["configuration"] = json!([{"name": "no digest"}]),
        "configuration[0] (no digest) names no uri, digest or content",
    );
    refused(
        &|v| v["failedTests"] = json!(["flat/retries"]),
        "says PASSED but lists failed tests: flat/retries",
    );
    refused(
        &|v| v["result"] = json!("FAILED"),
        "says FAILED but lists no failed test",
    );
    // Unknown fields are ignored, as the in-toto parsing rules require.
    let mut v = good.clone();
    v["extension"] = json!({"x": 1});
    assert!(testresult::check(&v).0);
    // A descriptor with only `content` is acceptable.
    let mut v = good;
    v["configuration"] = json!([{"name": "inline", "content": "Zm9v"}]);
    assert!(testresult::check(&v).0);
}
