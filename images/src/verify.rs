//! `distro verify`: everything an operator checks before an image runs, one line per check.
//!
//! 1. the image: its manifest, config and every layer hash to their digests;
//! 2. the signature: a simple-signing payload for this digest (and identity), signed by the key;
//! 3. every attestation: a DSSE envelope signed by the key, whose in-toto statement names this
//!    image's digest as its subject;
//! 4. the policy: FIPS evidence with `mode = true` on a CMVP-validated module, about the very
//!    binary in the image; an SBOM; provenance; and an OpenVEX document that leaves no advisory
//!    `affected` or `under_investigation`; when required (`require_test_result`, off by
//!    default), a conformance test-result whose result is not `FAILED`.
//!
//! Every attestation of a predicate type is verified, and the newest one decides the policy
//! check, which names it: for OpenVEX the document's own `timestamp` (or `last_updated`) and
//! `version`, for the others the order in which they were attached. An older document never
//! masks a newer one: a newer `affected` VEX fails, a newer clean VEX clears an older `affected`.
//!
//! Reads are bounded: every blob by its descriptor's size, the layers the FIPS check looks
//! inside by [`Policy::max_uncompressed_bytes`] and [`Policy::max_compression_ratio`].
//!
//! A check that cannot be made (a missing blob, a malformed document) fails with the reason.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use distro_schema::{CmvpStatus, FipsEvidence};
use serde::{Deserialize, Serialize};

use crate::cosign::{
    self, Envelope, INTOTO_PAYLOAD_TYPE, PREDICATE_CYCLONEDX, PREDICATE_FIPS, PREDICATE_OPENVEX,
    PREDICATE_SLSA, SIMPLE_SIGNING_TYPE,
};
use crate::digest;
use crate::error::{Error, Result};
use crate::keys::VerifyingKey;
use crate::oci::{Descriptor, Manifest, MEDIA_LAYER_GZIP};
use crate::store::{Store, MAX_BLOB_BYTES};

/// Default of [`Policy::max_uncompressed_bytes`]: 4 GiB.
pub const DEFAULT_MAX_UNCOMPRESSED: u64 = 4 << 30;
/// Default of [`Policy::max_compression_ratio`]. Binaries and CA bundles compress 2-5 times;
/// a run of zeros compresses about 1000 times.
pub const DEFAULT_MAX_RATIO: u64 = 100;
/// A layer may expand past the ratio until it reaches this much (16 MiB), so small, very
/// compressible layers are not refused.
pub const RATIO_FLOOR: u64 = 16 << 20;

/// What the policy requires beyond signatures. Every requirement is on by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// A FIPS evidence attestation with `mode = true`, about the binary in the image.
    pub require_fips: bool,
    /// The FIPS module must have a CMVP certificate (`cmvp_status = "validated"`).
    pub require_validated_module: bool,
    /// A CycloneDX SBOM attestation.
    pub require_sbom: bool,
    /// A SLSA provenance attestation.
    pub require_provenance: bool,
    /// An OpenVEX attestation with no advisory left `affected` or `under_investigation`.
    pub require_vex: bool,
    /// An in-toto test-result attestation (the conformance suite's, see
    /// [`crate::testresult`]) whose result is `PASSED` or `WARNED`. Off by default: the suite
    /// needs root, so not every release has run it (`distro verify --require-test-result`).
    pub require_test_result: bool,
    /// The identity (`docker-reference`) the signature must name, matched as containers-policy
    /// does ([`identity_matches`]); default: the reference being verified when verifying in a
    /// registry, any identity offline.
    pub identity: Option<String>,
    /// Most bytes the image's layers may decompress to in total when a check reads inside them
    /// (the FIPS check hashes the binary in the image).
    pub max_uncompressed_bytes: u64,
    /// Most times a layer may expand on decompression, once past [`RATIO_FLOOR`] (a gzip bomb
    /// guard).
    pub max_compression_ratio: u64,
    /// Advisory data older than this many days (the date of the RustSec snapshot a VEX document
    /// names in its `tooling`) is reported with a warning: advisories published since were not
    /// considered. A warning, not a refusal: the VEX is still what the producer stated.
    pub advisory_max_age_days: u32,
}

