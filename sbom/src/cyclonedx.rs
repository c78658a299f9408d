//! CycloneDX 1.6 JSON for one binary: its crates, their licences and hashes, the dependency
//! graph, and the FIPS module with the algorithms it provides.
//!
//! The document is typed here (not built from `serde_json::Value`) so field order, and therefore
//! the bytes, are fixed. The cyclonedx-bom crate stops at spec 1.5 and has no `cryptoProperties`,
//! which the FIPS module needs, so it is not used. Every document is validated against the
//! vendored official schema before it is returned as bytes ([`Bom::to_json`]).

use std::collections::{BTreeMap, BTreeSet};

use distro_schema::FipsEvidence;
use serde::{Deserialize, Serialize};

use crate::graph::{DepKind, Graph, Package, PkgSource};
use crate::{crypto, licence, validate, SbomError};

/// `specVersion` of every document this module writes.
pub const SPEC_VERSION: &str = "1.6";
/// Name the toolkit uses in `metadata.tools`.
pub const TOOL_NAME: &str = "distro";
/// Version of this crate, written in `metadata.tools`.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Property names this toolkit adds (its own namespace, as the CycloneDX property taxonomy asks).
pub mod props {
    /// Cargo features enabled for a package in this binary.
    pub const FEATURES: &str = "distro:cargo:features";
    /// `runtime` or `build`.
    pub const DEP_KIND: &str = "distro:cargo:dependency-kind";
    /// Source kind as in the embedded list (`crates.io`, `git`, `local`, `registry`).
    pub const SOURCE: &str = "distro:cargo:source";
    /// Target triple the graph was resolved for.
    pub const TARGET: &str = "distro:cargo:target";
    /// The document was recovered from the binary's embedded list (no licences or crate hashes).
    pub const FROM_BINARY: &str = "distro:sbom:recovered-from";
    /// Whether the package's code is in the final binary, when evidence says otherwise than the graph.
    pub const LINKED: &str = "distro:binary:linked";
    /// A licence string that is not a valid SPDX expression, kept verbatim.
    pub const LICENSE_RAW: &str = "distro:cargo:license-unparsed";
}

/// A CycloneDX BOM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    /// Always `CycloneDX`.
    pub bom_format: String,
    /// Always [`SPEC_VERSION`].
    pub spec_version: String,
    /// `urn:uuid:` derived from the content.
    pub serial_number: String,
    /// Revision of this BOM (1).
    pub version: u32,
    /// What the BOM is about and who made it.
    pub metadata: Metadata,
    /// Everything inside it.
    pub components: Vec<Component>,
    /// The dependency graph by `bom-ref`.
    pub dependencies: Vec<Dependency>,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// RFC 3339 time from SOURCE_DATE_EPOCH.
    pub timestamp: String,
    /// The tool that wrote it.
    pub tools: Tools,
    /// The binary (or image) the BOM describes.
    pub component: Component,
    /// Extra facts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

/// `metadata.tools` (the 1.5+ object form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tools {
    /// Tools as components.
    pub components: Vec<Component>,
}

/// A component.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// `application`, `library`, `file`, `cryptographic-asset`, ...
    #[serde(rename = "type")]
    pub component_type: String,
    /// Identifier used by `dependencies`.
    #[serde(rename = "bom-ref", default, skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    /// Supplier or vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Name.
    pub name: String,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// One line about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `required` (linked in) or `excluded` (build-time only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Content hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    /// Licences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseChoice>,
    /// Package URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// Where it comes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
    /// Extra facts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
    /// For `cryptographic-asset` components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto_properties: Option<crypto::CryptoProperties>,
}

/// A hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hash {
    /// `SHA-256`.
    pub alg: String,
    /// Hex digest.
    pub content: String,
}

/// One entry of `licenses`: an SPDX expression, or a named licence when the text is not one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LicenseChoice {
    /// `{"expression": "MIT OR Apache-2.0"}`.
    Expression {
        /// The SPDX expression.
        expression: String,
    },
    /// `{"license": {"name": "..."}}`.
    Named {
        /// The licence.
        license: NamedLicense,
    },
}

