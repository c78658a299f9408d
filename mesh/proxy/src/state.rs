//! The state one proxy shares between its listeners, its control-plane client and its admin
//! endpoint.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use distro_schema::FipsSelfCheck;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::config::{self, LocalConfig, ProxyConfig};
use crate::metrics::{Direction, Metrics, RequestStats};
use crate::tls::TlsState;

/// A configuration the proxy runs with, and what the request path needs of it resolved once
/// when it is applied (no lookups by string, no label strings, no locks per request).
#[derive(Debug, Serialize)]
pub struct MeshSnapshot {
    /// Version (0 for a static file).
    pub version: u64,
    /// `static` or `control-plane`.
    pub source: &'static str,
    /// The configuration.
    pub config: ProxyConfig,
    /// Endpoint address → expected SPIFFE ID (one per address: [`config::validate`] refuses
    /// an address listed with two identities).
    #[serde(skip)]
    pub endpoint_ids: HashMap<String, String>,
    /// Per service name: its index in `config.services`, its routes and endpoints resolved.
    #[serde(skip)]
    pub services: HashMap<String, ServiceIndex>,
}

/// One service of a [`MeshSnapshot`], resolved.
#[derive(Debug)]
pub struct ServiceIndex {
    /// Index in `config.services`.
    pub service: usize,
    /// The service's routes, in match order.
    pub routes: Vec<RouteIndex>,
    /// What requests no route matches use.
    pub default_route: RouteIndex,
    /// Parallel to the service's endpoints.
    pub endpoints: Vec<EndpointIndex>,
}

/// One route of a service (or its default), resolved.
#[derive(Debug)]
pub struct RouteIndex {
    /// Index in `config.routes`; `None` for the default route.
    pub route: Option<usize>,
    /// `service/route`: the `route` label and the retry-budget key.
    pub key: Arc<str>,
    /// The route's retry budget, when it retries.
    pub budget: Option<Arc<RetryBudget>>,
    /// Request metrics per endpoint (parallel to the endpoints), registered on first use.
    pub stats: Vec<std::sync::OnceLock<Arc<RequestStats>>>,
    /// Request metrics when no endpoint could be picked.
    pub no_endpoint: std::sync::OnceLock<Arc<RequestStats>>,
}

/// One endpoint of a service, resolved.
#[derive(Debug)]
pub struct EndpointIndex {
    /// Its outlier-detection state (shared by every service listing the address).
    pub health: Arc<EndpointHealth>,
    /// `host:port` as a URI authority, parsed once.
    pub authority: Option<http::uri::Authority>,
}

/// What the proxy knows about its control plane.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlPlaneStatus {
    /// Whether a control plane is configured at all.
    pub configured: bool,
    /// Whether the last exchange with it succeeded.
    pub connected: bool,
    /// Unix seconds of the last successful exchange.
    pub last_contact: Option<i64>,
    /// The last error, if the last exchange failed.
    pub last_error: Option<String>,
    /// Consecutive failed attempts.
    pub failures: u64,
    /// Every configured replica (`host:port`), in the order of the file.
    pub replicas: Vec<String>,
    /// The replica of the last successful exchange: the one the proxy is connected to while
    /// `connected` is true.
    pub replica: Option<String>,
    /// Times the proxy moved on to another replica after one failed.
    pub failovers: u64,
}

/// Outlier detection of one endpoint address, in atomics (updated on every request).
#[derive(Debug, Default)]
pub struct EndpointHealth {
    consecutive_failures: AtomicU32,
    /// Milliseconds since the proxy started until which the endpoint is ejected; 0 = never.
    ejected_until_ms: AtomicU64,
}

/// The retry budget of one route.
#[derive(Debug)]
pub struct RetryBudget {
    percent: AtomicU32,
    tokens: Mutex<f64>,
}

impl RetryBudget {
    fn new(percent: u32) -> Self {
        RetryBudget {
            percent: AtomicU32::new(percent),
            tokens: Mutex::new(10.0),
        }
    }

    /// Deposits one request's share.
    pub fn deposit(&self) {
        let mut t = lock(&self.tokens);
        *t = (*t + f64::from(self.percent.load(Ordering::Relaxed)) / 100.0).min(100.0);
    }

