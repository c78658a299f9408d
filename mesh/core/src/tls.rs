//! TLS of the mesh, all built from [`crate::crypto::provider`]: the one SPIFFE server verifier
//! ([`SpiffeServerVerifier`], which checks the expected peer identity itself), the one client
//! verifier ([`SpiffeClientVerifier`]), both over a swappable [`TrustStore`] (CA rotation), the
//! one policy narrower ([`policy_provider`]), configuration builders for fixed identities, and
//! the descriptions the FIPS self-report prints.

use std::sync::{Arc, RwLock};

use distro_schema::TlsConfigReport;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, DistinguishedName, RootCertStore, ServerConfig, SupportedProtocolVersion,
};

use crate::crypto::{self, PROTOCOL_VERSIONS};
use crate::identity::SpiffeId;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A certificate could not be generated.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The trust bundle could not be read.
    #[error("trust bundle: {0}")]
    Bundle(String),
    /// A pushed TLS policy names something outside the FIPS set.
    #[error("TLS policy: {0}")]
    Policy(String),
}

fn suites_and_groups(provider: &rustls::crypto::CryptoProvider) -> (Vec<String>, Vec<String>) {
    let suites = provider
        .cipher_suites
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    let groups = provider
        .kx_groups
        .iter()
        .map(|g| format!("{:?}", g.name()))
        .collect();
    (suites, groups)
}

fn versions() -> Vec<String> {
    PROTOCOL_VERSIONS
        .iter()
        .map(|v| format!("{:?}", v.version))
        .collect()
}

/// Describes a server configuration for the FIPS self-report.
pub fn describe_server(name: &str, config: &ServerConfig) -> TlsConfigReport {
    let (cipher_suites, kx_groups) = suites_and_groups(config.crypto_provider());
    TlsConfigReport {
        name: name.to_string(),
        role: "server".into(),
        fips: config.fips(),
        protocol_versions: versions(),
        cipher_suites,
        kx_groups,
    }
}

/// Describes a client configuration for the FIPS self-report.
pub fn describe_client(name: &str, config: &ClientConfig) -> TlsConfigReport {
    let (cipher_suites, kx_groups) = suites_and_groups(config.crypto_provider());
    TlsConfigReport {
        name: name.to_string(),
        role: "client".into(),
        fips: config.fips(),
        protocol_versions: versions(),
        cipher_suites,
        kx_groups,
    }
}

/// A throw-away CA and workload identity, made with the FIPS module, so `fips-check` can build
/// the very configurations a component serves with before it has been issued an identity.
pub struct EphemeralIdentity {
    /// Trust roots holding the throw-away CA.
    pub roots: Arc<RootCertStore>,
    /// Leaf certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Leaf private key (PKCS#8).
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl EphemeralIdentity {
    /// Makes a P-256 CA and a leaf for `spiffe_id`.
    pub fn new(spiffe_id: &str) -> Result<Self, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType,
            PKCS_ECDSA_P256_SHA256,
        };
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fips-check ephemeral CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let ca_issuer = rcgen::Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut leaf_params = CertificateParams::default();
        leaf_params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into()?)];
        let leaf = leaf_params.signed_by(&leaf_key, &ca_issuer)?;

        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone())?;
        Ok(EphemeralIdentity {
            roots: Arc::new(roots),
            chain: vec![leaf.der().clone()],
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        })
    }

    /// The private key in the form rustls takes.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

// ---------------------------------------------------------------------------------------------
// SPIFFE-aware configurations: peers are authenticated by the SPIFFE ID in their X.509-SVID (one
// URI SAN), not by a DNS name. One server verifier and one client verifier, both over a
// [`TrustStore`] whose roots can be replaced while the configurations built on it stay in place.

/// The roots a component trusts, shared by every configuration built on it and replaceable at
/// run time: during a CA rotation the control plane pushes a bundle holding the old and the new
/// root, later one with only the new root, and the next handshake uses what was installed last.
/// Cloning shares the store.
#[derive(Clone)]
pub struct TrustStore(Arc<RwLock<Arc<Trust>>>);

