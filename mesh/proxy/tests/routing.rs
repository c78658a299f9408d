//! Outbound routing: weighted canary split, retries within a budget, timeouts, outlier
//! ejection, and TCP passthrough inside mTLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Starts an inbound proxy for identity `b` in front of `app`; returns it and its address.
fn inbound(
    dir: &std::path::Path,
    pki: &Pki,
    name: &str,
    app: SocketAddr,
) -> (ProxyProc, SocketAddr) {
    let listen = free_addr();
    let p = start_proxy(
        dir,
        name,
        json!({
            "inbound": {"listen": listen, "app": app, "protocol": "detect"},
            "identity": identity_files(pki, &id("b", "b"), name),
            "mesh": mesh(&id("b", "b"), "STRICT", json!([]), json!([]), json!([])),
        }),
        true,
    );
    (p, listen)
}

fn client(
    dir: &std::path::Path,
    pki: &Pki,
    services: Value,
    routes: Value,
    listeners: Value,
    limits: Value,
) -> ProxyProc {
    start_proxy(
        dir,
        "a",
        json!({
            "outbound": listeners,
            "identity": identity_files(pki, &id("a", "a"), "a"),
            "mesh": mesh(&id("a", "a"), "STRICT", services, routes, json!([])),
            "limits": limits,
        }),
        true,
    )
}

/// A 90/10 canary split between two versions lands within 3 points of 90/10 over 2000 requests.
#[test]
fn canary_split_holds() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let v1 = named_backend("b");
    let v2 = http_backend(BackendSpec {
        name: "b".into(),
        version: "v2".into(),
        ..Default::default()
    });
    let (_p1, b1) = inbound(dir.path(), &pki, "b1", v1);
    let (_p2, b2) = inbound(dir.path(), &pki, "b2", v2);
    let out = free_addr();
    let a = client(
        dir.path(),
        &pki,
        json!([{"name": "b", "protocol": "http", "endpoints": [
            {"address": b1.to_string(), "identity": id("b", "b"), "labels": {"version": "v1"}},
            {"address": b2.to_string(), "identity": id("b", "b"), "labels": {"version": "v2"}},
        ]}]),
        json!([{"service": "b", "name": "canary", "match": {"path_prefix": "/"}, "destinations": [
            {"labels": {"version": "v1"}, "weight": 90},
            {"labels": {"version": "v2"}, "weight": 10},
        ]}]),
        json!([{"service": "b", "listen": out}]),
        json!({}),
    );
    let n = 2000;
    let mut c = KeepAlive::new(out);
    let mut v1_hits = 0;
    for _ in 0..n {
        let (s, body) = c.get_or_reconnect("/x").unwrap();
        assert_eq!(s, 200, "{body}");
        if body.contains("version=v1") {
            v1_hits += 1;
        }
    }
    let share = f64::from(v1_hits) / f64::from(n);
    eprintln!("canary: v1 share {share:.3} over {n} requests");
    assert!(
        (0.87..=0.93).contains(&share),
        "v1 share {share} not within 3 points of 0.90"
    );
    let m = a.metrics();
    assert!(m.contains("route=\"b/canary\""), "{m}");
}

/// Retries hide a failing endpoint (no request fails), the failing endpoint is ejected, a
/// route with an exhausted retry budget stops retrying, and a slow upstream hits the timeout.
#[test]
fn retries_budget_ejection_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let good = named_backend("good");
    let bad_flag = Arc::new(AtomicBool::new(true));
    let bad = http_backend(BackendSpec {
        name: "bad".into(),
        version: "v1".into(),
        fail: bad_flag.clone(),
    });
    let (_pg, g) = inbound(dir.path(), &pki, "good", good);
    let (_pb, b) = inbound(dir.path(), &pki, "bad", bad);
    let out = free_addr();
    let out_c = free_addr();
    let a = client(
        dir.path(),
        &pki,
        json!([
            {"name": "b", "protocol": "http", "endpoints": [
                {"address": g.to_string(), "identity": id("b", "b")},
                {"address": b.to_string(), "identity": id("b", "b")},
            ]},
            {"name": "c", "protocol": "http", "endpoints": [
                {"address": b.to_string(), "identity": id("b", "b")},
            ]},
        ]),
        json!([
            {"service": "b", "name": "slow", "match": {"path_prefix": "/slow"}, "destinations": [], "timeout_ms": 300},
            {"service": "b", "name": "api", "match": {"path_prefix": "/"}, "destinations": [],
             "retries": {"attempts": 2, "per_try_timeout_ms": 1000, "budget_percent": 100}},
            {"service": "c", "name": "all-bad", "match": {}, "destinations": [],
             "retries": {"attempts": 3, "per_try_timeout_ms": 1000, "budget_percent": 0}},
        ]),
        json!([{"service": "b", "listen": out}, {"service": "c", "listen": out_c}]),
        json!({"eject_after_failures": 3, "eject_for_ms": 30000}),
    );
    let mut c = KeepAlive::new(out);
    for i in 0..200 {
        let (s, body) = c.get_or_reconnect("/api").unwrap();
        assert_eq!(s, 200, "request {i} failed despite retries: {body}");
        assert!(body.contains("name=good"), "{body}");
    }
    let m = a.metrics();
    assert!(
        metric_sum(&m, "mesh_proxy_retries_total", &["service=\"b\""]) >= 1.0,
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "mesh_proxy_upstream_endpoint_ejected{{service=\"b\",endpoint=\"{b}\"}} 1"
        )),
        "bad endpoint not ejected:\n{m}"
    );

    // A slow upstream: the route's 300 ms timeout answers 504 long before the 2 s backend.
    let t = Instant::now();
    let (s, _) = c.get_or_reconnect("/slow").unwrap();
    assert_eq!(s, 504);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    // A route whose budget is 0 % retries only until its small floor is spent.
    let mut c2 = KeepAlive::new(out_c);
    for _ in 0..30 {
        let (s, _) = c2.get_or_reconnect("/x").unwrap();
        assert!(s >= 500);
    }
    let m = a.metrics();
    let retries = metric_sum(&m, "mesh_proxy_retries_total", &["service=\"c\""]);
    assert!(retries <= 10.0, "budget not enforced: {retries} retries");
    assert!(
        metric_sum(
            &m,
            "mesh_proxy_retry_budget_exhausted_total",
            &["service=\"c\""]
        ) >= 1.0,
        "{m}"
    );
}

/// A TCP service is carried through mTLS and reaches an echo server behind protocol detection.
#[test]
fn tcp_passthrough_inside_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let echo = echo_backend();
    let (pb, b) = inbound(dir.path(), &pki, "b", echo);
    let out = free_addr();
    let _a = client(
        dir.path(),
        &pki,
        json!([{"name": "echo", "protocol": "tcp", "endpoints": [{"address": b.to_string(), "identity": id("b", "b")}]}]),
        json!([]),
        json!([{"service": "echo", "listen": out}]),
        json!({}),
    );
    let mut s = TcpStream::connect(out).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let msg = b"\x00\x01 binary hello through the mesh\n";
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, msg);
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let log = pb.access_log();
    assert!(
        log.iter()
            .any(|l| l["protocol"] == "tcp" && l["peer_identity"] == id("a", "a")),
        "{log:?}"
    );
}
