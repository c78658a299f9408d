//! The running control plane: the TLS API of [`mesh_core::api`], the ops endpoint, the watcher
//! that reloads configuration and CA changes, and graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mesh_core::api::{
    self, reason, BootstrapRequest, ConfigAck, ConfigResponse, ErrorBody, RenewRequest,
    SvidResponse,
};
use mesh_core::identity::{self, SpiffeId};
use rcgen::CertificateSigningRequestParams;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::ca::{self, Ca, Issued};
use crate::config::{self, MeshConfig};
use crate::issuance::{self, IssuedRecord};
use crate::limits::ConnLimits;
use crate::metrics::Metrics;
use crate::state::{read_json, write_json, StateDir};
use crate::tokens::{self, Claim, Refusal, SaIssuer};

/// Settings of `mesh-control run`.
pub struct Settings {
    /// State directory.
    pub state_dir: PathBuf,
    /// Configuration directory or file, if any.
    pub config: Option<PathBuf>,
    /// TLS API address.
    pub listen: String,
    /// Ops address.
    pub ops: String,
    /// SVID lifetime (inside [`crate::durations::SVID_TTL`]).
    pub svid_ttl: Duration,
    /// Time a client has to complete the TLS handshake on the API.
    pub handshake_timeout: Duration,
    /// Time a client has to send its request headers (also bounds an idle keep-alive).
    pub header_read_timeout: Duration,
    /// Time a client has to send a request body it declared.
    pub body_read_timeout: Duration,
    /// Open API connections in all; more are closed at once.
    pub max_connections: usize,
    /// Open API connections from one IP address; more are closed at once.
    pub max_connections_per_peer: usize,
    /// Trusted service-account token issuers.
    pub sa_issuers: Vec<SaIssuer>,
    /// How often configuration and CA state are checked for changes.
    pub watch_interval: Duration,
    /// How long a config long-poll is held.
    pub long_poll: Duration,
    /// The FIPS self-report, served on `/fips`.
    pub fips_report: distro_schema::FipsSelfCheck,
}

/// One configuration version as distributed.
pub struct Snapshot {
    /// Version.
    pub version: u64,
    /// The mesh configuration.
    pub mesh: Arc<MeshConfig>,
    /// The trust bundle.
    pub bundle: String,
    /// When it became current.
    pub changed_at: Instant,
}

/// `state/config.json`: the last good configuration and its version.
#[derive(Serialize, Deserialize)]
struct StoredConfig {
    version: u64,
    digest: String,
    bundle_digest: String,
    config: MeshConfig,
}

#[derive(Default, Serialize)]
struct ProxyStatus {
    acked_version: u64,
    accepted: bool,
    reason: String,
}

struct Shared {
    settings: Settings,
    state: StateDir,
    trust_domain: String,
    ca: RwLock<Arc<Ca>>,
    tls: RwLock<Arc<rustls::ServerConfig>>,
    tls_issued_at: Mutex<Instant>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    join_lock: tokio::sync::Mutex<()>,
    metrics: Metrics,
    config_error: Mutex<Option<String>>,
    ever_good_config: std::sync::atomic::AtomicBool,
    proxies: Mutex<HashMap<String, ProxyStatus>>,
    shutdown: watch::Receiver<bool>,
    limits: Arc<ConnLimits>,
    /// Unix second of the last "connection refused" warning (one per second at most).
    last_limit_warning: std::sync::atomic::AtomicU64,
}

fn digest_str(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        s.as_bytes(),
    ))
}

