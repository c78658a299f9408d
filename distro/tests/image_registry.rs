//! The image subcommands against a real registry: Debian's `docker-registry` started by the test
//! on 127.0.0.1, plain, with TLS from a CA made at test time, and with htpasswd basic auth.
//! skopeo and umoci read what was pushed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod image_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use distro_images::oci::Manifest;
use distro_images::store::{Layout, Store};
use image_support::*;
use serde_json::Value;

/// A fixture of mesh-proxy and mesh-control (`binary_size` bytes each) under `root`, its images
/// assembled, and a key pair there: (fixture, `distro image` report, private key, public key).
fn assembled_pair(root: &Path, binary_size: usize) -> (Fixture, Value, String, String) {
    let fx = Fixture::write(root, &["mesh-proxy", "mesh-control"], binary_size);
    let images: Value = serde_json::from_str(&fx.assemble()).unwrap();
    let (k, p) = keygen_strings(root);
    (fx, images, k, p)
}

/// `distro push SRC TAGGED`, `sign`, `attest` (the fixture's build) and `verify` against an
/// authenticating registry, each with `DISTRO_REGISTRY_PASSWORD=password` and `extra`
/// (username, TLS or plain HTTP), each asserted to succeed.
fn push_sign_attest_verify(
    fx: &Fixture,
    src: &str,
    tagged: &str,
    (k, p): (&str, &str),
    password: &str,
    extra: &[&str],
) {
    for args in [
        vec!["push", src, tagged],
        vec!["sign", tagged, "--key", k],
        vec![
            "attest",
            tagged,
            "--key",
            k,
            "--build-dir",
            fx.line_dir.to_str().unwrap(),
            "--component",
            "mesh-proxy",
        ],
        vec!["verify", tagged, "--key", p],
    ] {
        let out = run(distro()
            .env("DISTRO_REGISTRY_PASSWORD", password)
            .args(&args)
            .args(extra));
        assert!(
            out.status.success(),
            "distro {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The fixture's mesh-proxy image pushed to a plain registry of the test's own as
/// `fips-mesh/mesh-proxy:0.1.0`, signed and attested with the test's key, and verified.
struct Published {
    reg: TestRegistry,
    t: tempfile::TempDir,
    fx: Fixture,
    images: Value,
    p: String,
    repo: String,
    tagged: String,
    digest: String,
    hex: String,
}

impl Published {
    fn new(test: &str) -> Option<Published> {
        let reg = TestRegistry::plain(test)?;
        let t = tempfile::tempdir().unwrap();
        let (fx, images, k, p) = assembled_pair(t.path(), 512 * 1024);
        let repo = format!("{}/fips-mesh/mesh-proxy", reg.addr);
        let tagged = format!("{repo}:0.1.0");
        ok(&["push", &fx.image_ref("mesh-proxy"), &tagged, "--plain-http"]);
        ok(&["sign", &tagged, "--key", &k, "--plain-http"]);
        fx.attest(&tagged, &k, "mesh-proxy", &["--plain-http"]);
        let report = json_of(&["verify", &tagged, "--key", &p, "--plain-http"]);
        assert_eq!(report["passed"], true, "{report}");
        let digest = report["digest"].as_str().unwrap().to_string();
        let hex = digest.strip_prefix("sha256:").unwrap().to_string();
        Some(Published {
            reg,
            t,
            fx,
            images,
            p,
            repo,
            tagged,
            digest,
            hex,
        })
    }

    /// `distro pull TAGGED --key PUB --plain-http --out DEST` (with `extra`): the command's
    /// output, not asserted.
    fn pull(&self, public: &str, dest: &str, extra: &[&str]) -> std::process::Output {
        run(distro()
            .args(["pull", &self.tagged, "--key", public, "--plain-http"])
            .args(extra)
            .args(["--out", dest]))
    }
}

/// A push reports the manifest digest `distro image` assembled and uploads config and both
/// layers; a second push of the same image uploads nothing; and plain HTTP must be asked for,
/// even on loopback.
#[test]
fn push_is_idempotent_and_plain_http_must_be_asked_for() {
    let test = "push_is_idempotent_and_plain_http_must_be_asked_for";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (fx, images, _, _) = assembled_pair(t.path(), 512 * 1024);
    let tagged = format!("{}/fips-mesh/mesh-proxy:0.1.0", reg.addr);
    let first = json_of(&["push", &fx.image_ref("mesh-proxy"), &tagged, "--plain-http"]);
    assert_eq!(first["digest"], images[0]["manifest_digest"]);
    assert_eq!(first["blobs_copied"], 3, "config and two layers: {first}");
    let second = json_of(&["push", &fx.image_ref("mesh-proxy"), &tagged, "--plain-http"]);
    assert_eq!(
        second["blobs_copied"], 0,
        "nothing is uploaded twice: {second}"
    );
    assert_eq!(second["blobs_present"], 3);
    let err = fails(&[
        "push",
        &fx.image_ref("mesh-proxy"),
        &tagged,
        "--attempts",
        "1",
    ]);
    assert!(
        err.contains("TLS failed") && err.contains("--plain-http"),
        "{err}"
    );
}

/// A second signature by another key is appended in the registry, not overwritten: the first
/// key still verifies, and skopeo reads a signature manifest of two simple-signing layers.
#[test]
fn second_signature_is_appended_not_overwritten() {
    let test = "second_signature_is_appended_not_overwritten";
    let Some(pb) = Published::new(test) else {
        return;
    };
    let d = pb.t.path().join("second");
    std::fs::create_dir_all(&d).unwrap();
    let (k2, _) = keygen_strings(&d);
    ok(&[
        "sign",
        &format!("{}@{}", pb.repo, pb.digest),
        "--key",
        &k2,
        "--plain-http",
    ]);
    let report = json_of(&["verify", &pb.tagged, "--key", &pb.p, "--plain-http"]);
    assert_eq!(
        report["passed"], true,
        "first key still verifies after a second signature: {report}"
    );
    if have("skopeo", test) {
        let sig = skopeo_json(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}:sha256-{}.sig", pb.repo, pb.hex),
        ]);
        assert_eq!(sig["layers"].as_array().unwrap().len(), 2, "{sig}");
    }
}

/// skopeo reads the pushed image by its tag with the digest `distro verify` reports, lists the
/// tag with its `.sig` and `.att` tags, and copies it into a layout that umoci unpacks to the
/// built binary, byte for byte.
#[test]
fn skopeo_and_umoci_read_the_published_image() {
    let test = "skopeo_and_umoci_read_the_published_image";
    if !have("skopeo", test) || !have("umoci", test) {
        return;
    }
    let Some(pb) = Published::new(test) else {
        return;
    };
    let inspect = skopeo_json(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}", pb.tagged),
    ]);
    assert_eq!(inspect["Digest"], pb.digest.as_str());
    let tags = skopeo_json(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}", pb.repo),
    ]);
    let tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for want in [
        "0.1.0".to_string(),
        format!("sha256-{}.sig", pb.hex),
        format!("sha256-{}.att", pb.hex),
    ] {
        assert!(tags.contains(&want.as_str()), "{want} not in {tags:?}");
    }
    let copied = pb.t.path().join("skopeo-copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", pb.tagged),
        &format!("oci:{}:0.1.0", copied.display()),
    ]);
    umoci_unpack(
        &format!("{}:0.1.0", copied.display()),
        &pb.t.path().join("bundle"),
    );
    assert_eq!(
        std::fs::read(pb.t.path().join("bundle/rootfs/usr/local/bin/mesh-proxy")).unwrap(),
        std::fs::read(pb.fx.line_dir.join("bin/mesh-proxy")).unwrap()
    );
}

