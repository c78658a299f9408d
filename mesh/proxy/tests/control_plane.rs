//! With the real `mesh-control`: bootstrap by join token and by service-account JWT (key made
//! in the proxy, only the CSR sent), configuration from the control plane, rotation half-way
//! through the SVID lifetime under steady load with zero failed requests and no dropped
//! connection, and the last known configuration kept while the control plane is away.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The `mesh-control` binary: next to ours in the target directory, built once if absent.
fn control_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_mesh-proxy"))
        .parent()
        .map(Path::to_path_buf);
    let candidates = [
        profile_dir.map(|d| d.join("mesh-control")),
        Some(target.join("debug/mesh-control")),
    ];
    for c in candidates.iter().flatten() {
        if c.exists() {
            return c.clone();
        }
    }
    eprintln!("mesh-control binary not found; building it once with `cargo build -p mesh-control` (integration tests need the real control plane)");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "mesh-control"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p mesh-control failed");
    target.join("debug/mesh-control")
}

struct Control {
    bin: PathBuf,
    child: Option<Child>,
    state: PathBuf,
    api: SocketAddr,
    ops: SocketAddr,
    log: PathBuf,
    args: Vec<String>,
}

impl Control {
    fn start(dir: &Path, config_dir: &Path, extra: &[&str]) -> Control {
        let mut c = Control {
            bin: control_bin(),
            child: None,
            state: dir.join("cp-state"),
            api: free_addr(),
            ops: free_addr(),
            log: dir.join("control.log"),
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        c.args
            .extend(["--config".to_string(), config_dir.display().to_string()]);
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("--state-dir")
            .arg(&self.state)
            .args([
                "--trust-domain",
                TD,
                "--listen",
                &self.api.to_string(),
                "--ops",
                &self.ops.to_string(),
            ])
            .args(["--watch-interval", "200ms", "--long-poll", "3s"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(try_http_get(self.ops, "/healthz", &[]), Ok((200, _, _)))
                && std::net::TcpStream::connect(self.api).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "mesh-control did not start: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn token(&self, identity: &str) -> String {
        let out = Command::new(&self.bin)
            .args(["token", "create", "--state-dir"])
            .arg(&self.state)
            .args(["--identity", identity, "--ttl", "10m"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mesh_toml(b_in: SocketAddr) -> String {
    distro_testsupport::mesh::a_calls_b(&id("a", "a"), &id("b", "b"), b_in, &["/api"])
}

fn cp_section(cp: &Control, token_file: &Path) -> Value {
    json!({
        "address": cp.api,
        "ca_bundle": cp.state.join("bundle.pem"),
        "token_file": token_file,
        "backoff_max_ms": 1000,
    })
}

struct Setup {
    dir: tempfile::TempDir,
    cp: Control,
    a: ProxyProc,
    b: ProxyProc,
    a_out: SocketAddr,
}

fn setup(svid_ttl: &str, extra_cp: &[&str], b_token: Option<String>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("mesh");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let b_in = free_addr();
    std::fs::write(cfg_dir.join("mesh.toml"), mesh_toml(b_in)).unwrap();
    let mut args = vec!["--svid-ttl", svid_ttl];
    args.extend_from_slice(extra_cp);
    let cp = Control::start(dir.path(), &cfg_dir, &args);
    let backend = named_backend("b");
    let b_token_file = dir.path().join("b.token");
    std::fs::write(
        &b_token_file,
        b_token.unwrap_or_else(|| cp.token(&id("b", "b"))),
    )
    .unwrap();
    let a_token_file = dir.path().join("a.token");
    std::fs::write(&a_token_file, cp.token(&id("a", "a"))).unwrap();
    let b = start_proxy(
        dir.path(),
        "b",
        json!({"inbound": {"listen": b_in, "app": backend, "protocol": "http"}, "control_plane": cp_section(&cp, &b_token_file)}),
        true,
    );
    let a_out = free_addr();
    let a = start_proxy(
        dir.path(),
        "a",
        json!({"outbound": [{"service": "b", "listen": a_out}], "control_plane": cp_section(&cp, &a_token_file)}),
        true,
    );
    Setup {
        dir,
        cp,
        a,
        b,
        a_out,
    }
}

fn json_of(p: &ProxyProc, path: &str) -> Value {
    serde_json::from_str(&p.admin_get(path).1).unwrap_or_default()
}

/// Bootstrap with join tokens, configuration from the control plane, and a certificate
/// rotation (12 s SVIDs, renewed about half-way) under steady load: zero failed requests, the
/// application's keep-alive connection is never dropped, and the mesh connection between the
/// proxies survives the rotation.
#[test]
fn rotation_under_steady_load_fails_no_request() {
    let s = setup("12s", &[], None);
    assert_eq!(json_of(&s.a, "/certs")["spiffe_id"], id("a", "a"));
    assert_eq!(json_of(&s.b, "/config")["config_source"], "control-plane");
    let (st, _, body) = http_get(s.a_out, "/api/x", &[]);
    assert_eq!(st, 200, "{body}\n{}", s.a.stderr_text());
    assert!(
        body.contains(&format!("xfcc=URI={}", id("a", "a"))),
        "{body}"
    );
    assert_eq!(
        http_get(s.a_out, "/admin", &[]).0,
        403,
        "policy from the control plane applies"
    );
    let serial_a = json_of(&s.a, "/certs")["serial"].clone();
    let serial_b = json_of(&s.b, "/certs")["serial"].clone();
    let handshakes_before = metric_sum(
        &s.b.metrics(),
        "mesh_proxy_tls_handshakes_total",
        &["result=\"ok\""],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // Two keep-alive clients (their connection must never be dropped) and one that opens a new
    // connection per request (new handshakes all along the rotation).
    for kind in 0..3 {
        let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), s.a_out);
        threads.push(std::thread::spawn(move || {
            let mut c = KeepAlive::new(addr);
            let mut reconnects = 0;
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = if kind < 2 {
                    let before = c.reconnects();
                    let r = c.get_or_reconnect("/api/steady").map(|(s, _)| s);
                    reconnects += c.reconnects() - before;
                    r
                } else {
                    try_http_get(addr, "/api/fresh", &[]).map(|(s, _, _)| s)
                };
                match r {
                    Ok(200) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{other:?}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (reconnects, errors)
        }));
    }
    // Long enough for two rotations of each proxy.
    std::thread::sleep(Duration::from_secs(16));
    stop.store(true, Ordering::Relaxed);
    let mut reconnects = 0;
    let mut errors = Vec::new();
    for t in threads {
        let (r, e) = t.join().unwrap();
        reconnects += r;
        errors.extend(e);
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("rotation under load: {ok} ok, {failed} failed, {reconnects} keep-alive reconnects");
    assert_eq!(
        failed,
        0,
        "failed requests during rotation: {errors:?}\nA:\n{}\nB:\n{}",
        s.a.stderr_text(),
        s.b.stderr_text()
    );
    assert_eq!(
        reconnects, 0,
        "a keep-alive connection was dropped during rotation"
    );
    assert!(ok > 500, "too little load: {ok}");
    assert_ne!(
        json_of(&s.a, "/certs")["serial"],
        serial_a,
        "A did not rotate"
    );
    assert_ne!(
        json_of(&s.b, "/certs")["serial"],
        serial_b,
        "B did not rotate"
    );
    let rotations = metric_sum(&s.a.metrics(), "mesh_proxy_cert_rotations_total", &[]);
    assert!(
        rotations >= 3.0,
        "A installed {rotations} certificates (bootstrap + 2 renewals expected)"
    );
    let handshakes_after = metric_sum(
        &s.b.metrics(),
        "mesh_proxy_tls_handshakes_total",
        &["result=\"ok\""],
    );
    assert!(
        handshakes_after - handshakes_before <= 2.0,
        "mesh connection A→B was re-established {} times during rotation",
        handshakes_after - handshakes_before
    );
    drop(s.dir);
}

/// With the control plane gone, the proxies keep serving with the last configuration and
/// certificate and report it (`/ready` stale, `mesh_proxy_control_plane_connected 0`); when it
/// comes back they reconnect within the backoff cap.
#[test]
fn control_plane_outage_keeps_last_config() {
    let mut s = setup("1h", &[], None);
    assert_eq!(http_get(s.a_out, "/api/x", &[]).0, 200);
    s.cp.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = json_of(&s.a, "/ready");
        if r["stale"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "A never noticed the outage: {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..20 {
        assert_eq!(
            http_get(s.a_out, "/api/x", &[]).0,
            200,
            "serving must go on during the outage"
        );
    }
    let (code, _) = s.a.admin_get("/ready");
    assert_eq!(code, 200, "still ready on the last known configuration");
    let m = s.a.metrics();
    assert_eq!(
        metric_value(&m, "mesh_proxy_control_plane_connected"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "mesh_proxy_config_stale"),
        Some(1.0),
        "{m}"
    );
    check_prometheus_text(&m);

    s.cp.spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if json_of(&s.a, "/ready")["stale"] == false && json_of(&s.b, "/ready")["stale"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxies did not reconnect: {}",
            s.a.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        metric_value(&s.a.metrics(), "mesh_proxy_control_plane_connected"),
        Some(1.0)
    );
    assert_eq!(http_get(s.a_out, "/api/x", &[]).0, 200);
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Bootstrap with a Kubernetes-style service-account token (ES256 JWT signed by a key whose
/// public half the control plane is given).
#[test]
fn bootstrap_with_service_account_token() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    // SubjectPublicKeyInfo for P-256: fixed prefix + the uncompressed point.
    let mut spki = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.extend_from_slice(key.public_key().as_ref());
    let pem = mesh_core::identity::pem_encode("PUBLIC KEY", &spki);
    let keydir = tempfile::tempdir().unwrap();
    let pub_path = keydir.path().join("sa-issuer.pub.pem");
    std::fs::write(&pub_path, pem).unwrap();

    let exp = chrono::Utc::now().timestamp() + 600;
    let header = b64url(br#"{"alg":"ES256","typ":"JWT"}"#);
    let claims = b64url(
        json!({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:b:b", "aud": [TD], "exp": exp})
            .to_string()
            .as_bytes(),
    );
    let signing_input = format!("{header}.{claims}");
    let sig = key.sign(&rng, signing_input.as_bytes()).unwrap();
    let jwt = format!("{signing_input}.{}", b64url(sig.as_ref()));

    let s = setup(
        "1h",
        &["--sa-issuer-key", pub_path.to_str().unwrap()],
        Some(jwt),
    );
    assert_eq!(json_of(&s.b, "/certs")["spiffe_id"], id("b", "b"));
    assert_eq!(http_get(s.a_out, "/api/x", &[]).0, 200);
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A join token that was already used is refused by the control plane, and the proxy stops
/// with exit code 4 and says what to do instead of retrying forever.
#[test]
fn replayed_join_token_stops_the_proxy() {
    let s = setup("1h", &[], None);
    let cfg = s.dir.path().join("again.json");
    std::fs::write(
        &cfg,
        json!({
            "admin": free_addr(),
            "outbound": [{"service": "b", "listen": free_addr()}],
            "control_plane": cp_section(&s.cp, &s.dir.path().join("a.token")),
        })
        .to_string(),
    )
    .unwrap();
    let mut child = Command::new(proxy_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("proxy kept running with a replayed token");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(
        err.contains("token_replayed") && err.contains("token create"),
        "{err}"
    );
}