/// Issues the control plane's own serving SVID and builds the TLS server configuration.
fn build_tls(ca: &Ca, trust_domain: &str) -> anyhow::Result<rustls::ServerConfig> {
    let id = SpiffeId::parse(&api::control_plane_id(trust_domain))?;
    let csr = identity::generate_csr(&id)?;
    let params = CertificateSigningRequestParams::from_pem(&csr.csr_pem)?;
    let issued = ca.issue_api(&params, &id, Duration::from_secs(24 * 3600))?;
    let chain = identity::certs_from_pem(&issued.chain_pem)?;
    let roots = mesh_core::tls::roots_from_pem(ca.bundle_pem())?;
    let mut cfg = mesh_core::tls::spiffe_server_config(
        roots,
        chain,
        csr.key_der(),
        mesh_core::tls::ClientAuth::Optional,
    )?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The TLS configuration the API serves with, for the FIPS self-report (built on an ephemeral
/// CA in a temporary state directory, exactly as [`run`] builds it).
pub fn self_check_config() -> anyhow::Result<distro_schema::TlsConfigReport> {
    let dir = std::env::temp_dir().join(format!("mesh-control-fips-check-{}", std::process::id()));
    let result = (|| {
        let state = StateDir::open(&dir)?;
        ca::init(&state, "fips-check.invalid")?;
        let ca = Ca::load(&state, "fips-check.invalid")?;
        let cfg = build_tls(&ca, "fips-check.invalid")?;
        Ok(mesh_core::tls::describe_server("control-api-server", &cfg))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs the control plane until SIGTERM/SIGINT.
pub async fn run(settings: Settings, trust_domain_flag: Option<String>) -> anyhow::Result<()> {
    // Fail closed on a lifetime no certificate should have (0 s, or one that overflows dates).
    crate::durations::SVID_TTL.check(settings.svid_ttl)?;
    if settings.max_connections == 0 || settings.max_connections_per_peer == 0 {
        anyhow::bail!("--max-connections and --max-connections-per-peer must be at least 1");
    }
    let state = StateDir::open(&settings.state_dir)?;
    let mut trust_domain = ca::trust_domain(&state)?;
    if trust_domain.is_empty() {
        let td = trust_domain_flag
            .clone()
            .ok_or_else(|| anyhow::anyhow!("{} holds no CA yet: pass --trust-domain to create one (or run `mesh-control ca init` / `ca import`)", state.root().display()))?;
        SpiffeId::parse(&format!("spiffe://{td}"))?;
        let gen = ca::init(&state, &td)?;
        info!(trust_domain = %td, generation = gen, "created a new self-signed CA");
        trust_domain = td;
    } else if let Some(td) = &trust_domain_flag {
        if td != &trust_domain {
            anyhow::bail!(
                "--trust-domain {td} differs from the trust domain {trust_domain} of the CA in {}",
                state.root().display()
            );
        }
    }
    let ca = Arc::new(Ca::load(&state, &trust_domain)?);
    let tls = build_tls(&ca, &trust_domain)?;

    // Configuration: the last good one from the state directory, then the files.
    let stored: Option<StoredConfig> = read_json(&state.config())?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let initial = Snapshot {
        version: stored.as_ref().map(|s| s.version).unwrap_or(0),
        mesh: Arc::new(stored.map(|s| s.config).unwrap_or_default()),
        bundle: ca.bundle_pem().to_string(),
        changed_at: Instant::now(),
    };
    let (snap_tx, _) = watch::channel(Arc::new(initial));
    let shared = Arc::new(Shared {
        state: state.clone(),
        trust_domain: trust_domain.clone(),
        ca: RwLock::new(ca.clone()),
        tls: RwLock::new(Arc::new(tls)),
        tls_issued_at: Mutex::new(Instant::now()),
        snapshot: snap_tx,
        join_lock: tokio::sync::Mutex::new(()),
        metrics: Metrics::default(),
        config_error: Mutex::new(None),
        ever_good_config: std::sync::atomic::AtomicBool::new(settings.config.is_none()),
        proxies: Mutex::new(HashMap::new()),
        shutdown: shutdown_rx,
        limits: ConnLimits::new(settings.max_connections, settings.max_connections_per_peer),
        last_limit_warning: std::sync::atomic::AtomicU64::new(0),
        settings,
    });
    shared
        .metrics
        .ca_generation
        .store(ca.active_gen.into(), Ordering::Relaxed);
    if read_json::<StoredConfig>(&state.config())?.is_some() {
        shared.ever_good_config.store(true, Ordering::Relaxed);
    }
    let files_digest = reload_config(&shared, None);

    let api = TcpListener::bind(&shared.settings.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on API address {}: {e}",
                shared.settings.listen
            )
        })?;
    let ops = TcpListener::bind(&shared.settings.ops).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on ops address {}: {e}", shared.settings.ops)
    })?;
    info!(
        api = %api.local_addr()?,
        ops = %ops.local_addr()?,
        trust_domain = %trust_domain,
        ca_generation = ca.active_gen,
        config_version = shared.snapshot.borrow().version,
        fips_module = %shared.settings.fips_report.module_version_string,
        "serving"
    );

    let watcher = tokio::spawn(watch_loop(shared.clone(), files_digest));
    let api_task = tokio::spawn(api_loop(shared.clone(), api));
    let ops_task = tokio::spawn(ops_loop(shared.clone(), ops));

    shutdown_signal().await;
    info!("shutting down: no new connections, finishing open requests");
    let _ = shutdown_tx.send(true);
    watcher.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = api_task.await;
        let _ = ops_task.await;
    })
    .await;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Digest of the raw configuration files (cheap change detection).
