//! Bootstrap with each kind of token, SPIFFE conformance of the SVID checked by openssl, and
//! refusal of bad input without state change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use mesh_core::api::{self, reason};
use mesh_core::identity::{generate_csr, SpiffeId};

/// Checks an SVID with `openssl x509 -text`: exactly one URI SAN (the expected ID), CA:FALSE,
/// key usage critical with digitalSignature only, EKU serverAuth + clientAuth; and that it
/// verifies against the bundle with `openssl verify`.
fn assert_spiffe_conformant(dir: &std::path::Path, w: &Workload, want_id: &str) {
    let leaf_pem = mesh_core::identity::pem_encode("CERTIFICATE", &w.chain[0]);
    let leaf = dir.join(format!("leaf-{}.pem", free_port()));
    std::fs::write(&leaf, &leaf_pem).unwrap();
    let (ok, text) = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    let uris: Vec<&str> = text.matches("URI:").collect();
    assert_eq!(uris.len(), 1, "exactly one URI SAN expected:\n{text}");
    assert!(text.contains(&format!("URI:{want_id}")), "{text}");
    assert!(
        !text.contains("DNS:") && !text.contains("IP Address:"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    let ku = text
        .split("X509v3 Key Usage: critical")
        .nth(1)
        .unwrap_or_else(|| panic!("key usage not critical:\n{text}"));
    let ku_line = ku.lines().nth(1).unwrap_or_default().trim();
    assert_eq!(ku_line, "Digital Signature", "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
    let bundle = dir.join("bundle-check.pem");
    std::fs::write(&bundle, &w.bundle_pem).unwrap();
    let chain = dir.join("chain-check.pem");
    std::fs::write(&chain, &w.chain_pem).unwrap();
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        bundle.to_str().unwrap(),
        "-untrusted",
        chain.to_str().unwrap(),
        "-purpose",
        "sslclient",
        leaf.to_str().unwrap(),
    ]);
    assert!(ok && text.contains(": OK"), "openssl verify: {text}");
}

/// An ES256 signer whose key openssl generated (so the test does not trust our own key code).
struct SaKey {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
    pub_pem: std::path::PathBuf,
}

fn sa_key(dir: &std::path::Path, name: &str) -> SaKey {
    let key = dir.join(format!("{name}.key.pem"));
    let der = dir.join(format!("{name}.key.der"));
    let pub_pem = dir.join(format!("{name}.pub.pem"));
    let (ok, t) = openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        key.to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let (ok, t) = openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        key.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let (ok, t) = openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        pub_pem.to_str().unwrap(),
    ]);
    assert!(ok, "{t}");
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &std::fs::read(der).unwrap(),
    )
    .unwrap();
    SaKey { pair, pub_pem }
}

