//! Configuration distribution: snapshots on connect, changes pushed to connected clients within
//! 2 s, per-proxy views, bad changes refused with file/line/field while the old one is kept,
//! acknowledgements, and state that survives a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mesh_core::api::{self, reason, ConfigAck, ConfigResponse};

const FE: &str = "spiffe://example.org/ns/shop/sa/frontend";
const RV: &str = "spiffe://example.org/ns/shop/sa/reviews";

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

/// The 50/50 canary weights (a valid change of [`MESH_V1`]).
fn mesh_50_50() -> String {
    MESH_V1
        .replace("weight = 90", "weight = 50")
        .replace("weight = 10", "weight = 50")
}

/// A bad change: a non-FIPS suite (line 4) and a route to an unknown service.
fn mesh_bad() -> String {
    MESH_V1
        .replace(
            "min_version = \"TLSv1_2\"",
            "min_version = \"TLSv1_2\"\ncipher_suites = [\"TLS13_CHACHA20_POLY1305_SHA256\"]",
        )
        .replace(
            "service = \"reviews\"\nname = \"canary\"",
            "service = \"ratings\"\nname = \"canary\"",
        )
}

/// A control plane watching `<dir>/mesh` (holding [`MESH_V1`]) every 100 ms, with a 3 s
/// long-poll, and a frontend and a reviews workload bootstrapped on it.
fn start_with_two_proxies(
    dir: &std::path::Path,
) -> (ControlPlane, std::path::PathBuf, Workload, Workload) {
    let cfg_dir = dir.join("mesh");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    write_mesh(&cfg_dir, MESH_V1);
    let cp = ControlPlane::start(
        dir,
        &[
            "--config",
            cfg_dir.to_str().unwrap(),
            "--watch-interval",
            "100ms",
            "--long-poll",
            "3s",
        ],
    );
    let fe = bootstrap(&cp, &cp.join_token(FE, "5m"), FE);
    let rv = bootstrap(&cp, &cp.join_token(RV, "5m"), RV);
    (cp, cfg_dir, fe, rv)
}

/// Waits until /readyz reports a refused change (at most 5 s) and returns its message.
fn wait_for_refusal(cp: &ControlPlane) -> (String, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready = cp.readyz();
        if let Some(err) = ready["last_config_error"].as_str() {
            return (err.to_string(), ready);
        }
        assert!(
            Instant::now() < deadline,
            "no refusal reported within 5 s: {ready}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ack(cp: &ControlPlane, w: &Workload, version: u64, accepted: bool, why: &str) -> u16 {
    let body = serde_json::to_vec(&ConfigAck {
        version,
        accepted,
        reason: why.into(),
    })
    .unwrap();
    request(
        cp.api,
        &cp.bundle(),
        Some(w),
        "POST",
        api::PATH_CONFIG_ACK,
        body,
        Duration::from_secs(5),
    )
    .unwrap()
    .status
}

/// On connect each proxy gets the full snapshot of one version, cut to its own part: the
/// frontend its service and routes, reviews only its inbound authorization, both the bundle.
#[test]
fn snapshot_on_connect_is_cut_per_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _cfg, fe, rv) = start_with_two_proxies(dir.path());
    let fe_v1 = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap());
    let rv_v1 = config_of(&poll_config(&cp, &rv, 0, Duration::from_secs(5)).unwrap());
    assert_eq!(fe_v1.version, rv_v1.version);
    assert_eq!(fe_v1.config.identity, FE);
    assert_eq!(fe_v1.config.services.len(), 1);
    assert_eq!(fe_v1.config.routes[0].destinations.len(), 2);
    assert!(fe_v1.config.inbound.authorization.is_empty());
    assert!(
        rv_v1.config.services.is_empty(),
        "reviews may not call anything"
    );
    assert_eq!(rv_v1.config.inbound.authorization[0].name, "frontend-reads");
    assert_eq!(fe_v1.config.trust_bundle_pem, cp.bundle());
}

/// Acknowledgements and rejections are answered 204, counted by outcome, and a rejection's
/// reason is logged.
#[test]
fn acks_and_rejections_are_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, _cfg, fe, rv) = start_with_two_proxies(dir.path());
    let v1 = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap()).version;
    assert_eq!(ack(&cp, &fe, v1, true, ""), 204);
    assert_eq!(ack(&cp, &rv, v1, false, "listener port busy"), 204);
    assert_eq!(
        cp.metric("mesh_control_config_acks_total{accepted=\"true\"}"),
        1.0
    );
    assert_eq!(
        cp.metric("mesh_control_config_acks_total{accepted=\"false\"}"),
        1.0
    );
    assert!(cp.log_text().contains("listener port busy"));
}