fn files_digest(shared: &Shared) -> String {
    let Some(path) = &shared.settings.config else {
        return String::new();
    };
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut files = Vec::new();
    if path.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    files.push(p);
                }
            }
        }
        files.sort();
    } else {
        files.push(path.clone());
    }
    for f in files {
        ctx.update(f.display().to_string().as_bytes());
        ctx.update(&std::fs::read(&f).unwrap_or_default());
    }
    hex::encode(ctx.finish())
}

/// Reloads configuration files and publishes a new version when something changed. Returns the
/// digest of the files it looked at.
fn reload_config(shared: &Shared, previous_files: Option<&str>) -> String {
    let digest = files_digest(shared);
    if previous_files == Some(digest.as_str()) {
        return digest;
    }
    let current = shared.snapshot.borrow().clone();
    let mesh = match &shared.settings.config {
        None => current.mesh.clone(),
        Some(path) => match config::load(path, &shared.trust_domain) {
            Ok(c) => {
                shared
                    .metrics
                    .config_last_reload_ok
                    .store(1, Ordering::Relaxed);
                if let Ok(mut e) = shared.config_error.lock() {
                    *e = None;
                }
                shared.ever_good_config.store(true, Ordering::Relaxed);
                Arc::new(c)
            }
            Err(errors) => {
                shared
                    .metrics
                    .config_last_reload_ok
                    .store(0, Ordering::Relaxed);
                shared.metrics.reload("refused");
                let msg = errors.to_string();
                warn!(errors = %msg, kept_version = current.version, "configuration change refused; still serving the last good configuration");
                if let Ok(mut e) = shared.config_error.lock() {
                    *e = Some(msg);
                }
                return digest;
            }
        },
    };
    let bundle = shared
        .ca
        .read()
        .map(|c| c.bundle_pem().to_string())
        .unwrap_or_default();
    publish(shared, mesh, bundle);
    digest
}

/// Publishes `mesh` + `bundle` as a new version if either differs from the current one.
fn publish(shared: &Shared, mesh: Arc<MeshConfig>, bundle: String) {
    let current = shared.snapshot.borrow().clone();
    let stored: Option<StoredConfig> = read_json(&shared.state.config()).ok().flatten();
    let (digest, bundle_digest) = (mesh.digest(), digest_str(&bundle));
    let unchanged = stored.as_ref().is_some_and(|s| {
        s.digest == digest && s.bundle_digest == bundle_digest && s.version == current.version
    });
    if unchanged {
        shared
            .metrics
            .config_version
            .store(current.version, Ordering::Relaxed);
        return;
    }
    let version = current
        .version
        .max(stored.as_ref().map(|s| s.version).unwrap_or(0))
        + 1;
    let rec = StoredConfig {
        version,
        digest,
        bundle_digest,
        config: (*mesh).clone(),
    };
    if let Err(e) = write_json(&shared.state.config(), &rec) {
        error!(error = %e, "cannot record the new configuration version; not publishing it");
        return;
    }
    shared.metrics.reload("applied");
    shared
        .metrics
        .config_version
        .store(version, Ordering::Relaxed);
    info!(version, "configuration version published");
    shared.snapshot.send_replace(Arc::new(Snapshot {
        version,
        mesh,
        bundle,
        changed_at: Instant::now(),
    }));
}

