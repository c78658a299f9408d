//! The conformance suite as a release stage and as a signed test-result attestation, as root,
//! against the shared release output: the stage runs on `OUT/<line>` with N-1 taken from the
//! line built beside it, is reused when nothing changed, and its summary, attached to images
//! pushed to Debian's `docker-registry` on 127.0.0.1, is what `distro verify
//! --require-test-result` requires (missing, FAILED and foreign-key attestations refused, the
//! newest deciding, no duplicate on a second attach). With only one line built, the report
//! says that skew uses the same build twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod image_support;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use distro_conformance::stage::{self, Mode, StageOptions, StageOutcome};
use distro_conformance::SAME_BUILD_TWICE;
use distro_schema::{ConformanceSummary, Outcome, TestResultStatus};
use distro_testsupport as ts;
use image_support::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_distro");
const TEST_RESULT: &str = "https://in-toto.io/attestation/test-result/v0.1";

/// Environments are brought up one at a time (2-core budget).
static HEAVY: Mutex<()> = Mutex::new(());

fn tools(test: &str) -> bool {
    ts::require_root(test, "network namespaces, veth pairs, runc")
        && ts::require_tools(test, &["ip", "iptables", "curl", "runc", "umoci"])
}

/// The release output's line directories (those with `bin/`), oldest first.
fn released_lines() -> Vec<PathBuf> {
    let out = ts::release_out(Path::new(BIN), true);
    let mut lines: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("bin").is_dir() && p.join("images").is_dir())
        .collect();
    lines.sort_by_key(|p| {
        distro_conformance::env::line_version(&p.file_name().unwrap().to_string_lossy())
    });
    assert!(
        !lines.is_empty(),
        "no line with bin/ and images/ in {}",
        out.display()
    );
    lines
}

/// A writable `OUT` whose lines `names` are the released lines (the two newest when two are
/// released, else the one line under every name): each entry of the released line directory
/// is symlinked, so the stage can write `OUT/<line>/conformance` while the shared output
/// stays read-only.
fn writable_out(root: &Path, names: &[&str]) -> PathBuf {
    let released = released_lines();
    let out = root.join("out");
    for (i, name) in names.iter().enumerate() {
        let src = if released.len() >= names.len() {
            &released[released.len() - names.len() + i]
        } else {
            released.last().unwrap()
        };
        let dst = out.join(name);
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(src).unwrap().flatten() {
            if e.file_name() == "conformance" {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    // The containers run as the images' user (65532): it must reach the environment's files.
    for d in [root, &out] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    out
}

/// A policy that asks for the signature and nothing else, so the test-result requirement is
/// what decides (the other attestations have their own tests).
fn signature_only_policy(dir: &Path) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(
        &p,
        "require_fips = false\nrequire_validated_module = false\nrequire_sbom = false\nrequire_provenance = false\nrequire_vex = false\n",
    )
    .unwrap();
    p.display().to_string()
}

/// `distro verify ARGS --plain-http --format json` ([`verify_json`] against the test's
/// plain-HTTP registry).
fn verify(args: &[&str]) -> (bool, Value) {
    let mut a = args.to_vec();
    a.push("--plain-http");
    verify_json(&a)
}

fn test_result_attestations(report: &Value) -> Vec<&Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == format!("attestation {TEST_RESULT}"))
        .collect()
}

fn attest(reference: &str, key: &str, summary: &Path) -> Value {
    serde_json::from_str(&ok(&[
        "attest",
        reference,
        "--key",
        key,
        "--test-result",
        summary.to_str().unwrap(),
        "--plain-http",
        "--format",
        "json",
    ]))
    .unwrap()
}

/// The release stage run once for this binary's tests, on `OUT/0.2` beside `OUT/0.1`, under
/// `$TMPDIR/distro-test-conformance-attest/` (replaced on each run, so nothing piles up; under
/// the temporary directory, so the containers' user reaches it).
struct StageRun {
    out: PathBuf,
    opts: StageOptions,
    summary: ConformanceSummary,
    report_dir: PathBuf,
    reused: bool,
    described: String,
}

static STAGE: OnceLock<Result<StageRun, String>> = OnceLock::new();

