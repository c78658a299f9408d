//! End-to-end tests of `distro matrix`: support windows at chosen dates (boundary days
//! included), the endoflife.date export, the release gate and the advisory columns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distro_testsupport::git::run as git;
use serde_json::Value;

const DISTRO: &str = env!("CARGO_BIN_EXE_distro");

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Three lines: 1.0 (released 2025-01-31, so its 14 months end on a month end: 2026-03-31),
/// 1.1 (with an eol override) and 1.2 (released 2026-05-01). Sources share one repository whose
/// Cargo.lock has `demo-dep 1.0.0`, which a fixture advisory affects; 1.1's queue fixes it.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let repo = root.join("upstream");
        write(&repo.join("Cargo.lock"), "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"1.0.0\"\ndependencies = [\"demo-dep\"]\n\n[[package]]\nname = \"demo-dep\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n");
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "1.0.0"]);
        git(&repo, &["tag", "v1.0.0"]);
        write(&root.join("advisory-db/crates/demo-dep/RUSTSEC-2099-0001.md"), "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"demo-dep\"\ndate = \"2099-01-01\"\naliases = [\"CVE-2099-0001\"]\n\n[versions]\npatched = [\">= 1.0.1\"]\n```\n\n# Demo flaw\n");
        write(&root.join("advisory-db/crates/demo-dep/RUSTSEC-2099-0002.md"), "```toml\n[advisory]\nid = \"RUSTSEC-2099-0002\"\npackage = \"demo-dep\"\ndate = \"2099-01-01\"\ninformational = \"unmaintained\"\n\n[versions]\npatched = []\n```\n\n# Unmaintained (informational, not listed)\n");
        write(&root.join("patches/1.0/series"), "");
        write(&root.join("patches/1.1/series"), "fix.patch\n");
        write(&root.join("patches/1.1/fix.patch"), "Description: Fix demo flaw\nOrigin: backport, commit:abc\nAdvisories: CVE-2099-0001\n---\n--- /dev/null\n+++ b/FIXED\n@@ -0,0 +1 @@\n+fixed\n");
        let config = root.join("distro/distro.toml");
        write(&config, "[distribution]\nname = \"demo\"\n\n[support]\nmonths = 14\nwarn_days = 30\n\n[[component]]\nname = \"app\"\npackage = \"app\"\nbinary = \"app\"\nfips_required = false\n\n[[line]]\nversion = \"1.0\"\nrelease_date = 2025-01-31\nlatest = \"1.0.7\"\nsource = { git = \"../upstream\", ref = \"v1.0.0\" }\npatches = \"../patches/1.0\"\n\n[[line]]\nversion = \"1.1\"\nrelease_date = 2025-06-15\neol = 2026-12-31\nsource = { git = \"../upstream\", ref = \"v1.0.0\" }\npatches = \"../patches/1.1\"\n\n[[line]]\nversion = \"1.2\"\nrelease_date = 2026-05-01\nlatest = \"1.2.0\"\nsource = { git = \"../upstream\", ref = \"v1.0.0\" }\n");
        Fixture {
            _tmp: tmp,
            root,
            config,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(DISTRO)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn matrix_at(&self, at: &str) -> Value {
        let out = self.run(&["--format", "json", "matrix", "--no-advisories", "--at", at]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn row<'a>(m: &'a Value, line: &str) -> &'a Value {
    m["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["line"] == line)
        .unwrap()
}

/// Status and days left around 1.0's end (2026-03-31, 14 months after 2025-01-31): 31 days
/// left is supported, 30 is ending soon, the last day itself is still supported (0 days left),
/// the day after is end of life; an eol override and an unreleased line are honoured.
#[test]
fn matrix_boundary_days() {
    let fx = Fixture::new();
    let cases = [
        ("2026-02-28", 31, "supported"),
        ("2026-03-01", 30, "ending-soon"),
        ("2026-03-31", 0, "ending-soon"),
        ("2026-04-01", -1, "end-of-life"),
    ];
    for (at, days, status) in cases {
        let m = fx.matrix_at(at);
        let r = row(&m, "1.0");
        assert_eq!(r["eol"], "2026-03-31", "{at}");
        assert_eq!(r["days_left"], days, "{at}");
        assert_eq!(r["status"], status, "{at}");
    }
    let m = fx.matrix_at("2026-04-30");
    assert_eq!(
        row(&m, "1.1")["eol"],
        "2026-12-31",
        "override beats release + 14 months"
    );
    assert_eq!(row(&m, "1.1")["status"], "supported");
    assert_eq!(row(&m, "1.2")["status"], "unreleased");
    assert_eq!(row(&m, "1.2")["eol"], "2027-07-01");
    let order: Vec<&str> = m["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["1.2", "1.1", "1.0"], "newest first");
}

/// The table for people shows every line and warns on stderr about a line ending soon.
#[test]
fn matrix_table_and_warning() {
    let fx = Fixture::new();
    let out = fx.run(&["matrix", "--no-advisories", "--at", "2026-03-15"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("LINE"), "{table}");
    assert!(
        table.contains("1.0   2025-01-31  2026-03-31  16") && table.contains("ends soon"),
        "{table}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: line 1.0 ends on 2026-03-31 (16 day(s) left)"),
        "{err}"
    );
}

/// The endoflife.date export has releaseCycle, releaseDate, eol and latest for each line
/// (a line without a recorded patch release reports its .0).
#[test]
fn endoflife_export() {
    let fx = Fixture::new();
    let out = fx.run(&["matrix", "--endoflife", "--at", "2026-01-01"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = serde_json::json!([
        {"releaseCycle": "1.2", "releaseDate": "2026-05-01", "eol": "2027-07-01", "latest": "1.2.0"},
        {"releaseCycle": "1.1", "releaseDate": "2025-06-15", "eol": "2026-12-31", "latest": "1.1.0"},
        {"releaseCycle": "1.0", "releaseDate": "2025-01-31", "eol": "2026-03-31", "latest": "1.0.7"},
    ]);
    assert_eq!(v, expected);
}

/// Releasing an end-of-life line is a policy refusal (exit 3, with what to do), allowed with
/// --force (with a warning); a line within warn_days of its end is released with a warning; an
/// unknown line is an error (exit 1).
#[test]
fn release_gate() {
    let fx = Fixture::new();
    let eol = fx.run(&["matrix", "--check-release", "1.0", "--at", "2026-04-01"]);
    assert_eq!(
        eol.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&eol.stderr)
    );
    let err = String::from_utf8_lossy(&eol.stderr);
    assert!(
        err.contains("reached its end of life on 2026-03-31") && err.contains("--force"),
        "{err}"
    );
    let forced = fx.run(&[
        "matrix",
        "--check-release",
        "1.0",
        "--at",
        "2026-04-01",
        "--force",
    ]);
    assert!(forced.status.success());
    assert!(String::from_utf8_lossy(&forced.stderr)
        .contains("warning: line 1.0 is past its end of life"));
    let soon = fx.run(&["matrix", "--check-release", "1.0", "--at", "2026-03-31"]);
    assert!(soon.status.success());
    assert!(String::from_utf8_lossy(&soon.stderr)
        .contains("warning: line 1.0 ends on 2026-03-31, 0 day(s)"));
    let ok = fx.run(&["matrix", "--check-release", "1.1", "--at", "2026-03-31"]);
    assert!(ok.status.success());
    assert!(!String::from_utf8_lossy(&ok.stderr).contains("warning"));
    let unknown = fx.run(&["matrix", "--check-release", "9.9"]);
    assert!(
        unknown.status.code() == Some(1)
            && String::from_utf8_lossy(&unknown.stderr).contains("lines: 1.0, 1.1, 1.2")
    );
}

/// `--format json` of the release gate: one document with the decision and the facts it was made
/// on, for pipelines; a refusal still exits 3 (after the document), a forced one says so.
#[test]
fn release_gate_json() {
    let fx = Fixture::new();
    let gate = |args: &[&str]| {
        let mut all = vec!["--format", "json", "matrix", "--check-release"];
        all.extend_from_slice(args);
        let out = fx.run(&all);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{all:?}: stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), doc)
    };
    let (code, eol) = gate(&["1.0", "--at", "2026-04-01"]);
    assert_eq!(code, Some(3), "{eol}");
    assert_eq!(eol["decision"], "refuse", "{eol}");
    assert_eq!(eol["status"], "end-of-life", "{eol}");
    assert_eq!(eol["eol"], "2026-03-31", "{eol}");
    assert_eq!(eol["days_left"], -1, "{eol}");
    assert!(
        eol["message"].as_str().unwrap().contains("--force"),
        "{eol}"
    );
    let (code, forced) = gate(&["1.0", "--at", "2026-04-01", "--force"]);
    assert_eq!(code, Some(0), "{forced}");
    assert_eq!(forced["decision"], "warn", "{forced}");
    assert_eq!(forced["forced"], true, "{forced}");
    let (code, soon) = gate(&["1.0", "--at", "2026-03-31"]);
    assert_eq!(
        (code, &soon["decision"], &soon["status"]),
        (Some(0), &"warn".into(), &"ending-soon".into()),
        "{soon}"
    );
    let (code, ok) = gate(&["1.1", "--at", "2026-03-31"]);
    assert_eq!(code, Some(0), "{ok}");
    assert_eq!(ok["decision"], "allow", "{ok}");
    assert_eq!(ok["line"], "1.1", "{ok}");
    assert_eq!(ok["status"], "supported", "{ok}");
}

/// Advisory columns: the fixture advisory affects every line's Cargo.lock; 1.1's queue names
/// its CVE alias, so it is fixed there (listed once, under its RustSec id) and open elsewhere;
/// informational notices are not listed.
#[test]
fn advisories_open_and_fixed() {
    let fx = Fixture::new();
    let db = fx.root.join("advisory-db");
    let out = fx.run(&[
        "--format",
        "json",
        "matrix",
        "--at",
        "2026-04-30",
        "--advisory-db",
        db.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        row(&m, "1.0")["advisories_open"],
        serde_json::json!(["RUSTSEC-2099-0001"])
    );
    assert_eq!(row(&m, "1.0")["advisories_fixed"], serde_json::json!([]));
    assert_eq!(row(&m, "1.1")["advisories_open"], serde_json::json!([]));
    assert_eq!(
        row(&m, "1.1")["advisories_fixed"],
        serde_json::json!(["RUSTSEC-2099-0001"])
    );
    assert_eq!(
        row(&m, "1.2")["advisories_open"],
        serde_json::json!(["RUSTSEC-2099-0001"])
    );
}
