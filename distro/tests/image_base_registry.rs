//! `[image] base` naming another image (issue 11, item 3): a registry image pinned by digest,
//! served by Debian's `docker-registry` started here on 127.0.0.1, with a CycloneDX SBOM
//! attached to it as a cosign-style attestation; and an OCI layout whose SBOM distro.toml names
//! (`base_sbom`). The images built on them keep the base's layers first, their hardening
//! manifests name the base by digest, and their SBOMs merge the base's SBOM, still valid
//! CycloneDX 1.6 and still accounting for every file of every layer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod image_support;

use std::path::{Path, PathBuf};

use distro_images::store::{Layout, Store};
use image_support::*;
use serde_json::Value;

/// A small distribution with one component and one line, and `image` appended as its
/// `[image]` table (not the built-in distro.toml, so these tests do not depend on its lines).
fn config(dir: &Path, image: &str) -> PathBuf {
    let path = dir.join("distro.toml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        &path,
        format!(
            "[distribution]\nname = \"fips-mesh\"\nvendor = \"fips-mesh maintainers\"\n\n[[component]]\nname = \"mesh-proxy\"\npackage = \"mesh-proxy\"\ndescription = \"the sidecar\"\n\n[[line]]\nversion = \"0.1\"\nrelease_date = 2026-11-28\nlatest = \"0.1.0\"\nsource = {{ git = \".\", ref = \"HEAD\" }}\n\n[image]\n{image}\n"
        ),
    )
    .unwrap();
    path
}

fn manifest_of(layout: &Path) -> (String, Value) {
    let mut st = Layout::open_dir(layout, false).unwrap();
    let m = st.manifest("0.1.0").unwrap().unwrap();
    (m.digest, serde_json::from_slice(&m.bytes).unwrap())
}

/// The base image component of an image SBOM (the one `container` among its components).
fn base_component(sbom: &Value) -> &Value {
    let bases: Vec<&Value> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "container")
        .collect();
    assert_eq!(bases.len(), 1, "one base image component: {bases:#?}");
    bases[0]
}

fn property<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c["properties"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["value"].as_str())
}

/// The image's layers begin with exactly the base's layers (same descriptors), then one more.
fn assert_layers_start_with(image: &Value, base: &Value) {
    let (il, bl) = (
        image["layers"].as_array().unwrap(),
        base["layers"].as_array().unwrap(),
    );
    assert_eq!(il.len(), bl.len() + 1, "base layers + the component's");
    assert_eq!(
        &il[..bl.len()],
        &bl[..],
        "the base's layers come first, unchanged"
    );
}