async fn watch_loop(shared: Arc<Shared>, mut files: String) {
    let mut tick = tokio::time::interval(shared.settings.watch_interval);
    loop {
        tick.tick().await;
        files = reload_config(&shared, Some(&files));
        // A CA rotation by `mesh-control ca rotate`, or the end of an overlap period.
        let (digest, expiry) = match shared.ca.read() {
            Ok(c) => (c.state_digest.clone(), c.next_expiry),
            Err(_) => continue,
        };
        let expired = expiry.is_some_and(|t| t <= time::OffsetDateTime::now_utc());
        let renew_tls = shared
            .tls_issued_at
            .lock()
            .map(|t| t.elapsed() > Duration::from_secs(12 * 3600))
            .unwrap_or(false);
        if ca::state_digest(&shared.state) != digest || expired || renew_tls {
            match Ca::load(&shared.state, &shared.trust_domain) {
                Ok(ca) => {
                    let ca = Arc::new(ca);
                    match build_tls(&ca, &shared.trust_domain) {
                        Ok(tls) => {
                            if let Ok(mut t) = shared.tls.write() {
                                *t = Arc::new(tls);
                            }
                            if let Ok(mut t) = shared.tls_issued_at.lock() {
                                *t = Instant::now();
                            }
                        }
                        Err(e) => error!(error = %e, "cannot rebuild the API TLS configuration"),
                    }
                    info!(generation = ca.active_gen, "CA state loaded");
                    shared
                        .metrics
                        .ca_generation
                        .store(ca.active_gen.into(), Ordering::Relaxed);
                    let bundle = ca.bundle_pem().to_string();
                    if let Ok(mut c) = shared.ca.write() {
                        *c = ca;
                    }
                    let mesh = shared.snapshot.borrow().mesh.clone();
                    publish(&shared, mesh, bundle);
                }
                Err(e) => {
                    error!(error = %e, "CA state changed but cannot be loaded; keeping the current CA")
                }
            }
        }
    }
}

type Body = Full<Bytes>;

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn refuse(shared: &Shared, status: StatusCode, r: Refusal, peer: &str) -> Response<Body> {
    shared.metrics.refused(r.reason);
    warn!(reason = r.reason, peer = %peer, error = %r.message, "request refused");
    json_response(
        status,
        &ErrorBody {
            error: r.message,
            reason: r.reason.to_string(),
        },
    )
}

