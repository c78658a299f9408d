//! End-to-end tests of the image subcommands offline: `distro image`, `keygen`, `sign`,
//! `attest` and `verify` on OCI layouts and archives, checked by independent tools (skopeo,
//! umoci, openssl, Python's securesystemslib and PyYAML) and against tampered variants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod image_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use distro_images::oci::Manifest;
use distro_images::store::{Layout, Store};
use image_support::*;
use serde_json::{json, Value};

const ID: &str = "registry.example.invalid/fips-mesh/mesh-proxy";

fn cp(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn digest_of(layout: &Path) -> String {
    let mut l = Layout::open_dir(layout, false).unwrap();
    l.manifest("0.1.0").unwrap().unwrap().digest
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

/// Builds, signs and attests the fixture's mesh-proxy image; returns (fixture, key, pub).
fn signed_and_attested(root: &Path) -> (Fixture, PathBuf, PathBuf) {
    let fx = Fixture::write(root, &["mesh-proxy"], 64 * 1024);
    fx.assemble();
    let (k, p) = keygen_named(root, "release");
    let img = fx.image_ref("mesh-proxy");
    ok(&["sign", &img, "--key", k.to_str().unwrap(), "--identity", ID]);
    fx.attest(&img, k.to_str().unwrap(), "mesh-proxy", &["--identity", ID]);
    (fx, k, p)
}

fn verify_text(image: &str, key: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["verify", image, "--key", key.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(distro().args(&args));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every subcommand's `--help` renders (clap's argument checks run on it).
#[test]
fn image_subcommands_have_help() {
    for c in [
        "image", "keygen", "push", "pull", "sign", "attest", "verify",
    ] {
        let out = ok(&[c, "--help"]);
        assert!(out.contains("Usage: distro"), "{c} --help:\n{out}");
    }
}

/// The same build gives the same image digest twice (same layers, the base layer shared by
/// both components), a second run over an existing output changes nothing, a different
/// SOURCE_DATE_EPOCH changes the digest, and the gzip headers carry no timestamp.
#[test]
fn image_is_deterministic() {
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let a = Fixture::write(t1.path(), &["mesh-proxy", "mesh-control"], 256 * 1024);
    let b = Fixture::write(t2.path(), &["mesh-proxy", "mesh-control"], 256 * 1024);
    let ja: Value = serde_json::from_str(&a.assemble()).unwrap();
    let jb: Value = serde_json::from_str(&b.assemble()).unwrap();
    for i in 0..2 {
        assert_eq!(
            ja[i]["manifest_digest"], jb[i]["manifest_digest"],
            "same inputs, same digest"
        );
        assert_eq!(ja[i]["layers"], jb[i]["layers"]);
    }
    assert_eq!(ja[0]["layers"][0], ja[1]["layers"][0]);
    let again: Value = serde_json::from_str(&a.assemble()).unwrap();
    assert_eq!(again[0]["manifest_digest"], ja[0]["manifest_digest"]);
    let out = run(distro()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "image",
            "--out",
            b.out.to_str().unwrap(),
            "--line",
            "0.1",
            "--format",
            "json",
            "--base-cache",
        ])
        .arg(deb_cache()));
    assert!(out.status.success());
    let jc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(jc[0]["manifest_digest"], ja[0]["manifest_digest"]);
    // gzip headers carry no timestamp or file name (bytes 4..8 are MTIME, flag byte 3 has no
    // FNAME).
    let layer0 = ja[0]["layers"][0].as_str().unwrap();
    let gz = std::fs::read(
        a.layout("mesh-proxy")
            .join("blobs/sha256")
            .join(hex(layer0)),
    )
    .unwrap();
    assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
}

/// skopeo reads the layout with the digest `distro image` reports, the OCI labels (title,
/// revision, created from SOURCE_DATE_EPOCH, ...) and a config running the entrypoint as
/// 65532:65532, and copies it to another layout keeping the digest.
#[test]
fn skopeo_reads_the_image_labels_and_config() {
    let test = "skopeo_reads_the_image_labels_and_config";
    if !have("skopeo", test) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let a = Fixture::write(t.path(), &["mesh-proxy"], 256 * 1024);
    let ja: Value = serde_json::from_str(&a.assemble()).unwrap();
    let layout = a.layout("mesh-proxy");
    let inspect = skopeo_json(&["inspect", &format!("oci:{}:0.1.0", layout.display())]);
    assert_eq!(inspect["Digest"], ja[0]["manifest_digest"]);
    let labels = &inspect["Labels"];
    for k in [
        "title",
        "description",
        "licenses",
        "vendor",
        "version",
        "revision",
        "source",
        "created",
    ] {
        assert!(
            labels[format!("org.opencontainers.image.{k}")].is_string(),
            "label {k} missing: {labels}"
        );
    }
    assert_eq!(
        labels["org.opencontainers.image.created"],
        "2025-11-28T00:00:00Z"
    );
    assert_eq!(labels["org.opencontainers.image.title"], "mesh-proxy");
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    let config = skopeo_json(&[
        "inspect",
        "--config",
        &format!("oci:{}:0.1.0", layout.display()),
    ]);
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/usr/local/bin/mesh-proxy"])
    );
    assert_eq!(config["created"], "2025-11-28T00:00:00Z");
    let copy = t.path().join("copy");
    skopeo(&[
        "copy",
        &format!("oci:{}:0.1.0", layout.display()),
        &format!("oci:{}:x", copy.display()),
    ]);
    assert_eq!(
        digest_of_tag(&copy, "x"),
        ja[0]["manifest_digest"].as_str().unwrap()
    );
}

