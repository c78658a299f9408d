//! The control-plane client ([`mesh_core::api`]): bootstrap with a join token or
//! service-account JWT (the key is made here, only the CSR leaves), renewal about half-way
//! through the SVID's lifetime, and the configuration long-poll with acknowledgements.
//!
//! When the control plane is away the proxy keeps its last configuration and certificate,
//! retries with capped exponential backoff, and says so on `/ready`, `/config` and in the
//! `mesh_proxy_control_plane_connected` / `mesh_proxy_config_stale` metrics.
//!
//! With several replicas ([`ControlPlaneSettings::addresses`]) the proxy talks to one at a
//! time ([`Replicas`]): it starts at a random one, so a fleet spreads over them, and when an
//! exchange fails in a way the replica is to blame for (no connection, TLS, timeout, a 5xx
//! answer such as `store_unavailable`) it moves on to the next in its own order, with the
//! backoff growing only once every replica has failed in a row. Whatever the replica,
//! the configuration and certificate in force stay until a new one is installed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use mesh_core::api::{
    self, BootstrapRequest, ConfigAck, ConfigResponse, ErrorBody, RenewRequest, SvidResponse,
};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::config::ControlPlaneSettings;
use crate::state::{now_unix, Proxy};
use mesh_core::identity::{certs_from_pem, generate_bootstrap_csr, generate_csr, SpiffeId};

/// Largest answer accepted from the control plane.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Time to connect to a replica and finish the TLS handshake: a replica whose machine is gone
/// must not hold a long-poll for its whole timeout before the proxy moves on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The control-plane replicas and the one in use.
///
/// Each proxy walks the replicas in its own cyclic order: from a start index, by a stride
/// coprime with their number (both chosen from a random seed), so that every replica is
/// visited once per round, and the proxies of a replica that dies spread over the others
/// instead of all moving to the same next one.
#[derive(Debug)]
pub struct Replicas {
    addrs: Vec<SocketAddr>,
    stride: usize,
    current: AtomicUsize,
}

impl Replicas {
    /// The replicas of `addrs` (not empty; [`ControlPlaneSettings`] refuses an empty list),
    /// start and order chosen from `seed`.
    pub fn new(addrs: Vec<SocketAddr>, seed: u64) -> Self {
        let n = addrs.len().max(1);
        let strides: Vec<usize> = (1..n.max(2)).filter(|s| gcd(*s, n) == 1).collect();
        // `strides` is never empty: 1 is coprime with every n.
        let stride = strides[(seed >> 32) as usize % strides.len()];
        Replicas {
            current: AtomicUsize::new((seed & 0xffff_ffff) as usize % n),
            stride,
            addrs,
        }
    }

    /// The index and address of the replica in use.
    pub fn current(&self) -> (usize, SocketAddr) {
        let i = self.current.load(Ordering::Acquire);
        // `i` is always below `addrs.len()` (set only here and in `fail_over`, modulo it);
        // the fallback is for an empty list, which settings never hold.
        let addr = self
            .addrs
            .get(i)
            .copied()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        (i, addr)
    }

    /// After replica `from` failed: moves to the next one, unless another task has moved
    /// already (the renewal and the configuration poll may notice one failure together).
    /// Returns the replica moved to, if this call moved.
    pub fn fail_over(&self, from: usize) -> Option<SocketAddr> {
        let n = self.addrs.len();
        if n < 2 {
            return None;
        }
        let to = (from + self.stride) % n;
        self.current
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| self.addrs[to])
    }

    /// How many replicas there are.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether there are none (never, for settings that loaded).
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A random seed from the operating system (std's hasher keys are drawn from it per process).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// Why an exchange with the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Network, TLS or HTTP failure (retried).
    #[error("control plane {addr}: {message}")]
    Transport {
        /// Address.
        addr: String,
        /// What happened.
        message: String,
    },
    /// The control plane answered with an error.
    #[error("control plane refused {path}: {status} {reason}: {error}")]
    Refused {
        /// Path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Stable reason code.
        reason: String,
        /// Human message.
        error: String,
    },
    /// Local failure (files, CSR).
    #[error("{0}")]
    Local(String),
    /// A replica offered an older configuration than the one in force: it has not yet seen
    /// the newer one (its store watch lags, or it is cut off from the store).
    #[error(
        "control plane {addr} is behind: it offers configuration version {offered}, version \
         {in_force} is in force; keeping it and trying another replica"
    )]
    Behind {
        /// Address.
        addr: String,
        /// The version it offered.
        offered: u64,
        /// The version in force here.
        in_force: u64,
    },
}

