//! End to end with static configuration: two workloads over mTLS, authorization, STRICT and
//! PERMISSIVE, wrong server identity, observability.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

struct Mesh {
    _dir: tempfile::TempDir,
    pki: Pki,
    a: ProxyProc,
    b: ProxyProc,
    a_out: SocketAddr,
    b_in: SocketAddr,
}

fn authz_b() -> Value {
    json!([
        {"name": "no-admin", "action": "DENY", "sources": [], "methods": [], "paths": ["/admin"]},
        {"name": "from-a", "action": "ALLOW", "sources": [id("a", "a")], "methods": ["GET"], "paths": ["/api"]},
        {"name": "health-from-anyone", "action": "ALLOW", "sources": [], "methods": ["GET"], "paths": ["/health"]}
    ])
}

/// A (outbound listener for `b`) → mTLS → B (inbound) → backend.
fn two_workloads(b_mode: &str, b_expected_identity: &str) -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let backend = named_backend("b");
    let b_in = free_addr();
    let b_config = server_config(&pki, b_in, backend, "detect", b_mode, authz_b());
    let b = start_proxy(dir.path(), "b", b_config, true);
    let a_out = free_addr();
    let a_config = client_config(&pki, "a", a_out, b_in, b_expected_identity);
    let a = start_proxy(dir.path(), "a", a_config, true);
    Mesh {
        _dir: dir,
        pki,
        a,
        b,
        a_out,
        b_in,
    }
}

/// Two workloads talk over mTLS: the request arrives with A's SPIFFE ID, the access logs are
/// JSON, the metrics parse with the reference Prometheus parser, and the admin endpoint reports
/// certificates, configuration and FIPS state.
#[test]
fn two_workloads_talk_over_mtls() {
    let m = two_workloads("STRICT", &id("b", "b"));
    let (status, _, body) = http_get(m.a_out, "/api/hello", &[]);
    assert_eq!(
        status,
        200,
        "{body}\nA:\n{}\nB:\n{}",
        m.a.stderr_text(),
        m.b.stderr_text()
    );
    assert!(body.contains("name=b"), "{body}");
    assert!(
        body.contains(&format!("xfcc=URI={}", id("a", "a"))),
        "backend must see A's identity: {body}"
    );

    // Access logs: one JSON line per request on each side.
    std::thread::sleep(Duration::from_millis(200));
    let a_log = m.a.access_log();
    let b_log = m.b.access_log();
    assert!(
        a_log.iter().any(|l| l["direction"] == "outbound"
            && l["status"] == 200
            && l["peer_identity"] == id("b", "b")),
        "{a_log:?}"
    );
    assert!(
        b_log.iter().any(|l| l["direction"] == "inbound"
            && l["peer_identity"] == id("a", "a")
            && l["rule"] == "from-a"),
        "{b_log:?}"
    );
    // The access log records what TLS negotiated: TLS 1.3, AES-GCM, a NIST curve.
    let tls = b_log
        .iter()
        .find_map(|l| l["tls"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        tls.starts_with("TLSv1_3 TLS13_AES_") && tls.contains("GCM") && tls.contains("secp"),
        "{tls}"
    );

    // Metrics: per route and peer identity, handshakes; valid exposition format.
    let metrics = m.b.metrics();
    assert!(metrics.contains(&format!("mesh_proxy_requests_total{{direction=\"inbound\",route=\"inbound\",peer_identity=\"{}\",code=\"200\"}} 1", id("a", "a"))), "{metrics}");
    assert!(
        metrics.contains("mesh_proxy_tls_handshakes_total{direction=\"inbound\",result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mesh_proxy_request_duration_seconds_bucket"),
        "{metrics}"
    );
    check_prometheus_text(&metrics);
    check_prometheus_text(&m.a.metrics());

    // Admin endpoint.
    let (s, certs) = m.b.admin_get("/certs");
    assert_eq!(s, 200);
    let certs: Value = serde_json::from_str(&certs).unwrap();
    assert_eq!(certs["spiffe_id"], id("b", "b"));
    assert!(certs["seconds_until_expiry"].as_i64().unwrap() > 0);
    assert!(chrono::DateTime::parse_from_rfc3339(certs["not_after"].as_str().unwrap()).is_ok());
    let (s, fips) = m.b.admin_get("/fips");
    assert_eq!(s, 200);
    let fips: distro_schema::FipsSelfCheck = serde_json::from_str(&fips).unwrap();
    assert!(
        fips.fips_mode && fips.tls_configs.iter().all(|c| c.fips),
        "{fips:?}"
    );
    let (s, cfg) = m.a.admin_get("/config");
    assert_eq!(s, 200);
    let cfg: Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["config"]["services"][0]["name"], "b");
    assert_eq!(cfg["config_source"], "static");
    let (s, _) = m.a.admin_get("/ready");
    assert_eq!(s, 200);
}

