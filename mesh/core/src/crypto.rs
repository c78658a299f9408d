//! The crypto provider: one definition for the whole mesh (after linkerd2-proxy's
//! `linkerd/rustls/src/crypto.rs`).

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{cipher_suite, kx_group};
use rustls::crypto::CryptoProvider;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

/// True when this binary was compiled against the AWS-LC FIPS module.
pub const FIPS_BUILD: bool = cfg!(feature = "fips");

/// FIPS-approved suites, in preference order: TLS 1.3 AES-GCM, then TLS 1.2 ECDHE + AES-GCM.
/// ChaCha20-Poly1305 is not FIPS-approved and is left out.
pub static FIPS_CIPHER_SUITES: &[SupportedCipherSuite] = &[
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
];

/// Protocol versions the mesh negotiates.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The provider every TLS configuration of the mesh is built from.
///
/// In a `fips` build this is rustls' FIPS provider restricted to [`FIPS_CIPHER_SUITES`] and the
/// P-256 and P-384 groups (X25519 is not approved). The `non-fips` build makes the same
/// restriction on the non-FIPS AWS-LC, so the only difference between the two is the module.
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "fips")]
    let mut provider = rustls::crypto::default_fips_provider();
    #[cfg(not(feature = "fips"))]
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = FIPS_CIPHER_SUITES.to_vec();
    provider.kx_groups = vec![kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}