/// A licence given by name only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedLicense {
    /// The text from the manifest.
    pub name: String,
}

/// An external reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalReference {
    /// `distribution`, `vcs`, `certification-report`, `website`, ...
    #[serde(rename = "type")]
    pub ref_type: String,
    /// Where.
    pub url: String,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A name/value property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    /// Name (namespaced).
    pub name: String,
    /// Value.
    pub value: String,
}

/// One node of the dependency graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The component.
    #[serde(rename = "ref")]
    pub dep_ref: String,
    /// What it depends on (sorted).
    pub depends_on: Vec<String>,
    /// Cryptographic assets it provides (sorted), CycloneDX 1.6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provides: Vec<String>,
}

impl Property {
    /// A property.
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Property {
            name: name.to_string(),
            value: value.into(),
        }
    }
}

/// Everything [`for_binary`] needs about one binary.
#[derive(Debug, Clone)]
pub struct BinaryInput<'a> {
    /// Its resolved dependency graph ([`crate::graph::resolve`], or recovered from the binary).
    pub graph: &'a Graph,
    /// Hex SHA-256 of the binary file, as shipped (after embedding the dependency list).
    pub binary_sha256: &'a str,
    /// SOURCE_DATE_EPOCH of the build: the document's timestamp.
    pub source_date_epoch: i64,
    /// The build's FIPS evidence for this binary; adds the FIPS module and its algorithms.
    pub evidence: Option<&'a FipsEvidence>,
    /// Set when the graph was recovered from the binary's `.dep-v0` section.
    pub recovered_from_binary: bool,
}

/// `pkg:cargo/NAME@VERSION`, with a qualifier naming git or non-crates.io sources.
pub fn purl(p: &Package) -> String {
    let base = format!("pkg:cargo/{}@{}", pct(&p.name), pct(&p.version));
    match &p.source {
        PkgSource::Git { url, rev } if !url.is_empty() => {
            let vcs = if rev.is_empty() {
                format!("git+{url}")
            } else {
                format!("git+{url}@{rev}")
            };
            format!("{base}?vcs_url={}", pct(&vcs))
        }
        PkgSource::Registry(id) if !id.is_empty() => {
            let url = id.split_once('+').map_or(id.as_str(), |(_, u)| u);
            format!("{base}?repository_url={}", pct(url))
        }
        _ => base,
    }
}

/// Percent-encodes what a purl component must not carry raw.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3339 UTC time of a Unix timestamp.
pub fn timestamp(epoch: i64) -> Result<String, SbomError> {
    chrono::DateTime::from_timestamp(epoch, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .ok_or_else(|| SbomError::Parse {
            what: "SOURCE_DATE_EPOCH",
            origin: epoch.to_string(),
            detail: "out of range".into(),
        })
}

/// A plain http(s) URL without characters that would break an `iri-reference`.
fn clean_url(u: &str) -> Option<String> {
    let u = u.trim();
    ((u.starts_with("https://") || u.starts_with("http://"))
        && !u.contains(char::is_whitespace)
        && !u.contains(['<', '>', '"', '{', '}', '|', '\\', '^', '`']))
    .then(|| u.to_string())
}

fn crate_component(p: &Package, bom_ref: &str) -> Component {
    let mut external_references = Vec::new();
    match &p.source {
        PkgSource::CratesIo => external_references.push(ExternalReference {
            ref_type: "distribution".into(),
            url: format!(
                "https://crates.io/api/v1/crates/{}/{}/download",
                p.name, p.version
            ),
            comment: Some("crates.io".into()),
        }),
        PkgSource::Git { url, rev } if !url.is_empty() => {
            if let Some(u) = clean_url(url) {
                external_references.push(ExternalReference {
                    ref_type: "vcs".into(),
                    url: u,
                    comment: (!rev.is_empty()).then(|| format!("commit {rev}")),
                });
            }
        }
        _ => {}
    }
    if let Some(repo) = p.repository.as_deref().and_then(clean_url) {
        if !external_references
            .iter()
            .any(|r| r.ref_type == "vcs" && r.url == repo)
        {
            external_references.push(ExternalReference {
                ref_type: "vcs".into(),
                url: repo,
                comment: None,
            });
        }
    }
    let mut properties = vec![
        Property::new(
            props::DEP_KIND,
            if p.kind == DepKind::Build {
                "build"
            } else {
                "runtime"
            },
        ),
        Property::new(props::SOURCE, p.source.auditable_kind()),
    ];
    if !p.features.is_empty() {
        properties.push(Property::new(props::FEATURES, p.features.join(",")));
    }
    let (licenses, raw) = licence::choice(p.license.as_deref());
    if let Some(raw) = raw {
        properties.push(Property::new(props::LICENSE_RAW, raw));
    }
    properties.sort_by(|a, b| a.name.cmp(&b.name));
    Component {
        component_type: "library".into(),
        bom_ref: Some(bom_ref.to_string()),
        name: p.name.clone(),
        version: Some(p.version.clone()),
        description: p.description.clone().filter(|d| !d.is_empty()),
        scope: Some(
            if p.kind == DepKind::Build {
                "excluded"
            } else {
                "required"
            }
            .into(),
        ),
        hashes: p
            .checksum
            .iter()
            .map(|c| Hash {
                alg: "SHA-256".into(),
                content: c.clone(),
            })
            .collect(),
        licenses,
        purl: Some(purl(p)),
        external_references,
        properties,
        ..Component::default()
    }
}

/// Unique `bom-ref`s for the graph's packages: the purl, suffixed when two packages share one.
fn bom_refs(graph: &Graph) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    graph
        .packages
        .iter()
        .map(|p| {
            let base = purl(p);
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                base
            } else {
                format!("{base}#{n}")
            }
        })
        .collect()
}

