//! The OCI image-spec documents this crate reads and writes (manifest, index, descriptor) and the
//! media types it uses. Serialized compactly with fields in a fixed order, so the same content
//! always gives the same digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// OCI image manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// gzip-compressed tar layer.
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker schema 2 manifest (accepted when reading).
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// cosign's simple-signing payload layer.
pub const MEDIA_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// A DSSE envelope layer (cosign attestations).
pub const MEDIA_DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// Annotation holding a tag in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of `data`.
    pub fn of(media_type: &str, data: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: crate::digest::sha256(data),
            size: data.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// An OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// [`MEDIA_MANIFEST`].
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// A manifest of the given config and layers.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.to_string()),
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    /// Parses a manifest; `what` names it in errors.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))?;
        if m.schema_version != 2 {
            return Err(Error::invalid(
                what,
                format!("schemaVersion {} is not 2", m.schema_version),
            ));
        }
        Ok(m)
    }

    /// The canonical bytes of this manifest.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Invariant: a struct of strings, numbers and string maps always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An OCI image index (also the `index.json` of a layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// [`MEDIA_INDEX`].
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.to_string()),
            manifests: Vec::new(),
        }
    }
}
