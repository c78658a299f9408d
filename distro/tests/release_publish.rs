//! `distro release` publishes safely (issue 14 item 3): a release to Debian's `docker-registry`
//! on 127.0.0.1, SIGKILLed at several points (the test-only hook `DISTRO_TEST_KILL_AFTER`),
//! never leaves a tag on an unsigned or unattested image; resumed, it completes without
//! duplicate signatures or attestations; run again with nothing changed, it does nothing and
//! says so. The release reuses the shared FIPS build (`DISTRO_TEST_OUT`, see
//! `distro_testsupport::release_out`) with `--reuse-build`, so no FIPS binary is rebuilt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod image_support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use distro_images::cosign;
use image_support::TestRegistry;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A plain HTTP/1.1 request to the registry, independent of the code under test: (status,
/// headers in lower case, body).
fn http(addr: &str, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// The digest `repo:tag` points at, or `None` when the tag is absent.
fn tag_digest(addr: &str, repo: &str, tag: &str) -> Option<String> {
    let (status, head, _) = http(addr, "HEAD", &format!("/v2/{repo}/manifests/{tag}"));
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "{head}");
    head.lines()
        .find_map(|l| l.strip_prefix("docker-content-digest:"))
        .map(|d| d.trim().to_string())
}

/// Layers of the cosign manifest `sha256-<hex>.<suffix>` (signatures or attestations), with the
/// predicate type annotation of each.
fn cosign_layers(addr: &str, repo: &str, digest: &str, suffix: &str) -> Vec<String> {
    let tag = format!("{}.{suffix}", digest.replace(':', "-"));
    let (status, _, body) = http(addr, "GET", &format!("/v2/{repo}/manifests/{tag}"));
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200);
    let m: Value = serde_json::from_slice(&body).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["predicateType"]
                .as_str()
                .unwrap_or(l["mediaType"].as_str().unwrap())
                .to_string()
        })
        .collect()
}

struct Setup {
    _t: tempfile::TempDir,
    reg: TestRegistry,
    config: PathBuf,
    out: PathBuf,
    key: PathBuf,
    public: PathBuf,
    line: String,
    components: Vec<String>,
    base_cache: PathBuf,
}

impl Setup {
    fn release(&self, kill_after: Option<&str>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_distro"));
        c.args([
            "--config",
            self.config.to_str().unwrap(),
            "--format",
            "json",
        ])
        .args(["release", "--line", &self.line, "--reuse-build"])
        .args(["--out", self.out.to_str().unwrap()])
        .args([
            "--to",
            &format!("{}/fips-mesh", self.reg.addr),
            "--plain-http",
        ])
        .args(["--key", self.key.to_str().unwrap()])
        .args(["--public-key", self.public.to_str().unwrap()])
        .args(["--base-cache", self.base_cache.to_str().unwrap()])
        // The suite itself is exercised by the quickstart's release and conformance*.rs; here
        // only its place between attest and verify is killed.
        .args(["--conformance", "off"])
        .env("RUST_LOG", "warn")
        .env_remove("CI")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("DISTRO_TEST_KILL_AFTER");
        if let Some(k) = kill_after {
            c.env("DISTRO_TEST_KILL_AFTER", k);
        }
        c.output().unwrap()
    }

    /// After any run: every component's tag is absent, or points at a digest that is signed
    /// and carries every attestation (and `distro verify` of the tag passes).
    fn assert_no_unsafe_tag(&self, when: &str) -> usize {
        let mut tagged = 0;
        for c in &self.components {
            let repo = format!("fips-mesh/{c}");
            let Some(digest) = tag_digest(&self.reg.addr, &repo, &self.version()) else {
                continue;
            };
            tagged += 1;
            let sigs = cosign_layers(&self.reg.addr, &repo, &digest, "sig");
            let atts = cosign_layers(&self.reg.addr, &repo, &digest, "att");
            assert!(!sigs.is_empty(), "{when}: {repo} tagged but unsigned");
            for p in [
                "https://cyclonedx.org/bom",
                "https://slsa.dev/provenance/v1",
            ] {
                assert!(
                    atts.iter().any(|a| a == p),
                    "{when}: {repo} tagged without a {p} attestation: {atts:?}"
                );
            }
            let v = Command::new(env!("CARGO_BIN_EXE_distro"))
                .args([
                    "verify",
                    &format!("{}/{repo}:{}", self.reg.addr, self.version()),
                ])
                .args(["--key", self.public.to_str().unwrap(), "--plain-http"])
                .env("RUST_LOG", "warn")
                .output()
                .unwrap();
            assert!(
                v.status.success(),
                "{when}: the tag of {repo} names an image that does not verify:\n{}",
                String::from_utf8_lossy(&v.stdout)
            );
        }
        tagged
    }

