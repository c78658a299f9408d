//! `distro verify`: everything an operator checks before an image runs, one line per check.
//!
//! 1. the image: its manifest, config and every layer hash to their digests;
//! 2. the signature: a simple-signing payload for this digest (and identity), signed by the key;
//! 3. every attestation: a DSSE envelope signed by the key, whose in-toto statement names this
//!    image's digest as its subject;
//! 4. the policy: FIPS evidence with `mode = true` on a CMVP-validated module, about the very
//!    binary in the image; an SBOM; provenance; and an OpenVEX document that leaves no advisory
//!    `affected` or `under_investigation`.
//!
//! A check that cannot be made (a missing blob, a malformed document) fails with the reason.

use std::collections::BTreeMap;
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
use crate::oci::{Manifest, MEDIA_LAYER_GZIP};
use crate::store::Store;

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
    /// The identity (`docker-reference`) the signature must name; default: the image's
    /// repository when verifying in a registry, any identity offline.
    pub identity: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            require_fips: true,
            require_validated_module: true,
            require_sbom: true,
            require_provenance: true,
            require_vex: true,
            identity: None,
        }
    }
}

impl Policy {
    /// Reads a policy from a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("reading policy", path, e))?;
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
    fn push(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }
}

/// A verified attestation's statement.
struct Verified {
    predicate_type: String,
    predicate: serde_json::Value,
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

    // 1. The image's own content.
    let mut layers: Vec<(String, Vec<u8>)> = Vec::new();
    let content = (|| -> Result<String> {
        let m = Manifest::parse(&format!("manifest {}", image.digest), &image.bytes)?;
        store.blob(&m.config.digest)?;
        for l in &m.layers {
            let data = store.blob(&l.digest)?;
            layers.push((l.media_type.clone(), data));
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
                || policy.require_vex),
            format!(
                "no attestations for {} in {}; attach them with `distro attest`",
                image.digest,
                store.describe()
            ),
        ),
        Ok(atts) => {
            for a in &atts {
                let label = a
                    .predicate_type
                    .clone()
                    .unwrap_or_else(|| "(no predicateType)".into());
                match check_attestation(a, &image.digest, key) {
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

    // 4. Policy.
    let find = |t: &str| verified.iter().find(|v| v.predicate_type == t);
    if policy.require_fips {
        let (ok, detail) = match find(PREDICATE_FIPS) {
            None => (
                false,
                format!("no verified FIPS evidence attestation ({PREDICATE_FIPS})"),
            ),
            Some(v) => check_fips(&v.predicate, policy, &layers),
        };
        r.push("policy fips", ok, detail);
    }
    if policy.require_sbom {
        let (ok, detail) = match find(PREDICATE_CYCLONEDX) {
            None => (
                false,
                format!("no verified SBOM attestation ({PREDICATE_CYCLONEDX})"),
            ),
            Some(v)
                if v.predicate.get("bomFormat").and_then(|f| f.as_str()) != Some("CycloneDX") =>
            {
                (
                    false,
                    "SBOM attestation is not a CycloneDX document (bomFormat)".to_string(),
                )
            }
            Some(v) => (
                true,
                format!(
                    "CycloneDX {} with {} components",
                    v.predicate
                        .get("specVersion")
                        .and_then(|s| s.as_str())
                        .unwrap_or("?"),
                    v.predicate
                        .get("components")
                        .and_then(|c| c.as_array())
                        .map_or(0, Vec::len)
                ),
            ),
        };
        r.push("policy sbom", ok, detail);
    }
    if policy.require_provenance {
        let (ok, detail) = match find(PREDICATE_SLSA) {
            None => (
                false,
                format!("no verified provenance attestation ({PREDICATE_SLSA})"),
            ),
            Some(v) => match v
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
        };
        r.push("policy provenance", ok, detail);
    }
    if policy.require_vex {
        let (ok, detail) = match find(PREDICATE_OPENVEX) {
            None => (
                false,
                format!("no verified OpenVEX attestation ({PREDICATE_OPENVEX})"),
            ),
            Some(v) => check_vex(&v.predicate),
        };
        r.push("policy vex", ok, detail);
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
        if p.docker_reference != id {
            return Err(format!(
                "payload identity is `{}`, expected `{id}`",
                p.docker_reference
            ));
        }
    }
    Ok(p.docker_reference)
}

fn check_attestation(
    a: &cosign::StoredAttestation,
    image_digest: &str,
    key: &VerifyingKey,
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
    })
}

/// sha256 of every regular file in the image's layers, by path (later layers win).
fn files_in(layers: &[(String, Vec<u8>)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (media_type, data) in layers {
        if media_type != MEDIA_LAYER_GZIP
            && media_type != "application/vnd.docker.image.rootfs.diff.tar.gzip"
        {
            continue;
        }
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(data.as_slice()));
        let Ok(entries) = ar.entries() else { continue };
        for mut e in entries.flatten() {
            if !e.header().entry_type().is_file() {
                continue;
            }
            let Ok(p) = e
                .path()
                .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
            else {
                continue;
            };
            let mut buf = Vec::new();
            if e.read_to_end(&mut buf).is_ok() {
                out.insert(p, digest::sha256_hex(&buf));
            }
        }
    }
    out
}

fn check_fips(
    predicate: &serde_json::Value,
    policy: &Policy,
    layers: &[(String, Vec<u8>)],
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
    let files = files_in(layers);
    let path = format!("{}/{}", crate::assemble::BIN_DIR, ev.binary);
    match files.get(&path) {
        None => {
            return (
                false,
                format!(
                    "the evidence is about `{}` but the image has no /{path}",
                    ev.binary
                ),
            )
        }
        Some(h) if *h != ev.binary_sha256 => {
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
