//! TLS of the proxy: the hot-swappable workload identity and trust bundle, and the inbound
//! (server), outbound (client) and control-plane configurations built on them.
//!
//! Everything that decides who is trusted comes from [`mesh_core::tls`]: the one SPIFFE server
//! verifier (which checks the expected peer identity itself, so a wrong peer fails the handshake
//! before any request byte is sent), the one client verifier, the swappable
//! [`TrustStore`] and the one policy narrower [`mesh_core::tls::policy_provider`]. What stays
//! here is what only the proxy has: a certificate resolver over the current SVID, and caches of
//! the built configurations.
//!
//! Rotation works by indirection: the configurations hold the resolver and verifiers that read
//! the *current* SVID and roots, so a new SVID or bundle applies to the next handshake without
//! rebuilding listeners or closing connections. The configurations are rebuilt only when the
//! TLS policy (suites, groups, minimum version) changes. Outbound, one client configuration is
//! kept per expected server identity (the verifier carries it), built on first use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use mesh_core::identity::SpiffeId;
pub use mesh_core::tls::TrustStore;
use mesh_core::tls::{ClientAuth, ExpectedPeer, SpiffeClientVerifier, SpiffeServerVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme, SupportedProtocolVersion};

use crate::config::TlsPolicy;

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused something.
    #[error("{what}: {source}")]
    Rustls {
        /// What was being built.
        what: String,
        /// The rustls error.
        source: rustls::Error,
    },
    /// The certificate is not an X.509-SVID, or the policy or bundle was refused.
    #[error("{0}")]
    Identity(String),
}

impl From<mesh_core::tls::TlsError> for TlsError {
    fn from(e: mesh_core::tls::TlsError) -> Self {
        TlsError::Identity(e.to_string())
    }
}

/// Facts about the current workload certificate, for `/certs`, metrics and rotation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    /// SPIFFE ID in the leaf.
    pub spiffe_id: String,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// Leaf serial number (hex).
    pub serial: String,
    /// Number of certificates in the chain (leaf included).
    pub chain_len: usize,
    /// Number of trusted roots.
    pub trust_bundle_roots: usize,
    /// When this proxy installed it (Unix seconds); issuers backdate `not_before`, so rotation
    /// is timed from here.
    pub installed_at: i64,
}

/// What a mesh connection carries, which decides the ALPN offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP: `h2` then `http/1.1`.
    Http,
    /// Opaque TCP: no ALPN.
    Opaque,
}

struct Material {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// The policy in force and what [`mesh_core::tls::policy_provider`] made of it.
#[derive(Clone)]
struct Policy {
    policy: TlsPolicy,
    provider: Arc<CryptoProvider>,
    versions: &'static [&'static SupportedProtocolVersion],
}

impl Policy {
    fn new(policy: &TlsPolicy) -> Result<Self, TlsError> {
        let (provider, versions) = mesh_core::tls::policy_provider(policy)?;
        Ok(Policy {
            policy: policy.clone(),
            provider,
            versions,
        })
    }
}

/// Outbound configurations for one expected server identity.
#[derive(Clone)]
struct PeerConfigs {
    http: Arc<ClientConfig>,
    opaque: Arc<ClientConfig>,
}

/// The shared, swappable TLS state of the proxy.
pub struct TlsState {
    material: RwLock<Option<Material>>,
    trust: TrustStore,
    server: RwLock<Option<Arc<ServerConfig>>>,
    clients: RwLock<HashMap<String, PeerConfigs>>,
    policy: RwLock<Policy>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("cert", &self.cert_info())
            .finish()
    }
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    match l.read() {
        Ok(g) => g.clone(),
        // A writer panicked: the value it left is still a complete value of T.
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(l: &RwLock<T>, v: T) {
    match l.write() {
        Ok(mut g) => *g = v,
        Err(p) => *p.into_inner() = v,
    }
}

fn leaf_info(leaf: &CertificateDer<'_>) -> Result<(String, i64, i64, String), TlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| TlsError::Identity(format!("workload certificate cannot be parsed: {e}")))?;
    let id = mesh_core::identity::spiffe_id_of(leaf).map_err(|e| {
        TlsError::Identity(format!(
            "workload certificate is not an X.509-SVID (one spiffe:// URI SAN): {e}"
        ))
    })?;
    Ok((
        id.to_string(),
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
        cert.raw_serial_as_string(),
    ))
}

fn rustls_err(what: &str) -> impl FnOnce(rustls::Error) -> TlsError + '_ {
    move |source| TlsError::Rustls {
        what: what.into(),
        source,
    }
}

