//! OpenVEX 0.2.0 documents: per line and release, which advisories are fixed (by a backported
//! patch or a dependency bump), not affecting or still open — the line's
//! [`crate::evaluate`] answers, stated about the distribution's own release.
//!
//! Products are the distribution's release, never the stock upstream package: its images as
//! `pkg:oci/NAME@sha256%3A…?repository_url=…` when their digests are known, else
//! `pkg:generic/DIST@RELEASE`; the crate an advisory is about is a subcomponent with a
//! `distro=DIST-LINE` qualifier (`pkg:cargo/rustls-webpki@0.103.5?distro=fips-mesh-0.1`), so a
//! scanner does not take an unpatched upstream build of the same version as fixed.
//! Documents are checked against the official OpenVEX JSON schema (vendored in
//! `patches/schema/`) before anyone writes them; the schema rejects an empty `statements`.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::PatchError;
use crate::evaluate::{Evaluation, LineEvaluation, Status};

/// The official OpenVEX 0.2.0 JSON schema (openvex/spec `openvex_json_schema.json`).
const SCHEMA: &str = include_str!("../schema/openvex_json_schema.json");

/// The OpenVEX 0.2.0 JSON-LD context.
pub const CONTEXT: &str = "https://openvex.dev/ns/v0.2.0";

/// An OpenVEX document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    /// Always [`CONTEXT`].
    #[serde(rename = "@context")]
    pub context: String,
    /// IRI of this document (content-derived).
    #[serde(rename = "@id")]
    pub id: String,
    /// Who states it.
    pub author: String,
    /// The author's role.
    pub role: String,
    /// When it was issued.
    pub timestamp: String,
    /// Document version.
    pub version: u32,
    /// What produced it.
    pub tooling: String,
    /// The statements.
    pub statements: Vec<Statement>,
}

/// One VEX statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The vulnerability.
    pub vulnerability: Vulnerability,
    /// Products it is about.
    pub products: Vec<Product>,
    /// not_affected, affected, fixed or under_investigation.
    pub status: String,
    /// Free text on the status (which patch or bump fixed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_notes: Option<String>,
    /// For not_affected: one of the spec's justifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// For not_affected: why, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact_statement: Option<String>,
    /// For affected: what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_statement: Option<String>,
}

/// A vulnerability: its primary id and aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vulnerability {
    /// Primary id (RUSTSEC for crate advisories).
    pub name: String,
    /// Other ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A product (and the subcomponent the vulnerability is in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    /// purl of the product.
    #[serde(rename = "@id")]
    pub id: String,
    /// purls of the affected subcomponents.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subcomponents: Vec<Subcomponent>,
}

/// A subcomponent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subcomponent {
    /// Its purl.
    #[serde(rename = "@id")]
    pub id: String,
}

/// The product identifiers of a line's release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Products {
    /// purls of the release: its images, or the distribution's generic purl.
    pub release: Vec<String>,
    /// The qualifier value marking the distribution's build of a crate (`DIST-LINE`).
    pub distro: String,
}

impl Products {
    /// `images` are `REPOSITORY@sha256:HEX` references; without any, the release is
    /// `pkg:generic/DIST@RELEASE`.
    pub fn new(
        dist: &str,
        line: &str,
        release: &str,
        images: &[String],
    ) -> Result<Products, PatchError> {
        let mut purls = Vec::new();
        for image in images {
            purls.push(oci_purl(image)?);
        }
        if purls.is_empty() {
            purls.push(format!("pkg:generic/{dist}@{release}"));
        }
        Ok(Products {
            release: purls,
            distro: format!("{dist}-{line}"),
        })
    }

    fn subcomponent(&self, package: &str, version: &str) -> String {
        format!("pkg:cargo/{package}@{version}?distro={}", self.distro)
    }
}

/// `pkg:oci/NAME@sha256%3AHEX?repository_url=REPOSITORY` of `REPOSITORY@sha256:HEX`.
pub fn oci_purl(image: &str) -> Result<String, PatchError> {
    let bad = || {
        PatchError::invalid(
            format!("image `{image}` is not REPOSITORY@sha256:HEX"),
            "pass the pushed image by digest, e.g. 127.0.0.1:5000/fips-mesh/mesh-proxy@sha256:<64 hex>",
        )
    };
    let (repo, digest) = image.rsplit_once('@').ok_or_else(bad)?;
    let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || repo.is_empty() {
        return Err(bad());
    }
    let name = repo.rsplit('/').next().unwrap_or(repo).to_ascii_lowercase();
    Ok(format!(
        "pkg:oci/{name}@sha256%3A{}?repository_url={}",
        hex.to_ascii_lowercase(),
        repo.to_ascii_lowercase()
    ))
}