fn status_for(reason: &str) -> StatusCode {
    match reason {
        reason::TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        reason::TIMEOUT => StatusCode::REQUEST_TIMEOUT,
        reason::UNAUTHENTICATED => StatusCode::UNAUTHORIZED,
        reason::TOKEN_EXPIRED | reason::TOKEN_REPLAYED | reason::TOKEN_INVALID => {
            StatusCode::UNAUTHORIZED
        }
        reason::CSR_IDENTITY_MISMATCH | reason::FOREIGN_TRUST_DOMAIN => StatusCode::FORBIDDEN,
        reason::SVID_NOT_HONOURED => StatusCode::FORBIDDEN,
        reason::NOT_FOUND => StatusCode::NOT_FOUND,
        reason::INTERNAL => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn api_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (tcp, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Limits first, before any TLS work: a refused connection is closed at once.
        let guard = match shared.limits.admit(remote.ip()) {
            Ok(g) => g,
            Err(hit) => {
                shared.metrics.connection_refused(hit.label());
                warn_limit(&shared, remote, hit.label());
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let cfg = match shared.tls.read() {
            Ok(c) => c.clone(),
            Err(_) => continue,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let handshake = shared.settings.handshake_timeout;
            let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    shared.metrics.refused(reason::TLS_HANDSHAKE);
                    info!(remote = %remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    shared.metrics.timed_out("handshake");
                    return;
                }
            };
            let chain: Option<Vec<CertificateDer<'static>>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
            // Counted as a connected proxy only if the SVID is one this CA honours.
            let proxy = chain
                .as_deref()
                .is_some_and(|c| authenticate(&shared, c).is_ok());
            if proxy {
                shared
                    .metrics
                    .connected_proxies
                    .fetch_add(1, Ordering::Relaxed);
            }
            serve_conn(shared.clone(), tls, chain, remote).await;
            if proxy {
                shared
                    .metrics
                    .connected_proxies
                    .fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
}

/// Logs a refused connection, at most once a second (a flood must not flood the log too).
fn warn_limit(shared: &Shared, remote: SocketAddr, limit: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if shared.last_limit_warning.swap(now, Ordering::Relaxed) != now {
        warn!(remote = %remote, limit, open = shared.limits.open(), "connection refused: limit reached (see mesh_control_connections_refused_total)");
    }
}

/// The SPIFFE ID of an mTLS client whose SVID this control plane issued and still honours.
fn authenticate(shared: &Shared, chain: &[CertificateDer<'static>]) -> Result<SpiffeId, Refusal> {
    let ca = shared
        .ca
        .read()
        .map(|c| c.clone())
        .map_err(|_| Refusal::new(reason::INTERNAL, "CA lock poisoned"))?;
    issuance::authenticate_peer(&ca, &shared.state, &shared.trust_domain, chain)
}

async fn serve_conn<IO>(
    shared: Arc<Shared>,
    io: IO,
    chain: Option<Vec<CertificateDer<'static>>>,
    remote: SocketAddr,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let chain = Arc::new(chain);
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        let chain = chain.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                handle_api(&shared, req, chain.as_deref(), remote).await,
            )
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.settings.header_read_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if r.as_ref().is_err_and(|e| e.is_timeout()) {
                shared.metrics.timed_out("header");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(3), conn).await;
        }
    }
}

/// Reads a request body within `--body-read-timeout`: a client that declares a body and sends
/// it slowly, or not at all, is answered 408 and its connection closed.
async fn read_body(shared: &Shared, req: Request<Incoming>) -> Result<Bytes, Refusal> {
    let limit = shared.settings.body_read_timeout;
    match tokio::time::timeout(limit, read_body_unbounded(req)).await {
        Ok(r) => r,
        Err(_) => {
            shared.metrics.timed_out("body");
            Err(Refusal::new(
                reason::TIMEOUT,
                format!(
                    "request body not received within {}",
                    crate::durations::fmt(limit)
                ),
            ))
        }
    }
}

async fn read_body_unbounded(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            reason::TOO_LARGE,
            format!("request body larger than {} bytes", api::MAX_REQUEST_BYTES),
        )
    };
    if let Some(len) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > api::MAX_REQUEST_BYTES {
            // Read (and drop) a moderately large body so the client sees the 413 instead of a
            // reset while it is still sending; anything larger is cut off at once.
            if len <= 16 * api::MAX_REQUEST_BYTES {
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
            }
            return Err(too_large());
        }
    }
    match Limited::new(req.into_body(), api::MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(Refusal::new(
            reason::BAD_REQUEST,
            format!("cannot read request body: {e}"),
        )),
    }
}