/// Default of [`Policy::advisory_max_age_days`] (as `distro.toml`'s `[advisories] max_age_days`).
pub const DEFAULT_ADVISORY_MAX_AGE_DAYS: u32 = 90;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            require_fips: true,
            require_validated_module: true,
            require_sbom: true,
            require_provenance: true,
            require_vex: true,
            require_test_result: false,
            identity: None,
            max_uncompressed_bytes: DEFAULT_MAX_UNCOMPRESSED,
            max_compression_ratio: DEFAULT_MAX_RATIO,
            advisory_max_age_days: DEFAULT_ADVISORY_MAX_AGE_DAYS,
        }
    }
}

impl Policy {
    /// Reads a policy from a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = distro_hostio::read_bounded(path, distro_hostio::Symlinks::Follow, 1 << 20)
            .map_err(|e| Error::io("reading policy", path, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::invalid(path.display().to_string(), "not UTF-8 text"))?;
        toml::from_str(&text).map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
    }
}

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Check name (`image`, `signature`, `attestation https://...`, `policy fips`).
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

/// The whole verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The image as named.
    pub image: String,
    /// Its manifest digest, when it could be resolved.
    pub digest: Option<String>,
    /// Key id of the key used.
    pub keyid: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// All checks held.
    pub passed: bool,
}

impl Report {
    /// The checks that failed, one `name: detail` each, joined with `; ` (empty when none did):
    /// what a refusal names.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn push(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }
}

/// A verified attestation's statement.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The statement's `predicateType`.
    pub predicate_type: String,
    /// The predicate.
    pub predicate: serde_json::Value,
    /// Digest of the envelope layer.
    pub layer_digest: String,
    /// Position among the image's attestations (0 = attached first).
    pub position: usize,
}

/// Where a verified attestation stands among those of its type: for OpenVEX, the document's
/// time (`last_updated`, else `timestamp`) and `version`, then the order of attachment; for
/// the other predicates the order of attachment alone.
pub fn recency(v: &Verified) -> Result<(i64, u64, usize), String> {
    if v.predicate_type != PREDICATE_OPENVEX {
        return Ok((0, 0, v.position));
    }
    let time = |field: &str| -> Result<Option<i64>, String> {
        match v.predicate.get(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(t) => {
                let s = t.as_str().unwrap_or_default();
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|d| Some(d.timestamp()))
                    .map_err(|e| {
                        format!(
                            "OpenVEX document in layer {} has {field} `{t}`, not RFC 3339 ({e}); its age cannot be told",
                            v.layer_digest
                        )
                    })
            }
        }
    };
    let issued = time("timestamp")?.ok_or_else(|| {
        format!(
            "OpenVEX document in layer {} has no timestamp; its age cannot be told (OpenVEX requires one)",
            v.layer_digest
        )
    })?;
    let updated = time("last_updated")?.unwrap_or(issued).max(issued);
    let version = v
        .predicate
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            format!(
                "OpenVEX document in layer {} has no integer version (OpenVEX requires one)",
                v.layer_digest
            )
        })?;
    Ok((updated, version, v.position))
}

/// The newest verified attestation of `predicate_type` ([`recency`]) and how many there are.
pub fn newest<'a>(
    verified: &'a [Verified],
    predicate_type: &str,
) -> Result<Option<(&'a Verified, usize)>, String> {
    let mut best: Option<(&Verified, (i64, u64, usize))> = None;
    let mut n = 0;
    for v in verified
        .iter()
        .filter(|v| v.predicate_type == predicate_type)
    {
        n += 1;
        let key = recency(v)?;
        if best.as_ref().is_none_or(|(_, k)| key > *k) {
            best = Some((v, key));
        }
    }
    Ok(best.map(|(v, _)| (v, n)))
}

/// Says which attestation decided a policy check: `newest of 3 (layer sha256:…, attached 3rd)`.
fn decided_by(v: &Verified, n: usize) -> String {
    let when = if v.predicate_type == PREDICATE_OPENVEX {
        format!(
            "timestamp {}, version {}",
            v.predicate
                .get("last_updated")
                .or_else(|| v.predicate.get("timestamp"))
                .and_then(|t| t.as_str())
                .unwrap_or("?"),
            v.predicate
                .get("version")
                .map(|x| x.to_string())
                .unwrap_or_default()
        )
    } else {
        format!("attestation #{}", v.position + 1)
    };
    if n == 1 {
        format!("decided by layer {} ({when})", v.layer_digest)
    } else {
        format!(
            "decided by the newest of {n}: layer {} ({when})",
            v.layer_digest
        )
    }
}