fn statement(e: &Evaluation, products: &Products) -> Statement {
    let sub = match (&e.package, e.shipped.as_ref().or(e.version.as_ref())) {
        (Some(p), Some(v)) => vec![Subcomponent {
            id: products.subcomponent(p, v),
        }],
        _ => Vec::new(),
    };
    let mut aliases: Vec<String> = Vec::new();
    for a in &e.aliases {
        if !a.eq_ignore_ascii_case(&e.advisory)
            && !aliases.iter().any(|x| x.eq_ignore_ascii_case(a))
        {
            aliases.push(a.clone());
        }
    }
    Statement {
        vulnerability: Vulnerability {
            name: e.advisory.clone(),
            aliases,
            description: e.title.clone(),
        },
        products: products
            .release
            .iter()
            .map(|p| Product {
                id: p.clone(),
                subcomponents: sub.clone(),
            })
            .collect(),
        status: e.status.as_str().into(),
        status_notes: (e.status != Status::NotAffected).then(|| e.notes.clone()),
        justification: e.justification.clone(),
        impact_statement: (e.status == Status::NotAffected).then(|| e.notes.clone()),
        action_statement: e.action.clone(),
    }
}

/// The OpenVEX document of a line's release, or None when there is nothing to state (no
/// advisory concerns the line and none of its crates has an advisory to check).
///
/// When no advisory concerns the line, the document states `not_affected` for every advisory
/// checked against the line's crates (the schema requires at least one statement).
pub fn document(
    eval: &LineEvaluation,
    products: &Products,
    author: &str,
    timestamp: DateTime<Utc>,
) -> Option<Document> {
    let source = if eval.advisories.is_empty() {
        &eval.checked
    } else {
        &eval.advisories
    };
    let mut statements: Vec<Statement> = Vec::new();
    for e in source {
        let st = statement(e, products);
        if !statements.contains(&st) {
            statements.push(st);
        }
    }
    if statements.is_empty() {
        return None;
    }
    let ts = timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = serde_json::to_vec(&statements).unwrap_or_default();
    let id = format!(
        "https://openvex.dev/docs/public/vex-{}",
        distro_hostio::sha256_hex(&[eval.line.as_bytes(), &body].concat())
    );
    Some(Document {
        context: CONTEXT.into(),
        id,
        author: author.into(),
        role: "Distributor".into(),
        timestamp: ts,
        version: 1,
        tooling: format!("distro-patches {}", env!("CARGO_PKG_VERSION")),
        statements,
    })
}

fn validator() -> Result<&'static jsonschema::Validator, PatchError> {
    static V: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    V.get_or_init(|| {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA)
            .map_err(|e| format!("vendored openvex_json_schema.json: {e}"))?;
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| format!("compiling the vendored OpenVEX schema: {e}"))
    })
    .as_ref()
    .map_err(|e| {
        PatchError::invalid(
            e.clone(),
            "report this as a bug: the vendored schema is broken",
        )
    })
}

/// Checks an OpenVEX document against the official schema; the error lists every violation.
pub fn validate(doc: &serde_json::Value, subject: &str) -> Result<(), PatchError> {
    let v = validator()?;
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("  at {}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PatchError::invalid(
            format!(
                "{subject}: not valid against the OpenVEX 0.2.0 JSON schema:\n{}",
                errors.join("\n")
            ),
            "report this as a bug; nothing was written",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    /// The vendored schema rejects a document without statements (what scanners refuse) and
    /// accepts one with a not_affected statement and distro-qualified purls.
    #[test]
    fn schema_rejects_empty_statements() {
        let mut doc = serde_json::json!({
            "@context": CONTEXT, "@id": "https://openvex.dev/docs/public/vex-1",
            "author": "a", "timestamp": "2026-11-28T00:00:00Z", "version": 1, "statements": []
        });
        let e = validate(&doc, "x.json").unwrap_err().to_string();
        assert!(e.contains("/statements"), "{e}");
        doc["statements"] = serde_json::json!([{
            "vulnerability": {"name": "RUSTSEC-2026-0001"},
            "products": [{"@id": "pkg:generic/demo@0.1.0", "subcomponents": [{"@id": "pkg:cargo/x@1.0.0?distro=demo-0.1"}]}],
            "status": "not_affected", "justification": "vulnerable_code_not_present"
        }]);
        validate(&doc, "x.json").unwrap();
        doc["statements"][0]["status"] = "affected".into();
        assert!(
            validate(&doc, "x.json").is_err(),
            "affected needs an action_statement"
        );
    }

    /// Image references by digest become OCI purls; anything else is refused.
    #[test]
    fn oci_purls_from_digests() {
        let hex = "ab".repeat(32);
        assert_eq!(
            oci_purl(&format!("127.0.0.1:5000/fips-mesh/mesh-proxy@sha256:{hex}")).unwrap(),
            format!("pkg:oci/mesh-proxy@sha256%3A{hex}?repository_url=127.0.0.1:5000/fips-mesh/mesh-proxy")
        );
        assert!(oci_purl("127.0.0.1:5000/x:latest").is_err());
    }
}
