//! `distro build` end to end: the real binary, real cargo builds, evidence read back.
//!
//! These tests build the mesh in release mode with the AWS-LC FIPS module, so each takes a few
//! minutes; they share nothing but the source repository.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // a panic is how a test fails

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distro_schema::intoto::Provenance;
use distro_schema::{BuildRecord, CmvpStatus, FipsEvidence, Statement};
use distro_testsupport::bin::{stderr, Bin};
use distro_testsupport::{git, sha256_file};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("distro/ has a parent")
        .to_path_buf()
}

fn distro(args: &[&str]) -> Output {
    let out = Bin::new(env!("CARGO_BIN_EXE_distro")).run(args);
    eprintln!("{}", stderr(&out));
    out
}

fn build_json(config: Option<&Path>, out_dir: &Path) -> (Output, Option<BuildRecord>) {
    let mut args: Vec<String> = Vec::new();
    if let Some(c) = config {
        args.push("--config".into());
        args.push(c.display().to_string());
    }
    args.extend([
        "--format".into(),
        "json".into(),
        "build".into(),
        "--out".into(),
    ]);
    args.push(out_dir.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = distro(&argv);
    let record = serde_json::from_slice(&out.stdout).ok();
    (out, record)
}

fn read<T: serde::de::DeserializeOwned>(path: &str) -> T {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The built-in distribution builds; every component carries FIPS evidence naming the validated
/// module and its certificate; provenance names the outputs; an independent build in another
/// directory is bit-identical to the shared one.
///
/// The first build is the shared FIPS build of the built-in distribution
/// (`distro_testsupport::release_out`: CI's quickstart release, or `target/test-release`); the
/// second is this test's own, from the same commit in a temporary directory. Releasing that
/// build (push, sign, attest, verify, tag, resume, the no-op rerun) is `release_publish.rs`'s
/// and the quickstart's.
#[test]
fn builtin_distribution_builds_fips_with_evidence_and_reproducibly() {
    let shared = distro_testsupport::release_out(Path::new(env!("CARGO_BIN_EXE_distro")), false);
    let line = distro_testsupport::release_lines()
        .pop()
        .expect("the built-in distribution has a line");
    let b = tempfile::tempdir().unwrap();
    let (out, record) = build_json(None, b.path());
    assert!(out.status.success(), "distro build failed");
    let record = record.expect("build --format json prints a BuildRecord");
    assert_eq!(record.line, line, "`distro build` builds the newest line");
    let shared_record: BuildRecord = read(
        shared
            .join(&line)
            .join("build.json")
            .to_str()
            .expect("UTF-8 path"),
    );
    assert_eq!(
        shared_record.source.commit,
        record.source.commit,
        "the shared build in {} is of another commit: remove it or point DISTRO_TEST_OUT at a current one",
        shared.display()
    );
    assert_eq!(record.distribution, "fips-mesh");
    let names: Vec<&str> = record.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["mesh-proxy", "mesh-control"]);
    assert_eq!(record.source.commit.len(), 40);

    for (dir, rec) in [(b.path(), &record), (shared.as_path(), &shared_record)] {
        for c in &rec.components {
            check_component(dir, rec, c);
        }
    }

    // The SBOM stage documents every built component; the documents validate with an
    // independent validator, and the dependency list embedded in each binary recovers an SBOM.
    let out_dir = b.path().to_str().unwrap();
    let sbom = distro(&["sbom", "--out", out_dir, "--spdx"]);
    assert!(sbom.status.success(), "distro sbom failed");
    for c in &record.components {
        let cdx = b
            .path()
            .join(format!("{}/sbom/{}.cdx.json", record.line, c.name));
        let bom: serde_json::Value = read(cdx.to_str().unwrap());
        assert_eq!(bom["specVersion"], "1.6");
        assert_eq!(
            bom["metadata"]["component"]["hashes"][0]["content"],
            c.sha256.as_str()
        );
        let text = serde_json::to_string(&bom).unwrap();
        assert!(
            text.contains("pkg:cargo/rustls@"),
            "{} SBOM lists rustls",
            c.name
        );
        assert!(
            text.contains("5314"),
            "{} SBOM names the CMVP certificate",
            c.name
        );
        assert!(b
            .path()
            .join(format!("{}/sbom/{}.spdx.json", record.line, c.name))
            .exists());
        if distro_testsupport::require_python(
            "builtin_distribution_builds_fips_with_evidence_and_reproducibly",
            "cyclonedx",
            "pip install 'cyclonedx-python-lib[json-validation]' (scripts/install-deps.sh)",
        ) {
            let validator = Command::new("python3")
                .args(["-c", "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\ne = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nprint(e or 'valid')\nsys.exit(1 if e else 0)\n"])
                .arg(&cdx)
                .output()
                .unwrap();
            assert!(
                validator.status.success(),
                "{} SBOM invalid: {}{}",
                c.name,
                String::from_utf8_lossy(&validator.stdout),
                String::from_utf8_lossy(&validator.stderr)
            );
        }
        let recovered = distro(&["sbom", "--from-binary", &c.binary]);
        assert!(
            recovered.status.success(),
            "--from-binary failed for {}",
            c.name
        );
        let rec = String::from_utf8_lossy(&recovered.stdout);
        assert!(
            rec.contains("pkg:cargo/rustls@"),
            "recovered SBOM of {} lists rustls",
            c.name
        );
    }

    // The independent build gives the same bytes as the shared one.
    for (x, y) in shared_record.components.iter().zip(&record.components) {
        assert_eq!(x.name, y.name);
        assert_eq!(
            x.sha256,
            y.sha256,
            "{} is not reproducible ({} vs {})",
            x.name,
            shared.display(),
            b.path().display()
        );
        assert_eq!(sha256_file(Path::new(&y.binary)), x.sha256);
    }
    // The binaries carry no trace of where they were built.
    for c in &record.components {
        let bytes = std::fs::read(&c.binary).unwrap();
        let needle = b.path().to_str().unwrap().as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{} contains its build path",
            c.name
        );
    }
}