/// The default identity for a registry reference, as containers-policy's
/// `matchRepoDigestOrExact`: `REGISTRY/REPO:TAG` when verifying by tag (a signature for another
/// tag does not match), `REGISTRY/REPO` when verifying by digest (any tag of it matches).
pub fn default_identity(reference: &crate::ImageRef) -> Option<String> {
    let repo = reference.docker_reference()?;
    match reference {
        crate::ImageRef::Registry {
            tag: Some(t),
            digest: None,
            ..
        } => Some(format!("{repo}:{t}")),
        _ => Some(repo),
    }
}

/// A docker reference split as containers-policy reads it: `REPO[:TAG][@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DockerRef {
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn split_docker_ref(s: &str) -> DockerRef {
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (s, None),
    };
    // A tag follows the last ':' only when no '/' comes after it (a port is followed by one).
    let (repository, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => {
            (name[..i].to_string(), Some(name[i + 1..].to_string()))
        }
        _ => (name.to_string(), None),
    };
    DockerRef {
        repository,
        tag,
        digest,
    }
}

/// Whether a signature naming `signed` (its `docker-reference`) is acceptable for the identity
/// `expected`, for the image `image_digest`, the way containers/image's policy does it: the
/// repositories must be equal; a signature naming `REPO:TAG` matches only that tag (and any
/// tag when `expected` names none, as `matchRepository` does); one naming the bare repository
/// matches every tag of it; a signature naming `REPO@DIGEST`, or an `expected` naming one, only
/// that digest.
pub fn identity_matches(expected: &str, signed: &str, image_digest: &str) -> Result<(), String> {
    let e = split_docker_ref(expected);
    let s = split_docker_ref(signed);
    if e.repository != s.repository {
        return Err(format!(
            "payload identity is `{signed}`, expected `{expected}` (repository `{}` is not `{}`)",
            s.repository, e.repository
        ));
    }
    for (who, d) in [
        ("payload identity", &s.digest),
        ("expected identity", &e.digest),
    ] {
        if let Some(d) = d {
            if d != image_digest {
                return Err(format!(
                    "{who} names digest {d}, but the image is {image_digest}"
                ));
            }
        }
    }
    if let (Some(st), Some(et)) = (&s.tag, &e.tag) {
        if st != et {
            return Err(format!(
                "payload identity `{signed}` is for tag `{st}`, not `{et}` (a signature naming a tag matches only that tag)"
            ));
        }
    }
    Ok(())
}

