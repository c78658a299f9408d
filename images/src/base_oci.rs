//! Another image as the base (`[image] base` in distro.toml): an OCI layout (`oci:DIR[:TAG]`),
//! an OCI archive, or a registry image pinned by digest (`REGISTRY/REPO@sha256:...`), such as an
//! organisation's UBI-minimal mirror.
//!
//! Its layers are copied as they are (same blobs, same diff_ids, its history and environment
//! kept), each checked against the digests its manifest and config give. Every regular file of
//! every layer is listed with its hash, so the image SBOM accounts for the base's files as well.
//! The base's own CycloneDX SBOM is merged when one is found, first found wins:
//!
//! 1. the file `[image] base_sbom` names;
//! 2. for a layout, `sbom.cdx.json` in the layout directory or beside it (where `distro image`
//!    writes its own);
//! 3. for any form, a CycloneDX attestation attached to the base the way `distro attest` attaches
//!    one to our own images (and `cosign attest --type cyclonedx` does): a DSSE envelope of an
//!    in-toto statement with predicate type `https://cyclonedx.org/bom`, under the cosign tag
//!    `sha256-<hex>.att` of the base's manifest digest (or of the index it was pinned by),
//!    whose subject is that digest. The newest such envelope is taken. Its signature is not
//!    checked (distro.toml names no key for the base): the base's content is pinned by digest
//!    either way, and its files are listed from its layers, not from this SBOM.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::cosign;
use crate::digest;
use crate::error::{Error, Result};
use crate::hardening::Resource;
use crate::oci::{Descriptor, Manifest, MEDIA_DOCKER_MANIFEST, MEDIA_INDEX, MEDIA_MANIFEST};
use crate::reference::ImageRef;
use crate::registry::RegistryOptions;

/// One layer of the base image.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    /// Its descriptor in the base's manifest.
    pub descriptor: Descriptor,
    /// The blob, as stored.
    pub blob: Vec<u8>,
    /// `sha256:` of the uncompressed tar (from the base's config, checked).
    pub diff_id: String,
    /// Regular files: (absolute path, hex sha256).
    pub files: Vec<(String, String)>,
}

/// The base image, read and checked.
#[derive(Debug, Clone)]
pub struct ImageBase {
    /// The reference as written in distro.toml.
    pub reference: String,
    /// Digest of the manifest used.
    pub manifest_digest: String,
    /// Its layers, bottom first.
    pub layers: Vec<BaseLayer>,
    /// Its config's `history`.
    pub history: Vec<serde_json::Value>,
    /// Its config's `Env`.
    pub env: Vec<String>,
    /// Its CycloneDX SBOM, when one was found: (where, bytes).
    pub sbom: Option<(String, Vec<u8>)>,
}

const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Media types of layers this reads: gzip (OCI and Docker) and uncompressed tar.
fn is_gzip(media_type: &str) -> Option<bool> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(true),
        "application/vnd.oci.image.layer.v1.tar" => Some(false),
        _ => None,
    }
}

/// Regular files of a layer tar with their hashes.
fn list_files(what: &str, tar_bytes: &[u8]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(tar_bytes);
    let entries = ar
        .entries()
        .map_err(|e| Error::io("reading layer", PathBuf::from(what), e))?;
    for e in entries {
        let mut e = e.map_err(|e| Error::io("reading layer", PathBuf::from(what), e))?;
        if e.header().entry_type() != tar::EntryType::Regular
            && e.header().entry_type() != tar::EntryType::Continuous
        {
            continue;
        }
        let path = e
            .path()
            .map_err(|e| Error::io("reading layer", PathBuf::from(what), e))?
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data)
            .map_err(|e| Error::io("reading layer", PathBuf::from(what), e))?;
        out.push((format!("/{path}"), digest::sha256_hex(&data)));
    }
    Ok(out)
}

