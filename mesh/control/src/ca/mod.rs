//! The certificate authority: creates or imports signing CAs, rotates them with an overlap, and
//! issues X.509-SVIDs from CSRs.
//!
//! A CA *generation* is one signing key with its certificate. The active generation signs; older
//! generations stay in the trust bundle until their `trusted_until`, so during a rotation
//! workloads holding SVIDs from either CA keep verifying each other. A generation is either a
//! self-signed root made here or an intermediate imported from an organisation's PKI ("bring
//! your own CA"), in which case the bundle carries the organisation's root and SVID chains carry
//! the intermediate.

pub mod issuance;

use std::sync::Arc;
use std::time::Duration;

use mesh_core::identity::{certs_from_pem, pem_encode, SpiffeId};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::state::{ca_key, Rev, State, StateError, BUNDLE, CA_STATE};

/// Why the CA could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Certificate machinery failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// No CA exists yet.
    #[error(
        "no CA in {0}: run `mesh-control ca init` on this state (or `ca import` for your own CA)"
    )]
    NoCa(String),
    /// Another process or replica changed the CA at the same time; nothing was changed here.
    #[error("{0}: the CA was changed by another control plane or `ca` command at the same moment; nothing was changed here, check `ca status` and run it again if still needed")]
    Raced(String),
    /// A duration is out of range, or a validity end cannot be computed.
    #[error(transparent)]
    Duration(#[from] crate::durations::OutOfRange),
    /// An imported CA is unusable.
    #[error("{file}: {why}")]
    Import {
        /// The file given by the user.
        file: String,
        /// What is wrong and what to do.
        why: String,
    },
}

/// One CA generation on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    /// Generation number (1, 2, ...).
    pub gen: u32,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Whether it was imported from an organisation's PKI.
    pub imported: bool,
    /// For a retired generation: trusted until this time (RFC 3339); `None` while active.
    #[serde(default)]
    pub trusted_until: Option<String>,
}

/// `ca/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CaState {
    /// The trust domain this CA issues for.
    #[serde(default)]
    pub trust_domain: String,
    /// The generation that signs.
    pub active: u32,
    /// All generations still trusted (active included).
    pub generations: Vec<Generation>,
}

/// The loaded CA: the active signer, the chain to send with SVIDs, the trust bundle.
pub struct Ca {
    active: Signer,
    /// The signer of the API's own certificate during an overlap (the oldest trusted one).
    api: Option<Signer>,
    bundle_pem: String,
    /// Active generation number.
    pub active_gen: u32,
    /// Digest of `ca/state.json`, to notice a rotation made by another process or replica.
    pub state_digest: String,
    /// When the next retired generation stops being trusted (the bundle changes then).
    pub next_expiry: Option<OffsetDateTime>,
    /// The certificates of every generation still trusted, as the only trust anchors: a client
    /// certificate is ours only if one of them signed it.
    issued_here: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// One generation's signing key, ready to issue.
struct Signer {
    issuer: Issuer<'static, KeyPair>,
    /// Certificates after the leaf in every SVID chain (intermediates; empty for a root CA).
    chain_tail_pem: String,
    not_after: OffsetDateTime,
}

fn load_signer(state: &State, st: &CaState, gen: u32) -> Result<Signer, CaError> {
    let cert_key = ca_key(&format!("{gen}.cert.pem"));
    let cert_path = state.locate(&cert_key);
    let cert_pem = state.get_text(&cert_key)?;
    let key_pem = state.get_text(&ca_key(&format!("{gen}.key.pem")))?;
    let chain = certs_from_pem(&cert_pem).map_err(|e| StateError::Corrupt {
        path: cert_path.clone(),
        why: e.to_string(),
    })?;
    let Some(first) = chain.first() else {
        return Err(StateError::Corrupt {
            path: cert_path,
            why: "no certificate".into(),
        }
        .into());
    };
    let key = KeyPair::from_pem(&key_pem)?;
    let not_after = {
        use x509_parser::prelude::{FromDer, X509Certificate};
        X509Certificate::from_der(first.as_ref())
            .ok()
            .and_then(|(_, x)| {
                OffsetDateTime::from_unix_timestamp(x.validity().not_after.timestamp()).ok()
            })
            .unwrap_or_else(now)
    };
    let issuer = Issuer::from_ca_cert_der(first, key)?;
    let imported = st.generations.iter().any(|g| g.gen == gen && g.imported);
    let chain_tail_pem: String = if imported {
        chain.iter().map(|c| pem_encode("CERTIFICATE", c)).collect()
    } else {
        String::new()
    };
    Ok(Signer {
        issuer,
        chain_tail_pem,
        not_after,
    })
}

/// Formats a time as RFC 3339.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // no leading zero byte: fixed length
    SerialNumber::from_slice(&b)
}