/// Two proxies long-poll; a change to the files reaches both within 2 s as the next version,
/// and the push latency is measured.
#[test]
fn change_reaches_waiting_proxies_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, cfg_dir, fe, rv) = start_with_two_proxies(dir.path());
    let v1 = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap()).version;
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
    write_mesh(&cfg_dir, &mesh_50_50());
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
        if c.config.identity == FE {
            assert_eq!(c.config.routes[0].destinations[0].weight, 50);
        }
    }
    assert!(cp.metric("mesh_control_push_latency_seconds_count") >= 2.0);
}

/// A bad change is refused with file, line and field in /readyz and the metrics; the last good
/// version stays current and ready.
#[test]
fn bad_change_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, cfg_dir, fe, _rv) = start_with_two_proxies(dir.path());
    let v1 = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap()).version;
    write_mesh(&cfg_dir, &mesh_bad());
    let (err, ready) = wait_for_refusal(&cp);
    eprintln!("refusal: {err}");
    assert!(
        err.contains("mesh.toml:4: field `tls.cipher_suites`"),
        "{err}"
    );
    assert!(
        err.contains("field `routes.service`") && err.contains("\"ratings\""),
        "{err}"
    );
    assert_eq!(ready["config_version"], v1, "the old configuration is kept");
    assert_eq!(
        ready["ready"], true,
        "still serving the last good configuration"
    );
    assert_eq!(cp.metric("mesh_control_config_last_reload_ok"), 0.0);
    assert_eq!(
        cp.metric("mesh_control_config_reloads_total{result=\"refused\"}"),
        1.0
    );
}

/// After a refused change nothing is pushed: a poll at the current version ends in 304, and a
/// fresh poll still gets the last good configuration.
#[test]
fn refused_change_pushes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, cfg_dir, fe, _rv) = start_with_two_proxies(dir.path());
    let v1 = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap()).version;
    write_mesh(&cfg_dir, &mesh_bad());
    wait_for_refusal(&cp);
    let r = poll_config(&cp, &fe, v1, Duration::from_secs(6)).unwrap();
    assert_eq!(r.status, 304);
    let c = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap());
    assert_eq!(c.version, v1);
    assert_eq!(c.config.routes[0].destinations[0].weight, 90);
}

/// The offline checker reports the same errors as the running control plane, as JSON.
#[test]
fn check_config_reports_the_same_errors_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("mesh");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    write_mesh(&cfg_dir, &mesh_bad());
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
    assert!(
        v["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == "routes.service")),
        "{v}"
    );
}

/// Fixing a refused change publishes the next version and clears the error.
#[test]
fn fixing_a_refused_change_publishes_the_next_version() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, cfg_dir, fe, _rv) = start_with_two_proxies(dir.path());
    let v1 = config_of(&poll_config(&cp, &fe, 0, Duration::from_secs(5)).unwrap()).version;
    write_mesh(&cfg_dir, &mesh_bad());
    wait_for_refusal(&cp);
    write_mesh(&cfg_dir, &mesh_50_50());
    let c = config_of(&poll_config(&cp, &fe, v1, Duration::from_secs(5)).unwrap());
    assert_eq!(c.version, v1 + 1);
    assert_eq!(c.config.routes[0].destinations[0].weight, 50);
    assert!(cp.readyz()["last_config_error"].is_null());
}

/// A control plane that has published an 80/20 change (a version after the first, recorded as
/// current), with one used and one unused join token and the workload bootstrapped by the used
/// one; then restarted.
struct Restarted {
    cp: ControlPlane,
    cfg_dir: std::path::PathBuf,
    version: u64,
    used: String,
    unused: String,
    w: Workload,
    bundle_before: String,
    issued_before: usize,
    serials_before: Vec<std::ffi::OsString>,
}

