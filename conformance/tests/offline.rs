//! The parts of the suite that need no root: profiles, the scenario table, shards, merging,
//! reports and emitted CI definitions.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use distro_conformance::profile::{self, Profile};
use distro_conformance::{report, scenarios, shard};
use distro_schema::{ConformanceSummary, Counts, Outcome, ProfileResult, ScenarioResult};

fn builtin() -> Vec<Profile> {
    profile::load_dir(&profile::builtin_dir()).unwrap()
}

/// Every built-in profile the issue names loads, and every scenario runs in at least one of them
/// (a scenario no profile selects would never be tested).
#[test]
fn builtin_profiles_load_and_every_scenario_has_a_profile() {
    let all = builtin();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    for want in [
        "flat",
        "legacy-vm",
        "ipv6-only",
        "dual-stack",
        "wan",
        "air-gapped",
        "fips-strict",
        "version-skew",
        "version-skew-control-behind",
        "upgrade",
        "ca-rotation",
    ] {
        assert!(names.contains(&want), "profile {want} missing: {names:?}");
    }
    for s in scenarios::SCENARIOS {
        assert!(
            all.iter()
                .any(|p| s.requires.iter().all(|c| p.capabilities.contains(*c))),
            "no profile runs scenario {}",
            s.name
        );
    }
    let wan = all.iter().find(|p| p.name == "wan").unwrap();
    let link = wan.link_of("site-b").unwrap();
    assert_eq!(link.mtu, Some(1280));
    assert_eq!(link.delay_ms, Some(100));
    assert_eq!(link.loss_percent, Some(1.0));
    assert!(
        wan.thresholds.request_max_ms
            > all
                .iter()
                .find(|p| p.name == "flat")
                .unwrap()
                .thresholds
                .request_max_ms,
        "the WAN profile's own thresholds allow more latency"
    );
}

fn write_profile(text: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.toml");
    std::fs::write(&p, text).unwrap();
    (d, p)
}

const MINIMAL: &str = r#"description = "x"
capabilities = ["mtls"]
[[networks]]
name = "n"
ipv4 = "10.1.2.0/24"
[[hosts]]
name = "cp"
network = "n"
role = "control"
[[hosts]]
name = "fe"
network = "n"
role = "workload"
service = "frontend"
[[hosts]]
name = "be"
network = "n"
role = "workload"
service = "backend"
"#;

/// A minimal profile loads; the same with a typo'd field is refused with the file and line.
#[test]
fn profile_error_names_file_and_line() {
    let (_d, p) = write_profile(MINIMAL);
    Profile::load(&p).unwrap();
    let (_d, p) = write_profile(&MINIMAL.replace("role = \"control\"", "rol = \"control\""));
    let e = Profile::load(&p).unwrap_err().to_string();
    assert!(e.contains("bad.toml:9"), "{e}");
    assert!(e.contains("rol"), "{e}");
}

/// A capability nobody knows is an error, not a silently unsupported scenario.
#[test]
fn unknown_capability_is_refused() {
    let (_d, p) = write_profile(&MINIMAL.replace("[\"mtls\"]", "[\"mtsl\"]"));
    let e = Profile::load(&p).unwrap_err().to_string();
    assert!(e.contains("unknown capability `mtsl`"), "{e}");
}

/// A profile without the backend workload the scenarios call is refused, naming what is missing.
#[test]
fn profile_without_backend_is_refused() {
    let (_d, p) = write_profile(&MINIMAL.replace("service = \"backend\"", "service = \"other\""));
    let e = Profile::load(&p).unwrap_err().to_string();
    assert!(e.contains("service `backend` is required"), "{e}");
}

/// Shards partition the profiles: every profile in exactly one shard.
#[test]
fn shards_partition_the_profiles() {
    let all = builtin();
    for n in 1..=4 {
        let mut seen = Vec::new();
        for i in 1..=n {
            for p in shard::pick(all.clone(), i, n) {
                assert!(!seen.contains(&p.name), "{} twice with N={n}", p.name);
                seen.push(p.name);
            }
        }
        assert_eq!(seen.len(), all.len(), "N={n}");
    }
}

