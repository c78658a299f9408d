//! The built-in distribution's two lines: 0.1 at the commit where both components first
//! shipped, with a patch queue of fixes backported from 0.2, and 0.2 at `HEAD`. Both are
//! supported today, both are in the matrix, the 0.1 commit is in every full clone, its queue
//! applies, and both lines build in FIPS mode, 0.1 with its backports compiled in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // a panic is how a test fails

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distro_schema::{BuildRecord, CmvpStatus, FipsEvidence};
use distro_testsupport::bin::{stderr, Bin};
use distro_testsupport::git;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_distro");

fn repo() -> PathBuf {
    distro_testsupport::repo_root()
}

fn builtin() -> distro_config::Distribution {
    distro_config::load(&repo().join("distro/distro.toml")).unwrap()
}

/// `distro ARGS` run in the repository (so it finds the built-in definition).
fn distro(args: &[&str]) -> Output {
    let out = Bin::new(BIN)
        .current_dir(repo())
        .env_remove("DISTRO_CONFIG")
        .run(args);
    eprintln!("{}", stderr(&out));
    out
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "exit {}", out.status);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn git_ok(dir: &Path, args: &[&str]) -> bool {
    git::output(dir, args).status.success()
}

fn head() -> String {
    git::run(&repo(), &["rev-parse", "HEAD"])
}

fn line_01() -> distro_config::Line {
    builtin()
        .line("0.1")
        .cloned()
        .expect("the built-in has line 0.1")
}

