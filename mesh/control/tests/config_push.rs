//! Configuration distribution: snapshots on connect, changes pushed to connected clients within
//! 2 s, per-proxy views, bad changes refused with file/line/field while the old one is kept,
//! acknowledgements, and state that survives a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mesh_core::api::{self, reason, ConfigAck, ConfigResponse};

const MESH_V1: &str = r#"
[tls]
min_version = "TLSv1_2"

[[services]]
name = "reviews"
protocol = "http"
allowed_clients = ["spiffe://example.org/ns/shop/sa/frontend"]
[[services.endpoints]]
address = "127.0.0.1:19081"
identity = "spiffe://example.org/ns/shop/sa/reviews"
labels = { version = "v1" }
[[services.endpoints]]
address = "127.0.0.1:19082"
identity = "spiffe://example.org/ns/shop/sa/reviews"
labels = { version = "v2" }

[[routes]]
service = "reviews"
name = "canary"
match = { path_prefix = "/reviews", method = "GET" }
destinations = [{ labels = { version = "v1" }, weight = 90 }, { labels = { version = "v2" }, weight = 10 }]
retries = { attempts = 2, per_try_timeout_ms = 300, budget_percent = 20 }
timeout_ms = 2000

[[authorization]]
workload = "spiffe://example.org/ns/shop/sa/reviews"
name = "frontend-reads"
action = "ALLOW"
sources = ["spiffe://example.org/ns/shop/sa/frontend"]
methods = ["GET"]
paths = ["/reviews"]
"#;

