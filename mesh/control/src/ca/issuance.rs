//! Issuance policy: what a CSR must be before the CA signs it, which identity it may ask for,
//! and which client certificates the mTLS endpoints honour.
//!
//! - A CSR must hold an EC public key on P-256 — checked on the key itself (the SPKI's algorithm
//!   and curve OIDs, a 65-byte uncompressed point that aws-lc-rs accepts as a P-256 point), not
//!   inferred from the signature algorithm — and be signed with that key by ecdsa-with-SHA256.
//! - A client certificate is honoured only when it names this mesh's trust domain, was signed
//!   by one of this CA's generations still trusted, and its serial is on record in
//!   `issued/<serial>.json` for the same identity and not past its end. Trust in the bundle
//!   alone is not enough: with a shared organisation root, a sibling CA under the same root
//!   issues certificates that chain to it too. Deleting a record revokes that certificate.

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_ASN1};
use mesh_core::api::reason;
use mesh_core::identity::{self, SpiffeId};
use rcgen::CertificateSigningRequestParams;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::prelude::FromDer;

use crate::ca::Ca;
use crate::state::{issued_key, State, StateError};
use crate::tokens::Refusal;

/// Largest CSR accepted (PEM).
pub const MAX_CSR_PEM: usize = 16 * 1024;

/// `issued/<serial>.json`: one certificate this CA issued.
#[derive(Debug, Serialize, Deserialize)]
pub struct IssuedRecord {
    /// Serial number (hex, as in the file name).
    pub serial: String,
    /// The SPIFFE ID in the certificate.
    pub spiffe_id: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    /// `bootstrap` or `renew`.
    pub kind: String,
    /// The CA generation that signed it.
    pub ca_generation: u32,
}

/// A CSR that passed every check, and the SPIFFE ID it asks for (if any).
pub struct CheckedCsr {
    /// The request, ready for the CA.
    pub params: CertificateSigningRequestParams,
    /// The one URI SAN requested, if any.
    pub requested: Option<String>,
}

fn oid_name(oid: &Oid<'_>) -> String {
    let known = [
        ("1.2.840.10045.2.1", "id-ecPublicKey"),
        ("1.2.840.113549.1.1.1", "rsaEncryption"),
        ("1.3.101.112", "Ed25519"),
        ("1.3.101.110", "X25519"),
        ("1.2.840.10045.3.1.7", "P-256"),
        ("1.3.132.0.34", "P-384"),
        ("1.3.132.0.35", "P-521"),
        ("1.3.132.0.10", "secp256k1"),
        ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
        ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
        ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
    ];
    let s = oid.to_id_string();
    match known.iter().find(|(o, _)| *o == s) {
        Some((_, name)) => format!("{name} ({s})"),
        None => s,
    }
}

/// Checks that the CSR's public key is an EC key on P-256 and that the CSR is signed by that
/// key with ecdsa-with-SHA256; independent of what the signature algorithm claims.
fn check_p256_csr(der: &[u8]) -> Result<(), String> {
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| format!("not a PKCS#10 CSR: {e}"))?;
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(format!(
            "the CSR's key is {}, not an EC key on P-256",
            oid_name(&spki.algorithm.algorithm)
        ));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .ok_or("the CSR's EC key names no curve (explicit curve parameters are refused)")?;
    if curve != OID_EC_P256 {
        return Err(format!(
            "the CSR's key is on curve {}, not P-256",
            oid_name(&curve)
        ));
    }
    let point: &[u8] = &spki.subject_public_key.data;
    if point.len() != 65 || point.first() != Some(&0x04) {
        return Err(format!(
            "the CSR's public key is {} bytes{}; a P-256 key is a 65-byte uncompressed point",
            point.len(),
            match point.first() {
                Some(2 | 3) => " (a compressed point)",
                _ => "",
            }
        ));
    }
    let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .map_err(|e| format!("the CSR's public key is not a point on P-256: {e}"))?;
    if csr.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(format!(
            "the CSR is signed with {}; sign it with ecdsa-with-SHA256",
            oid_name(&csr.signature_algorithm.algorithm)
        ));
    }
    key.verify_sig(info.raw, &csr.signature_value.data)
        .map_err(|_| "the CSR's signature does not verify with its own key".to_string())
}