struct Trust {
    roots: Arc<RootCertStore>,
    /// webpki verification of client chains over `roots` (client-auth usage), built once per
    /// bundle; `None` while the store is empty.
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl Trust {
    fn new(roots: Arc<RootCertStore>) -> Self {
        // The builder only fails for an empty root store (or bad CRLs, of which there are none).
        let clients =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), crypto::provider())
                .build()
                .ok();
        Trust { roots, clients }
    }
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("roots", &self.len())
            .finish()
    }
}

impl From<Arc<RootCertStore>> for TrustStore {
    fn from(roots: Arc<RootCertStore>) -> Self {
        TrustStore(Arc::new(RwLock::new(Arc::new(Trust::new(roots)))))
    }
}

impl TrustStore {
    /// A store with no roots yet: every peer is refused until [`TrustStore::replace_pem`].
    pub fn empty() -> Self {
        Self::from(Arc::new(RootCertStore::empty()))
    }

    /// A store holding the certificates of a PEM trust bundle.
    pub fn from_pem(bundle_pem: &str) -> Result<Self, TlsError> {
        Ok(Self::from(roots_from_pem(bundle_pem)?))
    }

    fn current(&self) -> Arc<Trust> {
        match self.0.read() {
            Ok(g) => g.clone(),
            // A writer panicked between two complete values; the one left is whole.
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the roots; handshakes that start afterwards use the new ones.
    pub fn replace(&self, roots: Arc<RootCertStore>) {
        let new = Arc::new(Trust::new(roots));
        match self.0.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// Replaces the roots with those of a PEM bundle (refused, and the old roots kept, when the
    /// bundle holds no certificate). Returns the number of roots now trusted.
    pub fn replace_pem(&self, bundle_pem: &str) -> Result<usize, TlsError> {
        let roots = roots_from_pem(bundle_pem)?;
        let n = roots.len();
        self.replace(roots);
        Ok(n)
    }

    /// The roots in force.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.current().roots.clone()
    }

    /// Number of roots in force.
    pub fn len(&self) -> usize {
        self.current().roots.len()
    }

    /// Whether no root is trusted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which server identities a SPIFFE client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedPeer {
    /// Exactly this SPIFFE ID.
    Exact(SpiffeId),
    /// Any SPIFFE ID in this trust domain.
    TrustDomain(String),
    /// Any ID from the given list.
    AnyOf(Vec<SpiffeId>),
    /// This path (`/ns/<ns>/sa/<sa>`) in whatever trust domain the roots vouch for: a workload
    /// bootstrapping with an opaque join token does not know its trust domain yet.
    PathInAnyTrustDomain(String),
}

impl ExpectedPeer {
    /// Whether `id` is acceptable.
    pub fn accepts(&self, id: &SpiffeId) -> bool {
        match self {
            ExpectedPeer::Exact(want) => want == id,
            ExpectedPeer::TrustDomain(td) => id.trust_domain() == td,
            ExpectedPeer::AnyOf(list) => list.contains(id),
            ExpectedPeer::PathInAnyTrustDomain(path) => id.path() == path,
        }
    }
}

impl std::fmt::Display for ExpectedPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedPeer::Exact(id) => write!(f, "{id}"),
            ExpectedPeer::TrustDomain(td) => write!(f, "any identity in trust domain {td}"),
            ExpectedPeer::AnyOf(list) => {
                let ids: Vec<String> = list.iter().map(ToString::to_string).collect();
                write!(f, "one of [{}]", ids.join(", "))
            }
            ExpectedPeer::PathInAnyTrustDomain(p) => write!(f, "spiffe://<trust-domain>{p}"),
        }
    }
}