impl ImageBase {
    /// Reads the base named by `reference`. A registry reference must be pinned by digest, so
    /// the base cannot change under the same distro.toml. `config_dir` resolves a relative
    /// layout path (the directory of distro.toml); `sbom` names the base's SBOM explicitly.
    pub fn open(
        reference: &str,
        config_dir: &Path,
        sbom: Option<&Path>,
        opts: &RegistryOptions,
    ) -> Result<ImageBase> {
        let mut r = ImageRef::parse(reference)?;
        let mut layout_dir = None;
        match &mut r {
            ImageRef::Layout { path, .. } | ImageRef::Archive { path, .. } => {
                if path.is_relative() {
                    *path = config_dir.join(&*path);
                }
                layout_dir = Some(path.clone());
            }
            ImageRef::Registry { digest: None, .. } => {
                return Err(Error::Reference {
                    reference: reference.to_string(),
                    reason: "a registry base must be pinned by digest (REGISTRY/REPO@sha256:...), so the same distro.toml always builds on the same base".into(),
                })
            }
            ImageRef::Registry { .. } => {}
        }
        let mut store = r.open(opts, false)?;
        let selector = r.selector().unwrap_or_else(|| "latest".to_string());
        let what = |d: &str| format!("base image {reference} ({d})");
        let fetched = store.manifest(&selector)?.ok_or_else(|| Error::NotFound {
            what: format!("base image `{selector}`"),
            store: store.describe(),
        })?;
        let pinned_digest = fetched.digest.clone();
        let (bytes, manifest_digest) = if fetched.media_type == MEDIA_INDEX
            || fetched.media_type == MEDIA_DOCKER_LIST
        {
            // A multi-platform base: take this machine's platform.
            let index: serde_json::Value = serde_json::from_slice(&fetched.bytes)
                .map_err(|e| Error::json(what("index"), e))?;
            let arch = crate::assemble::host_architecture();
            let digest = index["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["platform"]["architecture"] == arch && m["platform"]["os"] == "linux")
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| {
                    Error::invalid(what("index"), format!("has no linux/{arch} manifest"))
                })?
                .to_string();
            let m = store.manifest(&digest)?.ok_or_else(|| Error::NotFound {
                what: format!("base manifest {digest}"),
                store: store.describe(),
            })?;
            (m.bytes, m.digest)
        } else {
            (fetched.bytes, fetched.digest)
        };
        let manifest = Manifest::parse(&what("manifest"), &bytes)?;
        let mt = manifest.media_type.as_deref().unwrap_or(MEDIA_MANIFEST);
        if mt != MEDIA_MANIFEST && mt != MEDIA_DOCKER_MANIFEST {
            return Err(Error::invalid(
                what("manifest"),
                format!("media type `{mt}` is not an image manifest"),
            ));
        }
        let config_bytes = store.blob(&manifest.config.digest)?;
        digest::check(&what("config"), &manifest.config.digest, &config_bytes)?;
        let config: serde_json::Value =
            serde_json::from_slice(&config_bytes).map_err(|e| Error::json(what("config"), e))?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::invalid(
                what("config"),
                format!(
                    "lists {} diff_ids for {} layers",
                    diff_ids.len(),
                    manifest.layers.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let blob = store.blob(&desc.digest)?;
            digest::check(
                &what(&format!("layer {}", desc.digest)),
                &desc.digest,
                &blob,
            )?;
            let gzip = is_gzip(&desc.media_type).ok_or_else(|| {
                Error::invalid(
                    what(&format!("layer {}", desc.digest)),
                    format!("layer media type `{}` is not supported (gzip or plain tar); recompress the base with `skopeo copy --dest-compress-format gzip`", desc.media_type),
                )
            })?;
            let tar_bytes = if gzip {
                let mut t = Vec::new();
                GzDecoder::new(blob.as_slice())
                    .read_to_end(&mut t)
                    .map_err(|e| {
                        Error::io("decompressing base layer", PathBuf::from(&desc.digest), e)
                    })?;
                t
            } else {
                blob.clone()
            };
            digest::check(
                &what(&format!("uncompressed layer {}", desc.digest)),
                &diff_id,
                &tar_bytes,
            )?;
            let files = list_files(&desc.digest, &tar_bytes)?;
            layers.push(BaseLayer {
                descriptor: desc.clone(),
                blob,
                diff_id,
                files,
            });
        }
        let history = config["history"].as_array().cloned().unwrap_or_default();
        let env = config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();

        let mut candidates: Vec<PathBuf> = sbom.map(Path::to_path_buf).into_iter().collect();
        if sbom.is_none() {
            if let Some(dir) = &layout_dir {
                candidates.push(dir.join("sbom.cdx.json"));
                if let Some(parent) = dir.parent() {
                    candidates.push(parent.join("sbom.cdx.json"));
                }
            }
        }
        let mut found = None;
        for c in candidates {
            match std::fs::read(&c) {
                Ok(b) => {
                    found = Some((c.display().to_string(), b));
                    break;
                }
                Err(e) if sbom.is_some() => {
                    return Err(Error::io("reading the base image's SBOM", c, e))
                }
                Err(_) => {}
            }
        }
        if found.is_none() {
            let mut digests = vec![manifest_digest.clone()];
            if pinned_digest != manifest_digest {
                digests.push(pinned_digest);
            }
            found = attested_sbom(&mut *store, &digests)?;
        }
        Ok(ImageBase {
            reference: reference.to_string(),
            manifest_digest,
            layers,
            history,
            env,
            sbom: found,
        })
    }

    /// The hardening manifest's resource for a registry base: its manifest, by digest
    /// (`docker://REGISTRY/REPO@sha256:...`), so the Iron Bank build pulls exactly this base.
    /// `None` for a layout or archive, which has no URL to fetch it from.
    pub fn resource(&self) -> Option<Resource> {
        let ImageRef::Registry {
            registry,
            repository,
            ..
        } = ImageRef::parse(&self.reference).ok()?
        else {
            return None;
        };
        let hex = digest::hex_part(&self.manifest_digest).ok()?;
        let last = repository.rsplit('/').next().unwrap_or(&repository);
        Some(Resource {
            filename: format!("{last}-base-manifest.json"),
            url: format!("docker://{registry}/{repository}@{}", self.manifest_digest),
            sha256: hex.to_string(),
        })
    }

    /// `BASE_IMAGE` and `BASE_TAG` for the hardening manifest: the repository (or layout) and
    /// the digest it is pinned to.
    pub fn base_image_and_tag(&self) -> (String, String) {
        let name = self
            .reference
            .split('@')
            .next()
            .unwrap_or(&self.reference)
            .to_string();
        (name, self.manifest_digest.clone())
    }
}

/// The newest CycloneDX SBOM attested for one of `digests` in `store` (cosign's `.att` tag
/// scheme, as [`crate::cosign::attest`] writes it): (where it was found, the BOM's bytes).
/// An envelope typed as CycloneDX that does not hold a CycloneDX statement about the base is
/// an error naming it, so a broken attachment is never merged nor silently dropped.
fn attested_sbom(
    store: &mut dyn crate::store::Store,
    digests: &[String],
) -> Result<Option<(String, Vec<u8>)>> {
    for d in digests {
        let tag = digest::cosign_tag(d, "att")?;
        let atts = cosign::attestations(store, d)?;
        let hex = digest::hex_part(d)?;
        for a in atts.iter().rev() {
            let what = format!(
                "attestation {} under `{tag}` of the base in {}",
                a.layer_digest,
                store.describe()
            );
            let typed = a.predicate_type.as_deref();
            if typed.is_some_and(|t| t != cosign::PREDICATE_CYCLONEDX) {
                continue;
            }
            let env = cosign::Envelope::parse(&what, &a.envelope)?;
            let statement: serde_json::Value = serde_json::from_slice(&env.payload_bytes(&what)?)
                .map_err(|e| Error::json(what.clone(), e))?;
            if statement["predicateType"] != cosign::PREDICATE_CYCLONEDX {
                if typed.is_none() {
                    continue;
                }
                return Err(Error::invalid(
                    what,
                    format!(
                        "is annotated as a CycloneDX attestation but its statement's predicateType is {}; name the base's SBOM with [image] base_sbom in distro.toml instead",
                        statement["predicateType"]
                    ),
                ));
            }
            let about_base = statement["subject"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["digest"]["sha256"] == hex);
            let bom = &statement["predicate"];
            if !about_base || bom["bomFormat"] != "CycloneDX" {
                return Err(Error::invalid(
                    what,
                    format!(
                        "{}; name the base's SBOM with [image] base_sbom in distro.toml instead",
                        if about_base {
                            "its predicate is not a CycloneDX document".to_string()
                        } else {
                            format!("its subject is not the base ({d})")
                        }
                    ),
                ));
            }
            let bytes = serde_json::to_vec(bom).map_err(|e| Error::json(what.clone(), e))?;
            return Ok(Some((format!("{what} (signature not checked)"), bytes)));
        }
    }
    Ok(None)
}
