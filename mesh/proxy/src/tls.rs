//! TLS of the proxy: hot-swappable workload identity and trust bundle, SPIFFE-aware verifiers,
//! and the inbound (server) and outbound (client) configurations, all built from
//! [`mesh_core::crypto::provider`].
//!
//! Rotation works by indirection: the rustls configurations hold a certificate resolver and
//! verifiers that read the *current* identity and roots from [`TlsState`], so a new SVID or
//! bundle applies to the next handshake without rebuilding listeners or closing connections.
//! The configurations themselves are rebuilt only when the TLS policy (suites, groups, minimum
//! version) changes.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

use crate::config::TlsPolicy;

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// PEM could not be parsed.
    #[error("{what}: {message}")]
    Pem {
        /// Which material.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused something.
    #[error("{what}: {source}")]
    Rustls {
        /// What was being built.
        what: String,
        /// The rustls error.
        source: rustls::Error,
    },
    /// The certificate is not an X.509-SVID.
    #[error("{0}")]
    Identity(String),
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

/// The FIPS suite names this proxy may negotiate (rustls' names).
pub static FIPS_SUITE_NAMES: &[&str] = &[
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
];

/// The provider narrowed by `policy`, and the protocol versions it allows.
pub fn policy_parts(
    policy: &TlsPolicy,
) -> Result<(CryptoProvider, Vec<&'static SupportedProtocolVersion>), String> {
    let base = mesh_core::crypto::provider();
    let mut provider = (*base).clone();
    if !policy.cipher_suites.is_empty() {
        let mut suites = Vec::new();
        for name in &policy.cipher_suites {
            match base.cipher_suites.iter().find(|s| format!("{:?}", s.suite()) == *name) {
                Some(s) => suites.push(*s),
                None => {
                    return Err(format!(
                        "tls.cipher_suites: `{name}` is not a FIPS-approved suite this proxy offers ({})",
                        FIPS_SUITE_NAMES.join(", ")
                    ))
                }
            }
        }
        provider.cipher_suites = suites;
    }
    if !policy.kx_groups.is_empty() {
        let mut groups = Vec::new();
        for name in &policy.kx_groups {
            match base
                .kx_groups
                .iter()
                .find(|g| format!("{:?}", g.name()) == *name)
            {
                Some(g) => groups.push(*g),
                None => {
                    return Err(format!(
                    "tls.kx_groups: `{name}` is not FIPS-approved here (use secp256r1, secp384r1)"
                ))
                }
            }
        }
        provider.kx_groups = groups;
    }
    let versions: Vec<&'static SupportedProtocolVersion> = match policy.min_version.as_str() {
        "" | "TLSv1_2" | "TLSv1.2" => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        "TLSv1_3" | "TLSv1.3" => vec![&rustls::version::TLS13],
        other => {
            return Err(format!(
                "tls.min_version: `{other}` (use TLSv1_2 or TLSv1_3)"
            ))
        }
    };
    let has_13 = provider
        .cipher_suites
        .iter()
        .any(|s| s.version() == &rustls::version::TLS13);
    if !has_13 {
        return Err(
            "tls.cipher_suites: keep at least one TLS 1.3 suite (mesh peers use TLS 1.3)".into(),
        );
    }
    Ok((provider, versions))
}

struct Material {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// The shared, swappable TLS state of the proxy.
pub struct TlsState {
    material: RwLock<Option<Material>>,
    roots: RwLock<Arc<RootCertStore>>,
    client_verifier: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
    server: RwLock<Option<Arc<ServerConfig>>>,
    client: RwLock<Option<Arc<ClientConfig>>>,
    policy: RwLock<TlsPolicy>,
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

/// Parses every certificate of a PEM text.
pub fn certs_from_pem(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.into(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Parses a private key (PKCS#8 or SEC1) from PEM.
pub fn key_from_pem(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: what.into(),
        message: format!("{e} (expected a PKCS#8 or SEC1 private key)"),
    })
}

/// The SPIFFE ID of a certificate (its `spiffe://` URI SAN).
pub fn spiffe_id_of(cert: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("spiffe://") => Some((*u).to_string()),
        _ => None,
    })
}

fn leaf_info(leaf: &[u8]) -> Result<(String, i64, i64, String), TlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| TlsError::Identity(format!("workload certificate cannot be parsed: {e}")))?;
    let id = spiffe_id_of(leaf).ok_or_else(|| {
        TlsError::Identity(
            "workload certificate has no spiffe:// URI SAN; it is not an X.509-SVID".into(),
        )
    })?;
    Ok((
        id,
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
        cert.raw_serial_as_string(),
    ))
}

impl TlsState {
    /// Empty state: no identity yet, no roots.
    pub fn new() -> Arc<Self> {
        Arc::new(TlsState {
            material: RwLock::new(None),
            roots: RwLock::new(Arc::new(RootCertStore::empty())),
            client_verifier: RwLock::new(None),
            server: RwLock::new(None),
            client: RwLock::new(None),
            policy: RwLock::new(TlsPolicy::default()),
        })
    }

