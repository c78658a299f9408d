//! `distro advisories status|update` and the advisory database every report names: the
//! snapshot the repository ships is the default, a stale one is warned about with its date, an
//! update from a local git mirror (file:// URL) or an archive replaces it atomically, and a
//! broken source leaves the database in place untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distro_testsupport::bin::{stderr, Bin};
use distro_testsupport::git;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn distro(cwd: &Path, args: &[&str]) -> Output {
    Bin::new(env!("CARGO_BIN_EXE_distro"))
        .current_dir(cwd)
        .env_remove("DISTRO_CONFIG")
        .run(args)
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn advisory(id: &str, package: &str) -> String {
    format!("```toml\n[advisory]\nid = \"{id}\"\npackage = \"{package}\"\ndate = \"2026-01-01\"\n\n[versions]\npatched = [\">= 1.0.1\"]\n```\n\n# A flaw in {package}\n")
}

/// A plain database copy with `n` advisories and a SNAPSHOT file of `date`.
fn plain_db(dir: &Path, n: usize, date: &str) {
    for i in 0..n {
        let p = dir.join(format!("crates/demo-{i}/RUSTSEC-2026-{i:04}.md"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            p,
            advisory(&format!("RUSTSEC-2026-{i:04}"), &format!("demo-{i}")),
        )
        .unwrap();
    }
    fs::write(
        dir.join("SNAPSHOT"),
        format!("Snapshot (test, commit 1111111111111111111111111111111111111111, {date})\n"),
    )
    .unwrap();
}

/// A git mirror with `n` advisories, committed on 2026-11-30.
fn git_mirror(dir: &Path, n: usize) -> String {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let p = dir.join(format!("crates/mirror-{i}/RUSTSEC-2026-9{i:03}.md"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            p,
            advisory(&format!("RUSTSEC-2026-9{i:03}"), &format!("mirror-{i}")),
        )
        .unwrap();
    }
    let date = "2026-11-30T12:00:00Z";
    git::run_at(dir, &["init", "-q", "-b", "main"], date);
    git::commit_all_at(dir, "advisories", date)
}

/// Every file under `dir` with its contents, to compare a database before and after.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// With no --config and no --advisory-db, run inside the checkout, status reports the snapshot
/// the repository ships (patches/advisory-db): its SNAPSHOT commit and date, its advisories.
#[test]
fn status_defaults_to_the_vendored_snapshot() {
    let s = json(&distro(
        &repo(),
        &["advisories", "status", "--format", "json"],
    ));
    let vendored = fs::read_to_string(repo().join("patches/advisory-db/SNAPSHOT")).unwrap();
    let commit = s["commit"].as_str().unwrap();
    assert!(vendored.contains(commit), "{s}");
    assert!(vendored.contains(s["date"].as_str().unwrap()), "{s}");
    assert!(s["advisories"].as_u64().unwrap() > 1000, "{s}");
    assert!(
        s["path"].as_str().unwrap().ends_with("patches/advisory-db"),
        "{s}"
    );
    let (age, max) = (
        s["age_days"].as_i64().unwrap(),
        s["max_age_days"].as_i64().unwrap(),
    );
    assert_eq!(max, 90, "the built-in distro.toml sets 90 days");
    assert_eq!(s["stale"].as_bool().unwrap(), age > max, "{s}");
    assert_eq!(s["warning"].is_string(), age > max, "{s}");
}

/// A snapshot older than `[advisories] max_age_days` is reported stale: a warning on stderr
/// with its date, `stale` and `warning` in the JSON; a recent one is not.
#[test]
fn status_warns_when_older_than_max_age() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("db");
    plain_db(&db, 3, "2020-01-02");
    let config = t.path().join("distro.toml");
    fs::write(
        &config,
        format!(
            "[distribution]\nname = \"t\"\n\n[advisories]\ndb = \"db\"\nmax_age_days = 30\n\n[[component]]\nname = \"c\"\npackage = \"c\"\n\n[[line]]\nversion = \"0.1\"\nrelease_date = 2026-01-01\nsource = {{ git = \"{}\", ref = \"HEAD\" }}\n",
            repo().display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let o = distro(
        t.path(),
        &["--config", c, "advisories", "status", "--format", "json"],
    );
    let s = json(&o);
    assert_eq!(s["advisories"], 3);
    assert_eq!(s["date"], "2020-01-02");
    assert_eq!(s["max_age_days"], 30);
    assert_eq!(s["stale"], true);
    let w = s["warning"].as_str().unwrap();
    assert!(w.contains("2020-01-02") && w.contains("30 days"), "{w}");
    let e = stderr(&o);
    assert!(e.contains("warning:") && e.contains("2020-01-02"), "{e}");

    // The same report from matrix names the snapshot it used, and warns the same way.
    let o = distro(t.path(), &["--config", c, "matrix", "--format", "json"]);
    let m = json(&o);
    assert_eq!(m["advisory_db"]["date"], "2020-01-02", "{m}");
    assert!(stderr(&o).contains("is from 2020-01-02"), "{}", stderr(&o));

    plain_db(&db, 3, "2099-01-01");
    let s = json(&distro(
        t.path(),
        &["--config", c, "advisories", "status", "--format", "json"],
    ));
    assert_eq!(
        (s["stale"].clone(), s["warning"].clone()),
        (Value::Bool(false), Value::Null)
    );
}

/// The database a scan used is named in its JSON and on stderr.
#[test]
fn scan_names_the_snapshot_it_used() {
    let o = distro(
        &repo(),
        &["patches", "scan", "--line", "0.1", "--format", "json"],
    );
    let s = json(&o);
    let label = s["advisory_db"]["commit"].as_str().unwrap();
    assert_eq!(label.len(), 40, "{s}");
    assert!(
        stderr(&o).contains(&format!("RustSec advisory-db {}", &label[..12])),
        "{}",
        stderr(&o)
    );
}

/// `update --from file://MIRROR` clones a local git mirror, records its commit and date in
/// SNAPSHOT, drops `.git`, and replaces the old database; `status` then reports the new one.
/// The same works from a .tar.gz of the mirror.
#[test]
fn update_from_local_git_mirror_replaces_the_database() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("live/advisory-db");
    plain_db(&dest, 1, "2026-01-01");
    let mirror = t.path().join("mirror");
    let head = git_mirror(&mirror, 2);
    let url = format!("file://{}", mirror.display());
    let d = dest.to_str().unwrap();
    let r = json(&distro(
        t.path(),
        &[
            "advisories",
            "update",
            "--from",
            &url,
            "--advisory-db",
            d,
            "--format",
            "json",
        ],
    ));
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(r["previous"]["advisories"], 1, "{r}");
    assert_eq!(r["current"]["commit"], head.as_str(), "{r}");
    assert_eq!(r["current"]["date"], "2026-11-30", "{r}");
    assert_eq!(r["current"]["advisories"], 2, "{r}");
    assert!(!dest.join(".git").exists(), "the snapshot carries no .git");
    assert!(fs::read_to_string(dest.join("SNAPSHOT"))
        .unwrap()
        .contains(&head));
    assert!(
        !dest.join("crates/demo-0").exists(),
        "old advisories are gone"
    );
    let s = json(&distro(
        t.path(),
        &[
            "advisories",
            "status",
            "--advisory-db",
            d,
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        (s["commit"].as_str(), s["advisories"].as_u64()),
        (Some(head.as_str()), Some(2))
    );
    let leftovers: Vec<_> = fs::read_dir(t.path().join("live"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec!["advisory-db"],
        "no staging directory is left"
    );

    // An archive of a checkout, for sites without git access to any mirror.
    let archive = t.path().join("mirror.tar.gz");
    let tar = Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(t.path())
        .arg("mirror")
        .status()
        .unwrap();
    assert!(tar.success());
    plain_db(&dest, 1, "2026-01-01");
    fs::remove_dir_all(dest.join("crates/mirror-0")).unwrap();
    fs::remove_dir_all(dest.join("crates/mirror-1")).unwrap();
    let a = archive.to_str().unwrap();
    let r = json(&distro(
        t.path(),
        &[
            "advisories",
            "update",
            "--from",
            a,
            "--advisory-db",
            d,
            "--format",
            "json",
        ],
    ));
    assert_eq!(r["current"]["commit"], head.as_str(), "{r}");
    assert_eq!(r["current"]["advisories"], 2, "{r}");
}

/// A source whose advisories do not parse, one that is no database, and one that does not
/// exist all fail with the reason, and the database in place is byte-for-byte unchanged.
#[test]
fn update_from_broken_source_keeps_the_old_database() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("live/advisory-db");
    plain_db(&dest, 2, "2026-01-01");
    let before = tree(&dest);
    let d = dest.to_str().unwrap();

    let broken = t.path().join("broken");
    git_mirror(&broken, 2);
    fs::write(
        broken.join("crates/mirror-0/RUSTSEC-2026-9000.md"),
        "```toml\n[advisory]\nid = \"RUSTSEC-2026-9000\"\n", // cut short: no package, no end
    )
    .unwrap();
    git::run_at(
        &broken,
        &["commit", "-qam", "half-written"],
        "2026-11-30T13:00:00Z",
    );
    let not_a_db = t.path().join("empty");
    fs::create_dir_all(&not_a_db).unwrap();
    git::run_at(&not_a_db, &["init", "-q"], "2026-11-30T13:00:00Z");
    fs::write(not_a_db.join("README"), "nothing").unwrap();
    git::run_at(&not_a_db, &["add", "-A"], "2026-11-30T13:00:00Z");
    git::run_at(&not_a_db, &["commit", "-qm", "x"], "2026-11-30T13:00:00Z");

    for (from, why) in [
        (format!("file://{}", broken.display()), "does not parse"),
        (
            format!("file://{}", not_a_db.display()),
            "no crates/ folder",
        ),
        (
            t.path().join("missing").display().to_string(),
            "no such directory",
        ),
    ] {
        let o = distro(
            t.path(),
            &["advisories", "update", "--from", &from, "--advisory-db", d],
        );
        assert!(!o.status.success(), "update from {from} should fail");
        let e = stderr(&o);
        assert!(e.contains(why), "{from}: {e}");
        assert!(e.contains("was not changed"), "{from}: {e}");
        assert_eq!(tree(&dest), before, "{from}: the old database must be kept");
        let left: Vec<_> = fs::read_dir(t.path().join("live"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec!["advisory-db"], "{from}: staging left behind");
    }
}

/// `--from` a local mirror and `--advisory-db` given as paths relative to the working
/// directory work as written (git runs elsewhere, so they must not be taken relative to it).
#[test]
fn update_with_relative_paths() {
    let t = tempfile::tempdir().unwrap();
    plain_db(&t.path().join("live/advisory-db"), 1, "2026-01-01");
    let head = git_mirror(&t.path().join("mirror"), 3);
    let r = json(&distro(
        t.path(),
        &[
            "advisories",
            "update",
            "--from",
            "mirror",
            "--advisory-db",
            "live/advisory-db",
            "--format",
            "json",
        ],
    ));
    assert_eq!(r["current"]["commit"], head.as_str(), "{r}");
    assert_eq!(r["current"]["advisories"], 3, "{r}");
    assert!(t.path().join("live/advisory-db/crates/mirror-2").is_dir());
}