/// Verifies the image `selector` names in `store` with `key` and `policy`. `default_identity`
/// is the identity expected when the policy names none (the repository, online).
pub fn verify(
    store: &mut dyn Store,
    image_name: &str,
    selector: Option<&str>,
    key: &VerifyingKey,
    policy: &Policy,
    default_identity: Option<&str>,
) -> Report {
    let mut r = Report {
        image: image_name.to_string(),
        digest: None,
        keyid: key.keyid(),
        checks: Vec::new(),
        passed: false,
    };
    let image = match cosign::resolve(store, selector) {
        Ok((_, m)) => m,
        Err(e) => {
            r.push("image", false, e.to_string());
            return r;
        }
    };
    r.digest = Some(image.digest.clone());

    // 1. The image's own content, each blob read no further than its descriptor's size.
    let mut layers: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    let content = (|| -> Result<String> {
        let m = Manifest::parse(&format!("manifest {}", image.digest), &image.bytes)?;
        // Checked: sizes come from the manifest, and a sum that wraps must not pass the limit.
        let declared = m
            .layers
            .iter()
            .try_fold(m.config.size, |total, l| total.checked_add(l.size))
            .unwrap_or(u64::MAX);
        if declared > MAX_BLOB_BYTES {
            return Err(Error::invalid(
                format!("manifest {}", image.digest),
                format!("its blobs declare {declared} bytes in total, more than the limit of {MAX_BLOB_BYTES}"),
            ));
        }
        store.blob_sized(&m.config.digest, m.config.size)?;
        for l in &m.layers {
            let data = store.blob_sized(&l.digest, l.size)?;
            layers.push((l.clone(), data));
        }
        Ok(format!(
            "manifest {}, config and {} layers match their digests",
            image.digest,
            m.layers.len()
        ))
    })();
    match content {
        Ok(d) => r.push("image", true, d),
        Err(e) => r.push("image", false, e.to_string()),
    }

    // 2. Signatures.
    let identity = policy.identity.as_deref().or(default_identity);
    match cosign::signatures(store, &image.digest) {
        Err(e) => r.push("signature", false, e.to_string()),
        Ok(sigs) if sigs.is_empty() => r.push(
            "signature",
            false,
            format!(
                "no signature for {} in {} (expected tag {}); sign it with `distro sign`",
                image.digest,
                store.describe(),
                digest::cosign_tag(&image.digest, "sig").unwrap_or_default()
            ),
        ),
        Ok(sigs) => {
            let mut reasons = Vec::new();
            let mut good = None;
            for (i, s) in sigs.iter().enumerate() {
                match check_signature(s, &image.digest, identity, key) {
                    Ok(id) => {
                        good = Some(id);
                        break;
                    }
                    Err(why) => reasons.push(format!(
                        "signature {} (layer {}): {why}",
                        i + 1,
                        s.layer_digest
                    )),
                }
            }
            match good {
                Some(id) => r.push(
                    "signature",
                    true,
                    format!(
                        "{} signed for {id} by key {}{}",
                        image.digest,
                        key.keyid(),
                        if identity.is_none() {
                            " (identity not checked: pass --identity REGISTRY/REPO)"
                        } else {
                            ""
                        }
                    ),
                ),
                None => r.push("signature", false, reasons.join("; ")),
            }
        }
    }

    // 3. Attestations.
    let mut verified: Vec<Verified> = Vec::new();
    match cosign::attestations(store, &image.digest) {
        Err(e) => r.push("attestations", false, e.to_string()),
        Ok(atts) if atts.is_empty() => r.push(
            "attestations",
            // Only a failure when the policy needs an attestation.
            !(policy.require_fips
                || policy.require_sbom
                || policy.require_provenance
                || policy.require_vex
                || policy.require_test_result),
            format!(
                "no attestations for {} in {}; attach them with `distro attest`",
                image.digest,
                store.describe()
            ),
        ),
        Ok(atts) => {
            for (position, a) in atts.iter().enumerate() {
                let label = a
                    .predicate_type
                    .clone()
                    .unwrap_or_else(|| "(no predicateType)".into());
                match check_attestation(a, &image.digest, key, position) {
                    Ok(v) => {
                        r.push(
                            format!("attestation {label}"),
                            true,
                            format!("DSSE signature and subject {} verified", image.digest),
                        );
                        verified.push(v);
                    }
                    Err(why) => r.push(
                        format!("attestation {label}"),
                        false,
                        format!("layer {}: {why}", a.layer_digest),
                    ),
                }
            }
        }
    }

    // 4. Policy: the newest verified attestation of each type decides.
    let decide =
        |t: &str, missing: String, check: &dyn Fn(&Verified) -> (bool, String)| match newest(
            &verified, t,
        ) {
            Err(why) => (false, why),
            Ok(None) => (false, missing),
            Ok(Some((v, n))) => {
                let (ok, detail) = check(v);
                (ok, format!("{detail}; {}", decided_by(v, n)))
            }
        };
    if policy.require_fips {
        let (ok, detail) = decide(
            PREDICATE_FIPS,
            format!("no verified FIPS evidence attestation ({PREDICATE_FIPS})"),
            &|v| check_fips(&v.predicate, policy, &layers),
        );
        r.push("policy fips", ok, detail);
    }
    if policy.require_sbom {
        let (ok, detail) = decide(
            PREDICATE_CYCLONEDX,
            format!("no verified SBOM attestation ({PREDICATE_CYCLONEDX})"),
            &|v| check_sbom(&v.predicate),
        );
        r.push("policy sbom", ok, detail);
    }
    if policy.require_provenance {
        let (ok, detail) = decide(
            PREDICATE_SLSA,
            format!("no verified provenance attestation ({PREDICATE_SLSA})"),
            &|v| match v
                .predicate
                .pointer("/buildDefinition/buildType")
                .and_then(|b| b.as_str())
            {
                Some(bt) => (true, format!("SLSA provenance v1, buildType {bt}")),
                None => (
                    false,
                    "provenance has no buildDefinition.buildType".to_string(),
                ),
            },
        );
        r.push("policy provenance", ok, detail);
    }
    if policy.require_vex {
        let (ok, mut detail) = decide(
            PREDICATE_OPENVEX,
            format!("no verified OpenVEX attestation ({PREDICATE_OPENVEX})"),
            &|v| check_vex(&v.predicate),
        );
        if let Ok(Some((newest, _))) = newest(&verified, PREDICATE_OPENVEX) {
            if let Some(w) = advisory_data_warning(
                &newest.predicate,
                chrono::Utc::now().date_naive(),
                policy.advisory_max_age_days,
            ) {
                detail.push_str("; WARNING: ");
                detail.push_str(&w);
            }
        }
        // Say what the newest document superseded, so an operator sees why an older
        // `affected` no longer counts (or why an older clean one does not save the image).
        if let Ok(Some((newest, _))) = newest(&verified, PREDICATE_OPENVEX) {
            let older: Vec<String> = verified
                .iter()
                .filter(|v| v.predicate_type == PREDICATE_OPENVEX && v.position != newest.position)
                .map(|v| {
                    let (clean, _) = check_vex(&v.predicate);
                    format!(
                        "{} ({})",
                        v.layer_digest,
                        if clean { "clean" } else { "open advisories" }
                    )
                })
                .collect();
            if !older.is_empty() {
                detail.push_str(&format!("; superseded: {}", older.join(", ")));
            }
        }
        r.push("policy vex", ok, detail);
    }
    if policy.require_test_result {
        let (ok, detail) = decide(
            crate::testresult::PREDICATE_TEST_RESULT,
            format!(
                "no verified test-result attestation ({}) signed by key {}; run the conformance suite and attach its summary with `distro attest --test-result OUT/<line>/conformance/summary.json`",
                crate::testresult::PREDICATE_TEST_RESULT,
                key.keyid()
            ),
            &|v| crate::testresult::check(&v.predicate),
        );
        r.push("policy test-result", ok, detail);
    }
    r.passed = r.checks.iter().all(|c| c.ok);
    r
}

