//! The CA: rotation with an overlap keeps old and new workloads talking; bring-your-own CA
//! (an intermediate under an organisation root made by openssl); FIPS-only TLS on the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mesh_core::api::{reason, ConfigResponse};

fn count_certs(pem: &str) -> usize {
    pem.matches("BEGIN CERTIFICATE").count()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// During a CA rotation overlap, a workload holding an old-CA SVID and one holding a new-CA
/// SVID complete mTLS handshakes both ways (each verifying the other's SPIFFE ID with the
/// pushed two-root bundle); without the new bundle the old workload could not; after the
/// overlap the old root leaves the bundle and old SVIDs are no longer accepted.
#[test]
fn rotation_with_overlap_keeps_old_and_new_workloads_talking() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(
        dir.path(),
        &["--watch-interval", "100ms", "--long-poll", "2s"],
    );
    let a_id = "spiffe://example.org/ns/shop/sa/old-workload";
    let b_id = "spiffe://example.org/ns/shop/sa/new-workload";
    let mut a = bootstrap(&cp, &cp.join_token(a_id, "5m"), a_id);
    assert_eq!(count_certs(&a.bundle_pem), 1);
    let v_before: ConfigResponse = serde_json::from_slice(
        &poll_config(&cp, &a, 0, Duration::from_secs(5))
            .unwrap()
            .body,
    )
    .unwrap();

    let out = cp.cli(&["ca", "rotate", "--overlap", "6s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated_at = Instant::now();
    wait_for("generation 2", || cp.readyz()["ca_generation"] == 2);
    assert_eq!(cp.metric("mesh_control_ca_generation"), 2.0);

    // The old workload, which only knows the old root, still reaches the control plane with
    // its old SVID (the API keeps an old-CA certificate during the overlap) and is pushed the
    // two-root bundle as a new configuration version.
    let r = request(
        cp.api,
        &a.bundle_pem,
        Some(&a),
        "GET",
        &format!("{}?since={}", mesh_core::api::PATH_CONFIG, v_before.version),
        Vec::new(),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!("old workload with the old bundle cannot reach the control plane: {e}")
    });
    let pushed: ConfigResponse =
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("status {}", r.status));
    assert!(pushed.version > v_before.version);
    assert_eq!(count_certs(&pushed.config.trust_bundle_pem), 2);
    let a_old_bundle = a.bundle_pem.clone();
    a.bundle_pem = pushed.config.trust_bundle_pem.clone();

    let b = bootstrap(&cp, &cp.join_token(b_id, "5m"), b_id);
    assert_eq!(count_certs(&b.bundle_pem), 2);
    assert_ne!(a.chain[0], b.chain[0]);

    mtls_handshake(&a, &b).unwrap_or_else(|e| panic!("old serves new: {e}"));
    mtls_handshake(&b, &a).unwrap_or_else(|e| panic!("new serves old: {e}"));
    // Negative control: with only the old root, the old workload rejects the new one.
    let mut a_stale = a.clone();
    a_stale.bundle_pem = a_old_bundle;
    assert!(
        mtls_handshake(&b, &a_stale).is_err(),
        "a stale bundle must not verify a new-CA SVID"
    );

    // Independent check: openssl verifies both leaves against the two-root bundle.
    if distro_testsupport::require_tool(
        "rotation_with_overlap_keeps_old_and_new_workloads_talking",
        "openssl",
    ) {
        let bundle = dir.path().join("two-roots.pem");
        std::fs::write(&bundle, &b.bundle_pem).unwrap();
        for (n, w) in [("a", &a), ("b", &b)] {
            let leaf = dir.path().join(format!("{n}.pem"));
            std::fs::write(&leaf, &w.chain_pem).unwrap();
            let (ok, text) = openssl(&[
                "verify",
                "-CAfile",
                bundle.to_str().unwrap(),
                leaf.to_str().unwrap(),
            ]);
            assert!(ok, "openssl verify {n}: {text}");
        }
    }

    // A connection the old workload opens during the overlap, and keeps open past its end.
    let mut kept = Session::open(&cp, &a.bundle_pem, &a);
    let r = kept.poll_now().unwrap();
    assert_eq!(
        r.status,
        200,
        "old SVID during the overlap: {}",
        String::from_utf8_lossy(&r.body)
    );

    // After the overlap, the old root is dropped and the old SVID no longer authenticates.
    let wait =
        Duration::from_secs(6).saturating_sub(rotated_at.elapsed()) + Duration::from_millis(800);
    std::thread::sleep(wait);
    wait_for("bundle with one root", || count_certs(&cp.bundle()) == 1);
    // The API now presents a new-CA certificate, which the new workload's pushed bundle trusts.
    let r = request(
        cp.api,
        &b.bundle_pem,
        Some(&b),
        "GET",
        &format!("{}?since={}", mesh_core::api::PATH_CONFIG, pushed.version),
        Vec::new(),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("new workload after the overlap: {e}"));
    let after: ConfigResponse =
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("status {}", r.status));
    assert_eq!(count_certs(&after.config.trust_bundle_pem), 1);
    let r = poll_config(&cp, &a, 0, Duration::from_secs(5));
    assert!(
        r.is_err() || r.as_ref().map(|r| r.status).unwrap_or(0) != 200,
        "old-CA SVID accepted after the overlap"
    );
    // Nor on the connection it opened before: what the connection verified against the old CA
    // is checked again once the CA changed (the connection, idle for less than the 10 s
    // header-read timeout, is still open).
    let r = kept
        .poll_now()
        .expect("the connection opened during the overlap");
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, reason::SVID_NOT_HONOURED),
        "old-CA SVID accepted on a connection opened during the overlap"
    );
}

