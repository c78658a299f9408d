//! Exporting a line's source with its patch queue applied, and the provenance that records it.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::path::Path;

use distro_build::source;
use distro_config::Line;
use distro_testsupport::git;

fn upstream(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("upstream");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("README"), "upstream\n").unwrap();
    git::init(&repo);
    git::commit_all(&repo, "initial");
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

/// `dir/queue` holding [`PATCH`] as its one patch.
fn marker_queue(dir: &Path) -> std::path::PathBuf {
    let queue = dir.join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(queue.join("0001-marker.patch"), PATCH).unwrap();
    std::fs::write(queue.join("series"), "0001-marker.patch\n").unwrap();
    queue
}

/// The queue is applied to the exported tree and recorded; a rerun reuses the tree; a change to
/// the queue makes the next export start again from the commit.
#[test]
fn export_applies_the_queue_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let queue = marker_queue(dir.path());
    let src = line(&repo, &queue);
    let dest = dir.path().join("out/src");

    let first = source::export(&src, &dest, &dir.path().join("out/sources")).unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("PATCHED.txt")).unwrap(),
        "patched\n"
    );
    assert_eq!(first.patches.len(), 1);
    assert_eq!(first.patches[0].name, "0001-marker.patch");
    assert_eq!(first.patches[0].advisories, ["RUSTSEC-2026-0049"]);
    assert!(first.patches[0].origin.starts_with("vendor"));

    // Nothing changed: reused (a second apply would fail on the existing file).
    let again = source::export(&src, &dest, &dir.path().join("out/sources")).unwrap();
    assert_eq!(again.patches, first.patches);

    // The queue changed: exported afresh, so the old patch's file is gone.
    std::fs::write(queue.join("series"), "").unwrap();
    let third = source::export(&src, &dest, &dir.path().join("out/sources")).unwrap();
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
    let e = source::export(&src, &dest, &dir.path().join("out/sources"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("0002-bad.patch"), "{e}");
    assert!(!dest.exists(), "no half-patched tree is left");
}

/// Regression (issue 15 item 7): a reused tree whose record of applied patches is corrupt or
/// missing is an error naming the record and saying what to do, never "no patches" (which the
/// signed provenance would then claim); doing what it says exports and patches afresh.
#[test]
fn corrupt_patch_record_is_an_error_not_no_patches() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let queue = marker_queue(dir.path());
    let src = line(&repo, &queue);
    let dest = dir.path().join("out/src");
    let sources = dir.path().join("out/sources");
    assert_eq!(
        source::export(&src, &dest, &sources).unwrap().patches.len(),
        1
    );

    let record = dest.join(".distro-patches.json");
    for damage in ["truncated", "missing"] {
        if damage == "missing" {
            std::fs::remove_file(&record).unwrap();
        } else {
            std::fs::write(&record, "[{\"name\": \"0001-mar").unwrap();
        }
        let e = source::export(&src, &dest, &sources)
            .err()
            .unwrap_or_else(|| panic!("a {damage} record was taken as a patch list"))
            .to_string();
        assert!(e.contains(&record.display().to_string()), "{damage}: {e}");
        assert!(
            e.contains(&format!("help: remove {}", dest.display())),
            "{damage}: {e}"
        );
    }
    // The way out the error names works, and the patch is listed again.
    std::fs::remove_dir_all(&dest).unwrap();
    let again = source::export(&src, &dest, &sources).unwrap();
    assert_eq!(again.patches.len(), 1);
    assert_eq!(again.patches[0].name, "0001-marker.patch");
}

/// A line whose source is a URL (here `file://`) is exported from its bare mirror in the source
/// cache (`<sources>/<hash>.git`, the same one `distro patches` uses): cloned the first time,
/// updated with `git fetch` later so a new upstream commit is built; provenance names the URL,
/// never the mirror's path.
#[test]
fn remote_source_is_exported_from_its_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let queue = marker_queue(dir.path());
    let url = format!("file://{}", repo.display());
    let mut src = line(&repo, &queue);
    src.source.git = url.clone();
    let dest = dir.path().join("out/0.1/src");
    let sources = dir.path().join("out/sources");

    let first = source::export(&src, &dest, &sources).unwrap();
    let fetched = first.fetched.clone().expect("a URL source is fetched");
    assert_eq!(fetched.action, "cloned");
    assert_eq!(
        fetched.mirror,
        distro_patches::source::mirror_dir(&sources, &url)
    );
    let bare = git::run(&fetched.mirror, &["rev-parse", "--is-bare-repository"]);
    assert_eq!(bare, "true");
    assert_eq!(first.repository, url);
    assert_eq!(
        std::fs::read_to_string(dest.join("README")).unwrap(),
        "upstream\n"
    );
    assert_eq!(first.patches.len(), 1);
    assert!(dest.join("PATCHED.txt").is_file());

    // Upstream moves on: the next export fetches and builds the new commit.
    std::fs::write(repo.join("README"), "upstream, later\n").unwrap();
    git::run(&repo, &["commit", "-q", "-am", "later"]);
    let head = git::run(&repo, &["rev-parse", "HEAD"]);
    let second = source::export(&src, &dest, &sources).unwrap();
    assert_eq!(second.fetched.unwrap().action, "updated");
    assert_eq!(second.commit, head);
    assert_ne!(second.commit, first.commit);
    assert_eq!(
        std::fs::read_to_string(dest.join("README")).unwrap(),
        "upstream, later\n"
    );
    assert_eq!(second.patches.len(), 1);
}

/// An unreachable URL fails with the line's source named and the air-gapped way out.
#[test]
fn unreachable_remote_source_names_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(queue.join("series"), "").unwrap();
    let mut src = line(&repo, &queue);
    let url = format!("file://{}/no-such-repo", dir.path().display());
    src.source.git = url.clone();
    let e = source::export(
        &src,
        &dir.path().join("out/src"),
        &dir.path().join("out/sources"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(&url) && e.contains("local mirror"), "{e}");
}
