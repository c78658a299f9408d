//! Replicated mesh-control over a real 3-member etcd cluster (Debian `etcd-server` 3.4) that the
//! test starts on 127.0.0.1 ports, with temporary data directories removed afterwards: tokens
//! used once across replicas, serials neither lost nor repeated when a replica is killed,
//! configuration changes reaching proxies on every replica, one member down, quorum lost and
//! regained.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use distro_testsupport::etcd::{have_etcd, Cluster};
use mesh_core::api::{self, reason, BootstrapRequest, ConfigResponse};
use mesh_core::identity::{generate_csr, SpiffeId};

/// A cluster and three replicas over one prefix (replica 0 started first, so it creates the
/// CA), with `extra` arguments for replica 0 only.
fn replicated(dir: &Path, prefix: &str, extra0: &[&str]) -> (Cluster, Vec<ControlPlane>) {
    let cluster = Cluster::start(dir);
    let eps = cluster.endpoints();
    let mut replicas = vec![ControlPlane::start_replica(dir, &eps, prefix, extra0)];
    for _ in 1..3 {
        replicas.push(ControlPlane::start_replica(dir, &eps, prefix, &[]));
    }
    (cluster, replicas)
}

fn bootstrap_on(
    cp: &ControlPlane,
    bundle: &str,
    token: &str,
    id: &str,
) -> (Reply, Option<Workload>) {
    bootstrap_via(cp.api, bundle, token, id, Duration::from_secs(15))
}

fn serial_of(w: &Workload) -> String {
    use x509_parser::prelude::FromDer;
    let (_, x) = x509_parser::certificate::X509Certificate::from_der(w.chain[0].as_ref()).unwrap();
    hex::encode(x.raw_serial())
}

