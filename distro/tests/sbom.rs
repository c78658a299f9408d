//! `distro sbom` end to end: a real fixture workspace is built with cargo, its binary gets an
//! embedded dependency list, and the SBOMs are checked for exact scope, reproducibility and
//! validity with independent tools (cyclonedx-python-lib, spdx-tools, objcopy + Python zlib,
//! rust-audit-info when installed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distro_testsupport::bin::{assert_ok as ok, Bin};
use distro_testsupport::sha256_file;
use serde_json::Value;

const EPOCH: &str = "1764288000";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn distro(args: &[&str]) -> Output {
    Bin::new(env!("CARGO_BIN_EXE_distro"))
        .env_remove("SOURCE_DATE_EPOCH")
        .run(args)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "target" {
                copy_dir(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The fixture workspace copied to a temp dir and `app-bin` built in it (with `--features extra`
/// when `extra`).
struct Fixture {
    _tmp: tempfile::TempDir,
    ws: PathBuf,
    bin: PathBuf,
}

impl Fixture {
    /// `distro sbom --binary BIN --manifest-dir WS --package app EXTRA... --source-date-epoch
    /// EPOCH` for the fixture's binary.
    fn sbom(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "sbom",
            "--binary",
            self.bin.to_str().unwrap(),
            "--manifest-dir",
            self.ws.to_str().unwrap(),
            "--package",
            "app",
        ];
        args.extend_from_slice(extra);
        args.extend(["--source-date-epoch", EPOCH]);
        distro(&args)
    }
}

fn build_fixture(extra: bool) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("scope");
    copy_dir(&repo().join("sbom/tests/data/scope"), &ws);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ws)
        .args(["build", "--offline", "--locked", "-q", "-p", "app"])
        .env("CARGO_TARGET_DIR", tmp.path().join("target"));
    if extra {
        cmd.args(["--features", "extra"]);
    }
    ok(&cmd.output().unwrap(), "building the fixture");
    let bin = tmp.path().join("target/debug/app-bin");
    assert!(bin.is_file());
    Fixture { _tmp: tmp, ws, bin }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn component_names(bom: &Value) -> BTreeSet<String> {
    bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn component<'a>(bom: &'a Value, name: &str) -> &'a Value {
    bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

/// Validates with cyclonedx-python-lib's strict 1.6 validator (independent of the Rust one).
fn python_cyclonedx_valid(path: &Path) {
    if !distro_testsupport::require_python(
        "independent CycloneDX validation",
        "cyclonedx.validation.json",
        "pip install 'cyclonedx-python-lib[json-validation]' (scripts/install-deps.sh)",
    ) {
        return;
    }
    let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\ne = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nif e is not None:\n    print(e)\n    sys.exit(1)\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    ok(
        &out,
        &format!("cyclonedx-python-lib validation of {}", path.display()),
    );
}

/// Validates with spdx-tools (`pyspdxtools -i`), which parses and checks the whole document.
fn python_spdx_valid(path: &Path) {
    match Command::new("pyspdxtools").arg("-i").arg(path).output() {
        Ok(out) => {
            ok(
                &out,
                &format!("pyspdxtools validation of {}", path.display()),
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(!text.to_lowercase().contains("invalid"), "{text}");
        }
        Err(_) => {
            distro_testsupport::require(
                "independent SPDX validation",
                "pyspdxtools",
                "pip install spdx-tools (scripts/install-deps.sh)",
            );
        }
    }
}

/// The `.dep-v0` list as read by objcopy and Python's zlib, not by our code.
fn section_by_objcopy(bin: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("sec");
    let junk = dir.path().join("junk");
    let out = Command::new("objcopy")
        .arg(format!("--dump-section=.dep-v0={}", raw.display()))
        .arg(bin)
        .arg(&junk)
        .output()
        .unwrap();
    ok(&out, "objcopy --dump-section");
    let out = Command::new("python3")
        .args(["-c", "import sys,zlib;sys.stdout.write(zlib.decompress(open(sys.argv[1],'rb').read()).decode())"])
        .arg(&raw)
        .output()
        .unwrap();
    ok(&out, "zlib decompress");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `distro sbom --binary` of the fixture's `app-bin` (features `extra`, embedding the
/// dependency list): the CycloneDX and SPDX documents written into `dir`.
struct Documented {
    fx: Fixture,
    dir: tempfile::TempDir,
    cdx: PathBuf,
    spdx: PathBuf,
}

impl Documented {
    fn new() -> Documented {
        let fx = build_fixture(true);
        let dir = tempfile::tempdir().unwrap();
        let (cdx, spdx) = (
            dir.path().join("app.cdx.json"),
            dir.path().join("app.spdx.json"),
        );
        let d = Documented { fx, dir, cdx, spdx };
        d.run(&d.cdx, &d.spdx, "distro sbom");
        d
    }

    /// `distro sbom --binary ... --features extra --embed -o CDX --spdx-out SPDX`, asserted to
    /// succeed.
    fn run(&self, cdx: &Path, spdx: &Path, what: &str) {
        let (o, s) = (cdx.display().to_string(), spdx.display().to_string());
        ok(
            &self
                .fx
                .sbom(&["--features", "extra", "--embed", "-o", &o, "--spdx-out", &s]),
            what,
        );
    }
}

/// The SBOM of one binary lists exactly the crates of that binary (feature-enabled optional and
/// build dependencies; no dev-dependencies, no other workspace members' dependencies), with
/// licences, lockfile hashes, scopes, the binary's own hash, and the binary's direct
/// dependencies in the graph.
#[test]
fn sbom_has_exact_per_binary_scope() {
    let d = Documented::new();
    let bom = read_json(&d.cdx);
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(
        component_names(&bom),
        ["build-helper", "cfg-if", "helper-opt"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    let meta = &bom["metadata"];
    assert_eq!(meta["component"]["name"], "app-bin");
    assert_eq!(meta["component"]["version"], "0.3.1");
    assert_eq!(
        meta["component"]["hashes"][0]["content"],
        sha256_file(&d.fx.bin)
    );
    assert_eq!(
        meta["component"]["licenses"][0]["expression"],
        "MIT OR Apache-2.0"
    );
    assert_eq!(meta["timestamp"], "2025-11-28T00:00:00Z");
    assert_eq!(meta["tools"]["components"][0]["name"], "distro");

    let cfg_if = component(&bom, "cfg-if");
    assert_eq!(cfg_if["purl"], "pkg:cargo/cfg-if@1.0.4");
    assert_eq!(cfg_if["scope"], "required");
    assert_eq!(cfg_if["hashes"][0]["alg"], "SHA-256");
    assert_eq!(
        cfg_if["hashes"][0]["content"],
        "9330f8b2ff13f34540b44e946ef35111825727b38d33286ef986142615121801"
    );
    assert_eq!(cfg_if["licenses"][0]["expression"], "MIT OR Apache-2.0");
    assert_eq!(component(&bom, "build-helper")["scope"], "excluded");
    assert_eq!(component(&bom, "helper-opt")["scope"], "required");

    let deps = bom["dependencies"].as_array().unwrap();
    let root = deps
        .iter()
        .find(|d| d["ref"] == "pkg:cargo/app@0.3.1")
        .unwrap();
    let direct: BTreeSet<&str> = root["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        direct,
        [
            "pkg:cargo/build-helper@0.1.0",
            "pkg:cargo/cfg-if@1.0.4",
            "pkg:cargo/helper-opt@0.1.0"
        ]
        .into_iter()
        .collect()
    );
}

/// Both documents validate with the official Python libraries (cyclonedx-python-lib, the SPDX
/// tools), and the SPDX document is SPDX-2.3 with DESCRIBES and DEPENDS_ON relationships.
#[test]
fn sbom_documents_validate_with_independent_tools() {
    let d = Documented::new();
    python_cyclonedx_valid(&d.cdx);
    python_spdx_valid(&d.spdx);
    let sp = read_json(&d.spdx);
    assert_eq!(sp["spdxVersion"], "SPDX-2.3");
    assert_eq!(sp["dataLicense"], "CC0-1.0");
    let rels = sp["relationships"].as_array().unwrap();
    assert!(rels.iter().any(|r| r["relationshipType"] == "DESCRIBES"));
    assert!(rels.iter().any(|r| r["relationshipType"] == "DEPENDS_ON"));
}

/// A second run over the (already embedded) binary writes byte-identical documents.
#[test]
fn sbom_is_reproducible() {
    let d = Documented::new();
    let (cdx2, spdx2) = (
        d.dir.path().join("again.cdx.json"),
        d.dir.path().join("again.spdx.json"),
    );
    d.run(&cdx2, &spdx2, "second distro sbom");
    assert_eq!(
        std::fs::read(&d.cdx).unwrap(),
        std::fs::read(&cdx2).unwrap()
    );
    assert_eq!(
        std::fs::read(&d.spdx).unwrap(),
        std::fs::read(&spdx2).unwrap()
    );
}

/// `--embed` writes the dependency list into the binary: read without the product's code (by
/// objcopy) it names the root package as local, the build dependency as such and crates.io
/// sources, and rust-audit-info reads the same list.
#[test]
fn embedded_dependency_list_is_read_by_objcopy_and_rust_audit_info() {
    let d = Documented::new();
    let list = section_by_objcopy(&d.fx.bin);
    let pk = list["packages"].as_array().unwrap();
    let names: BTreeSet<&str> = pk.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["app", "build-helper", "cfg-if", "helper-opt"]
            .into_iter()
            .collect()
    );
    let app = pk.iter().find(|p| p["name"] == "app").unwrap();
    assert_eq!(app["root"], true);
    assert_eq!(app["source"], "local");
    assert_eq!(
        pk.iter().find(|p| p["name"] == "build-helper").unwrap()["kind"],
        "build"
    );
    assert_eq!(
        pk.iter().find(|p| p["name"] == "cfg-if").unwrap()["source"],
        "crates.io"
    );
    match Command::new("rust-audit-info").arg(&d.fx.bin).output() {
        Ok(out) => {
            ok(&out, "rust-audit-info");
            let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(theirs, list, "rust-audit-info reads the same list");
        }
        Err(_) => {
            distro_testsupport::require(
                "embedded_dependency_list_is_read_by_objcopy_and_rust_audit_info",
                "rust-audit-info",
                "cargo install rust-audit-info --locked --version 0.5.4 (scripts/install-deps.sh)",
            );
        }
    }
}

/// Without the feature, the optional dependency is not in the binary and not in its SBOM.
#[test]
fn sbom_follows_the_binary_features() {
    let fx = build_fixture(false);
    let out = fx.sbom(&[]);
    ok(&out, "distro sbom without features");
    let bom: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        component_names(&bom),
        ["build-helper", "cfg-if"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
}

/// `--from-binary` recovers a valid CycloneDX SBOM with the same crates from the embedded list
/// alone, and a binary without the list is refused with a reason.
#[test]
fn from_binary_recovers_the_sbom() {
    let fx = build_fixture(true);
    let dir = tempfile::tempdir().unwrap();
    let embedded = dir.path().join("embedded.json");
    ok(
        &fx.sbom(&[
            "--features",
            "extra",
            "--embed",
            "-o",
            embedded.to_str().unwrap(),
        ]),
        "embed",
    );
    // Moved elsewhere, with no source tree or side file next to it.
    let shipped = dir.path().join("shipped-app");
    std::fs::copy(&fx.bin, &shipped).unwrap();
    drop(fx);
    let recovered = dir.path().join("recovered.json");
    let spdx = dir.path().join("recovered.spdx.json");
    ok(
        &distro(&[
            "sbom",
            "--from-binary",
            shipped.to_str().unwrap(),
            "--bin",
            "app-bin",
            "-o",
            recovered.to_str().unwrap(),
            "--spdx-out",
            spdx.to_str().unwrap(),
            "--source-date-epoch",
            EPOCH,
        ]),
        "distro sbom --from-binary",
    );
    let (a, b) = (read_json(&embedded), read_json(&recovered));
    let purls = |bom: &Value| -> BTreeSet<String> {
        bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["purl"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(purls(&a), purls(&b));
    assert_eq!(
        a["metadata"]["component"]["hashes"],
        b["metadata"]["component"]["hashes"]
    );
    assert_eq!(component(&b, "build-helper")["scope"], "excluded");
    python_cyclonedx_valid(&recovered);
    python_spdx_valid(&spdx);

    let plain = dir.path().join("plain");
    std::fs::copy("/bin/true", &plain).unwrap();
    let out = distro(&["sbom", "--from-binary", plain.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".dep-v0") && err.contains("help:"), "{err}");
}

fn evidence_json(sha: &str, certified: bool) -> Value {
    serde_json::json!({
        "schema_version": "1",
        "component": "app",
        "binary": "app-bin",
        "binary_sha256": sha,
        "mode": true,
        "module": {
            "crate_name": "cfg-if",
            "crate_version": "1.0.4",
            "module_name": "AWS-LC Cryptographic Module",
            "module_line": "3.x",
            "version_in_binary": "AWS-LC FIPS 3.6.0",
            "cmvp_certificate": if certified { serde_json::json!(5314) } else { Value::Null },
            "cmvp_status": if certified { "validated" } else { "in-process" },
            "source": "build/src/fips/module.rs"
        },
        "symbols": {
            "total_symbols": 10, "fips_module_symbols": 5, "fips_module_prefix": "aws_lc_fips_0_13_17_",
            "needed_libraries": ["libc.so.6"], "forbidden": []
        },
        "self_check": {
            "component": "app", "component_version": "0.3.1", "fips_build": true,
            "module_version_string": "AWS-LC FIPS 3.6.0", "fips_mode": true, "self_tests_passed": true,
            "provider_fips": true,
            "tls_configs": [{
                "name": "inbound", "role": "server", "fips": true,
                "protocol_versions": ["TLSv1_3", "TLSv1_2"],
                "cipher_suites": ["TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256",
                                  "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
                "kx_groups": ["secp256r1", "secp384r1"]
            }]
        },
        "failures": []
    })
}

/// With the build's FIPS evidence, the SBOM carries the AWS-LC FIPS module (version, CMVP
/// certificate and status, link to the certificate) and the algorithms and TLS protocols it
/// provides, marked fips140-3-l1 only when the module is validated; the document validates.
#[test]
fn fips_module_and_crypto_assets_from_evidence() {
    let fx = build_fixture(true);
    let dir = tempfile::tempdir().unwrap();
    for certified in [true, false] {
        let ev = dir.path().join(format!("ev-{certified}.json"));
        std::fs::write(
            &ev,
            serde_json::to_vec(&evidence_json(&sha256_file(&fx.bin), certified)).unwrap(),
        )
        .unwrap();
        let cdx = dir.path().join(format!("cdx-{certified}.json"));
        ok(
            &fx.sbom(&[
                "--features",
                "extra",
                "--evidence",
                ev.to_str().unwrap(),
                "-o",
                cdx.to_str().unwrap(),
            ]),
            "distro sbom --evidence",
        );
        python_cyclonedx_valid(&cdx);
        let bom = read_json(&cdx);
        let module = component(&bom, "AWS-LC FIPS module");
        assert_eq!(module["type"], "library");
        assert_eq!(module["version"], "3.6.0");
        let prop = |n: &str| {
            module["properties"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == n)
                .map(|p| p["value"].clone())
        };
        assert_eq!(
            prop("distro:fips:cmvp-status").unwrap(),
            if certified { "validated" } else { "in-process" }
        );
        if certified {
            assert_eq!(prop("distro:fips:cmvp-certificate").unwrap(), "5314");
            assert!(module["externalReferences"][0]["url"]
                .as_str()
                .unwrap()
                .ends_with("/certificate/5314"));
        } else {
            assert!(prop("distro:fips:cmvp-certificate").is_none());
        }
        let assets: Vec<&Value> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["type"] == "cryptographic-asset")
            .collect();
        let names: BTreeSet<&str> = assets.iter().map(|c| c["name"].as_str().unwrap()).collect();
        for want in [
            "AES-128-GCM",
            "AES-256-GCM",
            "ECDSA-P256-SHA256",
            "ECDH-P256",
            "ECDH-P384",
            "SHA-256",
            "SHA-384",
            "HMAC-SHA-256",
            "TLS 1.3",
            "TLS 1.2",
        ] {
            assert!(names.contains(want), "{want} missing from {names:?}");
        }
        assert!(!names.contains("X25519"), "X25519 is not negotiated");
        let aes = assets.iter().find(|c| c["name"] == "AES-256-GCM").unwrap();
        assert_eq!(aes["cryptoProperties"]["assetType"], "algorithm");
        assert_eq!(
            aes["cryptoProperties"]["algorithmProperties"]["certificationLevel"][0],
            if certified { "fips140-3-l1" } else { "none" }
        );
        let tls13 = assets.iter().find(|c| c["name"] == "TLS 1.3").unwrap();
        let suites: Vec<&str> = tls13["cryptoProperties"]["protocolProperties"]["cipherSuites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            suites,
            vec!["TLS13_AES_128_GCM_SHA256", "TLS13_AES_256_GCM_SHA384"]
        );
        // The module provides the assets; the crate that builds it depends on it.
        let deps = bom["dependencies"].as_array().unwrap();
        let m = deps
            .iter()
            .find(|d| d["ref"] == "crypto:module:aws-lc-fips")
            .unwrap();
        assert_eq!(m["provides"].as_array().unwrap().len(), assets.len());
        let carrier = deps
            .iter()
            .find(|d| d["ref"] == "pkg:cargo/cfg-if@1.0.4")
            .unwrap();
        assert!(carrier["dependsOn"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "crypto:module:aws-lc-fips"));
    }
}

/// Build-output mode: for every component in `OUT/<line>/build.json`, `distro sbom --spdx`
/// writes `OUT/<line>/sbom/<component>.cdx.json` and `.spdx.json` with the features from
/// distro.toml, the build's SOURCE_DATE_EPOCH and the component's FIPS evidence; the same
/// output directory gives the same bytes on a second run.
#[test]
fn build_output_mode_documents_every_component() {
    let fx = build_fixture(true);
    let tmp = tempfile::tempdir().unwrap();
    let line = tmp.path().join("out/0.1");
    copy_dir(&fx.ws, &line.join("src"));
    std::fs::create_dir_all(line.join("bin")).unwrap();
    std::fs::create_dir_all(line.join("evidence")).unwrap();
    let bin = line.join("bin/app-bin");
    std::fs::copy(&fx.bin, &bin).unwrap();
    // What `distro build` does after linking: embed the dependency list, then hash.
    ok(
        &distro(&[
            "sbom",
            "--binary",
            bin.to_str().unwrap(),
            "--manifest-dir",
            line.join("src").to_str().unwrap(),
            "--package",
            "app",
            "--features",
            "extra",
            "--embed",
            "-o",
            tmp.path().join("embed.json").to_str().unwrap(),
            "--source-date-epoch",
            EPOCH,
        ]),
        "embed",
    );
    let sha = sha256_file(&bin);
    let ev = line.join("evidence/app.fips.json");
    std::fs::write(&ev, serde_json::to_vec(&evidence_json(&sha, true)).unwrap()).unwrap();
    // The provenance the build record names (the line's release record names it by sha256).
    let prov = line.join("provenance/app.intoto.json");
    std::fs::create_dir_all(prov.parent().unwrap()).unwrap();
    std::fs::write(&prov, b"{\"_type\": \"https://in-toto.io/Statement/v1\"}\n").unwrap();
    let record = serde_json::json!({
        "schema_version": "1", "distribution": "fixture", "line": "0.1",
        "source": {"repository": "/x", "ref": "HEAD", "commit": "0000000", "source_date_epoch": 1700000000},
        "cargo_lock_sha256": "0", "patches": [],
        "components": [{
            "name": "app", "package": "app", "binary": bin.display().to_string(), "sha256": sha,
            "fips": {"mode": true, "module_version": "AWS-LC FIPS 3.6.0", "cmvp_certificate": 5314, "cmvp_status": "validated"},
            "evidence": ev.display().to_string(), "provenance": line.join("provenance/app.intoto.json").display().to_string()
        }]
    });
    std::fs::write(
        line.join("build.json"),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
    let cfg_dir = tmp.path().join("repo/distro");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let cfg = cfg_dir.join("distro.toml");
    std::fs::write(
        &cfg,
        "[distribution]\nname = \"fixture\"\ndescription = \"fixture\"\nvendor = \"tests\"\n\n[[component]]\nname = \"app\"\npackage = \"app\"\nbinary = \"app-bin\"\nfeatures = [\"extra\"]\nfips_required = true\ndescription = \"fixture\"\n\n[[line]]\nversion = \"0.1\"\nrelease_date = 2026-11-28\nsource = { git = \"..\", ref = \"HEAD\" }\n",
    )
    .unwrap();
    let out_dir = tmp.path().join("out");
    let run = || {
        let out = distro(&[
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "json",
            "sbom",
            "--out",
            out_dir.to_str().unwrap(),
            "--spdx",
        ]);
        ok(&out, "distro sbom (build output)");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("warning"), "{stderr}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let report = run();
    assert_eq!(report[0]["component"], "app");
    // The SBOMs are in the line's release record, by path and sha256.
    let rel: Value =
        serde_json::from_slice(&std::fs::read(line.join("release.json")).unwrap()).unwrap();
    assert_eq!(
        rel["components"][0]["sbom"]["sha256"],
        sha256_file(&line.join("sbom/app.cdx.json")),
        "{rel:#}"
    );
    assert_eq!(rel["state"], "built");
    let cdx = line.join("sbom/app.cdx.json");
    let spdx = line.join("sbom/app.spdx.json");
    assert_eq!(report[0]["cyclonedx"], cdx.display().to_string());
    let first = (std::fs::read(&cdx).unwrap(), std::fs::read(&spdx).unwrap());
    python_cyclonedx_valid(&cdx);
    python_spdx_valid(&spdx);
    let bom = read_json(&cdx);
    assert_eq!(bom["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    assert!(
        component_names(&bom).contains("helper-opt"),
        "features come from distro.toml"
    );
    assert_eq!(component(&bom, "AWS-LC FIPS module")["version"], "3.6.0");
    run();
    assert_eq!(
        first,
        (std::fs::read(&cdx).unwrap(), std::fs::read(&spdx).unwrap())
    );
}