/// One built component of `record` (built into `out`): FIPS mode and the validated module read
/// from the binary, evidence that matches it, provenance that names it and not the output path.
fn check_component(out: &Path, record: &BuildRecord, c: &distro_schema::ComponentRecord) {
    assert!(c.fips.mode, "{} not in FIPS mode", c.name);
    assert!(
        c.fips.module_version.starts_with("AWS-LC FIPS 3."),
        "{}",
        c.fips.module_version
    );
    assert_eq!(c.fips.cmvp_certificate, Some(5314));
    assert_eq!(c.fips.cmvp_status, CmvpStatus::Validated);
    assert_eq!(
        sha256_file(Path::new(&c.binary)),
        c.sha256,
        "recorded sha256 is the binary's"
    );

    let ev: FipsEvidence = read(&c.evidence);
    assert!(ev.mode && ev.failures.is_empty(), "{:?}", ev.failures);
    assert_eq!(ev.binary_sha256, c.sha256);
    assert!(ev.symbols.fips_module_symbols > 100, "{:?}", ev.symbols);
    assert!(
        ev.symbols.forbidden.is_empty(),
        "{:?}",
        ev.symbols.forbidden
    );
    assert_eq!(
        ev.symbols.fips_module_prefix.as_deref(),
        Some(&*format!(
            "aws_lc_fips_{}_",
            ev.module.crate_version.replace('.', "_")
        ))
    );
    let sc = ev.self_check.expect("self-check ran");
    assert!(sc.fips_mode && sc.self_tests_passed && sc.provider_fips);
    assert!(sc.tls_configs.iter().all(|t| t.fips));
    assert!(sc
        .tls_configs
        .iter()
        .all(|t| !t.cipher_suites.iter().any(|s| s.contains("CHACHA"))));
    assert!(sc
        .tls_configs
        .iter()
        .all(|t| !t.kx_groups.iter().any(|g| g.contains("25519"))));

    let st: Statement<Provenance> = read(&c.provenance);
    assert_eq!(st.statement_type, "https://in-toto.io/Statement/v1");
    assert_eq!(st.predicate_type, "https://slsa.dev/provenance/v1");
    assert!(st.subject.iter().any(|s| s.digest["sha256"] == c.sha256));
    let deps = &st.predicate.build_definition.resolved_dependencies;
    assert_eq!(deps[0].digest["gitCommit"], record.source.commit);
    assert!(deps.iter().any(|d| d.name.as_deref() == Some("Cargo.lock")
        && d.digest["sha256"] == record.cargo_lock_sha256));
    let tools = &st.predicate.run_details.builder.version;
    assert!(tools.contains_key("rustc") && tools.contains_key("cargo"));
    let text = std::fs::read_to_string(&c.provenance).unwrap();
    assert!(
        !text.contains(out.to_str().unwrap()),
        "provenance leaks the output path"
    );
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("distro.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// A deliberately non-FIPS build of the proxy (feature `fips` off, `non-fips` on) is detected from
/// the binary and refused as a FIPS release, with evidence that says why.
#[test]
fn non_fips_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[distribution]
name = "non-fips-check"

[[component]]
name = "mesh-proxy"
package = "mesh-proxy"
features = ["non-fips"]
fips_required = true

[[line]]
version = "0.1"
release_date = 2026-11-28
source = {{ git = "{}", ref = "HEAD" }}
"#,
            repo_root().display()
        ),
    );
    let out_dir = dir.path().join("out");
    let (out, _) = build_json(Some(&config), &out_dir);
    assert!(!out.status.success(), "a non-FIPS build must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused as a FIPS release"), "{stderr}");
    assert!(stderr.contains("no AWS-LC FIPS module symbols"), "{stderr}");
    let ev: FipsEvidence = read(
        out_dir
            .join("0.1/evidence/mesh-proxy.fips.json")
            .to_str()
            .unwrap(),
    );
    assert!(!ev.mode);
    assert!(
        ev.symbols
            .forbidden
            .iter()
            .any(|f| f.implementation.contains("non-FIPS")),
        "{:?}",
        ev.symbols
    );
    let sc = ev.self_check.expect("the binary still reports itself");
    assert!(!sc.fips_build && !sc.fips_mode);
    assert!(
        !out_dir.join("0.1/build.json").exists(),
        "no build record for a refused build"
    );
}