/// A registry base pinned by digest: the fixture's mesh-control image (on the Debian base) is
/// pushed to a local registry and its SBOM attached as a CycloneDX attestation (`distro
/// attest`, cosign's `.att` scheme); `distro image` on `127.0.0.1:PORT/org/base@sha256:...`
/// keeps that image's layers first, the hardening manifest names the base and its digest in
/// BASE_IMAGE, BASE_TAG and a `docker://...@sha256:` resource, and the image SBOM merges the
/// attested SBOM (its Debian packages, refs prefixed `base:`) under the base, valid and
/// accounting for every file. The same base by tag is refused at its line of distro.toml.
#[test]
fn registry_base_pinned_by_digest_merges_its_attested_sbom() {
    let test = "registry_base_pinned_by_digest_merges_its_attested_sbom";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let base = Fixture::write(&t.path().join("base"), &["mesh-control"], 4096);
    base.assemble();
    let base_layout = base.layout("mesh-control");
    let (base_digest, base_manifest) = manifest_of(&base_layout);
    let repo = format!("{}/org/base", reg.addr);
    let pushed: Value = serde_json::from_str(&ok(&[
        "push",
        &base.image_ref("mesh-control"),
        &format!("{repo}:0.1.0"),
        "--plain-http",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(pushed["digest"], base_digest.as_str(), "{pushed:#}");
    // The base's SBOM, attached the way this code base attaches its own images' SBOMs.
    let base_sbom_path = base_layout.parent().unwrap().join("sbom.cdx.json");
    let base_sbom: Value =
        serde_json::from_slice(&std::fs::read(&base_sbom_path).unwrap()).unwrap();
    let key = t.path().join("base.key");
    ok(&[
        "keygen",
        "--private",
        key.to_str().unwrap(),
        "--public",
        t.path().join("base.pub").to_str().unwrap(),
    ]);
    let pinned = format!("{repo}@{base_digest}");
    ok(&[
        "attest",
        &pinned,
        "--key",
        key.to_str().unwrap(),
        "--sbom",
        base_sbom_path.to_str().unwrap(),
        "--plain-http",
    ]);

    let app = Fixture::write(&t.path().join("app"), &["mesh-proxy"], 4096);
    let cfg = config(t.path(), &format!("base = \"{pinned}\""));
    let image_args = |cfg: &Path| {
        vec![
            "--config".to_string(),
            cfg.display().to_string(),
            "image".into(),
            "--out".into(),
            app.out.display().to_string(),
            "--line".into(),
            "0.1".into(),
            "--plain-http".into(),
            "--format".into(),
            "json".into(),
        ]
    };
    let args = image_args(&cfg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&args);
    let layout = app.layout("mesh-proxy");
    let (_, manifest) = manifest_of(&layout);
    assert_layers_start_with(&manifest, &base_manifest);

    let hm = std::fs::read_to_string(
        app.line_dir
            .join("images/mesh-proxy/hardening_manifest.yaml"),
    )
    .unwrap();
    assert!(hm.contains(&format!("BASE_IMAGE: '{repo}'")), "{hm}");
    assert!(hm.contains(&format!("BASE_TAG: '{base_digest}'")), "{hm}");
    assert!(
        hm.contains(&format!("url: 'docker://{repo}@{base_digest}'")),
        "{hm}"
    );
    assert!(
        hm.contains(&format!(
            "value: '{}'",
            base_digest.strip_prefix("sha256:").unwrap()
        )),
        "{hm}"
    );
    assert!(
        !hm.contains("scratch") && !hm.contains("debian-12-debs"),
        "{hm}"
    );

    let sbom = assert_sbom_covers_every_file(&layout, "0.1.0", test);
    let b = base_component(&sbom);
    assert_eq!(b["name"], pinned.as_str());
    assert_eq!(b["version"], base_digest.as_str());
    let merged_from = property(b, "distro:image:base-sbom").unwrap_or_default();
    assert!(
        merged_from.contains(&format!(
            "sha256-{}.att",
            base_digest.strip_prefix("sha256:").unwrap()
        )),
        "the merged SBOM is the attested one: {merged_from}"
    );
    // Every package of the attested SBOM is named under the base, its refs kept apart.
    let nested = b["components"].as_array().unwrap();
    let packages: Vec<&Value> = base_sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with("pkg:deb/"))
        })
        .collect();
    assert!(packages.len() >= 3, "{packages:#?}");
    for p in packages {
        assert!(
            nested.iter().any(|c| c["purl"] == p["purl"]
                && c["bom-ref"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("base:"))),
            "{} is not merged under the base",
            p["purl"]
        );
    }
    // The component's own packages are not claimed: the image SBOM has no top-level Debian
    // package (the base's are only under the base).
    assert!(!sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["purl"]
            .as_str()
            .is_some_and(|p| p.starts_with("pkg:deb/"))));

    // A tag can move: the same base by tag is refused, naming the key and its line.
    let by_tag = config(&t.path().join("tag"), &format!("base = \"{repo}:0.1.0\""));
    let args = image_args(&by_tag);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = fails(&args);
    assert!(err.contains("image.base"), "{err}");
    assert!(err.contains("pinned by digest"), "{err}");
    assert!(
        err.contains(&format!("{}:17:", by_tag.display())),
        "names the line of distro.toml: {err}"
    );
}