/// 100 bootstraps race the same 50 join tokens across three replicas at once: each token is
/// used exactly once, the other attempt is refused with `token_replayed`, and exactly the 50
/// certificates handed out are on record, with 50 different serials.
#[test]
fn join_tokens_are_used_once_across_replicas() {
    if !have_etcd("join_tokens_are_used_once_across_replicas") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cluster, replicas) = replicated(dir.path(), "race", &[]);
    let bundle = replicas[0].bundle();
    let id = "spiffe://example.org/ns/vm/sa/db";
    let tokens: Vec<String> = (0..50).map(|_| replicas[0].join_token(id, "10m")).collect();
    let replicas = Arc::new(replicas);
    let start = Arc::new(std::sync::Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|n| {
            let (replicas, start, bundle) = (replicas.clone(), start.clone(), bundle.clone());
            let token = tokens[n / 2].clone();
            // The two attempts on one token go to two different replicas.
            let r = (n / 2 + n % 2) % 3;
            std::thread::spawn(move || {
                start.wait();
                let (reply, w) = bootstrap_on(&replicas[r], &bundle, &token, id);
                (
                    n / 2,
                    reply.status,
                    reply.reason(),
                    w.map(|w| serial_of(&w)),
                )
            })
        })
        .collect();
    let mut per_token: BTreeMap<usize, Vec<(u16, String)>> = BTreeMap::new();
    let mut serials = BTreeSet::new();
    for h in handles {
        let (t, status, why, serial) = h.join().unwrap();
        per_token.entry(t).or_default().push((status, why));
        if let Some(s) = serial {
            assert!(serials.insert(s.clone()), "serial {s} handed out twice");
        }
    }
    for (t, outcomes) in &per_token {
        let ok = outcomes.iter().filter(|(s, _)| *s == 200).count();
        let replayed = outcomes
            .iter()
            .filter(|(s, w)| *s == 401 && w == reason::TOKEN_REPLAYED)
            .count();
        assert_eq!((ok, replayed), (1, 1), "token {t}: {outcomes:?}");
    }
    assert_eq!(serials.len(), 50);
    let on_record: BTreeSet<String> = cluster
        .keys("race", "issued/")
        .into_iter()
        .map(|k| {
            k.trim_start_matches("issued/")
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    assert_eq!(
        on_record, serials,
        "exactly the certificates handed out are on record"
    );
    assert_eq!(cluster.keys("race", "used/").len(), 50);
}

/// A replica killed with SIGKILL in the middle of bootstraps loses no serial and repeats none:
/// every certificate handed out by any replica is on record, and the surviving replicas keep
/// bootstrapping (a token whose first attempt died with the replica is either still usable or
/// was used exactly once).
#[test]
fn killed_replica_loses_no_serial() {
    if !have_etcd("killed_replica_loses_no_serial") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cluster, mut replicas) = replicated(dir.path(), "kill", &[]);
    let bundle = replicas[0].bundle();
    let id = "spiffe://example.org/ns/vm/sa/web";
    let tokens: Vec<String> = (0..40).map(|_| replicas[1].join_token(id, "10m")).collect();
    let victim = replicas.remove(0);
    let victim_api = victim.api;
    let victim = Arc::new(std::sync::Mutex::new(victim));
    let survivors = Arc::new(replicas);
    let handles: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, token)| {
            let (victim, survivors, bundle, token) = (
                victim.clone(),
                survivors.clone(),
                bundle.clone(),
                token.clone(),
            );
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20 * n as u64));
                let mut handed = Vec::new();
                // First try on the victim (while it lives), then on a survivor.
                let first = {
                    let v = victim.lock().unwrap();
                    (v.child.is_some()).then(|| ControlPlaneRef { api: v.api })
                };
                if let Some(v) = first {
                    let (_, w) = bootstrap_via(v.api, &bundle, &token, id, Duration::from_secs(5));
                    if let Some(w) = w {
                        handed.push(serial_of(&w));
                        return handed;
                    }
                }
                let (reply, w) = bootstrap_on(&survivors[n % 2], &bundle, &token, id);
                match w {
                    Some(w) => handed.push(serial_of(&w)),
                    None => assert_eq!(
                        reply.reason(),
                        reason::TOKEN_REPLAYED,
                        "{}",
                        String::from_utf8_lossy(&reply.body)
                    ),
                }
                handed
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    victim.lock().unwrap().kill9();
    eprintln!("killed the replica at {victim_api}");
    let mut handed = Vec::new();
    for h in handles {
        handed.extend(h.join().unwrap());
    }
    let unique: BTreeSet<_> = handed.iter().cloned().collect();
    assert_eq!(unique.len(), handed.len(), "a serial was handed out twice");
    let on_record: BTreeSet<String> = cluster
        .keys("kill", "issued/")
        .into_iter()
        .map(|k| {
            k.trim_start_matches("issued/")
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    for s in &unique {
        assert!(
            on_record.contains(s),
            "serial {s} handed out but not on record"
        );
    }
    // Every token was used at most once, and the survivors handed out most of them.
    assert!(cluster.keys("kill", "used/").len() <= 40);
    assert!(
        handed.len() >= 30,
        "only {} of 40 bootstraps succeeded",
        handed.len()
    );
}

struct ControlPlaneRef {
    api: std::net::SocketAddr,
}

/// Bootstraps `id` with `token` at `addr` (trusting `bundle`) within `timeout`: the reply (a
/// transport error as status 0) and, on 200, the workload.
fn bootstrap_via(
    addr: std::net::SocketAddr,
    bundle: &str,
    token: &str,
    id: &str,
    timeout: Duration,
) -> (Reply, Option<Workload>) {
    let csr = generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let body = serde_json::to_vec(&BootstrapRequest {
        token: token.into(),
        csr_pem: csr.csr_pem.clone(),
    })
    .unwrap();
    let r = request(
        addr,
        bundle,
        None,
        "POST",
        api::PATH_BOOTSTRAP,
        body,
        timeout,
    )
    .unwrap_or_else(|e| Reply {
        status: 0,
        body: e.into_bytes(),
    });
    let w = (r.status == 200).then(|| workload_from(&csr, &r));
    (r, w)
}

const MESH: &str = r#"
[[services]]
name = "reviews"
protocol = "http"
[[services.endpoints]]
address = "127.0.0.1:19081"
identity = "spiffe://example.org/ns/shop/sa/reviews"
labels = { version = "v1" }
"#;

/// A change to the configuration files watched by one replica reaches proxies long-polling
/// each of the three replicas within 2 s, as the same version (the others learn it from the
/// etcd watch, not by polling).
#[test]
fn config_change_reaches_proxies_on_every_replica() {
    if !have_etcd("config_change_reaches_proxies_on_every_replica") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_dir(dir.path(), MESH);
    let (_cluster, replicas) = replicated(
        dir.path(),
        "push",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--watch-interval",
            "100ms",
        ],
    );
    let bundle = replicas[0].bundle();
    let id = "spiffe://example.org/ns/shop/sa/frontend";
    let workloads: Vec<Workload> = replicas
        .iter()
        .map(|cp| {
            let token = cp.join_token(id, "10m");
            bootstrap_on(cp, &bundle, &token, id).1.expect("bootstrap")
        })
        .collect();
    let first: ConfigResponse = serde_json::from_slice(
        &poll_config(&replicas[1], &workloads[1], 0, Duration::from_secs(5))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        first.config.services.len(),
        1,
        "replica 1 serves what replica 0 read"
    );
    let v = first.version;
    let waiters: Vec<_> = replicas
        .iter()
        .zip(&workloads)
        .map(|(cp, w)| {
            let (addr, bundle, w) = (cp.api, bundle.clone(), w.clone());
            std::thread::spawn(move || {
                let r = request(
                    addr,
                    &bundle,
                    Some(&w),
                    "GET",
                    &format!("{}?since={v}", api::PATH_CONFIG),
                    Vec::new(),
                    Duration::from_secs(20),
                )
                .unwrap();
                (r, Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let changed = Instant::now();
    let tmp = cfg.join(".mesh.toml.tmp");
    std::fs::write(&tmp, MESH.replace("19081", "19082")).unwrap();
    std::fs::rename(&tmp, cfg.join("mesh.toml")).unwrap();
    for (i, h) in waiters.into_iter().enumerate() {
        let (r, at) = h.join().unwrap();
        assert_eq!(
            r.status,
            200,
            "replica {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let c: ConfigResponse = serde_json::from_slice(&r.body).unwrap();
        let took = at.duration_since(changed);
        eprintln!("replica {i}: version {} after {took:?}", c.version);
        assert_eq!(c.version, v + 1, "replica {i}");
        assert_eq!(c.config.services[0].endpoints[0].address, "127.0.0.1:19082");
        assert!(took < Duration::from_secs(2), "replica {i} took {took:?}");
    }
}

/// With one etcd member stopped, the replicas keep committing writes: bootstraps succeed and
/// /readyz still sees the store.
#[test]
fn one_member_down_writes_continue() {
    if !have_etcd("one_member_down_writes_continue") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, replicas) = replicated(dir.path(), "one", &[]);
    let bundle = replicas[0].bundle();
    let id = "spiffe://example.org/ns/vm/sa/db";
    let tokens: Vec<String> = (0..6).map(|_| replicas[0].join_token(id, "10m")).collect();
    cluster.stop_member(2);
    for (n, t) in tokens.iter().enumerate() {
        let (r, w) = bootstrap_on(&replicas[n % 3], &bundle, t, id);
        assert!(
            w.is_some(),
            "bootstrap {n} with one member down: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(cluster.keys("one", "used/").len(), 6);
    for cp in &replicas {
        assert_eq!(cp.readyz()["store"]["reachable"], true, "{}", cp.readyz());
    }
}

/// With etcd's quorum lost, replicas refuse writes with a reason that says so (503
/// `store_unavailable`), report the store unreachable in /readyz, and keep serving their
/// proxies the last configuration; when the quorum returns, bootstraps succeed again.
#[test]
fn quorum_lost_refuses_writes_and_keeps_serving() {
    if !have_etcd("quorum_lost_refuses_writes_and_keeps_serving") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, replicas) = replicated(dir.path(), "quorum", &[]);
    let bundle = replicas[0].bundle();
    let id = "spiffe://example.org/ns/vm/sa/db";
    let w = bootstrap_on(
        &replicas[0],
        &bundle,
        &replicas[0].join_token(id, "10m"),
        id,
    )
    .1
    .expect("bootstrap before the loss");
    let before = poll_config(&replicas[0], &w, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(before.status, 200);
    let version = before.json()["version"].clone();
    let pending = replicas[0].join_token(id, "10m");

    cluster.stop_member(1);
    cluster.stop_member(2);
    let (r, got) = bootstrap_on(&replicas[0], &bundle, &pending, id);
    assert!(got.is_none(), "a write was accepted without quorum");
    assert_eq!(
        (r.status, r.reason().as_str()),
        (503, "store_unavailable"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("quorum"), "{msg}");
    // /readyz probes the store with a quorum read of its own; a member that has just lost its
    // peers may take up to an election timeout (500 ms here) to stop answering, so the probe
    // is given a bounded time (5 s) to see the loss, then it must.
    let deadline = Instant::now() + Duration::from_secs(5);
    let ready = loop {
        let ready = replicas[0].readyz();
        if ready["store"]["reachable"] == false || Instant::now() >= deadline {
            break ready;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ready["store"]["reachable"], false, "{ready}");
    assert_eq!(ready["ready"], false, "{ready}");
    // The data plane's last state is still served: config to an existing proxy.
    // (The bundle comes from before the loss: etcdctl's reads need the quorum.)
    let during = request(
        replicas[0].api,
        &bundle,
        Some(&w),
        "GET",
        &format!("{}?since=0", api::PATH_CONFIG),
        Vec::new(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        during.status,
        200,
        "{}",
        String::from_utf8_lossy(&during.body)
    );
    assert_eq!(during.json()["version"], version);

    cluster.start_member(1);
    cluster.start_member(2);
    cluster.wait_healthy(3, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (r, got) = bootstrap_on(&replicas[0], &bundle, &pending, id);
        if got.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after quorum returned: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(replicas[0].readyz()["store"]["reachable"], true);
}

/// CA private keys are sealed in etcd (never the PEM in the clear), a replica without the
/// operator's key refuses to start, and a rotation made through one replica's state is seen by
/// all: every replica serves the new bundle.
#[test]
fn ca_keys_sealed_and_rotation_seen_by_all() {
    if !have_etcd("ca_keys_sealed_and_rotation_seen_by_all") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cluster, replicas) = replicated(dir.path(), "seal", &["--watch-interval", "100ms"]);
    let key = cluster.value("/seal/ca/1.key.pem");
    assert!(key.starts_with("mcseal1:"), "{key}");
    assert!(!key.contains("PRIVATE KEY"));
    // Without the key: refused with a message that says what to pass.
    let out = Command::new(BIN)
        .args([
            "ca",
            "status",
            "--state",
            &format!("etcd://{}/seal", cluster.endpoints()),
        ])
        .env_remove("MESH_CONTROL_STATE_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status needs no private key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = replicas[1].cli(&["ca", "rotate", "--overlap", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    for cp in &replicas {
        loop {
            if cp.readyz()["ca_generation"] == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rotation not seen: {}",
                cp.readyz()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(cluster.value("/seal/ca/2.key.pem").starts_with("mcseal1:"));
}

/// A revocation made in etcd (the certificate's record removed) applies on every replica at
/// the next request, to a keep-alive connection that is already open as well as to a new one:
/// each request reads the record from the quorum (awaited, not on a blocking thread).
#[test]
fn revocation_in_etcd_applies_on_every_replica_and_open_connection() {
    if !have_etcd("revocation_in_etcd_applies_on_every_replica_and_open_connection") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cluster, replicas) = replicated(dir.path(), "revoke", &[]);
    let bundle = replicas[0].bundle();
    let id = "spiffe://example.org/ns/vm/sa/revoked";
    let token = replicas[0].join_token(id, "10m");
    let w = bootstrap_on(&replicas[0], &bundle, &token, id)
        .1
        .expect("bootstrap");
    let record = format!("issued/{}.json", serial_of(&w));
    assert_eq!(cluster.keys("revoke", "issued/"), vec![record.clone()]);
    let mut open = Session::open(&replicas[1], &bundle, &w);
    for cp in &replicas {
        let r = poll_config(cp, &w, 0, Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(open.poll_now().unwrap().status, 200);

    let (ok, out) = cluster.etcdctl(&["del", &format!("/revoke/{record}")]);
    assert!(ok && out.trim() == "1", "etcdctl del: {out}");
    let r = open.poll_now().unwrap();
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, reason::SVID_NOT_HONOURED),
        "replica 1, the connection opened before the revocation"
    );
    for (i, cp) in replicas.iter().enumerate() {
        let r = poll_config(cp, &w, 0, Duration::from_secs(5)).unwrap();
        assert_eq!(
            (r.status, r.reason().as_str()),
            (403, reason::SVID_NOT_HONOURED),
            "replica {i}, a new connection"
        );
        // The closed connections stop counting once the replica has seen them close.
        let want = if i == 1 { 1.0 } else { 0.0 };
        let t = Instant::now();
        while cp.metric("mesh_control_connected_proxies") != want {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "replica {i}: connected proxies {} (only the connection opened before the revocation counts)",
                cp.metric("mesh_control_connected_proxies")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