/// The identity the outbound verifier demands for an endpoint configured with `expected`.
fn expected_peer(expected: &str) -> Result<ExpectedPeer, TlsError> {
    let id = SpiffeId::parse(expected).map_err(|e| TlsError::Identity(e.to_string()))?;
    // The test-only feature `conformance-broken-identity` (see Cargo.toml) accepts any server
    // of the trust domain, which is the bug the conformance suite must catch.
    if cfg!(feature = "conformance-broken-identity") {
        return Ok(ExpectedPeer::TrustDomain(id.trust_domain().to_string()));
    }
    Ok(ExpectedPeer::Exact(id))
}

impl TlsState {
    /// Empty state: no identity yet, no roots.
    pub fn new() -> Arc<Self> {
        let default = TlsPolicy::default();
        let policy = match Policy::new(&default) {
            Ok(p) => p,
            // The default policy is the whole FIPS set, which the narrower takes as it is.
            Err(_) => Policy {
                policy: default,
                provider: mesh_core::crypto::provider(),
                versions: mesh_core::crypto::PROTOCOL_VERSIONS,
            },
        };
        Arc::new(TlsState {
            material: RwLock::new(None),
            trust: TrustStore::empty(),
            server: RwLock::new(None),
            clients: RwLock::new(HashMap::new()),
            policy: RwLock::new(policy),
        })
    }