/// The shared stage run; `None` (a loud skip outside CI) when a requirement is missing. Its
/// failure is recorded once and fails every test that needs it.
fn stage_run(test: &str) -> Option<&'static StageRun> {
    if !tools(test) || !ts::require_tool(test, "docker-registry") {
        return None;
    }
    let run = STAGE.get_or_init(|| {
        let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
        let root = std::env::temp_dir().join("distro-test-conformance-attest");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let out = writable_out(&root, &["0.1", "0.2"]);
        let mut opts = StageOptions::new(Mode::Required, PathBuf::from(BIN));
        opts.profiles = vec!["version-skew".into()];
        opts.scenarios = vec!["mtls-connectivity".into(), "wrong-identity-refused".into()];
        opts.work_dir = root.join("work");
        opts.state_dir = root.join("state");
        let first = stage::stage(&out, "0.2", None, &opts).map_err(|e| format!("{e:#}"))?;
        let described = first.describe();
        eprintln!("{described}");
        let StageOutcome::Ran {
            summary,
            report_dir,
            reused,
        } = first
        else {
            return Err(format!("the stage did not run as root: {described}"));
        };
        Ok(StageRun {
            out,
            opts,
            summary: *summary,
            report_dir,
            reused,
            described,
        })
    });
    match run {
        Ok(r) => Some(r),
        Err(e) => panic!("the shared conformance stage run failed: {e}"),
    }
}

/// The stage on `OUT/0.2` takes `OUT/0.1` as N-1 (no "same build twice" note), runs both
/// scenarios of the version-skew profile without a failure, and records the profile's
/// definition digest and the previous line's versions.
#[test]
fn stage_takes_the_previous_line_as_n_minus_1_and_passes() {
    let Some(r) = stage_run("stage_takes_the_previous_line_as_n_minus_1_and_passes") else {
        return;
    };
    let summary = &r.summary;
    assert!(!r.reused, "{}", r.described);
    assert_eq!(summary.line, "0.2");
    assert_eq!(
        summary.previous_line.as_deref(),
        Some("0.1"),
        "{:?}",
        summary.notes
    );
    let failures: Vec<String> = summary.profiles[0]
        .scenarios
        .iter()
        .filter(|s| s.outcome == Outcome::Failed)
        .filter_map(|s| s.message.clone())
        .chain(summary.profiles[0].setup_error.clone())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(summary.totals.passed, 2, "{:?}", summary.totals);
    assert!(
        summary.notes.iter().any(|n| n.contains("N-1 is line 0.1")),
        "{:?}",
        summary.notes
    );
    assert!(
        !summary.notes.iter().any(|n| n.contains(SAME_BUILD_TWICE)),
        "{:?}",
        summary.notes
    );
    assert!(summary.profiles[0].warnings.is_empty());
    assert!(summary.versions.keys().any(|k| k.starts_with("previous/")));
    assert!(summary.profiles[0]
        .definition_sha256
        .contains_key("version-skew.toml"));
}

/// The stage writes its reports beside the line (`OUT/0.2/conformance`: summary, JUnit,
/// Markdown, HTML and the inputs digest), and a second call with nothing changed reuses the
/// summary instead of running again, and says so.
#[test]
fn stage_writes_its_reports_beside_the_line_and_is_reused() {
    let Some(r) = stage_run("stage_writes_its_reports_beside_the_line_and_is_reused") else {
        return;
    };
    assert_eq!(r.report_dir, r.out.join("0.2/conformance"));
    for f in [
        "summary.json",
        "junit.xml",
        "report.md",
        "report.html",
        stage::INPUTS_FILE,
    ] {
        assert!(r.report_dir.join(f).is_file(), "{f} not written");
    }
    let again = stage::stage(&r.out, "0.2", None, &r.opts).unwrap();
    match &again {
        StageOutcome::Ran {
            summary: s2,
            reused: true,
            ..
        } => assert_eq!(**s2, r.summary),
        other => panic!("the second stage call ran again: {}", other.describe()),
    }
    assert!(again.describe().contains("reused"), "{}", again.describe());
}

/// The line's images pushed by digest to a registry of the test's own and signed with key `a`
/// (a second key `b` beside it): what a release holds before its tags move.
struct Signed {
    _reg: TestRegistry,
    _keys: tempfile::TempDir,
    key: String,
    public: String,
    other_key: String,
    proxy: String,
    control: String,
    policy: String,
    summary_file: PathBuf,
}