/// Authorization: a denied path, a method outside the ALLOW rule, and a caller whose identity
/// is not allowed all get 403 from B, and B counts the denials.
#[test]
fn denied_path_method_and_identity_are_refused() {
    let m = two_workloads("STRICT", &id("b", "b"));
    assert_eq!(http_get(m.a_out, "/admin/users", &[]).0, 403);
    assert_eq!(http_get(m.a_out, "/other", &[]).0, 403);
    // A third workload C, with a valid SVID but not allowed by B's policy.
    let dir = tempfile::tempdir().unwrap();
    let c_out = free_addr();
    let c_config = client_config(&m.pki, "c", c_out, m.b_in, &id("b", "b"));
    let c = start_proxy(dir.path(), "c", c_config, true);
    let (s, _, body) = http_get(c_out, "/api/hello", &[]);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("RBAC"), "{body}");
    // Paths open to any authenticated source still work for C.
    assert_eq!(http_get(c_out, "/health", &[]).0, 200);
    let metrics = m.b.metrics();
    assert!(metrics.contains(&format!("mesh_proxy_authz_denials_total{{peer_identity=\"{}\",rule=\"no-allow-rule-matched\"}} 1", id("c", "c"))), "{metrics}");
    assert!(metrics.contains("rule=\"no-admin\""), "{metrics}");
    drop(c);
}

/// The client proxy refuses to send a request to a server whose SPIFFE ID is not the one the
/// configuration expects for that endpoint.
#[test]
fn wrong_server_identity_is_refused() {
    let m = two_workloads("STRICT", &id("b", "impostor"));
    let (s, _, body) = http_get(m.a_out, "/api/hello", &[]);
    assert_eq!(s, 502, "{body}");
    assert!(
        m.a.stderr_text()
            .contains("expected spiffe://test.mesh/ns/b/sa/impostor"),
        "{}",
        m.a.stderr_text()
    );
    assert!(m.a.metrics().contains("result=\"identity_mismatch\""));
    // Nothing reached B's application.
    assert!(!m.b.access_log().iter().any(|l| l["direction"] == "inbound"));
}

/// A client certificate from another CA is refused at the handshake.
#[test]
fn foreign_ca_client_is_refused() {
    let m = two_workloads("STRICT", &id("b", "b"));
    let dir = tempfile::tempdir().unwrap();
    let foreign = Pki::new(dir.path(), "foreign");
    let dir2 = tempfile::tempdir().unwrap();
    let x_out = free_addr();
    let x = start_proxy(
        dir2.path(),
        "x",
        json!({
            "outbound": [{"service": "b", "listen": x_out}],
            // Trusts B's CA (so it can verify B) but holds an SVID from a foreign CA.
            "identity": {
                "cert_chain": foreign.issue(&id("a", "a"), "x").0,
                "key": dir.path().join("x.key"),
                "trust_bundle": m.pki.bundle,
            },
            "mesh": mesh_to_b(&id("a", "a"), m.b_in, &id("b", "b")),
        }),
        true,
    );
    let (s, _, _) = http_get(x_out, "/api/hello", &[]);
    assert_eq!(s, 502);
    assert!(m
        .b
        .metrics()
        .contains("mesh_proxy_tls_handshakes_total{direction=\"inbound\",result=\"error\"}"));
    drop(x);
}

fn raw_exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(data).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// STRICT: a plaintext (non-mesh) client gets no answer at all; PERMISSIVE: it is served, but
/// only by rules that do not name a source.
#[test]
fn strict_refuses_plaintext_permissive_accepts_it() {
    let m = two_workloads("STRICT", &id("b", "b"));
    let out = raw_exchange(
        m.b_in,
        b"GET /health HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n",
    );
    assert!(
        out.is_empty(),
        "STRICT answered plaintext: {}",
        String::from_utf8_lossy(&out)
    );
    assert!(m.b.metrics().contains("result=\"plaintext_refused\""));
    drop(m);

    let m = two_workloads("PERMISSIVE", &id("b", "b"));
    let (s, _, body) = http_get(m.b_in, "/health", &[]);
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("xfcc=\n") || body.ends_with("xfcc=\n"),
        "plaintext must not carry an identity: {body}"
    );
    // `/api` needs A's identity: plaintext is refused there.
    assert_eq!(http_get(m.b_in, "/api/x", &[]).0, 403);
    // mTLS keeps working in PERMISSIVE.
    assert_eq!(http_get(m.a_out, "/api/x", &[]).0, 200);
}