fn check_signature(
    s: &cosign::StoredSignature,
    image_digest: &str,
    identity: Option<&str>,
    key: &VerifyingKey,
) -> Result<String, String> {
    let b64 = s
        .signature_b64
        .as_deref()
        .ok_or("no dev.cosignproject.cosign/signature annotation")?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("signature annotation is not base64: {e}"))?;
    if !key.verify(&s.payload, &sig) {
        return Err(format!(
            "ECDSA signature does not verify over the payload with key {}",
            key.keyid()
        ));
    }
    let p = cosign::parse_simple_signing("payload", &s.payload).map_err(|e| e.to_string())?;
    if p.kind != SIMPLE_SIGNING_TYPE {
        return Err(format!(
            "payload type is `{}`, not `{SIMPLE_SIGNING_TYPE}`",
            p.kind
        ));
    }
    if p.manifest_digest != image_digest {
        return Err(format!(
            "payload signs digest {} but the image is {image_digest}",
            p.manifest_digest
        ));
    }
    if let Some(id) = identity {
        identity_matches(id, &p.docker_reference, image_digest)?;
    }
    Ok(p.docker_reference)
}

/// Verifies one stored attestation (DSSE signature by `key`, in-toto statement about
/// `image_digest`, annotation consistent with the statement); `position` is its place among
/// the image's attestations.
pub fn check_attestation(
    a: &cosign::StoredAttestation,
    image_digest: &str,
    key: &VerifyingKey,
    position: usize,
) -> Result<Verified, String> {
    let env = Envelope::parse("envelope", &a.envelope).map_err(|e| e.to_string())?;
    if env.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(format!(
            "payloadType is `{}`, not `{INTOTO_PAYLOAD_TYPE}`",
            env.payload_type
        ));
    }
    if !env.verify("envelope", key).map_err(|e| e.to_string())? {
        return Err(format!(
            "DSSE signature does not verify with key {}",
            key.keyid()
        ));
    }
    let payload = env.payload_bytes("envelope").map_err(|e| e.to_string())?;
    let st: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| format!("statement is not JSON: {e}"))?;
    if st.get("_type").and_then(|t| t.as_str()) != Some(distro_schema::intoto::STATEMENT_TYPE) {
        return Err(format!(
            "statement _type is not {}",
            distro_schema::intoto::STATEMENT_TYPE
        ));
    }
    let hex = digest::hex_part(image_digest).map_err(|e| e.to_string())?;
    let subjects = st
        .get("subject")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    if !subjects
        .iter()
        .any(|s| s.pointer("/digest/sha256").and_then(|d| d.as_str()) == Some(hex))
    {
        return Err(format!(
            "statement subject does not name the image digest {image_digest}"
        ));
    }
    let predicate_type = st
        .get("predicateType")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(ann) = &a.predicate_type {
        if *ann != predicate_type {
            return Err(format!(
                "layer annotation says predicateType {ann} but the statement says {predicate_type}"
            ));
        }
    }
    Ok(Verified {
        predicate_type,
        predicate: st
            .get("predicate")
            .cloned()
            .unwrap_or(serde_json::Value::Null),
        layer_digest: a.layer_digest.clone(),
        position,
    })
}

