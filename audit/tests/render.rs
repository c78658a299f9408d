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

fn fips_facts(sunset: Option<&str>) -> FipsFacts {
    FipsFacts {
        mode: true,
        module_version: "AWS-LC FIPS 3.0.0".into(),
        module_crate: "aws-lc-fips-sys 0.13.17".into(),
        validation: distro_schema::ModuleValidation {
            module_name: "AWS-LC Cryptographic Module (static)".into(),
            module_version: "AWS-LC FIPS 3.x".into(),
            standard: "FIPS 140-3".into(),
            status: distro_schema::CmvpStatus::Validated,
            certificate: Some(5314),
            certificate_url: Some(distro_schema::cmvp_certificate_url(5314)),
            security_policy_url: Some(distro_schema::cmvp_security_policy_url(5314)),
            sunset_date: sunset.map(str::to_string),
            tested_operational_environment: "unconfirmed: see the security policy".into(),
            scope: distro_schema::MODULE_NOT_PRODUCT.into(),
            sources: vec![distro_schema::FactSource {
                fact: "sunset date".into(),
                source: "the certificate page".into(),
            }],
        },
        validation_attested: true,
        binary: "mesh-proxy".into(),
        binary_sha256: "ab".repeat(32),
        fips_module_symbols: 1200,
        fips_module_prefix: Some("aws_lc_fips_0_13_17_".into()),
        total_symbols: 50_000,
        forbidden_crypto: Vec::new(),
        self_tests_passed: Some(true),
        enforcement: vec!["refuses to start unless FIPS mode is on".into()],
        tls_configs: vec![distro_schema::TlsConfigReport {
            name: "inbound".into(),
            role: "server".into(),
            fips: true,
            protocol_versions: vec!["TLSv1_3".into()],
            cipher_suites: vec!["TLS13_AES_256_GCM_SHA384".into()],
            kx_groups: vec!["secp384r1".into()],
        }],
        failures: Vec::new(),
    }
}

/// A report with every optional section filled (SBOM, FIPS, advisories, provenance with a
/// patch, conformance, an unverified attestation) renders in every format: the templates run
/// in strict mode, so a field they name that the report lacks is an error here.
#[test]
fn every_section_renders() {
    let mut r = report(false);
    let i = &mut r.images[0];
    i.sbom = Some(SbomInfo {
        format: "CycloneDX 1.6".into(),
        serial_number: Some("urn:uuid:1".into()),
        describes: Some("mesh-proxy 0.1.0".into()),
    });
    i.fips = Some(fips_facts(None));
    i.advisories = vec![Advisory {
        line: Some("0.1".into()),
        id: "RUSTSEC-2024-0336".into(),
        aliases: vec!["CVE-2024-32650".into()],
        status: "fixed".into(),
        justification: None,
        statement: Some("patched".into()),
        products: vec!["pkg:cargo/rustls@0.23.5".into()],
    }];
    i.provenance = Some(ProvenanceFacts {
        build_type: "https://slsa.dev".into(),
        builder: "distro".into(),
        source_repository: Some("https://example.org/repo".into()),
        source_ref: Some("v0.1".into()),
        source_commit: Some("ab".repeat(20)),
        cargo_lock_sha256: Some("cd".repeat(32)),
        features: vec!["fips".into()],
        patches: vec![PatchFacts {
            name: "0001-fix.patch".into(),
            sha256: Some("ef".repeat(32)),
            origin: Some("backport, https://example.org/commit/1".into()),
            advisories: vec!["RUSTSEC-2024-0336".into()],
        }],
        toolchain: [("rustc".to_string(), "1.95.0".to_string())].into(),
        host: Some("x86_64-unknown-linux-gnu".into()),
    });
    i.conformance = Some(Conformance {
        result: "PASSED".into(),
        url: Some("conformance/summary.json".into()),
        configuration: vec!["flat".into()],
        passed: vec!["flat/mtls".into()],
        warned: Vec::new(),
        failed: Vec::new(),
    });
    i.unverified_attestations = vec!["https://example.org/predicate".into()];
    i.verification.attestations = vec![AttestationCheck {
        predicate_type: "https://slsa.dev/provenance/v1".into(),
        layer_digest: "sha256:11".into(),
        verified: true,
        problem: None,
    }];
    for format in [
        ReportFormat::Html,
        ReportFormat::Markdown,
        ReportFormat::Json,
    ] {
        let text = render(&r, format).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        for want in [
            "RUSTSEC-2024-0336",
            "0001-fix.patch",
            "PASSED",
            "CycloneDX 1.6",
        ] {
            assert!(text.contains(want), "{format:?}: {want} missing:\n{text}");
        }
    }
}

/// The FIPS section renders the attested validation in HTML and Markdown (module, standard,
/// status, certificate with its link, security policy, sunset date or "unconfirmed" when the
/// evidence has none, fact sources, negotiated suites), and JSON carries it as the schema's
/// `ModuleValidation` (a sunset date that could not be confirmed is `null`, not a word).
#[test]
fn fips_validation_renders_in_every_format() {
    for sunset in [None, Some("2030-09-21")] {
        let mut r = report(false);
        r.images[0].fips = Some(fips_facts(sunset));
        let shown = sunset.unwrap_or("unconfirmed");
        let html = render(&r, ReportFormat::Html).unwrap();
        let md = render(&r, ReportFormat::Markdown).unwrap();
        // minijinja's HTML escaping writes `/` as `&#x2f;` (valid in attributes and text).
        let html = html.replace("&#x2f;", "/");
        // The Markdown escapes `_` (it would start emphasis).
        let md = md.replace("\\_", "_");
        for text in [&html, &md] {
            for want in [
                "AWS-LC Cryptographic Module (static)",
                "FIPS 140-3",
                "validated",
                "#5314",
                &distro_schema::cmvp_certificate_url(5314),
                &distro_schema::cmvp_security_policy_url(5314),
                shown,
                "the certificate page",
                "TLS13_AES_256_GCM_SHA384",
                "aws-lc-fips-sys 0.13.17",
            ] {
                assert!(text.contains(want), "{want} missing:\n{text}");
            }
        }
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, ReportFormat::Json).unwrap()).unwrap();
        let v = &json["images"][0]["fips"]["validation"];
        assert_eq!(v["certificate"], 5314);
        assert_eq!(v["status"], "validated");
        match sunset {
            None => assert!(v["sunset_date"].is_null(), "{v}"),
            Some(d) => assert_eq!(v["sunset_date"], d),
        }
    }
}
