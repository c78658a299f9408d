//! Shared harness of the image tests: run the real `distro` binary (through
//! `distro_testsupport::bin`), write a fixture build output, and the independent checks of
//! images and SBOMs. Debian's `docker-registry` on 127.0.0.1 (`TestRegistry`), the openssl CA
//! and the free port come from `distro_testsupport`, re-exported here.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Command;

// Re-exported for the test files that include this module; not every one uses each.
#[allow(unused_imports)]
pub use distro_testsupport::bin::{run, Bin};
#[allow(unused_imports)]
pub use distro_testsupport::pki::{openssl_ca, OpensslCa};
#[allow(unused_imports)]
pub use distro_testsupport::registry::{RegistryConfig, TestRegistry, TokenServer};
#[allow(unused_imports)]
pub use distro_testsupport::{free_port, sha256_file};
use serde_json::{json, Value};

/// SOURCE_DATE_EPOCH of the fixture build (2025-11-28T00:00:00Z).
pub const SDE: i64 = 1_764_288_000;

/// The real `distro` binary with a clean environment for the image subcommands.
pub fn distro_bin() -> Bin {
    Bin::new(env!("CARGO_BIN_EXE_distro"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("COSIGN_PASSWORD")
        .env_remove("DISTRO_REGISTRY_PASSWORD")
        .env_remove("DISTRO_REGISTRY_TOKEN")
        .env_remove("DISTRO_REGISTRY_USERNAME")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
}

/// A `distro` command with a clean environment for the image subcommands.
pub fn distro() -> Command {
    distro_bin().cmd()
}

/// Runs `distro ARGS`, asserting success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    distro_bin().ok(args)
}

/// Runs `distro ARGS`, asserting failure; returns stdout + stderr.
pub fn fails(args: &[&str]) -> String {
    distro_bin().fails(args)
}

/// `distro ARGS --format json`, asserting success.
pub fn json_of(args: &[&str]) -> Value {
    distro_bin().json(args)
}

/// `distro keygen` into `dir/{name}.key` and `dir/{name}.pub` (creating `dir`); returns
/// (private key, public key).
pub fn keygen_named(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (k, p) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    ok(&[
        "keygen",
        "--private",
        k.to_str().unwrap(),
        "--public",
        p.to_str().unwrap(),
    ]);
    (k, p)
}

/// `distro keygen` into `dir/release.key` and `dir/release.pub`.
pub fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    keygen_named(dir, "release")
}

/// [`keygen`], the paths as strings (for argument lists).
pub fn keygen_strings(dir: &Path) -> (String, String) {
    let (k, p) = keygen(dir);
    (
        k.to_string_lossy().into_owned(),
        p.to_string_lossy().into_owned(),
    )
}

/// `distro verify ARGS --format json`, whatever its exit status: (exit ok, report). The exit
/// status must agree with the report's `passed`.
pub fn verify_json(args: &[&str]) -> (bool, Value) {
    let mut a = vec!["verify"];
    a.extend_from_slice(args);
    a.extend(["--format", "json"]);
    let out = run(distro().args(&a));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.success(),
        report["passed"] == true,
        "exit status agrees with the report: {report}"
    );
    (out.status.success(), report)
}

/// The check `name` of a `distro verify` JSON report (panics naming it when absent).
pub fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {report}"))
}

/// Requires `tool` on PATH: a failure naming the install step under CI, a loud SKIP elsewhere.
pub fn have(tool: &str, test: &str) -> bool {
    distro_testsupport::require_tool(test, tool)
}

/// Requires a Python module: a failure naming the pip step under CI, a loud SKIP elsewhere.
pub fn have_python(module: &str, test: &str) -> bool {
    distro_testsupport::require_python(
        test,
        module,
        &distro_testsupport::python_install_step(module),
    )
}

/// `skopeo ARGS` (an independent reader of images), asserting success with its output in the
/// message; the caller has checked for skopeo with [`have`].
pub fn skopeo(args: &[&str]) -> std::process::Output {
    distro_testsupport::bin::ok(Command::new("skopeo").args(args))
}