fn jwt(key: &SaKey, alg: &str, claims: serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::json!({ "alg": alg, "typ": "JWT" }).to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{h}.{c}");
    let sig = key
        .pair
        .sign(
            &aws_lc_rs::rand::SystemRandom::new(),
            signing_input.as_bytes(),
        )
        .unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A legacy VM bootstraps with a one-time join token, gets a SPIFFE-conformant SVID, and a
/// replay of the same token is refused (and counted) without issuing anything.
#[test]
fn join_token_bootstrap_issues_spiffe_svid_and_refuses_replay() {
    if !distro_testsupport::require_tool(
        "join_token_bootstrap_issues_spiffe_svid_and_refuses_replay",
        "openssl",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let id = "spiffe://example.org/ns/vm/sa/legacy-billing";
    let token = cp.join_token(id, "10m");
    assert!(token.starts_with(api::JOIN_TOKEN_PREFIX));
    let w = bootstrap(&cp, &token, id);
    assert_eq!(w.id, id);
    assert_spiffe_conformant(dir.path(), &w, id);
    assert_eq!(cp.issued_on_record(), 1);
    // Replay.
    let csr = generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let r = bootstrap_raw(&cp, &token, &csr.csr_pem);
    assert_eq!(r.status, 401);
    assert_eq!(r.reason(), reason::TOKEN_REPLAYED);
    assert_eq!(cp.issued_on_record(), 1, "a refused request must not issue");
    assert_eq!(
        cp.metric("mesh_control_refusals_total{reason=\"token_replayed\"}"),
        1.0
    );
    assert_eq!(
        cp.metric("mesh_control_certificates_issued_total{kind=\"bootstrap\"}"),
        1.0
    );
    // A CSR without a URI SAN gets the token's identity.
    let token2 = cp.join_token(id, "10m");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let bare = params.serialize_request(&key).unwrap().pem().unwrap();
    let r = bootstrap_raw(&cp, &token2, &bare);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["spiffe_id"], id);
    // The key never left the workload: the private key file mode of the CA is 0600, and the
    // response carries no private key.
    assert!(!String::from_utf8_lossy(&r.body).contains("PRIVATE KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cp.state.join("ca/1.key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !cp.log_text().contains("PRIVATE KEY"),
        "a key reached the log"
    );
}

/// A Kubernetes workload bootstraps with an ES256 service-account JWT; expired, forged,
/// wrong-audience and `alg: none`-style tokens are refused with their reason.
#[test]
fn service_account_jwt_bootstrap_and_bad_tokens() {
    if !distro_testsupport::require_tool("service_account_jwt_bootstrap_and_bad_tokens", "openssl")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let issuer = sa_key(dir.path(), "issuer");
    let forger = sa_key(dir.path(), "forger");
    let cp = ControlPlane::start(
        dir.path(),
        &[
            "--sa-issuer-key",
            issuer.pub_pem.to_str().unwrap(),
            "--sa-issuer",
            "https://kubernetes.default.svc",
        ],
    );
    let id = "spiffe://example.org/ns/shop/sa/checkout";
    let claims = |exp: i64, aud: &str| {
        serde_json::json!({
            "iss": "https://kubernetes.default.svc",
            "sub": "system:serviceaccount:shop:checkout",
            "aud": [aud],
            "exp": exp,
            "iat": now(),
        })
    };
    let good = jwt(&issuer, "ES256", claims(now() + 600, TD));
    let w = bootstrap(&cp, &good, id);
    assert_eq!(w.id, id);
    assert_spiffe_conformant(dir.path(), &w, id);

    let csr = generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let cases = [
        (
            jwt(&issuer, "ES256", claims(now() - 5, TD)),
            reason::TOKEN_EXPIRED,
        ),
        (
            jwt(&forger, "ES256", claims(now() + 600, TD)),
            reason::TOKEN_INVALID,
        ),
        (
            jwt(&issuer, "ES256", claims(now() + 600, "other.org")),
            reason::FOREIGN_TRUST_DOMAIN,
        ),
        (
            jwt(&issuer, "HS256", claims(now() + 600, TD)),
            reason::TOKEN_INVALID,
        ),
        ("not-a-token".to_string(), reason::TOKEN_INVALID),
        (
            format!("{}0123456789abcdef01234567.secret", api::JOIN_TOKEN_PREFIX),
            reason::TOKEN_INVALID,
        ),
    ];
    for (token, want) in &cases {
        let r = bootstrap_raw(&cp, token, &csr.csr_pem);
        assert_eq!(
            r.reason(),
            *want,
            "token {token}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.status >= 400 && r.status < 500);
    }
    assert_eq!(cp.issued_on_record(), 1, "refused tokens must not issue");
    assert_eq!(
        cp.metric("mesh_control_refusals_total{reason=\"token_invalid\"}"),
        4.0
    );
    assert_eq!(
        cp.metric("mesh_control_refusals_total{reason=\"token_expired\"}"),
        1.0
    );
}

/// A request to the API without a client certificate (10 s at most).
fn anonymous(cp: &ControlPlane, method: &str, path: &str, body: Vec<u8>) -> Reply {
    request(
        cp.api,
        &cp.bundle(),
        None,
        method,
        path,
        body,
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Malformed, oversized and mis-addressed CSRs are refused with a clear reason, counted, and
/// leave no trace: the join token stays usable and nothing is issued.
#[test]
fn bad_csrs_are_refused_without_state_change() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let id = "spiffe://example.org/ns/vm/sa/db";
    let token = cp.join_token(id, "10m");
    let other =
        generate_csr(&SpiffeId::parse("spiffe://example.org/ns/vm/sa/admin").unwrap()).unwrap();
    let foreign = generate_csr(&SpiffeId::parse("spiffe://evil.org/ns/vm/sa/db").unwrap()).unwrap();
    let mut rsa_free_garbage = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    rsa_free_garbage.push_str("MIIBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
    rsa_free_garbage.push_str("-----END CERTIFICATE REQUEST-----\n");
    // A CSR whose signature does not match: flip a byte in the signature.
    let good = generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let mut der = rustls::pki_types::pem::PemObject::from_pem_slice(good.csr_pem.as_bytes())
        .map(|d: rustls::pki_types::CertificateSigningRequestDer<'static>| d.as_ref().to_vec())
        .unwrap();
    let last = der.len() - 3;
    der[last] ^= 0x55;
    let tampered = mesh_core::identity::pem_encode("CERTIFICATE REQUEST", &der);
    let cases: Vec<(String, &str, u16)> = vec![
        (other.csr_pem.clone(), reason::CSR_IDENTITY_MISMATCH, 403),
        (foreign.csr_pem.clone(), reason::FOREIGN_TRUST_DOMAIN, 403),
        (rsa_free_garbage, reason::CSR_INVALID, 400),
        (tampered, reason::CSR_INVALID, 400),
        ("hello".into(), reason::CSR_INVALID, 400),
    ];
    for (csr, want, status) in &cases {
        let r = bootstrap_raw(&cp, &token, csr);
        assert_eq!(
            (r.status, r.reason().as_str()),
            (*status, *want),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.json()["error"].as_str().unwrap_or_default().is_empty());
    }
    // Oversized request body.
    let huge = serde_json::to_vec(&api::BootstrapRequest {
        token: token.clone(),
        csr_pem: "A".repeat(200_000),
    })
    .unwrap();
    let r = anonymous(&cp, "POST", api::PATH_BOOTSTRAP, huge);
    assert_eq!((r.status, r.reason().as_str()), (413, reason::TOO_LARGE));
    // Malformed JSON.
    let r = anonymous(&cp, "POST", api::PATH_BOOTSTRAP, b"{nope".to_vec());
    assert_eq!((r.status, r.reason().as_str()), (400, reason::BAD_REQUEST));
    // Config without a client certificate.
    let r = anonymous(&cp, "GET", "/v1/config?since=0", Vec::new());
    assert_eq!(
        (r.status, r.reason().as_str()),
        (401, reason::UNAUTHENTICATED)
    );

    assert_eq!(cp.issued_on_record(), 0, "nothing may be issued");
    assert_eq!(
        std::fs::read_dir(cp.state.join("used")).unwrap().count(),
        0,
        "the token must not be used up"
    );
    assert_eq!(
        cp.metric("mesh_control_refusals_total{reason=\"csr_invalid\"}"),
        3.0
    );
    assert_eq!(
        cp.metric("mesh_control_refusals_total{reason=\"too_large\"}"),
        1.0
    );
    // Still alive, and the token still works.
    let w = bootstrap(&cp, &token, id);
    assert_eq!(w.id, id);
}

/// `fips-check --format json` keeps the FipsSelfCheck shape and lists the API's real TLS
/// configuration as FIPS-compliant.
#[test]
fn fips_check_reports_the_api_tls_config() {
    let out = std::process::Command::new(BIN)
        .args(["fips-check", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report: distro_schema::FipsSelfCheck = serde_json::from_value(v.clone()).unwrap();
    let api_cfg = report
        .tls_configs
        .iter()
        .find(|c| c.name == "control-api-server")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(api_cfg.fips, mesh_core::crypto::FIPS_BUILD);
    assert!(!api_cfg.cipher_suites.iter().any(|s| s.contains("CHACHA")));
    assert_eq!(out.status.success(), mesh_core::crypto::FIPS_BUILD);
}

/// `/metrics` is valid Prometheus text for an independent parser (the Python
/// `prometheus_client` parser) with the documented families, and every log line is JSON for
/// `jq`.
#[test]
fn metrics_and_logs_are_valid_for_their_tools() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let id = "spiffe://example.org/ns/vm/sa/metrics";
    let token = cp.join_token(id, "10m");
    let w = bootstrap(&cp, &token, id);
    let _ = poll_config(&cp, &w, 0, Duration::from_secs(5)).unwrap();
    let csr = generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let _ = bootstrap_raw(&cp, &token, &csr.csr_pem); // replay: a refusal
    let (status, fips) = cp.ops_get("/fips");
    assert_eq!(status, 200);
    let fips: distro_schema::FipsSelfCheck =
        serde_json::from_str(&fips).unwrap_or_else(|e| panic!("/fips: {e}: {fips}"));
    assert!(
        fips.fips_mode
            && fips
                .tls_configs
                .iter()
                .any(|c| c.name == "control-api-server")
    );
    let out = cp.cli(&[
        "token",
        "create",
        "--identity",
        id,
        "--ttl",
        "1m",
        "--format",
        "json",
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("token create json: {e}"));
    assert!(v["token"]
        .as_str()
        .unwrap_or_default()
        .starts_with(api::JOIN_TOKEN_PREFIX));
    let (status, metrics) = cp.ops_get("/metrics");
    assert_eq!(status, 200);
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &metrics).unwrap();
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
need = ["mesh_control_connected_proxies", "mesh_control_config_pushes", "mesh_control_push_latency_seconds",
        "mesh_control_certificates_issued", "mesh_control_refusals", "mesh_control_config_version",
        "mesh_control_store_write_seconds"]
missing = [n for n in need if n not in fams]
assert not missing, missing
assert fams["mesh_control_push_latency_seconds"].type == "histogram"
writes = fams["mesh_control_store_write_seconds"]
assert writes.type == "histogram"
count = [s.value for s in writes.samples if s.name == "mesh_control_store_write_seconds_count"]
assert count and count[0] >= 2, count  # the bootstraps above wrote their serials
refusals = {s.labels.get("reason"): s.value for s in fams["mesh_control_refusals"].samples}
assert refusals.get("token_replayed") == 1.0, refusals
print("ok", len(fams))
"#;
    match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
    {
        Ok(out)
            if String::from_utf8_lossy(&out.stderr)
                .contains("No module named 'prometheus_client'") =>
        {
            distro_testsupport::missing(
                "Prometheus text cross-check",
                "python3 module prometheus_client is not installed",
                "pip install prometheus-client (scripts/install-deps.sh)",
            );
        }
        Ok(out) => assert!(
            out.status.success(),
            "{}{}\n{metrics}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            distro_testsupport::missing(
                "Prometheus text cross-check",
                &format!("python3 cannot be started ({e})"),
                "apt-get install python3 (scripts/install-deps.sh)",
            );
        }
    }
    match std::process::Command::new("jq")
        .args([
            "-e",
            "-s",
            "length > 0 and all(.[]; has(\"level\") and has(\"fields\"))",
        ])
        .arg(&cp.log)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "log is not JSON lines: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cp.log_text()
        ),
        Err(e) => {
            distro_testsupport::missing(
                "JSON log cross-check",
                &format!("jq cannot be started ({e})"),
                "apt-get install jq (scripts/install-deps.sh)",
            );
        }
    }
}