    /// Installs a new workload certificate chain and key (next handshakes use it).
    pub fn set_identity(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CertInfo, TlsError> {
        let leaf = chain.first().ok_or_else(|| {
            TlsError::Identity("empty certificate chain (no CERTIFICATE block)".into())
        })?;
        let (spiffe_id, not_before, not_after, serial) = leaf_info(leaf)?;
        let provider = mesh_core::crypto::provider();
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(rustls_err("workload private key"))?;
        let certified = CertifiedKey::new(chain.clone(), signing);
        certified
            .keys_match()
            .map_err(rustls_err("workload key does not match the certificate"))?;
        let info = CertInfo {
            spiffe_id,
            not_before,
            not_after,
            serial,
            chain_len: chain.len(),
            trust_bundle_roots: self.trust.len(),
            installed_at: chrono::Utc::now().timestamp(),
        };
        write(
            &self.material,
            Some(Material {
                key: Arc::new(certified),
                info: info.clone(),
            }),
        );
        Ok(info)
    }

    /// Installs a new trust bundle (PEM; every certificate in it becomes a root). A bundle
    /// without a certificate is refused and the roots in force stay.
    pub fn set_trust_bundle(&self, pem: &str) -> Result<usize, TlsError> {
        let n = self.trust.replace_pem(pem)?;
        if let Ok(mut g) = self.material.write() {
            if let Some(m) = g.as_mut() {
                m.info.trust_bundle_roots = n;
            }
        }
        Ok(n)
    }

    /// Applies a TLS policy (rebuilds the configurations when it changed).
    pub fn set_policy(&self, policy: &TlsPolicy) -> Result<(), TlsError> {
        let current = read(&self.policy);
        if current.policy == *policy {
            return Ok(());
        }
        let new = Policy::new(policy)?;
        write(&self.policy, new);
        write(&self.server, None);
        match self.clients.write() {
            Ok(mut g) => g.clear(),
            Err(p) => p.into_inner().clear(),
        }
        Ok(())
    }

    /// Drops the cached outbound configurations of identities no endpoint expects any more.
    pub fn retain_peers(&self, wanted: &dyn Fn(&str) -> bool) {
        match self.clients.write() {
            Ok(mut g) => g.retain(|k, _| wanted(k)),
            Err(p) => p.into_inner().retain(|k, _| wanted(k)),
        }
    }

    /// Information about the current certificate, if any.
    pub fn cert_info(&self) -> Option<CertInfo> {
        match self.material.read() {
            Ok(g) => g.as_ref().map(|m| m.info.clone()),
            Err(p) => p.into_inner().as_ref().map(|m| m.info.clone()),
        }
    }

    fn current_key(&self) -> Option<Arc<CertifiedKey>> {
        match self.material.read() {
            Ok(g) => g.as_ref().map(|m| m.key.clone()),
            Err(p) => p.into_inner().as_ref().map(|m| m.key.clone()),
        }
    }

    /// The inbound server configuration: presents the current SVID and requires a client SVID
    /// chaining to the current bundle ([`SpiffeClientVerifier`]); which identities may do what
    /// is decided per request by [`crate::policy`]. Plaintext in PERMISSIVE mode never reaches
    /// TLS (see [`crate::inbound`]).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        if let Some(c) = read(&self.server) {
            return Ok(c);
        }
        let p = read(&self.policy);
        let mut cfg = ServerConfig::builder_with_provider(p.provider)
            .with_protocol_versions(p.versions)
            .map_err(rustls_err("inbound TLS configuration"))?
            .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(
                self.trust.clone(),
                ClientAuth::Required,
            )))
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if mesh_core::crypto::FIPS_BUILD && !cfg.fips() {
            return Err(TlsError::Identity(
                "inbound TLS configuration is not FIPS (rustls fips() is false)".into(),
            ));
        }
        let cfg = Arc::new(cfg);
        write(&self.server, Some(cfg.clone()));
        Ok(cfg)
    }

    fn build_client(
        self: &Arc<Self>,
        p: &Policy,
        expected: ExpectedPeer,
        alpn: Alpn,
    ) -> Result<ClientConfig, TlsError> {
        let mut cfg = ClientConfig::builder_with_provider(p.provider.clone())
            .with_protocol_versions(p.versions)
            .map_err(rustls_err("outbound TLS configuration"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::with_provider(
                self.trust.clone(),
                expected,
                p.provider.clone(),
            )))
            .with_client_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = match alpn {
            Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Opaque => Vec::new(),
        };
        if mesh_core::crypto::FIPS_BUILD && !cfg.fips() {
            return Err(TlsError::Identity(
                "outbound TLS configuration is not FIPS (rustls fips() is false)".into(),
            ));
        }
        Ok(cfg)
    }

    /// The outbound client configuration for an endpoint that must present `expected` (a
    /// SPIFFE ID): presents the workload SVID, and its [`SpiffeServerVerifier`] refuses any
    /// other server identity during the handshake.
    pub fn client_config(
        self: &Arc<Self>,
        expected: &str,
        alpn: Alpn,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let pick = |c: &PeerConfigs| match alpn {
            Alpn::Http => c.http.clone(),
            Alpn::Opaque => c.opaque.clone(),
        };
        let cached = match self.clients.read() {
            Ok(g) => g.get(expected).map(pick),
            Err(p) => p.into_inner().get(expected).map(pick),
        };
        if let Some(c) = cached {
            return Ok(c);
        }
        let peer = expected_peer(expected)?;
        let p = read(&self.policy);
        let configs = PeerConfigs {
            http: Arc::new(self.build_client(&p, peer.clone(), Alpn::Http)?),
            opaque: Arc::new(self.build_client(&p, peer, Alpn::Opaque)?),
        };
        let out = pick(&configs);
        match self.clients.write() {
            Ok(mut g) => g.insert(expected.to_string(), configs),
            Err(p) => p.into_inner().insert(expected.to_string(), configs),
        };
        Ok(out)
    }

    /// A client configuration for the control plane: its [`SpiffeServerVerifier`] expects the
    /// control plane's SPIFFE ID in this workload's trust domain (or its path in any trust
    /// domain before the first SVID, see [`mesh_core::api`]) and the configuration presents
    /// the workload SVID when `present_cert` (renewal, config) or nothing (bootstrap).
    pub fn control_client_config(
        self: &Arc<Self>,
        present_cert: bool,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let (ns, sa) = mesh_core::api::CONTROL_PLANE_NS_SA;
        let own_td = self
            .cert_info()
            .and_then(|c| SpiffeId::parse(&c.spiffe_id).ok())
            .map(|id| id.trust_domain().to_string());
        let expected = match own_td {
            Some(td) => ExpectedPeer::Exact(
                SpiffeId::workload(&td, ns, sa).map_err(|e| TlsError::Identity(e.to_string()))?,
            ),
            None => ExpectedPeer::PathInAnyTrustDomain(format!("/ns/{ns}/sa/{sa}")),
        };
        let provider = mesh_core::crypto::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(mesh_core::crypto::PROTOCOL_VERSIONS)
            .map_err(rustls_err("control-plane TLS configuration"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::with_provider(
                self.trust.clone(),
                expected,
                provider,
            )));
        let mut cfg = if present_cert {
            builder.with_client_cert_resolver(Arc::new(Resolver(self.clone())))
        } else {
            builder.with_no_client_auth()
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Serves the current certificate, both as a server and as a client.
#[derive(Debug)]
struct Resolver(Arc<TlsState>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current_key()
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.current_key()
    }
    fn has_certs(&self) -> bool {
        true
    }
}
