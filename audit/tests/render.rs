//! Rendering a report by hand: every format carries the facts, and text from an attestation
//! cannot inject markup into the HTML or structure into the Markdown.
#![allow(clippy::unwrap_used)]

use distro_audit::report::*;
use distro_audit::{render, ReportFormat};

fn report(unverified: bool) -> AuditReport {
    AuditReport {
        schema_version: REPORT_SCHEMA_VERSION.into(),
        generated_by: "distro-audit test".into(),
        subject: "127.0.0.1:5000/fips-mesh/mesh-proxy:0.1.0".into(),
        key: KeyInfo {
            path: "release.pub".into(),
            fingerprint: "ab12".into(),
            algorithm: "ECDSA P-256 SHA-256".into(),
        },
        verified: !unverified,
        unverified_override: unverified,
        summary: Summary {
            images: 1,
            components: 1,
            ..Summary::default()
        },
        images: vec![ImageAudit {
            image: "127.0.0.1:5000/fips-mesh/mesh-proxy:0.1.0".into(),
            digest: Some("sha256:00".into()),
            line: Some("0.1".into()),
            component: Some("mesh-proxy".into()),
            verification: Verification {
                passed: !unverified,
                key_fingerprint: "ab12".into(),
                checks: vec![CheckResult {
                    name: "signature".into(),
                    ok: !unverified,
                    detail: "checked".into(),
                }],
                attestations: Vec::new(),
            },
            components: vec![Component {
                name: "evil<script>alert(1)</script>|x".into(),
                version: Some("1.0".into()),
                licenses: vec!["MIT".into()],
                purl: Some("pkg:cargo/evil@1.0".into()),
                kind: Some("library".into()),
            }],
            sbom: None,
            fips: None,
            advisories: Vec::new(),
            provenance: None,
            conformance: None,
            unverified_attestations: Vec::new(),
        }],
    }
}

/// Attested text is escaped in HTML (no injected element) and in Markdown (no extra table
/// column), and the HTML has no scripts or remote assets.
#[test]
fn attested_text_cannot_inject_markup() {
    let html = render(&report(false), ReportFormat::Html).unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("evil&lt;script&gt;"), "{html}");
    assert!(!html.contains("<link") && !html.contains("src="));
    let md = render(&report(false), ReportFormat::Markdown).unwrap();
    let row = md.lines().find(|l| l.contains("evil")).unwrap();
    assert!(
        row.contains("evil&lt;script&gt;alert(1)&lt;/script&gt;\\|x"),
        "{row}"
    );
    assert_eq!(row.matches(" | ").count(), 4, "five cells: {row}");
}

/// An unverified report says so before anything else, in every format.
#[test]
fn unverified_report_says_so_first() {
    let r = report(true);
    let html = render(&r, ReportFormat::Html).unwrap();
    let body = html.split("<body>").nth(1).unwrap().trim_start();
    assert!(
        body.starts_with("<div class=\"banner bad\" id=\"unverified\">UNVERIFIED"),
        "{body}"
    );
    let md = render(&r, ReportFormat::Markdown).unwrap();
    assert!(md.trim_start().starts_with("> **🔴 UNVERIFIED:**"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&render(&r, ReportFormat::Json).unwrap()).unwrap();
    assert_eq!(json["unverified_override"], true);
    let verified = render(&report(false), ReportFormat::Html).unwrap();
    assert!(!verified.contains("UNVERIFIED"));
}
