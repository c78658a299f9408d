//! The state one proxy shares between its listeners, its control-plane client and its admin
//! endpoint.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use distro_schema::FipsSelfCheck;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::config::{self, LocalConfig, ProxyConfig};
use crate::metrics::Metrics;
use crate::tls::TlsState;

/// A configuration the proxy runs with.
#[derive(Debug, Clone, Serialize)]
pub struct MeshSnapshot {
    /// Version (0 for a static file).
    pub version: u64,
    /// `static` or `control-plane`.
    pub source: &'static str,
    /// The configuration.
    pub config: ProxyConfig,
    /// Endpoint address → expected SPIFFE ID.
    #[serde(skip)]
    pub endpoint_ids: HashMap<String, String>,
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
}

#[derive(Debug, Default)]
struct EndpointHealth {
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
}

#[derive(Debug)]
struct Budget {
    tokens: f64,
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
    endpoints: Mutex<HashMap<String, EndpointHealth>>,
    budgets: Mutex<HashMap<String, Budget>>,
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
        let endpoint_ids = cfg
            .services
            .iter()
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .map(|e| (e.address.clone(), e.identity.clone()))
            })
            .collect();
        let snap = Arc::new(MeshSnapshot {
            version,
            source,
            config: cfg,
            endpoint_ids,
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

    /// Records the result of an exchange with the control plane.
    pub fn control_plane_result(&self, result: Result<(), String>) {
        let mut cp = lock(&self.cp);
        match result {
            Ok(()) => {
                cp.connected = true;
                cp.last_contact = Some(now_unix());
                cp.last_error = None;
                cp.failures = 0;
            }
            Err(e) => {
                cp.connected = false;
                cp.last_error = Some(e);
                cp.failures += 1;
            }
        }
        let connected = if cp.connected { 1.0 } else { 0.0 };
        drop(cp);
        self.metrics.set(
            "mesh_proxy_control_plane_connected",
            "1 when the last exchange with the control plane succeeded; 0 while running on the last known configuration.",
            &[],
            connected,
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

    /// Whether an endpoint is ejected now.
    pub fn is_ejected(&self, addr: &str) -> bool {
        let now = Instant::now();
        lock(&self.endpoints)
            .get(addr)
            .and_then(|h| h.ejected_until)
            .is_some_and(|t| t > now)
    }

    /// Records the outcome of a request to an endpoint (outlier detection).
    pub fn endpoint_result(&self, service: &str, addr: &str, ok: bool) {
        let limits = &self.local.limits;
        let mut map = lock(&self.endpoints);
        let h = map.entry(addr.to_string()).or_default();
        if ok {
            h.consecutive_failures = 0;
            if h.ejected_until.is_some_and(|t| t <= Instant::now()) {
                h.ejected_until = None;
                drop(map);
                self.metrics.set(
                    "mesh_proxy_upstream_endpoint_ejected",
                    "1 while an endpoint is ejected for consecutive failures.",
                    &[("service", service), ("endpoint", addr)],
                    0.0,
                );
            }
            return;
        }
        h.consecutive_failures += 1;
        if h.consecutive_failures >= limits.eject_after_failures
            && h.ejected_until.is_none_or(|t| t <= Instant::now())
        {
            h.ejected_until = Some(Instant::now() + Duration::from_millis(limits.eject_for_ms));
            h.consecutive_failures = 0;
            drop(map);
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

    /// Deposits one request's share into a route's retry budget.
    pub fn budget_deposit(&self, key: &str, percent: u32) {
        let mut b = lock(&self.budgets);
        let e = b.entry(key.to_string()).or_insert(Budget { tokens: 10.0 });
        e.tokens = (e.tokens + f64::from(percent) / 100.0).min(100.0);
    }

    /// Takes one retry from a route's budget, if there is one.
    pub fn budget_withdraw(&self, key: &str) -> bool {
        let mut b = lock(&self.budgets);
        let e = b.entry(key.to_string()).or_insert(Budget { tokens: 10.0 });
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            true
        } else {
            false
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