/// Whether to refuse a configuration `offered` by a replica, with `in_force` the version from
/// the control plane in force (0: none yet) and `behind_in_row` older offers refused in a row.
///
/// With several replicas, an older version means that replica is behind: applying it would
/// undo changes (an authorization rule removed, say) until it caught up. It is refused and
/// another replica asked, until `replicas` older offers came in a row: then the control plane
/// as a whole went back (its state restored from a backup) and the proxy follows. A single
/// control plane is followed at once, as it always was.
fn refuse_older(in_force: u64, offered: u64, behind_in_row: u32, replicas: usize) -> bool {
    replicas > 1
        && offered < in_force
        && usize::try_from(behind_in_row).unwrap_or(usize::MAX) < replicas
}

impl ControlError {
    /// Whether another replica may well succeed where this one failed: it could not be
    /// reached or understood, did not answer in time, or answered that it is in trouble (5xx,
    /// e.g. `store_unavailable` when its store lost its quorum). A refusal of the request
    /// itself (4xx) would be the same at every replica, and a local failure is the proxy's.
    pub fn replica_at_fault(&self) -> bool {
        match self {
            ControlError::Transport { .. } => true,
            ControlError::Refused { status, .. } => *status >= 500 || *status == 408,
            ControlError::Behind { .. } => true,
            ControlError::Local(_) => false,
        }
    }
}

struct Client {
    proxy: Arc<Proxy>,
    settings: ControlPlaneSettings,
    replicas: Replicas,
}

/// One exchange's target: the replica in use when it started.
#[derive(Clone, Copy)]
struct Target {
    index: usize,
    addr: SocketAddr,
}

impl Client {
    fn transport(at: Target, message: impl std::fmt::Display) -> ControlError {
        ControlError::Transport {
            addr: at.addr.to_string(),
            message: message.to_string(),
        }
    }

    /// The replica to use now.
    fn target(&self) -> Target {
        let (index, addr) = self.replicas.current();
        Target { index, addr }
    }

    /// Records the outcome of an exchange with `at` on `/ready` and in the metrics (bootstrap
    /// and the configuration poll, the exchanges that show whether the proxy is connected);
    /// after a failure, [`Client::fail_over`].
    fn record(&self, at: Target, result: &Result<(), ControlError>) {
        let addr = at.addr.to_string();
        match result {
            Ok(()) => self.proxy.control_plane_result(&addr, Ok(())),
            Err(e) => {
                self.proxy.control_plane_result(&addr, Err(e.to_string()));
                self.fail_over(at, e);
            }
        }
    }

    /// After a failure the replica `at` is to blame for, moves on to the next replica.
    fn fail_over(&self, at: Target, e: &ControlError) {
        if e.replica_at_fault() {
            if let Some(to) = self.replicas.fail_over(at.index) {
                self.proxy
                    .control_plane_failover(&at.addr.to_string(), &to.to_string());
            }
        }
    }

    /// Backoff after `failures` consecutive failures: the step grows once per round over
    /// every replica, so moving to the next replica is quick and a dead control plane as a
    /// whole is not hammered.
    fn backoff_after(&self, failures: u32) -> Duration {
        let n = u32::try_from(self.replicas.len().max(1)).unwrap_or(u32::MAX);
        self.backoff(1 + failures.saturating_sub(1) / n)
    }