    /// Takes one retry, if there is one.
    pub fn withdraw(&self) -> bool {
        let mut t = lock(&self.tokens);
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The shared state of one proxy.
pub struct Proxy {
    /// The local configuration file.
    pub local: LocalConfig,
    /// Identity, bundle, TLS configurations.
    pub tls: Arc<TlsState>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The FIPS self-report (served on `/fips`).
    pub fips: FipsSelfCheck,
    /// Connection slots across all listeners.
    pub conn_limit: Arc<Semaphore>,
    mesh: RwLock<Option<Arc<MeshSnapshot>>>,
    cp: Mutex<ControlPlaneStatus>,
    endpoints: Mutex<HashMap<String, Arc<EndpointHealth>>>,
    budgets: Mutex<HashMap<String, Arc<RetryBudget>>>,
    started: Instant,
    rng: AtomicU64,
    out: Mutex<std::io::Stdout>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Values behind these locks are plain data that stay consistent across a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unix time now, in seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Proxy {
    /// A proxy with no identity or configuration applied yet.
    pub fn new(local: LocalConfig, fips: FipsSelfCheck) -> Arc<Self> {
        let seed = (chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64) | 1;
        let cp = ControlPlaneStatus {
            configured: local.control_plane.is_some(),
            replicas: local
                .control_plane
                .iter()
                .flat_map(|c| c.addresses.iter().map(|a| a.to_string()))
                .collect(),
            ..Default::default()
        };
        Arc::new(Proxy {
            conn_limit: Arc::new(Semaphore::new(local.limits.max_connections)),
            local,
            tls: TlsState::new(),
            metrics: Arc::new(Metrics::default()),
            fips,
            mesh: RwLock::new(None),
            cp: Mutex::new(cp),
            endpoints: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            started: Instant::now(),
            rng: AtomicU64::new(seed),
            out: Mutex::new(std::io::stdout()),
        })
    }

    /// The configuration in force, if any.
    pub fn mesh(&self) -> Option<Arc<MeshSnapshot>> {
        match self.mesh.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Validates and applies a configuration; on error the previous one stays in force.
    pub fn apply_config(
        &self,
        version: u64,
        source: &'static str,
        cfg: ProxyConfig,
    ) -> Result<(), String> {
        config::validate(&cfg)?;
        if !cfg.trust_bundle_pem.trim().is_empty() {
            self.tls
                .set_trust_bundle(&cfg.trust_bundle_pem)
                .map_err(|e| e.to_string())?;
        }
        self.tls.set_policy(&cfg.tls).map_err(|e| e.to_string())?;
        let endpoint_ids: HashMap<String, String> = cfg
            .services
            .iter()
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .map(|e| (e.address.clone(), e.identity.clone()))
            })
            .collect();
        self.tls
            .retain_peers(&|id| endpoint_ids.values().any(|v| v == id));
        let services = self.index(&cfg);
        let snap = Arc::new(MeshSnapshot {
            version,
            source,
            config: cfg,
            endpoint_ids,
            services,
        });
        match self.mesh.write() {
            Ok(mut g) => *g = Some(snap),
            Err(p) => *p.into_inner() = Some(snap),
        }
        self.metrics.set(
            "mesh_proxy_config_version",
            "Version of the configuration in force.",
            &[],
            version as f64,
        );
        Ok(())
    }

    /// The control-plane status.
    pub fn control_plane(&self) -> ControlPlaneStatus {
        lock(&self.cp).clone()
    }

    /// Records the result of an exchange with the control-plane replica `replica`.
    pub fn control_plane_result(&self, replica: &str, result: Result<(), String>) {
        let mut cp = lock(&self.cp);
        let changed = match result {
            Ok(()) => {
                cp.connected = true;
                cp.last_contact = Some(now_unix());
                cp.last_error = None;
                cp.failures = 0;
                let changed = cp.replica.as_deref() != Some(replica);
                cp.replica = Some(replica.to_string());
                changed
            }
            Err(e) => {
                cp.connected = false;
                cp.last_error = Some(e);
                cp.failures += 1;
                false
            }
        };
        let connected = if cp.connected { 1.0 } else { 0.0 };
        let replicas = changed.then(|| cp.replicas.clone());
        drop(cp);
        self.metrics.set(
            "mesh_proxy_control_plane_connected",
            "1 when the last exchange with the control plane succeeded; 0 while running on the last known configuration.",
            &[],
            connected,
        );
        for r in replicas.iter().flatten() {
            self.metrics.set(
                "mesh_proxy_control_plane_replica",
                "1 for the control-plane replica of the last successful exchange, 0 for the other configured ones.",
                &[("address", r)],
                if r == replica { 1.0 } else { 0.0 },
            );
        }
    }

    /// Records that the proxy moved from one control-plane replica to the next.
    pub fn control_plane_failover(&self, from: &str, to: &str) {
        lock(&self.cp).failovers += 1;
        tracing::warn!(
            from,
            to,
            "control-plane replica failed; moving to the next one"
        );
        self.metrics.inc(
            "mesh_proxy_control_plane_failovers_total",
            "Moves to another control-plane replica after one failed.",
            &[],
        );
    }

    /// Whether the proxy can serve: it has an identity and a configuration.
    pub fn ready(&self) -> bool {
        self.tls.cert_info().is_some() && self.mesh().is_some()
    }

    /// A pseudo-random number (xorshift; for load balancing and splits, not for secrets).
    pub fn random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    fn now_ms(&self) -> u64 {
        // At least 1: 0 means "never ejected".
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Resolves what the request path needs of `cfg` (health and budget state is shared with
    /// the previous configuration for addresses and routes that stay).
    fn index(&self, cfg: &ProxyConfig) -> HashMap<String, ServiceIndex> {
        let mut health = lock(&self.endpoints);
        let mut budgets = lock(&self.budgets);
        let mut out = HashMap::new();
        let mut keep_addrs = std::collections::HashSet::new();
        let mut keep_routes = std::collections::HashSet::new();
        for (si, svc) in cfg.services.iter().enumerate() {
            let endpoints: Vec<EndpointIndex> = svc
                .endpoints
                .iter()
                .map(|e| {
                    keep_addrs.insert(e.address.clone());
                    EndpointIndex {
                        health: health.entry(e.address.clone()).or_default().clone(),
                        authority: e.address.parse().ok(),
                    }
                })
                .collect();
            let n = endpoints.len();
            let mut route_index = |route: Option<usize>, name: &str| {
                let key: Arc<str> = Arc::from(format!("{}/{name}", svc.name));
                let budget = route.and_then(|i| cfg.routes[i].retries.as_ref()).map(|r| {
                    keep_routes.insert(key.to_string());
                    let b = budgets
                        .entry(key.to_string())
                        .or_insert_with(|| Arc::new(RetryBudget::new(r.budget_percent)))
                        .clone();
                    b.percent.store(r.budget_percent, Ordering::Relaxed);
                    b
                });
                RouteIndex {
                    route,
                    key,
                    budget,
                    stats: (0..n).map(|_| std::sync::OnceLock::new()).collect(),
                    no_endpoint: std::sync::OnceLock::new(),
                }
            };
            let routes = cfg
                .routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.service == svc.name)
                .map(|(i, r)| route_index(Some(i), &r.name))
                .collect();
            let default_route = route_index(None, "default");
            out.insert(
                svc.name.clone(),
                ServiceIndex {
                    service: si,
                    routes,
                    default_route,
                    endpoints,
                },
            );
        }
        health.retain(|a, _| keep_addrs.contains(a));
        budgets.retain(|k, _| keep_routes.contains(k));
        out
    }

    /// The request metrics of `route` for endpoint `ep` of `svc` (`None`: no endpoint).
    pub fn route_stats(
        &self,
        svc: &crate::config::Service,
        route: &RouteIndex,
        ep: Option<usize>,
    ) -> Arc<RequestStats> {
        let (cell, identity) =
            match ep.and_then(|i| Some((route.stats.get(i)?, svc.endpoints.get(i)?))) {
                Some((cell, e)) => (cell, e.identity.as_str()),
                None => (&route.no_endpoint, "none"),
            };
        cell.get_or_init(|| {
            self.metrics
                .request_stats(Direction::Outbound, &route.key, identity)
        })
        .clone()
    }

    /// Whether an endpoint is ejected now.
    pub fn is_ejected(&self, h: &EndpointHealth) -> bool {
        h.ejected_until_ms.load(Ordering::Relaxed) > self.now_ms()
    }

    /// Records the outcome of a request to an endpoint (outlier detection).
    pub fn endpoint_result(&self, service: &str, addr: &str, h: &EndpointHealth, ok: bool) {
        let limits = &self.local.limits;
        let now = self.now_ms();
        if ok {
            if h.consecutive_failures.load(Ordering::Relaxed) != 0 {
                h.consecutive_failures.store(0, Ordering::Relaxed);
            }
            let until = h.ejected_until_ms.load(Ordering::Relaxed);
            if until != 0
                && until <= now
                && h.ejected_until_ms
                    .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.metrics.set(
                    "mesh_proxy_upstream_endpoint_ejected",
                    "1 while an endpoint is ejected for consecutive failures.",
                    &[("service", service), ("endpoint", addr)],
                    0.0,
                );
            }
            return;
        }
        let failures = h.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let until = h.ejected_until_ms.load(Ordering::Relaxed);
        if failures >= limits.eject_after_failures
            && until <= now
            && h.ejected_until_ms
                .compare_exchange(
                    until,
                    now.saturating_add(limits.eject_for_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            h.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::warn!(
                service,
                endpoint = addr,
                "endpoint ejected after consecutive failures"
            );
            self.metrics.inc(
                "mesh_proxy_upstream_ejections_total",
                "Endpoints ejected for consecutive failures.",
                &[("service", service), ("endpoint", addr)],
            );
            self.metrics.set(
                "mesh_proxy_upstream_endpoint_ejected",
                "1 while an endpoint is ejected for consecutive failures.",
                &[("service", service), ("endpoint", addr)],
                1.0,
            );
        }
    }

    /// Writes one JSON access-log line to stdout.
    pub fn access_log(&self, entry: impl FnOnce() -> serde_json::Value) {
        // The entry (a JSON object and an RFC 3339 timestamp) is only built when it is written:
        // this sits on every request, and access logs are often off.
        if !self.local.access_log {
            return;
        }
        let entry = entry();
        let mut out = lock(&self.out);
        let _ = writeln!(out, "{entry}");
        let _ = out.flush();
    }
}
