//! Test harness: small backends (HTTP and TCP echo), the real `mesh-proxy` binary started with a
//! generated configuration, and plain clients. The throw-away PKI, free ports and the
//! keep-alive client are `distro_testsupport`'s.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Re-exported for the test files; not every one uses each.
pub use distro_testsupport::free_addr;
#[allow(unused_imports)]
pub use distro_testsupport::http::KeepAlive;
pub use distro_testsupport::pki::Pki;
use serde_json::{json, Value};

pub const TD: &str = "test.mesh";

pub fn id(ns: &str, sa: &str) -> String {
    format!("spiffe://{TD}/ns/{ns}/sa/{sa}")
}

/// How a test backend behaves.
#[derive(Clone, Default)]
pub struct BackendSpec {
    pub name: String,
    pub version: String,
    /// Answer 503 to everything while set.
    pub fail: Arc<AtomicBool>,
}

/// A tiny HTTP/1.1 server on its own thread: echoes who it is and what it saw.
/// `/slow` answers after 2 s.
pub fn http_backend(spec: BackendSpec) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let spec = spec.clone();
            std::thread::spawn(move || backend_conn(s, spec));
        }
    });
    addr
}

fn backend_conn(mut s: TcpStream, spec: BackendSpec) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        // Read one request head (bodies: honour content-length).
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let clen: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        while buf.len() < head_end + clen {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..head_end + clen);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let xfcc = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("x-forwarded-client-cert:")
                    .then(|| l[24..].trim().to_string())
            })
            .unwrap_or_default();
        if path == "/slow" {
            std::thread::sleep(Duration::from_secs(2));
        }
        let (status, body) = if spec.fail.load(Ordering::Relaxed) {
            (
                "503 Service Unavailable",
                format!("name={} failing\n", spec.name),
            )
        } else {
            (
                "200 OK",
                format!(
                    "name={} version={} path={} xfcc={}\n",
                    spec.name, spec.version, path, xfcc
                ),
            )
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A TCP echo server.
pub fn echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    addr
}

/// A running `mesh-proxy`.
pub struct ProxyProc {
    pub name: String,
    pub child: Child,
    pub admin: SocketAddr,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProc {
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
    pub fn access_log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l}"))
            })
            .collect()
    }
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let (s, _, b) = http_get(self.admin, path, &[]);
        (s, b)
    }
    pub fn metrics(&self) -> String {
        self.admin_get("/metrics").1
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
    /// The first number of a `/proc/PID/status` field (`VmRSS` in KiB, `Threads`), 0 when the
    /// process or the field is gone.
    pub fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }
}

pub fn proxy_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mesh-proxy")
}

/// Starts a proxy with `config` (the local JSON file) and waits until `/ready` (or just
/// `/healthz` when `wait_ready` is false).
pub fn start_proxy(dir: &Path, name: &str, config: Value, wait_ready: bool) -> ProxyProc {
    start_proxy_with(dir, name, config, wait_ready, Some(2), None)
}