/// [`skopeo`], stdout parsed as JSON (`inspect`, `inspect --raw`, `list-tags`).
pub fn skopeo_json(args: &[&str]) -> Value {
    let out = skopeo(args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "skopeo {} printed no JSON ({e}): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A fixture build output: `OUT/0.1/{build.json,bin,evidence,provenance,sbom,vex}` for one or
/// two components with fake binaries, FIPS evidence about them, provenance, an SBOM each and
/// the line's VEX, and the line's release record `release.json` naming every document by path
/// and sha256 (what `distro attest --build-dir` reads).
pub struct Fixture {
    /// The output directory (`OUT`).
    pub out: PathBuf,
    /// `OUT/0.1`.
    pub line_dir: PathBuf,
    /// The components, in order.
    pub components: Vec<String>,
}

impl Fixture {
    /// Writes the fixture under `root`; `binary_size` bytes of deterministic content per binary.
    pub fn write(root: &Path, components: &[&str], binary_size: usize) -> Fixture {
        let out = root.join("out");
        let line_dir = out.join("0.1");
        for d in ["bin", "evidence", "provenance", "sbom"] {
            std::fs::create_dir_all(line_dir.join(d)).unwrap();
        }
        let mut records = Vec::new();
        for (i, c) in components.iter().enumerate() {
            // Deterministic pseudo-random content (an LCG), so compression has real work to do.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1);
            let data: Vec<u8> = (0..binary_size)
                .map(|_| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    (x >> 56) as u8
                })
                .collect();
            let bin = line_dir.join("bin").join(c);
            std::fs::write(&bin, &data).unwrap();
            let sha = sha256_file(&bin);
            write_json(
                &line_dir.join("evidence").join(format!("{c}.fips.json")),
                &evidence(c, &sha, true, "validated"),
            );
            write_json(
                &line_dir.join("provenance").join(format!("{c}.intoto.json")),
                &json!({
                    "_type": "https://in-toto.io/Statement/v1",
                    "subject": [{"name": c, "digest": {"sha256": sha}}],
                    "predicateType": "https://slsa.dev/provenance/v1",
                    "predicate": {
                        "buildDefinition": {"buildType": "https://fips-mesh.invalid/build/v1", "externalParameters": {"line": "0.1"}, "internalParameters": {}, "resolvedDependencies": []},
                        "runDetails": {"builder": {"id": "https://fips-mesh.invalid/builder"}, "metadata": {"invocationId": "fixture"}}
                    }
                }),
            );
            write_json(
                &line_dir.join("sbom").join(format!("{c}.cdx.json")),
                &sbom(c),
            );
            records.push(json!({
                "name": c, "package": c, "binary": format!("bin/{c}"), "sha256": sha,
                "fips": {"mode": true, "module_version": "AWS-LC FIPS 3.0.0", "cmvp_certificate": 5314, "cmvp_status": "validated"},
                "evidence": format!("evidence/{c}.fips.json"), "provenance": format!("provenance/{c}.intoto.json")
            }));
        }
        write_json(
            &line_dir.join("build.json"),
            &json!({
                "schema_version": "1", "distribution": "fips-mesh", "line": "0.1",
                "source": {"repository": "https://example.invalid/fips-mesh-distro", "ref": "HEAD", "commit": "0123456789abcdef0123456789abcdef01234567", "source_date_epoch": SDE},
                "cargo_lock_sha256": "00", "patches": [], "components": records
            }),
        );
        let fx = Fixture {
            out,
            line_dir,
            components: components.iter().map(|c| c.to_string()).collect(),
        };
        write_json(&fx.vex_path(), &line_vex(components, "fixed"));
        fx.record();
        fx
    }

    /// The line's OpenVEX document (`OUT/0.1/vex/fips-mesh-0.1.openvex.json`, where `distro
    /// release` writes it), about every component.
    pub fn vex_path(&self) -> PathBuf {
        self.line_dir.join("vex").join("fips-mesh-0.1.openvex.json")
    }

    /// (Re)writes `OUT/0.1/release.json` with the current sha256 of every document, as the
    /// release's local stages do: call it after changing a document on purpose. A component's
    /// image that `distro image` recorded stays recorded (its SBOM and hardening manifest
    /// hashed again).
    pub fn record(&self) {
        use distro_schema::{Artifact, CmvpStatus, ComponentRelease, FipsFacts, LineRelease};
        let artifact = |p: PathBuf| Artifact {
            sha256: sha256_file(&p),
            path: p.display().to_string(),
        };
        let previous: Option<LineRelease> = std::fs::read(self.line_dir.join("release.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let image_of = |c: &str| {
            let mut img = previous
                .as_ref()?
                .components
                .iter()
                .find(|k| k.name == c)?
                .image
                .clone()?;
            img.sbom = artifact(PathBuf::from(&img.sbom.path));
            img.hardening_manifest = artifact(PathBuf::from(&img.hardening_manifest.path));
            Some(img)
        };
        let build: distro_schema::BuildRecord =
            serde_json::from_slice(&std::fs::read(self.line_dir.join("build.json")).unwrap())
                .unwrap();
        let record = LineRelease {
            schema_version: distro_schema::SCHEMA_VERSION.into(),
            distribution: "fips-mesh".into(),
            line: "0.1".into(),
            version: "0.1.0".into(),
            state: distro_schema::ReleaseState::Built,
            fingerprint: "fixture".into(),
            source: build.source.clone(),
            build_record: artifact(self.line_dir.join("build.json")),
            patches: Vec::new(),
            components: self
                .components
                .iter()
                .map(|c| ComponentRelease {
                    name: c.clone(),
                    package: c.clone(),
                    features: Vec::new(),
                    binary: artifact(self.line_dir.join("bin").join(c)),
                    fips: FipsFacts {
                        mode: true,
                        module_version: "AWS-LC FIPS 3.0.0".into(),
                        cmvp_certificate: Some(5314),
                        cmvp_status: CmvpStatus::Validated,
                    },
                    evidence: artifact(
                        self.line_dir
                            .join("evidence")
                            .join(format!("{c}.fips.json")),
                    ),
                    provenance: artifact(
                        self.line_dir
                            .join("provenance")
                            .join(format!("{c}.intoto.json")),
                    ),
                    sbom: Some(artifact(
                        self.line_dir.join("sbom").join(format!("{c}.cdx.json")),
                    )),
                    spdx: None,
                    image: image_of(c),
                    pushed: None,
                })
                .collect(),
            vex: Some(artifact(self.vex_path())),
            vex_note: None,
            registry: None,
            public_key: None,
            conformance: None,
            checks: Vec::new(),
            stages: Vec::new(),
        };
        std::fs::write(
            self.line_dir.join("release.json"),
            serde_json::to_vec_pretty(&record).unwrap(),
        )
        .unwrap();
    }

    /// The arguments of `distro attest IMAGE --key KEY EXTRA... --build-dir OUT/0.1 --component
    /// COMPONENT`: the build's attestations of `component` from the fixture's release record.
    fn attest_args(&self, image: &str, key: &str, component: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec!["attest".into(), image.into(), "--key".into(), key.into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend([
            "--build-dir".into(),
            self.line_dir.display().to_string(),
            "--component".into(),
            component.into(),
        ]);
        args
    }

    /// Runs `distro attest` for `component` of this build (see [`Fixture::attest_args`]),
    /// asserting success; returns stdout.
    pub fn attest(&self, image: &str, key: &str, component: &str, extra: &[&str]) -> String {
        distro_bin().ok(&self.attest_args(image, key, component, extra))
    }

    /// [`Fixture::attest`], asserting failure; returns stdout + stderr.
    pub fn attest_fails(&self, image: &str, key: &str, component: &str, extra: &[&str]) -> String {
        distro_bin().fails(&self.attest_args(image, key, component, extra))
    }

    /// `oci:` reference of a component's assembled image.
    pub fn image_ref(&self, component: &str) -> String {
        format!("oci:{}:0.1.0", self.layout(component).display())
    }

    /// Layout directory of a component's image.
    pub fn layout(&self, component: &str) -> PathBuf {
        self.line_dir.join("images").join(component).join("oci")
    }

    /// Runs `distro image` for the fixture.
    pub fn assemble(&self) -> String {
        ok(&[
            "image",
            "--out",
            self.out.to_str().unwrap(),
            "--line",
            "0.1",
            "--base-cache",
            &deb_cache().to_string_lossy(),
            "--format",
            "json",
        ])
    }
}

/// `umoci unpack --rootless --image IMAGE BUNDLE` (an independent reader of the layout),
/// asserted to succeed.
pub fn umoci_unpack(image: &str, bundle: &Path) {
    let out = run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", image])
        .arg(bundle));
    assert!(
        out.status.success(),
        "umoci unpack {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Debian base's `.deb` cache shared by every test (the packages are downloaded once per
/// target directory, checked against apt's index each time they are used).
pub fn deb_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb-cache")
}

/// A CA bundle for the base layer: Debian's when present, else a generated one.
pub fn ca_bundle() -> PathBuf {
    let debian = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    if debian.exists() {
        return debian;
    }
    let dir = std::env::temp_dir().join("distro-image-test-ca");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = openssl_ca(&dir);
    ca.cert
}

/// FIPS evidence for a binary.
pub fn evidence(component: &str, sha: &str, mode: bool, status: &str) -> serde_json::Value {
    json!({
        "schema_version": "1", "component": component, "binary": component, "binary_sha256": sha, "mode": mode,
        "module": {"crate_name": "aws-lc-fips-sys", "crate_version": "0.13.17", "module_name": "AWS-LC Cryptographic Module",
                   "module_line": "3.x", "version_in_binary": "AWS-LC FIPS 3.0.0", "cmvp_certificate": 5314, "cmvp_status": status,
                   "source": "fixture"},
        "symbols": {"total_symbols": 10, "fips_module_symbols": 5, "fips_module_prefix": "aws_lc_fips_0_13_17_", "needed_libraries": [], "forbidden": []},
        "self_check": null,
        "failures": if mode { json!([]) } else { json!(["aws_lc_0_ symbols found: non-FIPS AWS-LC linked"]) }
    })
}

/// A small CycloneDX 1.6 SBOM.
pub fn sbom(component: &str) -> serde_json::Value {
    json!({
        "bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79", "version": 1,
        "metadata": {"component": {"type": "application", "name": component, "version": "0.1.0"}},
        "components": [{"type": "library", "name": "rustls", "version": "0.23.43", "purl": "pkg:cargo/rustls@0.23.43"}]
    })
}

/// A small OpenVEX 0.2.0 document with one statement of `status`.
pub fn vex(component: &str, status: &str) -> serde_json::Value {
    let mut st = json!({
        "vulnerability": {"name": "RUSTSEC-2024-0336"},
        "products": [{"@id": format!("pkg:cargo/{component}@0.1.0")}],
        "status": status
    });
    if status == "not_affected" {
        st["justification"] = json!("vulnerable_code_not_in_execute_path");
    }
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://fips-mesh.invalid/vex/fixture",
        "author": "fips-mesh", "timestamp": "2025-11-28T00:00:00Z", "version": 1, "statements": [st]
    })
}

/// The line's OpenVEX 0.2.0 document: one statement of `status` about every component.
pub fn line_vex(components: &[&str], status: &str) -> serde_json::Value {
    let mut v = vex(components[0], status);
    v["statements"][0]["products"] = components
        .iter()
        .map(|c| json!({"@id": format!("pkg:cargo/{c}@0.1.0")}))
        .collect();
    v
}

/// Writes pretty JSON (creating its directory).
pub fn write_json(path: &Path, v: &serde_json::Value) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Standard base64 with padding (a few lines here rather than a dev-dependency of `distro`).
pub mod b64 {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Encodes.
    pub fn encode(data: impl AsRef<[u8]>) -> String {
        let data = data.as_ref();
        let mut s = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    /// Decodes; `Err` on a character outside the alphabet.
    pub fn decode(s: impl AsRef<[u8]>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut buf = 0u32;
        let mut bits = 0;
        for &ch in s.as_ref() {
            if ch == b'=' {
                break;
            }
            let v = A
                .iter()
                .position(|&a| a == ch)
                .ok_or_else(|| format!("bad base64 byte {ch}"))? as u32;
            buf = (buf << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buf >> bits) as u8);
                buf &= (1 << bits) - 1;
            }
        }
        Ok(out)
    }
}