/// `distro pull` verifies before it writes: the OCI layout it writes holds the image under the
/// asked tag with its signature and attestation tags and verifies offline (with the registry
/// repository as the signed identity), and so does the archive it writes.
#[test]
fn pulled_layout_and_archive_verify_offline() {
    let Some(pb) = Published::new("pulled_layout_and_archive_verify_offline") else {
        return;
    };
    let pulled = pb.t.path().join("pulled");
    let dest = format!("oci:{}:pulled", pulled.display());
    let out = pb.pull(&pb.p, &dest, &[]);
    assert!(out.status.success(), "{out:?}");
    let v = run(distro().args(["verify", &dest, "--key", &pb.p, "--identity", &pb.repo]));
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let mut l = Layout::open_dir(&pulled, false).unwrap();
    assert_eq!(l.manifest("pulled").unwrap().unwrap().digest, pb.digest);
    let mut tags = l.tags();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            "pulled".to_string(),
            format!("sha256-{}.att", pb.hex),
            format!("sha256-{}.sig", pb.hex)
        ]
    );
    let archive = pb.t.path().join("pulled.tar");
    let out = pb.pull(&pb.p, &format!("oci-archive:{}", archive.display()), &[]);
    assert!(out.status.success(), "{out:?}");
    ok(&[
        "verify",
        &format!("oci-archive:{}:0.1.0", archive.display()),
        "--key",
        &pb.p,
    ]);
}

