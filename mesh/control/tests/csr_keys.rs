//! The CA signs only CSRs whose key is ECDSA P-256, checked on the key itself: openssl makes
//! CSRs with a P-384 key signed with ecdsa-with-SHA256, RSA and Ed25519 keys, a compressed
//! P-256 point, a P-256 point that is not on the curve, and a P-256 key signed with SHA-384.
//! Each is refused with `csr_invalid`, nothing is issued and the join token stays usable; a
//! proper P-256 CSR from openssl gets a certificate that openssl itself parses as prime256v1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;

use common::*;
use mesh_core::api::reason;

const ID: &str = "spiffe://example.org/ns/vm/sa/db";

/// `openssl req -new` for the key in `key` (made with `genpkey_args`), with `extra` options.
fn csr_with(dir: &Path, name: &str, genpkey_args: &[&str], extra: &[&str]) -> String {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut gen = vec!["genpkey"];
    gen.extend_from_slice(genpkey_args);
    gen.extend_from_slice(&["-out", key.to_str().unwrap()]);
    let (ok, text) = openssl(&gen);
    assert!(ok, "openssl {gen:?}: {text}");
    csr_for_key(&key, &csr, extra)
}

fn csr_for_key(key: &Path, csr: &Path, extra: &[&str]) -> String {
    let san = format!("subjectAltName=URI:{ID}");
    let mut req = vec![
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/O=test",
        "-addext",
        &san,
        "-out",
        csr.to_str().unwrap(),
    ];
    req.extend_from_slice(extra);
    let (ok, text) = openssl(&req);
    assert!(ok, "openssl {req:?}: {text}");
    std::fs::read_to_string(csr).unwrap()
}

/// Bootstraps `csr` with a fresh token; asserts `csr_invalid` naming `want` in the error, that
/// nothing was issued and that the token is still unused.
fn assert_refused(cp: &ControlPlane, csr: &str, want: &str) {
    let token = cp.join_token(ID, "10m");
    let issued = cp.issued_on_record();
    let r = bootstrap_raw(cp, &token, csr);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(
        (r.status, r.reason().as_str()),
        (400, reason::CSR_INVALID),
        "{body}"
    );
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains(want),
        "error should say {want:?}: {body}"
    );
    assert_eq!(
        cp.issued_on_record(),
        issued,
        "a refused CSR must not issue"
    );
    let used = std::fs::read_dir(cp.state.join("used")).unwrap().count();
    let w = bootstrap(cp, &token, ID);
    assert_eq!(w.id, ID, "the token must stay usable after a refused CSR");
    assert_eq!(
        std::fs::read_dir(cp.state.join("used")).unwrap().count(),
        used + 1
    );
}

/// A P-384 key in a CSR signed with ecdsa-with-SHA256 is refused for its curve (it used to be
/// signed into a certificate naming prime256v1 around a 97-byte point).
#[test]
fn csr_with_p384_key_signed_with_sha256_is_refused() {
    if !distro_testsupport::require_tool(
        "csr_with_p384_key_signed_with_sha256_is_refused",
        "openssl",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let csr = csr_with(
        dir.path(),
        "p384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        &["-sha256"],
    );
    assert_refused(&cp, &csr, "curve P-384");
}

/// RSA and Ed25519 keys are refused as not EC keys.
#[test]
fn csr_with_rsa_or_ed25519_key_is_refused() {
    if !distro_testsupport::require_tool("csr_with_rsa_or_ed25519_key_is_refused", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let rsa = csr_with(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        &["-sha256"],
    );
    assert_refused(&cp, &rsa, "rsaEncryption");
    let ed = csr_with(dir.path(), "ed25519", &["-algorithm", "ED25519"], &[]);
    assert_refused(&cp, &ed, "Ed25519");
}

/// A P-256 key as a compressed point, a P-256 "point" that is not on the curve, and a P-256
/// key signed with ecdsa-with-SHA384 are refused; a proper P-256 CSR from openssl is issued a
/// certificate openssl parses, with a prime256v1 key.
#[test]
fn csr_with_compressed_or_garbage_p256_point_is_refused() {
    if !distro_testsupport::require_tool(
        "csr_with_compressed_or_garbage_p256_point_is_refused",
        "openssl",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let key = dir.path().join("p256.key");
    let (ok, text) = openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        key.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let compressed_key = dir.path().join("p256c.key");
    let (ok, text) = openssl(&[
        "ec",
        "-in",
        key.to_str().unwrap(),
        "-conv_form",
        "compressed",
        "-out",
        compressed_key.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let compressed = csr_for_key(&compressed_key, &dir.path().join("c.csr"), &["-sha256"]);
    assert_refused(&cp, &compressed, "compressed point");

    let sha384 = csr_for_key(&key, &dir.path().join("s384.csr"), &["-sha384"]);
    assert_refused(&cp, &sha384, "ecdsa-with-SHA384");

    // Off the curve: flip one bit of the point's x coordinate in openssl's CSR.
    let good = csr_for_key(&key, &dir.path().join("good.csr"), &["-sha256"]);
    let der_file = dir.path().join("good.der");
    let (ok, text) = openssl(&[
        "req",
        "-in",
        dir.path().join("good.csr").to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der_file.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let mut der = std::fs::read(&der_file).unwrap();
    let at = der
        .windows(4)
        .position(|w| w == [0x03, 0x42, 0x00, 0x04])
        .expect("an uncompressed P-256 point in openssl's CSR");
    der[at + 4 + 5] ^= 0x01;
    let garbage = mesh_core::identity::pem_encode("CERTIFICATE REQUEST", &der);
    assert_refused(&cp, &garbage, "not a point on P-256");

    // The control: openssl's proper P-256 CSR is issued, and openssl parses the result.
    let token = cp.join_token(ID, "10m");
    let r = bootstrap_raw(&cp, &token, &good);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let leaf = dir.path().join("issued.pem");
    std::fs::write(&leaf, r.json()["svid_chain_pem"].as_str().unwrap()).unwrap();
    let (ok, text) = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "openssl cannot parse the issued certificate: {text}");
    assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
    assert!(text.contains("Public-Key: (256 bit)"), "{text}");
}