/// Parses and checks a PEM CSR: size, P-256 key, signature, SANs (at most one URI SAN).
pub fn check_csr(pem: &str) -> Result<CheckedCsr, Refusal> {
    let invalid = |m: String| Refusal::new(reason::CSR_INVALID, m);
    if pem.len() > MAX_CSR_PEM {
        return Err(invalid(format!("CSR larger than {MAX_CSR_PEM} bytes")));
    }
    let hint = "send a PKCS#10 PEM CSR for an ECDSA P-256 key, signed with it (ecdsa-with-SHA256)";
    let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| invalid(format!("CSR is not PEM: {e} ({hint})")))?;
    check_p256_csr(der.as_ref()).map_err(|m| invalid(format!("{m} ({hint})")))?;
    let params = CertificateSigningRequestParams::from_der(&der)
        .map_err(|e| invalid(format!("CSR cannot be used: {e} ({hint})")))?;
    let mut uris = Vec::new();
    for san in &params.params.subject_alt_names {
        match san {
            rcgen::SanType::URI(u) => uris.push(u.as_str().to_string()),
            other => {
                return Err(Refusal::new(
                    reason::CSR_IDENTITY_MISMATCH,
                    format!("the CSR asks for {other:?}; an X.509-SVID carries only its SPIFFE ID"),
                ))
            }
        }
    }
    if uris.len() > 1 {
        return Err(Refusal::new(
            reason::CSR_IDENTITY_MISMATCH,
            format!(
                "the CSR asks for {} URI SANs; an X.509-SVID has exactly one",
                uris.len()
            ),
        ));
    }
    Ok(CheckedCsr {
        params,
        requested: uris.pop(),
    })
}

/// The CSR must ask for `entitled` (in `trust_domain`), or for nothing.
pub fn check_requested(
    trust_domain: &str,
    requested: Option<&str>,
    entitled: &SpiffeId,
) -> Result<(), Refusal> {
    let Some(req) = requested else { return Ok(()) };
    let id = SpiffeId::parse(req).map_err(|e| Refusal::new(reason::CSR_INVALID, e.to_string()))?;
    if id.trust_domain() != trust_domain {
        return Err(Refusal::new(
            reason::FOREIGN_TRUST_DOMAIN,
            format!(
                "the CSR asks for trust domain {:?}; this control plane issues for {trust_domain:?}",
                id.trust_domain(),
            ),
        ));
    }
    if &id != entitled {
        return Err(Refusal::new(
            reason::CSR_IDENTITY_MISMATCH,
            format!("the CSR asks for {id} but the credential entitles {entitled}"),
        ));
    }
    Ok(())
}

/// A client certificate that this trust domain's CA signed: what [`verify_leaf`] found. Whether
/// it is still honoured is the record's to say ([`check_honoured`]), on every request.
#[derive(Debug, Clone)]
pub struct VerifiedLeaf {
    /// The SPIFFE ID of its URI SAN.
    pub id: SpiffeId,
    /// Its serial, in hex, as `issued/` records it.
    pub serial: String,
}

/// Authenticating the client certificate chain of an mTLS request (already path-validated to
/// the trust bundle by TLS) is this, then [`check_honoured`] on every request. This part
/// depends only on the certificate and the CA: an X.509-SVID of this trust domain, signed by a
/// generation `ca` trusts, valid now. A connection may keep the answer for as long as the CA it
/// was checked against is the current one.
pub fn verify_leaf(
    ca: &Ca,
    trust_domain: &str,
    chain: &[CertificateDer<'static>],
) -> Result<VerifiedLeaf, Refusal> {
    let not_honoured = |m: String| Refusal::new(reason::SVID_NOT_HONOURED, m);
    let leaf = chain.first().ok_or_else(|| {
        Refusal::new(
            reason::UNAUTHENTICATED,
            "this endpoint needs mTLS with an SVID",
        )
    })?;
    let id = identity::spiffe_id_of(leaf)
        .map_err(|e| not_honoured(format!("the client certificate is not an X.509-SVID: {e}")))?;
    if id.trust_domain() != trust_domain {
        return Err(Refusal::new(
            reason::FOREIGN_TRUST_DOMAIN,
            format!(
                "the client certificate is for {id}, outside this mesh's trust domain {trust_domain:?}"
            ),
        ));
    }
    ca.verify_issued_here(leaf).map_err(|e| {
        not_honoured(format!(
            "the client certificate for {id} was not issued by this control plane's CA: {e}"
        ))
    })?;
    let (_, x) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| not_honoured(format!("the client certificate cannot be parsed: {e}")))?;
    let serial = hex::encode(x.raw_serial());
    Ok(VerifiedLeaf { id, serial })
}

