//! The SBOM stage takes the features from the build record; the standalone `distro sbom` of a
//! record that does not name them (written by an older `distro build`) needs the definition,
//! and an unreadable one is an error naming the file, never an SBOM of the default-feature
//! graph (issue 14 item 1 / issue 15 item 7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod image_support;

use image_support::{distro, run, Fixture};

fn sbom_with_config(config: &std::path::Path, fx: &Fixture) -> (bool, String) {
    let out = run(distro().args([
        "--config",
        config.to_str().unwrap(),
        "sbom",
        "--out",
        fx.out.to_str().unwrap(),
        "--line",
        "0.1",
    ]));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Regression: an unreadable distro.toml used to mean default features in the SBOM stage. Now a
/// missing one and a malformed one both fail, naming the definition and the build record, and
/// no SBOM is written.
#[test]
fn sbom_of_a_record_without_features_and_an_unreadable_config_errors_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 1024);

    let missing = t.path().join("missing").join("distro.toml");
    let (ok, err) = sbom_with_config(&missing, &fx);
    assert!(!ok, "must fail: {err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("build.json"), "{err}");
    assert!(err.contains("features"), "{err}");

    let bad = t.path().join("distro.toml");
    std::fs::write(&bad, "[distribution\nname = \n").unwrap();
    let (ok, err) = sbom_with_config(&bad, &fx);
    assert!(!ok, "must fail: {err}");
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("features"), "{err}");

    assert!(
        !fx.line_dir
            .join("sbom")
            .join("mesh-proxy.cdx.json")
            .exists()
            || std::fs::read_to_string(fx.line_dir.join("sbom").join("mesh-proxy.cdx.json"))
                .unwrap()
                .contains("\"rustls\""),
        "the fixture's own SBOM is untouched"
    );
}

/// A record that names its features is documented without the definition: the config is never
/// read (here it does not exist), and what fails instead is the missing source tree of the
/// fixture, named.
#[test]
fn sbom_of_a_record_with_features_does_not_read_the_config() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 1024);
    let record = fx.line_dir.join("build.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    v["components"][0]["features"] = serde_json::json!(["fips"]);
    std::fs::write(&record, serde_json::to_vec(&v).unwrap()).unwrap();
    let missing = t.path().join("missing").join("distro.toml");
    let (ok, err) = sbom_with_config(&missing, &fx);
    assert!(!ok, "the fixture has no source tree: {err}");
    assert!(!err.contains(&missing.display().to_string()), "{err}");
    assert!(
        err.contains("features [fips]") || err.contains("src"),
        "{err}"
    );
}
