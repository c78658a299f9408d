//! Test harness: runs the real `mesh-control` binary on free loopback ports and talks to it as
//! a workload would (TLS from `mesh_core::tls`, JSON from `mesh_core::api`).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mesh_core::api::{self, BootstrapRequest, SvidResponse};
use mesh_core::identity::{self, CsrAndKey, SpiffeId};
use mesh_core::tls::{self, ExpectedPeer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub use distro_testsupport::free_port;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mesh-control");
/// Trust domain used by the tests.
pub const TD: &str = "example.org";

/// A configuration folder `root/mesh` holding `mesh.toml` with `text`, as `--config` takes it.
pub fn config_dir(root: &Path, text: &str) -> PathBuf {
    let cfg = root.join("mesh");
    std::fs::create_dir_all(&cfg).unwrap();
    write_config(&cfg, text);
    cfg
}

/// Replaces `dir/mesh.toml` with `text` in one rename, as an operator's tool would: the
/// watching control plane never reads half a file.
pub fn write_config(dir: &Path, text: &str) {
    let tmp = dir.join(".mesh.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("mesh.toml")).unwrap();
}

/// A running control plane.
pub struct ControlPlane {
    pub child: Option<Child>,
    pub api: SocketAddr,
    pub ops: SocketAddr,
    pub state: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
    /// `--state-dir <state>` by default; `--state etcd://...` for a replica.
    pub state_flags: Vec<String>,
    /// For a replica over etcd: the etcd endpoints (comma-separated) and the key prefix.
    pub etcd: Option<(String, String)>,
    /// Extra etcdctl flags to reach that etcd (`--cacert ...` for TLS).
    pub etcdctl_flags: Vec<String>,
}

impl ControlPlane {
    /// Starts `mesh-control run` with `extra` arguments on fresh ports and waits until healthy.
    pub fn start(dir: &Path, extra: &[&str]) -> ControlPlane {
        let state = dir.join("state");
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut cp = ControlPlane {
            child: None,
            api: SocketAddr::from(([127, 0, 0, 1], free_port())),
            ops: SocketAddr::from(([127, 0, 0, 1], free_port())),
            state,
            log: dir.join(format!("control-{}.log", free_port())),
            state_flags: vec![
                "--state-dir".into(),
                dir.join("state").display().to_string(),
            ],
            etcd: None,
            etcdctl_flags: Vec::new(),
            args,
        };
        cp.spawn();
        cp
    }

    /// Starts a replica over etcd (`etcd://<endpoints>/<prefix>`) with `extra` arguments.
    pub fn start_replica(
        dir: &Path,
        endpoints: &str,
        prefix: &str,
        extra: &[&str],
    ) -> ControlPlane {
        let mut cp = Self::replica(dir, &format!("etcd://{endpoints}/{prefix}"), &[]);
        cp.etcd = Some((endpoints.to_string(), prefix.to_string()));
        cp.args = extra.iter().map(|s| s.to_string()).collect();
        cp.spawn();
        cp
    }

    /// A replica over the state `url` with the state flags `state_extra` (TLS files), not
    /// started; `etcd`, `etcdctl_flags` and `args` are for the caller to fill in.
    pub fn replica(dir: &Path, url: &str, state_extra: &[String]) -> ControlPlane {
        // The operator's key that seals CA keys in etcd (0600, as an operator would keep it).
        let key = dir.join("state.key");
        if !key.exists() {
            let mut k = [0u8; 32];
            aws_lc_rs::rand::fill(&mut k).unwrap();
            std::fs::write(&key, hex::encode(k)).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        ControlPlane {
            child: None,
            api: SocketAddr::from(([127, 0, 0, 1], free_port())),
            ops: SocketAddr::from(([127, 0, 0, 1], free_port())),
            state: dir.join("unused-state-dir"),
            log: dir.join(format!("replica-{}.log", free_port())),
            args: Vec::new(),
            state_flags: [
                "--state".to_string(),
                url.to_string(),
                "--state-key-file".into(),
                key.display().to_string(),
            ]
            .into_iter()
            .chain(state_extra.iter().cloned())
            .collect(),
            etcd: None,
            etcdctl_flags: Vec::new(),
        }
    }

    /// Starts the process (and waits until healthy), for a control plane made by [`Self::replica`].
    pub fn start_prepared(&mut self) {
        self.spawn();
    }

    /// Kills the process at once (SIGKILL), as a machine failure would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process and waits until it serves. Healthy means *this* process said
    /// `serving` in its own log (it bound both ports) and answers: a port probe alone could
    /// reach another test's process that took a port `free_port` handed out to both. On the
    /// first start, a port taken meanwhile ("cannot listen") is replaced and the start retried;
    /// a restart keeps its addresses (proxies are configured with them).
    fn spawn(&mut self) {
        let first = !self.log.exists();
        for attempt in 1..=3 {
            match self.try_spawn() {
                Ok(()) => return,
                Err(log) if first && attempt < 3 && log.contains("cannot listen") => {
                    eprintln!("mesh-control lost a port to another process, retrying: {log}");
                    self.api = SocketAddr::from(([127, 0, 0, 1], free_port()));
                    self.ops = SocketAddr::from(([127, 0, 0, 1], free_port()));
                }
                Err(log) => panic!("mesh-control did not start: {log}"),
            }
        }
    }

    /// One start; `Err` with this start's log when it exited or did not serve within 20 s.
    fn try_spawn(&mut self) -> Result<(), String> {
        // Appended, so a restart keeps the previous run's log (its shutdown lines).
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let offset = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let child = Command::new(BIN)
            .arg("run")
            .args(&self.state_flags)
            .arg("--trust-domain")
            .arg(TD)
            .arg("--listen")
            .arg(self.api.to_string())
            .arg("--ops")
            .arg(self.ops.to_string())
            .args(&self.args)
            // The default level (info): its `serving` line is what says this process is up.
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mesh-control");
        self.child = Some(child);
        let this_start = |cp: &Self| cp.log_text().get(offset..).unwrap_or_default().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(format!("exited early ({status}): {}", this_start(self)));
                }
            }
            let text = this_start(self);
            if text.contains("\"message\":\"serving\"")
                && text.contains(&format!("\"ops\":\"{}\"", self.ops))
                && self.ops_get("/healthz").0 == 200
                && TcpStream::connect(self.api).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill9();
        Err(format!("not serving within 20 s: {}", this_start(self)))
    }

    /// Stops it with SIGTERM and returns whether it exited 0 within 10 s.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Starts it again with the same state, ports and arguments.
    pub fn restart(&mut self) {
        assert!(self.stop(), "graceful stop failed: {}", self.log_text());
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Plain HTTP GET on the ops port: (status, body).
    pub fn ops_get(&self, path: &str) -> (u16, String) {
        distro_testsupport::http::get(self.ops, path).unwrap_or((0, String::new()))
    }

    /// The `/readyz` JSON.
    pub fn readyz(&self) -> serde_json::Value {
        serde_json::from_str(&self.ops_get("/readyz").1).unwrap_or_default()
    }

    /// A sample's value from `/metrics` (0 when absent).
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.ops_get("/metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|r| r.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// The trust bundle written to the state directory.
    pub fn bundle(&self) -> String {
        match &self.etcd {
            None => std::fs::read_to_string(self.state.join("bundle.pem")).unwrap(),
            Some((endpoints, prefix)) => {
                let out = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", endpoints])
                    .args(&self.etcdctl_flags)
                    .args(["get", "--print-value-only"])
                    .arg(format!("/{prefix}/bundle.pem"))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8(out.stdout)
                    .unwrap()
                    .trim_end()
                    .to_string()
                    + "\n"
            }
        }
    }

    /// `mesh-control token create` for `identity`.
    pub fn join_token(&self, identity: &str, ttl: &str) -> String {
        let out = Command::new(BIN)
            .args(["token", "create"])
            .args(&self.state_flags)
            .args(["--identity", identity, "--ttl", ttl])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Runs a `mesh-control` subcommand against this state directory.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .args(&self.state_flags)
            .output()
            .unwrap()
    }

    /// Revokes every SVID this control plane issued: removes their records from `issued/`.
    pub fn revoke_all(&self) {
        for e in std::fs::read_dir(self.state.join("issued")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }

    /// Number of certificates on record in the state directory.
    pub fn issued_on_record(&self) -> usize {
        std::fs::read_dir(self.state.join("issued"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A workload's credentials.
#[derive(Clone)]
pub struct Workload {
    pub id: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub chain_pem: String,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub bundle_pem: String,
}

/// A response: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
    pub fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One HTTPS request to the control plane, verifying it as `spiffe://TD/ns/mesh-system/sa/mesh-control`.
pub fn request(
    addr: SocketAddr,
    bundle_pem: &str,
    client: Option<&Workload>,
    method: &str,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Reply, String> {
    request_from(None, addr, bundle_pem, client, method, path, body, timeout)
}

/// [`request`] from the local address `source` (e.g. 127.0.0.2, another peer on loopback).
#[allow(clippy::too_many_arguments)]
pub fn request_from(
    source: Option<std::net::IpAddr>,
    addr: SocketAddr,
    bundle_pem: &str,
    client: Option<&Workload>,
    method: &str,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Reply, String> {
    let cfg = client_config(bundle_pem, client)?;
    rt().block_on(async move {
        let fut = async {
            let tcp = match source {
                None => tokio::net::TcpStream::connect(addr).await,
                Some(ip) => {
                    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                    sock.bind(SocketAddr::new(ip, 0))
                        .map_err(|e| e.to_string())?;
                    sock.connect(addr).await
                }
            }
            .map_err(|e| e.to_string())?;
            let mut send = http_over_tls(tcp, cfg).await?;
            exchange(&mut send, method, path, body).await
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| "timed out".to_string())?
    })
}

/// One mTLS keep-alive connection to the control plane as a workload: every request of a
/// session goes over the same connection (the control plane checks the SVID per request).
pub struct Session {
    rt: tokio::runtime::Runtime,
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Session {
    /// Connects as `w`, trusting `bundle_pem` for the control plane's certificate.
    pub fn open(cp: &ControlPlane, bundle_pem: &str, w: &Workload) -> Session {
        let cfg = client_config(bundle_pem, Some(w)).unwrap();
        let rt = rt();
        let addr = cp.api;
        let send = rt
            .block_on(async move {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| e.to_string())?;
                http_over_tls(tcp, cfg).await
            })
            .unwrap();
        Session { rt, send }
    }

    /// `GET /v1/config?since=0` on this connection (answered at once); an error if the
    /// connection is gone.
    pub fn poll_now(&mut self) -> Result<Reply, String> {
        let send = &mut self.send;
        self.rt.block_on(async move {
            send.ready().await.map_err(|e| format!("connection: {e}"))?;
            let path = format!("{}?since=0", api::PATH_CONFIG);
            tokio::time::timeout(
                Duration::from_secs(5),
                exchange(send, "GET", &path, Vec::new()),
            )
            .await
            .map_err(|_| "timed out".to_string())?
        })
    }
}

/// The TLS client configuration of a request to the control plane: as the workload `client`, or
/// unauthenticated (bootstrap), verifying the control plane as
/// `spiffe://TD/ns/mesh-system/sa/mesh-control` under `bundle_pem`.
fn client_config(
    bundle_pem: &str,
    client: Option<&Workload>,
) -> Result<rustls::ClientConfig, String> {
    let roots = tls::roots_from_pem(bundle_pem).map_err(|e| e.to_string())?;
    let expected = ExpectedPeer::Exact(SpiffeId::parse(&api::control_plane_id(TD)).unwrap());
    match client {
        Some(w) => tls::spiffe_client_config(roots, w.chain.clone(), w.key.clone_key(), expected),
        None => tls::spiffe_bootstrap_client_config(roots, expected),
    }
    .map_err(|e| e.to_string())
}

/// TLS, then HTTP/1.1, over a connected socket to the control plane's API.
async fn http_over_tls(
    tcp: tokio::net::TcpStream,
    cfg: rustls::ClientConfig,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let name = ServerName::try_from(api::CONTROL_PLANE_SERVER_NAME).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

/// One request on an open connection, and its whole answer.
async fn exchange(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply, String> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "mesh-control")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(Reply { status, body })
}

/// Bootstraps `csr` with `token`.
pub fn bootstrap_raw(cp: &ControlPlane, token: &str, csr_pem: &str) -> Reply {
    let body = serde_json::to_vec(&BootstrapRequest {
        token: token.into(),
        csr_pem: csr_pem.into(),
    })
    .unwrap();
    request(
        cp.api,
        &cp.bundle(),
        None,
        "POST",
        api::PATH_BOOTSTRAP,
        body,
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Bootstraps a workload for `id` with `token` and returns its credentials.
pub fn bootstrap(cp: &ControlPlane, token: &str, id: &str) -> Workload {
    let csr = identity::generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let r = bootstrap_raw(cp, token, &csr.csr_pem);
    assert_eq!(
        r.status,
        200,
        "bootstrap {id}: {}",
        String::from_utf8_lossy(&r.body)
    );
    workload_from(&csr, &r)
}

/// Credentials from an SVID response.
pub fn workload_from(csr: &CsrAndKey, r: &Reply) -> Workload {
    let svid: SvidResponse = serde_json::from_slice(&r.body).unwrap();
    Workload {
        id: svid.spiffe_id,
        chain: identity::certs_from_pem(&svid.svid_chain_pem).unwrap(),
        chain_pem: svid.svid_chain_pem,
        key: Arc::new(csr.key_der()),
        bundle_pem: svid.trust_bundle_pem,
    }
}

/// `GET /v1/config?since=` as `w`.
pub fn poll_config(
    cp: &ControlPlane,
    w: &Workload,
    since: u64,
    timeout: Duration,
) -> Result<Reply, String> {
    request(
        cp.api,
        &cp.bundle(),
        Some(w),
        "GET",
        &format!("{}?since={since}", api::PATH_CONFIG),
        Vec::new(),
        timeout,
    )
}

/// Descriptors the process `pid` holds open now (`/proc/PID/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `POST /v1/bootstrap` as `source` with a fresh CSR for `id`.
pub fn bootstrap_from(
    cp: &ControlPlane,
    source: std::net::IpAddr,
    token: &str,
    id: &str,
) -> Result<Reply, String> {
    let csr = identity::generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let body = serde_json::to_vec(&BootstrapRequest {
        token: token.into(),
        csr_pem: csr.csr_pem,
    })
    .unwrap();
    request_from(
        Some(source),
        cp.api,
        &cp.bundle(),
        None,
        "POST",
        api::PATH_BOOTSTRAP,
        body,
        Duration::from_secs(10),
    )
}

/// Runs openssl with `args`; returns (success, stdout+stderr). Panics when openssl is missing.
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed for this test (apt-get install openssl)");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// mTLS handshake and one echo between `server` and `client` workloads, both verifying the
/// other's SPIFFE ID against their own trust bundle.
pub fn mtls_handshake(server: &Workload, client: &Workload) -> Result<(), String> {
    let server_cfg = tls::spiffe_server_config(
        tls::roots_from_pem(&server.bundle_pem).map_err(|e| e.to_string())?,
        server.chain.clone(),
        server.key.clone_key(),
        tls::ClientAuth::Required,
    )
    .map_err(|e| e.to_string())?;
    let client_cfg = tls::spiffe_client_config(
        tls::roots_from_pem(&client.bundle_pem).map_err(|e| e.to_string())?,
        client.chain.clone(),
        client.key.clone_key(),
        ExpectedPeer::Exact(SpiffeId::parse(&server.id).unwrap()),
    )
    .map_err(|e| e.to_string())?;
    let want_client = client.id.clone();
    rt().block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut tls = acceptor
                .accept(tcp)
                .await
                .map_err(|e| format!("server side: {e}"))?;
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first().cloned())
                .ok_or("no client cert")?;
            let id = identity::spiffe_id_of(&peer).map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            tls.write_all(&buf).await.map_err(|e| e.to_string())?;
            tls.shutdown().await.ok();
            Ok::<String, String>(id.to_string())
        });
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
        let client = async {
            let mut tls = connector
                .connect(ServerName::try_from("workload").unwrap(), tcp)
                .await
                .map_err(|e| format!("client side: {e}"))?;
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf)
                .await
                .map_err(|e| format!("client read: {e}"))?;
            Ok::<(), String>(())
        };
        let c = tokio::time::timeout(Duration::from_secs(5), client)
            .await
            .map_err(|_| "client timed out".to_string())?;
        let s = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .map_err(|_| "server timed out".to_string())?;
        let seen = s.map_err(|e| e.to_string())??;
        c?;
        if seen != want_client {
            return Err(format!("server saw {seen}, expected {want_client}"));
        }
        Ok(())
    })
}
