//! Signatures and attestations stored the way cosign stores them, in the image's own repository:
//! a manifest tagged `sha256-<hex>.sig` whose layers are simple-signing payloads with the
//! signature in an annotation, and one tagged `sha256-<hex>.att` whose layers are DSSE envelopes
//! of in-toto statements. New signatures and attestations are appended as layers; nothing
//! already there is overwritten. (The CNCF distribution registry has no referrers API, so the tag
//! scheme is the portable one.)

use std::collections::BTreeMap;

use base64::Engine as _;
use distro_schema::intoto::{Statement, Subject, STATEMENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::digest;
use crate::error::{Error, Result};
use crate::keys::{SigningKey, VerifyingKey};
use crate::oci::{
    Descriptor, Manifest, ANNOTATION_REF_NAME, MEDIA_CONFIG, MEDIA_DSSE, MEDIA_MANIFEST,
    MEDIA_SIMPLESIGNING,
};
use crate::store::{FetchedManifest, Layout, Store};

/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// `type` of a cosign simple-signing payload.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
/// DSSE payload type of in-toto statements.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// CycloneDX SBOM predicate.
pub const PREDICATE_CYCLONEDX: &str = "https://cyclonedx.org/bom";
/// OpenVEX predicate.
pub const PREDICATE_OPENVEX: &str = "https://openvex.dev/ns/v0.2.0";
/// SLSA provenance v1 predicate.
pub const PREDICATE_SLSA: &str = distro_schema::intoto::SLSA_PROVENANCE_V1;
/// Our FIPS evidence predicate (`distro_schema::FipsEvidence`).
pub const PREDICATE_FIPS: &str = "https://fips-mesh.invalid/fips-evidence/v1";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Finds the image a selector names: a tag or digest, or, in a layout with exactly one image
/// tag, that one.
pub fn resolve(store: &mut dyn Store, selector: Option<&str>) -> Result<(String, FetchedManifest)> {
    let sel = match selector {
        Some(s) => s.to_string(),
        None => {
            return Err(Error::invalid(
                store.describe(),
                "no tag or digest given; name the image as oci:DIR:TAG, REGISTRY/REPO:TAG or @sha256:...",
            ))
        }
    };
    let m = store.manifest(&sel)?.ok_or_else(|| Error::NotFound {
        what: format!("image `{sel}`"),
        store: store.describe(),
    })?;
    if m.media_type != MEDIA_MANIFEST && m.media_type != crate::oci::MEDIA_DOCKER_MANIFEST {
        return Err(Error::invalid(
            format!("image `{sel}` in {}", store.describe()),
            format!(
                "media type {} is not a single-platform image manifest",
                m.media_type
            ),
        ));
    }
    Ok((sel, m))
}

/// Image tags of a layout, without cosign's `.sig`/`.att` tags.
pub fn image_tags(layout: &Layout) -> Vec<String> {
    layout
        .index()
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME))
        .filter(|t| !(t.starts_with("sha256-") && (t.ends_with(".sig") || t.ends_with(".att"))))
        .cloned()
        .collect()
}

/// cosign's simple-signing payload for `digest` under `identity`.
pub fn simple_signing_payload(identity: &str, image_digest: &str) -> Vec<u8> {
    let v = serde_json::json!({
        "critical": {
            "identity": { "docker-reference": identity },
            "image": { "docker-manifest-digest": image_digest },
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": null,
    });
    // Invariant: a JSON value built from strings always serializes.
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The parsed fields of a simple-signing payload that verification checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleSigning {
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: String,
    /// `critical.type`.
    pub kind: String,
}

/// Parses a simple-signing payload.
pub fn parse_simple_signing(what: &str, payload: &[u8]) -> Result<SimpleSigning> {
    let v: serde_json::Value = serde_json::from_slice(payload).map_err(|e| Error::json(what, e))?;
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
    Ok(SimpleSigning {
        docker_reference: s("/critical/identity/docker-reference")
            .ok_or_else(|| Error::invalid(what, "no critical.identity.docker-reference"))?,
        manifest_digest: s("/critical/image/docker-manifest-digest")
            .ok_or_else(|| Error::invalid(what, "no critical.image.docker-manifest-digest"))?,
        kind: s("/critical/type").ok_or_else(|| Error::invalid(what, "no critical.type"))?,
    })
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `application/vnd.in-toto+json`.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// base64 of the statement.
    pub payload: String,
    /// Signatures over PAE(payloadType, payload).
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Key id (hex sha256 of the SPKI DER).
    #[serde(default)]
    pub keyid: String,
    /// base64 DER ECDSA signature.
    pub sig: String,
}

/// DSSE pre-authentication encoding: `DSSEv1 SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` into an envelope.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Result<Self> {
        let sig = key.sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload_type: payload_type.to_string(),
            payload: b64().encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: key.keyid(),
                sig: b64().encode(sig),
            }],
        })
    }

    /// Parses an envelope.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))
    }

    /// The decoded payload.
    pub fn payload_bytes(&self, what: &str) -> Result<Vec<u8>> {
        b64()
            .decode(&self.payload)
            .map_err(|e| Error::invalid(what, format!("payload is not base64: {e}")))
    }

    /// Whether any signature verifies under `key`.
    pub fn verify(&self, what: &str, key: &VerifyingKey) -> Result<bool> {
        let payload = self.payload_bytes(what)?;
        let msg = pae(&self.payload_type, &payload);
        Ok(self.signatures.iter().any(|s| {
            b64()
                .decode(&s.sig)
                .map(|sig| key.verify(&msg, &sig))
                .unwrap_or(false)
        }))
    }
}

