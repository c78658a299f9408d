//! SPDX 2.3 JSON, derived from the CycloneDX document so both formats always say the same thing.
//!
//! Crates and the FIPS module become SPDX packages (with SHA256 checksums, purls and declared
//! licences), image files become packages of purpose `FILE`, and the dependency graph becomes
//! `DEPENDS_ON` relationships. SPDX 2.3 has no model for cryptographic assets, so algorithms and
//! protocols appear only in the CycloneDX document; the module's CMVP facts are kept as a comment.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::cyclonedx::{Bom, Component, LicenseChoice};
use crate::SbomError;

/// An SPDX 2.3 document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxDocument {
    /// `SPDX-2.3`.
    #[serde(rename = "spdxVersion")]
    pub spdx_version: String,
    /// `CC0-1.0`.
    #[serde(rename = "dataLicense")]
    pub data_license: String,
    /// `SPDXRef-DOCUMENT`.
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// Document name.
    pub name: String,
    /// Unique URI, derived from the content.
    #[serde(rename = "documentNamespace")]
    pub document_namespace: String,
    /// Who and when.
    #[serde(rename = "creationInfo")]
    pub creation_info: CreationInfo,
    /// The described package first, then every other one.
    pub packages: Vec<SpdxPackage>,
    /// DESCRIBES and DEPENDS_ON.
    pub relationships: Vec<Relationship>,
}

/// `creationInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreationInfo {
    /// RFC 3339 time (SOURCE_DATE_EPOCH).
    pub created: String,
    /// `Tool: distro-VERSION`.
    pub creators: Vec<String>,
}

/// An SPDX package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxPackage {
    /// `SPDXRef-...`.
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// Name.
    pub name: String,
    /// Version.
    #[serde(
        rename = "versionInfo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub version_info: Option<String>,
    /// Supplier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// Where to get it, or `NOASSERTION`.
    #[serde(rename = "downloadLocation")]
    pub download_location: String,
    /// Always false: files inside packages are not listed.
    #[serde(rename = "filesAnalyzed")]
    pub files_analyzed: bool,
    /// `NOASSERTION`: no licence conclusion is made by a tool.
    #[serde(rename = "licenseConcluded")]
    pub license_concluded: String,
    /// The manifest's licence as an SPDX expression, or `NOASSERTION`.
    #[serde(rename = "licenseDeclared")]
    pub license_declared: String,
    /// A licence text that is not an SPDX expression.
    #[serde(
        rename = "licenseComments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub license_comments: Option<String>,
    /// `NOASSERTION`.
    #[serde(rename = "copyrightText")]
    pub copyright_text: String,
    /// Content hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<Checksum>,
    /// purl.
    #[serde(
        rename = "externalRefs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub external_refs: Vec<ExternalRef>,
    /// `APPLICATION`, `LIBRARY`, `FILE`.
    #[serde(
        rename = "primaryPackagePurpose",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub primary_package_purpose: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Extra facts (CMVP certificate and status of the FIPS module; dependency kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `SHA256`.
    pub algorithm: String,
    /// Hex.
    #[serde(rename = "checksumValue")]
    pub checksum_value: String,
}

/// An external reference (purl).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalRef {
    /// `PACKAGE-MANAGER`.
    #[serde(rename = "referenceCategory")]
    pub reference_category: String,
    /// `purl`.
    #[serde(rename = "referenceType")]
    pub reference_type: String,
    /// The purl.
    #[serde(rename = "referenceLocator")]
    pub reference_locator: String,
}

/// A relationship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// From.
    #[serde(rename = "spdxElementId")]
    pub spdx_element_id: String,
    /// `DESCRIBES`, `DEPENDS_ON`.
    #[serde(rename = "relationshipType")]
    pub relationship_type: String,
    /// To.
    #[serde(rename = "relatedSpdxElement")]
    pub related_spdx_element: String,
}

/// Characters allowed in an SPDX identifier after `SPDXRef-`.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn package_of(c: &Component, spdx_id: String, purpose: &str) -> SpdxPackage {
    let (declared, comments) = match c.licenses.first() {
        Some(LicenseChoice::Expression { expression }) => (expression.clone(), None),
        Some(LicenseChoice::Named { license }) => (
            "NOASSERTION".to_string(),
            Some(format!(
                "declared licence is not an SPDX expression: {}",
                license.name
            )),
        ),
        None => ("NOASSERTION".to_string(), None),
    };
    let download_location = c
        .external_references
        .iter()
        .find(|r| r.ref_type == "distribution")
        .map(|r| r.url.clone())
        .or_else(|| {
            c.external_references
                .iter()
                .find(|r| r.ref_type == "vcs")
                .map(|r| format!("git+{}", r.url))
        })
        .unwrap_or_else(|| "NOASSERTION".into());
    let mut comment: Vec<String> = c
        .properties
        .iter()
        .filter(|p| {
            p.name.starts_with("distro:fips:")
                || p.name == crate::cyclonedx::props::DEP_KIND
                || p.name.starts_with("distro:image:")
        })
        .map(|p| format!("{}={}", p.name, p.value))
        .collect();
    if let Some(s) = &c.scope {
        comment.push(format!("scope={s}"));
    }
    SpdxPackage {
        spdx_id,
        name: c.name.clone(),
        version_info: c.version.clone(),
        supplier: c.publisher.as_ref().map(|p| format!("Organization: {p}")),
        download_location,
        files_analyzed: false,
        license_concluded: "NOASSERTION".into(),
        license_declared: declared,
        license_comments: comments,
        copyright_text: "NOASSERTION".into(),
        checksums: c
            .hashes
            .iter()
            .filter(|h| h.alg == "SHA-256")
            .map(|h| Checksum {
                algorithm: "SHA256".into(),
                checksum_value: h.content.clone(),
            })
            .collect(),
        external_refs: c
            .purl
            .iter()
            .map(|p| ExternalRef {
                reference_category: "PACKAGE-MANAGER".into(),
                reference_type: "purl".into(),
                reference_locator: p.clone(),
            })
            .collect(),
        primary_package_purpose: Some(purpose.to_string()),
        description: c.description.clone(),
        comment: (!comment.is_empty()).then(|| comment.join("; ")),
    }
}