/// `ca/state.json`, its digest (empty when absent) and the revision it was read at.
fn read_state(state: &State) -> Result<(CaState, String, Option<Rev>), CaError> {
    match state.get(CA_STATE)? {
        Some(e) => {
            let st: CaState =
                serde_json::from_slice(&e.data).map_err(|err| StateError::Corrupt {
                    path: state.locate(CA_STATE),
                    why: err.to_string(),
                })?;
            Ok((st, distro_hostio::sha256_hex(&e.data), Some(e.rev)))
        }
        None => Ok((CaState::default(), String::new(), None)),
    }
}

/// The trust domain recorded in the state directory (empty when no CA exists yet).
pub fn trust_domain(state: &State) -> Result<String, CaError> {
    Ok(read_state(state)?.0.trust_domain)
}

/// The CA state as recorded (for `ca status`).
pub fn status(state: &State) -> Result<CaState, CaError> {
    Ok(read_state(state)?.0)
}

/// Digest of `ca/state.json` now (empty when absent or unreadable), to notice changes cheaply.
pub fn state_digest(state: &State) -> String {
    match state.get(CA_STATE) {
        Ok(Some(e)) => distro_hostio::sha256_hex(&e.data),
        _ => String::new(),
    }
}

fn self_signed_root(trust_domain: &str, gen: u32) -> Result<(String, KeyPair), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, trust_domain);
    p.distinguished_name
        .push(DnType::CommonName, format!("{trust_domain} mesh CA {gen}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    p.not_before = now() - Duration::from_secs(3600);
    p.not_after = now() + crate::durations::CA_VALIDITY;
    p.serial_number = Some(random_serial());
    let cert = p.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// Adds generation `max + 1` and makes it active. The generation's files are created only if
/// absent and `ca/state.json` is replaced only if still at `rev` (the revision the state `st`
/// was read at), so of two rotations racing, in two replicas or a replica and a `ca` command, exactly
/// one is made; the other changes nothing and is told so.
fn add_generation(
    state: &State,
    (mut st, rev): (CaState, Option<Rev>),
    cert_chain_pem: &str,
    roots_pem: &str,
    key_pem: &str,
    imported: bool,
    overlap: Option<Duration>,
) -> Result<u32, CaError> {
    let gen = st.generations.iter().map(|g| g.gen).max().unwrap_or(0) + 1;
    // Everything that can be refused is decided before the first file is written.
    let until = overlap
        .map(|o| crate::durations::CA_OVERLAP.after_now(o).map(rfc3339))
        .transpose()?;
    // The key, certificate and roots files of `gen` are referenced only by state.json, written
    // last; if anything fails before that, they are removed again so no orphan key is left.
    let files = [
        (format!("{gen}.key.pem"), key_pem, true),
        (format!("{gen}.cert.pem"), cert_chain_pem, false),
        (format!("{gen}.roots.pem"), roots_pem, false),
    ];
    let mut written = Vec::new();
    let cleanup = |written: &[&String]| {
        for name in written {
            let _ = state.delete(&ca_key(name));
        }
    };
    for (name, data, private) in &files {
        match state.put_if(&ca_key(name), None, data.as_bytes(), *private) {
            Ok(true) => written.push(name),
            Ok(false) => {
                // Another writer is making this generation: its files are not ours to remove.
                cleanup(&written);
                return Err(CaError::Raced(state.locate(&ca_key(name))));
            }
            Err(e) => {
                cleanup(&written);
                return Err(e.into());
            }
        }
    }
    for g in &mut st.generations {
        if g.trusted_until.is_none() {
            g.trusted_until = until.clone().or_else(|| Some(rfc3339(now())));
        }
    }
    st.generations.push(Generation {
        gen,
        created: rfc3339(now()),
        imported,
        trusted_until: None,
    });
    st.active = gen;
    match state.write_json_if(CA_STATE, rev, &st) {
        Ok(true) => Ok(gen),
        Ok(false) => {
            cleanup(&written);
            Err(CaError::Raced(state.locate(CA_STATE)))
        }
        Err(e) => {
            cleanup(&written);
            Err(e.into())
        }
    }
}

/// Creates a self-signed CA if there is none. Returns the active generation.
pub fn init(state: &State, trust_domain: &str) -> Result<u32, CaError> {
    let (st, _, rev) = read_state(state)?;
    if st.active != 0 {
        return Ok(st.active);
    }
    let (cert, key) = self_signed_root(trust_domain, 1)?;
    let st = CaState {
        trust_domain: trust_domain.to_string(),
        ..st
    };
    match add_generation(
        state,
        (st, rev),
        &cert,
        &cert,
        &key.serialize_pem(),
        false,
        None,
    ) {
        // Another replica created the first CA at the same moment: use it.
        Err(CaError::Raced(_)) => match read_state(state)? {
            (st, _, _) if st.active != 0 => Ok(st.active),
            _ => Err(CaError::Raced(state.locate(CA_STATE))),
        },
        other => other,
    }
}

/// Rotates to a new self-signed CA; the previous ones stay trusted for `overlap`.
pub fn rotate(state: &State, trust_domain: &str, overlap: Duration) -> Result<u32, CaError> {
    let (st, _, rev) = read_state(state)?;
    if st.active == 0 {
        return Err(CaError::NoCa(state.describe()));
    }
    crate::durations::CA_OVERLAP.check(overlap)?;
    let (cert, key) = self_signed_root(trust_domain, st.active + 1)?;
    add_generation(
        state,
        (st, rev),
        &cert,
        &cert,
        &key.serialize_pem(),
        false,
        Some(overlap),
    )
}

/// Imports an intermediate CA issued by an organisation's root ("bring your own CA"). The
/// previous generation, if any, stays trusted for `overlap`.
pub fn import(
    state: &State,
    trust_domain: &str,
    cert_file: &str,
    key_file: &str,
    roots_file: &str,
    overlap: Duration,
) -> Result<u32, CaError> {
    crate::durations::CA_OVERLAP.check(overlap)?;
    let read = |f: &str| {
        std::fs::read_to_string(f).map_err(|e| CaError::Import {
            file: f.into(),
            why: format!("cannot read: {e}"),
        })
    };
    let cert_pem = read(cert_file)?;
    let key_pem = read(key_file)?;
    let roots_pem = read(roots_file)?;
    let bad = |f: &str, why: String| CaError::Import {
        file: f.into(),
        why,
    };
    let chain = certs_from_pem(&cert_pem).map_err(|e| bad(cert_file, e.to_string()))?;
    let roots = certs_from_pem(&roots_pem).map_err(|e| bad(roots_file, e.to_string()))?;
    let (Some(first), false) = (chain.first(), roots.is_empty()) else {
        return Err(bad(
            cert_file,
            "needs a CA certificate and a roots file with at least one root".into(),
        ));
    };
    let key = KeyPair::from_pem(&key_pem).map_err(|e| {
        bad(
            key_file,
            format!("not a PKCS#8 private key: {e} (convert with `openssl pkcs8 -topk8 -nocrypt`)"),
        )
    })?;
    // The key must belong to the certificate, and the certificate must be a CA.
    {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, x) =
            X509Certificate::from_der(first.as_ref()).map_err(|e| bad(cert_file, e.to_string()))?;
        if x.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad(
                key_file,
                format!("this key does not belong to the certificate in {cert_file}"),
            ));
        }
        let is_ca = x
            .basic_constraints()
            .ok()
            .flatten()
            .map(|b| b.value.ca)
            .unwrap_or(false);
        if !is_ca {
            return Err(bad(
                cert_file,
                "the certificate is not a CA (basicConstraints CA:TRUE missing)".into(),
            ));
        }
    }
    // The chain must verify up to one of the roots, checked by path validation the way
    // workloads will check SVIDs: a throw-away leaf is issued and verified.
    let key_pem_out = key.serialize_pem();
    let issuer = Issuer::from_ca_cert_der(first, key)?;
    verify_ca_chain(&issuer, &chain, &roots).map_err(|why| bad(cert_file, why))?;
    let (mut st, _, rev) = read_state(state)?;
    if st.trust_domain.is_empty() {
        st.trust_domain = trust_domain.to_string();
    }
    let overlap = if st.active == 0 { None } else { Some(overlap) };
    let chain_pem: String = chain.iter().map(|c| pem_encode("CERTIFICATE", c)).collect();
    let roots_pem: String = roots.iter().map(|c| pem_encode("CERTIFICATE", c)).collect();
    add_generation(
        state,
        (st, rev),
        &chain_pem,
        &roots_pem,
        &key_pem_out,
        true,
        overlap,
    )
}