/// A pull whose verification fails (another key) says so and that nothing was written, and
/// leaves no destination behind.
#[test]
fn pull_that_does_not_verify_writes_nothing() {
    let Some(pb) = Published::new("pull_that_does_not_verify_writes_nothing") else {
        return;
    };
    let wrong_dir = pb.t.path().join("wrong");
    std::fs::create_dir_all(&wrong_dir).unwrap();
    let (_, wrong_pub) = keygen_strings(&wrong_dir);
    let refused = pb.t.path().join("refused");
    let out = pb.pull(&wrong_pub, &format!("oci:{}", refused.display()), &[]);
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        err.contains("FAIL signature") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(
        !refused.exists(),
        "nothing may be written when verification fails"
    );
}

/// A layer blob corrupted in the registry's own storage is caught by its digest: verify fails
/// naming the layer, and a pull fails and writes nothing.
#[test]
fn blob_corrupted_in_registry_storage_is_caught() {
    let Some(pb) = Published::new("blob_corrupted_in_registry_storage_is_caught") else {
        return;
    };
    let layer = pb.images[0]["layers"][1]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let files = pb
        .reg
        .storage_files(&format!("blobs/sha256/{}/{layer}/data", &layer[..2]));
    assert_eq!(files.len(), 1, "layer blob in registry storage");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n / 3] ^= 0x55;
    std::fs::write(&files[0], bytes).unwrap();
    let out = run(distro().args([
        "verify",
        &pb.tagged,
        "--key",
        &pb.p,
        "--plain-http",
        "--attempts",
        "1",
    ]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL image") && l.contains(&layer)),
        "{text}"
    );
    let refused = pb.t.path().join("refused");
    let out = pb.pull(
        &pb.p,
        &format!("oci:{}", refused.display()),
        &["--attempts", "1"],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(!refused.exists());
}

/// A registry with TLS from a private CA and htpasswd basic auth: the CA must be given, the
/// password must be right (and comes from the environment), and then push, sign, attest and
/// verify work; skopeo reads the image with the same CA and credentials.
#[test]
fn tls_and_basic_auth_registry() {
    let Some(reg) = TestRegistry::start(
        RegistryConfig {
            tls: true,
            basic_auth: Some(("alice".into(), "s3cret pass".into())),
            ..Default::default()
        },
        "tls_and_basic_auth_registry",
    ) else {
        return;
    };
    let ca = reg.ca.clone().unwrap();
    let ca_s = ca.to_str().unwrap();
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 64 * 1024);
    fx.assemble();
    let (k, p) = keygen_strings(t.path());
    let repo = format!("{}/fips-mesh/mesh-proxy", reg.addr);
    let tagged = format!("{repo}:0.1.0");
    let src = fx.image_ref("mesh-proxy");

    let out = run(distro()
        .env("DISTRO_REGISTRY_PASSWORD", "s3cret pass")
        .args([
            "push",
            &src,
            &tagged,
            "--username",
            "alice",
            "--attempts",
            "1",
        ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("UnknownIssuer") && err.contains("--ca-file"),
        "{err}"
    );

    let out = run(distro().env("DISTRO_REGISTRY_PASSWORD", "wrong").args([
        "push",
        &src,
        &tagged,
        "--username",
        "alice",
        "--ca-file",
        ca_s,
        "--attempts",
        "1",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("401") && err.contains("DISTRO_REGISTRY_PASSWORD"),
        "{err}"
    );

    let out = run(distro().args(["push", &src, &tagged, "--ca-file", ca_s, "--attempts", "1"]));
    assert!(!out.status.success(), "anonymous push must be refused");

    let out = run(distro().args([
        "push",
        &src,
        &tagged,
        "--username",
        "alice",
        "--ca-file",
        ca_s,
    ]));
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("DISTRO_REGISTRY_PASSWORD"),
        "no password given"
    );

    push_sign_attest_verify(
        &fx,
        &src,
        &tagged,
        (k.as_str(), p.as_str()),
        "s3cret pass",
        &["--username", "alice", "--ca-file", ca_s],
    );
    // The password is read from stdin too, and never echoed.
    let out = distro_testsupport::bin::run_with_input(
        distro().args([
            "verify",
            &tagged,
            "--key",
            &p,
            "--username",
            "alice",
            "--password-stdin",
            "--ca-file",
            ca_s,
        ]),
        b"s3cret pass\n",
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        !all.contains("s3cret"),
        "the password must never be printed"
    );

    if have("skopeo", "tls_and_basic_auth_registry") {
        let certs = t.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
        skopeo(&[
            "inspect",
            "--creds",
            "alice:s3cret pass",
            "--cert-dir",
            certs.to_str().unwrap(),
            &format!("docker://{tagged}"),
        ]);
    }
}

/// Plain HTTP is refused for a registry that is not on a loopback address (no request is made).
#[test]
fn plain_http_refused_off_loopback() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 1024);
    fx.assemble();
    let err = fails(&[
        "push",
        &fx.image_ref("mesh-proxy"),
        "192.0.2.10:5000/fips-mesh/mesh-proxy:0.1.0",
        "--plain-http",
    ]);
    assert!(
        err.contains("plain HTTP to 192.0.2.10:5000 refused"),
        "{err}"
    );
    assert!(distro_images::registry::is_loopback("[::1]:5000"));
    assert!(distro_images::registry::is_loopback("localhost:5000"));
    assert!(!distro_images::registry::is_loopback("10.0.0.1:5000"));
}

/// A push started before the registry listens succeeds once it comes up: connection failures
/// are retried with backoff.
#[test]
fn push_retries_until_registry_starts() {
    if !have("docker-registry", "push_retries_until_registry_starts") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 16 * 1024);
    fx.assemble();
    let port = free_port();
    let child = distro()
        .args([
            "push",
            &fx.image_ref("mesh-proxy"),
            &format!("127.0.0.1:{port}/fips-mesh/mesh-proxy:0.1.0"),
            "--plain-http",
            "--attempts",
            "6",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Start the registry only once the push has seen it absent and said it retries: a fixed
    // sleep raced the debug binary's start-up on a loaded machine.
    let mut child = child;
    let stderr = child.stderr.take().unwrap();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("retrying") {
                let _ = seen_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    seen_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the push reports a retry while the registry is down");
    let reg = TestRegistry::start(
        RegistryConfig {
            port: Some(port),
            ..Default::default()
        },
        "push_retries_until_registry_starts",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("retrying"),
        "the first attempts must have failed and been retried: {err}"
    );
    let mut l = Layout::open_dir(&fx.layout("mesh-proxy"), false).unwrap();
    let d = l.manifest("0.1.0").unwrap().unwrap().digest;
    let m = Manifest::parse("m", &l.manifest("0.1.0").unwrap().unwrap().bytes).unwrap();
    assert!(!m.layers.is_empty());
    assert!(!reg
        .storage_files(&format!(
            "_manifests/revisions/sha256/{}",
            d.strip_prefix("sha256:").unwrap()
        ))
        .is_empty());
}

/// A registry with bearer-token auth (the CNCF token flow): `distro` gets a token from the
/// realm with basic credentials and pushes, signs, attests and verifies; a token given directly
/// in DISTRO_REGISTRY_TOKEN works too; wrong credentials are refused.
#[test]
fn bearer_token_registry() {
    if !have_python("cryptography", "bearer_token_registry")
        || !have("openssl", "bearer_token_registry")
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(t.path(), "bob", "tok3n pass");
    let Some(reg) = TestRegistry::start(
        RegistryConfig {
            token: Some((tokens.realm.clone(), tokens.cert.clone())),
            ..Default::default()
        },
        "bearer_token_registry",
    ) else {
        return;
    };
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 32 * 1024);
    fx.assemble();
    let (k, p) = keygen_strings(t.path());
    let tagged = format!("{}/fips-mesh/mesh-proxy:0.1.0", reg.addr);
    let src = fx.image_ref("mesh-proxy");

    let out = run(distro().args(["push", &src, &tagged, "--plain-http", "--attempts", "1"]));
    assert!(!out.status.success(), "anonymous push must be refused");
    let out = run(distro().env("DISTRO_REGISTRY_PASSWORD", "wrong").args([
        "push",
        &src,
        &tagged,
        "--plain-http",
        "--username",
        "bob",
        "--attempts",
        "1",
    ]));
    assert!(!out.status.success(), "wrong password must be refused");

    push_sign_attest_verify(
        &fx,
        &src,
        &tagged,
        (k.as_str(), p.as_str()),
        "tok3n pass",
        &["--username", "bob", "--plain-http"],
    );
    // A token obtained out of band, given as is.
    let scope = "repository:fips-mesh/mesh-proxy:pull";
    let out = run(Command::new("python3").arg("-c").arg(
        "import base64,json,sys,urllib.request as u; r=u.Request(sys.argv[1]); r.add_header('Authorization','Basic '+base64.b64encode(b'bob:tok3n pass').decode()); print(json.load(u.urlopen(r))['token'])",
    ).arg(format!("{}?service=distro-test&scope={scope}", tokens.realm)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = run(distro().env("DISTRO_REGISTRY_TOKEN", &token).args([
        "verify",
        &tagged,
        "--key",
        &p,
        "--plain-http",
    ]));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// skopeo's tags of `repo` in the test registry (independent of the code under test). The
/// registry answers 404 for the tag list of a repository that holds manifests but no tag: that
/// is no tags (the caller checks the repository holds the image by digest).
fn skopeo_tags(repo: &str) -> Vec<String> {
    let out = run(Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{repo}")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("fetching tags list") && stderr.contains("404") {
        return Vec::new();
    }
    assert!(
        out.status.success(),
        "skopeo list-tags {repo}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// Signs and attests `component`'s image in its layout (the build's documents) for the
/// repository `repo` it will be pushed to.
fn sign_and_attest_in_layout(fx: &Fixture, component: &str, key: &str, repo: &str) {
    let image = fx.image_ref(component);
    ok(&["sign", &image, "--key", key, "--identity", repo]);
    fx.attest(&image, key, component, &["--identity", repo]);
}

/// `push --release` publishes as `distro release` does: each image by digest, then its
/// signatures and attestations, and the tag only once the image verifies in the registry. An
/// unsigned image is pushed by digest and left untagged (skopeo sees no tag), and the command
/// exits 3 naming it and what to run; once it is signed and attested by digest, the same push
/// tags it. In one session the base layer both images share is uploaded once and mounted into
/// the second repository, and a second push sends nothing.
#[test]
fn push_release_tags_only_signed_attested_verified_images() {
    let test = "push_release_tags_only_signed_attested_verified_images";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (fx, images, k, p) = assembled_pair(t.path(), 64 * 1024);
    let to = format!("{}/fips-mesh", reg.addr);
    let line_dir = fx.line_dir.to_str().unwrap();
    // mesh-control is signed and attested in its layout, for the repository it goes to;
    // mesh-proxy is neither.
    let control_repo = format!("{to}/mesh-control");
    sign_and_attest_in_layout(&fx, "mesh-control", &k, &control_repo);
    let push = [
        "push",
        "--release",
        line_dir,
        "--to",
        &to,
        "--key",
        &p,
        "--plain-http",
        "--format",
        "json",
    ];
    let out = run(distro().args(push));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pushed = pushed.as_array().unwrap();
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    // Components are pushed in the release record's order (distro.toml's): mesh-proxy first,
    // then mesh-control, which mounts the base layer the first one uploaded.
    let (proxy, control) = (&pushed[0], &pushed[1]);
    assert_eq!(proxy["component"], "mesh-proxy");
    assert_eq!(proxy["blobs_mounted"], 0);
    assert_eq!(proxy["blobs_copied"], 3);
    assert_eq!(control["component"], "mesh-control");
    assert_eq!(
        control["blobs_mounted"], 1,
        "the shared base layer is mounted: {pushed:?}"
    );
    assert_eq!(control["digest"], images[1]["manifest_digest"]);
    assert_eq!(proxy["digest"], images[0]["manifest_digest"]);
    assert_eq!(control["tagged"], true, "{control}");
    assert_eq!(control["verification"]["passed"], true, "{control}");
    assert_eq!(proxy["tagged"], false, "{proxy}");
    let proxy_digest = proxy["digest"].as_str().unwrap();
    let proxy_by_digest = format!("{to}/mesh-proxy@{proxy_digest}");
    assert_eq!(proxy["by_digest"], proxy_by_digest.as_str());
    assert!(
        stderr.contains("refused: 1 of 2 image(s) do not verify")
            && stderr.contains(&format!(
                "mesh-proxy: {proxy_by_digest} is pushed by digest but not tagged 0.1.0"
            ))
            && stderr.contains("no signature for")
            && stderr.contains(&format!("distro sign {proxy_by_digest} --key KEY"))
            && stderr.contains(&format!(
                "distro attest {proxy_by_digest} --key KEY --build-dir {line_dir} --component mesh-proxy"
            )),
        "{stderr}"
    );
    if have("skopeo", test) {
        assert!(
            !skopeo_tags(&format!("{to}/mesh-proxy")).contains(&"0.1.0".to_string()),
            "the unsigned image has no tag"
        );
        assert!(skopeo_tags(&control_repo).contains(&"0.1.0".to_string()));
        // Pushed by digest all the same: the registry serves the manifest with that digest.
        let out = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{proxy_by_digest}"),
        ]);
        let raw = t.path().join("proxy-manifest.json");
        std::fs::write(&raw, &out.stdout).unwrap();
        assert_eq!(format!("sha256:{}", sha256_file(&raw)), proxy_digest);
    }
    let report = json_of(&[
        "verify",
        &format!("{control_repo}:0.1.0"),
        "--key",
        &p,
        "--plain-http",
    ]);
    assert_eq!(report["passed"], true, "{report}");

    // Signed and attested by digest, as the refusal says: the same push tags it, sending nothing.
    ok(&["sign", &proxy_by_digest, "--key", &k, "--plain-http"]);
    ok(&[
        "attest",
        &proxy_by_digest,
        "--key",
        &k,
        "--plain-http",
        "--build-dir",
        line_dir,
        "--component",
        "mesh-proxy",
    ]);
    let again = json_of(&push[..push.len() - 2]);
    let again = again.as_array().unwrap();
    assert!(
        again
            .iter()
            .all(|p| p["tagged"] == true && p["blobs_copied"] == 0),
        "{again:?}"
    );
    if have("skopeo", test) {
        assert!(skopeo_tags(&format!("{to}/mesh-proxy")).contains(&"0.1.0".to_string()));
        let inspect = skopeo_json(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{to}/mesh-proxy:0.1.0"),
        ]);
        assert_eq!(inspect["Digest"], proxy_digest);
    }
}

/// `distro push SRC DEST:TAG --key PUB` publishes one image as a release does: an unsigned one
/// is pushed by digest, left untagged (skopeo sees no tag) and refused with exit 3 naming the
/// digest and what to run; once it is signed and attested in its layout for the repository,
/// the same push moves the tag, sending no blob again, and the tag verifies in the registry.
/// Without --key the tag moves unverified, with a warning when the image has no signature there.
#[test]
fn push_with_key_tags_one_image_only_once_it_verifies() {
    let test = "push_with_key_tags_one_image_only_once_it_verifies";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (fx, images, k, p) = assembled_pair(t.path(), 16 * 1024);
    let repo = format!("{}/fips-mesh/mesh-proxy", reg.addr);
    let tagged = format!("{repo}:0.1.0");
    let src = fx.image_ref("mesh-proxy");
    let push = [
        "push",
        &src,
        &tagged,
        "--key",
        &p,
        "--plain-http",
        "--format",
        "json",
    ];
    let out = run(distro().args(push));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = images[0]["manifest_digest"].as_str().unwrap();
    let by_digest = format!("{repo}@{digest}");
    assert_eq!(first["tagged"], false, "{first}");
    assert_eq!(first["digest"], digest);
    assert_eq!(first["by_digest"], by_digest.as_str());
    assert!(
        stderr.contains(&format!(
            "{by_digest} is pushed by digest but does not verify"
        )) && stderr.contains(&format!("{tagged} was not moved"))
            && stderr.contains("no signature for")
            && stderr.contains(&format!("distro sign {by_digest} --key KEY")),
        "{stderr}"
    );
    if have("skopeo", test) {
        assert!(
            !skopeo_tags(&repo).contains(&"0.1.0".to_string()),
            "the unsigned image has no tag"
        );
    }

    sign_and_attest_in_layout(&fx, "mesh-proxy", &k, &repo);
    let second = json_of(&push[..push.len() - 2]);
    assert_eq!(second["tagged"], true, "{second}");
    assert_eq!(second["verification"]["passed"], true, "{second}");
    assert!(
        second["blobs_present"].as_u64().unwrap() >= 3,
        "the image's config and layers are not sent again: {second}"
    );
    if have("skopeo", test) {
        assert!(skopeo_tags(&repo).contains(&"0.1.0".to_string()));
    }
    let report = json_of(&["verify", &tagged, "--key", &p, "--plain-http"]);
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["digest"], digest);

    // No key: the tag moves after the (absent) signatures, and the unsigned source is named.
    let control = format!("{}/fips-mesh/mesh-control:0.1.0", reg.addr);
    let out = run(distro().args([
        "push",
        &fx.image_ref("mesh-control"),
        &control,
        "--plain-http",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{control} now names an image with no signature there"
        )),
        "{stderr}"
    );
}

/// `push --release` pushes the layouts the line's release record names (which `distro image`
/// wrote), and refuses a layout whose manifest is not the recorded one, naming the image and
/// what to rerun, before anything is pushed.
#[test]
fn push_release_pushes_the_recorded_layouts_and_refuses_a_changed_one() {
    let test = "push_release_pushes_the_recorded_layouts_and_refuses_a_changed_one";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (fx, _, _, p) = assembled_pair(t.path(), 16 * 1024);
    let record_path = fx.line_dir.join("release.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    assert_eq!(
        record["components"][0]["image"]["layout"]["path"],
        fx.layout("mesh-proxy").display().to_string(),
        "`distro image` records the layout it wrote"
    );
    record["components"][0]["image"]["layout"]["sha256"] = Value::from("0".repeat(64));
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    let out = run(distro().args([
        "push",
        "--release",
        fx.line_dir.to_str().unwrap(),
        "--to",
        &format!("{}/fips-mesh", reg.addr),
        "--key",
        &p,
        "--plain-http",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the image of mesh-proxy at")
            && err.contains("it changed after it was recorded")
            && err.contains("rerun `distro image --line 0.1`"),
        "{err}"
    );
    let (status, catalog) =
        distro_testsupport::http::get(reg.addr.parse().unwrap(), "/v2/_catalog").unwrap();
    assert_eq!(status, 200, "{catalog}");
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    assert_eq!(
        catalog["repositories"].as_array().map_or(0, Vec::len),
        0,
        "nothing may be pushed: {catalog}"
    );
}