impl Signed {
    fn new(test: &str) -> Option<Signed> {
        let r = stage_run(test)?;
        let reg = TestRegistry::plain(test)?;
        let keys = tempfile::tempdir().unwrap();
        let (key, public) = keygen_named(keys.path(), "a");
        let (other_key, _) = keygen_named(keys.path(), "b");
        let (key, public, other_key) = (
            key.display().to_string(),
            public.display().to_string(),
            other_key.display().to_string(),
        );
        // Unsigned, so pushed by digest and left untagged (exit 3): the tests name the images
        // by digest, as a release does before its tags move.
        let push = run(distro().args([
            "push",
            "--release",
            r.out.join("0.2").to_str().unwrap(),
            "--to",
            &format!("{}/fips-mesh", reg.addr),
            "--key",
            &public,
            "--plain-http",
            "--format",
            "json",
        ]));
        assert_eq!(
            push.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&push.stderr)
        );
        let pushed: Value = serde_json::from_slice(&push.stdout).unwrap();
        let reference = |c: &str| -> String {
            pushed
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["component"] == c)
                .and_then(|p| p["by_digest"].as_str())
                .unwrap_or_else(|| panic!("{c} not pushed: {pushed}"))
                .to_string()
        };
        let (proxy, control) = (reference("mesh-proxy"), reference("mesh-control"));
        for i in [&proxy, &control] {
            ok(&["sign", i, "--key", &key, "--plain-http"]);
        }
        let policy = signature_only_policy(keys.path());
        Some(Signed {
            _reg: reg,
            _keys: keys,
            key,
            public,
            other_key,
            proxy,
            control,
            policy,
            summary_file: r.report_dir.join("summary.json"),
        })
    }

    /// `verify IMAGE --key a --policy <signature only> --require-test-result`.
    fn require(&self, image: &str) -> (bool, Value) {
        verify(&[
            image,
            "--key",
            &self.public,
            "--policy",
            &self.policy,
            "--require-test-result",
        ])
    }

    /// Attests the stage's summary to `image` with key `a`; whether it was added.
    fn attest_summary(&self, image: &str) -> bool {
        let a = attest(image, &self.key, &self.summary_file);
        assert_eq!(a["attestations"][0]["predicate_type"], TEST_RESULT, "{a}");
        a["attestations"][0]["added"].as_bool().unwrap()
    }
}

/// A signed image without a test-result attestation is refused by `--require-test-result`,
/// saying what to attach; without the requirement the same image verifies.
#[test]
fn missing_test_result_is_refused_naming_what_to_attach() {
    let Some(s) = Signed::new("missing_test_result_is_refused_naming_what_to_attach") else {
        return;
    };
    let (passed, rep) = s.require(&s.proxy);
    assert!(!passed);
    let c = check(&rep, "policy test-result");
    assert_eq!(c["ok"], false);
    let d = c["detail"].as_str().unwrap();
    assert!(
        d.contains("no verified test-result attestation")
            && d.contains("distro attest --test-result"),
        "{c}"
    );
    assert!(verify(&[&s.proxy, "--key", &s.public, "--policy", &s.policy]).0);
}

/// The stage's summary attached as a signed test-result satisfies `--require-test-result`
/// (PASSED with the totals and the line) and the policy file's `require_test_result` alike.
#[test]
fn attached_summary_satisfies_the_flag_and_the_policy_switch() {
    let Some(s) = Signed::new("attached_summary_satisfies_the_flag_and_the_policy_switch") else {
        return;
    };
    assert!(s.attest_summary(&s.proxy));
    let (passed, rep) = s.require(&s.proxy);
    assert!(passed, "{rep}");
    let detail = check(&rep, "policy test-result")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.starts_with("test-result PASSED: 2 passed, 0 warned, 0 failed (distro line 0.2)"),
        "{detail}"
    );
    let strict = Path::new(&s.policy).with_file_name("strict.toml");
    std::fs::write(
        &strict,
        std::fs::read_to_string(&s.policy).unwrap() + "require_test_result = true\n",
    )
    .unwrap();
    let (passed, rep) = verify(&[
        &s.proxy,
        "--key",
        &s.public,
        "--policy",
        strict.to_str().unwrap(),
    ]);
    assert!(
        passed && check(&rep, "policy test-result")["ok"] == true,
        "{rep}"
    );
}