/// The definition has exactly the lines 0.1 and 0.2; 0.1 is pinned to a full commit id that is
/// an ancestor of `HEAD` and carries a patch queue; 0.2 follows `HEAD`; `latest` names a patch
/// release of each.
#[test]
fn builtin_definition_has_two_lines() {
    let d = builtin();
    let versions: Vec<&str> = d.lines.iter().map(|l| l.version.as_str()).collect();
    assert_eq!(versions, ["0.1", "0.2"]);
    let old = d.line("0.1").unwrap();
    assert_eq!(old.source.git_ref.len(), 40, "pinned by full id");
    assert!(old.source.git_ref.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(
        git_ok(
            &repo(),
            &["merge-base", "--is-ancestor", &old.source.git_ref, "HEAD"]
        ),
        "0.1's commit is in HEAD's history"
    );
    assert!(old
        .patches
        .as_ref()
        .is_some_and(|p| p.join("series").is_file()));
    assert_eq!(old.latest.as_deref(), Some("0.1.0"));
    let new = d.line("0.2").unwrap();
    assert_eq!(new.source.git_ref, "HEAD");
    assert_eq!(new.latest.as_deref(), Some("0.2.0"));
    assert_eq!(d.newest_line().map(|l| l.version.as_str()), Some("0.2"));
}

/// On 2026-12-02 both lines are supported with 14-month windows; the text and the JSON matrix
/// list both, newest first.
#[test]
fn matrix_shows_both_lines_supported() {
    let m = json(&distro(&[
        "--format",
        "json",
        "matrix",
        "--no-advisories",
        "--at",
        "2026-12-02",
    ]));
    let rows: Vec<(&str, &str, &str, &str)> = m["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_str().unwrap(),
                r["release_date"].as_str().unwrap(),
                r["eol"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("0.2", "2026-12-02", "2028-02-02", "supported"),
            ("0.1", "2026-11-28", "2028-01-28", "supported"),
        ]
    );
    let text = distro(&["matrix", "--no-advisories", "--at", "2026-12-02"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("0.1 ") && l.contains("supported"))
            && text
                .lines()
                .any(|l| l.starts_with("0.2 ") && l.contains("supported")),
        "{text}"
    );
}

/// A fresh full clone of HEAD (what the quickstart test and the release workflow make) has the
/// commit line 0.1 builds from.
#[test]
fn fresh_clone_has_the_0_1_commit() {
    let t = tempfile::tempdir().unwrap();
    let clone = t.path().join("clone");
    git::run(
        t.path(),
        &[
            "clone",
            "--quiet",
            "--no-local",
            "--no-checkout",
            &repo().display().to_string(),
            &clone.display().to_string(),
        ],
    );
    let id = line_01().source.git_ref;
    assert!(
        git_ok(&clone, &["cat-file", "-e", &format!("{id}^{{commit}}")]),
        "a fresh clone lacks {id}"
    );
}

/// Every patch of the 0.1 queue is a fix from the newer line: its commit is in HEAD's history
/// and not in 0.1's; its DEP-3 header has a description and an `Origin` naming that commit.
/// The queue applies, and the patched tree has what the fixes add while 0.1's commit lacks it.
#[test]
fn queue_0_1_carries_backports_and_applies() {
    let line = line_01();
    let list = json(&distro(&[
        "--format", "json", "patches", "list", "--line", "0.1",
    ]));
    let patches = list["patches"].as_array().unwrap();
    assert!(!patches.is_empty(), "{list}");
    for p in patches {
        let h = &p["header"];
        let commit = h["commit"].as_str().unwrap();
        assert!(!h["description"].as_str().unwrap().is_empty(), "{p}");
        assert!(
            matches!(
                h["origin"]["category"].as_str(),
                Some("upstream" | "backport")
            ),
            "{p}"
        );
        assert_eq!(
            h["origin"]["reference"].as_str(),
            Some(&*format!("commit:{commit}")),
            "{p}"
        );
        assert!(
            git_ok(&repo(), &["merge-base", "--is-ancestor", commit, "HEAD"]),
            "{commit} is not on the newer line"
        );
        assert!(
            !git_ok(
                &repo(),
                &["merge-base", "--is-ancestor", commit, &line.source.git_ref]
            ),
            "{commit} is already in 0.1's own history: not a backport"
        );
    }

    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("src");
    let applied = json(&distro(&[
        "--format",
        "json",
        "patches",
        "apply",
        "--line",
        "0.1",
        "--out",
        tree.to_str().unwrap(),
    ]));
    assert_eq!(
        applied["patches"].as_array().unwrap().len(),
        patches.len(),
        "{applied}"
    );
    for added in ["mesh/control/src/durations.rs", "mesh/proxy/src/path.rs"] {
        assert!(
            tree.join(added).is_file(),
            "{added} not in the patched tree"
        );
        assert!(
            !git_ok(
                &repo(),
                &[
                    "cat-file",
                    "-e",
                    &format!("{}:{added}", line.source.git_ref)
                ]
            ),
            "{added} is already at 0.1's commit: the check proves nothing"
        );
    }
}

/// Backporting a fix the queue already carries reports it present on both lines: in 0.1's
/// series and in 0.2's history.
#[test]
fn backport_of_a_queued_fix_is_already_present_on_both_lines() {
    let line = line_01();
    let list = json(&distro(&[
        "--format", "json", "patches", "list", "--line", "0.1",
    ]));
    let commit = list["patches"][0]["header"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    let r = json(&distro(&[
        "--format",
        "json",
        "patches",
        "backport",
        &commit,
        "--dry-run",
        "--at",
        "2026-12-02",
    ]));
    let outcomes: Vec<(&str, &str)> = r["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["line"].as_str().unwrap(), l["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [("0.2", "already-present"), ("0.1", "already-present")],
        "{r}"
    );
    assert!(line.patches.is_some());
}

/// The advisory scan and the VEX document work per line.
#[test]
fn scan_and_vex_per_line() {
    let t = tempfile::tempdir().unwrap();
    for line in ["0.1", "0.2"] {
        let s = json(&distro(&[
            "--format", "json", "patches", "scan", "--line", line,
        ]));
        assert_eq!(s["line"], line, "{s}");
        let vex = t.path().join(format!("{line}.openvex.json"));
        let out = distro(&[
            "patches",
            "vex",
            "--line",
            line,
            "--timestamp",
            "2026-12-02T00:00:00Z",
            "-o",
            vex.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        let doc: Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
        assert_eq!(doc["@context"], "https://openvex.dev/ns/v0.2.0");
        assert!(
            doc.to_string().contains(&format!("{line}.0")),
            "the VEX of {line} is about its release: {doc}"
        );
    }
}

/// The output directory holding `line`'s build: the shared release output when it has the line
/// (CI's quickstart release of every line), else this test's own build of it.
fn built(line: &str) -> PathBuf {
    let out = distro_testsupport::release_out(Path::new(BIN), false);
    if out.join(line).join("build.json").is_file() {
        return out;
    }
    let own = distro_testsupport::target_dir().join("test-lines");
    eprintln!(
        "[builtin_lines] {} has no line {line}: building it into {}",
        out.display(),
        own.display()
    );
    let status = Command::new(BIN)
        .args(["build", "--line", line, "--out"])
        .arg(&own)
        .current_dir(repo())
        .env_remove("DISTRO_CONFIG")
        .status()
        .unwrap();
    assert!(status.success(), "distro build --line {line} failed");
    own
}

/// Both lines build in FIPS mode with evidence (the shared release output holds every line):
/// 0.1 from its pinned commit with its whole queue applied, 0.2 from HEAD; each binary reports
/// its line's version; and 0.1's binaries run the backported code: mesh-control refuses a
/// join-token lifetime beyond 30 days naming `--ttl` (the bounded durations of 370f01f), and
/// mesh-proxy carries the path normaliser's refusals (aa1a363).
#[test]
fn both_lines_build_fips_and_0_1_runs_its_backports() {
    let d = builtin();
    for line in &d.lines {
        let out = built(&line.version);
        let path = out.join(&line.version).join("build.json");
        let record: BuildRecord = serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap();
        assert_eq!(record.line, line.version);
        if line.source.git_ref == "HEAD" {
            assert_eq!(record.source.commit, head(), "{}", line.version);
        } else {
            assert_eq!(record.source.commit, line.source.git_ref);
        }
        let series: Vec<String> = match &line.patches {
            Some(dir) => std::fs::read_to_string(dir.join("series"))
                .unwrap()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        assert_eq!(record.patches, series, "line {}", line.version);
        for c in &record.components {
            assert!(c.fips.mode, "{} {}", line.version, c.name);
            assert_eq!(c.fips.cmvp_status, CmvpStatus::Validated);
            let ev: FipsEvidence =
                serde_json::from_slice(&std::fs::read(&c.evidence).unwrap()).unwrap();
            let sc = ev.self_check.expect("self-check ran");
            assert_eq!(
                Some(sc.component_version.as_str()),
                line.latest.as_deref(),
                "{} {} reports its own version",
                line.version,
                c.name
            );
        }
    }
    assert!(d.line("0.1").is_some_and(|l| l.patches.is_some()));

    let bin = built("0.1").join("0.1/bin");
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let control = bin.join("mesh-control");
    let init = Command::new(&control)
        .args(["ca", "init", "--trust-domain", "example.org", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let token = Command::new(&control)
        .args([
            "token",
            "create",
            "--identity",
            "spiffe://example.org/ns/a/sa/b",
        ])
        .args(["--ttl", "31d", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&token.stdout),
        String::from_utf8_lossy(&token.stderr)
    );
    assert!(!token.status.success(), "0.1 accepted --ttl 31d: {said}");
    assert!(
        said.contains("--ttl") && said.contains("out of range"),
        "{said}"
    );
    let proxy = std::fs::read(bin.join("mesh-proxy")).unwrap();
    let needle = b"dot-segments climb above the root";
    assert!(
        proxy.windows(needle.len()).any(|w| w == needle),
        "0.1's mesh-proxy lacks the path normaliser"
    );
}
