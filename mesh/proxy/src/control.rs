//! The control-plane client ([`mesh_core::api`]): bootstrap with a join token or
//! service-account JWT (the key is made here, only the CSR leaves), renewal about half-way
//! through the SVID's lifetime, and the configuration long-poll with acknowledgements.
//!
//! When the control plane is away the proxy keeps its last configuration and certificate,
//! retries with capped exponential backoff, and says so on `/ready`, `/config` and in the
//! `mesh_proxy_control_plane_connected` / `mesh_proxy_config_stale` metrics.

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
}

struct Client {
    proxy: Arc<Proxy>,
    settings: ControlPlaneSettings,
}

impl Client {
    fn transport(&self, message: impl std::fmt::Display) -> ControlError {
        ControlError::Transport {
            addr: self.settings.address.to_string(),
            message: message.to_string(),
        }
    }

    async fn call(
        &self,
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
            let tcp = TcpStream::connect(self.settings.address)
                .await
                .map_err(|e| self.transport(e))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(api::CONTROL_PLANE_SERVER_NAME)
                .map_err(|e| self.transport(e))?;
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| self.transport(format!("TLS: {e}")))?;
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
                return Err(self.transport(format!(
                    "server presented `{server_id}`, not the control plane's SPIFFE ID (…{expected_path})"
                )));
            }
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| self.transport(e))?;
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
                .map_err(|e| self.transport(e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| self.transport(e))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| self.transport(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| self.transport(format!("no answer within {timeout:?}")))??;
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

    async fn bootstrap(&self) -> Result<(), ControlError> {
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
                Method::POST,
                api::PATH_BOOTSTRAP,
                Some(body),
                false,
                Duration::from_secs(10),
            )
            .await?;
        let svid: SvidResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.transport(format!("bootstrap answer: {e}")))?;
        self.install(svid, key)
    }

    async fn renew(&self) -> Result<(), ControlError> {
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
                Method::POST,
                api::PATH_RENEW,
                Some(body),
                true,
                Duration::from_secs(10),
            )
            .await?;
        let svid: SvidResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.transport(format!("renew answer: {e}")))?;
        self.install(svid, key)
    }

    fn backoff(&self, failures: u32) -> Duration {
        let cap = self.settings.backoff_max_ms.max(100);
        let ms = 100u64.saturating_mul(1u64 << failures.min(16)).min(cap);
        // Jitter: 50–100 % of the step, so a fleet does not reconnect in lockstep.
        let jitter = self.proxy.random() % (ms / 2 + 1);
        Duration::from_millis(ms / 2 + jitter)
    }

    async fn config_loop(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            let since = self
                .proxy
                .mesh()
                .filter(|m| m.source == "control-plane")
                .map(|m| m.version)
                .unwrap_or(0);
            let path = format!("{}?since={since}", api::PATH_CONFIG);
            let timeout = Duration::from_secs(api::LONG_POLL_SECS + 10);
            match self.call(Method::GET, &path, None, true, timeout).await {
                Ok((StatusCode::NOT_MODIFIED, _)) => {
                    failures = 0;
                    self.proxy.control_plane_result(Ok(()));
                }
                Ok((_, bytes)) => {
                    failures = 0;
                    self.proxy.control_plane_result(Ok(()));
                    match serde_json::from_slice::<ConfigResponse>(&bytes) {
                        Ok(c) => self.apply(c).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "control plane sent a configuration that does not parse; keeping the current one")
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "configuration poll failed; serving the last known configuration");
                    self.proxy.control_plane_result(Err(e.to_string()));
                    tokio::time::sleep(self.backoff(failures)).await;
                }
            }
        }
    }

    async fn apply(&self, c: ConfigResponse) {
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
            match self.renew().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let left = c.not_after - now_unix();
                    tracing::warn!(error = %e, seconds_until_expiry = left, "certificate renewal failed; still serving with the current one");
                    self.proxy.metrics.inc(
                        "mesh_proxy_cert_renewal_failures_total",
                        "Failed certificate renewals.",
                        &[],
                    );
                    tokio::time::sleep(self.backoff(failures)).await;
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
    let client = Arc::new(Client {
        proxy: proxy.clone(),
        settings,
    });
    let mut failures = 0u32;
    while proxy.tls.cert_info().is_none() {
        match client.bootstrap().await {
            Ok(()) => proxy.control_plane_result(Ok(())),
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, "bootstrap failed; retrying");
                proxy.control_plane_result(Err(e.to_string()));
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
                tokio::time::sleep(client.backoff(failures)).await;
            }
        }
    }
    tokio::spawn(client.clone().renew_loop());
    tokio::spawn(client.config_loop());
    Ok(())
}