fn sample(name: &str, failed: bool) -> ConformanceSummary {
    let outcome = if failed {
        Outcome::Failed
    } else {
        Outcome::Passed
    };
    let mut counts = Counts::default();
    counts.add(outcome);
    counts.add(Outcome::Unsupported);
    ConformanceSummary {
        schema_version: "1".into(),
        line: "1.2".into(),
        previous_line: None,
        versions: BTreeMap::from([("mesh-proxy".to_string(), "0.1.0".to_string())]),
        started_at: "2026-12-01T00:00:00Z".into(),
        duration_ms: 1500,
        shard: Some("1/2".into()),
        totals: counts,
        profiles: vec![ProfileResult {
            name: name.into(),
            description: "desc <b>bold</b>".into(),
            result: outcome,
            counts,
            duration_ms: 1500,
            capabilities: vec!["mtls".into()],
            definition_sha256: BTreeMap::new(),
            warnings: Vec::new(),
            setup_error: None,
            scenarios: vec![
                ScenarioResult {
                    name: "mtls-connectivity".into(),
                    description: "d".into(),
                    outcome,
                    duration_ms: 10,
                    message: failed.then(|| {
                        format!("[{name}] mtls-connectivity: saw <script>alert(1)</script> & more")
                    }),
                    observations: vec!["max_ms=3".into()],
                },
                ScenarioResult {
                    name: "ca-rotation".into(),
                    description: "d".into(),
                    outcome: Outcome::Unsupported,
                    duration_ms: 0,
                    message: Some("the profile lacks ca-rotation".into()),
                    observations: vec![],
                },
            ],
        }],
        notes: vec!["same build as both lines".into()],
        reproduce: "distro conformance --line out".into(),
    }
}