fn write_mesh(dir: &std::path::Path, text: &str) {
    // Atomic replace, as an operator's tooling (or a ConfigMap mount) does.
    let tmp = dir.join(".mesh.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("mesh.toml")).unwrap();
}

fn config_of(r: &Reply) -> ConfigResponse {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

/// Two connected proxies long-poll; a change to the files reaches both within 2 s, each gets
/// only its own part; a bad change is refused with file, line and field, the old configuration
/// keeps being served, and /readyz and /metrics say why.
#[test]
fn change_reaches_proxies_within_two_seconds_and_bad_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("mesh");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    write_mesh(&cfg_dir, MESH_V1);
    let cp = ControlPlane::start(
        dir.path(),
        &[
            "--config",
            cfg_dir.to_str().unwrap(),
            "--watch-interval",
            "100ms",
            "--long-poll",
            "3s",
        ],
    );
    let fe_id = "spiffe://example.org/ns/shop/sa/frontend";
    let rv_id = "spiffe://example.org/ns/shop/sa/reviews";
    let fe = bootstrap(&cp, &cp.join_token(fe_id, "5m"), fe_id);
    let rv = bootstrap(&cp, &cp.join_token(rv_id, "5m"), rv_id);

    // Full snapshot on connect; each proxy gets only what it needs.
    let fe_v1 = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap());
    let rv_v1 = config_of(&poll_config(&cp, &rv, 0, Duration::from_secs(5)).unwrap());
    assert_eq!(fe_v1.version, rv_v1.version);
    assert_eq!(fe_v1.config.identity, fe_id);
    assert_eq!(fe_v1.config.services.len(), 1);
    assert_eq!(fe_v1.config.routes[0].destinations.len(), 2);
    assert!(fe_v1.config.inbound.authorization.is_empty());
    assert!(
        rv_v1.config.services.is_empty(),
        "reviews may not call anything"
    );
    assert_eq!(rv_v1.config.inbound.authorization[0].name, "frontend-reads");
    assert_eq!(fe_v1.config.trust_bundle_pem, cp.bundle());
    let v1 = fe_v1.version;

    // Acknowledge.
    let ack = serde_json::to_vec(&ConfigAck {
        version: v1,
        accepted: true,
        reason: String::new(),
    })
    .unwrap();
    let r = request(
        cp.api,
        &cp.bundle(),
        Some(&fe),
        "POST",
        api::PATH_CONFIG_ACK,
        ack,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 204);
    let nack = serde_json::to_vec(&ConfigAck {
        version: v1,
        accepted: false,
        reason: "listener port busy".into(),
    })
    .unwrap();
    let r = request(
        cp.api,
        &cp.bundle(),
        Some(&rv),
        "POST",
        api::PATH_CONFIG_ACK,
        nack,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        cp.metric("mesh_control_config_acks_total{accepted=\"true\"}"),
        1.0
    );
    assert_eq!(
        cp.metric("mesh_control_config_acks_total{accepted=\"false\"}"),
        1.0
    );
    assert!(cp.log_text().contains("listener port busy"));

    // Both proxies wait for the next version; then the canary weight changes.
    let waiters: Vec<_> = [fe.clone(), rv.clone()]
        .into_iter()
        .map(|w| {
            let (api_addr, bundle) = (cp.api, cp.bundle());
            std::thread::spawn(move || {
                let r = request(
                    api_addr,
                    &bundle,
                    Some(&w),
                    "GET",
                    &format!("{}?since={v1}", api::PATH_CONFIG),
                    Vec::new(),
                    Duration::from_secs(10),
                )
                .unwrap();
                (r, Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        cp.metric("mesh_control_connected_proxies"),
        2.0,
        "both long-polls are open"
    );
    let changed_at = Instant::now();
    write_mesh(
        &cfg_dir,
        &MESH_V1
            .replace("weight = 90", "weight = 50")
            .replace("weight = 10", "weight = 50"),
    );
    for (i, h) in waiters.into_iter().enumerate() {
        let (r, at) = h.join().unwrap();
        let c = config_of(&r);
        let took = at.duration_since(changed_at);
        eprintln!("proxy {i}: version {} after {took:?}", c.version);
        assert!(
            took < Duration::from_secs(2),
            "change took {took:?} to reach proxy {i}"
        );
        assert_eq!(c.version, v1 + 1);
        if c.config.identity == fe_id {
            assert_eq!(c.config.routes[0].destinations[0].weight, 50);
        }
    }
    assert!(cp.metric("mesh_control_push_latency_seconds_count") >= 2.0);
    let v2 = v1 + 1;

    // A bad change: a non-FIPS suite and a route to an unknown service.
    write_mesh(
        &cfg_dir,
        &MESH_V1
            .replace(
                "min_version = \"TLSv1_2\"",
                "min_version = \"TLSv1_2\"\ncipher_suites = [\"TLS13_CHACHA20_POLY1305_SHA256\"]",
            )
            .replace(
                "service = \"reviews\"\nname = \"canary\"",
                "service = \"ratings\"\nname = \"canary\"",
            ),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ready = cp.readyz();
    while ready["last_config_error"].is_null() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        ready = cp.readyz();
    }
    let err = ready["last_config_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no refusal reported: {ready}"));
    eprintln!("refusal: {err}");
    assert!(
        err.contains("mesh.toml:4: field `tls.cipher_suites`"),
        "{err}"
    );
    assert!(
        err.contains("field `routes.service`") && err.contains("\"ratings\""),
        "{err}"
    );
    assert_eq!(ready["config_version"], v2, "the old configuration is kept");
    assert_eq!(
        ready["ready"], true,
        "still serving the last good configuration"
    );
    assert_eq!(cp.metric("mesh_control_config_last_reload_ok"), 0.0);
    assert_eq!(
        cp.metric("mesh_control_config_reloads_total{result=\"refused\"}"),
        1.0
    );
    // Nothing is pushed: a poll at v2 times out with 304; a fresh proxy gets v2.
    let r = poll_config(&cp, &fe, v2, Duration::from_secs(6)).unwrap();
    assert_eq!(r.status, 304);
    let c = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap());
    assert_eq!(c.version, v2);
    assert_eq!(c.config.routes[0].destinations[0].weight, 50);

    // The offline checker reports the same errors, as JSON too.
    let out = std::process::Command::new(BIN)
        .args([
            "check-config",
            cfg_dir.to_str().unwrap(),
            "--trust-domain",
            TD,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 4);
    assert_eq!(v["errors"][0]["field"], "tls.cipher_suites");

    // Fixing it publishes the next version.
    write_mesh(&cfg_dir, MESH_V1);
    let c = config_of(&poll_config(&cp, &fe, v2, Duration::from_secs(5)).unwrap());
    assert_eq!(c.version, v2 + 1);
    assert!(cp.readyz()["last_config_error"].is_null());
}

/// A restart loses nothing: CA (same bundle), issued serials, configuration version, used join
/// tokens (a replay is still refused), unused tokens still work, and old SVIDs still
/// authenticate. SIGTERM stops the control plane cleanly (exit 0).
#[test]
fn restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("mesh");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    write_mesh(&cfg_dir, MESH_V1);
    let mut cp = ControlPlane::start(
        dir.path(),
        &[
            "--config",
            cfg_dir.to_str().unwrap(),
            "--watch-interval",
            "100ms",
        ],
    );
    let id = "spiffe://example.org/ns/shop/sa/frontend";
    let used = cp.join_token(id, "10m");
    let unused = cp.join_token(id, "10m");
    let w = bootstrap(&cp, &used, id);
    write_mesh(
        &cfg_dir,
        &MESH_V1
            .replace("weight = 90", "weight = 80")
            .replace("weight = 10", "weight = 20"),
    );
    // The change must be published (a version after the first, carrying the new weight) and
    // recorded as current before the restart; otherwise "survives a restart" proves nothing.
    let deadline = Instant::now() + Duration::from_secs(5);
    let version = loop {
        let c = config_of(&poll_config(&cp, &w, 0, Duration::from_secs(5)).unwrap());
        let weight = c.config.routes.first().map(|r| r.destinations[0].weight);
        if c.version > 1 && weight == Some(80) && cp.readyz()["config_version"] == c.version {
            break c.version;
        }
        assert!(
            Instant::now() < deadline,
            "the 80/20 change was not published within 5 s: version {}, weight {weight:?}, readyz {}",
            c.version,
            cp.readyz()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let bundle_before = cp.bundle();
    let issued_before = cp.issued_on_record();
    let serials_before: Vec<_> = std::fs::read_dir(cp.state.join("issued"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    cp.restart();
    // The first run logged its clean shutdown (the log is appended across restarts).
    let log = cp.log_text();
    assert_eq!(
        log.matches("\"message\":\"stopped\"").count(),
        1,
        "the first run did not log a clean stop: {log}"
    );
    assert_eq!(log.matches("\"message\":\"serving\"").count(), 2, "{log}");

    assert_eq!(cp.bundle(), bundle_before, "the CA survived");
    assert_eq!(cp.issued_on_record(), issued_before);
    for s in &serials_before {
        assert!(
            cp.state.join("issued").join(s).exists(),
            "serial {s:?} lost"
        );
    }
    assert_eq!(
        cp.readyz()["config_version"],
        version,
        "config version survived (no spurious bump)"
    );
    // The old SVID still authenticates, and sees the same version.
    let c = config_of(&poll_config(&cp, &w, 0, Duration::from_secs(5)).unwrap());
    assert_eq!(c.version, version);
    // Replay refused, unused token works.
    let csr = mesh_core::identity::generate_csr(&mesh_core::identity::SpiffeId::parse(id).unwrap())
        .unwrap();
    let r = bootstrap_raw(&cp, &used, &csr.csr_pem);
    assert_eq!(r.reason(), reason::TOKEN_REPLAYED);
    let w2 = bootstrap(&cp, &unused, id);
    assert_eq!(w2.id, id);
    // Renewal over mTLS with the pre-restart SVID.
    let csr = mesh_core::identity::generate_csr(&mesh_core::identity::SpiffeId::parse(id).unwrap())
        .unwrap();
    let body = serde_json::to_vec(&api::RenewRequest {
        csr_pem: csr.csr_pem.clone(),
    })
    .unwrap();
    let r = request(
        cp.api,
        &cp.bundle(),
        Some(&w),
        "POST",
        api::PATH_RENEW,
        body,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["spiffe_id"], id);
    // Renewing for another identity is refused.
    let csr = mesh_core::identity::generate_csr(
        &mesh_core::identity::SpiffeId::parse("spiffe://example.org/ns/shop/sa/admin").unwrap(),
    )
    .unwrap();
    let body = serde_json::to_vec(&api::RenewRequest {
        csr_pem: csr.csr_pem,
    })
    .unwrap();
    let r = request(
        cp.api,
        &cp.bundle(),
        Some(&w),
        "POST",
        api::PATH_RENEW,
        body,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.reason(), reason::CSR_IDENTITY_MISMATCH);

    // Starting with a broken file serves the last good configuration and says why.
    write_mesh(&cfg_dir, "[[services]]\nname = \"x\"\nprotocol = \"udp\"\n");
    cp.restart();
    let ready = cp.readyz();
    assert_eq!(ready["config_version"], version, "{ready}");
    assert_eq!(ready["ready"], true);
    let err = ready["last_config_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("mesh.toml:3"), "{ready}");
    let c = config_of(&poll_config(&cp, &w2, 0, Duration::from_secs(5)).unwrap());
    assert_eq!((c.version, c.config.services.len()), (version, 1));
    assert!(cp.stop(), "SIGTERM must stop it cleanly");
}
