//! TLS configurations of the mesh, all built from [`crate::crypto::provider`].

use std::sync::Arc;

use distro_schema::TlsConfigReport;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

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
// URI SAN), not by a DNS name.

/// Which server identities a SPIFFE client accepts.
#[derive(Debug, Clone)]
pub enum ExpectedPeer {
    /// Exactly this SPIFFE ID.
    Exact(crate::identity::SpiffeId),
    /// Any SPIFFE ID in this trust domain.
    TrustDomain(String),
    /// Any ID from the given list.
    AnyOf(Vec<crate::identity::SpiffeId>),
}

impl ExpectedPeer {
    fn accepts(&self, id: &crate::identity::SpiffeId) -> bool {
        match self {
            ExpectedPeer::Exact(want) => want == id,
            ExpectedPeer::TrustDomain(td) => id.trust_domain() == td,
            ExpectedPeer::AnyOf(list) => list.contains(id),
        }
    }
}

/// Verifies a server's X.509-SVID: the chain must lead to one of `roots` (webpki path
/// validation with the FIPS provider's algorithms) and its one URI SAN must be accepted by the
/// [`ExpectedPeer`]. The TLS server name is ignored: SVIDs carry no DNS names.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: ExpectedPeer,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl SpiffeServerVerifier {
    /// A verifier trusting `roots` and accepting `expected`.
    pub fn new(roots: Arc<RootCertStore>, expected: ExpectedPeer) -> Self {
        SpiffeServerVerifier {
            roots,
            expected,
            provider: crypto::provider(),
        }
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
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let id = crate::identity::spiffe_id_of(end_entity).map_err(|e| {
            rustls::Error::General(format!("server certificate is not an X.509-SVID: {e}"))
        })?;
        if !self.expected.accepts(&id) {
            return Err(rustls::Error::General(format!(
                "server identity {id} is not the expected {:?}",
                self.expected
            )));
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
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

/// Whether a SPIFFE server requires a client SVID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present an SVID chaining to the roots (mTLS).
    Required,
    /// A client may connect without a certificate (the application checks per request, e.g. the
    /// control plane's bootstrap path); one that presents a certificate must chain to the roots.
    Optional,
}

/// A server configuration that presents `chain` (an SVID) and verifies client SVIDs against
/// `roots`. The client's SPIFFE ID is read from the connection's peer certificates with
/// [`crate::identity::spiffe_id_of`] and authorized by the application.
pub fn spiffe_server_config(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsError> {
    spiffe_server_config_with(
        roots,
        chain,
        key,
        client_auth,
        crypto::provider(),
        PROTOCOL_VERSIONS,
    )
}

/// [`spiffe_server_config`] restricted to a pushed [`crate::api::TlsPolicy`].
pub fn spiffe_server_config_with_policy(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
    policy: &crate::api::TlsPolicy,
) -> Result<ServerConfig, TlsError> {
    let (provider, versions) = policy_provider(policy)?;
    spiffe_server_config_with(roots, chain, key, client_auth, provider, versions)
}

fn spiffe_server_config_with(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let verifier = match client_auth {
        ClientAuth::Required => builder.build()?,
        ClientAuth::Optional => builder.allow_unauthenticated().build()?,
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(config)
}

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The FIPS provider cut down to a pushed [`crate::api::TlsPolicy`], and the protocol versions
/// it allows. Names not in the FIPS set are refused (the control plane never sends them).
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
    let mut provider = (*base).clone();
    let mut suites = Vec::new();
    for name in &policy.cipher_suites {
        let s = base
            .cipher_suites
            .iter()
            .find(|s| format!("{:?}", s.suite()) == *name)
            .ok_or_else(|| {
                TlsError::Policy(format!("cipher suite {name:?} is not in the FIPS set"))
            })?;
        suites.push(*s);
    }
    let mut groups = Vec::new();
    for name in &policy.kx_groups {
        let g = base
            .kx_groups
            .iter()
            .find(|g| format!("{:?}", g.name()) == *name)
            .ok_or_else(|| {
                TlsError::Policy(format!(
                    "key-exchange group {name:?} is not in the FIPS set"
                ))
            })?;
        groups.push(*g);
    }
    if suites.is_empty() || groups.is_empty() {
        return Err(TlsError::Policy(
            "the policy allows no cipher suite or no group".into(),
        ));
    }
    provider.cipher_suites = suites;
    provider.kx_groups = groups;
    let versions: &'static [&'static SupportedProtocolVersion] = match policy.min_version.as_str() {
        "TLSv1_3" => TLS13_ONLY,
        "TLSv1_2" => PROTOCOL_VERSIONS,
        other => {
            return Err(TlsError::Policy(format!(
                "min_version {other:?}: use TLSv1_2 or TLSv1_3"
            )))
        }
    };
    Ok((Arc::new(provider), versions))
}

/// A client configuration that presents `chain` (an SVID) and accepts servers whose SVID chains
/// to `roots` and whose SPIFFE ID `expected` accepts.
pub fn spiffe_client_config(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    expected: ExpectedPeer,
) -> Result<ClientConfig, TlsError> {
    let config = ClientConfig::builder_with_provider(crypto::provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(roots, expected)))
        .with_client_auth_cert(chain, key)?;
    Ok(config)
}

