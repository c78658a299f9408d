//! `distro policy` end to end with the pinned cargo-deny, the project's deny.toml and the local
//! advisory-db snapshot: the built-in distribution passes; fixtures adding a banned crypto
//! crate, a disallowed licence or a crate with an advisory fail, naming crate, rule and way out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The advisory-db snapshot (`DISTRO_ADVISORY_DB`, else the one the repository ships).
fn advisory_db() -> PathBuf {
    std::env::var_os("DISTRO_ADVISORY_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("patches/advisory-db"))
}

/// Whether the tools these tests need are present; prints why not.
fn ready() -> bool {
    if !distro_testsupport::require(
        "policy",
        "cargo-deny",
        "cargo install cargo-deny --locked --version 0.20.2 (scripts/install-deps.sh)",
    ) {
        return false;
    }
    if !advisory_db().join("crates").is_dir() {
        return distro_testsupport::missing(
            "policy",
            &format!("no advisory-db snapshot at {}", advisory_db().display()),
            "the repository ships it in patches/advisory-db (or set DISTRO_ADVISORY_DB)",
        );
    }
    true
}

fn policy(extra: &[&str]) -> Output {
    let db = advisory_db();
    let mut args = vec![
        "--format",
        "json",
        "policy",
        "--advisory-db",
        db.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_distro"))
        .args(&args)
        .env_remove("DISTRO_ADVISORY_DB")
        .output()
        .unwrap()
}

fn reports(out: &Output) -> Vec<Value> {
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .as_array()
        .unwrap()
        .clone()
}

fn fixture(name: &str) -> String {
    repo()
        .join("sbom/tests/data")
        .join(name)
        .join("Cargo.toml")
        .display()
        .to_string()
}

/// The one error finding of a failing fixture, whose denial is a policy refusal (exit 3).
fn only_error(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = reports(out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["passed"], false);
    let errors: Vec<&Value> = r[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].clone()
}

/// The built-in distribution's components pass the project's policy.
#[test]
fn builtin_distribution_passes() {
    if !ready() {
        return;
    }
    let out = policy(&[]);
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = reports(&out);
    let names: Vec<&str> = r.iter().map(|x| x["component"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["mesh-proxy", "mesh-control"]);
    for x in &r {
        assert_eq!(x["passed"], true);
        assert_eq!(x["advisory_db_date"], "2026-08-21");
        for check in ["advisories", "bans", "licenses", "sources"] {
            assert_eq!(x["summary"][check]["errors"], 0, "{check}");
        }
    }
}

/// A component pulling in `ring` fails the bans check, with deny.toml's use-instead as the way out.
#[test]
fn banned_crypto_crate_fails() {
    if !ready() {
        return;
    }
    let f = only_error(&policy(&["--manifest-path", &fixture("banned-crypto")]));
    assert_eq!(f["check"], "bans");
    assert_eq!(f["code"], "banned");
    assert_eq!(f["crate"], "ring");
    let way = f["way_out"].as_str().unwrap();
    assert!(way.contains("aws-lc-rs"), "{way}");
    assert!(way.contains("deny.toml:"), "points at the rule: {way}");
}

/// A component depending on a GPL-3.0-only crate fails the licences check.
#[test]
fn disallowed_licence_fails() {
    if !ready() {
        return;
    }
    let f = only_error(&policy(&[
        "--manifest-path",
        &fixture("disallowed-licence"),
    ]));
    assert_eq!(f["check"], "licenses");
    assert_eq!(f["code"], "rejected");
    assert_eq!(f["crate"], "gpl-helper");
    assert!(
        f["way_out"].as_str().unwrap().contains("GPL-3.0-only"),
        "{}",
        f["way_out"]
    );
}

/// A component locked to smallvec 1.6.0 fails on RUSTSEC-2021-0003 from the local snapshot,
/// with the patched versions in the way out.
#[test]
fn advisory_fails() {
    if !ready() {
        return;
    }
    let f = only_error(&policy(&["--manifest-path", &fixture("advisory")]));
    assert_eq!(f["check"], "advisories");
    assert_eq!(f["code"], "vulnerability");
    assert_eq!(f["crate"], "smallvec");
    assert_eq!(f["version"], "1.6.0");
    assert_eq!(f["advisory"], "RUSTSEC-2021-0003");
    assert!(
        f["way_out"].as_str().unwrap().contains(">=1.6.1"),
        "{}",
        f["way_out"]
    );
}

/// A database older than the allowed staleness is refused, not silently used.
#[test]
fn stale_advisory_database_is_refused() {
    if !ready() {
        return;
    }
    let out = policy(&[
        "--manifest-path",
        &fixture("advisory"),
        "--max-db-staleness",
        "P1D",
    ]);
    // Not a refusal: the check could not be made (exit 1).
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stale") && err.contains("help:"), "{err}");
}

/// The human report names crate, rule and way out on stdout.
#[test]
fn text_report_names_crate_rule_and_way_out() {
    if !ready() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_distro"))
        .args([
            "policy",
            "--advisory-db",
            advisory_db().to_str().unwrap(),
            "--manifest-path",
            &fixture("banned-crypto"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("banned-crypto: FAIL"), "{text}");
    assert!(text.contains("[bans/banned] ring 0.17.14"), "{text}");
    assert!(text.contains("way out:"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused: the policy denies 1 component(s)")
            && err.contains("banned-crypto: bans/banned ring 0.17.14"),
        "{err}"
    );
}
