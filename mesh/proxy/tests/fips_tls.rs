//! FIPS-only TLS, shown with an independent client (`openssl s_client`): AES-GCM over P-256 /
//! P-384 is accepted, a client offering only ChaCha20 or only X25519 is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::json;

struct Target {
    _dir: tempfile::TempDir,
    proxy: ProxyProc,
    addr: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
}

fn target() -> Option<Target> {
    target_with(json!(mesh_core::api::TlsPolicy::default()))
}

fn target_with(tls: serde_json::Value) -> Option<Target> {
    if !distro_testsupport::require_tool("fips_tls", "openssl") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let backend = named_backend("b");
    let addr = free_addr();
    let mut m = mesh(&id("b", "b"), "STRICT", json!([]), json!([]), json!([]));
    m["tls"] = tls;
    let proxy = start_proxy(
        dir.path(),
        "b",
        json!({
            "inbound": {"listen": addr, "app": backend, "protocol": "detect"},
            "identity": identity_files(&pki, &id("b", "b"), "b"),
            "mesh": m,
        }),
        true,
    );
    let (cert, key) = pki.issue(&id("a", "a"), "a");
    Some(Target {
        bundle: pki.bundle.clone(),
        _dir: dir,
        proxy,
        addr,
        cert,
        key,
    })
}

/// Runs `openssl s_client` with extra arguments, sending one HTTP request; returns (success, output).
fn s_client(t: &Target, extra: &[&str]) -> (bool, String) {
    let out = distro_testsupport::bin::run_with_input(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &t.addr.to_string(),
                "-servername",
                "b",
                "-ign_eof",
            ])
            .arg("-cert")
            .arg(&t.cert)
            .arg("-key")
            .arg(&t.key)
            .arg("-CAfile")
            .arg(&t.bundle)
            .args(extra),
        b"GET /hello HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n",
    );
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("HTTP/1.1 200"), text)
}

/// TLS 1.3 AES-GCM on P-256 and P-384, and TLS 1.2 ECDHE-ECDSA AES-GCM, complete and carry a
/// request that reaches the application with the client's identity.
#[test]
fn fips_suites_and_groups_are_accepted() {
    let Some(t) = target() else { return };
    for (extra, expect) in [
        (
            vec![
                "-tls1_3",
                "-ciphersuites",
                "TLS_AES_128_GCM_SHA256",
                "-groups",
                "P-256",
            ],
            "TLS_AES_128_GCM_SHA256",
        ),
        (
            vec![
                "-tls1_3",
                "-ciphersuites",
                "TLS_AES_256_GCM_SHA384",
                "-groups",
                "P-384",
            ],
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            vec![
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "-groups",
                "P-256",
            ],
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
    ] {
        let (ok, out) = s_client(&t, &extra);
        assert!(ok, "{extra:?} should work:\n{out}");
        assert!(
            out.contains(expect),
            "{extra:?}: negotiated something else:\n{out}"
        );
        assert!(out.contains(&format!("xfcc=URI={}", id("a", "a"))), "{out}");
    }
}

/// A client offering only ChaCha20-Poly1305 (TLS 1.3 or 1.2) or only X25519 is refused.
#[test]
fn chacha20_and_x25519_only_clients_are_refused() {
    let Some(t) = target() else { return };
    for extra in [
        vec!["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        vec!["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
        vec!["-groups", "X25519"],
        vec!["-tls1_3", "-groups", "X25519"],
    ] {
        let (ok, out) = s_client(&t, &extra);
        assert!(!ok, "{extra:?} must be refused:\n{out}");
        assert!(!out.contains("HTTP/1.1 200"), "{out}");
        assert!(
            out.contains("alert handshake failure")
                || out.contains("handshake failure")
                || out.contains("no shared"),
            "{extra:?}: expected a handshake failure:\n{out}"
        );
    }
}

/// A client that really offers TLS 1.1 (`-tls1_1 -cipher DEFAULT@SECLEVEL=0`: an OpenSSL whose
/// security level forbids TLS 1.1 would otherwise refuse locally, without asking the proxy) is
/// refused by the proxy: its ClientHello reaches the proxy, which answers with an alert, counts
/// a failed inbound handshake and logs the incompatibility.
#[test]
fn old_protocol_versions_are_refused() {
    let Some(t) = target() else { return };
    let failed = |m: &str| {
        metric_sum(
            m,
            "mesh_proxy_tls_handshakes_total",
            &["direction=\"inbound\"", "result=\"error\""],
        )
    };
    let before = failed(&t.proxy.metrics());
    let (ok, out) = s_client(&t, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!ok, "{out}");
    // The alert came from the proxy (OpenSSL reports a received alert as `tlsv1 alert ...`,
    // `SSL alert number 70`); a local refusal would say `no protocols available` instead.
    assert!(
        out.contains("SSL alert number") && !out.contains("no protocols available"),
        "expected an alert from the proxy:\n{out}"
    );
    let after = failed(&t.proxy.metrics());
    assert_eq!(
        after,
        before + 1.0,
        "the proxy did not count the refused TLS 1.1 handshake:\n{out}"
    );
    // rustls names the incompatibility (a TLS 1.1 hello lacks what TLS 1.2+ requires).
    let log = t.proxy.stderr_text();
    assert!(
        log.contains("inbound TLS handshake refused") && log.contains("peer is incompatible"),
        "{log}"
    );
}

/// A TLS policy narrowed to TLS 1.3, AES-256-GCM and P-384 is enforced: TLS 1.2, AES-128 and
/// P-256 clients are refused, the narrowed combination works, and `/fips` still says FIPS.
#[test]
fn narrowed_policy_is_enforced() {
    let Some(t) = target_with(json!({
        "min_version": "TLSv1_3",
        "cipher_suites": ["TLS13_AES_256_GCM_SHA384"],
        "kx_groups": ["secp384r1"],
    })) else {
        return;
    };
    for extra in [
        vec!["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"],
        vec!["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"],
        vec!["-tls1_3", "-groups", "P-256"],
    ] {
        let (ok, out) = s_client(&t, &extra);
        assert!(
            !ok,
            "{extra:?} must be refused under the narrowed policy:\n{out}"
        );
    }
    let (ok, out) = s_client(
        &t,
        &[
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384",
            "-groups",
            "P-384",
        ],
    );
    assert!(ok, "{out}");
}