fn publish_then_restart(dir: &std::path::Path) -> Restarted {
    let cfg_dir = dir.join("mesh");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    write_mesh(&cfg_dir, MESH_V1);
    let mut cp = ControlPlane::start(
        dir,
        &[
            "--config",
            cfg_dir.to_str().unwrap(),
            "--watch-interval",
            "100ms",
        ],
    );
    let used = cp.join_token(FE, "10m");
    let unused = cp.join_token(FE, "10m");
    let w = bootstrap(&cp, &used, FE);
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
    Restarted {
        cp,
        cfg_dir,
        version,
        used,
        unused,
        w,
        bundle_before,
        issued_before,
        serials_before,
    }
}

/// SIGTERM stops the control plane cleanly: the first run logged "stopped" before the second
/// logged "serving", and a final SIGTERM exits 0.
#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = publish_then_restart(dir.path());
    let log = r.cp.log_text();
    assert_eq!(
        log.matches("\"message\":\"stopped\"").count(),
        1,
        "the first run did not log a clean stop: {log}"
    );
    assert_eq!(log.matches("\"message\":\"serving\"").count(), 2, "{log}");
    assert!(r.cp.stop(), "SIGTERM must stop it cleanly");
}

/// A restart keeps the CA (same bundle), every issued serial and the configuration version (no
/// spurious bump); an SVID from before the restart still authenticates and sees that version.
#[test]
fn restart_keeps_ca_serials_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let r = publish_then_restart(dir.path());
    let cp = &r.cp;
    assert_eq!(cp.bundle(), r.bundle_before, "the CA survived");
    assert_eq!(cp.issued_on_record(), r.issued_before);
    for s in &r.serials_before {
        assert!(
            cp.state.join("issued").join(s).exists(),
            "serial {s:?} lost"
        );
    }
    assert_eq!(
        cp.readyz()["config_version"],
        r.version,
        "config version survived (no spurious bump)"
    );
    let c = config_of(&poll_config(cp, &r.w, 0, Duration::from_secs(5)).unwrap());
    assert_eq!(c.version, r.version);
}

/// After a restart a used join token is still refused as a replay and an unused one works.
#[test]
fn restart_keeps_used_tokens_used() {
    let dir = tempfile::tempdir().unwrap();
    let r = publish_then_restart(dir.path());
    let csr = mesh_core::identity::generate_csr(&mesh_core::identity::SpiffeId::parse(FE).unwrap())
        .unwrap();
    let reply = bootstrap_raw(&r.cp, &r.used, &csr.csr_pem);
    assert_eq!(reply.reason(), reason::TOKEN_REPLAYED);
    let w2 = bootstrap(&r.cp, &r.unused, FE);
    assert_eq!(w2.id, FE);
}

fn renew_as(cp: &ControlPlane, w: &Workload, id: &str) -> Reply {
    let csr = mesh_core::identity::generate_csr(&mesh_core::identity::SpiffeId::parse(id).unwrap())
        .unwrap();
    let body = serde_json::to_vec(&api::RenewRequest {
        csr_pem: csr.csr_pem,
    })
    .unwrap();
    request(
        cp.api,
        &cp.bundle(),
        Some(w),
        "POST",
        api::PATH_RENEW,
        body,
        Duration::from_secs(5),
    )
    .unwrap()
}

/// An SVID from before the restart renews over mTLS for its own identity, and not for another.
#[test]
fn restart_keeps_renewal_with_old_svid() {
    let dir = tempfile::tempdir().unwrap();
    let r = publish_then_restart(dir.path());
    let reply = renew_as(&r.cp, &r.w, FE);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["spiffe_id"], FE);
    let reply = renew_as(&r.cp, &r.w, "spiffe://example.org/ns/shop/sa/admin");
    assert_eq!(reply.reason(), reason::CSR_IDENTITY_MISMATCH);
}

/// Starting with a broken file serves the last good configuration and says why (file:line).
#[test]
fn start_with_broken_file_serves_last_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = publish_then_restart(dir.path());
    write_mesh(
        &r.cfg_dir,
        "[[services]]\nname = \"x\"\nprotocol = \"udp\"\n",
    );
    r.cp.restart();
    let ready = r.cp.readyz();
    assert_eq!(ready["config_version"], r.version, "{ready}");
    assert_eq!(ready["ready"], true);
    let err = ready["last_config_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("mesh.toml:3"), "{ready}");
    let c = config_of(&poll_config(&r.cp, &r.w, 0, Duration::from_secs(5)).unwrap());
    assert_eq!((c.version, c.config.services.len()), (r.version, 1));
}