/// Package of the non-FIPS AWS-LC that rustls' `fips` feature compiles but does not link.
const NON_FIPS_AWS_LC: &str = "aws-lc-sys";

/// rustls' `fips` feature also builds the non-FIPS `aws-lc-sys`; in a release binary it is not
/// linked. When the evidence's symbol scan of the final binary found none of its symbols, its
/// component is marked `excluded` with the reason, so the SBOM says what the binary carries.
fn mark_unlinked_aws_lc(
    ev: &FipsEvidence,
    graph: &Graph,
    refs: &[String],
    components: &mut [Component],
) {
    let scanned = ev.symbols.total_symbols > 0;
    let present = ev
        .symbols
        .forbidden
        .iter()
        .any(|f| f.implementation.contains(NON_FIPS_AWS_LC));
    if !scanned || present {
        return;
    }
    for (i, p) in graph.packages.iter().enumerate() {
        if p.name != NON_FIPS_AWS_LC || i == graph.root {
            continue;
        }
        if let Some(c) = components
            .iter_mut()
            .find(|c| c.bom_ref.as_deref() == Some(refs[i].as_str()))
        {
            c.scope = Some("excluded".into());
            c.properties.push(Property::new(
                props::LINKED,
                "false: compiled as a dependency, but the FIPS evidence symbol scan found no aws_lc_<version>_* symbol in the final binary",
            ));
            c.properties.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
}

/// The CycloneDX 1.6 BOM of one binary. Validated against the official schema.
pub fn for_binary(input: &BinaryInput<'_>) -> Result<Bom, SbomError> {
    let graph = input.graph;
    let refs = bom_refs(graph);
    let root = graph.root_package();

    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    for (i, p) in graph.packages.iter().enumerate() {
        if i != graph.root {
            components.push(crate_component(p, &refs[i]));
        }
        let mut depends_on: Vec<String> = p.dependencies.iter().map(|&d| refs[d].clone()).collect();
        depends_on.sort();
        depends_on.dedup();
        dependencies.push(Dependency {
            dep_ref: refs[i].clone(),
            depends_on,
            provides: Vec::new(),
        });
    }

    if let Some(ev) = input.evidence {
        mark_unlinked_aws_lc(ev, graph, &refs, &mut components);
        let assets = crypto::assets(ev, &graph.target);
        // The crate that builds the module depends on the module it carries.
        if let Some(i) = graph
            .packages
            .iter()
            .position(|p| p.name == ev.module.crate_name)
        {
            if let Some(d) = dependencies.iter_mut().find(|d| d.dep_ref == refs[i]) {
                d.depends_on
                    .push(assets.module.bom_ref.clone().unwrap_or_default());
                d.depends_on.sort();
            }
        }
        dependencies.push(Dependency {
            dep_ref: assets.module.bom_ref.clone().unwrap_or_default(),
            depends_on: Vec::new(),
            provides: assets
                .provided
                .iter()
                .map(|c| c.bom_ref.clone().unwrap_or_default())
                .collect(),
        });
        for c in &assets.provided {
            dependencies.push(Dependency {
                dep_ref: c.bom_ref.clone().unwrap_or_default(),
                depends_on: assets
                    .uses
                    .get(c.bom_ref.as_deref().unwrap_or_default())
                    .cloned()
                    .unwrap_or_default(),
                provides: Vec::new(),
            });
        }
        components.push(assets.module);
        components.extend(assets.provided);
    }

    let (licenses, _) = licence::choice(root.license.as_deref());
    let mut meta_props = Vec::new();
    if !graph.target.is_empty() {
        meta_props.push(Property::new(props::TARGET, graph.target.clone()));
    }
    if input.recovered_from_binary {
        meta_props.push(Property::new(
            props::FROM_BINARY,
            "cargo-auditable .dep-v0 section",
        ));
    }
    let mut root_props = vec![Property::new(props::SOURCE, root.source.auditable_kind())];
    if !root.features.is_empty() {
        root_props.push(Property::new(props::FEATURES, root.features.join(",")));
    }
    let metadata = Metadata {
        timestamp: timestamp(input.source_date_epoch)?,
        tools: Tools {
            components: vec![Component {
                component_type: "application".into(),
                name: TOOL_NAME.into(),
                version: Some(TOOL_VERSION.into()),
                description: Some("FIPS service-mesh distribution toolkit (distro-sbom)".into()),
                ..Component::default()
            }],
        },
        component: Component {
            component_type: "application".into(),
            bom_ref: Some(refs[graph.root].clone()),
            name: graph.binary.clone(),
            version: Some(root.version.clone()),
            description: root.description.clone().filter(|d| !d.is_empty()),
            hashes: vec![Hash {
                alg: "SHA-256".into(),
                content: input.binary_sha256.to_string(),
            }],
            licenses,
            purl: Some(purl(root)),
            properties: root_props,
            ..Component::default()
        },
        properties: meta_props,
    };

    let mut bom = Bom {
        bom_format: "CycloneDX".into(),
        spec_version: SPEC_VERSION.into(),
        serial_number: String::new(),
        version: 1,
        metadata,
        components,
        dependencies,
    };
    bom.serial_number = content_serial(&bom);
    Ok(bom)
}

/// `urn:uuid:` from the SHA-256 of the document with an empty serial number (an RFC 4122
/// name-based UUID layout: version 5 bits, RFC variant bits).
pub fn content_serial(bom: &Bom) -> String {
    let mut b = bom.clone();
    b.serial_number = String::new();
    let bytes = serde_json::to_vec(&b).unwrap_or_default();
    crate::uuid_from(&bytes)
}

impl Bom {
    /// Pretty JSON with a final newline, after validating it against the CycloneDX 1.6 schema.
    pub fn to_json(&self) -> Result<Vec<u8>, SbomError> {
        let value = serde_json::to_value(self).map_err(|e| SbomError::Parse {
            what: "CycloneDX document",
            origin: self.metadata.component.name.clone(),
            detail: e.to_string(),
        })?;
        validate::cyclonedx(&value, &self.metadata.component.name)?;
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        Ok(out)
    }

    /// Recomputes the serial number after the BOM was changed (e.g. by [`crate::image::extend`]).
    pub fn reseal(&mut self) {
        self.serial_number = content_serial(self);
    }

    /// Number of components, by type (for reports and the benchmark).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for c in &self.components {
            *m.entry(c.component_type.clone()).or_insert(0) += 1;
        }
        m
    }

    /// The `bom-ref`s of all components, for checking graph closure.
    pub fn refs(&self) -> BTreeSet<&str> {
        self.components
            .iter()
            .filter_map(|c| c.bom_ref.as_deref())
            .collect()
    }
}