/// Attaching the same summary again adds nothing (a resumed release): one test-result
/// attestation remains.
#[test]
fn attaching_the_same_summary_twice_adds_one_attestation() {
    let Some(s) = Signed::new("attaching_the_same_summary_twice_adds_one_attestation") else {
        return;
    };
    assert!(s.attest_summary(&s.proxy));
    assert!(!s.attest_summary(&s.proxy), "the second attach added one");
    assert_eq!(test_result_attestations(&s.require(&s.proxy).1).len(), 1);
}

/// The newest test-result decides: a FAILED summary attached after a passing one is refused
/// naming the failed test, and a passing one attached after it clears it again.
#[test]
fn newest_test_result_decides() {
    let Some(s) = Signed::new("newest_test_result_decides") else {
        return;
    };
    assert!(s.attest_summary(&s.proxy));
    let mut failed: ConformanceSummary =
        serde_json::from_str(&std::fs::read_to_string(&s.summary_file).unwrap()).unwrap();
    let sc = failed.profiles[0]
        .scenarios
        .iter_mut()
        .find(|r| r.name == "wrong-identity-refused")
        .unwrap();
    sc.outcome = Outcome::Failed;
    sc.message = Some("[version-skew] wrong-identity-refused: got 200".into());
    failed.totals.passed -= 1;
    failed.totals.failed += 1;
    assert_eq!(
        distro_images::testresult::from_summary(&failed).result,
        TestResultStatus::Failed
    );
    let failed_file = Path::new(&s.policy).with_file_name("failed-summary.json");
    std::fs::write(&failed_file, serde_json::to_vec(&failed).unwrap()).unwrap();
    assert_eq!(
        attest(&s.proxy, &s.key, &failed_file)["attestations"][0]["added"],
        true
    );
    let (passed, rep) = s.require(&s.proxy);
    assert!(!passed);
    let c = check(&rep, "policy test-result");
    let d = c["detail"].as_str().unwrap();
    assert!(
        d.contains("test-result FAILED")
            && d.contains("failed: version-skew/wrong-identity-refused")
            && d.contains("decided by the newest of 2"),
        "{c}"
    );
    assert!(s.attest_summary(&s.proxy));
    let (passed, rep) = s.require(&s.proxy);
    assert!(passed, "{rep}");
    assert!(check(&rep, "policy test-result")["detail"]
        .as_str()
        .unwrap()
        .contains("decided by the newest of 3"));
}

/// A test-result signed by another key is not this key's attestation: it fails its own check
/// (the DSSE signature does not verify) and the requirement says none is verified.
#[test]
fn test_result_signed_by_another_key_counts_as_missing() {
    let Some(s) = Signed::new("test_result_signed_by_another_key_counts_as_missing") else {
        return;
    };
    attest(&s.control, &s.other_key, &s.summary_file);
    let (passed, rep) = s.require(&s.control);
    assert!(!passed);
    let atts = test_result_attestations(&rep);
    assert_eq!(atts.len(), 1, "{rep}");
    assert_eq!(atts[0]["ok"], false);
    assert!(
        atts[0]["detail"]
            .as_str()
            .unwrap()
            .contains("DSSE signature does not verify"),
        "{}",
        atts[0]
    );
    assert!(check(&rep, "policy test-result")["detail"]
        .as_str()
        .unwrap()
        .contains("no verified test-result attestation"));
}