/// The SPDX 2.3 document equivalent to a CycloneDX BOM.
pub fn from_bom(bom: &Bom) -> SpdxDocument {
    let uuid = bom.serial_number.trim_start_matches("urn:uuid:");
    let root = &bom.metadata.component;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut unique = |base: String| {
        let mut id = base.clone();
        let mut n = 1;
        while !used.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    };
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let root_id = unique(format!("SPDXRef-Package-{}", id_part(&root.name)));
    if let Some(r) = &root.bom_ref {
        ids.insert(r.clone(), root_id.clone());
    }
    let root_purpose = if root.component_type == "container" {
        "CONTAINER"
    } else {
        "APPLICATION"
    };
    let mut packages = vec![package_of(root, root_id.clone(), root_purpose)];
    for c in &bom.components {
        let purpose = match c.component_type.as_str() {
            "library" => "LIBRARY",
            "file" => "FILE",
            "application" => "APPLICATION",
            _ => continue, // cryptographic assets: CycloneDX only
        };
        let base = match &c.version {
            Some(v) => format!("SPDXRef-Package-{}-{}", id_part(&c.name), id_part(v)),
            None => format!("SPDXRef-File-{}", id_part(c.name.trim_start_matches('/'))),
        };
        let id = unique(base);
        if let Some(r) = &c.bom_ref {
            ids.insert(r.clone(), id.clone());
        }
        packages.push(package_of(c, id, purpose));
    }
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        relationship_type: "DESCRIBES".into(),
        related_spdx_element: root_id.clone(),
    }];
    for d in &bom.dependencies {
        let Some(from) = ids.get(&d.dep_ref) else {
            continue;
        };
        for to in &d.depends_on {
            if let Some(to) = ids.get(to) {
                relationships.push(Relationship {
                    spdx_element_id: from.clone(),
                    relationship_type: "DEPENDS_ON".into(),
                    related_spdx_element: to.clone(),
                });
            }
        }
    }
    // Image files are contained in the image, not dependencies of it.
    for c in bom.components.iter().filter(|c| c.component_type == "file") {
        if let Some(id) = c.bom_ref.as_ref().and_then(|r| ids.get(r)) {
            relationships.push(Relationship {
                spdx_element_id: root_id.clone(),
                relationship_type: "CONTAINS".into(),
                related_spdx_element: id.clone(),
            });
        }
    }
    SpdxDocument {
        spdx_version: "SPDX-2.3".into(),
        data_license: "CC0-1.0".into(),
        spdx_id: "SPDXRef-DOCUMENT".into(),
        name: match &root.version {
            Some(v) => format!("{}-{}", root.name, v),
            None => root.name.clone(),
        },
        document_namespace: format!("https://spdx.org/spdxdocs/{}-{uuid}", id_part(&root.name)),
        creation_info: CreationInfo {
            created: bom.metadata.timestamp.clone(),
            creators: vec![format!(
                "Tool: {}-{}",
                crate::cyclonedx::TOOL_NAME,
                crate::cyclonedx::TOOL_VERSION
            )],
        },
        packages,
        relationships,
    }
}

impl SpdxDocument {
    /// Pretty JSON with a final newline, after checking the fields SPDX 2.3 requires.
    pub fn to_json(&self) -> Result<Vec<u8>, SbomError> {
        self.check()?;
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        Ok(out)
    }

    /// Required fields and identifier syntax (the full schema check runs in the test suite with
    /// the independent `spdx-tools` validator).
    pub fn check(&self) -> Result<(), SbomError> {
        let mut errors = Vec::new();
        let ids: BTreeSet<&str> = self.packages.iter().map(|p| p.spdx_id.as_str()).collect();
        if ids.len() != self.packages.len() {
            errors.push("duplicate SPDXID".to_string());
        }
        for p in &self.packages {
            let ok = p.spdx_id.strip_prefix("SPDXRef-").is_some_and(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            });
            if !ok {
                errors.push(format!("bad SPDXID {}", p.spdx_id));
            }
            if p.name.is_empty() {
                errors.push(format!("{}: empty name", p.spdx_id));
            }
        }
        for r in &self.relationships {
            for end in [&r.spdx_element_id, &r.related_spdx_element] {
                if end != "SPDXRef-DOCUMENT" && !ids.contains(end.as_str()) {
                    errors.push(format!("relationship to unknown element {end}"));
                }
            }
        }
        if self.document_namespace.contains('#') {
            errors.push("documentNamespace contains '#'".into());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SbomError::Invalid {
                format: "SPDX 2.3",
                subject: self.name.clone(),
                schema: "SPDX 2.3 required fields",
                errors: errors.join("\n"),
            })
        }
    }
}
