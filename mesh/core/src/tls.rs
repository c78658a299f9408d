//! TLS configurations of the mesh, all built from [`crate::crypto::provider`].

use std::sync::Arc;

use distro_schema::TlsConfigReport;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::crypto::{self, PROTOCOL_VERSIONS};

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
}

/// A server configuration that requires a client certificate chaining to `roots` (mTLS).
pub fn mtls_server_config(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let provider = crypto::provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build()?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(config)
}

/// A client configuration that trusts `roots` and presents `chain` (mTLS).
pub fn mtls_client_config(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, TlsError> {
    let config = ClientConfig::builder_with_provider(crypto::provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(config)
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
            BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType, PKCS_ECDSA_P256_SHA256,
        };
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "fips-check ephemeral CA");
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

/// The server and client configurations a mesh workload uses, built on an ephemeral identity.
pub fn self_check_configs() -> Result<Vec<TlsConfigReport>, TlsError> {
    let id = EphemeralIdentity::new("spiffe://fips-check.invalid/ns/default/sa/fips-check")?;
    let server = mtls_server_config(id.roots.clone(), id.chain.clone(), id.key())?;
    let client = mtls_client_config(id.roots.clone(), id.chain.clone(), id.key())?;
    Ok(vec![
        describe_server("mtls-server", &server),
        describe_client("mtls-client", &client),
    ])
}