/// Merging shards adds their profiles and totals; a profile in two shards or shards of different
/// lines are refused.
#[test]
fn merge_combines_shards() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    let b = d.path().join("b");
    report::write_all(&sample("flat", false), &a).unwrap();
    report::write_all(&sample("wan", true), &b).unwrap();
    let m = shard::merge(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(m.profiles.len(), 2);
    assert_eq!(m.totals.passed, 1);
    assert_eq!(m.totals.failed, 1);
    assert_eq!(m.totals.unsupported, 2);
    assert_eq!(m.shard, None);
    let e = shard::merge(&[a.clone(), a.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("flat appears in more than one shard"), "{e}");
    let mut other = sample("ipv6-only", false);
    other.line = "1.1".into();
    let c = d.path().join("c");
    report::write_all(&other, &c).unwrap();
    let e = shard::merge(&[a, c]).unwrap_err().to_string();
    assert!(e.contains("line 1.1"), "{e}");
}

/// JUnit carries environment, line and versions as testsuite properties, escapes messages, and
/// is well-formed XML (checked by Python's parser when present).
#[test]
fn junit_has_properties_and_is_well_formed() {
    let x = report::junit(&sample("flat", true));
    assert!(
        x.contains(r#"<property name="environment" value="flat"/>"#),
        "{x}"
    );
    assert!(x.contains(r#"<property name="line" value="1.2"/>"#), "{x}");
    assert!(
        x.contains(r#"<property name="version.mesh-proxy" value="0.1.0"/>"#),
        "{x}"
    );
    assert!(x.contains("&lt;script&gt;"), "{x}");
    assert!(
        x.contains("<failure message=\"[flat] mtls-connectivity"),
        "{x}"
    );
    assert!(
        x.contains("<skipped message=\"unsupported: the profile lacks ca-rotation\"/>"),
        "{x}"
    );
    let py = Command::new("python3")
        .args(["-c", "import sys, xml.etree.ElementTree as E; r=E.fromstring(sys.stdin.read()); print(len(r.findall('testsuite/testcase')))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    if let Ok(mut c) = py {
        use std::io::Write as _;
        c.stdin.take().unwrap().write_all(x.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "not well-formed XML:\n{x}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    }
}

/// The HTML report is self-contained (no scripts, no remote assets), escapes what scenarios
/// observed, and shows the matrix and the failure.
#[test]
fn html_report_is_self_contained_and_escaped() {
    let h = report::html(&sample("flat", true)).unwrap();
    assert!(!h.contains("<script"), "{h}");
    assert!(!h.contains("src=\"http"), "{h}");
    assert!(!h.contains("href=\"http"), "{h}");
    assert!(
        h.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
            || h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{h}"
    );
    assert!(h.contains("<td class=\"failed\">failed</td>"), "{h}");
    assert!(
        h.contains("<td class=\"unsupported\">unsupported</td>"),
        "{h}"
    );
    let md = report::markdown(&sample("flat", true)).unwrap();
    assert!(md.contains("| flat | ❌ |"), "{md}");
    assert!(md.contains("**flat / mtls-connectivity**"), "{md}");
}

/// `--emit github-actions` is YAML whose job matrix has one entry per shard, each running
/// `--shard I/N`; `--emit k8s-jobs` is an indexed Job with N completions.
#[test]
fn emitted_ci_definitions_are_valid_yaml() {
    let gha = shard::github_actions(3, &["flat".into(), "wan".into()]);
    let k8s = shard::k8s_jobs(3, "example/conformance:1");
    let script = "import sys, yaml\nd = yaml.safe_load(open(sys.argv[1]))\nif sys.argv[2] == 'gha':\n    m = d['jobs']['conformance']['strategy']['matrix']['shard']\n    print(len(m))\nelse:\n    print(d['spec']['completions'], d['spec']['completionMode'])\n";
    let d = tempfile::tempdir().unwrap();
    let (g, k) = (d.path().join("gha.yml"), d.path().join("k8s.yml"));
    std::fs::write(&g, &gha).unwrap();
    std::fs::write(&k, &k8s).unwrap();
    assert!(gha.contains("--shard ${{ matrix.shard }}/3"), "{gha}");
    assert!(
        k8s.contains("--shard $((JOB_COMPLETION_INDEX + 1))/3"),
        "{k8s}"
    );
    let run = |f: &PathBuf, kind: &str| {
        Command::new("python3")
            .args(["-c", script])
            .arg(f)
            .arg(kind)
            .output()
    };
    match run(&g, "gha") {
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'yaml'") => {
            distro_testsupport_missing();
        }
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "3");
            let o = run(&k, "k8s").unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "3 Indexed");
        }
        Err(_) => distro_testsupport_missing(),
    }
}

fn distro_testsupport_missing() {
    distro_testsupport::missing(
        "emitted_ci_definitions_are_valid_yaml",
        "python3 with PyYAML is not available",
        "pip install PyYAML (scripts/install-deps.sh)",
    );
}

/// The Prometheus checker the metrics scenario uses refuses malformed text.
#[test]
fn prometheus_checker_refuses_malformed_text() {
    let ok = "# HELP a b\n# TYPE a counter\na{x=\"1\"} 3\nb 4.5\n";
    assert_eq!(scenarios::check_prometheus(ok).unwrap(), 2);
    assert!(scenarios::check_prometheus("a{x=\"1\" 3\n").is_err());
    assert!(scenarios::check_prometheus("a three\n").is_err());
    assert!(scenarios::check_prometheus("1a 3\n").is_err());
}

/// The report files are published: each is written whole with mode 0644 whatever the umask,
/// a rewrite replaces it, and no temporary file is left beside them.
#[test]
fn report_files_are_world_readable_and_whole() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("report");
    report::write_all(&sample("flat", false), &dir).unwrap();
    report::write_all(&sample("flat", true), &dir).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = report::FILES.iter().map(|f| f.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "only the report files, no temporary ones");
    for f in report::FILES {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{f}");
    }
    let summary: ConformanceSummary =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary.totals.failed, 1,
        "the second write replaced the first"
    );
}
