//! Bootstrap tokens: one-time join tokens (for hosts outside a cluster) and Kubernetes-style
//! service-account JWTs (ES256), both turned into the one SPIFFE ID the bearer is entitled to.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use distro_hostio::sha256_hex;
use mesh_core::api::{reason, JOIN_TOKEN_PREFIX};
use mesh_core::identity::SpiffeId;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::state::{token_key, used_key, State, StateError};

/// A refused token: a stable reason code and a message for the person.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// One of [`mesh_core::api::reason`].
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Refusal {
    /// A refusal with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// A join token on disk (`tokens/<id>.json`); the secret itself is never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinToken {
    /// The one identity the token entitles.
    pub identity: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// SHA-256 of the secret part (hex).
    pub secret_sha256: String,
}

/// Why a join token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The TTL is out of range ([`crate::durations::TOKEN_TTL`]).
    #[error(transparent)]
    Ttl(#[from] crate::durations::OutOfRange),
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Creates a join token for `identity`, valid for `ttl` (inside
/// [`crate::durations::TOKEN_TTL`]); returns the token string (print it once).
pub fn create_join_token(
    state: &State,
    identity: &SpiffeId,
    ttl: Duration,
) -> Result<String, CreateError> {
    let expires = crate::durations::TOKEN_TTL.after_now(ttl)?;
    let mut id = [0u8; 12];
    let mut secret = [0u8; 32];
    let _ = aws_lc_rs::rand::fill(&mut id);
    let _ = aws_lc_rs::rand::fill(&mut secret);
    let id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let rec = JoinToken {
        identity: identity.to_string(),
        expires_at: expires.format(&Rfc3339).unwrap_or_default(),
        secret_sha256: sha256_hex(secret.as_bytes()),
    };
    state.write_json(&token_key(&id), &rec)?;
    Ok(format!("{JOIN_TOKEN_PREFIX}{id}.{secret}"))
}

/// A join token that checked out, not yet marked used.
pub struct ValidJoin {
    /// Token id (file name).
    pub id: String,
    /// Entitled identity.
    pub identity: SpiffeId,
}

/// Checks a join token against the state directory, without using it up.
pub fn check_join_token(state: &State, token: &str) -> Result<ValidJoin, Refusal> {
    let invalid = || {
        Refusal::new(reason::TOKEN_INVALID, "join token not recognised by this control plane (create one with `mesh-control token create`)")
    };
    let rest = token.strip_prefix(JOIN_TOKEN_PREFIX).ok_or_else(invalid)?;
    let (id, secret) = rest.split_once('.').ok_or_else(invalid)?;
    if id.len() != 24 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let rec: JoinToken = match state.read_json(&token_key(id)) {
        Ok(Some(r)) => r,
        Ok(None) => return Err(invalid()),
        Err(e) => return Err(Refusal::new(e.reason(), e.to_string())),
    };
    // Compared in constant time, as hex: the record holds the lower-case hex digest.
    let got = sha256_hex(secret.as_bytes());
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        got.as_bytes(),
        rec.secret_sha256.as_bytes(),
    )
    .is_err()
    {
        return Err(invalid());
    }
    let used = state
        .get(&used_key(id))
        .map_err(|e| Refusal::new(e.reason(), e.to_string()))?;
    if used.is_some() {
        return Err(Refusal::new(
            reason::TOKEN_REPLAYED,
            format!("join token {id} was already used; create a new one"),
        ));
    }
    let exp = OffsetDateTime::parse(&rec.expires_at, &Rfc3339).map_err(|_| invalid())?;
    if exp <= OffsetDateTime::now_utc() {
        return Err(Refusal::new(
            reason::TOKEN_EXPIRED,
            format!(
                "join token {id} expired at {}; create a new one",
                rec.expires_at
            ),
        ));
    }
    let identity = SpiffeId::parse(&rec.identity)
        .map_err(|e| Refusal::new(reason::INTERNAL, e.to_string()))?;
    Ok(ValidJoin {
        id: id.to_string(),
        identity,
    })
}

/// The outcome of [`claim`].
#[derive(Debug)]
pub enum Claim {
    /// This call used the token up.
    Claimed,
    /// The token had already been used (by another request, or another process).
    AlreadyUsed,
}

/// Uses a join token up, exactly once: `used/<id>` is created only if it is still absent (an
/// exclusive link of a written file in the state directory, a `create_revision == 0`
/// transaction in etcd), so of concurrent claims, in this process, another process or another
/// replica, exactly one gets [`Claim::Claimed`]. The key's creation is the commit point and is
/// durable before the certificate is handed out; its content (the time) is informational.
pub fn claim(state: &State, id: &str) -> Result<Claim, StateError> {
    let at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    if state.put_if(&used_key(id), None, at.as_bytes(), false)? {
        Ok(Claim::Claimed)
    } else {
        Ok(Claim::AlreadyUsed)
    }
}

/// A trusted service-account token issuer: its P-256 public key (uncompressed point).
#[derive(Clone)]
pub struct SaIssuer {
    /// The `iss` it must carry, if configured.
    pub iss: Option<String>,
    /// The public key (uncompressed EC point), from the SPKI PEM.
    pub public_key: Vec<u8>,
    /// The file it came from, for messages.
    pub file: String,
}

/// Reads a P-256 public key (SPKI PEM, as `openssl pkey -pubout` writes it).
pub fn load_sa_issuer(file: &str, iss: Option<String>) -> anyhow::Result<SaIssuer> {
    use x509_parser::prelude::FromDer;
    let pem = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{file}: cannot read service-account issuer key: {e}"))?;
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = STANDARD.decode(b64.trim()).map_err(|_| {
        anyhow::anyhow!("{file}: expected a `BEGIN PUBLIC KEY` PEM block (openssl pkey -pubout)")
    })?;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
        .map_err(|e| anyhow::anyhow!("{file}: not a SubjectPublicKeyInfo: {e}"))?;
    let point = spki.subject_public_key.data.to_vec();
    // An uncompressed P-256 point is 65 bytes; the verifier below refuses anything else.
    if point.len() != 65 || point.first() != Some(&4) {
        anyhow::bail!(
            "{file}: the key is not an uncompressed P-256 public key (ES256 needs P-256)"
        );
    }
    Ok(SaIssuer {
        iss,
        public_key: point,
        file: file.to_string(),
    })
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
}

#[derive(Deserialize)]
struct JwtClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

/// Verifies a service-account JWT (ES256) and returns the SPIFFE ID it entitles:
/// `sub = system:serviceaccount:<ns>:<sa>` → `spiffe://<trust_domain>/ns/<ns>/sa/<sa>`.
pub fn verify_sa_jwt(
    token: &str,
    issuers: &[SaIssuer],
    trust_domain: &str,
) -> Result<SpiffeId, Refusal> {
    let invalid =
        |m: &str| Refusal::new(reason::TOKEN_INVALID, format!("service-account token: {m}"));
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a JWT (need header.claims.signature)"));
    };
    let header: JwtHeader = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("header is not base64url JSON"))?;
    if header.alg != "ES256" {
        return Err(invalid(&format!(
            "algorithm {:?} is not accepted; only ES256",
            header.alg
        )));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| invalid("signature is not base64url"))?;
    let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
    if issuers.is_empty() {
        return Err(invalid(
            "no service-account issuer key is configured (--sa-issuer-key)",
        ));
    }
    let claims_raw = URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| invalid("claims are not base64url"))?;
    let claims: JwtClaims =
        serde_json::from_slice(&claims_raw).map_err(|_| invalid("claims are not JSON"))?;
    let issuer = issuers
        .iter()
        .find(|i| {
            aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                &i.public_key,
            )
            .verify(signed, &sig)
            .is_ok()
        })
        .ok_or_else(|| invalid("signature does not verify with any configured issuer key"))?;
    if let Some(want) = &issuer.iss {
        if claims.iss.as_deref() != Some(want.as_str()) {
            return Err(invalid(&format!(
                "iss {:?} is not the configured {want:?} (key {})",
                claims.iss, issuer.file
            )));
        }
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let exp = claims.exp.ok_or_else(|| invalid("no exp claim"))?;
    if exp <= now {
        return Err(Refusal::new(
            reason::TOKEN_EXPIRED,
            format!(
                "service-account token expired {} s ago; request a fresh projected token",
                now.saturating_sub(exp)
            ),
        ));
    }
    if claims.nbf.is_some_and(|n| n > now.saturating_add(60)) {
        return Err(invalid("not valid yet (nbf in the future)"));
    }
    let aud_ok = match &claims.aud {
        Some(serde_json::Value::String(a)) => a == trust_domain,
        Some(serde_json::Value::Array(list)) => {
            list.iter().any(|a| a.as_str() == Some(trust_domain))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(Refusal::new(
            reason::FOREIGN_TRUST_DOMAIN,
            format!("service-account token audience {:?} does not include this trust domain {trust_domain:?}", claims.aud),
        ));
    }
    let sub = claims.sub.unwrap_or_default();
    let rest = sub.strip_prefix("system:serviceaccount:").ok_or_else(|| {
        invalid(&format!(
            "sub {sub:?} is not system:serviceaccount:<ns>:<sa>"
        ))
    })?;
    let (ns, sa) = rest.split_once(':').ok_or_else(|| {
        invalid(&format!(
            "sub {sub:?} is not system:serviceaccount:<ns>:<sa>"
        ))
    })?;
    SpiffeId::workload(trust_domain, ns, sa).map_err(|e| invalid(&e.to_string()))
}