/// umoci unpacks the image to the built binary (mode 0755), the non-root user and group
/// 65532, the CA bundle and a sticky /tmp, with no shell, no apt and no /bin; its runtime
/// config runs the entrypoint as 65532.
#[test]
fn umoci_unpacks_a_minimal_non_root_root_filesystem() {
    let test = "umoci_unpacks_a_minimal_non_root_root_filesystem";
    if !have("umoci", test) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let a = Fixture::write(t.path(), &["mesh-proxy"], 256 * 1024);
    a.assemble();
    let layout = a.layout("mesh-proxy");
    let bundle = t.path().join("bundle");
    umoci_unpack(&format!("{}:0.1.0", layout.display()), &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("usr/local/bin/mesh-proxy")).unwrap(),
        std::fs::read(a.line_dir.join("bin/mesh-proxy")).unwrap()
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    assert!(std::fs::read_to_string(rootfs.join("etc/group"))
        .unwrap()
        .contains("nonroot:x:65532:"));
    assert!(
        std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt"))
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let mode = |p: &str| {
        std::fs::metadata(rootfs.join(p))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode("tmp") & 0o7777, 0o1777);
    assert_eq!(mode("usr/local/bin/mesh-proxy") & 0o777, 0o755);
    for absent in ["bin/sh", "usr/bin/apt", "bin"] {
        assert!(
            !rootfs.join(absent).exists(),
            "{absent} must not be in the image"
        );
    }
    let runtime: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(runtime["process"]["user"]["uid"], 65532);
    assert_eq!(
        runtime["process"]["args"],
        json!(["/usr/local/bin/mesh-proxy"])
    );
}

fn digest_of_tag(layout: &Path, tag: &str) -> String {
    let mut l = Layout::open_dir(layout, false).unwrap();
    l.manifest(tag).unwrap().unwrap().digest
}

/// The hardening manifest parses as YAML (PyYAML) and has the Iron Bank fields: apiVersion v1,
/// the version as first tag, BASE_IMAGE/BASE_TAG, the required labels, resources whose sha256
/// values are the real files' and maintainers.
#[test]
fn hardening_manifest_has_iron_bank_fields() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 4096);
    fx.assemble();
    let path = fx
        .line_dir
        .join("images/mesh-proxy/hardening_manifest.yaml");
    if !have_python("yaml", "hardening_manifest_has_iron_bank_fields") {
        return;
    }
    let out = run(Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hm["apiVersion"], "v1");
    assert_eq!(hm["name"], "fips-mesh/mesh-proxy");
    assert_eq!(hm["tags"][0], "0.1.0");
    assert_ne!(hm["tags"][0], "latest");
    assert!(hm["args"]["BASE_IMAGE"].is_string() && hm["args"]["BASE_TAG"].is_string());
    for l in distro_images::hardening::REQUIRED_LABELS {
        assert!(
            hm["labels"][*l].as_str().is_some_and(|v| !v.is_empty()),
            "label {l}"
        );
    }
    let res = hm["resources"].as_array().unwrap();
    let bin = res.iter().find(|r| r["filename"] == "mesh-proxy").unwrap();
    assert_eq!(bin["validation"]["type"], "sha256");
    assert_eq!(
        bin["validation"]["value"].as_str().unwrap(),
        sha256_file(&fx.line_dir.join("bin/mesh-proxy"))
    );
    // The base tells the truth: not scratch, every .deb the image is made of, at its apt URL,
    // with the sha256 of the file apt downloaded.
    assert_eq!(hm["args"]["BASE_IMAGE"], "debian-12-debs");
    assert!(hm["args"]["BASE_TAG"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    for pkg in ["libc6", "libgcc-s1", "ca-certificates"] {
        let r = res
            .iter()
            .find(|r| {
                r["filename"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{pkg}_"))
            })
            .unwrap_or_else(|| panic!("no resource for {pkg}: {res:?}"));
        let file = r["filename"].as_str().unwrap();
        assert!(file.ends_with(".deb"), "{file}");
        let url = r["url"].as_str().unwrap();
        assert!(
            url.starts_with("http") && !url.contains("example.invalid"),
            "{url}"
        );
        assert_eq!(
            r["validation"]["value"].as_str().unwrap(),
            sha256_file(&deb_cache().join(file)),
            "{file}"
        );
        assert!(hm["args"]["BASE_PACKAGES"]
            .as_str()
            .unwrap()
            .contains(&format!("{pkg}=")));
    }
    assert!(hm["maintainers"][0]["email"]
        .as_str()
        .unwrap()
        .contains('@'));
}

/// The key pair is PKCS#8 (mode 0600) and SPKI PEM that openssl reads as P-256; an existing key
/// is not overwritten without --force.
#[test]
fn keygen_writes_private_0600_and_public_openssl_reads() {
    let t = tempfile::tempdir().unwrap();
    let (k, p) = keygen_named(t.path(), "k");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_text = std::fs::read_to_string(&k).unwrap();
    assert!(key_text.starts_with("-----BEGIN PRIVATE KEY-----"));
    let stdout = ok(&[
        "keygen",
        "--private",
        t.path().join("x.key").to_str().unwrap(),
        "--public",
        t.path().join("x.pub").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        !stdout.contains("PRIVATE"),
        "the private key is never printed"
    );
    let again = fails(&[
        "keygen",
        "--private",
        k.to_str().unwrap(),
        "--public",
        p.to_str().unwrap(),
    ]);
    assert!(again.contains("--force"), "{again}");
    if have(
        "openssl",
        "keygen_writes_private_0600_and_public_openssl_reads",
    ) {
        let out = run(Command::new("openssl")
            .args(["pkey", "-noout", "-text", "-in"])
            .arg(&k));
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("prime256v1"));
        let out = run(Command::new("openssl")
            .args(["pkey", "-pubin", "-noout", "-text", "-in"])
            .arg(&p));
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("prime256v1"));
    }
}

/// A signed and attested layout passes all ten checks, in the text report and in the JSON one.
#[test]
fn signed_attested_layout_passes_every_check_in_text_and_json() {
    let t = tempfile::tempdir().unwrap();
    let (fx, _, p) = signed_and_attested(t.path());
    let img = fx.image_ref("mesh-proxy");
    let (passed, text) = verify_text(&img, &p, &[]);
    assert!(passed, "{text}");
    for line in [
        "ok   image:",
        "ok   signature:",
        "ok   attestation https://cyclonedx.org/bom",
        "ok   attestation https://slsa.dev/provenance/v1",
        "ok   attestation https://openvex.dev/ns/v0.2.0",
        "ok   attestation https://fips-mesh.invalid/fips-evidence/v1",
        "ok   policy fips:",
        "ok   policy sbom:",
        "ok   policy provenance:",
        "ok   policy vex:",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    // JSON report on stdout.
    let out = run(distro().args([
        "verify",
        &img,
        "--key",
        p.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 10);
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
}

/// The signature is a cosign simple-signing payload naming the identity and the manifest
/// digest, and openssl (an independent verifier) verifies the signature over it.
#[test]
fn signature_payload_is_simple_signing_and_openssl_verifies_it() {
    let t = tempfile::tempdir().unwrap();
    let (fx, _, p) = signed_and_attested(t.path());
    let layout = fx.layout("mesh-proxy");
    let digest = digest_of(&layout);
    let mut store = Layout::open_dir(&layout, false).unwrap();
    let sig_m = store
        .manifest(&format!("sha256-{}.sig", hex(&digest)))
        .unwrap()
        .unwrap();
    let sig_manifest = Manifest::parse("sig", &sig_m.bytes).unwrap();
    assert_eq!(sig_manifest.layers.len(), 1);
    let layer = &sig_manifest.layers[0];
    assert_eq!(
        layer.media_type,
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = store.blob(&layer.digest).unwrap();
    let pv: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(pv["critical"]["identity"]["docker-reference"], ID);
    assert_eq!(
        pv["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(pv["critical"]["type"], "cosign container image signature");
    if have(
        "openssl",
        "signature_payload_is_simple_signing_and_openssl_verifies_it",
    ) {
        let sig = b64::decode(&layer.annotations["dev.cosignproject.cosign/signature"]).unwrap();
        std::fs::write(t.path().join("payload"), &payload).unwrap();
        std::fs::write(t.path().join("sig.der"), &sig).unwrap();
        let out = run(Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&p)
            .arg("-signature")
            .arg(t.path().join("sig.der"))
            .arg(t.path().join("payload")));
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
            "openssl: {:?}",
            out
        );
    }
}

/// Each of the four attestations is a DSSE envelope of an in-toto statement about this image
/// that securesystemslib (an independent verifier) verifies with the release key.
#[test]
fn every_dsse_envelope_verifies_with_securesystemslib() {
    let t = tempfile::tempdir().unwrap();
    let (fx, _, p) = signed_and_attested(t.path());
    let layout = fx.layout("mesh-proxy");
    let digest = digest_of(&layout);
    let mut store = Layout::open_dir(&layout, false).unwrap();
    let att_m = store
        .manifest(&format!("sha256-{}.att", hex(&digest)))
        .unwrap()
        .unwrap();
    let att = Manifest::parse("att", &att_m.bytes).unwrap();
    assert_eq!(att.layers.len(), 4);
    let mut envelopes = Vec::new();
    for (i, l) in att.layers.iter().enumerate() {
        assert_eq!(l.media_type, "application/vnd.dsse.envelope.v1+json");
        assert!(l.annotations.contains_key("predicateType"));
        let path = t.path().join(format!("env{i}.json"));
        std::fs::write(&path, store.blob(&l.digest).unwrap()).unwrap();
        envelopes.push(path);
    }
    if have_python(
        "securesystemslib",
        "every_dsse_envelope_verifies_with_securesystemslib",
    ) {
        let keyid = {
            let pem = std::fs::read(&p).unwrap();
            distro_images::keys::VerifyingKey::from_pem("pub", &pem)
                .unwrap()
                .keyid()
        };
        let script = r#"
import json, sys, base64
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
pem = open(sys.argv[1]).read()
key = SSlibKey(sys.argv[2], "ecdsa", "ecdsa-sha2-nistp256", {"public": pem})
for path in sys.argv[3:]:
    env = Envelope.from_dict(json.load(open(path)))
    assert env.payload_type == "application/vnd.in-toto+json", env.payload_type
    env.verify([key], 1)
    st = json.loads(env.payload)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    print(st["predicateType"], st["subject"][0]["digest"]["sha256"])
"#;
        let out = run(Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&p)
            .arg(&keyid)
            .args(&envelopes));
        assert!(
            out.status.success(),
            "securesystemslib: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().all(|l| l.ends_with(hex(&digest))), "{text}");
    }
}

/// Signing again with the same key adds nothing, a second key's signature is appended (the
/// first key still verifies), and attestations attached again are not duplicated.
#[test]
fn signing_again_is_idempotent_and_a_second_key_is_appended() {
    let t = tempfile::tempdir().unwrap();
    let (fx, k, p) = signed_and_attested(t.path());
    let img = fx.image_ref("mesh-proxy");
    let layout = fx.layout("mesh-proxy");
    let digest = digest_of(&layout);
    let again = ok(&["sign", &img, "--key", k.to_str().unwrap(), "--identity", ID]);
    assert!(again.contains("already signed"), "{again}");
    let (k2, p2) = keygen_named(t.path(), "second");
    ok(&[
        "sign",
        &img,
        "--key",
        k2.to_str().unwrap(),
        "--identity",
        ID,
    ]);
    let mut store = Layout::open_dir(&layout, false).unwrap();
    let sig_m = store
        .manifest(&format!("sha256-{}.sig", hex(&digest)))
        .unwrap()
        .unwrap();
    assert_eq!(
        Manifest::parse("sig", &sig_m.bytes).unwrap().layers.len(),
        2,
        "second signature appended"
    );
    let (passed, text) = verify_text(&img, &p, &[]);
    assert!(passed, "the first key still verifies: {text}");
    // Attestations re-attached unchanged are not duplicated.
    fx.attest(&img, k.to_str().unwrap(), "mesh-proxy", &["--identity", ID]);
    let att_m = store
        .manifest(&format!("sha256-{}.att", hex(&digest)))
        .unwrap()
        .unwrap();
    assert_eq!(
        Manifest::parse("att", &att_m.bytes).unwrap().layers.len(),
        4
    );
    // Signatures by the second key verify with its key only for the signature check.
    let (_, text2) = verify_text(&img, &p2, &[]);
    assert!(text2.contains("ok   signature:"), "{text2}");
    assert!(
        text2.contains("FAIL attestation"),
        "attestations were signed by the first key: {text2}"
    );
}

/// With `--identity`, a signature naming another identity is refused, saying both.
#[test]
fn a_signature_for_another_identity_is_refused_when_asked() {
    let t = tempfile::tempdir().unwrap();
    let (fx, _, p) = signed_and_attested(t.path());
    let img = fx.image_ref("mesh-proxy");
    let (passed, text) = verify_text(&img, &p, &["--identity", "registry.example.invalid/other"]);
    assert!(!passed);
    assert!(text.contains("payload identity is `registry.example.invalid/fips-mesh/mesh-proxy`, expected `registry.example.invalid/other`"), "{text}");
}

/// The layout written as an OCI archive (carried into an air-gapped site) verifies offline,
/// and skopeo reads the same digest from it.
#[test]
fn the_archive_form_verifies_offline_and_skopeo_reads_it() {
    let t = tempfile::tempdir().unwrap();
    let (fx, _, p) = signed_and_attested(t.path());
    let layout = fx.layout("mesh-proxy");
    let digest = digest_of(&layout);
    let archive = t.path().join("mesh-proxy.oci.tar");
    Layout::open_dir(&layout, false)
        .unwrap()
        .write_archive(&archive)
        .unwrap();
    let (passed, text) = verify_text(&format!("oci-archive:{}:0.1.0", archive.display()), &p, &[]);
    assert!(passed, "{text}");
    if have(
        "skopeo",
        "the_archive_form_verifies_offline_and_skopeo_reads_it",
    ) {
        // skopeo reads the archive.
        let inspect = skopeo_json(&[
            "inspect",
            &format!("oci-archive:{}:0.1.0", archive.display()),
        ]);
        assert_eq!(inspect["Digest"], digest.as_str());
    }
}

/// Rewrites the manifest under `tag` in a layout with `edit` applied to its layers, storing any
/// replacement blobs, so the layout stays internally consistent (only signatures can catch it).
fn rewrite(layout: &Path, tag: &str, edit: impl FnOnce(&mut Layout, &mut Manifest)) {
    let mut store = Layout::open_dir(layout, false).unwrap();
    let m = store.manifest(tag).unwrap().unwrap();
    let mut manifest = Manifest::parse(tag, &m.bytes).unwrap();
    edit(&mut store, &mut manifest);
    store
        .put_manifest(Some(tag), &manifest.to_bytes(), &m.media_type)
        .unwrap();
}

fn put(store: &mut Layout, data: &[u8]) -> (String, u64) {
    let d = distro_images::digest::sha256(data);
    store.put_blob(&d, data).unwrap();
    (d, data.len() as u64)
}

/// Each tampered variant (manifest, layer, payload, signature, attestation, signed digest,
/// wrong key) makes `verify` fail, with the reason on the failing check's line.
#[test]
fn tampered_variants_fail_with_precise_reason() {
    let t = tempfile::tempdir().unwrap();
    let (fx, _k, p) = signed_and_attested(t.path());
    let good = fx.layout("mesh-proxy");
    let digest = digest_of(&good);
    let sig_tag = format!("sha256-{}.sig", hex(&digest));
    let att_tag = format!("sha256-{}.att", hex(&digest));
    let variant = |name: &str| {
        let dir = t.path().join(name);
        cp(&good, &dir);
        dir
    };
    let check = |dir: &Path, key: &Path, expect: &[&str]| {
        let (passed, text) = verify_text(&format!("oci:{}:0.1.0", dir.display()), key, &[]);
        assert!(!passed, "{} must fail:\n{text}", dir.display());
        for e in expect {
            assert!(
                text.lines().any(|l| l.starts_with("FAIL") && l.contains(e)),
                "{}: no FAIL line with `{e}` in:\n{text}",
                dir.display()
            );
        }
        text
    };

    // A changed manifest (an annotation added, re-tagged): nothing is signed for its digest.
    let dir = variant("manifest");
    rewrite(&dir, "0.1.0", |_, m| {
        m.annotations.insert("evil".into(), "1".into());
    });
    check(
        &dir,
        &p,
        &[
            "signature: no signature for sha256:",
            "attestations: no attestations for sha256:",
        ],
    );

    // A changed layer: its bytes no longer hash to the manifest's digest.
    let dir = variant("layer");
    let m = Manifest::parse(
        "m",
        &Layout::open_dir(&dir, false)
            .unwrap()
            .manifest("0.1.0")
            .unwrap()
            .unwrap()
            .bytes,
    )
    .unwrap();
    let blob = dir.join("blobs/sha256").join(hex(&m.layers[1].digest));
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    check(
        &dir,
        &p,
        &[
            &format!("image: blob {} in oci:", m.layers[1].digest),
            "but is referenced as",
        ],
    );

    // A changed payload (kept consistent in the layout): the signature no longer verifies.
    let dir = variant("payload");
    rewrite(&dir, &sig_tag, |s, m| {
        let old = s.blob(&m.layers[0].digest).unwrap();
        let changed = String::from_utf8(old)
            .unwrap()
            .replace(ID, "registry.example.invalid/evil/mesh-proxy");
        let (d, size) = put(s, changed.as_bytes());
        m.layers[0].digest = d;
        m.layers[0].size = size;
    });
    check(
        &dir,
        &p,
        &[
            "signature: signature 1",
            "ECDSA signature does not verify over the payload",
        ],
    );

    // A changed signature annotation.
    let dir = variant("signature");
    rewrite(&dir, &sig_tag, |_, m| {
        let sig =
            b64::decode(&m.layers[0].annotations["dev.cosignproject.cosign/signature"]).unwrap();
        let mut sig = sig.clone();
        let n = sig.len();
        sig[n - 3] ^= 0x01;
        m.layers[0].annotations.insert(
            "dev.cosignproject.cosign/signature".into(),
            b64::encode(sig),
        );
    });
    check(&dir, &p, &["ECDSA signature does not verify"]);

    // A correctly signed payload for another digest, placed under this image's tag.
    let dir = variant("other-digest");
    let key = distro_images::keys::SigningKey::load(&t.path().join("release.key"), None).unwrap();
    rewrite(&dir, &sig_tag, |s, m| {
        let other = format!("sha256:{}", "0".repeat(64));
        let payload = distro_images::cosign::simple_signing_payload(ID, &other);
        let (d, size) = put(s, &payload);
        m.layers[0].digest = d;
        m.layers[0].size = size;
        m.layers[0].annotations.insert(
            "dev.cosignproject.cosign/signature".into(),
            b64::encode(key.sign(&payload).unwrap()),
        );
    });
    check(
        &dir,
        &p,
        &[&format!(
            "payload signs digest sha256:{} but the image is {digest}",
            "0".repeat(64)
        )],
    );

    // A changed attestation: the VEX statement edited inside the envelope.
    let dir = variant("attestation");
    rewrite(&dir, &att_tag, |s, m| {
        let i = m
            .layers
            .iter()
            .position(|l| l.annotations["predicateType"] == "https://openvex.dev/ns/v0.2.0")
            .unwrap();
        let mut env: Value = serde_json::from_slice(&s.blob(&m.layers[i].digest).unwrap()).unwrap();
        let st = String::from_utf8(b64::decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
        env["payload"] = json!(b64::encode(st.replace("\"fixed\"", "\"not_affected\"")));
        let (d, size) = put(s, &serde_json::to_vec(&env).unwrap());
        m.layers[i].digest = d;
        m.layers[i].size = size;
    });
    let text = check(
        &dir,
        &p,
        &[
            "attestation https://openvex.dev/ns/v0.2.0: layer",
            "DSSE signature does not verify",
            "policy vex: no verified OpenVEX attestation",
        ],
    );
    assert!(
        text.contains("ok   attestation https://cyclonedx.org/bom"),
        "{text}"
    );

    // The wrong key: the signature and every attestation fail.
    let (_, wrong) = keygen_named(t.path(), "wrong");
    let text = check(
        &good,
        &wrong,
        &[
            "signature:",
            "attestation https://cyclonedx.org/bom",
            "policy fips: no verified FIPS evidence",
        ],
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("FAIL attestation"))
            .count(),
        4,
        "{text}"
    );
}

/// The policy: FIPS evidence with mode=false, an in-process module, evidence about another
/// binary, an advisory left affected or under investigation, or a missing SBOM each fail with
/// the reason; a policy file can relax requirements.
#[test]
fn policy_failures_name_the_reason() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 8 * 1024);
    fx.assemble();
    let (k, p) = keygen_named(t.path(), "release");
    let base = fx.layout("mesh-proxy");
    ok(&[
        "sign",
        &fx.image_ref("mesh-proxy"),
        "--key",
        k.to_str().unwrap(),
        "--identity",
        ID,
    ]);
    let sha = sha256_file(&fx.line_dir.join("bin/mesh-proxy"));
    let sbom_path = fx.line_dir.join("sbom/mesh-proxy.cdx.json");
    let other_binary = format!(
        "the evidence is about a binary with sha256 {}",
        "ab".repeat(32)
    );
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "mode-false",
            evidence("mesh-proxy", &sha, false, "validated"),
            vex("mesh-proxy", "fixed"),
            "policy fips: FIPS evidence says mode = false",
        ),
        (
            "in-process",
            evidence("mesh-proxy", &sha, true, "in-process"),
            vex("mesh-proxy", "fixed"),
            "is in-process, the policy requires a CMVP-validated module",
        ),
        (
            "other-binary",
            evidence("mesh-proxy", &"ab".repeat(32), true, "validated"),
            vex("mesh-proxy", "fixed"),
            &other_binary,
        ),
        (
            "affected",
            evidence("mesh-proxy", &sha, true, "validated"),
            vex("mesh-proxy", "affected"),
            "policy vex: advisories not fixed or not_affected: RUSTSEC-2024-0336 (affected)",
        ),
        (
            "investigating",
            evidence("mesh-proxy", &sha, true, "validated"),
            vex("mesh-proxy", "under_investigation"),
            "RUSTSEC-2024-0336 (under_investigation)",
        ),
    ];
    let ev_path = t.path().join("ev.json");
    let vex_path = t.path().join("vex.json");
    for (name, ev, vx, expect) in &cases {
        let dir = t.path().join(name);
        cp(&base, &dir);
        write_json(&ev_path, ev);
        write_json(&vex_path, vx);
        let img = format!("oci:{}:0.1.0", dir.display());
        ok(&[
            "attest",
            &img,
            "--key",
            k.to_str().unwrap(),
            "--identity",
            ID,
            "--evidence",
            ev_path.to_str().unwrap(),
            "--vex",
            vex_path.to_str().unwrap(),
            "--sbom",
            sbom_path.to_str().unwrap(),
            "--provenance",
            fx.line_dir
                .join("provenance/mesh-proxy.intoto.json")
                .to_str()
                .unwrap(),
        ]);
        let (passed, text) = verify_text(&img, &p, &[]);
        assert!(!passed, "{name}: {text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("FAIL") && l.contains(expect)),
            "{name}: no FAIL with `{expect}`:\n{text}"
        );
    }
    // not_affected closes an advisory.
    let dir = t.path().join("not-affected");
    cp(&base, &dir);
    write_json(&vex_path, &vex("mesh-proxy", "not_affected"));
    let img = format!("oci:{}:0.1.0", dir.display());
    fx.attest(
        &img,
        k.to_str().unwrap(),
        "mesh-proxy",
        &["--identity", ID, "--vex", vex_path.to_str().unwrap()],
    );
    let (passed, text) = verify_text(&img, &p, &[]);
    assert!(passed, "{text}");
    // No SBOM: fails by default, passes under a policy that does not require one.
    let dir = t.path().join("no-sbom");
    cp(&base, &dir);
    let img = format!("oci:{}:0.1.0", dir.display());
    ok(&[
        "attest",
        &img,
        "--key",
        k.to_str().unwrap(),
        "--identity",
        ID,
        "--evidence",
        fx.line_dir
            .join("evidence/mesh-proxy.fips.json")
            .to_str()
            .unwrap(),
        "--vex",
        vex_path.to_str().unwrap(),
        "--provenance",
        fx.line_dir
            .join("provenance/mesh-proxy.intoto.json")
            .to_str()
            .unwrap(),
    ]);
    let (passed, text) = verify_text(&img, &p, &[]);
    assert!(
        !passed && text.contains("FAIL policy sbom: no verified SBOM attestation"),
        "{text}"
    );
    let policy = t.path().join("policy.toml");
    std::fs::write(
        &policy,
        "require_sbom = false\nidentity = \"registry.example.invalid/fips-mesh/mesh-proxy\"\n",
    )
    .unwrap();
    let (passed, text) = verify_text(&img, &p, &["--policy", policy.to_str().unwrap()]);
    assert!(passed, "{text}");
    // A mistyped policy key is an error naming the file, not a silently weaker policy.
    std::fs::write(&policy, "require_sbomm = false\n").unwrap();
    let (passed, text) = verify_text(&img, &p, &["--policy", policy.to_str().unwrap()]);
    assert!(
        !passed && text.contains("policy.toml") && text.contains("require_sbomm"),
        "{text}"
    );
    // attest refuses a document of the wrong kind.
    let err = fails(&[
        "attest",
        &img,
        "--key",
        k.to_str().unwrap(),
        "--identity",
        ID,
        "--sbom",
        vex_path.to_str().unwrap(),
    ]);
    assert!(err.contains("is not a CycloneDX SBOM"), "{err}");
}

/// A cosign encrypted key (`ENCRYPTED SIGSTORE PRIVATE KEY` and the older `ENCRYPTED COSIGN
/// PRIVATE KEY`, made here by an independent Python implementation of the format: scrypt + NaCl
/// secretbox) signs with COSIGN_PASSWORD, and the signature verifies with its public key; a
/// wrong password is refused with a clear message.
#[test]
fn cosign_encrypted_key_signs() {
    if !have_python("nacl", "cosign_encrypted_key_signs")
        || !have_python("cryptography", "cosign_encrypted_key_signs")
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 4096);
    fx.assemble();
    let script = r#"
import base64, hashlib, json, os, sys, textwrap
import nacl.secret
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization
out, label, password = sys.argv[1], sys.argv[2], sys.argv[3].encode()
k = ec.generate_private_key(ec.SECP256R1())
der = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
salt, nonce = os.urandom(32), os.urandom(24)
key = hashlib.scrypt(password, salt=salt, n=32768, r=8, p=1, dklen=32, maxmem=128 * 1024 * 1024)
ct = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
b = lambda x: base64.b64encode(x).decode()
doc = json.dumps({"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b(salt)},
                  "cipher": {"name": "nacl/secretbox", "nonce": b(nonce)}, "ciphertext": b(ct)}).encode()
body = "\n".join(textwrap.wrap(base64.b64encode(doc).decode(), 64))
fd = os.open(out + ".key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode())
os.close(fd)
open(out + ".pub", "wb").write(k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
"#;
    for (i, label) in [
        "ENCRYPTED SIGSTORE PRIVATE KEY",
        "ENCRYPTED COSIGN PRIVATE KEY",
    ]
    .iter()
    .enumerate()
    {
        let base = t.path().join(format!("cosign{i}"));
        let out = run(Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&base)
            .arg(label)
            .arg("correct horse"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = base.with_extension("key");
        let pubk = base.with_extension("pub");
        let img = fx.image_ref("mesh-proxy");
        let out = run(distro().env("COSIGN_PASSWORD", "wrong").args([
            "sign",
            &img,
            "--identity",
            ID,
            "--key",
            key.to_str().unwrap(),
        ]));
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("wrong COSIGN_PASSWORD"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(distro().args([
            "sign",
            &img,
            "--identity",
            ID,
            "--key",
            key.to_str().unwrap(),
        ]));
        assert!(String::from_utf8_lossy(&out.stderr).contains("COSIGN_PASSWORD"));
        let out = run(distro().env("COSIGN_PASSWORD", "correct horse").args([
            "sign",
            &img,
            "--identity",
            ID,
            "--key",
            key.to_str().unwrap(),
        ]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let policy = t.path().join("sig-only.toml");
        std::fs::write(&policy, "require_fips = false\nrequire_sbom = false\nrequire_provenance = false\nrequire_vex = false\n").unwrap();
        let (_, text) = verify_text(&img, &pubk, &["--policy", policy.to_str().unwrap()]);
        assert!(text.contains("ok   signature:"), "{text}");
    }
}

/// Regression (issue 11): the image SBOM names every regular file of every layer (read from the
/// layer tars by Python's tarfile, cross-checked with `umoci unpack`): the Debian packages as
/// `pkg:deb/debian/...` components with licences and hashes holding their files, the CA bundle
/// under ca-certificates, passwd/group as generated files, the binary under its Rust graph; an
/// SBOM that leaves a package out fails the check.
#[test]
fn image_sbom_accounts_for_every_file_of_every_layer() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 4096);
    fx.assemble();
    let sbom = assert_sbom_covers_every_file(
        &fx.layout("mesh-proxy"),
        "0.1.0",
        "image_sbom_accounts_for_every_file_of_every_layer",
    );
    assert_eq!(sbom["metadata"]["component"]["type"], "container");
    let files = sbom_files(&sbom);
    let libc = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "libc6")
        .unwrap();
    let purl = libc["purl"].as_str().unwrap();
    assert!(
        purl.starts_with("pkg:deb/debian/libc6@") && purl.ends_with("?arch=amd64&distro=debian-12"),
        "{purl}"
    );
    assert!(libc["licenses"][0]["expression"]
        .as_str()
        .unwrap()
        .contains("LGPL-2.1"));
    assert_eq!(libc["hashes"][0]["alg"], "SHA-256");
    for (path, owner) in [
        ("/lib/x86_64-linux-gnu/libc.so.6", purl.to_string()),
        ("/usr/share/doc/libc6/copyright", purl.to_string()),
    ] {
        assert_eq!(files[path].1, owner, "{path}");
    }
    let ca = &files["/etc/ssl/certs/ca-certificates.crt"];
    assert!(
        ca.1.starts_with("pkg:deb/debian/ca-certificates@"),
        "{ca:?}"
    );
    assert_eq!(ca.2, "ca-bundle");
    assert_eq!(files["/etc/passwd"].2, "generated");
    assert_eq!(files["/etc/group"].2, "generated");
    let bin = &files["/usr/local/bin/mesh-proxy"];
    assert_eq!(bin.0, sha256_file(&fx.line_dir.join("bin/mesh-proxy")));
    assert_eq!(bin.2, "binary");
    // The binary's Rust graph is in the image SBOM.
    assert!(sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["purl"] == "pkg:cargo/rustls@0.23.43"));

    // Leave libc6 out: its files are reported as unaccounted.
    let mut partial = sbom.clone();
    partial["components"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["name"] != "libc6");
    let missing = unaccounted(&fx.layout("mesh-proxy"), "0.1.0", &partial);
    assert!(
        missing
            .iter()
            .any(|m| m.contains("/lib/x86_64-linux-gnu/libc.so.6")),
        "{missing:?}"
    );
}

/// `[image] base = "oci:..."` builds on another image: its layers come first, unchanged (same
/// blobs), its SBOM (found beside its layout) is merged under it, every file is still
/// accounted for, and the hardening manifest names that base by digest. A registry base
/// without a digest is refused at the line of distro.toml that names it.
#[test]
fn image_on_another_base_keeps_its_layers_and_merges_its_sbom() {
    let t = tempfile::tempdir().unwrap();
    // The base: the fixture's mesh-control image (built on the Debian base), with its SBOM.
    let base = Fixture::write(&t.path().join("base"), &["mesh-control"], 4096);
    base.assemble();
    let base_layout = base.layout("mesh-control");
    let base_manifest = digest_of(&base_layout);
    let builtin =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/distro.toml")).unwrap();
    let config = t.path().join("distro.toml");
    std::fs::write(
        &config,
        format!(
            "{builtin}\n[image]\nbase = \"oci:{}:0.1.0\"\n",
            base_layout.display()
        ),
    )
    .unwrap();
    let fx = Fixture::write(&t.path().join("app"), &["mesh-proxy"], 4096);
    ok(&[
        "--config",
        config.to_str().unwrap(),
        "image",
        "--out",
        fx.out.to_str().unwrap(),
        "--line",
        "0.1",
        "--format",
        "json",
    ]);
    let layout = fx.layout("mesh-proxy");
    let read_manifest = |l: &Path| -> Value {
        let mut st = Layout::open_dir(l, false).unwrap();
        serde_json::from_slice(&st.manifest("0.1.0").unwrap().unwrap().bytes).unwrap()
    };
    let (m, bm) = (read_manifest(&layout), read_manifest(&base_layout));
    let base_layers = bm["layers"].as_array().unwrap();
    assert_eq!(m["layers"].as_array().unwrap().len(), base_layers.len() + 1);
    assert_eq!(
        &m["layers"].as_array().unwrap()[..base_layers.len()],
        &base_layers[..]
    );
    let sbom = assert_sbom_covers_every_file(
        &layout,
        "0.1.0",
        "image_on_another_base_keeps_its_layers_and_merges_its_sbom",
    );
    let base_c = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "container")
        .unwrap();
    assert_eq!(base_c["version"], base_manifest.as_str());
    // The base's own SBOM is merged: its libc6 package, with refs kept apart from the image's.
    assert!(base_c["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "libc6" && c["bom-ref"].as_str().unwrap().starts_with("base:")));
    let files = sbom_files(&sbom);
    // The base's binary is accounted for under the base image (its layer listing, or its own
    // merged SBOM).
    let base_bin = &files["/usr/local/bin/mesh-control"];
    assert!(base_bin.1.starts_with("base"), "{base_bin:?}");
    assert_eq!(files["/usr/local/bin/mesh-proxy"].2, "binary");
    let hm = std::fs::read_to_string(
        fx.line_dir
            .join("images/mesh-proxy/hardening_manifest.yaml"),
    )
    .unwrap();
    assert!(hm.contains(&format!("BASE_TAG: '{base_manifest}'")), "{hm}");
    assert!(
        hm.contains(&format!(
            "BASE_IMAGE: 'oci:{}:0.1.0'",
            base_layout.display()
        )),
        "{hm}"
    );

    // A tag alone can move: refused, pointing at the line.
    std::fs::write(
        &config,
        format!("{builtin}\n[image]\nbase = \"registry.example.invalid/ubi9/ubi-minimal:9.4\"\n"),
    )
    .unwrap();
    let err = fails(&[
        "--config",
        config.to_str().unwrap(),
        "image",
        "--out",
        fx.out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("pinned by digest") && err.contains("distro.toml"),
        "{err}"
    );
}

/// Regression (issue 11): a second `distro image` downloads nothing. With the `.deb`s verified
/// and cached by a first run, the second runs with a PATH holding only dpkg's tools (no
/// `apt-get`, no `apt-cache`) and gives the same image digest.
#[test]
fn second_image_build_downloads_nothing() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 4096);
    let cache = t.path().join("debs");
    let args = [
        "image",
        "--out",
        fx.out.to_str().unwrap(),
        "--line",
        "0.1",
        "--format",
        "json",
        "--base-cache",
        cache.to_str().unwrap(),
    ];
    let first: Value = serde_json::from_str(&ok(&args)).unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["dpkg-query", "dpkg-deb", "dpkg"] {
        let found = run(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
        let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
        assert!(!path.is_empty(), "{tool} not found");
        std::os::unix::fs::symlink(&path, bin.join(tool)).unwrap();
    }
    let out = run(distro().env("PATH", &bin).args(args));
    assert!(
        out.status.success(),
        "second run needed more than the cache: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first[0]["manifest_digest"], second[0]["manifest_digest"]);
    // And without the cache the same PATH cannot build: the first run really used apt.
    let empty = t.path().join("empty-cache");
    let mut no_cache = args.to_vec();
    let last = no_cache.len() - 1;
    no_cache[last] = empty.to_str().unwrap();
    let out = run(distro().env("PATH", &bin).args(&no_cache));
    assert!(
        !out.status.success(),
        "built without apt and without a cache"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("apt-get"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `attest --build-dir` takes the documents the line's release record names and refuses one
/// that changed after it was recorded (an SBOM edited after the build), naming the file, the
/// recorded and the actual sha256, before anything is signed; once the record names the new
/// content, the same command attests it.
#[test]
fn attest_build_dir_refuses_a_document_changed_after_it_was_recorded() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 16 * 1024);
    fx.assemble();
    let (k, p) = keygen_named(t.path(), "release");
    let img = fx.image_ref("mesh-proxy");
    ok(&["sign", &img, "--key", k.to_str().unwrap(), "--identity", ID]);
    // The image's SBOM: the one `distro image` recorded and a release attests.
    let sbom = fx.line_dir.join("images/mesh-proxy/sbom.cdx.json");
    let recorded = sha256_file(&sbom);
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    doc["components"][0]["version"] = json!("0.23.99");
    write_json(&sbom, &doc);
    let actual = sha256_file(&sbom);
    assert_ne!(recorded, actual);
    let attest = [
        "attest",
        img.as_str(),
        "--key",
        k.to_str().unwrap(),
        "--identity",
        ID,
        "--build-dir",
        fx.line_dir.to_str().unwrap(),
        "--component",
        "mesh-proxy",
    ];
    let err = fails(&attest);
    let record = fx.line_dir.join("release.json");
    assert!(
        err.contains(&format!(
            "{} has sha256 {actual}, but {} records {recorded}",
            sbom.display(),
            record.display()
        )) && err.contains("help:"),
        "{err}"
    );
    let digest = digest_of(&fx.layout("mesh-proxy"));
    let mut layout = Layout::open_dir(&fx.layout("mesh-proxy"), false).unwrap();
    assert!(
        layout
            .manifest(&format!("sha256-{}.att", hex(&digest)))
            .unwrap()
            .is_none(),
        "nothing was attested"
    );
    // Recorded (as a rerun of the release's local stages would): attested, and it verifies.
    fx.record();
    ok(&attest);
    let (passed, text) = verify_text(&img, &p, &[]);
    assert!(passed, "{text}");
}

/// `attest --build-dir` on a directory without a release record says which record is missing,
/// why build.json does not do, and what to run; nothing is guessed from file names.
#[test]
fn attest_build_dir_without_a_record_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 16 * 1024);
    std::fs::remove_file(fx.line_dir.join("release.json")).unwrap();
    let (k, _) = keygen_named(t.path(), "release");
    let img = fx.image_ref("mesh-proxy");
    let err = fx.attest_fails(&img, k.to_str().unwrap(), "mesh-proxy", &["--identity", ID]);
    assert!(
        err.contains(&format!(
            "has no release record {}",
            fx.line_dir.join("release.json").display()
        )) && err.contains("holds no digest")
            && err.contains("run `distro release`")
            && err.contains("--sbom, --vex, --evidence and --provenance"),
        "{err}"
    );
    // A component the record does not have is named with the ones it has.
    fx.record();
    let err = fx.attest_fails(
        &img,
        k.to_str().unwrap(),
        "mesh-sidecar",
        &["--identity", ID],
    );
    assert!(
        err.contains("has no component `mesh-sidecar`; its components are: mesh-proxy"),
        "{err}"
    );
}

/// `distro image` run by hand takes each component's SBOM from the line's release record and
/// records what it assembled there (layout by manifest digest, image SBOM and hardening
/// manifest by sha256, the record's version as the tag), unpublished and without a
/// fingerprint, so `attest --build-dir` and `push --release` read what it wrote. An SBOM that
/// changed since the record named it is refused, naming the file and what to rerun.
#[test]
fn image_by_hand_reads_and_extends_the_release_record() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 16 * 1024);
    let images: Value = serde_json::from_str(&fx.assemble()).unwrap();
    let path = fx.line_dir.join("release.json");
    let record: distro_schema::LineRelease =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(record.state, distro_schema::ReleaseState::Built);
    assert!(record.fingerprint.is_empty(), "{}", record.fingerprint);
    let img = record.components[0]
        .image
        .as_ref()
        .expect("the image is recorded");
    assert_eq!(
        format!("sha256:{}", img.layout.sha256),
        images[0]["manifest_digest"].as_str().unwrap()
    );
    assert_eq!(img.sbom.sha256, sha256_file(Path::new(&img.sbom.path)));
    assert_eq!(
        img.hardening_manifest.sha256,
        sha256_file(Path::new(&img.hardening_manifest.path))
    );
    assert_eq!(record.version, img.tag);
    // The image SBOM is built on the recorded binary SBOM (the fixture's names rustls).
    let image_sbom: Value =
        serde_json::from_slice(&std::fs::read(&img.sbom.path).unwrap()).unwrap();
    assert!(
        image_sbom["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["purl"] == "pkg:cargo/rustls@0.23.43"),
        "{image_sbom}"
    );

    let sbom = fx.line_dir.join("sbom/mesh-proxy.cdx.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    doc["components"][0]["version"] = json!("0.23.99");
    write_json(&sbom, &doc);
    let err = fails(&[
        "image",
        "--out",
        fx.out.to_str().unwrap(),
        "--line",
        "0.1",
        "--base-cache",
        &deb_cache().to_string_lossy(),
    ]);
    assert!(
        err.contains(&format!("{} changed after it was recorded", sbom.display()))
            && err.contains("rerun `distro sbom`"),
        "{err}"
    );
}
