//! Workload identity: SPIFFE IDs, CSRs made on the workload, and reading the identity of a peer
//! certificate.
//!
//! A workload makes its key pair and CSR with [`generate_csr`] and sends only the CSR to the
//! control plane; the private key never leaves the process that made it.

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why an identity could not be parsed or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The string is not a SPIFFE ID.
    #[error("`{id}` is not a SPIFFE ID: {why} (expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)")]
    BadSpiffeId {
        /// The offending string.
        id: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The certificate could not be parsed.
    #[error("certificate cannot be parsed: {0}")]
    BadCertificate(String),
    /// The certificate does not carry exactly one URI SAN.
    #[error("certificate carries {0} URI SANs; an X.509-SVID has exactly one")]
    UriSanCount(usize),
    /// Key or CSR generation failed.
    #[error("key or CSR generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// A SPIFFE ID (`spiffe://<trust-domain><path>`), validated per the SPIFFE ID standard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

impl SpiffeId {
    /// Parses and validates `s`.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let bad = |why| IdentityError::BadSpiffeId {
            id: s.to_string(),
            why,
        };
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("scheme must be `spiffe://` (lower case)"))?;
        if s.len() > 2048 {
            return Err(bad("longer than 2048 bytes"));
        }
        let (td, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if td.is_empty() {
            return Err(bad("empty trust domain"));
        }
        if !td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(bad("trust domain may hold only a-z, 0-9, '-', '.', '_'"));
        }
        if !path.is_empty() {
            for seg in path[1..].split('/') {
                if seg.is_empty() {
                    return Err(bad("empty path segment or trailing '/'"));
                }
                if seg == "." || seg == ".." {
                    return Err(bad("'.' and '..' segments are not allowed"));
                }
                if !seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(bad(
                        "path segments may hold only A-Z, a-z, 0-9, '-', '.', '_'",
                    ));
                }
            }
        }
        Ok(SpiffeId {
            trust_domain: td.to_string(),
            path: path.to_string(),
        })
    }

    /// The ID of a Kubernetes-style workload: `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn workload(trust_domain: &str, ns: &str, sa: &str) -> Result<Self, IdentityError> {
        Self::parse(&format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}"))
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path (starting with `/`, or empty).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Namespace and service account, when the path is `/ns/<ns>/sa/<sa>`.
    pub fn ns_sa(&self) -> Option<(&str, &str)> {
        let mut it = self.path.strip_prefix('/')?.split('/');
        match (it.next(), it.next(), it.next(), it.next(), it.next()) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

/// A workload's fresh key pair and the CSR that asks for its SPIFFE ID.
pub struct CsrAndKey {
    /// PKCS#10 CSR (PEM) to send to the control plane.
    pub csr_pem: String,
    /// The private key (PKCS#8 DER); keep it in the workload.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl CsrAndKey {
    /// The private key in the form rustls takes.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The private key as PKCS#8 PEM (to write to a 0600 file; never log it).
    pub fn key_pem(&self) -> String {
        pem_encode("PRIVATE KEY", self.key.secret_pkcs8_der())
    }
}

/// Makes a fresh P-256 key (FIPS module) and a CSR whose only URI SAN is `spiffe_id` (renewal,
/// or a bootstrap that knows its identity).
pub fn generate_csr(spiffe_id: &SpiffeId) -> Result<CsrAndKey, IdentityError> {
    csr_with(Some(spiffe_id))
}

/// Makes a fresh P-256 key (FIPS module) and a CSR with no SAN at all, for a bootstrap whose
/// token is opaque to the workload: the control plane issues the identity the token entitles.
pub fn generate_bootstrap_csr() -> Result<CsrAndKey, IdentityError> {
    csr_with(None)
}

fn csr_with(spiffe_id: Option<&SpiffeId>) -> Result<CsrAndKey, IdentityError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(id) = spiffe_id {
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    }
    let csr = params.serialize_request(&key)?;
    Ok(CsrAndKey {
        csr_pem: csr.pem()?,
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    })
}

/// The URI SANs of a certificate.
pub fn uri_sans(cert: &[u8]) -> Result<Vec<String>, IdentityError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert)
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(u) = name {
                out.push((*u).to_string());
            }
        }
    }
    Ok(out)
}

/// The SPIFFE ID of an X.509-SVID (its one URI SAN).
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
    let uris = uri_sans(cert.as_ref())?;
    match uris.as_slice() {
        [one] => SpiffeId::parse(one),
        _ => Err(IdentityError::UriSanCount(uris.len())),
    }
}

/// Parses every `CERTIFICATE` block of a PEM string (none is not an error here; callers that
/// need one say so with their own context).
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::BadCertificate(format!("PEM: {e}")))
}

/// Parses the first private key of a PEM text: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`)
/// or PKCS#1.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, IdentityError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| IdentityError::BadCertificate(format!("private key PEM: {e}")))
}

/// Encodes DER as one PEM block with the given label.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPIFFE ID parsing accepts workload IDs and refuses malformed ones.
    #[test]
    fn spiffe_id_rules() {
        let id = SpiffeId::parse("spiffe://example.org/ns/default/sa/web")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.ns_sa(), Some(("default", "web")));
        for bad in [
            "SPIFFE://example.org/a",
            "spiffe://Example.org/a",
            "spiffe:///a",
            "spiffe://example.org/a/",
            "spiffe://example.org/a//b",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a?b",
            "https://example.org/a",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
    }

    /// A generated CSR carries the SPIFFE ID and the key is PKCS#8 PEM.
    #[test]
    fn csr_carries_id() {
        let id =
            SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap_or_else(|e| panic!("{e}"));
        let csr = generate_csr(&id).unwrap_or_else(|e| panic!("{e}"));
        assert!(csr
            .csr_pem
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(csr.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(key_from_pem(&csr.key_pem()).is_ok());
    }

    /// A bootstrap CSR carries no SAN (the control plane fills in the entitled identity).
    #[test]
    fn bootstrap_csr_has_no_san() {
        use x509_parser::prelude::FromDer;
        let csr = generate_bootstrap_csr().unwrap_or_else(|e| panic!("{e}"));
        let der = certs_der(&csr.csr_pem);
        let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(req
            .requested_extensions()
            .is_none_or(|mut e| e.next().is_none()));
        let id =
            SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap_or_else(|e| panic!("{e}"));
        let with = generate_csr(&id).unwrap_or_else(|e| panic!("{e}"));
        let der = certs_der(&with.csr_pem);
        let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(req
            .requested_extensions()
            .is_some_and(|mut e| e.next().is_some()));
    }

    fn certs_der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"))
            .as_ref()
            .to_vec()
    }
}