async fn handle_api(
    shared: &Shared,
    req: Request<Incoming>,
    chain: Option<&[CertificateDer<'static>]>,
    remote: SocketAddr,
) -> Response<Body> {
    // Every mTLS endpoint needs an SVID this CA issued and still honours (checked per request,
    // so a revocation or expiry applies to open keep-alive connections too).
    let peer = chain.map(|c| authenticate(shared, c));
    let who = match &peer {
        Some(Ok(p)) => p.to_string(),
        _ => remote.to_string(),
    };
    let needs_svid = |what: &str| -> Result<SpiffeId, Refusal> {
        match &peer {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(r)) => Err(r.clone()),
            None => Err(Refusal::new(reason::UNAUTHENTICATED, what.to_string())),
        }
    };
    let path = req.uri().path().to_string();
    let result = match (req.method().clone(), path.as_str()) {
        (Method::POST, api::PATH_BOOTSTRAP) => bootstrap(shared, req).await,
        (Method::POST, api::PATH_RENEW) => {
            match needs_svid("renew needs mTLS with the current SVID") {
                Ok(p) => renew(shared, req, &p).await,
                Err(r) => Err(r),
            }
        }
        (Method::GET, api::PATH_CONFIG) => {
            match needs_svid("config needs mTLS with an SVID; bootstrap first") {
                Ok(p) => Ok(config_poll(shared, &req, &p).await),
                Err(r) => Err(r),
            }
        }
        (Method::POST, api::PATH_CONFIG_ACK) => match needs_svid("ack needs mTLS with an SVID") {
            Ok(p) => ack(shared, req, &p).await,
            Err(r) => Err(r),
        },
        _ => Err(Refusal::new(
            reason::NOT_FOUND,
            format!("no endpoint {} {path}", req.method()),
        )),
    };
    match result {
        Ok(r) => r,
        Err(r) => {
            let status = status_for(r.reason);
            let timed_out = r.reason == reason::TIMEOUT;
            let mut resp = refuse(shared, status, r, &who);
            if timed_out {
                resp.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            resp
        }
    }
}

/// Signs an SVID for `id` and records it in `issued/`; nothing is handed out yet.
fn sign_and_record(
    shared: &Shared,
    params: &CertificateSigningRequestParams,
    id: &SpiffeId,
    kind: &'static str,
) -> Result<(Arc<Ca>, Issued), Refusal> {
    let ca = shared
        .ca
        .read()
        .map(|c| c.clone())
        .map_err(|_| Refusal::new(reason::INTERNAL, "CA lock poisoned"))?;
    let issued = ca
        .issue(params, id, shared.settings.svid_ttl)
        .map_err(|e| Refusal::new(reason::INTERNAL, e.to_string()))?;
    let rec = IssuedRecord {
        serial: issued.serial_hex.clone(),
        spiffe_id: id.to_string(),
        not_after: issued.not_after.clone(),
        issued_at: ca::rfc3339(time::OffsetDateTime::now_utc()),
        kind: kind.to_string(),
        ca_generation: ca.active_gen,
    };
    write_json(&shared.state.issued(&issued.serial_hex), &rec)
        .map_err(|e| Refusal::new(reason::INTERNAL, e.to_string()))?;
    Ok((ca, issued))
}

/// Hands out an SVID that was signed and recorded.
fn svid_response(
    shared: &Shared,
    ca: &Ca,
    issued: Issued,
    id: &SpiffeId,
    kind: &'static str,
) -> Response<Body> {
    shared.metrics.issued(kind);
    info!(spiffe_id = %id, serial = %issued.serial_hex, not_after = %issued.not_after, kind, "issued X.509-SVID");
    json_response(
        StatusCode::OK,
        &SvidResponse {
            spiffe_id: id.to_string(),
            svid_chain_pem: issued.chain_pem,
            trust_bundle_pem: ca.bundle_pem().to_string(),
            not_after: issued.not_after,
        },
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            reason::BAD_REQUEST,
            format!("body is not a {what} JSON object: {e}"),
        )
    })
}

