//! `distro release --all` / `--line` / `--force` over a definition with two lines, one past its
//! end of life, and the exit codes that tell a policy refusal (3) from an error (1) and from
//! bad usage (2), for `release` and the stage commands (issue 14 items 2 and 4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distro_testsupport::bin::{stderr, Bin};
use distro_testsupport::git;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn distro(args: &[&str]) -> Output {
    Bin::new(env!("CARGO_BIN_EXE_distro"))
        .env("RUST_LOG", "warn")
        .env_remove("DISTRO_CONFIG")
        .env_remove("DISTRO_TEST_KILL_AFTER")
        .run(args)
}

/// A definition with line 0.1 (released 2024-01-10, so past its 14-month end of life on
/// 2025-03-10) and line 0.2 (supported), both from this repository's HEAD.
fn two_lines(dir: &Path) -> PathBuf {
    let text = format!(
        r#"[distribution]
name = "fips-mesh"
description = "two lines"
vendor = "test"

[support]
months = 14
warn_days = 30

[fips]
require_validated_module = true

[advisories]
db = "{db}"
max_age_days = 3650

[[component]]
name = "mesh-proxy"
package = "mesh-proxy"
binary = "mesh-proxy"
features = ["fips"]
fips_required = true
description = "proxy"

[[line]]
version = "0.1"
release_date = 2024-01-10
latest = "0.1.3"
source = {{ git = "{repo}", ref = "HEAD" }}

[[line]]
version = "0.2"
release_date = {today}
latest = "0.2.0"
source = {{ git = "{repo}", ref = "HEAD" }}
"#,
        db = repo().join("patches/advisory-db").display(),
        repo = repo().display(),
        today = today(),
    );
    let path = dir.join("distro.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn today() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `--all` refuses a line past its end of life with exit 3, naming the line and its end-of-life
/// date, before anything is checked or built (no output directory appears).
#[test]
fn release_all_refuses_an_end_of_life_line_with_exit_3_naming_line_and_date() {
    let t = tempfile::tempdir().unwrap();
    let config = two_lines(t.path());
    let out = t.path().join("out");
    let o = distro(&[
        "--config",
        config.to_str().unwrap(),
        "release",
        "--all",
        "--out",
        out.to_str().unwrap(),
        "--to",
        "127.0.0.1:1/fips-mesh",
        "--plain-http",
        "--key",
        t.path().join("k.key").to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("line 0.1"), "{err}");
    assert!(err.contains("2025-03-10"), "the end-of-life date: {err}");
    assert!(err.contains("--force"), "says how to go on: {err}");
    assert!(!out.exists(), "nothing may be written before the refusal");
    assert!(!t.path().join("k.key").exists(), "no key made either");
}

/// `--all --force` includes the end-of-life line: the run gets past the support check to the
/// preflight (which then fails on the unreachable registry: an error, exit 1, not a refusal).
/// `--line 0.2` releases only the supported line and never mentions 0.1; `--line 0.1` alone is
/// refused.
#[test]
fn release_force_includes_end_of_life_lines_and_line_selects_one() {
    let t = tempfile::tempdir().unwrap();
    let config = two_lines(t.path());
    let key = t.path().join("k.key");
    let out_dir = t.path().join("out");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "--config",
            config.to_str().unwrap(),
            "release",
            "--out",
            out_dir.to_str().unwrap(),
            "--to",
            "127.0.0.1:1/fips-mesh",
            "--plain-http",
            "--key",
            key.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        distro(&a)
    };

    let forced = base(&["--all", "--force"]);
    let err = stderr(&forced);
    assert_eq!(forced.status.code(), Some(1), "{err}");
    assert!(err.contains("release preflight"), "{err}");
    assert!(err.contains("registry"), "{err}");
    assert!(!err.contains("refused"), "forced: {err}");

    let one = base(&["--line", "0.2"]);
    let err = stderr(&one);
    assert_eq!(one.status.code(), Some(1), "{err}");
    assert!(err.contains("release preflight"), "{err}");
    assert!(
        !err.contains("line 0.1"),
        "--line 0.2 concerns one line: {err}"
    );

    let old = base(&["--line", "0.1"]);
    let err = stderr(&old);
    assert_eq!(old.status.code(), Some(3), "{err}");
    assert!(
        err.contains("line 0.1 reached its end of life on 2025-03-10"),
        "{err}"
    );
}

/// Bad usage is clap's exit 2: `--all` with `--line`, and an unknown flag of a stage command.
#[test]
fn bad_usage_exits_2() {
    let o = distro(&[
        "release", "--all", "--line", "0.2", "--to", "x/y", "--key", "k",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = distro(&["sign", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// An error (unreadable input) is exit 1, for release and a stage command alike.
#[test]
fn errors_exit_1() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope.toml");
    let o = distro(&[
        "--config",
        missing.to_str().unwrap(),
        "release",
        "--to",
        "127.0.0.1:1/x",
        "--key",
        "k",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));
    let o = distro(&[
        "verify",
        "oci:/nonexistent/layout:1",
        "--key",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// A stage command's policy refusal is exit 3: `distro build` of a source whose Cargo.lock
/// resolves a FIPS module without a CMVP certificate, under `require_validated_module`, is
/// refused before anything is compiled.
#[test]
fn build_refuses_an_unvalidated_fips_module_with_exit_3() {
    let test = "build_refuses_an_unvalidated_fips_module_with_exit_3";
    if !distro_testsupport::require(test, "git", "apt-get install git") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::write(
        src.join("Cargo.toml"),
        "[package]\nname = \"mesh-proxy\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(src.join("src/main.rs"), "fn main() {}\n").unwrap();
    // aws-lc-fips-sys 0.14.x is the AWS-LC FIPS 4.x module: in process, no certificate.
    std::fs::write(
        src.join("Cargo.lock"),
        "version = 4\n\n[[package]]\nname = \"aws-lc-fips-sys\"\nversion = \"0.14.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"mesh-proxy\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    git::init(&src);
    git::commit_all(&src, "fixture");
    let config = two_lines(t.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&repo().display().to_string(), &src.display().to_string());
    std::fs::write(&config, text).unwrap();
    let o = distro(&[
        "--config",
        config.to_str().unwrap(),
        "build",
        "--line",
        "0.2",
        "--out",
        t.path().join("out").to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.lines().any(|l| l.starts_with("refused: ")), "{err}");
    assert!(err.contains("require_validated_module"), "{err}");
}