/// Counts what a layer decompresses to and stops the read once the image's total passes
/// `max_total` or the layer expands more than `max_ratio` times past [`RATIO_FLOOR`].
struct Bounded<'a, R> {
    inner: R,
    layer: &'a str,
    compressed: u64,
    read: u64,
    total: &'a std::cell::Cell<u64>,
    max_total: u64,
    max_ratio: u64,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.total.set(self.total.get() + n as u64);
        if self.total.get() > self.max_total {
            return Err(std::io::Error::other(format!(
                "layer {} decompresses past the limit of {} bytes for the image (max_uncompressed_bytes in the policy)",
                self.layer, self.max_total
            )));
        }
        if self.read > RATIO_FLOOR && self.read > self.compressed.saturating_mul(self.max_ratio) {
            return Err(std::io::Error::other(format!(
                "layer {} ({} bytes compressed) decompresses to more than {} times its size, a decompression bomb (max_compression_ratio in the policy)",
                self.layer, self.compressed, self.max_ratio
            )));
        }
        Ok(n)
    }
}

/// sha256 hex of the regular file at `path` in the image's layers (later layers win), streamed
/// and bounded by the policy's decompression limits; `None` when no layer has it.
fn file_digest(
    layers: &[(Descriptor, Vec<u8>)],
    path: &str,
    policy: &Policy,
) -> Result<Option<String>, String> {
    let total = std::cell::Cell::new(0u64);
    let mut found = None;
    for (desc, data) in layers {
        if desc.media_type != MEDIA_LAYER_GZIP
            && desc.media_type != "application/vnd.docker.image.rootfs.diff.tar.gzip"
        {
            continue;
        }
        let reader = Bounded {
            inner: flate2::read::GzDecoder::new(data.as_slice()),
            layer: &desc.digest,
            compressed: data.len() as u64,
            read: 0,
            total: &total,
            max_total: policy.max_uncompressed_bytes,
            max_ratio: policy.max_compression_ratio,
        };
        let bad = |e: std::io::Error| format!("reading layer {}: {e}", desc.digest);
        let mut ar = tar::Archive::new(reader);
        for e in ar.entries().map_err(bad)? {
            let e = e.map_err(bad)?;
            if !e.header().entry_type().is_file() {
                continue;
            }
            let p = e.path().map_err(bad)?;
            if p.to_string_lossy().trim_start_matches("./") != path {
                continue;
            }
            let (hex, _) = distro_hostio::sha256_reader(e, u64::MAX).map_err(bad)?;
            found = Some(hex);
        }
    }
    Ok(found)
}

fn check_sbom(predicate: &serde_json::Value) -> (bool, String) {
    if predicate.get("bomFormat").and_then(|f| f.as_str()) != Some("CycloneDX") {
        return (
            false,
            "SBOM attestation is not a CycloneDX document (bomFormat)".to_string(),
        );
    }
    (
        true,
        format!(
            "CycloneDX {} with {} components",
            predicate
                .get("specVersion")
                .and_then(|s| s.as_str())
                .unwrap_or("?"),
            predicate
                .get("components")
                .and_then(|c| c.as_array())
                .map_or(0, Vec::len)
        ),
    )
}