async fn bootstrap(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
    let body = read_body(shared, req).await?;
    let br: BootstrapRequest = parse_json(&body, "bootstrap request")?;
    if br.token.starts_with(api::JOIN_TOKEN_PREFIX) {
        // Check, validate the CSR, sign and record, then use the token up; the exclusive claim
        // is the commit point. A refusal or failure before it leaves the token usable; of
        // concurrent requests with one token exactly one claims it, the others are replays
        // and their certificates are discarded (and their records removed) unseen.
        let _guard = shared.join_lock.lock().await;
        let valid = tokens::check_join_token(&shared.state, &br.token)?;
        let csr = issuance::check_csr(&br.csr_pem)?;
        issuance::check_requested(
            &shared.trust_domain,
            csr.requested.as_deref(),
            &valid.identity,
        )?;
        let (ca, issued) = sign_and_record(shared, &csr.params, &valid.identity, "bootstrap")?;
        let forget = || {
            let _ = std::fs::remove_file(shared.state.issued(&issued.serial_hex));
        };
        match tokens::claim(&shared.state, &valid.id) {
            Ok(Claim::Claimed) => {}
            Ok(Claim::AlreadyUsed) => {
                forget();
                return Err(Refusal::new(
                    reason::TOKEN_REPLAYED,
                    format!("join token {} was already used; create a new one", valid.id),
                ));
            }
            Err(e) => {
                forget();
                return Err(Refusal::new(reason::INTERNAL, e.to_string()));
            }
        }
        info!(token = %valid.id, spiffe_id = %valid.identity, "join token used");
        Ok(svid_response(
            shared,
            &ca,
            issued,
            &valid.identity,
            "bootstrap",
        ))
    } else {
        let id =
            tokens::verify_sa_jwt(&br.token, &shared.settings.sa_issuers, &shared.trust_domain)?;
        let csr = issuance::check_csr(&br.csr_pem)?;
        issuance::check_requested(&shared.trust_domain, csr.requested.as_deref(), &id)?;
        let (ca, issued) = sign_and_record(shared, &csr.params, &id, "bootstrap")?;
        Ok(svid_response(shared, &ca, issued, &id, "bootstrap"))
    }
}

async fn renew(
    shared: &Shared,
    req: Request<Incoming>,
    peer: &SpiffeId,
) -> Result<Response<Body>, Refusal> {
    let body = read_body(shared, req).await?;
    let rr: RenewRequest = parse_json(&body, "renew request")?;
    let csr = issuance::check_csr(&rr.csr_pem)?;
    issuance::check_requested(&shared.trust_domain, csr.requested.as_deref(), peer)?;
    let (ca, issued) = sign_and_record(shared, &csr.params, peer, "renew")?;
    Ok(svid_response(shared, &ca, issued, peer, "renew"))
}