/// [`spiffe_client_config`] restricted to a pushed [`crate::api::TlsPolicy`].
pub fn spiffe_client_config_with_policy(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    expected: ExpectedPeer,
    policy: &crate::api::TlsPolicy,
) -> Result<ClientConfig, TlsError> {
    let (provider, versions) = policy_provider(policy)?;
    let verifier = SpiffeServerVerifier {
        roots,
        expected,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
    Ok(config)
}

/// A client configuration without a client certificate, for `POST /v1/bootstrap` (the
/// workload has no SVID yet). The server is still verified as in [`spiffe_client_config`].
pub fn spiffe_bootstrap_client_config(
    roots: Arc<RootCertStore>,
    expected: ExpectedPeer,
) -> Result<ClientConfig, TlsError> {
    let config = ClientConfig::builder_with_provider(crypto::provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(roots, expected)))
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SpiffeId;

    fn handshake(client: ClientConfig, server: ServerConfig) -> Result<(), rustls::Error> {
        let name = rustls::pki_types::ServerName::try_from("workload")
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(Arc::new(server))?;
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

    /// The SPIFFE verifier accepts the expected server identity (exact or by trust domain) and
    /// refuses another one, and a server requiring client SVIDs refuses a client without one.
    #[test]
    fn spiffe_verifier_checks_identity() {
        let server_id = "spiffe://td.example/ns/a/sa/server";
        let ident = EphemeralIdentity::new(server_id).unwrap_or_else(|e| panic!("{e}"));
        let server = || {
            spiffe_server_config(
                ident.roots.clone(),
                ident.chain.clone(),
                ident.key(),
                ClientAuth::Required,
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let client = |expected| {
            spiffe_client_config(
                ident.roots.clone(),
                ident.chain.clone(),
                ident.key(),
                expected,
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(handshake(client(ExpectedPeer::Exact(id(server_id))), server()).is_ok());
        assert!(handshake(
            client(ExpectedPeer::TrustDomain("td.example".into())),
            server()
        )
        .is_ok());
        let wrong = handshake(
            client(ExpectedPeer::Exact(id("spiffe://td.example/ns/a/sa/other"))),
            server(),
        );
        assert!(wrong.is_err(), "a different identity was accepted");
        assert!(handshake(
            client(ExpectedPeer::TrustDomain("other.example".into())),
            server()
        )
        .is_err());
        let anonymous =
            spiffe_bootstrap_client_config(ident.roots.clone(), ExpectedPeer::Exact(id(server_id)))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            handshake(anonymous, server()).is_err(),
            "mTLS server accepted a client without SVID"
        );
        // A TLS 1.3-only policy with one suite still handshakes; a non-FIPS name is refused.
        let policy = crate::api::TlsPolicy {
            min_version: "TLSv1_3".into(),
            cipher_suites: vec!["TLS13_AES_128_GCM_SHA256".into()],
            kx_groups: vec!["secp384r1".into()],
        };
        let pc = spiffe_client_config_with_policy(
            ident.roots.clone(),
            ident.chain.clone(),
            ident.key(),
            ExpectedPeer::Exact(id(server_id)),
            &policy,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ps = spiffe_server_config_with_policy(
            ident.roots.clone(),
            ident.chain.clone(),
            ident.key(),
            ClientAuth::Required,
            &policy,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pc.fips(), crate::crypto::FIPS_BUILD);
        assert!(handshake(pc, ps).is_ok());
        let bad = crate::api::TlsPolicy {
            cipher_suites: vec!["TLS13_CHACHA20_POLY1305_SHA256".into()],
            ..policy
        };
        assert!(policy_provider(&bad).is_err());
        // Every configuration here is FIPS-compliant in a FIPS build.
        assert_eq!(server().fips(), crate::crypto::FIPS_BUILD);
    }
}