    async fn call(
        &self,
        at: Target,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        with_cert: bool,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ControlError> {
        let fut = async {
            let cfg = self
                .proxy
                .tls
                .control_client_config(with_cert)
                .map_err(|e| ControlError::Local(e.to_string()))?;
            let connect = async {
                let tcp = TcpStream::connect(at.addr)
                    .await
                    .map_err(|e| Self::transport(at, e))?;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::try_from(api::CONTROL_PLANE_SERVER_NAME)
                    .map_err(|e| Self::transport(at, e))?;
                tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Self::transport(at, format!("TLS: {e}")))
            };
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| {
                    Self::transport(
                        at,
                        format!("no connection and TLS handshake within {CONNECT_TIMEOUT:?}"),
                    )
                })??;
            let server_id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| mesh_core::identity::spiffe_id_of(c).ok())
                .map(|id| id.to_string())
                .unwrap_or_default();
            let expected_path = format!(
                "/ns/{}/sa/{}",
                api::CONTROL_PLANE_NS_SA.0,
                api::CONTROL_PLANE_NS_SA.1
            );
            let td_ok = match self.proxy.tls.cert_info() {
                Some(c) => trust_domain(&server_id) == trust_domain(&c.spiffe_id),
                None => true,
            };
            if !server_id.ends_with(&expected_path) || !td_ok {
                return Err(Self::transport(at, format!(
                    "server presented `{server_id}`, not the control plane's SPIFFE ID (…{expected_path})"
                )));
            }
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| Self::transport(at, e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, api::CONTROL_PLANE_SERVER_NAME);
            if body.is_some() {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| Self::transport(at, e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| Self::transport(at, e))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| Self::transport(at, format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Self::transport(at, format!("no answer within {timeout:?}")))??;
        if status.is_client_error() || status.is_server_error() {
            let e: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                error: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                reason: "unknown".into(),
            });
            return Err(ControlError::Refused {
                path: path.into(),
                status: status.as_u16(),
                reason: e.reason,
                error: e.error,
            });
        }
        Ok((status, bytes))
    }

    fn install(&self, svid: SvidResponse, key: PrivateKeyDer<'static>) -> Result<(), ControlError> {
        self.proxy
            .tls
            .set_trust_bundle(&svid.trust_bundle_pem)
            .map_err(|e| {
                ControlError::Local(format!("trust bundle from the control plane: {e}"))
            })?;
        let chain = certs_from_pem(&svid.svid_chain_pem)
            .map_err(|e| ControlError::Local(format!("SVID chain from the control plane: {e}")))?;
        let info = self
            .proxy
            .tls
            .set_identity(chain, key)
            .map_err(|e| ControlError::Local(e.to_string()))?;
        tracing::info!(spiffe_id = %info.spiffe_id, not_after = %svid.not_after, serial = %info.serial, "installed workload certificate");
        self.proxy.metrics.inc(
            "mesh_proxy_cert_rotations_total",
            "Workload certificates installed from the control plane.",
            &[],
        );
        Ok(())
    }

    async fn bootstrap(&self, at: Target) -> Result<(), ControlError> {
        let token = std::fs::read_to_string(&self.settings.token_file).map_err(|e| {
            ControlError::Local(format!(
                "cannot read token file {}: {e}",
                self.settings.token_file.display()
            ))
        })?;
        let csr = generate_bootstrap_csr().map_err(|e| ControlError::Local(e.to_string()))?;
        let (csr_pem, key) = (csr.csr_pem.clone(), csr.key_der());
        let body = serde_json::to_vec(&BootstrapRequest {
            token: token.trim().to_string(),
            csr_pem,
        })
        .map_err(|e| ControlError::Local(e.to_string()))?;
        let (_, bytes) = self
            .call(
                at,
                Method::POST,
                api::PATH_BOOTSTRAP,
                Some(body),
                false,
                Duration::from_secs(10),
            )
            .await?;
        let svid: SvidResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Self::transport(at, format!("bootstrap answer: {e}")))?;
        self.install(svid, key)
    }

    async fn renew(&self, at: Target) -> Result<(), ControlError> {
        let id = self
            .proxy
            .tls
            .cert_info()
            .and_then(|c| SpiffeId::parse(&c.spiffe_id).ok());
        let csr = match &id {
            Some(id) => generate_csr(id),
            None => generate_bootstrap_csr(),
        }
        .map_err(|e| ControlError::Local(e.to_string()))?;
        let (csr_pem, key) = (csr.csr_pem.clone(), csr.key_der());
        let body = serde_json::to_vec(&RenewRequest { csr_pem })
            .map_err(|e| ControlError::Local(e.to_string()))?;
        let (_, bytes) = self
            .call(
                at,
                Method::POST,
                api::PATH_RENEW,
                Some(body),
                true,
                Duration::from_secs(10),
            )
            .await?;
        let svid: SvidResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Self::transport(at, format!("renew answer: {e}")))?;
        self.install(svid, key)
    }

    fn backoff(&self, failures: u32) -> Duration {
        api::reconnect_backoff(failures, self.settings.backoff_max_ms, self.proxy.random())
    }

    async fn config_loop(self: Arc<Self>) {
        let mut failures = 0u32;
        // Consecutive answers that offered an older version than the one in force.
        let mut behind = 0u32;
        loop {
            let since = self
                .proxy
                .mesh()
                .filter(|m| m.source == "control-plane")
                .map(|m| m.version)
                .unwrap_or(0);
            let path = format!("{}?since={since}", api::PATH_CONFIG);
            let timeout = Duration::from_secs(api::LONG_POLL_SECS + 10);
            let at = self.target();
            let answer = self.call(at, Method::GET, &path, None, true, timeout).await;
            let answer = match answer {
                Ok((StatusCode::NOT_MODIFIED, _)) => Ok(None),
                Ok((_, bytes)) => match serde_json::from_slice::<ConfigResponse>(&bytes) {
                    Ok(c) if refuse_older(since, c.version, behind, self.replicas.len()) => {
                        behind += 1;
                        Err(ControlError::Behind {
                            addr: at.addr.to_string(),
                            offered: c.version,
                            in_force: since,
                        })
                    }
                    Ok(c) => Ok(Some(c)),
                    Err(e) => {
                        tracing::warn!(error = %e, "control plane sent a configuration that does not parse; keeping the current one");
                        Ok(None)
                    }
                },
                Err(e) => Err(e),
            };
            match answer {
                Ok(c) => {
                    failures = 0;
                    behind = 0;
                    self.record(at, &Ok(()));
                    if let Some(c) = c {
                        self.apply(at, c).await;
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "configuration poll failed; serving the last known configuration");
                    self.record(at, &Err(e));
                    tokio::time::sleep(self.backoff_after(failures)).await;
                }
            }
        }
    }

    /// Applies a configuration from `at` and acknowledges it there (the replica that sent it).
    async fn apply(&self, at: Target, c: ConfigResponse) {
        let version = c.version;
        let (accepted, reason) = match self.proxy.apply_config(version, "control-plane", c.config) {
            Ok(()) => {
                tracing::info!(version, "applied configuration from the control plane");
                (true, String::new())
            }
            Err(e) => {
                tracing::warn!(version, error = %e, "rejected configuration from the control plane; keeping the current one");
                (false, e)
            }
        };
        let ack = ConfigAck {
            version,
            accepted,
            reason,
        };
        let body = serde_json::to_vec(&ack).unwrap_or_default();
        if let Err(e) = self
            .call(
                at,
                Method::POST,
                api::PATH_CONFIG_ACK,
                Some(body),
                true,
                Duration::from_secs(10),
            )
            .await
        {
            tracing::warn!(version, error = %e, "could not acknowledge configuration");
        }
    }

    async fn renew_loop(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            let Some(c) = self.proxy.tls.cert_info() else {
                return;
            };
            let start = c.not_before.max(c.installed_at);
            let lifetime = (c.not_after - start).max(1) as f64;
            let at = start + (lifetime * self.settings.renew_fraction.clamp(0.1, 0.9)) as i64;
            let wait = (at - now_unix()).max(0) as u64;
            if failures == 0 && wait > 0 {
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            let at = self.target();
            match self.renew(at).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    // The status stays the configuration poll's; a replica that cannot renew
                    // is left all the same (its store may have lost its quorum).
                    self.fail_over(at, &e);
                    let left = c.not_after - now_unix();
                    tracing::warn!(error = %e, seconds_until_expiry = left, "certificate renewal failed; still serving with the current one");
                    self.proxy.metrics.inc(
                        "mesh_proxy_cert_renewal_failures_total",
                        "Failed certificate renewals.",
                        &[],
                    );
                    tokio::time::sleep(self.backoff_after(failures)).await;
                }
            }
        }
    }
}