    fn version(&self) -> String {
        let build: Value = serde_json::from_slice(
            &std::fs::read(self.out.join(&self.line).join("release.json")).unwrap(),
        )
        .unwrap();
        build["version"].as_str().unwrap().to_string()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let o = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(o.status.success(), "cp -a {}: {o:?}", from.display());
}

fn setup(test: &str) -> Option<Setup> {
    if !distro_testsupport::require_tool(test, "docker-registry") {
        return None;
    }
    let shared = distro_testsupport::release_out(Path::new(env!("CARGO_BIN_EXE_distro")), true);
    let reg = TestRegistry::plain(test)?;
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // The newest line of the shared output that has a build record.
    let mut lines: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("build.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    lines.sort();
    let line = lines
        .pop()
        .expect("a line with build.json in the shared output");
    // The build record and the exported source (what the SBOM stage resolves); the binaries,
    // evidence and provenance are read where the record names them, in the shared output.
    let line_dir = out.join(&line);
    std::fs::create_dir_all(&line_dir).unwrap();
    std::fs::copy(
        shared.join(&line).join("build.json"),
        line_dir.join("build.json"),
    )
    .unwrap();
    copy_dir(&shared.join(&line).join("src"), &line_dir);
    let base_cache = t.path().join("debs");
    if shared.join("base/debian").is_dir() {
        copy_dir(&shared.join("base/debian"), &base_cache);
    }
    let build: Value =
        serde_json::from_slice(&std::fs::read(line_dir.join("build.json")).unwrap()).unwrap();
    let components = build["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    // The built-in definition, its source pinned to this checkout (as the shared build was).
    let text = std::fs::read_to_string(repo().join("distro/distro.toml"))
        .unwrap()
        .replace("git = \"..\"", &format!("git = \"{}\"", repo().display()))
        .replace(
            "db = \"../patches/advisory-db\"",
            &format!("db = \"{}\"", repo().join("patches/advisory-db").display()),
        );
    // In a repository layout of its own (`REPO/distro/distro.toml`), so the dependency policy
    // the release applies is `REPO/deny.toml`: the project's, unless a test writes another.
    let config = t.path().join("repo/distro/distro.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, text).unwrap();
    std::fs::copy(repo().join("deny.toml"), t.path().join("repo/deny.toml")).unwrap();
    Some(Setup {
        key: t.path().join("keys/release.key"),
        public: t.path().join("keys/release.pub"),
        _t: t,
        reg,
        config,
        out,
        line,
        components,
        base_cache,
    })
}

/// Killed (SIGKILL) after the local stages, after the push, after signing one image, after
/// signing, after attesting, after verifying and after tagging one image: at no point does a
/// tag name an image that is unsigned or lacks its attestations. Resumed, the release finishes
/// with exactly one signature and one attestation per document on each image; a second run
/// with nothing changed reports every stage skipped, adds nothing and takes seconds.
#[test]
fn killed_release_never_tags_an_unsigned_image_and_resumes_without_duplicates() {
    let test = "killed_release_never_tags_an_unsigned_image_and_resumes_without_duplicates";
    let Some(s) = setup(test) else {
        return;
    };
    std::fs::create_dir_all(s.key.parent().unwrap()).unwrap();
    let first = s.components[0].clone();
    let points = [
        "local".to_string(),
        "push".into(),
        format!("sign:{first}"),
        "sign".into(),
        "attest".into(),
        "conformance".into(),
        "verify".into(),
        format!("tag:{first}"),
    ];
    for point in &points {
        let o = s.release(Some(point));
        assert_eq!(
            o.status.signal(),
            Some(9),
            "DISTRO_TEST_KILL_AFTER={point} should SIGKILL the release; got {}:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        let tagged = s.assert_no_unsafe_tag(&format!("after a kill at {point}"));
        if point.starts_with("tag:") {
            assert_eq!(tagged, 1, "only {first} was tagged before the kill");
        } else {
            assert_eq!(tagged, 0, "no tag may exist before the tag step ({point})");
        }
    }

    let o = s.release(None);
    assert!(
        o.status.success(),
        "the resumed release failed ({}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        s.assert_no_unsafe_tag("after the resumed release"),
        s.components.len()
    );
    let records: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &records[0];
    assert_eq!(r["state"], "published");
    let has_vex = !r["vex"].is_null();
    for c in r["components"].as_array().unwrap() {
        let p = &c["pushed"];
        assert_eq!(p["tagged"], true);
        let repo = p["repository"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap()
            .1
            .to_string();
        let digest = p["digest"].as_str().unwrap();
        assert_eq!(
            tag_digest(&s.reg.addr, &repo, p["tag"].as_str().unwrap()).as_deref(),
            Some(digest)
        );
        let sigs = cosign_layers(&s.reg.addr, &repo, digest, "sig");
        assert_eq!(sigs.len(), 1, "one signature, not one per run: {sigs:?}");
        let mut atts = cosign_layers(&s.reg.addr, &repo, digest, "att");
        atts.sort();
        let mut want = vec![
            cosign::PREDICATE_CYCLONEDX.to_string(),
            cosign::PREDICATE_SLSA.into(),
            cosign::PREDICATE_FIPS.into(),
        ];
        if has_vex {
            want.push(cosign::PREDICATE_OPENVEX.into());
        }
        want.sort();
        assert_eq!(atts, want, "one attestation per document, none duplicated");
        // Every artifact is named by path and digest.
        for a in ["binary", "evidence", "provenance", "sbom"] {
            assert_eq!(c[a]["sha256"].as_str().unwrap().len(), 64, "{a}: {c:#}");
        }
        assert_eq!(
            c["image"]["layout"]["sha256"].as_str().unwrap(),
            &digest[7..]
        );
    }
    // skopeo, an independent client, reads each released tag and sees the cosign signature and
    // attestation tags beside it.
    if distro_testsupport::require_tool(test, "skopeo") {
        for c in r["components"].as_array().unwrap() {
            let p = &c["pushed"];
            let repo = p["repository"].as_str().unwrap();
            let reference = format!("docker://{repo}:{}", p["tag"].as_str().unwrap());
            let inspect = Command::new("skopeo")
                .args(["inspect", "--tls-verify=false", &reference])
                .output()
                .unwrap();
            assert!(
                inspect.status.success(),
                "skopeo inspect {reference}: {}",
                String::from_utf8_lossy(&inspect.stderr)
            );
            let seen: Value = serde_json::from_slice(&inspect.stdout).unwrap();
            assert_eq!(
                seen["Digest"], p["digest"],
                "skopeo sees the released digest"
            );
            let tags = Command::new("skopeo")
                .args([
                    "list-tags",
                    "--tls-verify=false",
                    &format!("docker://{repo}"),
                ])
                .output()
                .unwrap();
            let tags = String::from_utf8_lossy(&tags.stdout);
            let sig = format!("{}.sig", p["digest"].as_str().unwrap().replace(':', "-"));
            let att = format!("{}.att", p["digest"].as_str().unwrap().replace(':', "-"));
            assert!(tags.contains(&sig) && tags.contains(&att), "{repo}: {tags}");
        }
    }
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(s.out.join(&s.line).join("release.json")).unwrap())
            .unwrap();
    assert_eq!(&on_disk, r, "release.json is the record printed");

    // Nothing changed: nothing is done, and the run says so.
    let started = Instant::now();
    let o = s.release(None);
    let took = started.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing changed"), "{err}");
    let again: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        again[0]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|st| st["skipped"] == true),
        "{:#}",
        again[0]["stages"]
    );
    for c in &s.components {
        let repo = format!("fips-mesh/{c}");
        let d = tag_digest(&s.reg.addr, &repo, &s.version()).unwrap();
        assert_eq!(cosign_layers(&s.reg.addr, &repo, &d, "sig").len(), 1);
    }
    eprintln!("the no-op release took {took:?}");
    assert!(took.as_secs() < 60, "a no-op release took {took:?}");
}

/// The policy stage checks every component against the repository's deny.toml and records one
/// passed check per component before the images are assembled (the record written when the
/// release is killed right after its local stages).
#[test]
fn release_records_the_dependency_policy_of_each_component() {
    let Some(s) = setup("release_records_the_dependency_policy_of_each_component") else {
        return;
    };
    std::fs::create_dir_all(s.key.parent().unwrap()).unwrap();
    let o = s.release(Some("local"));
    assert_eq!(
        o.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let record: Value =
        serde_json::from_slice(&std::fs::read(s.out.join(&s.line).join("release.json")).unwrap())
            .unwrap();
    for c in &s.components {
        let check = record["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["stage"] == "policy" && k["name"] == format!("dependency policy {c}"))
            .unwrap_or_else(|| panic!("no policy check of {c}: {record:#}"));
        assert_eq!(check["result"], "passed", "{check}");
        let detail = check["detail"].as_str().unwrap();
        assert!(
            detail.contains("cargo-deny") && detail.contains("deny.toml"),
            "{detail}"
        );
    }
    let stages: Vec<&str> = record["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["build", "sbom", "vex", "policy", "image"]);
}

/// A dependency the repository's deny.toml bans refuses the line with exit 3 (a policy
/// refusal, not an error), naming the component, the rule and the crate; nothing is pushed
/// and no release record is written.
#[test]
fn dependency_denied_by_policy_refuses_the_line_before_any_image() {
    let Some(s) = setup("dependency_denied_by_policy_refuses_the_line_before_any_image") else {
        return;
    };
    std::fs::create_dir_all(s.key.parent().unwrap()).unwrap();
    let deny = s
        .config
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("deny.toml");
    let text = std::fs::read_to_string(&deny).unwrap().replacen(
        "deny = [\n",
        "deny = [\n    { crate = \"tokio\", reason = \"a test bans it\" },\n",
        1,
    );
    assert!(
        text.contains("a test bans it"),
        "no [bans] deny list in deny.toml"
    );
    std::fs::write(&deny, text).unwrap();
    let o = s.release(None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("dependency policy")
            && stderr.contains("bans/banned tokio")
            && stderr.contains(&s.components[0]),
        "{stderr}"
    );
    assert!(!s.out.join(&s.line).join("release.json").exists());
    let (status, _, _) = http(&s.reg.addr, "GET", "/v2/_catalog");
    assert_eq!(status, 200);
    let (_, _, body) = http(&s.reg.addr, "GET", "/v2/_catalog");
    let catalog: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        catalog["repositories"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0,
        "nothing may be pushed: {catalog}"
    );
}
