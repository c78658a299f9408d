//! The contract `distro build` relies on: `apply_series(tree, patches_dir)`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is the failure report

use std::path::Path;

use distro_patches::{apply_series, PatchError};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const ADD_LINE: &str = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: A <a@example.org>\nSubject: [PATCH] Harden parser\n\nOrigin: upstream, commit:1234abcd\nAdvisories: RUSTSEC-2026-0104, CVE-2026-0001\nLast-Update: 2026-11-01\n---\n a.txt | 1 +\n\ndiff --git a/a.txt b/a.txt\nindex 0000000..1111111 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,3 @@\n one\n+one and a half\n two\n";
const NEW_FILE: &str = "Description: Add a vendor file\nOrigin: vendor\n---\ndiff --git a/sub/new.txt b/sub/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/sub/new.txt\n@@ -0,0 +1 @@\n+vendor\n";

/// Patches apply in series order to a plain directory inside an enclosing git repository
/// (which must not be touched); each result carries name, sha256, origin and advisories.
#[test]
fn applies_in_order_and_reports_each_patch() {
    let tmp = tempfile::tempdir().unwrap();
    let outer = tmp.path();
    std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(outer)
        .status()
        .unwrap();
    let tree = outer.join("out/src");
    write(&tree.join("a.txt"), "one\ntwo\n");
    let q = outer.join("queue");
    write(
        &q.join("series"),
        "# security fixes\n01-harden.patch\n02-vendor.patch -p1\n",
    );
    write(&q.join("01-harden.patch"), ADD_LINE);
    write(&q.join("02-vendor.patch"), NEW_FILE);
    let applied = apply_series(&tree, &q).unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.join("a.txt")).unwrap(),
        "one\none and a half\ntwo\n"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("sub/new.txt")).unwrap(),
        "vendor\n"
    );
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[0].name, "01-harden.patch");
    assert_eq!(applied[0].origin, "upstream, commit:1234abcd");
    assert_eq!(
        applied[0].advisories,
        ["RUSTSEC-2026-0104", "CVE-2026-0001"]
    );
    // sha256 of the file, checked with an independent tool.
    let sum = std::process::Command::new("sha256sum")
        .arg(q.join("01-harden.patch"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap(),
        applied[0].sha256
    );
    assert_eq!(applied[1].origin, "vendor");
    assert!(applied[1].advisories.is_empty());
    let json = serde_json::to_value(&applied[0]).unwrap();
    assert_eq!(json["name"], "01-harden.patch");
    // The enclosing repository saw nothing.
    let st = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(outer)
        .output()
        .unwrap();
    assert!(st.stdout.is_empty());
}

/// An empty series applies nothing; a missing series is an error naming the file.
#[test]
fn empty_and_missing_series() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("src");
    write(&tree.join("a.txt"), "one\ntwo\n");
    let q = tmp.path().join("q");
    write(&q.join("series"), "\n# nothing yet\n");
    assert!(apply_series(&tree, &q).unwrap().is_empty());
    let missing = tmp.path().join("none");
    std::fs::create_dir_all(&missing).unwrap();
    match apply_series(&tree, &missing) {
        Err(e @ PatchError::SeriesMissing { .. }) => {
            assert!(e.to_string().contains("none/series"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

/// The first patch that does not apply stops the series: the error names the patch file and
/// its series line, earlier patches stay applied, later ones are not tried. A series entry
/// without its file is an error on that series line, raised before the tree is touched.
#[test]
fn stops_at_first_failure_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("src");
    write(&tree.join("a.txt"), "one\ntwo\n");
    let q = tmp.path().join("q");
    write(
        &q.join("series"),
        "02-vendor.patch\n01-harden.patch\n03-never.patch\n",
    );
    write(
        &q.join("03-never.patch"),
        &NEW_FILE.replace("new.txt", "never.txt"),
    );
    write(&q.join("02-vendor.patch"), NEW_FILE);
    write(
        &q.join("01-harden.patch"),
        &ADD_LINE.replace(" one\n+one", " uno\n+one"),
    );
    let e = apply_series(&tree, &q).unwrap_err();
    match &e {
        PatchError::NotApplied {
            patch, series_line, ..
        } => {
            assert!(patch.ends_with("01-harden.patch"));
            assert_eq!(*series_line, 2);
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("01-harden.patch") && msg.contains("series:2") && msg.contains("a.txt"),
        "{msg}"
    );
    assert!(
        tree.join("sub/new.txt").exists(),
        "the first patch stays applied"
    );
    assert!(
        !tree.join("sub/never.txt").exists(),
        "patches after the failure are not applied"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("a.txt")).unwrap(),
        "one\ntwo\n",
        "git apply is atomic per patch"
    );

    let fresh = tmp.path().join("fresh");
    write(&fresh.join("a.txt"), "one\ntwo\n");
    write(&q.join("series"), "02-vendor.patch\nghost.patch\n");
    let e = apply_series(&fresh, &q).unwrap_err().to_string();
    assert!(e.contains("series:2") && e.contains("ghost.patch"), "{e}");
    assert!(
        !fresh.join("sub").exists(),
        "nothing applied when the queue is incomplete"
    );
}

/// Consecutive patches to the same file build on each other (plain and git-format mixed).
#[test]
fn consecutive_patches_to_one_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("src");
    write(&tree.join("a.txt"), "one\ntwo\n");
    let q = tmp.path().join("q");
    write(&q.join("1.patch"), "Description: a\nOrigin: vendor\n---\n--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,3 @@\n one\n+x\n two\n");
    write(&q.join("2.patch"), "From 0 Mon Sep 17 00:00:00 2001\nSubject: b\n\nOrigin: vendor\n---\n a.txt | 1 +\n\ndiff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,4 @@\n one\n x\n+y\n two\n");
    write(&q.join("series"), "1.patch\n2.patch\n");
    assert_eq!(apply_series(&tree, &q).unwrap().len(), 2);
    assert_eq!(
        std::fs::read_to_string(tree.join("a.txt")).unwrap(),
        "one\nx\ny\ntwo\n"
    );
}