fn trust_domain(id: &str) -> &str {
    id.strip_prefix("spiffe://")
        .and_then(|r| r.split('/').next())
        .unwrap_or("")
}

/// Bootstraps (retrying with backoff until it succeeds), then runs renewal and the
/// configuration long-poll in the background.
pub async fn start(proxy: Arc<Proxy>, settings: ControlPlaneSettings) -> Result<(), ControlError> {
    let bundle = std::fs::read_to_string(&settings.ca_bundle).map_err(|e| {
        ControlError::Local(format!(
            "cannot read control-plane CA bundle {}: {e}",
            settings.ca_bundle.display()
        ))
    })?;
    if proxy.tls.cert_info().is_none() {
        proxy
            .tls
            .set_trust_bundle(&bundle)
            .map_err(|e| ControlError::Local(format!("{}: {e}", settings.ca_bundle.display())))?;
    }
    let replicas = Replicas::new(settings.addresses.clone(), random_seed());
    tracing::info!(replica = %replicas.current().1, replicas = replicas.len(), "control plane: starting with this replica");
    let client = Arc::new(Client {
        proxy: proxy.clone(),
        settings,
        replicas,
    });
    let mut failures = 0u32;
    while proxy.tls.cert_info().is_none() {
        let at = client.target();
        let result = client.bootstrap(at).await;
        client.record(at, &result);
        match result {
            Ok(()) => {}
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, "bootstrap failed; retrying");
                if let ControlError::Refused { reason, .. } = &e {
                    // Retrying cannot fix these: the token itself is spent, expired or foreign.
                    let fatal = [
                        api::reason::TOKEN_REPLAYED,
                        api::reason::TOKEN_EXPIRED,
                        api::reason::TOKEN_INVALID,
                        api::reason::FOREIGN_TRUST_DOMAIN,
                    ];
                    if fatal.contains(&reason.as_str()) {
                        return Err(e);
                    }
                }
                if let ControlError::Local(_) = &e {
                    return Err(e);
                }
                tokio::time::sleep(client.backoff_after(failures)).await;
            }
        }
    }
    tokio::spawn(client.clone().renew_loop());
    tokio::spawn(client.config_loop());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    /// From any start, moving on after each failure visits every replica once per round,
    /// for every number of replicas.
    #[test]
    fn failing_over_visits_every_replica() {
        for n in 1..=7u16 {
            for seed in 0..64u64 {
                let seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let r = Replicas::new(addrs(n), seed);
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..n {
                    let (i, a) = r.current();
                    assert!(
                        seen.insert(a),
                        "n={n} seed={seed}: {a} again before the round ended"
                    );
                    assert_eq!(r.fail_over(i).is_some(), n > 1);
                }
                assert_eq!(seen.len(), usize::from(n));
                assert_eq!(r.current().1, addrs(n)[r.current().0]);
            }
        }
    }

    /// A failure noticed twice (the poll and the renewal) moves once: the second `fail_over`
    /// names the replica already left.
    #[test]
    fn one_failure_moves_once() {
        let r = Replicas::new(addrs(3), 7);
        let (from, _) = r.current();
        assert!(r.fail_over(from).is_some());
        let (now, _) = r.current();
        assert!(r.fail_over(from).is_none(), "moved twice for one failure");
        assert_eq!(r.current().0, now);
    }

    /// 1000 proxies spread over 3 replicas, and the proxies of one that dies spread over both
    /// others (not all onto the same next one).
    #[test]
    fn proxies_spread_over_replicas() {
        let mut first = [0usize; 3];
        let mut after_0 = [0usize; 3];
        for _ in 0..1000 {
            let r = Replicas::new(addrs(3), random_seed());
            let (i, _) = r.current();
            first[i] += 1;
            if i == 0 {
                r.fail_over(0);
                after_0[r.current().0] += 1;
            }
        }
        assert!(first.iter().all(|&c| c > 250), "{first:?}");
        assert_eq!(after_0[0], 0);
        assert!(
            after_0[1] > first[0] / 4 && after_0[2] > first[0] / 4,
            "{after_0:?}"
        );
    }

    /// An older version than the one in force is refused from a replica (it is behind) until
    /// as many older offers as there are replicas came in a row; a single control plane is
    /// followed at once; a newer one, or the first, is always taken.
    #[test]
    fn older_versions_from_a_replica_are_refused_for_one_round() {
        assert!(refuse_older(10, 9, 0, 3));
        assert!(refuse_older(10, 9, 2, 3));
        assert!(
            !refuse_older(10, 9, 3, 3),
            "every replica went back: follow"
        );
        assert!(
            !refuse_older(10, 9, 0, 1),
            "a single control plane is followed"
        );
        assert!(!refuse_older(10, 11, 0, 3));
        assert!(
            !refuse_older(0, 4, 0, 3),
            "nothing from the control plane in force yet"
        );
        assert!(ControlError::Behind {
            addr: "a".into(),
            offered: 9,
            in_force: 10
        }
        .replica_at_fault());
    }

    /// A replica is left for transport failures and 5xx answers, not for refusals of the
    /// request itself or local failures.
    #[test]
    fn which_failures_move_on() {
        let refused = |status| ControlError::Refused {
            path: "/v1/renew".into(),
            status,
            reason: "x".into(),
            error: "y".into(),
        };
        assert!(ControlError::Transport {
            addr: "a".into(),
            message: "m".into()
        }
        .replica_at_fault());
        assert!(refused(503).replica_at_fault());
        assert!(refused(500).replica_at_fault());
        assert!(!refused(401).replica_at_fault());
        assert!(!refused(400).replica_at_fault());
        assert!(!ControlError::Local("x".into()).replica_at_fault());
    }
}