    /// Installs a new workload certificate chain and key (next handshakes use it).
    pub fn set_identity(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CertInfo, TlsError> {
        let leaf = chain
            .first()
            .ok_or_else(|| TlsError::Identity("empty certificate chain".into()))?;
        let (spiffe_id, not_before, not_after, serial) = leaf_info(leaf)?;
        let provider = mesh_core::crypto::provider();
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|source| TlsError::Rustls {
                what: "workload private key".into(),
                source,
            })?;
        let certified = CertifiedKey::new(chain.clone(), signing);
        certified.keys_match().map_err(|source| TlsError::Rustls {
            what: "workload key does not match the certificate".into(),
            source,
        })?;
        let info = CertInfo {
            spiffe_id,
            not_before,
            not_after,
            serial,
            chain_len: chain.len(),
            trust_bundle_roots: read(&self.roots).len(),
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

    /// Installs a new trust bundle (PEM; every certificate in it becomes a root).
    pub fn set_trust_bundle(&self, pem: &str) -> Result<usize, TlsError> {
        let certs = certs_from_pem("trust bundle", pem)?;
        let mut roots = RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|source| TlsError::Rustls {
                what: "trust bundle".into(),
                source,
            })?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            mesh_core::crypto::provider(),
        )
        .build()
        .map_err(|e| TlsError::Identity(format!("client verifier over the trust bundle: {e}")))?;
        let n = roots.len();
        write(&self.roots, roots);
        write(&self.client_verifier, Some(verifier));
        if let Ok(mut g) = self.material.write() {
            if let Some(m) = g.as_mut() {
                m.info.trust_bundle_roots = n;
            }
        }
        Ok(n)
    }

    /// Applies a TLS policy (rebuilds the configurations).
    pub fn set_policy(self: &Arc<Self>, policy: &TlsPolicy) -> Result<(), TlsError> {
        policy_parts(policy).map_err(TlsError::Identity)?;
        if *policy != read(&self.policy) {
            write(&self.policy, policy.clone());
            write(&self.server, None);
            write(&self.client, None);
        }
        Ok(())
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

    /// The inbound server configuration (mTLS; client certificate optional at the TLS layer
    /// only in the sense that the caller decides per mode — see [`crate::inbound`]).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        if let Some(c) = read(&self.server) {
            return Ok(c);
        }
        let (provider, versions) = policy_parts(&read(&self.policy)).map_err(TlsError::Identity)?;
        let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|source| TlsError::Rustls {
                what: "inbound TLS configuration".into(),
                source,
            })?
            .with_client_cert_verifier(Arc::new(DynClientVerifier(self.clone())))
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

    /// The outbound client configuration (presents the workload SVID, verifies the server's
    /// chain against the bundle and requires a SPIFFE ID; the caller compares the ID).
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>, TlsError> {
        if let Some(c) = read(&self.client) {
            return Ok(c);
        }
        let (provider, versions) = policy_parts(&read(&self.policy)).map_err(TlsError::Identity)?;
        let provider = Arc::new(provider);
        let mut cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|source| TlsError::Rustls {
                what: "outbound TLS configuration".into(),
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
                state: self.clone(),
                provider,
            }))
            .with_client_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if mesh_core::crypto::FIPS_BUILD && !cfg.fips() {
            return Err(TlsError::Identity(
                "outbound TLS configuration is not FIPS (rustls fips() is false)".into(),
            ));
        }
        let cfg = Arc::new(cfg);
        write(&self.client, Some(cfg.clone()));
        Ok(cfg)
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

/// Client-certificate verifier that follows trust-bundle updates.
#[derive(Debug)]
struct DynClientVerifier(Arc<TlsState>);

impl DynClientVerifier {
    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        read(&self.0.client_verifier)
            .ok_or_else(|| rustls::Error::General("no trust bundle loaded yet".into()))
    }
}

impl ClientCertVerifier for DynClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let v = self
            .inner()?
            .verify_client_cert(end_entity, intermediates, now)?;
        if spiffe_id_of(end_entity.as_ref()).is_none() {
            return Err(rustls::Error::General(
                "client certificate has no SPIFFE ID".into(),
            ));
        }
        Ok(v)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        mesh_core::crypto::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Server-certificate verifier for mesh peers: the chain must lead to the current bundle and
/// the leaf must carry a SPIFFE ID. The DNS server name is ignored; the caller checks that the
/// SPIFFE ID is the one expected for the endpoint before sending any data.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    state: Arc<TlsState>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let roots = read(&self.state.roots);
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if spiffe_id_of(end_entity.as_ref()).is_none() {
            return Err(rustls::Error::General(
                "server certificate has no SPIFFE ID".into(),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl TlsState {
    /// A client configuration for the control plane: verifies its chain against the current
    /// bundle (the caller checks its SPIFFE ID) and presents the workload SVID when
    /// `present_cert` (renewal, config) or nothing (bootstrap).
    pub fn control_client_config(
        self: &Arc<Self>,
        present_cert: bool,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = mesh_core::crypto::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(mesh_core::crypto::PROTOCOL_VERSIONS)
            .map_err(|source| TlsError::Rustls {
                what: "control-plane TLS configuration".into(),
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
                state: self.clone(),
                provider,
            }));
        let mut cfg = if present_cert {
            builder.with_client_cert_resolver(Arc::new(Resolver(self.clone())))
        } else {
            builder.with_no_client_auth()
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// A fresh P-256 key (FIPS module) and a PKCS#10 CSR for it, with `spiffe_id` as its only URI
/// SAN, or no SAN (the control plane then uses the identity the token entitles).
pub fn generate_csr(spiffe_id: Option<&str>) -> Result<(String, PrivateKeyDer<'static>), TlsError> {
    use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
    let err = |e: rcgen::Error| TlsError::Identity(format!("CSR generation: {e}"));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(id) = spiffe_id {
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into().map_err(err)?)];
    }
    let csr = params.serialize_request(&key).map_err(err)?;
    let pem = csr.pem().map_err(err)?;
    let der = PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    ));
    Ok((pem, der))
}
