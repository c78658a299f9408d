//! Regression tests of the verification defects found by black-box probing (issue 16, items
//! 8-11; issue 14, item 9): which attestation decides, duplicate attestations on resume, pulls
//! that trusted damaged blobs, key pairs lost or split by `keygen`, unbounded reads of blobs
//! and of `distro.toml`, and containers-policy identity matching. Registry tests run Debian's
//! `docker-registry` on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod image_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distro_images::oci::{Descriptor, Manifest, MEDIA_LAYER_GZIP, MEDIA_MANIFEST};
use distro_images::store::{Layout, Store};
use image_support::*;
use serde_json::{json, Value};

fn attestation_count(report: &Value) -> usize {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("attestation "))
        .count()
}

/// An OpenVEX document of the fixture's shape with one statement of `status`, issued at `ts`.
fn vex_doc(status: &str, ts: &str) -> Value {
    let mut v = vex("mesh-proxy", status);
    v["timestamp"] = json!(ts);
    v
}

/// `distro` with a wall-clock limit (coreutils `timeout`), so a read that blocks fails the
/// test instead of hanging it.
fn distro_within(secs: u32, args: &[&str]) -> Output {
    let out = run(Command::new("timeout")
        .arg(secs.to_string())
        .arg(env!("CARGO_BIN_EXE_distro"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn"));
    assert_ne!(
        out.status.code(),
        Some(124),
        "distro {} did not finish within {secs} s",
        args.join(" ")
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A plain registry (`None` after a SKIP line when docker-registry is missing: a failure under
/// CI) and [`pushed_signed_attested`] to it.
#[allow(clippy::type_complexity)]
fn released(
    test: &str,
) -> Option<(
    TestRegistry,
    Fixture,
    String,
    String,
    String,
    tempfile::TempDir,
)> {
    let reg = TestRegistry::plain(test)?;
    let (fx, tagged, k, p, t) = pushed_signed_attested(&reg);
    Some((reg, fx, tagged, k, p, t))
}

/// A fixture image pushed to `reg`, signed and attested from the fixture's build directory.
/// Returns (fixture, tagged reference, key, public key, tempdir).
fn pushed_signed_attested(
    reg: &TestRegistry,
) -> (Fixture, String, String, String, tempfile::TempDir) {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 64 * 1024);
    fx.assemble();
    let (k, p) = keygen_strings(t.path());
    let tagged = format!("{}/fips-mesh/mesh-proxy:0.1.0", reg.addr);
    ok(&["push", &fx.image_ref("mesh-proxy"), &tagged, "--plain-http"]);
    ok(&["sign", &tagged, "--key", &k, "--plain-http"]);
    fx.attest(&tagged, &k, "mesh-proxy", &["--plain-http"]);
    (fx, tagged, k, p, t)
}

fn attest_vex(image: &str, key: &str, file: &Path) -> Value {
    json_of(&[
        "attest",
        image,
        "--key",
        key,
        "--plain-http",
        "--vex",
        file.to_str().unwrap(),
    ])
}

/// Issue 16.8: every OpenVEX attestation is evaluated and the newest by the document's own
/// time decides: a newer `affected` one fails verify (it used to be ignored, exit 0), a newer
/// clean one clears it, and an older `affected` attached later does not mask the newer clean one.
#[test]
fn verify_lets_the_newest_vex_decide_not_the_oldest() {
    let test = "verify_lets_the_newest_vex_decide_not_the_oldest";
    let Some((_reg, _fx, tagged, k, p, t)) = released(test) else {
        return;
    };
    let (passed, report) = verify_json(&[&tagged, "--key", &p, "--plain-http"]);
    assert!(passed, "{report}");

    let affected = t.path().join("affected.openvex.json");
    write_json(&affected, &vex_doc("affected", "2026-01-01T00:00:00Z"));
    let out = attest_vex(&tagged, &k, &affected);
    assert_eq!(out["attestations"][0]["added"], true, "{out}");
    let affected_layer = out["attestations"][0]["layer_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (passed, report) = verify_json(&[&tagged, "--key", &p, "--plain-http"]);
    assert!(!passed, "a newer affected VEX must fail verify: {report}");
    let vex = check(&report, "policy vex");
    let detail = vex["detail"].as_str().unwrap();
    assert!(
        detail.contains("RUSTSEC-2024-0336 (affected)")
            && detail.contains("newest of 2")
            && detail.contains(&affected_layer),
        "the check names the deciding document: {detail}"
    );

    let fixed = t.path().join("fixed.openvex.json");
    write_json(&fixed, &vex_doc("fixed", "2026-02-01T00:00:00Z"));
    attest_vex(&tagged, &k, &fixed);
    let (passed, report) = verify_json(&[&tagged, "--key", &p, "--plain-http"]);
    assert!(
        passed,
        "a newer clean VEX clears the older affected one: {report}"
    );
    let detail = check(&report, "policy vex")["detail"].as_str().unwrap();
    assert!(
        detail.contains("newest of 3") && detail.contains("2026-02-01T00:00:00Z"),
        "{detail}"
    );

    // Attached last but issued earlier: the document's own time decides, not the order.
    let stale = t.path().join("stale.openvex.json");
    write_json(&stale, &vex_doc("affected", "2025-06-01T00:00:00Z"));
    assert_eq!(
        attest_vex(&tagged, &k, &stale)["attestations"][0]["added"],
        true
    );
    let (passed, report) = verify_json(&[&tagged, "--key", &p, "--plain-http"]);
    assert!(
        passed,
        "an older affected VEX attached later masks nothing: {report}"
    );
    assert!(check(&report, "policy vex")["detail"]
        .as_str()
        .unwrap()
        .contains("newest of 4"));
}

/// Issue 16.8: a resumed release attests the same documents again, with the VEX regenerated
/// under a new timestamp; nothing is appended (it used to add one VEX attestation per run) and
/// the command says so.
#[test]
fn attest_on_resume_appends_no_duplicate_vex() {
    let test = "attest_on_resume_appends_no_duplicate_vex";
    let Some((_reg, fx, tagged, k, p, _t)) = released(test) else {
        return;
    };
    let (_, before) = verify_json(&[&tagged, "--key", &p, "--plain-http"]);
    let n = attestation_count(&before);
    assert_eq!(n, 4, "fips, provenance, sbom, vex: {before}");

    // What a resumed release does: `distro patches vex` stamps the document again.
    // The resumed release records the re-stamped document.
    let vex_file = fx.vex_path();
    write_json(&vex_file, &vex_doc("fixed", "2026-03-01T12:00:00Z"));
    fx.record();
    let args = [
        "attest",
        &tagged,
        "--key",
        &k,
        "--plain-http",
        "--build-dir",
        fx.line_dir.to_str().unwrap(),
        "--component",
        "mesh-proxy",
    ];
    let again = json_of(&args);
    for a in again["attestations"].as_array().unwrap() {
        assert_eq!(a["added"], false, "nothing new to attest: {again}");
    }
    let out = ok(&args);
    assert!(
        out.contains("already attested, nothing added")
            && out.contains("only its timestamp differs"),
        "{out}"
    );
    let (passed, after) = verify_json(&[&tagged, "--key", &p, "--plain-http"]);
    assert!(passed, "{after}");
    assert_eq!(attestation_count(&after), n, "no duplicate: {after}");

    // A VEX that says something else is attached.
    write_json(&vex_file, &vex_doc("not_affected", "2026-03-02T00:00:00Z"));
    fx.record();
    let changed = json_of(&args);
    let added: Vec<&Value> = changed["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["added"] == true)
        .collect();
    assert_eq!(added.len(), 1, "{changed}");
    assert_eq!(added[0]["predicate_type"], "https://openvex.dev/ns/v0.2.0");
}

/// Issue 16.9: after a layer of a pulled layout is corrupted in place, a second pull repairs it
/// (it used to print "verified… wrote" and leave the layout failing `verify`), and a blob
/// replaced by a link to /dev/zero is replaced too.
#[test]
fn pull_repairs_a_blob_corrupted_in_place() {
    let test = "pull_repairs_a_blob_corrupted_in_place";
    let Some((_reg, _fx, tagged, _k, p, t)) = released(test) else {
        return;
    };
    let dir = t.path().join("pulled");
    let dest = format!("oci:{}:0.1.0", dir.display());
    ok(&["pull", &tagged, "--out", &dest, "--key", &p, "--plain-http"]);
    let (passed, report) = verify_json(&[&dest, "--key", &p]);
    assert!(passed, "{report}");

    // The largest blob is the binary's layer.
    let blobs = dir.join("blobs/sha256");
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.metadata().unwrap().len(), e.path())
        })
        .collect();
    files.sort();
    let layer = files.last().unwrap().1.clone();
    let mut data = std::fs::read(&layer).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&layer, &data).unwrap();
    let (passed, report) = verify_json(&[&dest, "--key", &p]);
    assert!(!passed, "the corruption is seen: {report}");

    let out = run(distro().args(["pull", &tagged, "--out", &dest, "--key", &p, "--plain-http"]));
    assert!(out.status.success(), "{}", text(&out));
    let name = layer.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text(&out).contains("repaired blob") && text(&out).contains(&name),
        "the pull says which blob it repaired: {}",
        text(&out)
    );
    let (passed, report) = verify_json(&[&dest, "--key", &p]);
    assert!(
        passed,
        "the layout verifies after the second pull: {report}"
    );

    std::fs::remove_file(&layer).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &layer).unwrap();
    let out = distro_within(
        60,
        &["pull", &tagged, "--out", &dest, "--key", &p, "--plain-http"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::symlink_metadata(&layer).unwrap().is_file());
    let (passed, report) = verify_json(&[&dest, "--key", &p]);
    assert!(passed, "{report}");
}

/// Issue 16.10: `keygen --private X --public X` (also spelled `./X`, or two hard links to one
/// file) is refused; it used to exit 0 leaving only the public key in X.
#[test]
fn keygen_refuses_one_file_for_both_keys() {
    let t = tempfile::tempdir().unwrap();
    let x = t.path().join("key.pem");
    let err = keygen_fails(false, x.to_str().unwrap(), x.to_str().unwrap());
    assert!(err.contains("are the same file"), "{err}");
    assert!(!x.exists(), "nothing written");

    let dotted = t.path().join(".").join("key.pem");
    let err = keygen_fails(false, x.to_str().unwrap(), dotted.to_str().unwrap());
    assert!(err.contains("are the same file"), "{err}");

    let (k, _) = keygen_strings(t.path());
    let before = std::fs::read(&k).unwrap();
    let link = t.path().join("hardlink.pub");
    std::fs::hard_link(&k, &link).unwrap();
    let err = keygen_fails(true, &k, link.to_str().unwrap());
    assert!(err.contains("are the same file"), "{err}");
    assert_eq!(std::fs::read(&k).unwrap(), before, "private key untouched");
}

/// `distro keygen [--force] --private PRIVATE --public PUBLIC`, asserting failure; its output.
fn keygen_fails(force: bool, private: &str, public: &str) -> String {
    let mut args = vec!["keygen"];
    if force {
        args.push("--force");
    }
    args.extend(["--private", private, "--public", public]);
    fails(&args)
}

/// The SPKI PEM openssl derives from a private key file, without line breaks.
fn public_of(private: &str) -> String {
    let out = run(Command::new("openssl").args(["pkey", "-in", private, "-pubout"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pem_text(&out.stdout)
}

/// PEM text without line breaks (the pem crate writes CRLF, openssl LF).
fn pem_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace(['\r', '\n'], "")
}

/// Issue 16.10: with `--force` and a `--public` that cannot be written, the old pair stays as
/// it was and still matches, and no temporary file is left (the private key used to be
/// replaced first, splitting the pair).
#[test]
fn keygen_force_with_unwritable_public_keeps_the_old_pair() {
    let test = "keygen_force_with_unwritable_public_keeps_the_old_pair";
    if !have("openssl", test) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (k, p) = keygen_strings(t.path());
    let (old_k, old_p) = (std::fs::read(&k).unwrap(), std::fs::read(&p).unwrap());
    assert_eq!(public_of(&k), pem_text(&old_p));
    let listing = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing(t.path());

    // A path under a regular file cannot be created, not even by root.
    let blocker = t.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let unwritable = blocker.join("release.pub");
    let err = keygen_fails(true, &k, unwritable.to_str().unwrap());
    assert!(err.contains("not-a-dir"), "the error names the path: {err}");
    assert_eq!(std::fs::read(&k).unwrap(), old_k, "private key untouched");
    assert_eq!(std::fs::read(&p).unwrap(), old_p);
    assert_eq!(public_of(&k), pem_text(&old_p), "the pair still matches");
    let mut after = listing(t.path());
    after.retain(|n| n != "not-a-dir");
    assert_eq!(after, before, "no temporary file left");

    // And a forced keygen that can write both replaces both, as a matching pair, 0600/0644.
    ok(&["keygen", "--force", "--private", &k, "--public", &p]);
    assert_ne!(std::fs::read(&k).unwrap(), old_k);
    assert_eq!(public_of(&k), pem_text(&std::fs::read(&p).unwrap()));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

const ID: &str = "registry.example.invalid/fips-mesh/mesh-proxy";

/// A signed and attested layout of the fixture; (fixture, image ref, key, public key).
fn signed_layout(root: &Path) -> (Fixture, String, String, String) {
    let fx = Fixture::write(root, &["mesh-proxy"], 64 * 1024);
    fx.assemble();
    let (k, p) = keygen_strings(root);
    let img = fx.image_ref("mesh-proxy");
    sign_and_attest(&fx, &img, &k);
    (fx, img, k, p)
}

fn sign_and_attest(fx: &Fixture, img: &str, k: &str) {
    ok(&["sign", img, "--key", k, "--identity", ID]);
    fx.attest(img, k, "mesh-proxy", &["--identity", ID]);
}

/// The file of the image's largest layer in a layout.
fn largest_layer(layout: &Path) -> PathBuf {
    let mut l = Layout::open_dir(layout, false).unwrap();
    let m = l.manifest("0.1.0").unwrap().unwrap();
    let m = Manifest::parse("test", &m.bytes).unwrap();
    let big = m.layers.iter().max_by_key(|d| d.size).unwrap();
    layout
        .join("blobs/sha256")
        .join(big.digest.strip_prefix("sha256:").unwrap())
}

/// Issue 16.11: a layer blob that is a FIFO or a link to /dev/zero is refused at once with an
/// error naming the file (a FIFO used to hang verify for minutes, /dev/zero to exhaust memory).
#[test]
fn verify_refuses_fifo_and_dev_zero_blobs_naming_them() {
    let test = "verify_refuses_fifo_and_dev_zero_blobs_naming_them";
    if !have("mkfifo", test) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (fx, img, _k, p) = signed_layout(t.path());
    let (passed, report) = verify_json(&[&img, "--key", &p]);
    assert!(passed, "{report}");
    let layer = largest_layer(&fx.layout("mesh-proxy"));
    let name = layer.file_name().unwrap().to_string_lossy().into_owned();

    std::fs::remove_file(&layer).unwrap();
    let st = Command::new("mkfifo").arg(&layer).status().unwrap();
    assert!(st.success());
    let out = distro_within(20, &["verify", &img, "--key", &p]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&name) && text(&out).contains("FIFO"),
        "{}",
        text(&out)
    );

    std::fs::remove_file(&layer).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &layer).unwrap();
    let out = distro_within(20, &["verify", &img, "--key", &p]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&name) && text(&out).contains("symbolic link"),
        "{}",
        text(&out)
    );
}

/// Issue 16.11: a signed image with a gzip bomb layer (64 KiB compressed, 64 MiB of zeros) is
/// refused by the FIPS check's decompression limits (the policy's cap, here 16 MiB, and by
/// default the ratio guard) instead of being decompressed without end.
#[test]
fn verify_caps_a_gzip_bomb_layer() {
    let test = "verify_caps_a_gzip_bomb_layer";
    if !have("gzip", test) || !have("tar", test) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 64 * 1024);
    fx.assemble();
    let (k, p) = keygen_strings(t.path());
    let layout = fx.layout("mesh-proxy");

    let work = t.path().join("bomb");
    std::fs::create_dir_all(&work).unwrap();
    let sh = run(Command::new("sh")
        .arg("-ec")
        .arg("head -c 67108864 /dev/zero > zeros && tar -cf - zeros | gzip -9 > layer.tar.gz && rm zeros")
        .current_dir(&work));
    assert!(
        sh.status.success(),
        "{}",
        String::from_utf8_lossy(&sh.stderr)
    );
    let gz = std::fs::read(work.join("layer.tar.gz")).unwrap();
    assert!(gz.len() < 1 << 20, "the bomb is small: {} bytes", gz.len());

    let mut l = Layout::open_dir(&layout, false).unwrap();
    let m = l.manifest("0.1.0").unwrap().unwrap();
    let mut manifest = Manifest::parse("fixture", &m.bytes).unwrap();
    let bomb = Descriptor::of(MEDIA_LAYER_GZIP, &gz);
    l.put_blob(&bomb.digest, &gz).unwrap();
    manifest.layers.push(bomb.clone());
    l.put_manifest(Some("0.1.0"), &manifest.to_bytes(), MEDIA_MANIFEST)
        .unwrap();
    let img = fx.image_ref("mesh-proxy");
    sign_and_attest(&fx, &img, &k);

    let policy = t.path().join("policy.toml");
    std::fs::write(
        &policy,
        "max_uncompressed_bytes = 16777216\nmax_compression_ratio = 100000\n",
    )
    .unwrap();
    let (passed, report) = verify_json(&[&img, "--key", &p, "--policy", policy.to_str().unwrap()]);
    assert!(!passed, "{report}");
    let fips = check(&report, "policy fips")["detail"].as_str().unwrap();
    assert!(
        fips.contains(&bomb.digest) && fips.contains("past the limit of 16777216"),
        "{fips}"
    );

    let (passed, report) = verify_json(&[&img, "--key", &p]);
    assert!(!passed, "{report}");
    let fips = check(&report, "policy fips")["detail"].as_str().unwrap();
    assert!(
        fips.contains(&bomb.digest) && fips.contains("decompression bomb"),
        "{fips}"
    );
    // Every other check still holds: the image is signed and its blobs are intact.
    assert_eq!(check(&report, "signature")["ok"], true, "{report}");
    assert_eq!(check(&report, "image")["ok"], true, "{report}");
}

/// Issue 16.11: `distro --config FIFO` fails at once naming the file (it used to block until a
/// writer came).
#[test]
fn distro_toml_that_is_a_fifo_fails_fast() {
    let test = "distro_toml_that_is_a_fifo_fails_fast";
    if !have("mkfifo", test) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("distro.toml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = distro_within(20, &["--config", fifo.to_str().unwrap(), "matrix"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&fifo.display().to_string()) && text(&out).contains("FIFO"),
        "{}",
        text(&out)
    );
}

/// Issue 14.9: `--identity` follows containers-policy: a signature naming `REPO:TAG` (as
/// podman and skopeo sign) matches that tag and not another, one naming the bare repository
/// matches any tag, and digests are matched exactly.
#[test]
fn verify_identity_follows_containers_policy() {
    let test = "verify_identity_follows_containers_policy";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::write(t.path(), &["mesh-proxy"], 64 * 1024);
    fx.assemble();
    let (k, p) = keygen_strings(t.path());
    let repo = format!("{}/fips-mesh/mesh-proxy", reg.addr);
    let tagged = format!("{repo}:0.1.0");
    let other_tag = format!("{repo}:other");
    ok(&["push", &fx.image_ref("mesh-proxy"), &tagged, "--plain-http"]);
    ok(&[
        "push",
        &fx.image_ref("mesh-proxy"),
        &other_tag,
        "--plain-http",
    ]);
    // Signed the way podman signs: the identity names the tag.
    ok(&[
        "sign",
        &tagged,
        "--key",
        &k,
        "--plain-http",
        "--identity",
        &tagged,
    ]);
    fx.attest(&tagged, &k, "mesh-proxy", &["--plain-http"]);
    let (passed, report) = verify_json(&[&tagged, "--key", &p, "--plain-http"]);
    assert!(
        passed,
        "a signature for REPO:TAG matches that tag: {report}"
    );
    let digest = report["digest"].as_str().unwrap().to_string();
    let by_digest = format!("{repo}@{digest}");
    let (passed, report) = verify_json(&[&by_digest, "--key", &p, "--plain-http"]);
    assert!(
        passed,
        "by digest, any tag of the repository matches: {report}"
    );
    let (passed, report) =
        verify_json(&[&tagged, "--key", &p, "--plain-http", "--identity", &repo]);
    assert!(passed, "--identity REPO accepts any tag: {report}");

    let (passed, report) = verify_json(&[&other_tag, "--key", &p, "--plain-http"]);
    assert!(
        !passed,
        "a signature for :0.1.0 does not match :other: {report}"
    );
    let sig = check(&report, "signature")["detail"].as_str().unwrap();
    assert!(sig.contains("is for tag `0.1.0`, not `other`"), "{sig}");
    let (passed, report) = verify_json(&[
        &tagged,
        "--key",
        &p,
        "--plain-http",
        "--identity",
        &format!("{}/fips-mesh/mesh-control", reg.addr),
    ]);
    assert!(!passed, "another repository does not match: {report}");
    let wrong_digest = format!("{repo}@sha256:{}", "0".repeat(64));
    let (passed, report) = verify_json(&[
        &tagged,
        "--key",
        &p,
        "--plain-http",
        "--identity",
        &wrong_digest,
    ]);
    assert!(
        !passed,
        "an identity naming another digest does not match: {report}"
    );

    // A signature naming the bare repository matches every tag of it.
    let t2 = tempfile::tempdir().unwrap();
    let (k2, p2) = keygen_strings(t2.path());
    ok(&[
        "sign",
        &other_tag,
        "--key",
        &k2,
        "--plain-http",
        "--identity",
        &repo,
    ]);
    let (_, report) = verify_json(&[&other_tag, "--key", &p2, "--plain-http"]);
    assert_eq!(check(&report, "signature")["ok"], true, "{report}");
}

/// The fenced block that follows `<!-- test: NAME -->` in images/VERIFYING.md.
fn doc_block(name: &str) -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/VERIFYING.md"),
    )
    .unwrap();
    let marker = format!("<!-- test: {name} -->");
    let rest = &doc[doc.find(&marker).unwrap_or_else(|| panic!("no {marker}"))..];
    let body = &rest[rest.find("```").unwrap()..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// Issue 14.9: the policy.json and registries.d of images/VERIFYING.md load in Debian's skopeo
/// against a signed image in a local registry. That skopeo has sigstore support removed, so
/// the furthest it can get is refusing the image for exactly that reason (a malformed policy
/// fails earlier, when loading); an image outside the policy's scope is refused by its
/// `default: reject`.
#[test]
fn containers_policy_in_verifying_md_loads_in_skopeo() {
    let test = "containers_policy_in_verifying_md_loads_in_skopeo";
    if !have("skopeo", test) {
        return;
    }
    let Some((reg, fx, tagged, _k, p, t)) = released(test) else {
        return;
    };
    let elsewhere = format!("{}/elsewhere/mesh-proxy:0.1.0", reg.addr);
    ok(&[
        "push",
        &fx.image_ref("mesh-proxy"),
        &elsewhere,
        "--plain-http",
    ]);

    let policy: Value = serde_json::from_str(
        &doc_block("policy.json")
            .replace("registry.example.com:5000", &reg.addr)
            .replace("/etc/containers/keys/fips-mesh-release.pub", &p),
    )
    .expect("the documented policy.json is JSON");
    let scope = format!("{}/fips-mesh", reg.addr);
    assert_eq!(
        policy["transports"]["docker"][&scope][0]["signedIdentity"]["type"],
        "matchRepository"
    );
    let policy_file = t.path().join("policy.json");
    write_json(&policy_file, &policy);
    let regd = t.path().join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    let yaml = doc_block("registries.d").replace("registry.example.com:5000", &reg.addr);
    assert!(yaml.contains("use-sigstore-attachments: true"), "{yaml}");
    std::fs::write(regd.join("fips-mesh.yaml"), yaml).unwrap();

    let copy = |policy: &Path, image: &str, dest: &str| {
        let out = run(Command::new("skopeo")
            .arg("--policy")
            .arg(policy)
            .arg("--registries.d")
            .arg(&regd)
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("oci:{}:x", t.path().join(dest).display())));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (copied, err) = copy(&policy_file, &tagged, "in-scope");
    assert!(
        !copied,
        "Debian's skopeo cannot check sigstore signatures: {err}"
    );
    assert!(
        !err.contains("Error loading trust policy") && !err.contains("invalid policy"),
        "the documented policy loads: {err}"
    );
    assert!(
        err.contains("Source image rejected") && err.contains("sigstore"),
        "refused for the documented reason, by the sigstoreSigned requirement: {err}"
    );
    let (copied, err) = copy(&policy_file, &elsewhere, "out-of-scope");
    assert!(!copied);
    assert!(
        err.contains("Source image rejected") && err.contains("rejected by policy"),
        "outside the scope the default rule rejects: {err}"
    );

    // The same check sees a broken policy (so the assertions above are not vacuous).
    let mut broken = policy.clone();
    broken["transports"]["docker"][&scope][0]["signedIdentity"]["type"] = json!("matchRepositry");
    let broken_file = t.path().join("broken.json");
    write_json(&broken_file, &broken);
    let (_, err) = copy(&broken_file, &tagged, "broken");
    assert!(err.contains("Error loading trust policy"), "{err}");
}
