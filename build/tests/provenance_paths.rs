//! Provenance names the source by its repository URL, never by a path of the build machine
//! (issue 10): two clones of the same commit in different directories give byte-identical
//! statements; only a local source that declares no repository URL is named by a `file:` URI.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use distro_build::cargo::Toolchain;
use distro_build::{provenance, source};
use distro_testsupport::git;

/// The date of every fixture commit.
const DATE: &str = "2026-11-28T00:00:00Z";

/// An upstream repository whose Cargo.toml has `cargo_toml` and a bare clone of it to clone from.
fn upstream(dir: &Path, cargo_toml: &str) -> PathBuf {
    let repo = dir.join("upstream");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("Cargo.toml"), cargo_toml).unwrap();
    std::fs::write(repo.join("Cargo.lock"), "version = 4\n").unwrap();
    git::init(&repo);
    git::commit_all_at(&repo, "initial", DATE);
    repo
}

fn clone(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    git::run(
        to.parent().unwrap(),
        &[
            "clone",
            "-q",
            &from.display().to_string(),
            &to.display().to_string(),
        ],
    );
    to.to_path_buf()
}

/// The provenance statement of component `c`, built from a checkout at `checkout` whose
/// distro.toml says `source = { git = "..", ref = "HEAD" }` (as the built-in one does), with its
/// output directory inside that checkout.
fn statement_json(checkout: &Path) -> String {
    let config = checkout.join("distro/distro.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let text = "[distribution]\nname = \"t\"\n[[component]]\nname = \"c\"\npackage = \"c\"\n[[line]]\nversion = \"0.1\"\nrelease_date = 2026-11-28\nsource = { git = \"..\", ref = \"HEAD\" }\n";
    std::fs::write(&config, text).unwrap();
    let dist = distro_config::load(&config).unwrap();
    let line = &dist.lines[0];
    let src = source::export(
        line,
        &checkout.join("out/0.1/src"),
        &checkout.join("out/sources"),
    )
    .unwrap();
    let toolchain = Toolchain {
        versions: BTreeMap::from([("rustc".to_string(), "1.91.0".to_string())]),
        host: "x86_64-unknown-linux-gnu".into(),
    };
    let st = provenance::statement(&provenance::Inputs {
        dist: &dist,
        line,
        source: &src,
        component: &dist.components[0],
        toolchain: &toolchain,
        cargo_lock_sha256: "00",
        command: &["cargo".to_string(), "build".to_string()],
        outputs: &[("c".to_string(), "11".to_string())],
        patches: &src.patches,
    });
    serde_json::to_string_pretty(&st).unwrap()
}

/// Two clones of one commit, in unrelated directories, give byte-identical provenance that
/// names the repository by the URL its Cargo.toml declares and contains no path of either.
#[test]
fn provenance_of_two_clones_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(
        dir.path(),
        "[workspace]\nmembers = []\n\n[workspace.package]\nrepository = \"https://example.invalid/fips-mesh-distro\"\n",
    );
    let a = clone(&up, &dir.path().join("alice/work/fips-mesh"));
    let b = clone(&up, &dir.path().join("ci/builds/42/checkout"));
    let (pa, pb) = (statement_json(&a), statement_json(&b));
    assert_eq!(pa, pb, "provenance differs between clones");
    assert!(
        pa.contains("\"git+https://example.invalid/fips-mesh-distro@HEAD\""),
        "{pa}"
    );
    let root = dir.path().to_string_lossy().into_owned();
    assert!(!pa.contains(&root), "a build-machine path leaked: {pa}");
    assert!(!pa.contains("alice") && !pb.contains("builds/42"), "{pa}");
}

/// A local source that declares no repository URL is named by a `file:` URI of the local
/// repository: the one case where the user gave a path and nothing else names the source.
#[test]
fn provenance_of_undeclared_local_source_uses_file_uri() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), "[workspace]\nmembers = []\n");
    let a = clone(&up, &dir.path().join("here"));
    let p = statement_json(&a);
    let expected = format!("file://{}", a.canonicalize().unwrap().display());
    assert!(p.contains(&format!("\"git+{expected}@HEAD\"")), "{p}");
    assert!(
        p.contains(&format!("\"repository\": \"{expected}\"")),
        "{p}"
    );
}