/// [`start_proxy`] with `--threads N` when `threads` is given (1: the single-threaded
/// runtime; none: the proxy's default, one per CPU it may use), pinned to CPU `cpu` with
/// `taskset` when that is given.
pub fn start_proxy_with(
    dir: &Path,
    name: &str,
    mut config: Value,
    wait_ready: bool,
    threads: Option<usize>,
    cpu: Option<usize>,
) -> ProxyProc {
    let admin = free_addr();
    config["admin"] = json!(admin.to_string());
    let cfg = dir.join(format!("{name}.json"));
    std::fs::write(&cfg, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let stdout = dir.join(format!("{name}.out"));
    let stderr = dir.join(format!("{name}.err"));
    let mut cmd = match cpu {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", &c.to_string()]).arg(proxy_bin());
            t
        }
        None => Command::new(proxy_bin()),
    };
    cmd.args(["run", "--config"]).arg(&cfg);
    if let Some(n) = threads {
        cmd.args(["--threads", &n.to_string()]);
    }
    let child = cmd
        .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
    let mut p = ProxyProc {
        name: name.into(),
        child,
        admin,
        stdout,
        stderr,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let path = if wait_ready { "/ready" } else { "/healthz" };
    loop {
        if !p.alive() {
            panic!("proxy {name} exited early:\n{}", p.stderr_text());
        }
        if let Ok((200, _, _)) = try_http_get(admin, path, &[]) {
            return p;
        }
        if Instant::now() > deadline {
            panic!("proxy {name} not ready after 20 s:\n{}", p.stderr_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test HTTP backend `name`, version `v1`, that does not fail.
pub fn named_backend(name: &str) -> SocketAddr {
    http_backend(BackendSpec {
        name: name.into(),
        version: "v1".into(),
        ..Default::default()
    })
}

/// The mesh section of a client workload `me` whose service `b` is one HTTP endpoint at `b_in`
/// that must present `b_identity` (STRICT mTLS, no routes, no inbound policy).
pub fn mesh_to_b(me: &str, b_in: SocketAddr, b_identity: &str) -> Value {
    mesh(
        me,
        "STRICT",
        json!([{"name": "b", "protocol": "http", "endpoints": [{"address": b_in.to_string(), "identity": b_identity}]}]),
        json!([]),
        json!([]),
    )
}

/// A client proxy's configuration: an outbound listener for `b` at `listen`, the SVID of
/// `ns/{who}/sa/{who}` from `pki`, and [`mesh_to_b`].
pub fn client_config(
    pki: &Pki,
    who: &str,
    listen: SocketAddr,
    b_in: SocketAddr,
    b_identity: &str,
) -> Value {
    json!({
        "outbound": [{"service": "b", "listen": listen}],
        "identity": identity_files(pki, &id(who, who), who),
        "mesh": mesh_to_b(&id(who, who), b_in, b_identity),
    })
}

/// Workload B's proxy configuration: inbound at `b_in` to `app` speaking `protocol`, the SVID
/// of `ns/b/sa/b` from `pki`, mTLS mode `mode` and inbound authorization `authz`.
pub fn server_config(
    pki: &Pki,
    b_in: SocketAddr,
    app: SocketAddr,
    protocol: &str,
    mode: &str,
    authz: Value,
) -> Value {
    json!({
        "inbound": {"listen": b_in, "app": app, "protocol": protocol},
        "identity": identity_files(pki, &id("b", "b"), "b"),
        "mesh": mesh(&id("b", "b"), mode, json!([]), json!([]), authz),
    })
}

/// Identity section for a proxy from files.
pub fn identity_files(pki: &Pki, spiffe_id: &str, stem: &str) -> Value {
    let (c, k) = pki.issue(spiffe_id, stem);
    json!({"cert_chain": c, "key": k, "trust_bundle": pki.bundle})
}

/// `GET` over plain HTTP/1.1 with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    try_http_get(addr, path, headers).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

pub fn try_http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// Checks Prometheus text with the reference parser (python `prometheus_client`), if present.
pub fn check_prometheus_text(text: &str) {
    if !distro_testsupport::require_python(
        "prometheus format check",
        "prometheus_client",
        &distro_testsupport::python_install_step("prometheus_client"),
    ) {
        return;
    }
    let out = distro_testsupport::bin::run_with_input(
        Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families\nn=0\nfor f in text_string_to_metric_families(sys.stdin.read()):\n    n+=len(f.samples)\nprint(n)",
        ])
,
        text.as_bytes(),
    );
    assert!(
        out.status.success(),
        "prometheus_client rejected the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(n > 0, "no samples parsed");
}

/// A mesh section with one upstream service.
pub fn mesh(identity: &str, mode: &str, services: Value, routes: Value, authz: Value) -> Value {
    json!({
        "identity": identity,
        "trust_bundle_pem": "",
        "mtls_mode": mode,
        "tls": mesh_core::api::TlsPolicy::default(),
        "inbound": {"authorization": authz},
        "services": services,
        "routes": routes,
    })
}

/// Value of one sample in Prometheus text (exact series text before the value).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
}

/// Sum of the samples of a metric whose line contains all of `parts`.
pub fn metric_sum(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}
