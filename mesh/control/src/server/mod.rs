//! The running control plane: settings, the shared state of one replica, start-up and graceful
//! shutdown. The parts live beside it: [`api`] (TLS listener, connection limits, routing of
//! requests), [`handlers`] (bootstrap, renew, config long-poll, ack), [`reload`] (the watcher
//! that reloads configuration and CA changes and publishes versions), [`ops`] (the plain-HTTP
//! ops endpoint) and [`http`] (response and body plumbing shared by both listeners).

mod api;
mod handlers;
mod http;
mod ops;
mod reload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mesh_core::api as proto;
use mesh_core::identity::{self, SpiffeId};
use rcgen::CertificateSigningRequestParams;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::ca::{self, Ca};
use crate::config::MeshConfig;
use crate::limits::ConnLimits;
use crate::metrics::Metrics;
use crate::state::{State, CONFIG};
use crate::tokens::SaIssuer;
use reload::StoredConfig;

/// Settings of `mesh-control run`.
pub struct Settings {
    /// The state: a local directory, or etcd shared with other replicas.
    pub state: State,
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

#[derive(Default, Serialize)]
struct ProxyStatus {
    acked_version: u64,
    accepted: bool,
    reason: String,
}

struct Shared {
    settings: Settings,
    state: State,
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

impl Shared {
    /// Runs `f`, which calls the store. On a store that waits on the network (etcd), the
    /// worker thread hands its other connections to another thread first (`block_in_place`),
    /// so one request waiting for an etcd round trip does not hold up the requests of other
    /// proxies (after a push, all of them poll again at once).
    fn store_call<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.state.waits_on_network() {
            tokio::task::block_in_place(f)
        } else {
            f()
        }
    }
}

fn digest_str(s: &str) -> String {
    distro_hostio::sha256_hex(s.as_bytes())
}

/// Issues the control plane's own serving SVID and builds the TLS server configuration.
fn build_tls(ca: &Ca, trust_domain: &str) -> anyhow::Result<rustls::ServerConfig> {
    let id = SpiffeId::parse(&proto::control_plane_id(trust_domain))?;
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
        let state = State::open_dir(&dir)?;
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
    let state = settings.state.clone();
    let mut trust_domain = ca::trust_domain(&state)?;
    if trust_domain.is_empty() {
        let td = trust_domain_flag
            .clone()
            .ok_or_else(|| anyhow::anyhow!("{} holds no CA yet: pass --trust-domain to create one (or run `mesh-control ca init` / `ca import`)", state.describe()))?;
        SpiffeId::parse(&format!("spiffe://{td}"))?;
        let gen = ca::init(&state, &td)?;
        info!(trust_domain = %td, generation = gen, "created a new self-signed CA");
        trust_domain = td;
    } else if let Some(td) = &trust_domain_flag {
        if td != &trust_domain {
            anyhow::bail!(
                "--trust-domain {td} differs from the trust domain {trust_domain} of the CA in {}",
                state.describe()
            );
        }
    }
    let ca = Arc::new(Ca::load(&state, &trust_domain)?);
    let tls = build_tls(&ca, &trust_domain)?;

    // Configuration: the last good one from the state directory, then the files.
    let stored: Option<StoredConfig> = state.read_json(CONFIG)?;
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
    if state.read_json::<StoredConfig>(CONFIG)?.is_some() {
        shared.ever_good_config.store(true, Ordering::Relaxed);
    }
    let files_digest = reload::reload_config(&shared, None);

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

    let watcher = tokio::spawn(reload::watch_loop(shared.clone(), files_digest));
    let api_task = tokio::spawn(api::api_loop(shared.clone(), api));
    let ops_task = tokio::spawn(ops::ops_loop(shared.clone(), ops));

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