/// The peer's certificate chains to a trusted root but does not carry the identity the
/// configuration expects. Carried inside the rustls error as
/// `InvalidCertificate(Other(..))`; [`identity_mismatch`] finds it again, so callers can count
/// and report it apart from other handshake failures.
#[derive(Debug, Clone, thiserror::Error)]
#[error("server presented {presented}, expected {expected}")]
pub struct IdentityMismatch {
    /// What the peer presented: its SPIFFE ID, or why it has none.
    pub presented: String,
    /// What was expected.
    pub expected: String,
}

impl IdentityMismatch {
    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(self),
        )))
    }
}

/// The [`IdentityMismatch`] inside a failed handshake's error, if that is why it failed.
/// Accepts the `std::io::Error` tokio-rustls returns as well as a bare `rustls::Error`.
pub fn identity_mismatch<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a IdentityMismatch> {
    let rustls_err = match err.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        None => err.downcast_ref::<rustls::Error>()?,
    };
    match rustls_err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
            o.0.downcast_ref::<IdentityMismatch>()
        }
        _ => None,
    }
}

/// The handshake-signature checks both SPIFFE verifiers make, with one provider's algorithms
/// (rustls asks each verifier separately; the answer is the same).
#[derive(Debug)]
struct Signatures(Arc<rustls::crypto::CryptoProvider>);

impl Signatures {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies a server's X.509-SVID: the chain must lead to a root of the [`TrustStore`] as it is
/// at handshake time (webpki path validation with the FIPS provider's algorithms), the leaf must
/// carry exactly one URI SAN holding a valid SPIFFE ID, and the [`ExpectedPeer`] must accept
/// it; otherwise the handshake fails before any application byte is sent. The TLS server name
/// is ignored: SVIDs carry no DNS names.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    trust: TrustStore,
    expected: ExpectedPeer,
    signatures: Signatures,
}

impl SpiffeServerVerifier {
    /// A verifier trusting `trust` and accepting `expected`.
    pub fn new(trust: impl Into<TrustStore>, expected: ExpectedPeer) -> Self {
        Self::with_provider(trust, expected, crypto::provider())
    }

    /// The same with the signature algorithms of `provider` (a policy-narrowed
    /// [`crypto::provider`]).
    pub fn with_provider(
        trust: impl Into<TrustStore>,
        expected: ExpectedPeer,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Self {
        SpiffeServerVerifier {
            trust: trust.into(),
            expected,
            signatures: Signatures(provider),
        }
    }

    /// The identity this verifier accepts.
    pub fn expected(&self) -> &ExpectedPeer {
        &self.expected
    }
}

impl rustls::client::danger::ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let roots = self.trust.roots();
        if roots.is_empty() {
            return Err(rustls::Error::General("no trust bundle loaded yet".into()));
        }
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            intermediates,
            now,
            self.signatures.0.signature_verification_algorithms.all,
        )?;
        let ok = match crate::identity::spiffe_id_of(end_entity) {
            Ok(id) if self.expected.accepts(&id) => Ok(()),
            Ok(id) => Err(id.to_string()),
            Err(e) => Err(format!("no SPIFFE ID ({e})")),
        };
        ok.map_err(|presented| {
            IdentityMismatch {
                presented,
                expected: self.expected.to_string(),
            }
            .into_rustls()
        })?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.signatures.schemes()
    }
}

/// Whether a SPIFFE server requires a client SVID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present an SVID chaining to the roots (mTLS).
    Required,
    /// A client may connect without a certificate (the application checks per request, e.g. the
    /// control plane's bootstrap path); one that presents a certificate must present an SVID
    /// chaining to the roots.
    Optional,
}

/// Verifies a client's X.509-SVID: the chain must lead to a root of the [`TrustStore`] as it is
/// at handshake time (webpki, client-auth usage) and the leaf must carry exactly one URI SAN
/// holding a valid SPIFFE ID. Which IDs may do what is the application's decision (the proxy's
/// inbound authorization, the control plane's issuance policy): read the ID from the
/// connection with [`crate::identity::spiffe_id_of`].
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    trust: TrustStore,
    client_auth: ClientAuth,
    signatures: Signatures,
}