/// Bring your own CA: an intermediate signed by an organisation root (both made by openssl)
/// is imported; SVIDs carry the intermediate, the bundle is the organisation root, and openssl
/// verifies the chain. A key that does not match the certificate is refused with the file name.
#[test]
fn byo_intermediate_ca_under_openssl_root() {
    if !distro_testsupport::require_tool("byo_intermediate_ca_under_openssl_root", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let ext = p("ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    let steps: Vec<Vec<String>> = vec![
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /O=Org/CN=Org-Root -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign".split(' ').map(String::from).chain(["-keyout".into(), p("root.key"), "-out".into(), p("root.pem")]).collect(),
        "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /O=Org/CN=Mesh-Intermediate".split(' ').map(String::from).chain(["-keyout".into(), p("int.key"), "-out".into(), p("int.csr")]).collect(),
        "x509 -req -days 30 -set_serial 7".split(' ').map(String::from).chain(["-in".into(), p("int.csr"), "-CA".into(), p("root.pem"), "-CAkey".into(), p("root.key"), "-extfile".into(), ext.clone(), "-out".into(), p("int.pem")]).collect(),
    ];
    for s in &steps {
        let args: Vec<&str> = s.iter().map(String::as_str).collect();
        let (ok, text) = openssl(&args);
        assert!(ok, "openssl {s:?}: {text}");
    }
    let state = dir.path().join("state");
    let import = |key: &str| {
        std::process::Command::new(BIN)
            .args([
                "ca",
                "import",
                "--state-dir",
                state.to_str().unwrap(),
                "--trust-domain",
                TD,
            ])
            .args([
                "--cert",
                &p("int.pem"),
                "--key",
                key,
                "--roots",
                &p("root.pem"),
            ])
            .output()
            .unwrap()
    };
    let bad = import(&p("root.key"));
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(
        msg.contains("root.key") && msg.contains("does not belong"),
        "{msg}"
    );
    let good = import(&p("int.key"));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );

    let cp = ControlPlane::start(dir.path(), &[]);
    let root = std::fs::read_to_string(p("root.pem")).unwrap();
    assert_eq!(count_certs(&cp.bundle()), 1);
    assert_eq!(
        mesh_core::identity::certs_from_pem(&cp.bundle()).unwrap(),
        mesh_core::identity::certs_from_pem(&root).unwrap(),
        "the bundle is the organisation root"
    );
    let id = "spiffe://example.org/ns/vm/sa/mainframe-gw";
    let w = bootstrap(&cp, &cp.join_token(id, "5m"), id);
    assert_eq!(w.chain.len(), 2, "leaf + intermediate");
    let leaf = p("leaf.pem");
    std::fs::write(
        &leaf,
        mesh_core::identity::pem_encode("CERTIFICATE", &w.chain[0]),
    )
    .unwrap();
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        &p("root.pem"),
        "-untrusted",
        &p("int.pem"),
        &leaf,
    ]);
    assert!(ok, "{text}");
    // mTLS with the control plane works through the intermediate.
    let r = poll_config(&cp, &w, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
}

/// The API negotiates only FIPS suites and groups: openssl s_client with ChaCha20 or X25519
/// fails, with AES-GCM on P-256 it succeeds.
#[test]
fn api_negotiates_only_fips_suites_and_groups() {
    if !distro_testsupport::require_tool("api_negotiates_only_fips_suites_and_groups", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let connect = cp.api.to_string();
    let s_client = |extra: &[&str]| {
        let mut args = vec!["s_client", "-connect", connect.as_str(), "-brief"];
        args.extend_from_slice(extra);
        let out = std::process::Command::new("openssl")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            text.contains("CONNECTION ESTABLISHED") || text.contains("Protocol version"),
            text,
        )
    };
    let (ok, text) = s_client(&[
        "-tls1_3",
        "-ciphersuites",
        "TLS_AES_128_GCM_SHA256",
        "-groups",
        "P-256",
    ]);
    assert!(ok, "AES-GCM/P-256 must work: {text}");
    let (ok, text) = s_client(&["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"]);
    assert!(!ok, "ChaCha20 must be refused: {text}");
    let (ok, text) = s_client(&["-tls1_3", "-groups", "X25519"]);
    assert!(!ok, "X25519 must be refused: {text}");
    let (ok, text) = s_client(&["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"]);
    assert!(!ok, "TLS 1.2 ChaCha20 must be refused: {text}");
}
