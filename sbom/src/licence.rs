//! Licences from Cargo manifests as SPDX expressions.
//!
//! Cargo's `license` field is meant to be an SPDX expression, but older crates use `/` for `OR`
//! (`MIT/Apache-2.0`) or imprecise names (`Apache 2.0`). Those are normalized; anything that
//! still does not parse is kept verbatim as a named licence, never silently dropped.

use crate::cyclonedx::{LicenseChoice, NamedLicense};

/// The SPDX expression for a manifest's `license`, or the reason it is not one.
pub fn normalize(raw: &str) -> Result<String, String> {
    let slashless = raw
        .split('/')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" OR ");
    if spdx::Expression::parse(&slashless).is_ok() {
        return Ok(slashless);
    }
    match spdx::Expression::canonicalize(raw) {
        Ok(Some(canonical)) if spdx::Expression::parse(&canonical).is_ok() => Ok(canonical),
        Ok(_) => Err(format!("`{raw}` is not a valid SPDX expression")),
        Err(e) => Err(format!("`{raw}` is not a valid SPDX expression: {e}")),
    }
}

/// The CycloneDX `licenses` for a manifest's `license`, and the raw text when it was not SPDX.
pub fn choice(raw: Option<&str>) -> (Vec<LicenseChoice>, Option<String>) {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => (Vec::new(), None),
        Some(raw) => match normalize(raw) {
            Ok(expression) => (vec![LicenseChoice::Expression { expression }], None),
            Err(_) => (
                vec![LicenseChoice::Named {
                    license: NamedLicense {
                        name: raw.to_string(),
                    },
                }],
                Some(raw.to_string()),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/` becomes `OR`, valid expressions pass through, garbage is refused.
    #[test]
    fn normalizes_cargo_licences() {
        assert_eq!(
            normalize("MIT/Apache-2.0").ok().as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert_eq!(
            normalize("(MIT OR Apache-2.0) AND Unicode-3.0")
                .ok()
                .as_deref(),
            Some("(MIT OR Apache-2.0) AND Unicode-3.0")
        );
        assert_eq!(
            normalize("Apache-2.0 WITH LLVM-exception").ok().as_deref(),
            Some("Apache-2.0 WITH LLVM-exception")
        );
        assert!(normalize("Some Custom Thing v7").is_err());
    }
}