/// The part of authenticating a client certificate that can change while its connection is
/// open: the serial is on record for this identity (not revoked) and not expired.
/// The read is awaited: a network store answers it without holding a thread.
pub async fn check_honoured(state: &State, leaf: &VerifiedLeaf) -> Result<SpiffeId, Refusal> {
    honoured_by(state.read_json_async(&issued_key(&leaf.serial)).await, leaf)
}

/// Whether the record read for `leaf`'s serial honours it.
fn honoured_by(
    record: Result<Option<IssuedRecord>, StateError>,
    leaf: &VerifiedLeaf,
) -> Result<SpiffeId, Refusal> {
    let not_honoured = |m: String| Refusal::new(reason::SVID_NOT_HONOURED, m);
    let VerifiedLeaf { id, serial } = leaf;
    let rec: IssuedRecord = match record {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(not_honoured(format!(
                "serial {serial} ({id}) is not on record: it was revoked or never issued here; bootstrap again"
            )))
        }
        Err(e) => return Err(Refusal::new(e.reason(), e.to_string())),
    };
    if rec.spiffe_id != id.to_string() {
        return Err(not_honoured(format!(
            "serial {serial} was issued to {}, not {id}",
            rec.spiffe_id
        )));
    }
    let expired = OffsetDateTime::parse(&rec.not_after, &Rfc3339)
        .map(|t| t <= OffsetDateTime::now_utc())
        .unwrap_or(true);
    if expired {
        return Err(not_honoured(format!(
            "serial {serial} ({id}) expired at {}; bootstrap again",
            rec.not_after
        )));
    }
    Ok(id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_of(der: &[u8]) -> String {
        identity::pem_encode("CERTIFICATE REQUEST", der)
    }

    /// A well-formed P-256 CSR from mesh-core passes, with its URI SAN.
    #[test]
    fn p256_csr_passes() {
        let id =
            SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap_or_else(|e| panic!("{e}"));
        let csr = identity::generate_csr(&id).unwrap_or_else(|e| panic!("{e}"));
        let c = check_csr(&csr.csr_pem).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(
            c.requested.as_deref(),
            Some("spiffe://example.org/ns/a/sa/b")
        );
    }

    /// A P-384 key whose CSR is signed with ecdsa-with-SHA256 is refused for its curve.
    #[test]
    fn p384_key_signed_with_sha256_is_refused_for_its_curve() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let csr = p.serialize_request(&key).unwrap_or_else(|e| panic!("{e}"));
        let e = check_csr(&pem_of(csr.der()))
            .err()
            .map(|r| r.message)
            .unwrap_or_default();
        assert!(e.contains("P-384"), "{e}");
    }

    /// A P-256 SPKI whose point bytes are garbage (or compressed) is refused before signing.
    #[test]
    fn garbage_and_compressed_points_are_refused() {
        let id =
            SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap_or_else(|e| panic!("{e}"));
        let csr = identity::generate_csr(&id).unwrap_or_else(|e| panic!("{e}"));
        let der = CertificateSigningRequestDer::from_pem_slice(csr.csr_pem.as_bytes())
            .map(|d| d.as_ref().to_vec())
            .unwrap_or_default();
        // The point follows the BIT STRING header 03 42 00 04.
        let at = der
            .windows(4)
            .position(|w| w == [0x03, 0x42, 0x00, 0x04])
            .unwrap_or_else(|| panic!("no P-256 point in the CSR"));
        let mut off_curve = der.clone();
        off_curve[at + 4 + 10] ^= 0x01;
        let e = check_p256_csr(&off_curve).err().unwrap_or_default();
        assert!(e.contains("not a point on P-256"), "{e}");
        let mut compressed = der.clone();
        compressed[at + 3] = 0x02;
        let e = check_p256_csr(&compressed).err().unwrap_or_default();
        assert!(e.contains("compressed"), "{e}");
    }
}
