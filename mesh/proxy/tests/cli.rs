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

/// The mesh section of workload `ns/a/sa/a` in STRICT mode with `services`, no routes and no
/// inbound policy.
fn strict_mesh_of_a(services: serde_json::Value) -> serde_json::Value {
    mesh(
        &id("a", "a"),
        "STRICT",
        services,
        serde_json::json!([]),
        serde_json::json!([]),
    )
}

/// Runs `mesh-proxy run` on a static configuration with mesh section `m`; it must fail before
/// anything listens. Returns its stderr.
fn refused_at_load(m: serde_json::Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
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
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started anyway:\n{err}");
    assert!(err.contains(&cfg.display().to_string()), "{err}");
    err
}

/// An empty suite or group list is refused with the one rule of mesh-core's narrower (it would
/// allow nothing), not read as "everything".
#[test]
fn empty_tls_lists_are_refused() {
    for field in ["cipher_suites", "kx_groups"] {
        let mut m = strict_mesh_of_a(serde_json::json!([]));
        m["tls"][field] = serde_json::json!([]);
        let err = refused_at_load(m);
        assert!(
            err.contains(&format!("tls.{field} is empty, which would allow nothing")),
            "{err}"
        );
    }
}

/// Regression: the same endpoint address listed with two identities in two services used to
/// be resolved "last wins" (connections then verified against whichever came last); it is
/// refused at load, naming both services and both identities.
#[test]
fn endpoint_address_with_two_identities_is_refused() {
    let addr = "127.0.0.1:18443";
    let services = serde_json::json!([
        {"name": "shop", "protocol": "http", "endpoints": [{"address": addr, "identity": id("shop", "shop")}]},
        {"name": "pay", "protocol": "http", "endpoints": [{"address": addr, "identity": id("pay", "pay")}]},
    ]);
    let m = strict_mesh_of_a(services);
    let err = refused_at_load(m);
    for want in [
        addr.to_string(),
        "service `shop`".into(),
        "service `pay`".into(),
        id("shop", "shop"),
        id("pay", "pay"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    // The same address with the same identity in two services is fine (one workload serving
    // both): the proxy starts.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let services = serde_json::json!([
        {"name": "shop", "protocol": "http", "endpoints": [{"address": addr, "identity": id("shop", "shop")}]},
        {"name": "shop-admin", "protocol": "http", "endpoints": [{"address": addr, "identity": id("shop", "shop")}]},
    ]);
    let m = strict_mesh_of_a(services);
    let p = start_proxy(
        dir.path(),
        "a",
        serde_json::json!({"identity": identity_files(&pki, &id("a", "a"), "a"), "mesh": m}),
        true,
    );
    drop(p);
}

/// A static mesh configuration naming a non-FIPS suite is refused before anything listens.
#[test]
fn non_fips_tls_policy_is_refused() {
    let mut m = strict_mesh_of_a(serde_json::json!([]));
    m["tls"]["cipher_suites"] = serde_json::json!(["TLS13_CHACHA20_POLY1305_SHA256"]);
    let err = refused_at_load(m);
    assert!(
        err.contains("TLS13_CHACHA20_POLY1305_SHA256") && err.contains("not a FIPS-approved"),
        "{err}"
    );
}