/// Validates a CycloneDX 1.6 file with cyclonedx-python-lib's strict validator (independent of
/// the code under test). Returns false (after a SKIP line) when the library is missing.
pub fn cyclonedx_python_valid(path: &Path, test: &str) -> bool {
    if !distro_testsupport::require_python(
        test,
        "cyclonedx.validation.json",
        "pip install 'cyclonedx-python-lib[json-validation]' (scripts/install-deps.sh)",
    ) {
        return false;
    }
    let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\ne = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nif e is not None:\n    print(e)\n    sys.exit(1)\n";
    let out = run(Command::new("python3").args(["-c", script]).arg(path));
    assert!(
        out.status.success(),
        "cyclonedx-python-lib rejects {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Every `file` component of an SBOM (nested ones too): path → (sha256, parent component's
/// bom-ref or purl, `distro:image:file-kind`).
pub fn sbom_files(
    sbom: &serde_json::Value,
) -> std::collections::BTreeMap<String, (String, String, String)> {
    fn walk(
        c: &serde_json::Value,
        parent: &str,
        out: &mut std::collections::BTreeMap<String, (String, String, String)>,
    ) {
        let me = c["bom-ref"].as_str().unwrap_or_default().to_string();
        if c["type"] == "file" {
            let sha = c["hashes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["alg"] == "SHA-256")
                .and_then(|h| h["content"].as_str())
                .unwrap_or_default()
                .to_string();
            let kind = c["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "distro:image:file-kind")
                .and_then(|p| p["value"].as_str())
                .unwrap_or_default()
                .to_string();
            out.insert(
                c["name"].as_str().unwrap_or_default().to_string(),
                (sha, parent.to_string(), kind),
            );
        }
        for ch in c["components"].as_array().into_iter().flatten() {
            walk(ch, &me, out);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for c in sbom["components"].as_array().into_iter().flatten() {
        walk(c, "", &mut out);
    }
    out
}

/// Every regular file of every layer of `layout:tag`, read from the layer tars themselves by
/// Python's tarfile (independent of the code under test): (layer index, absolute path, sha256).
pub fn layer_files(layout: &Path, tag: &str) -> Vec<(usize, String, String)> {
    let script = r#"
import hashlib, json, os, sys, tarfile
layout, tag = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(layout, "blobs", "sha256", d.split(":", 1)[1])
index = json.load(open(os.path.join(layout, "index.json")))
m = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]
manifest = json.load(open(blob(m["digest"])))
for i, l in enumerate(manifest["layers"]):
    with tarfile.open(blob(l["digest"]), "r:*") as t:
        for e in t:
            if e.isreg():
                print(i, hashlib.sha256(t.extractfile(e).read()).hexdigest(), "/" + (e.name[2:] if e.name.startswith("./") else e.name))
"#;
    let out = run(Command::new("python3")
        .args(["-c", script])
        .arg(layout)
        .arg(tag));
    assert!(
        out.status.success(),
        "reading the layers of {}: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            let i = f.next().unwrap().parse().unwrap();
            let sha = f.next().unwrap().to_string();
            (i, f.next().unwrap().to_string(), sha)
        })
        .collect()
}

/// The files of `layout:tag` that `sbom` does not account for (no `file` component with the
/// same path and sha256 under a component saying where it comes from).
pub fn unaccounted(layout: &Path, tag: &str, sbom: &serde_json::Value) -> Vec<String> {
    let in_sbom = sbom_files(sbom);
    let files = layer_files(layout, tag);
    assert!(!files.is_empty(), "no files in {}", layout.display());
    let mut out = Vec::new();
    for (layer, path, sha) in &files {
        match in_sbom.get(path) {
            Some((s, parent, kind)) if s == sha && (!parent.is_empty() || kind == "generated") => {}
            other => out.push(format!(
                "layer {layer}: {path} sha256 {sha} -> SBOM {other:?}"
            )),
        }
    }
    out
}

/// The image SBOM beside a layout accounts for every regular file of every layer, an `umoci
/// unpack` of the image holds exactly those files (the last layer's version of each), and
/// cyclonedx-python-lib accepts the SBOM. Returns the SBOM.
pub fn assert_sbom_covers_every_file(layout: &Path, tag: &str, test: &str) -> serde_json::Value {
    let sbom_path = layout.parent().unwrap().join("sbom.cdx.json");
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sbom_path).unwrap()).unwrap();
    let missing = unaccounted(layout, tag, &sbom);
    assert!(
        missing.is_empty(),
        "files of the image that its SBOM does not account for:\n{}",
        missing.join("\n")
    );
    let files = layer_files(layout, tag);
    if have("umoci", test) {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        umoci_unpack(&format!("{}:{tag}", layout.display()), &bundle);
        let rootfs = bundle.join("rootfs");
        let mut unpacked = std::collections::BTreeMap::new();
        let mut stack = vec![rootfs.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    stack.push(e.path());
                } else if ft.is_file() {
                    let rel = format!("/{}", e.path().strip_prefix(&rootfs).unwrap().display());
                    unpacked.insert(rel, sha256_file(&e.path()));
                }
            }
        }
        let mut last = std::collections::BTreeMap::new();
        for (_, p, s) in &files {
            last.insert(p.clone(), s.clone());
        }
        assert_eq!(
            unpacked, last,
            "umoci's unpacked files differ from the layers' files"
        );
    }
    // A missing validator already failed (CI) or printed SKIP.
    cyclonedx_python_valid(&sbom_path, test);
    sbom
}