/// The application may speak HTTP/2 (prior knowledge) or HTTP/1.1 to its proxy; the hop
/// between proxies is HTTP/2 (ALPN `h2`) and pooled: many requests, one mesh connection.
#[test]
fn http2_from_app_and_pooled_http2_between_proxies() {
    if !distro_testsupport::require_tool("http2_from_app_and_pooled_http2_between_proxies", "curl")
    {
        return;
    }
    let m = two_workloads("STRICT", &id("b", "b"));
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg(format!("http://{}/api/h2", m.a_out))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_end().ends_with("2 200"), "{text}");
    assert!(text.contains("name=b"), "{text}");
    let mut c = KeepAlive::new(m.a_out);
    for _ in 0..50 {
        assert_eq!(c.get_or_reconnect("/api/h1").unwrap().0, 200);
    }
    for _ in 0..10 {
        assert_eq!(http_get(m.a_out, "/api/fresh", &[]).0, 200);
    }
    std::thread::sleep(Duration::from_millis(200));
    let b_log = m.b.access_log();
    assert!(
        b_log.iter().all(|l| l["protocol"] == "HTTP/2.0"),
        "mesh hop not HTTP/2: {b_log:?}"
    );
    let handshakes = metric_sum(
        &m.b.metrics(),
        "mesh_proxy_tls_handshakes_total",
        &["result=\"ok\""],
    );
    assert!(
        handshakes <= 2.0,
        "61 requests used {handshakes} mesh connections"
    );
}

/// `--threads 1` runs the proxy on one thread (tokio's current-thread runtime: accepting, the
/// connections, timers and the admin endpoint share it), and so does the default when the
/// proxy may use one CPU only (A is pinned to CPU 0 with `taskset`, as a container's CPU set
/// would): the pair serves keep-alive and fresh requests over mTLS (HTTP/2 between them), and
/// each has one thread.
#[test]
fn one_worker_pair_runs_on_one_thread() {
    if !distro_testsupport::require_tool("one_worker_pair_runs_on_one_thread", "taskset") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let backend = named_backend("b");
    let b_in = free_addr();
    let b_config = server_config(&pki, b_in, backend, "detect", "STRICT", authz_b());
    let b = start_proxy_with(dir.path(), "b", b_config, true, Some(1), None);
    let a_out = free_addr();
    let a_config = client_config(&pki, "a", a_out, b_in, &id("b", "b"));
    let a = start_proxy_with(dir.path(), "a", a_config, true, None, Some(0));
    let mut c = KeepAlive::new(a_out);
    for _ in 0..50 {
        assert_eq!(c.get_or_reconnect("/api/one").unwrap().0, 200);
    }
    for _ in 0..10 {
        let (status, _, body) = http_get(a_out, "/api/fresh", &[]);
        assert_eq!(
            status,
            200,
            "{body}\nA:\n{}\nB:\n{}",
            a.stderr_text(),
            b.stderr_text()
        );
        assert!(
            body.contains(&format!("xfcc=URI={}", id("a", "a"))),
            "{body}"
        );
    }
    assert!(metric_sum(&b.metrics(), "mesh_proxy_requests_total", &["code=\"200\""]) >= 60.0);
    for p in [&a, &b] {
        assert_eq!(p.status_field("Threads"), 1, "proxy {}", p.name);
    }
}

/// IPv6: an endpoint at `[::1]:port` is reached over mTLS like any other.
#[test]
fn ipv6_endpoint() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        distro_testsupport::missing(
            "ipv6_endpoint",
            "no IPv6 loopback here",
            "enable IPv6 on loopback: sysctl -w net.ipv6.conf.lo.disable_ipv6=0",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let backend = named_backend("b6");
    let b_in: SocketAddr = {
        let l = std::net::TcpListener::bind("[::1]:0").unwrap();
        l.local_addr().unwrap()
    };
    let b_config = server_config(&pki, b_in, backend, "http", "STRICT", json!([]));
    let _b = start_proxy(dir.path(), "b", b_config, true);
    let a_out = free_addr();
    let a_config = client_config(&pki, "a", a_out, b_in, &id("b", "b"));
    let _a = start_proxy(dir.path(), "a", a_config, true);
    let (s, _, body) = http_get(a_out, "/v6", &[]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("name=b6"), "{body}");
}