/// An OCI layout base without an SBOM beside it takes the one `base_sbom` names; an attestation
/// about another image is refused rather than merged; with neither, the base's files are still
/// each accounted for from its layers.
#[test]
fn layout_base_merges_the_sbom_distro_toml_names() {
    let test = "layout_base_merges_the_sbom_distro_toml_names";
    let t = tempfile::tempdir().unwrap();
    let base = Fixture::write(&t.path().join("base"), &["mesh-control"], 4096);
    base.assemble();
    // The layout alone, away from the SBOM `distro image` wrote beside it.
    let lone = t.path().join("lone/oci");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(base.layout("mesh-control"))
        .arg(&lone)
        .status()
        .unwrap();
    assert!(st.success());
    let (base_digest, base_manifest) = manifest_of(&lone);
    let named = t.path().join("org-base.cdx.json");
    std::fs::copy(
        base.layout("mesh-control")
            .parent()
            .unwrap()
            .join("sbom.cdx.json"),
        &named,
    )
    .unwrap();

    let build = |image: &str, sub: &str| -> (Fixture, PathBuf) {
        let app = Fixture::write(&t.path().join(sub), &["mesh-proxy"], 4096);
        let cfg = config(&t.path().join(sub), image);
        let out = run(distro().args([
            "--config",
            cfg.to_str().unwrap(),
            "image",
            "--out",
            app.out.to_str().unwrap(),
            "--line",
            "0.1",
        ]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let layout = app.layout("mesh-proxy");
        (app, layout)
    };

    let (_, layout) = build(
        &format!(
            "base = \"oci:{}:0.1.0\"\nbase_sbom = \"{}\"",
            lone.display(),
            named.display()
        ),
        "named",
    );
    assert_layers_start_with(&manifest_of(&layout).1, &base_manifest);
    let sbom = assert_sbom_covers_every_file(&layout, "0.1.0", test);
    let b = base_component(&sbom);
    assert_eq!(b["version"], base_digest.as_str());
    assert_eq!(
        property(b, "distro:image:base-sbom"),
        Some(named.to_str().unwrap())
    );
    assert!(b["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "libc6"
            && c["bom-ref"]
                .as_str()
                .is_some_and(|r| r.starts_with("base:"))));

    // An SBOM attested about another image is refused, not merged, and the error says how to
    // name the right one. (The envelope is written by hand: whatever its signature, its subject
    // is what decides.)
    let forged = t.path().join("forged/oci");
    std::fs::create_dir_all(forged.parent().unwrap()).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&lone)
        .arg(&forged)
        .status()
        .unwrap();
    assert!(st.success());
    {
        use distro_images::oci::{Descriptor, Manifest, MEDIA_CONFIG, MEDIA_DSSE, MEDIA_MANIFEST};
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "elsewhere/other", "digest": {"sha256": "0".repeat(64)}}],
            "predicateType": "https://cyclonedx.org/bom",
            "predicate": serde_json::from_slice::<Value>(&std::fs::read(&named).unwrap()).unwrap(),
        });
        let envelope = serde_json::to_vec(&serde_json::json!({
            "payloadType": "application/vnd.in-toto+json",
            "payload": b64::encode(serde_json::to_vec(&statement).unwrap()),
            "signatures": [{"keyid": "", "sig": "AAAA"}],
        }))
        .unwrap();
        let mut store = Layout::open_dir(&forged, false).unwrap();
        let mut layer = Descriptor::of(MEDIA_DSSE, &envelope);
        layer
            .annotations
            .insert("predicateType".into(), "https://cyclonedx.org/bom".into());
        store.put_blob(&layer.digest, &envelope).unwrap();
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
        let cd = Descriptor::of(MEDIA_CONFIG, config);
        store.put_blob(&cd.digest, config).unwrap();
        let tag = format!(
            "sha256-{}.att",
            base_digest.strip_prefix("sha256:").unwrap()
        );
        store
            .put_manifest(
                Some(&tag),
                &Manifest::new(cd, vec![layer]).to_bytes(),
                MEDIA_MANIFEST,
            )
            .unwrap();
    }
    let app = Fixture::write(&t.path().join("forged-app"), &["mesh-proxy"], 4096);
    let cfg = config(
        &t.path().join("forged-app"),
        &format!("base = \"oci:{}:0.1.0\"", forged.display()),
    );
    let err = fails(&[
        "--config",
        cfg.to_str().unwrap(),
        "image",
        "--out",
        app.out.to_str().unwrap(),
        "--line",
        "0.1",
    ]);
    assert!(
        err.contains("its subject is not the base") && err.contains("base_sbom"),
        "{err}"
    );

    // No SBOM anywhere: nothing is merged, yet every file of the base is listed with its hash.
    let (_, layout) = build(&format!("base = \"oci:{}:0.1.0\"", lone.display()), "none");
    let sbom = assert_sbom_covers_every_file(&layout, "0.1.0", test);
    let b = base_component(&sbom);
    assert_eq!(property(b, "distro:image:base-sbom"), None);
    assert!(!b["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "libc6"));
}
