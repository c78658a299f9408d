//! `distro build` on a line whose `source.git` is a URL (issue 13, item 11): the source is
//! fetched into the same cache `distro patches` uses (`OUT/sources/<hash>.git`, a bare mirror),
//! updated with `git fetch` on the next run, and exported from there.
//!
//! The fixture's lockfile resolves the FIPS 4.x module (`aws-lc-fips-sys` 0.14.x) under a policy
//! that requires a validated one, so each build stops right after exporting and reading the
//! source's Cargo.lock, before compiling anything: the versions the refusal names come from
//! the fetched source, which is what these tests check, in seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Output;

use distro_testsupport::bin::{stderr, Bin};
use distro_testsupport::git;

/// Commits a crate whose Cargo.lock resolves `aws-lc-fips-sys` at `fips_sys`.
fn commit_fixture(repo: &Path, fips_sys: &str) {
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("Cargo.toml"),
        "[package]\nname = \"fixture\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(repo.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        repo.join("Cargo.lock"),
        format!("version = 4\n\n[[package]]\nname = \"aws-lc-fips-sys\"\nversion = \"{fips_sys}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"fixture\"\nversion = \"0.1.0\"\n"),
    )
    .unwrap();
    git::run(repo, &["add", "-A"]);
    git::run(repo, &["commit", "-q", "-m", &format!("lock {fips_sys}")]);
}

fn config(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("distro.toml");
    std::fs::write(
        &path,
        format!("[distribution]\nname = \"remote-source\"\n\n[fips]\nrequire_validated_module = true\n\n[[component]]\nname = \"fixture\"\npackage = \"fixture\"\n\n[[line]]\nversion = \"0.1\"\nrelease_date = 2026-11-28\nsource = {{ git = \"{url}\", ref = \"main\" }}\n"),
    )
    .unwrap();
    path
}

fn build(config: &Path, out: &Path) -> (Output, String) {
    let o = Bin::new(env!("CARGO_BIN_EXE_distro"))
        .env("NO_COLOR", "1")
        .run(&[
            "--config".as_ref(),
            config.as_os_str(),
            "build".as_ref(),
            "--line".as_ref(),
            "0.1".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
    let e = stderr(&o);
    (o, e)
}

/// The bare mirrors in `out/sources`.
fn mirrors(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out.join("sources"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "git"))
                .collect()
        })
        .unwrap_or_default()
}

/// A line naming its upstream by a `git://` URL served by `git daemon` on loopback: `distro
/// build` clones it into `OUT/sources/<hash>.git` (bare), exports the line's ref from there
/// (the refusal names the module version of the fetched Cargo.lock), and on the next run
/// fetches the commit upstream made meanwhile and builds that one. The build record is never
/// reached, but the cache is the one `distro patches` reads (same hash of the URL).
#[test]
fn build_fetches_a_url_source_into_the_cache() {
    let test = "build_fetches_a_url_source_into_the_cache";
    let t = tempfile::tempdir().unwrap();
    let served = t.path().join("served");
    let upstream = served.join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    git::run(&upstream, &["init", "-q", "-b", "main"]);
    commit_fixture(&upstream, "0.14.1");

    let Some(daemon) = git::Daemon::serve(test, &served) else {
        return;
    };
    let url = daemon.url("upstream");
    let cfg = config(t.path(), &url);
    let out = t.path().join("out");

    let (o, e) = build(&cfg, &out);
    assert!(!o.status.success(), "the policy stops the build: {e}");
    assert!(e.contains(&format!("source {url} cloned")), "{e}");
    assert!(e.contains("aws-lc-fips-sys 0.14.1"), "{e}");
    let m = mirrors(&out);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        m[0],
        distro_patches::source::mirror_dir(&out.join("sources"), &url)
    );
    assert_eq!(
        git::run(&m[0], &["rev-parse", "--is-bare-repository"]),
        "true"
    );
    let lock = std::fs::read_to_string(out.join("0.1/src/Cargo.lock")).unwrap();
    assert!(lock.contains("0.14.1"), "{lock}");
    assert!(!out.join("0.1/src/.git").exists(), "an export, not a clone");

    // Upstream moves on; the next build fetches and exports the new commit.
    commit_fixture(&upstream, "0.14.2");
    let (o, e) = build(&cfg, &out);
    assert!(!o.status.success());
    assert!(e.contains(&format!("source {url} updated")), "{e}");
    assert!(e.contains("aws-lc-fips-sys 0.14.2"), "{e}");
    assert_eq!(mirrors(&out).len(), 1);
    assert_eq!(
        git::run(&m[0], &["rev-parse", "refs/heads/main"]),
        git::run(&upstream, &["rev-parse", "HEAD"])
    );
}

/// A `file://` URL is a remote source too (mirrored, so the build never reads or writes the
/// repository it names), and a URL that does not answer stops the build naming it, with the
/// air-gapped way out.
#[test]
fn build_mirrors_file_urls_and_names_unreachable_ones() {
    let t = tempfile::tempdir().unwrap();
    let upstream = t.path().join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    git::run(&upstream, &["init", "-q", "-b", "main"]);
    commit_fixture(&upstream, "0.14.1");
    let url = format!("file://{}", upstream.display());
    let out = t.path().join("out");
    let (o, e) = build(&config(t.path(), &url), &out);
    assert!(!o.status.success());
    assert!(e.contains(&format!("source {url} cloned")), "{e}");
    assert!(e.contains("aws-lc-fips-sys 0.14.1"), "{e}");
    assert_eq!(mirrors(&out).len(), 1);

    let gone = format!("file://{}/missing", t.path().display());
    let (o, e) = build(&config(t.path(), &gone), &out);
    assert!(!o.status.success());
    assert!(e.contains(&gone) && e.contains("local mirror"), "{e}");
    assert!(
        !e.contains("aws-lc-fips-sys"),
        "stopped before reading any source: {e}"
    );
}