fn verify_ca_chain(
    issuer: &Issuer<'_, KeyPair>,
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Result<(), String> {
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![SanType::URI(
        "spiffe://import-check.invalid/x"
            .try_into()
            .map_err(|e: rcgen::Error| e.to_string())?,
    )];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = now() - Duration::from_secs(60);
    p.not_after = now() + Duration::from_secs(60);
    let leaf = p.signed_by(&leaf_key, issuer).map_err(|e| e.to_string())?;
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store
            .add(r.clone())
            .map_err(|e| format!("a root in the roots file is unusable: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(store),
        mesh_core::crypto::provider(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(leaf.der(), chain, rustls::pki_types::UnixTime::now())
        .map(|_| ())
        .map_err(|e| format!("certificates issued by this CA do not verify against the roots file: {e} (give the organisation root that signed this CA with --roots)"))
}

impl Ca {
    /// Loads the active CA and the trust bundle, dropping generations whose overlap has ended.
    pub fn load(state: &State, _trust_domain: &str) -> Result<Ca, CaError> {
        let (mut st, digest, rev) = read_state(state)?;
        if st.active == 0 {
            return Err(CaError::NoCa(state.describe()));
        }
        let t = now();
        let before = st.generations.len();
        st.generations.retain(|g| {
            g.gen == st.active
                || g.trusted_until
                    .as_deref()
                    .and_then(|u| OffsetDateTime::parse(u, &Rfc3339).ok())
                    .is_some_and(|u| u > t)
        });
        let digest = if st.generations.len() != before {
            // Dropping ended generations: if another replica changed the state meanwhile, its
            // version is loaded instead.
            if !state.write_json_if(CA_STATE, rev, &st)? {
                return Ca::load(state, _trust_domain);
            }
            state_digest(state)
        } else {
            digest
        };
        let active = load_signer(state, &st, st.active)?;
        // The API's own certificate comes from the oldest generation still trusted: during an
        // overlap, proxies that have not yet received the new bundle can still reconnect (and
        // then receive it); proxies bootstrapped on the new CA trust both roots anyway.
        let oldest = st
            .generations
            .iter()
            .map(|g| g.gen)
            .min()
            .unwrap_or(st.active);
        let api = if oldest == st.active {
            None
        } else {
            Some(load_signer(state, &st, oldest)?)
        };
        let mut anchors = rustls::RootCertStore::empty();
        for g in &st.generations {
            let key = ca_key(&format!("{}.cert.pem", g.gen));
            let path = state.locate(&key);
            let certs =
                certs_from_pem(&state.get_text(&key)?).map_err(|e| StateError::Corrupt {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            let first = certs
                .into_iter()
                .next()
                .ok_or_else(|| StateError::Corrupt {
                    path: path.clone(),
                    why: "no certificate".into(),
                })?;
            anchors.add(first).map_err(|e| StateError::Corrupt {
                path,
                why: format!("unusable as a trust anchor: {e}"),
            })?;
        }
        let issued_here = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(anchors),
            mesh_core::crypto::provider(),
        )
        .build()
        .map_err(|e| StateError::Corrupt {
            path: state.locate(CA_STATE),
            why: format!("the CA generations make no usable verifier: {e}"),
        })?;
        let mut bundle = Vec::new();
        for g in &st.generations {
            let roots = state.get_text(&ca_key(&format!("{}.roots.pem", g.gen)))?;
            for c in certs_from_pem(&roots).unwrap_or_default() {
                if !bundle.contains(&c) {
                    bundle.push(c);
                }
            }
        }
        let bundle_pem: String = bundle
            .iter()
            .map(|c| pem_encode("CERTIFICATE", c))
            .collect();
        // Written only when it changed: in a shared store every write wakes the other replicas.
        let current = state.get(BUNDLE)?;
        if current.as_ref().map(|e| e.data.as_slice()) != Some(bundle_pem.as_bytes()) {
            state.put(BUNDLE, bundle_pem.as_bytes(), false)?;
        }
        let next_expiry = st
            .generations
            .iter()
            .filter_map(|g| {
                g.trusted_until
                    .as_deref()
                    .and_then(|u| OffsetDateTime::parse(u, &Rfc3339).ok())
            })
            .min();
        Ok(Ca {
            issued_here,
            next_expiry,
            active,
            api,
            bundle_pem,
            active_gen: st.active,
            state_digest: digest,
        })
    }

    /// The trust bundle (PEM): every root trusted now.
    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
    }

    /// Checks that `leaf` was signed by one of this CA's generations still trusted (path
    /// validation with those certificates as the only anchors, FIPS algorithms, validity now).
    pub fn verify_issued_here(&self, leaf: &CertificateDer<'_>) -> Result<(), String> {
        self.issued_here
            .verify_client_cert(leaf, &[], rustls::pki_types::UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Issues an X.509-SVID for `id` to the key in `csr`, valid for `ttl`: exactly one URI SAN,
    /// `CA:FALSE`, key usage digitalSignature (critical), EKU serverAuth + clientAuth.
    pub fn issue(
        &self,
        csr: &CertificateSigningRequestParams,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        issue_with(&self.active, csr, id, ttl)
    }

    /// Issues the control plane's own API certificate: from the oldest generation still trusted
    /// during a rotation overlap, else from the active one.
    pub fn issue_api(
        &self,
        csr: &CertificateSigningRequestParams,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        issue_with(self.api.as_ref().unwrap_or(&self.active), csr, id, ttl)
    }
}

fn issue_with(
    signer: &Signer,
    csr: &CertificateSigningRequestParams,
    id: &SpiffeId,
    ttl: Duration,
) -> Result<Issued, CaError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    let serial = random_serial();
    let serial_hex = hex::encode(serial.as_ref());
    p.serial_number = Some(serial);
    let t = now();
    p.not_before = t - Duration::from_secs(60);
    let end = crate::durations::SVID_TTL.after_now(ttl)?;
    let not_after = std::cmp::min(end, signer.not_after);
    p.not_after = not_after;
    let req = CertificateSigningRequestParams {
        params: p,
        public_key: csr.public_key.clone(),
    };
    let cert = req.signed_by(&signer.issuer)?;
    Ok(Issued {
        chain_pem: format!("{}{}", cert.pem(), signer.chain_tail_pem),
        serial_hex,
        not_after: rfc3339(not_after),
    })
}

/// A freshly issued SVID.
pub struct Issued {
    /// Leaf + intermediates (PEM).
    pub chain_pem: String,
    /// Serial number (hex).
    pub serial_hex: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
}