/// One signature found under an image's `.sig` tag.
#[derive(Debug, Clone)]
pub struct StoredSignature {
    /// Layer digest (of the payload).
    pub layer_digest: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The annotation value (base64 DER), if present.
    pub signature_b64: Option<String>,
}

/// One attestation found under an image's `.att` tag.
#[derive(Debug, Clone)]
pub struct StoredAttestation {
    /// Layer digest (of the envelope).
    pub layer_digest: String,
    /// The `predicateType` annotation.
    pub predicate_type: Option<String>,
    /// The envelope bytes.
    pub envelope: Vec<u8>,
}

/// Largest signature payload or attestation envelope read (64 MiB: an SBOM of a large graph
/// is a few MiB).
pub const MAX_ATTACHMENT_BYTES: u64 = 64 << 20;

/// Layer descriptors with their content.
type Layers = Vec<(Descriptor, Vec<u8>)>;

fn layers_under(store: &mut dyn Store, tag: &str) -> Result<Option<(Manifest, Layers)>> {
    let Some(m) = store.manifest(tag)? else {
        return Ok(None);
    };
    let manifest = Manifest::parse(
        &format!("manifest `{tag}` in {}", store.describe()),
        &m.bytes,
    )?;
    let mut out = Vec::new();
    for l in &manifest.layers {
        // The `.sig`/`.att` manifest is not itself signed: its sizes are capped before any
        // byte is fetched.
        if l.size > MAX_ATTACHMENT_BYTES {
            return Err(Error::invalid(
                format!("layer {} of `{tag}` in {}", l.digest, store.describe()),
                format!(
                    "it declares {} bytes, more than the {MAX_ATTACHMENT_BYTES} a signature or attestation may have",
                    l.size
                ),
            ));
        }
        let data = store.blob_sized(&l.digest, l.size)?;
        out.push((l.clone(), data));
    }
    Ok(Some((manifest, out)))
}