async fn config_poll(shared: &Shared, req: &Request<Incoming>, peer: &SpiffeId) -> Response<Body> {
    let since: u64 = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("since=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut rx = shared.snapshot.subscribe();
    let mut shutdown = shared.shutdown.clone();
    let deadline = tokio::time::Instant::now() + shared.settings.long_poll;
    let mut waited = false;
    loop {
        let snap = rx.borrow_and_update().clone();
        if snap.version != since {
            if waited {
                shared
                    .metrics
                    .push_latency(snap.changed_at.elapsed().as_secs_f64());
            }
            shared.metrics.pushes.fetch_add(1, Ordering::Relaxed);
            let config = snap.mesh.view_for(&peer.to_string(), &snap.bundle);
            return json_response(
                StatusCode::OK,
                &ConfigResponse {
                    version: snap.version,
                    config,
                },
            );
        }
        waited = true;
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.changed() => break,
        }
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    r
}

async fn ack(
    shared: &Shared,
    req: Request<Incoming>,
    peer: &SpiffeId,
) -> Result<Response<Body>, Refusal> {
    let body = read_body(shared, req).await?;
    let a: ConfigAck = parse_json(&body, "config ack")?;
    shared.metrics.ack(a.accepted);
    if a.accepted {
        info!(proxy = %peer, version = a.version, "config acknowledged");
    } else {
        warn!(proxy = %peer, version = a.version, reason = %a.reason, "config rejected by proxy");
    }
    if let Ok(mut p) = shared.proxies.lock() {
        p.insert(
            peer.to_string(),
            ProxyStatus {
                acked_version: a.version,
                accepted: a.accepted,
                reason: a.reason,
            },
        );
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

async fn ops_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc_shared = shared.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = svc_shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle_ops(&shared, req.uri().path())) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

fn handle_ops(shared: &Shared, path: &str) -> Response<Body> {
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" | "/ready" => {
            let snap = shared.snapshot.borrow().clone();
            let error = shared.config_error.lock().ok().and_then(|e| e.clone());
            let ready = shared.ever_good_config.load(Ordering::Relaxed);
            let proxies = shared.proxies.lock().map(|p| p.len()).unwrap_or(0);
            let body = serde_json::json!({
                "ready": ready,
                "config_version": snap.version,
                "ca_generation": shared.metrics.ca_generation.load(Ordering::Relaxed),
                "last_config_error": error,
                "proxies_acked": proxies,
                "certificates_on_record": shared.state.issued_count(),
            });
            json_response(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                &body,
            )
        }
        "/metrics" => text(
            StatusCode::OK,
            shared.metrics.render(shared.limits.open()),
            "text/plain; version=0.0.4",
        ),
        "/fips" => json_response(StatusCode::OK, &shared.settings.fips_report),
        "/proxies" => {
            let p = shared
                .proxies
                .lock()
                .map(|p| serde_json::to_value(&*p).unwrap_or_default())
                .unwrap_or_default();
            json_response(StatusCode::OK, &p)
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

fn text(status: StatusCode, body: String, ctype: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic mutations of inputs for the smoke runs below.
    fn mutations(seed: &[u8], n: usize) -> Vec<Vec<u8>> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let mut v = seed.to_vec();
                for _ in 0..(next() % 8 + 1) {
                    if v.is_empty() {
                        break;
                    }
                    let i = (next() as usize) % v.len();
                    match next() % 3 {
                        0 => v[i] = next() as u8,
                        1 => {
                            v.remove(i);
                        }
                        _ => v.truncate(i),
                    }
                }
                v
            })
            .collect()
    }

    /// Smoke run: thousands of mutated CSRs are refused with a reason or parsed, never a panic.
    #[test]
    fn csr_parser_survives_mutations() {
        let id =
            SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap_or_else(|e| panic!("{e}"));
        let csr = identity::generate_csr(&id).unwrap_or_else(|e| panic!("{e}"));
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(csr.csr_pem.as_bytes())
            .map(|d: rustls::pki_types::CertificateSigningRequestDer<'static>| d.as_ref().to_vec())
            .unwrap_or_default();
        let mut accepted = 0;
        for m in mutations(&der, 3000) {
            let pem = identity::pem_encode("CERTIFICATE REQUEST", &m);
            if issuance::check_csr(&pem).is_ok() {
                accepted += 1;
            }
        }
        for m in mutations(csr.csr_pem.as_bytes(), 1000) {
            // Parsed, or refused with a CSR reason and a message; never a panic or another code.
            if let Err(r) = issuance::check_csr(&String::from_utf8_lossy(&m)) {
                assert!(
                    [reason::CSR_INVALID, reason::CSR_IDENTITY_MISMATCH].contains(&r.reason),
                    "{}: {}",
                    r.reason,
                    r.message
                );
                assert!(!r.message.is_empty());
            }
        }
        assert!(accepted < 3000, "mutations should mostly be refused");
    }

    /// Smoke run: mutated JWTs and join tokens never panic and are never accepted.
    #[test]
    fn token_parsers_survive_mutations() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIiwiYXVkIjoiZXhhbXBsZS5vcmciLCJleHAiOjk5OTk5OTk5OTl9.c2ln";
        let issuer = SaIssuer {
            iss: None,
            public_key: vec![4; 65],
            file: "test".into(),
        };
        for m in mutations(jwt.as_bytes(), 3000) {
            let t = String::from_utf8_lossy(&m);
            assert!(
                tokens::verify_sa_jwt(&t, std::slice::from_ref(&issuer), "example.org").is_err()
            );
        }
        let join = "mjt1.0123456789abcdef01234567.c2VjcmV0c2VjcmV0";
        for m in mutations(join.as_bytes(), 3000) {
            assert!(tokens::check_join_token(&state, &String::from_utf8_lossy(&m)).is_err());
        }
    }

    /// Smoke run: mutated configuration files give errors with a line, never a panic.
    #[test]
    fn config_parser_survives_mutations() {
        let text = include_str!("../config/example/mesh.toml");
        for m in mutations(text.as_bytes(), 1500) {
            let t = String::from_utf8_lossy(&m).into_owned();
            if let Err(e) = config::parse_sources(&[("m.toml".into(), t)], "example.org") {
                assert!(!e.0.is_empty());
            }
        }
    }
}
