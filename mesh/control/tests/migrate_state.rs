//! `mesh-control migrate-state`: a single control plane's state directory moved into etcd
//! (a real 3-member cluster on loopback), then served by a replica over it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use distro_testsupport::etcd::{have_etcd, Cluster};
use mesh_core::api::reason;

fn serial_of(w: &Workload) -> String {
    use x509_parser::prelude::FromDer;
    let (_, x) = x509_parser::certificate::X509Certificate::from_der(w.chain[0].as_ref()).unwrap();
    hex::encode(x.raw_serial())
}

const MESH: &str = r#"
[[services]]
name = "reviews"
protocol = "http"
[[services.endpoints]]
address = "127.0.0.1:19081"
identity = "spiffe://example.org/ns/shop/sa/reviews"
"#;

/// After a migration from a local state directory, a replica over etcd serves the same CA (the
/// same bundle; its API verifies with the old bundle; certificates issued before still work),
/// issues serials that repeat none of the old ones, refuses a token used before the migration
/// as `token_replayed`, accepts once a token made before it and not yet used, and serves the
/// same configuration version. CA keys arrive sealed; a second migration into the same prefix
/// is refused.
#[test]
fn migrated_state_serves_the_same_ca_serials_and_tokens() {
    if !have_etcd("migrated_state_serves_the_same_ca_serials_and_tokens") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_dir(dir.path(), MESH);
    let config_args = ["--config", cfg.to_str().unwrap()];

    // The single control plane: a few workloads, one token used, one left for later.
    let mut single = ControlPlane::start(dir.path(), &config_args);
    let bundle = single.bundle();
    let id = "spiffe://example.org/ns/vm/sa/db";
    let used = single.join_token(id, "10m");
    let old = bootstrap(&single, &used, id);
    let mut old_serials: BTreeSet<String> = [serial_of(&old)].into();
    for _ in 0..4 {
        let t = single.join_token(id, "10m");
        old_serials.insert(serial_of(&bootstrap(&single, &t, id)));
    }
    let pending = single.join_token(id, "10m");
    let before = poll_config(&single, &old, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(before.status, 200);
    let version = before.json()["version"].as_u64().unwrap();
    assert!(single.stop(), "graceful stop: {}", single.log_text());

    let cluster = Cluster::start(dir.path());
    let eps = cluster.endpoints();
    let to = format!("etcd://{eps}/moved");
    // The operator's key, where start_replica looks for it (0600).
    let key = dir.path().join("state.key");
    let mut k = [0u8; 32];
    aws_lc_rs::rand::fill(&mut k).unwrap();
    std::fs::write(&key, hex::encode(k)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let migrate = || {
        Command::new(BIN)
            .arg("migrate-state")
            .arg("--from")
            .arg(&single.state)
            .args(["--to", &to, "--format", "json"])
            .arg("--state-key-file")
            .arg(&key)
            .output()
            .unwrap()
    };
    let out = migrate();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["keys_copied"].as_u64().unwrap() > 10, "{report}");
    assert!(cluster.value("/moved/ca/1.key.pem").starts_with("mcseal1:"));
    let again = migrate();
    assert!(
        !again.status.success(),
        "a second migration overwrote the prefix"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("choose an empty prefix"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let replica = ControlPlane::start_replica(dir.path(), &eps, "moved", &config_args);
    assert_eq!(replica.bundle(), bundle, "the replica serves another CA");
    // A certificate issued before the migration is honoured; the configuration version is the
    // one the single control plane had published.
    let r = poll_config(&replica, &old, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["version"].as_u64(), Some(version));
    // A token used before is used; one made before and not used works once.
    let replayed = bootstrap_raw(
        &replica,
        &used,
        &mesh_core::identity::generate_csr(&mesh_core::identity::SpiffeId::parse(id).unwrap())
            .unwrap()
            .csr_pem,
    );
    assert_eq!(
        (replayed.status, replayed.reason().as_str()),
        (401, reason::TOKEN_REPLAYED),
        "{}",
        String::from_utf8_lossy(&replayed.body)
    );
    let w = bootstrap(&replica, &pending, id);
    assert_eq!(w.bundle_pem, bundle);
    let mut new_serials = BTreeSet::from([serial_of(&w)]);
    let twice = bootstrap_raw(
        &replica,
        &pending,
        &mesh_core::identity::generate_csr(&mesh_core::identity::SpiffeId::parse(id).unwrap())
            .unwrap()
            .csr_pem,
    );
    assert_eq!(twice.reason(), reason::TOKEN_REPLAYED);
    for _ in 0..10 {
        let t = replica.join_token(id, "10m");
        assert!(new_serials.insert(serial_of(&bootstrap(&replica, &t, id))));
    }
    assert!(
        old_serials.is_disjoint(&new_serials),
        "a serial issued before the migration was issued again: {:?}",
        old_serials.intersection(&new_serials).collect::<Vec<_>>()
    );
    let on_record: BTreeSet<String> = cluster
        .keys("moved", "issued/")
        .into_iter()
        .map(|k| {
            k.trim_start_matches("issued/")
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    let all: BTreeSet<String> = old_serials.union(&new_serials).cloned().collect();
    assert_eq!(on_record, all, "old and new certificates are all on record");
}
