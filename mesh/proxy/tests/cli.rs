//! The command line: `fips-check` output shape and content, and configuration errors that point
//! at the file and line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::process::Command;

use common::*;

/// `fips-check --format json` is a `FipsSelfCheck` that lists the proxy's real inbound and
/// outbound TLS configurations, FIPS-only (no ChaCha20, no X25519), and exits 0.
#[test]
fn fips_check_reports_inbound_and_outbound_configs() {
    let out = Command::new(proxy_bin())
        .args(["fips-check", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: distro_schema::FipsSelfCheck = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r.fips_build && r.fips_mode && r.self_tests_passed && r.provider_fips,
        "{r:?}"
    );
    assert!(
        r.module_version_string.contains("FIPS"),
        "{}",
        r.module_version_string
    );
    let names: Vec<&str> = r.tls_configs.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains(&"inbound") && names.contains(&"outbound"),
        "{names:?}"
    );
    for c in &r.tls_configs {
        assert!(c.fips, "{c:?}");
        assert!(
            c.cipher_suites
                .iter()
                .all(|s| s.contains("AES") && s.contains("GCM")),
            "{c:?}"
        );
        assert_eq!(c.kx_groups, vec!["secp256r1", "secp384r1"], "{c:?}");
    }
}

/// A malformed configuration file is refused with its path, line and column.
#[test]
fn bad_config_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.json");
    std::fs::write(
        &cfg,
        "{\n  \"admin\": \"127.0.0.1:0\",\n  \"inbound\": {\"listen\": 5}\n}\n",
    )
    .unwrap();
    let out = Command::new(proxy_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", cfg.display())), "{err}");

    std::fs::write(&cfg, "{\"admin\": \"127.0.0.1:0\"}").unwrap();
    let out = Command::new(proxy_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs `identity`"), "{err}");
}

/// A static mesh configuration naming a non-FIPS suite is refused before anything listens.
#[test]
fn non_fips_tls_policy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let mut m = mesh(
        &id("a", "a"),
        "STRICT",
        serde_json::json!([]),
        serde_json::json!([]),
        serde_json::json!([]),
    );
    m["tls"]["cipher_suites"] = serde_json::json!(["TLS13_CHACHA20_POLY1305_SHA256"]);
    let cfg = dir.path().join("proxy.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"admin": "127.0.0.1:0", "identity": identity_files(&pki, &id("a", "a"), "a"), "mesh": m}).to_string(),
    )
    .unwrap();
    let out = Command::new(proxy_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS13_CHACHA20_POLY1305_SHA256") && err.contains("not a FIPS-approved"),
        "{err}"
    );
}