fn check_fips(
    predicate: &serde_json::Value,
    policy: &Policy,
    layers: &[(Descriptor, Vec<u8>)],
) -> (bool, String) {
    let ev: FipsEvidence = match serde_json::from_value(predicate.clone()) {
        Ok(e) => e,
        Err(e) => return (false, format!("FIPS evidence does not parse: {e}")),
    };
    if !ev.mode {
        return (
            false,
            format!(
                "FIPS evidence says mode = false: {}",
                ev.failures.join("; ")
            ),
        );
    }
    if policy.require_validated_module && ev.module.cmvp_status != CmvpStatus::Validated {
        return (
            false,
            format!(
                "module {} {} is {}, the policy requires a CMVP-validated module",
                ev.module.module_name,
                ev.module.module_line,
                ev.module.cmvp_status.as_str()
            ),
        );
    }
    let path = format!("{}/{}", crate::assemble::BIN_DIR, ev.binary);
    let found = match file_digest(layers, &path, policy) {
        Ok(f) => f,
        Err(why) => return (false, format!("cannot check the binary /{path}: {why}")),
    };
    match found {
        None => {
            return (
                false,
                format!(
                    "the evidence is about `{}` but the image has no /{path}",
                    ev.binary
                ),
            )
        }
        Some(h) if h != ev.binary_sha256 => {
            return (
                false,
                format!(
                "the evidence is about a binary with sha256 {} but /{path} in the image has {h}",
                ev.binary_sha256
            ),
            )
        }
        Some(_) => {}
    }
    let cert = ev
        .module
        .cmvp_certificate
        .map(|c| format!(", CMVP #{c}"))
        .unwrap_or_default();
    (
        true,
        format!(
            "mode = true, {} ({}{cert}), binary /{path} sha256 matches",
            ev.module
                .version_in_binary
                .as_deref()
                .unwrap_or(&ev.module.module_line),
            ev.module.cmvp_status.as_str()
        ),
    )
}

/// The warning for a VEX document judged against advisory data older than `max_age_days`: its
/// `tooling` names the snapshot as `... advisories: RustSec advisory-db COMMIT (YYYY-MM-DD)`.
fn advisory_data_warning(
    doc: &serde_json::Value,
    today: chrono::NaiveDate,
    max_age_days: u32,
) -> Option<String> {
    let tooling = doc.get("tooling")?.as_str()?;
    let rest = &tooling[tooling.find("advisory-db")?..];
    let open = rest.find('(')?;
    let close = open + rest[open..].find(')')?;
    let date = chrono::NaiveDate::parse_from_str(&rest[open + 1..close], "%Y-%m-%d").ok()?;
    let age = (today - date).num_days();
    (age > i64::from(max_age_days)).then(|| {
        format!(
            "the advisory data of this VEX is from {date}, {age} days old, older than {max_age_days} days: advisories published since were not considered"
        )
    })
}

fn check_vex(doc: &serde_json::Value) -> (bool, String) {
    let Some(statements) = doc.get("statements").and_then(|s| s.as_array()) else {
        return (
            false,
            "OpenVEX document has no statements array".to_string(),
        );
    };
    let mut open = Vec::new();
    let mut closed = 0;
    for s in statements {
        let name = s
            .pointer("/vulnerability/name")
            .or_else(|| s.get("vulnerability"))
            .and_then(|v| v.as_str())
            .unwrap_or("(unnamed)");
        match s.get("status").and_then(|v| v.as_str()) {
            Some("fixed") | Some("not_affected") => closed += 1,
            Some(st @ ("affected" | "under_investigation")) => open.push(format!("{name} ({st})")),
            other => open.push(format!("{name} (unknown status {other:?})")),
        }
    }
    // The producer names the advisory data the document was judged against.
    let made_with = doc
        .get("tooling")
        .and_then(|t| t.as_str())
        .map(|t| format!(" (made with {t})"))
        .unwrap_or_default();
    if open.is_empty() {
        (
            true,
            format!("{closed} statements, every advisory fixed or not_affected{made_with}"),
        )
    } else {
        (
            false,
            format!("advisories not fixed or not_affected: {}", open.join(", ")),
        )
    }
}

#[cfg(test)]
mod advisory_age_tests {
    use super::advisory_data_warning;

    /// verify warns, with the date, when the VEX was judged against stale advisory data, and
    /// says nothing for fresh data or a document that does not name its data.
    #[test]
    fn stale_advisory_data_is_warned_with_its_date() {
        let doc = serde_json::json!({
            "tooling": "distro 0.1.0; advisories: RustSec advisory-db bf5c0d245a92 (2026-08-21)"
        });
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let w = advisory_data_warning(&doc, day("2026-12-01"), 90).unwrap();
        assert!(w.contains("2026-08-21") && w.contains("102 days"), "{w}");
        assert!(advisory_data_warning(&doc, day("2026-09-01"), 90).is_none());
        assert!(
            advisory_data_warning(&serde_json::json!({"tooling": "x"}), day("2026-12-01"), 90)
                .is_none()
        );
    }
}