/// `--line OUT` with two lines built tests the newest against the one before it; with only one
/// line built, skew runs the same build on both sides and the summary, the profile's warnings
/// and both reports say "skew uses the same build twice" (and the test-result is WARNED).
#[test]
fn skew_takes_the_previous_line_and_says_when_there_is_none() {
    let test = "skew_takes_the_previous_line_and_says_when_there_is_none";
    if !tools(test) {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let run_skew = |line: &Path, tag: &str| -> (ConformanceSummary, PathBuf) {
        let reports = tmp.path().join(format!("reports-{tag}"));
        let out = run(distro().args([
            "conformance",
            "--line",
            line.to_str().unwrap(),
            "--profile",
            "version-skew",
            "--scenario",
            "mtls-connectivity",
            "--format",
            "json",
            "--report-dir",
            reports.to_str().unwrap(),
            "--work-dir",
            tmp.path().join(format!("work-{tag}")).to_str().unwrap(),
            "--state-dir",
            tmp.path().join("state").to_str().unwrap(),
        ]));
        let s: ConformanceSummary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("no summary ({e}): {}", String::from_utf8_lossy(&out.stderr))
        });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (s, reports)
    };

    let two = writable_out(&tmp.path().join("two"), &["0.1", "0.2"]);
    let (s, _) = run_skew(&two, "two");
    assert_eq!(
        (s.line.as_str(), s.previous_line.as_deref()),
        ("0.2", Some("0.1"))
    );
    assert!(
        !s.notes.iter().any(|n| n.contains(SAME_BUILD_TWICE)),
        "{:?}",
        s.notes
    );
    assert_eq!(s.totals.passed, 1);
    assert_eq!(
        distro_images::testresult::from_summary(&s).result,
        TestResultStatus::Passed
    );

    let one = writable_out(&tmp.path().join("one"), &["0.1"]);
    let (s, reports) = run_skew(&one, "one");
    assert_eq!(s.previous_line, None);
    assert!(
        s.notes.iter().any(|n| n.contains(SAME_BUILD_TWICE)
            && n.contains("no older line is built beside it")),
        "{:?}",
        s.notes
    );
    assert!(
        s.profiles[0]
            .warnings
            .iter()
            .any(|w| w.contains(SAME_BUILD_TWICE)),
        "{:?}",
        s.profiles[0]
    );
    for f in ["report.md", "report.html"] {
        let text = std::fs::read_to_string(reports.join(f)).unwrap();
        assert!(text.contains(SAME_BUILD_TWICE), "{f}:\n{text}");
    }
    let t = distro_images::testresult::from_summary(&s);
    assert_eq!(t.result, TestResultStatus::Warned);
    assert_eq!(t.warned_tests, ["version-skew/mtls-connectivity"]);
}

/// Without root the stage does not run: `auto` says exactly why ("not run: ... needs root"),
/// `required` is the NotRoot error, `off` never runs; nothing is created. As root the test
/// runs itself again as an unprivileged user (setpriv) for the not-root half.
#[test]
fn stage_without_root_is_not_run_or_an_error_by_mode() {
    let test = "stage_without_root_is_not_run_or_an_error_by_mode";
    assert_eq!("required".parse::<Mode>(), Ok(Mode::Required));
    assert_eq!("auto".parse::<Mode>(), Ok(Mode::Auto));
    assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
    assert!("sometimes"
        .parse::<Mode>()
        .unwrap_err()
        .contains("required, auto or off"));
    if ts::is_root() {
        if !ts::require(test, "setpriv", "apt-get install util-linux") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let out = run(std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("DISTRO_TEST_UNPRIVILEGED_DIR", tmp.path()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "the unprivileged run failed:\n{text}"
        );
        assert!(text.contains("unprivileged half checked"), "{text}");
        return;
    }
    let dir = std::env::var_os("DISTRO_TEST_UNPRIVILEGED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tempfile::tempdir().unwrap().keep());
    let mut opts = StageOptions::new(Mode::Off, PathBuf::from(BIN));
    opts.state_dir = dir.join("state");
    opts.work_dir = dir.join("work");
    let off = stage::stage(&dir, "0.1", None, &opts).unwrap();
    assert_eq!(
        off.describe(),
        "not run: conformance is off (--conformance off)"
    );
    assert!(off.summary().is_none());
    opts.mode = Mode::Auto;
    let auto = stage::stage(&dir, "0.1", None, &opts).unwrap();
    assert!(
        auto.describe()
            .starts_with("not run: distro conformance needs root")
            && auto.describe().contains("nothing was run")
            && auto.describe().contains("--conformance required"),
        "{}",
        auto.describe()
    );
    opts.mode = Mode::Required;
    assert!(matches!(
        stage::stage(&dir, "0.1", None, &opts),
        Err(distro_conformance::Error::NotRoot)
    ));
    assert!(!opts.state_dir.exists() && !opts.work_dir.exists());
    assert!(!dir.join("0.1").exists());
    eprintln!("unprivileged half checked");
}
