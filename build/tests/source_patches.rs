//! Exporting a line's source with its patch queue applied, and the provenance that records it.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::path::Path;
use std::process::Command;

use distro_build::source;
use distro_config::Line;

fn git(repo: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@invalid"])
        .args(args)
        .current_dir(repo)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn upstream(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("upstream");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("README"), "upstream\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    repo
}

/// A line of `repo` at HEAD, with `queue` as its patch directory.
fn line(repo: &Path, queue: &Path) -> Line {
    let text = format!(
        "[distribution]\nname = \"t\"\n[[component]]\nname = \"c\"\npackage = \"c\"\n[[line]]\nversion = \"0.1\"\nrelease_date = 2026-11-28\nsource = {{ git = \"{}\", ref = \"HEAD\" }}\npatches = \"{}\"\n",
        repo.display(),
        queue.display()
    );
    distro_config::parse(Path::new("distro.toml"), &text)
        .unwrap()
        .lines
        .remove(0)
}

const PATCH: &str = "Description: Add a marker file\nOrigin: vendor\nAuthor: Test <t@invalid>\nAdvisories: RUSTSEC-2026-0049\nLast-Update: 2026-11-28\n---\ndiff --git a/PATCHED.txt b/PATCHED.txt\nnew file mode 100644\n--- /dev/null\n+++ b/PATCHED.txt\n@@ -0,0 +1 @@\n+patched\n";

/// The queue is applied to the exported tree and recorded; a rerun reuses the tree; a change to
/// the queue makes the next export start again from the commit.
#[test]
fn export_applies_the_queue_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(queue.join("0001-marker.patch"), PATCH).unwrap();
    std::fs::write(queue.join("series"), "0001-marker.patch\n").unwrap();
    let src = line(&repo, &queue);
    let dest = dir.path().join("out/src");

    let first = source::export(&src, &dest).unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("PATCHED.txt")).unwrap(),
        "patched\n"
    );
    assert_eq!(first.patches.len(), 1);
    assert_eq!(first.patches[0].name, "0001-marker.patch");
    assert_eq!(first.patches[0].advisories, ["RUSTSEC-2026-0049"]);
    assert!(first.patches[0].origin.starts_with("vendor"));

    // Nothing changed: reused (a second apply would fail on the existing file).
    let again = source::export(&src, &dest).unwrap();
    assert_eq!(again.patches, first.patches);

    // The queue changed: exported afresh, so the old patch's file is gone.
    std::fs::write(queue.join("series"), "").unwrap();
    let third = source::export(&src, &dest).unwrap();
    assert!(third.patches.is_empty());
    assert!(!dest.join("PATCHED.txt").exists());
}

/// A patch that does not apply stops the export, names the patch, and leaves no tree behind.
#[test]
fn failing_patch_is_named_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let bad = PATCH
        .replace(
            "new file mode 100644\n--- /dev/null\n+++ b/PATCHED.txt\n@@ -0,0 +1 @@\n+patched\n",
            "--- a/README\n+++ b/README\n@@ -1 +1 @@\n-not what is there\n+changed\n",
        )
        .replace(
            "diff --git a/PATCHED.txt b/PATCHED.txt",
            "diff --git a/README b/README",
        );
    std::fs::write(queue.join("0002-bad.patch"), bad).unwrap();
    std::fs::write(queue.join("series"), "0002-bad.patch\n").unwrap();
    let src = line(&repo, &queue);
    let dest = dir.path().join("out/src");
    let e = source::export(&src, &dest).unwrap_err().to_string();
    assert!(e.contains("0002-bad.patch"), "{e}");
    assert!(!dest.exists(), "no half-patched tree is left");
}