fn fixture_repo(dir: &Path, fips_sys_version: &str) -> PathBuf {
    let repo = dir.join("upstream");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("Cargo.toml"),
        "[package]\nname = \"fixture\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(repo.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        repo.join("Cargo.lock"),
        format!(
            "version = 4\n\n[[package]]\nname = \"aws-lc-fips-sys\"\nversion = \"{fips_sys_version}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"fixture\"\nversion = \"0.1.0\"\n"
        ),
    )
    .unwrap();
    git::init(&repo);
    git::commit_all(&repo, "fixture");
    repo
}

/// A distribution that requires a validated module refuses a lockfile resolving the FIPS 4.x
/// module (in process), before building, and says which versions would do.
#[test]
fn uncertified_module_is_refused_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fixture_repo(dir.path(), "0.14.1");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[distribution]
name = "policy-check"

[fips]
require_validated_module = true

[[component]]
name = "fixture"
package = "fixture"

[[line]]
version = "0.1"
release_date = 2026-11-28
source = {{ git = "{}", ref = "HEAD" }}
"#,
            repo.display()
        ),
    );
    let (out, _) = build_json(Some(&config), &dir.path().join("out"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("aws-lc-fips-sys 0.14.1"), "{stderr}");
    assert!(stderr.contains("in-process"), "{stderr}");
    assert!(
        stderr.contains("requires a CMVP-validated module"),
        "{stderr}"
    );
    assert!(
        stderr.contains("0.13.x (AWS-LC FIPS 3.x, CMVP #5314)"),
        "{stderr}"
    );
    assert!(stderr.contains("Cargo.lock"), "{stderr}");
    assert!(
        !dir.path().join("out/0.1/target/release").exists(),
        "refused before building"
    );
}

/// A malformed distro.toml is reported with its file, line and what to change.
#[test]
fn malformed_config_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[distribution]\nname = \"x\"\n\n[[component]]\nname = \"a\"\npackage = \"a\"\n\n[[line]]\nversion = \"1.0\"\nrelease_date = 2026-02-30\nsource = { git = \".\", ref = \"HEAD\" }\n",
    );
    let out = distro(&["--config", config.to_str().unwrap(), "build"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:10:", config.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("help:"), "{stderr}");
}

/// Asking for a line the distribution does not have names the lines it has.
#[test]
fn unknown_line_lists_the_known_ones() {
    let out = distro(&["build", "--line", "9.9"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no line `9.9`") && stderr.contains("0.1, 0.2"),
        "{stderr}"
    );
}
