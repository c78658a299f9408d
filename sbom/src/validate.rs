//! Validation of every generated document against its official JSON Schema, before it is written.
//!
//! The CycloneDX 1.6 schema and the two schemas it references (`spdx.schema.json`,
//! `jsf-0.82.schema.json`) are vendored in `sbom/schema/` (from the `cyclonedx-python-lib`
//! distribution, with its `SNAPSHOT` file names mapped back to the official ones) and compiled
//! once; no schema is fetched over the network.

use std::sync::OnceLock;

use jsonschema::{Registry, Validator};
use serde_json::Value;

use crate::SbomError;

const BOM_1_6: &str = include_str!("../schema/bom-1.6.schema.json");
const SPDX_LICENSES: &str = include_str!("../schema/spdx.schema.json");
const JSF: &str = include_str!("../schema/jsf-0.82.schema.json");

/// Name of the schema CycloneDX documents are checked against.
pub const CYCLONEDX_SCHEMA: &str = "CycloneDX 1.6 JSON schema (bom-1.6.schema.json)";

fn compile() -> Result<Validator, String> {
    let parse = |name: &str, text: &str| {
        serde_json::from_str::<Value>(text).map_err(|e| format!("vendored {name}: {e}"))
    };
    let bom = parse("bom-1.6.schema.json", BOM_1_6)?;
    let spdx = parse("spdx.schema.json", SPDX_LICENSES)?;
    let jsf = parse("jsf-0.82.schema.json", JSF)?;
    let registry = Registry::new()
        .add("http://cyclonedx.org/schema/spdx.schema.json", spdx)
        .and_then(|r| r.add("http://cyclonedx.org/schema/jsf-0.82.schema.json", jsf))
        .and_then(|r| r.prepare())
        .map_err(|e| format!("registering the vendored schemas: {e}"))?;
    jsonschema::options()
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(&bom)
        .map_err(|e| format!("compiling the vendored CycloneDX schema: {e}"))
}

fn validator() -> Result<&'static Validator, SbomError> {
    static V: OnceLock<Result<Validator, String>> = OnceLock::new();
    V.get_or_init(compile)
        .as_ref()
        .map_err(|e| SbomError::Policy(e.clone()))
}

/// Checks a CycloneDX document against the 1.6 schema; the error lists every violation.
pub fn cyclonedx(doc: &Value, subject: &str) -> Result<(), SbomError> {
    let v = validator()?;
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("  at {}: {}", e.instance_path(), e))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SbomError::Invalid {
            format: "CycloneDX 1.6",
            subject: subject.to_string(),
            schema: CYCLONEDX_SCHEMA,
            errors: errors.join("\n"),
        })
    }
}

/// Checks the bytes of a CycloneDX JSON file.
pub fn cyclonedx_bytes(bytes: &[u8], subject: &str) -> Result<(), SbomError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| SbomError::Parse {
        what: "CycloneDX JSON",
        origin: subject.to_string(),
        detail: e.to_string(),
    })?;
    cyclonedx(&doc, subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document the schema refuses is an error naming the offending field, not output.
    #[test]
    fn invalid_document_is_refused() {
        let doc = serde_json::json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "serialNumber": "urn:uuid:not-a-uuid",
            "components": [{"type": "bogus", "name": "x"}]
        });
        let err = cyclonedx(&doc, "test")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/serialNumber"), "{err}");
        assert!(err.contains("/components/0/type"), "{err}");
    }

    /// A minimal valid document passes (the vendored schemas and their references load).
    #[test]
    fn minimal_document_passes() {
        let doc = serde_json::json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "components": [{"type": "library", "name": "x", "licenses": [{"license": {"id": "MIT"}}]}]
        });
        assert!(cyclonedx(&doc, "test").is_ok());
    }
}