/// The signatures stored for `image_digest`.
pub fn signatures(store: &mut dyn Store, image_digest: &str) -> Result<Vec<StoredSignature>> {
    let tag = digest::cosign_tag(image_digest, "sig")?;
    Ok(layers_under(store, &tag)?
        .map(|(_, ls)| {
            ls.into_iter()
                .filter(|(d, _)| d.media_type == MEDIA_SIMPLESIGNING)
                .map(|(d, payload)| StoredSignature {
                    signature_b64: d.annotations.get(SIGNATURE_ANNOTATION).cloned(),
                    layer_digest: d.digest,
                    payload,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The attestations stored for `image_digest`.
pub fn attestations(store: &mut dyn Store, image_digest: &str) -> Result<Vec<StoredAttestation>> {
    let tag = digest::cosign_tag(image_digest, "att")?;
    Ok(layers_under(store, &tag)?
        .map(|(_, ls)| {
            ls.into_iter()
                .filter(|(d, _)| d.media_type == MEDIA_DSSE)
                .map(|(d, envelope)| StoredAttestation {
                    predicate_type: d.annotations.get(PREDICATE_TYPE_ANNOTATION).cloned(),
                    layer_digest: d.digest,
                    envelope,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Appends a layer to the manifest under `tag` (creating it), cosign-style: the config lists the
/// layers' digests as diff_ids. Returns the new manifest digest.
pub(crate) fn append_layer(
    store: &mut dyn Store,
    tag: &str,
    layer: Descriptor,
    data: &[u8],
) -> Result<String> {
    let mut layers = match store.manifest(tag)? {
        Some(m) => {
            Manifest::parse(
                &format!("manifest `{tag}` in {}", store.describe()),
                &m.bytes,
            )?
            .layers
        }
        None => Vec::new(),
    };
    store.put_blob(&layer.digest, data)?;
    layers.push(layer);
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{ "created": "0001-01-01T00:00:00Z" }],
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
        "config": {},
    });
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| Error::json("signature config", e))?;
    let config_desc = Descriptor::of(MEDIA_CONFIG, &config_bytes);
    store.put_blob(&config_desc.digest, &config_bytes)?;
    // Every blob is in place before the tag moves.
    for l in &layers {
        if !store.has_blob(&l.digest)? {
            return Err(Error::NotFound {
                what: format!("layer {} of `{tag}`", l.digest),
                store: store.describe(),
            });
        }
    }
    let manifest = Manifest::new(config_desc, layers);
    store.put_manifest(Some(tag), &manifest.to_bytes(), MEDIA_MANIFEST)
}

/// What [`sign`] did.
#[derive(Debug, Clone, Serialize)]
pub struct SignOutcome {
    /// The signed image's digest.
    pub image_digest: String,
    /// The identity signed (`docker-reference`).
    pub identity: String,
    /// The signature tag.
    pub tag: String,
    /// Whether a new signature was added (false: this key had already signed this payload).
    pub added: bool,
    /// Signatures now under the tag.
    pub signatures: usize,
    /// Key id of the signer.
    pub keyid: String,
}

/// Signs the image `selector` names in `store` for `identity`, appending to its `.sig` manifest.
pub fn sign(
    store: &mut dyn Store,
    selector: Option<&str>,
    identity: &str,
    key: &SigningKey,
) -> Result<SignOutcome> {
    let (_, image) = resolve(store, selector)?;
    let tag = digest::cosign_tag(&image.digest, "sig")?;
    let payload = simple_signing_payload(identity, &image.digest);
    let payload_digest = digest::sha256(&payload);
    let public = key.public();
    let existing = signatures(store, &image.digest)?;
    let already = existing.iter().any(|s| {
        s.layer_digest == payload_digest
            && s.signature_b64
                .as_deref()
                .and_then(|b| b64().decode(b).ok())
                .is_some_and(|sig| public.verify(&s.payload, &sig))
    });
    let mut count = existing.len();
    if !already {
        let sig = key.sign(&payload)?;
        let mut layer = Descriptor::of(MEDIA_SIMPLESIGNING, &payload);
        layer
            .annotations
            .insert(SIGNATURE_ANNOTATION.to_string(), b64().encode(sig));
        append_layer(store, &tag, layer, &payload)?;
        count += 1;
    }
    Ok(SignOutcome {
        image_digest: image.digest,
        identity: identity.to_string(),
        tag,
        added: !already,
        signatures: count,
        keyid: key.keyid(),
    })
}

/// One predicate to attest.
#[derive(Debug, Clone)]
pub struct Predicate {
    /// Its type URI.
    pub predicate_type: String,
    /// The document.
    pub body: serde_json::Value,
}

/// What [`attest`] did for one predicate.
#[derive(Debug, Clone, Serialize)]
pub struct AttestOutcome {
    /// Predicate type.
    pub predicate_type: String,
    /// Whether a new envelope was added (false: the same statement was already signed by this key).
    pub added: bool,
    /// Layer digest of the envelope (the existing one when nothing was added).
    pub layer_digest: String,
    /// Why nothing was added, or what the new envelope supersedes.
    pub note: String,
}

/// A statement with the OpenVEX document's own times removed, to tell a regenerated document
/// (a resumed release stamps it again) from a changed one.
fn without_document_times(statement: &[u8]) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_slice(statement).ok()?;
    if let Some(p) = v.get_mut("predicate").and_then(|p| p.as_object_mut()) {
        p.remove("timestamp");
        p.remove("last_updated");
    }
    Some(v)
}

/// Whether attaching `payload` would add nothing: the same statement is already attached under
/// this key, or (OpenVEX) the newest attached document says the same and differs only in its
/// timestamp. Returns the existing layer and why.
fn already_attested(
    existing: &[StoredAttestation],
    image_digest: &str,
    public: &VerifyingKey,
    predicate_type: &str,
    payload: &[u8],
) -> Option<(String, String)> {
    let mut verified = Vec::new();
    for (i, a) in existing.iter().enumerate() {
        let Ok(v) = crate::verify::check_attestation(a, image_digest, public, i) else {
            continue;
        };
        if v.predicate_type != predicate_type {
            continue;
        }
        let Some(stored) = Envelope::parse("", &a.envelope)
            .ok()
            .and_then(|e| e.payload_bytes("").ok())
        else {
            continue;
        };
        verified.push((v, stored));
    }
    let vex = predicate_type == PREDICATE_OPENVEX;
    // The newest of its type, as `verify` orders them; a document whose age cannot be told is
    // left out (verify fails on it anyway, and a new one must be attached).
    let newest = verified
        .iter()
        .filter_map(|(v, p)| crate::verify::recency(v).ok().map(|k| (k, v, p)))
        .max_by_key(|(k, _, _)| *k);
    if let Some((_, v, stored)) = newest {
        if stored.as_slice() == payload {
            return Some((
                v.layer_digest.clone(),
                "the same statement is the newest attached under this key".into(),
            ));
        }
        if vex && without_document_times(stored) == without_document_times(payload) {
            return Some((
                v.layer_digest.clone(),
                "the newest attached OpenVEX document says the same (only its timestamp differs)"
                    .into(),
            ));
        }
    }
    // An older OpenVEX document attached again changes nothing: verify orders VEX by the
    // document's own time, so it would stay superseded.
    if vex {
        if let Some((v, _)) = verified.iter().find(|(_, p)| p.as_slice() == payload) {
            return Some((
                v.layer_digest.clone(),
                "the same OpenVEX document is already attached under this key".into(),
            ));
        }
    }
    None
}

/// The in-toto statement for `predicate` about the image `subject_name`@`image_digest`.
pub fn statement(subject_name: &str, image_digest: &str, predicate: &Predicate) -> Result<Vec<u8>> {
    let hex = digest::hex_part(image_digest)?;
    let st = Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject: vec![Subject {
            name: subject_name.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), hex.to_string())]),
        }],
        predicate_type: predicate.predicate_type.clone(),
        predicate: predicate.body.clone(),
    };
    serde_json::to_vec(&st).map_err(|e| Error::json("in-toto statement", e))
}

/// Attaches a signed DSSE envelope per predicate to the image's `.att` manifest.
pub fn attest(
    store: &mut dyn Store,
    selector: Option<&str>,
    subject_name: &str,
    key: &SigningKey,
    predicates: &[Predicate],
) -> Result<(String, Vec<AttestOutcome>)> {
    let (_, image) = resolve(store, selector)?;
    let tag = digest::cosign_tag(&image.digest, "att")?;
    let public = key.public();
    let mut outcomes = Vec::new();
    for p in predicates {
        let payload = statement(subject_name, &image.digest, p)?;
        let existing = attestations(store, &image.digest)?;
        if let Some((layer_digest, note)) = already_attested(
            &existing,
            &image.digest,
            &public,
            &p.predicate_type,
            &payload,
        ) {
            outcomes.push(AttestOutcome {
                predicate_type: p.predicate_type.clone(),
                added: false,
                layer_digest,
                note,
            });
            continue;
        }
        let of_type = existing
            .iter()
            .filter(|a| a.predicate_type.as_deref() == Some(p.predicate_type.as_str()))
            .count();
        let env = Envelope::sign(INTOTO_PAYLOAD_TYPE, &payload, key)?;
        let bytes = serde_json::to_vec(&env).map_err(|e| Error::json("DSSE envelope", e))?;
        let mut layer = Descriptor::of(MEDIA_DSSE, &bytes);
        layer.annotations.insert(
            PREDICATE_TYPE_ANNOTATION.to_string(),
            p.predicate_type.clone(),
        );
        // cosign writes an empty signature annotation on attestation layers; tools expect it.
        layer
            .annotations
            .insert(SIGNATURE_ANNOTATION.to_string(), String::new());
        let layer_digest = layer.digest.clone();
        append_layer(store, &tag, layer, &bytes)?;
        outcomes.push(AttestOutcome {
            predicate_type: p.predicate_type.clone(),
            added: true,
            layer_digest,
            note: if of_type == 0 {
                "first of its type".into()
            } else {
                format!("appended after {of_type} of its type; the newest decides at verify")
            },
        });
    }
    Ok((image.digest, outcomes))
}