impl SpiffeClientVerifier {
    /// A verifier trusting `trust`.
    pub fn new(trust: impl Into<TrustStore>, client_auth: ClientAuth) -> Self {
        SpiffeClientVerifier {
            trust: trust.into(),
            client_auth,
            signatures: Signatures(crypto::provider()),
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The roots change at run time and cannot be lent out from behind the lock; mesh
        // clients hold one SVID and need no hint.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let trust = self.trust.current();
        let clients = trust
            .clients
            .as_ref()
            .ok_or_else(|| rustls::Error::General("no trust bundle loaded yet".into()))?;
        let verified = clients.verify_client_cert(end_entity, intermediates, now)?;
        crate::identity::spiffe_id_of(end_entity).map_err(|e| {
            rustls::Error::General(format!("client certificate is not an X.509-SVID: {e}"))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.signatures.schemes()
    }
}

/// Builds a root store from a PEM trust bundle (one or more CA certificates).
pub fn roots_from_pem(bundle_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let certs =
        crate::identity::certs_from_pem(bundle_pem).map_err(|e| TlsError::Bundle(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Bundle(
            "no CERTIFICATE block in the trust bundle".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c)?;
    }
    Ok(Arc::new(roots))
}

/// A server configuration that presents `chain` (an SVID) and verifies client SVIDs with a
/// [`SpiffeClientVerifier`] over `trust`. The client's SPIFFE ID is read from the connection's
/// peer certificates with [`crate::identity::spiffe_id_of`] and authorized by the application.
pub fn spiffe_server_config(
    trust: impl Into<TrustStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsError> {
    let config = ServerConfig::builder_with_provider(crypto::provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(trust, client_auth)))
        .with_single_cert(chain, key)?;
    Ok(config)
}

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The one policy narrower of the mesh: the FIPS provider ([`crypto::provider`]) cut down to a
/// [`crate::api::TlsPolicy`], and the protocol versions it allows. The rules, the same for a
/// pushed policy and a static file:
/// - every name must be in the FIPS set (rustls' `{:?}` names of [`crypto::FIPS_CIPHER_SUITES`]
///   and of the P-256 / P-384 groups); the error lists the allowed ones;
/// - an empty list is refused (it would allow nothing; a policy that wants the whole FIPS set
///   lists it, which is what [`crate::api::TlsPolicy::default`] does);
/// - at least one TLS 1.3 suite (mesh peers speak TLS 1.3);
/// - `min_version` is `TLSv1_2` or `TLSv1_3`.
pub fn policy_provider(
    policy: &crate::api::TlsPolicy,
) -> Result<
    (
        Arc<rustls::crypto::CryptoProvider>,
        &'static [&'static SupportedProtocolVersion],
    ),
    TlsError,
> {
    let base = crypto::provider();
    let (suite_names, group_names) = suites_and_groups(&base);
    if policy.cipher_suites.is_empty() {
        return Err(TlsError::Policy(format!(
            "tls.cipher_suites is empty, which would allow nothing; list some of: {}",
            suite_names.join(", ")
        )));
    }
    if policy.kx_groups.is_empty() {
        return Err(TlsError::Policy(format!(
            "tls.kx_groups is empty, which would allow nothing; list some of: {}",
            group_names.join(", ")
        )));
    }
    let mut suites = Vec::new();
    for name in &policy.cipher_suites {
        let i = suite_names.iter().position(|n| n == name).ok_or_else(|| {
            TlsError::Policy(format!(
                "tls.cipher_suites: {name:?} is not a FIPS-approved suite; allowed: {}",
                suite_names.join(", ")
            ))
        })?;
        suites.push(base.cipher_suites[i]);
    }
    let mut groups = Vec::new();
    for name in &policy.kx_groups {
        let i = group_names.iter().position(|n| n == name).ok_or_else(|| {
            TlsError::Policy(format!(
                "tls.kx_groups: {name:?} is not a FIPS-approved group; allowed: {}",
                group_names.join(", ")
            ))
        })?;
        groups.push(base.kx_groups[i]);
    }
    if !suites
        .iter()
        .any(|s| s.version() == &rustls::version::TLS13)
    {
        return Err(TlsError::Policy(
            "tls.cipher_suites: keep at least one TLS 1.3 suite (mesh peers speak TLS 1.3)".into(),
        ));
    }
    let versions: &'static [&'static SupportedProtocolVersion] = match policy.min_version.as_str() {
        "TLSv1_3" => TLS13_ONLY,
        "TLSv1_2" => PROTOCOL_VERSIONS,
        other => {
            return Err(TlsError::Policy(format!(
                "tls.min_version {other:?}: use \"TLSv1_2\" or \"TLSv1_3\""
            )))
        }
    };
    let mut provider = (*base).clone();
    provider.cipher_suites = suites;
    provider.kx_groups = groups;
    Ok((Arc::new(provider), versions))
}

/// A client configuration that presents `chain` (an SVID) and accepts servers whose SVID chains
/// to `trust` and whose SPIFFE ID `expected` accepts ([`SpiffeServerVerifier`]).
pub fn spiffe_client_config(
    trust: impl Into<TrustStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    expected: ExpectedPeer,
) -> Result<ClientConfig, TlsError> {
    let config = ClientConfig::builder_with_provider(crypto::provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(trust, expected)))
        .with_client_auth_cert(chain, key)?;
    Ok(config)
}

/// A client configuration without a client certificate, for `POST /v1/bootstrap` (the
/// workload has no SVID yet). The server is still verified as in [`spiffe_client_config`].
pub fn spiffe_bootstrap_client_config(
    trust: impl Into<TrustStore>,
    expected: ExpectedPeer,
) -> Result<ClientConfig, TlsError> {
    let config = ClientConfig::builder_with_provider(crypto::provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(trust, expected)))
        .with_no_client_auth();
    Ok(config)
}

