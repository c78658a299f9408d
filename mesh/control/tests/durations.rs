//! Out-of-range durations are refused with an error naming the flag, never a panic; a failed
//! rotation leaves no orphan CA key; a join token is used up only when its SVID was issued,
//! and exactly once under concurrent requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use mesh_core::api::reason;
use mesh_core::identity::{generate_csr, SpiffeId};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts a refused command: non-zero exit, no panic, and a message naming `flag`.
fn assert_refused_naming(out: &std::process::Output, flag: &str) {
    let t = text(out);
    assert!(!out.status.success(), "accepted: {t}");
    assert!(!t.contains("panicked"), "panicked: {t}");
    assert_ne!(out.status.code(), Some(101), "exit 101 is a panic: {t}");
    assert!(
        t.contains(flag) && t.contains("out of range"),
        "the error must name {flag}: {t}"
    );
}

/// Runs `cmd` to completion, or kills it after `limit` and fails: a `run` that accepted an
/// out-of-range flag starts serving and would never exit.
fn output_within(
    mut cmd: Command,
    out_dir: &std::path::Path,
    limit: Duration,
) -> std::process::Output {
    let n = free_port();
    let (o, e) = (
        out_dir.join(format!("out-{n}")),
        out_dir.join(format!("err-{n}")),
    );
    let mut child = cmd
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?}: the value was accepted: {}",
                std::fs::read_to_string(&e).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&o).unwrap(),
        stderr: std::fs::read(&e).unwrap(),
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `token create --ttl 100000000h` (and 0s, and a number beyond u64) is refused naming
/// `--ttl`, without a panic and without writing a token.
#[test]
fn token_create_huge_ttl_is_refused_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = Command::new(BIN)
        .args(["ca", "init", "--trust-domain", TD, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for ttl in ["100000000h", "0s", "99999999999999999999999m", "31d"] {
        let out = Command::new(BIN)
            .args([
                "token",
                "create",
                "--identity",
                "spiffe://example.org/ns/a/sa/b",
            ])
            .args(["--ttl", ttl, "--state-dir"])
            .arg(&state)
            .output()
            .unwrap();
        assert_refused_naming(&out, "--ttl");
    }
    assert!(
        files_in(&state.join("tokens")).is_empty(),
        "a token was written"
    );
}

/// `ca rotate --overlap 100000000h` is refused naming `--overlap`, without a panic, and leaves
/// the CA directory exactly as it was: no orphan key of a generation state.json does not know.
#[test]
fn ca_rotate_huge_overlap_is_refused_and_leaves_no_orphan_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = Command::new(BIN)
        .args(["ca", "init", "--trust-domain", TD, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let before = files_in(&state.join("ca"));
    let state_json = std::fs::read(state.join("ca/state.json")).unwrap();
    for overlap in ["100000000h", "0s", "99999999999999999999999h"] {
        let out = Command::new(BIN)
            .args(["ca", "rotate", "--overlap", overlap, "--state-dir"])
            .arg(&state)
            .output()
            .unwrap();
        assert_refused_naming(&out, "--overlap");
        assert_eq!(files_in(&state.join("ca")), before, "orphan files left");
        assert_eq!(
            std::fs::read(state.join("ca/state.json")).unwrap(),
            state_json
        );
    }
    // A valid rotation still works afterwards, and is generation 2.
    let out = Command::new(BIN)
        .args(["ca", "rotate", "--overlap", "1h", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(files_in(&state.join("ca")).contains(&"2.key.pem".to_string()));
}

/// `run --svid-ttl 100000000h` and `--svid-ttl 0s` are refused at start, naming the flag,
/// instead of panicking on every bootstrap or issuing certificates that expire at issuance.
#[test]
fn run_out_of_range_svid_ttl_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for ttl in ["100000000h", "0s", "8d"] {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--trust-domain", TD, "--svid-ttl", ttl])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--ops", &format!("127.0.0.1:{}", free_port())])
            .arg("--state-dir")
            .arg(dir.path().join("state"));
        let out = output_within(cmd, dir.path(), Duration::from_secs(15));
        assert_refused_naming(&out, "--svid-ttl");
    }
    for flag in [
        "--long-poll",
        "--watch-interval",
        "--body-read-timeout",
        "--header-read-timeout",
        "--handshake-timeout",
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--trust-domain", TD, flag, "0s", "--state-dir"])
            .arg(dir.path().join("state"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--ops", &format!("127.0.0.1:{}", free_port())]);
        let out = output_within(cmd, dir.path(), Duration::from_secs(15));
        assert_refused_naming(&out, flag);
    }
}

/// A service-account token whose `exp` is i64::MIN and `nbf` i64::MAX (time arithmetic at the
/// edges) is refused as expired; the control plane keeps serving.
#[test]
fn sa_token_with_extreme_times_is_refused_without_panic() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let dir = tempfile::tempdir().unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let spki = key.public_key().as_der().unwrap();
    let pub_pem = dir.path().join("sa.pub.pem");
    std::fs::write(
        &pub_pem,
        mesh_core::identity::pem_encode("PUBLIC KEY", spki.as_ref()),
    )
    .unwrap();
    let cp = ControlPlane::start(dir.path(), &["--sa-issuer-key", pub_pem.to_str().unwrap()]);
    let sign = |claims: serde_json::Value| {
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{h}.{c}");
        let sig = key.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    let id = "spiffe://example.org/ns/shop/sa/edge";
    let csr = generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let base = serde_json::json!({ "sub": "system:serviceaccount:shop:edge", "aud": TD });
    let mut expired = base.clone();
    expired["exp"] = i64::MIN.into();
    let r = bootstrap_raw(&cp, &sign(expired), &csr.csr_pem);
    assert_eq!(
        r.reason(),
        reason::TOKEN_EXPIRED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let mut future = base.clone();
    future["exp"] = i64::MAX.into();
    future["nbf"] = i64::MAX.into();
    let r = bootstrap_raw(&cp, &sign(future), &csr.csr_pem);
    assert_eq!(
        r.reason(),
        reason::TOKEN_INVALID,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(cp.issued_on_record(), 0);
    assert!(!cp.log_text().contains("panicked"), "{}", cp.log_text());
}

/// When issuance fails (the issued/ record cannot be written), the join token is not used up:
/// once the state directory is repaired, the same token bootstraps.
#[test]
fn join_token_stays_usable_when_issuance_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let id = "spiffe://example.org/ns/vm/sa/retry";
    let token = cp.join_token(id, "10m");
    // Break the state directory in a way root cannot write through either.
    let issued = cp.state.join("issued");
    std::fs::remove_dir(&issued).unwrap();
    std::fs::write(&issued, b"not a directory").unwrap();
    let csr = generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
    let r = bootstrap_raw(&cp, &token, &csr.csr_pem);
    assert_eq!(
        (r.status, r.reason().as_str()),
        (500, reason::INTERNAL),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        files_in(&cp.state.join("used")).is_empty(),
        "the token was used up by a failed issuance"
    );
    std::fs::remove_file(&issued).unwrap();
    std::fs::create_dir(&issued).unwrap();
    let w = bootstrap(&cp, &token, id);
    assert_eq!(w.id, id);
    assert_eq!(files_in(&cp.state.join("used")).len(), 1);
    assert_eq!(cp.issued_on_record(), 1);
}

/// Sixteen concurrent bootstraps with one join token: exactly one gets an SVID, the others are
/// refused as replays, and exactly one certificate is on record.
#[test]
fn join_token_is_consumed_exactly_once_under_concurrent_bootstraps() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let id = "spiffe://example.org/ns/vm/sa/race";
    let token = cp.join_token(id, "10m");
    let bundle = cp.bundle();
    let api_addr = cp.api;
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (token, bundle) = (token.clone(), bundle.clone());
            std::thread::spawn(move || {
                let csr = generate_csr(&SpiffeId::parse(id).unwrap()).unwrap();
                let body = serde_json::to_vec(&mesh_core::api::BootstrapRequest {
                    token,
                    csr_pem: csr.csr_pem,
                })
                .unwrap();
                let r = request(
                    api_addr,
                    &bundle,
                    None,
                    "POST",
                    mesh_core::api::PATH_BOOTSTRAP,
                    body,
                    Duration::from_secs(20),
                )
                .unwrap();
                (r.status, r.reason())
            })
        })
        .collect();
    let results: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let replays = results
        .iter()
        .filter(|(s, r)| *s == 401 && r == reason::TOKEN_REPLAYED)
        .count();
    assert_eq!((ok, replays), (1, 15), "{results:?}");
    assert_eq!(
        cp.issued_on_record(),
        1,
        "discarded certificates must not stay on record"
    );
    assert_eq!(
        cp.metric("mesh_control_certificates_issued_total{kind=\"bootstrap\"}"),
        1.0
    );
}