/// A client configuration for a server that is named by a DNS name or an IP address rather than
/// a SPIFFE ID (the control plane's etcd cluster): webpki path validation to `roots` and the
/// name check against the server name the connection is opened with, both with the FIPS
/// provider's algorithms ([`crypto::provider`], TLS 1.2/1.3 FIPS suites, P-256/P-384), an
/// optional client certificate, and `alpn` offered.
pub fn webpki_client_config(
    roots: Arc<RootCertStore>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto::provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SpiffeId;

    fn handshake(
        client: impl Into<Arc<ClientConfig>>,
        server: impl Into<Arc<ServerConfig>>,
    ) -> Result<(), rustls::Error> {
        let name = rustls::pki_types::ServerName::try_from("workload")
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut c = rustls::ClientConnection::new(client.into(), name)?;
        let mut s = rustls::ServerConnection::new(server.into())?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            s.read_tls(&mut buf.as_slice())
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            s.process_new_packets()?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            c.read_tls(&mut buf.as_slice())
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        Err(rustls::Error::General("handshake did not finish".into()))
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ephemeral(spiffe_id: &str) -> EphemeralIdentity {
        EphemeralIdentity::new(spiffe_id).unwrap_or_else(|e| panic!("{e}"))
    }

    fn server_of(ident: &EphemeralIdentity, auth: ClientAuth) -> ServerConfig {
        spiffe_server_config(ident.roots.clone(), ident.chain.clone(), ident.key(), auth)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A CA and a server certificate for `dns_name` signed by it: (CA roots, server config).
    fn named_server(dns_name: &str) -> (Arc<RootCertStore>, ServerConfig) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
        let ca_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: a client that trusts another test CA must see an unknown issuer.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("test CA {n}"));
        let ca = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("{e}"));
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
        let leaf = CertificateParams::new(vec![dns_name.to_string()])
            .and_then(|p| p.signed_by(&key, &issuer))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.der().clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let server = ServerConfig::builder_with_provider(crypto::provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .and_then(|b| {
                b.with_no_client_auth().with_single_cert(
                    vec![leaf.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
            })
            .unwrap_or_else(|e| panic!("{e}"));
        (Arc::new(roots), server)
    }

    /// The webpki client configuration (etcd's) accepts a server whose certificate chains to its
    /// roots and names the host it dialled, refuses another CA and another name, offers its
    /// ALPN, and is FIPS in a FIPS build.
    #[test]
    fn webpki_client_checks_chain_and_name() {
        let (roots, server) = named_server("workload");
        let client =
            |roots| webpki_client_config(roots, None, &[b"h2"]).unwrap_or_else(|e| panic!("{e}"));
        let ok = client(roots.clone());
        assert_eq!(ok.alpn_protocols, [b"h2".to_vec()]);
        assert_eq!(ok.fips(), crypto::FIPS_BUILD);
        assert!(handshake(ok, server.clone()).is_ok());

        let (other_roots, _) = named_server("workload");
        match handshake(client(other_roots), server) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {}
            other => panic!("another CA: {other:?}"),
        }
        let (roots, wrong_name) = named_server("other.test");
        match handshake(client(roots), wrong_name) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => {}
            other => panic!("another name: {other:?}"),
        }
    }

    /// The SPIFFE verifier accepts the expected server identity (exact, by trust domain, from a
    /// list, by path) and refuses another one with an [`IdentityMismatch`] that
    /// [`identity_mismatch`] recognises; a server requiring client SVIDs refuses a client
    /// without one.
    #[test]
    fn spiffe_verifier_checks_identity() {
        let server_id = "spiffe://td.example/ns/a/sa/server";
        let ident = ephemeral(server_id);
        let server = || server_of(&ident, ClientAuth::Required);
        let client = |expected| {
            spiffe_client_config(
                ident.roots.clone(),
                ident.chain.clone(),
                ident.key(),
                expected,
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        for ok in [
            ExpectedPeer::Exact(id(server_id)),
            ExpectedPeer::TrustDomain("td.example".into()),
            ExpectedPeer::AnyOf(vec![id("spiffe://td.example/x"), id(server_id)]),
            ExpectedPeer::PathInAnyTrustDomain("/ns/a/sa/server".into()),
        ] {
            assert!(handshake(client(ok.clone()), server()).is_ok(), "{ok:?}");
        }
        for wrong in [
            ExpectedPeer::Exact(id("spiffe://td.example/ns/a/sa/other")),
            ExpectedPeer::TrustDomain("other.example".into()),
            ExpectedPeer::AnyOf(vec![id("spiffe://td.example/x")]),
            ExpectedPeer::PathInAnyTrustDomain("/ns/a/sa/other".into()),
        ] {
            let err = handshake(client(wrong.clone()), server())
                .err()
                .unwrap_or_else(|| panic!("{wrong:?} accepted {server_id}"));
            let m = identity_mismatch(&err).unwrap_or_else(|| panic!("not a mismatch: {err}"));
            assert_eq!(m.presented, server_id);
            assert_eq!(m.expected, wrong.to_string());
            // tokio-rustls hands the same error over wrapped in an io::Error.
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, err);
            assert!(identity_mismatch(&io).is_some());
        }
        let anonymous =
            spiffe_bootstrap_client_config(ident.roots.clone(), ExpectedPeer::Exact(id(server_id)))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            handshake(anonymous, server()).is_err(),
            "mTLS server accepted a client without SVID"
        );
        let anonymous =
            spiffe_bootstrap_client_config(ident.roots.clone(), ExpectedPeer::Exact(id(server_id)))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            handshake(anonymous, server_of(&ident, ClientAuth::Optional)).is_ok(),
            "optional client auth refused a client without a certificate"
        );
        // Every configuration here is FIPS-compliant in a FIPS build.
        assert_eq!(server().fips(), crate::crypto::FIPS_BUILD);
    }

    /// Replacing the roots of a [`TrustStore`] changes what the configurations built on it
    /// accept, without rebuilding them: an empty store refuses everyone, a rotation overlap
    /// (old + new root) accepts both CAs, and after the old root is dropped its SVIDs are
    /// refused, on the client side (server verifier) and the server side (client verifier).
    #[test]
    fn trust_store_rotation_applies_to_built_configs() {
        let old = ephemeral("spiffe://td.example/ns/a/sa/old");
        let new = ephemeral("spiffe://td.example/ns/a/sa/new");
        let both = Arc::new(RootCertStore {
            roots: old
                .roots
                .roots
                .iter()
                .chain(new.roots.roots.iter())
                .cloned()
                .collect(),
        });
        let trust = TrustStore::empty();
        let client = Arc::new(
            spiffe_client_config(
                trust.clone(),
                new.chain.clone(),
                new.key(),
                ExpectedPeer::TrustDomain("td.example".into()),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        // The server side trusts what `trust` holds, too.
        let server_new = Arc::new(
            spiffe_server_config(
                trust.clone(),
                new.chain.clone(),
                new.key(),
                ClientAuth::Required,
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        // It trusts both CAs itself: what is tested is the client's view of the server.
        let server_old = Arc::new(
            spiffe_server_config(
                both.clone(),
                old.chain.clone(),
                old.key(),
                ClientAuth::Required,
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(trust.is_empty());
        assert!(handshake(client.clone(), server_old.clone()).is_err());

        trust.replace(old.roots.clone());
        assert!(handshake(client.clone(), server_old.clone()).is_ok());
        assert!(
            handshake(client.clone(), server_new.clone()).is_err(),
            "a root not in the store was trusted"
        );

        trust.replace(both);
        assert_eq!(trust.len(), 2);
        assert!(handshake(client.clone(), server_old.clone()).is_ok());
        assert!(handshake(client.clone(), server_new.clone()).is_ok());

        trust.replace(new.roots.clone());
        assert!(
            handshake(client.clone(), server_old).is_err(),
            "the dropped root is still trusted"
        );
        assert!(handshake(client, server_new).is_ok());
        assert!(
            trust.replace_pem("not a bundle").is_err(),
            "garbage accepted as a bundle"
        );
        assert_eq!(trust.len(), 1, "a refused bundle must keep the old roots");
    }

    /// A client certificate that chains to a trusted root but is not an X.509-SVID (no URI SAN)
    /// is refused by the client verifier.
    #[test]
    fn client_verifier_requires_an_svid() {
        use rcgen::{
            BasicConstraints, CertificateParams, IsCa, KeyPair, SanType, PKCS_ECDSA_P256_SHA256,
        };
        let ca_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("{e}"));
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |sans: Vec<SanType>| {
            let key =
                KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
            let mut p = CertificateParams::default();
            p.subject_alt_names = sans;
            let cert = p.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}"));
            (
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.der().clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let roots = Arc::new(roots);
        let server_id = "spiffe://td.example/ns/a/sa/server";
        let (schain, skey) = leaf(vec![SanType::URI(
            server_id.try_into().unwrap_or_else(|e| panic!("{e:?}")),
        )]);
        let server = || {
            spiffe_server_config(
                roots.clone(),
                schain.clone(),
                skey.clone_key(),
                ClientAuth::Required,
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let client = |(chain, key)| {
            spiffe_client_config(
                roots.clone(),
                chain,
                key,
                ExpectedPeer::Exact(id(server_id)),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let svid = leaf(vec![SanType::URI(
            "spiffe://td.example/ns/a/sa/client"
                .try_into()
                .unwrap_or_else(|e| panic!("{e:?}")),
        )]);
        assert!(handshake(client(svid), server()).is_ok());
        let dns_only = leaf(vec![SanType::DnsName(
            "client.example"
                .try_into()
                .unwrap_or_else(|e| panic!("{e:?}")),
        )]);
        assert!(
            handshake(client(dns_only), server()).is_err(),
            "a client certificate without a SPIFFE ID was accepted"
        );
        let two_uris = leaf(vec![
            SanType::URI(
                "spiffe://td.example/a"
                    .try_into()
                    .unwrap_or_else(|e| panic!("{e:?}")),
            ),
            SanType::URI(
                "spiffe://td.example/b"
                    .try_into()
                    .unwrap_or_else(|e| panic!("{e:?}")),
            ),
        ]);
        assert!(
            handshake(client(two_uris), server()).is_err(),
            "a client certificate with two URI SANs was accepted"
        );
    }

    /// The policy narrower: a narrowed policy still handshakes, and every rule refuses what it
    /// names (non-FIPS names, empty lists, no TLS 1.3 suite, an unknown minimum version).
    #[test]
    fn policy_narrower_rules() {
        let default = crate::api::TlsPolicy::default();
        let (p, versions) = policy_provider(&default).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.cipher_suites.len(),
            crate::crypto::FIPS_CIPHER_SUITES.len()
        );
        assert_eq!(versions.len(), 2);
        let narrow = crate::api::TlsPolicy {
            min_version: "TLSv1_3".into(),
            cipher_suites: vec!["TLS13_AES_128_GCM_SHA256".into()],
            kx_groups: vec!["secp384r1".into()],
        };
        let (p, versions) = policy_provider(&narrow).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.cipher_suites.len(), 1);
        assert_eq!(p.kx_groups.len(), 1);
        assert_eq!(versions, TLS13_ONLY);
        let server_id = "spiffe://td.example/ns/a/sa/server";
        let ident = ephemeral(server_id);
        let pc = ClientConfig::builder_with_provider(p.clone())
            .with_protocol_versions(versions)
            .unwrap_or_else(|e| panic!("{e}"))
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::with_provider(
                ident.roots.clone(),
                ExpectedPeer::Exact(id(server_id)),
                p.clone(),
            )))
            .with_client_auth_cert(ident.chain.clone(), ident.key())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pc.fips(), crate::crypto::FIPS_BUILD);
        assert!(handshake(pc, server_of(&ident, ClientAuth::Required)).is_ok());

        let refused = |policy: crate::api::TlsPolicy, needle: &str| {
            let e = policy_provider(&policy)
                .err()
                .unwrap_or_else(|| panic!("accepted: {policy:?}"))
                .to_string();
            assert!(e.contains(needle), "{e}");
        };
        refused(
            crate::api::TlsPolicy {
                cipher_suites: vec!["TLS13_CHACHA20_POLY1305_SHA256".into()],
                ..narrow.clone()
            },
            "not a FIPS-approved suite; allowed: TLS13_AES_256_GCM_SHA384",
        );
        refused(
            crate::api::TlsPolicy {
                kx_groups: vec!["X25519".into()],
                ..narrow.clone()
            },
            "not a FIPS-approved group; allowed: secp256r1, secp384r1",
        );
        refused(
            crate::api::TlsPolicy {
                cipher_suites: vec![],
                ..narrow.clone()
            },
            "tls.cipher_suites is empty",
        );
        refused(
            crate::api::TlsPolicy {
                kx_groups: vec![],
                ..narrow.clone()
            },
            "tls.kx_groups is empty",
        );
        refused(
            crate::api::TlsPolicy {
                min_version: "TLSv1_2".into(),
                cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()],
                ..narrow.clone()
            },
            "keep at least one TLS 1.3 suite",
        );
        refused(
            crate::api::TlsPolicy {
                min_version: "TLSv1.2".into(),
                ..narrow
            },
            "use \"TLSv1_2\" or \"TLSv1_3\"",
        );
    }
}
