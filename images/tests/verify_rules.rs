//! The rules behind `distro verify`, at library level: containers-policy identity matching,
//! which attestation of a type is the newest, and the bounded, special-file-safe reading of
//! layout blobs (the careful read itself is `distro_hostio`'s, tested there) (issue 16 items 8, 9 and 11; issue 14 item 9).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use distro_images::cosign::{PREDICATE_OPENVEX, PREDICATE_SLSA};
use distro_images::digest;
use distro_images::store::{Layout, Store};
use distro_images::verify::{identity_matches, newest, recency, Verified};
use serde_json::json;

const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// The containers-policy table: (expected identity, signed identity, accepted).
#[test]
fn identity_matching_follows_containers_policy() {
    let r = "reg.example:5000/ns/app";
    let cases: &[(String, String, bool)] = &[
        // A signature for the bare repository matches every tag and the digest.
        (format!("{r}:1.0"), r.to_string(), true),
        (r.to_string(), r.to_string(), true),
        (format!("{r}@{D}"), r.to_string(), true),
        // A signature naming a tag matches only that tag (any, when none is expected).
        (format!("{r}:1.0"), format!("{r}:1.0"), true),
        (format!("{r}:2.0"), format!("{r}:1.0"), false),
        (r.to_string(), format!("{r}:1.0"), true),
        (format!("{r}@{D}"), format!("{r}:1.0"), true),
        // Digests must be the image's.
        (r.to_string(), format!("{r}@{D}"), true),
        (r.to_string(), format!("{r}@{OTHER}"), false),
        (format!("{r}@{OTHER}"), r.to_string(), false),
        // Another repository never matches, even as a prefix or with the same last part.
        (r.to_string(), "reg.example:5000/ns/app2".to_string(), false),
        (r.to_string(), "reg.example:5000/ns".to_string(), false),
        (
            r.to_string(),
            "other.example:5000/ns/app".to_string(),
            false,
        ),
        // A port is not a tag.
        (
            "reg.example:5000/app".to_string(),
            "reg.example:5001/app".to_string(),
            false,
        ),
    ];
    for (expected, signed, ok) in cases {
        let got = identity_matches(expected, signed, D);
        assert_eq!(
            got.is_ok(),
            *ok,
            "expected `{expected}`, signed `{signed}`: {got:?}"
        );
    }
    let err = identity_matches(&format!("{r}:2.0"), &format!("{r}:1.0"), D).unwrap_err();
    assert!(err.contains("is for tag `1.0`, not `2.0`"), "{err}");
}

fn vex(position: usize, timestamp: Option<&str>, version: u64) -> Verified {
    let mut p =
        json!({"@context": "https://openvex.dev/ns/v0.2.0", "version": version, "statements": []});
    if let Some(t) = timestamp {
        p["timestamp"] = json!(t);
    }
    Verified {
        predicate_type: PREDICATE_OPENVEX.into(),
        predicate: p,
        layer_digest: format!("sha256:{position:064}"),
        position,
    }
}

/// OpenVEX documents are ordered by their own time, then version, then attachment; the other
/// predicates by attachment; a VEX whose age cannot be told fails.
#[test]
fn newest_attestation_is_chosen_by_document_time() {
    let docs = vec![
        vex(0, Some("2026-02-01T00:00:00Z"), 1),
        vex(1, Some("2026-01-01T00:00:00Z"), 7),
        vex(2, Some("2026-02-01T00:00:00+01:00"), 1), // one hour earlier than #0
    ];
    let (v, n) = newest(&docs, PREDICATE_OPENVEX).unwrap().unwrap();
    assert_eq!(
        (v.position, n),
        (0, 3),
        "the latest time wins over a later attachment"
    );

    let tie = vec![
        vex(0, Some("2026-02-01T00:00:00Z"), 2),
        vex(1, Some("2026-02-01T00:00:00Z"), 1),
    ];
    assert_eq!(
        newest(&tie, PREDICATE_OPENVEX).unwrap().unwrap().0.position,
        0
    );

    let mut updated = vex(0, Some("2026-01-01T00:00:00Z"), 2);
    updated.predicate["last_updated"] = json!("2026-03-01T00:00:00Z");
    let docs = vec![updated, vex(1, Some("2026-02-01T00:00:00Z"), 1)];
    assert_eq!(
        newest(&docs, PREDICATE_OPENVEX)
            .unwrap()
            .unwrap()
            .0
            .position,
        0
    );

    let undated = vec![vex(0, Some("2026-01-01T00:00:00Z"), 1), vex(1, None, 1)];
    let err = newest(&undated, PREDICATE_OPENVEX).unwrap_err();
    assert!(err.contains("no timestamp"), "{err}");
    let bad = vex(0, Some("yesterday"), 1);
    assert!(recency(&bad).unwrap_err().contains("not RFC 3339"));

    let slsa = |position| Verified {
        predicate_type: PREDICATE_SLSA.into(),
        predicate: json!({}),
        layer_digest: String::new(),
        position,
    };
    let docs = vec![slsa(3), slsa(5), slsa(4)];
    assert_eq!(
        newest(&docs, PREDICATE_SLSA).unwrap().unwrap().0.position,
        5
    );
    assert!(newest(&docs, PREDICATE_OPENVEX).unwrap().is_none());
}

/// A layout blob is read no further than its descriptor's size; one of another size is refused
/// naming the blob; `put_blob` replaces a damaged copy (and only a damaged one), and
/// `has_blob` does not count a damaged copy as present.
#[test]
fn layout_blobs_are_size_checked_and_damaged_copies_replaced() {
    let t = tempfile::tempdir().unwrap();
    let mut l = Layout::open_dir(&t.path().join("l"), true).unwrap();
    let data = b"layer bytes".to_vec();
    let d = digest::sha256(&data);
    assert!(l.put_blob(&d, &data).unwrap());
    assert!(!l.put_blob(&d, &data).unwrap(), "an intact copy is kept");
    assert_eq!(l.blob_sized(&d, data.len() as u64).unwrap(), data);
    let err = l.blob_sized(&d, 4).unwrap_err().to_string();
    assert!(err.contains(&d) && err.contains("descriptor"), "{err}");
    let err = l.blob_sized(&d, 400).unwrap_err().to_string();
    assert!(err.contains("descriptor says 400"), "{err}");

    let file = t
        .path()
        .join("l/blobs/sha256")
        .join(d.strip_prefix("sha256:").unwrap());
    std::fs::write(&file, b"LAYER bytes").unwrap();
    assert!(!l.has_blob(&d).unwrap(), "a damaged copy is not present");
    assert!(l.blob(&d).is_err());
    assert!(l.put_blob(&d, &data).unwrap(), "a damaged copy is replaced");
    assert_eq!(std::fs::read(&file).unwrap(), data);

    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
    let err = l.blob(&d).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(l.put_blob(&d, &data).unwrap());
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    assert!(l.has_blob(&d).unwrap());
}

/// A registry that sends more bytes than the descriptor declares is cut off at `size + 1`
/// bytes, with an error naming the blob, and the request is not retried.
#[test]
fn registry_blob_longer_than_its_descriptor_is_cut_off() {
    use distro_images::registry::{Registry, RegistryOptions};
    if !distro_testsupport::require_tool(
        "registry_blob_longer_than_its_descriptor_is_cut_off",
        "python3",
    ) {
        return;
    }
    let port = distro_testsupport::free_port();
    // Every GET answers 8 MiB of zeros, whatever the blob.
    let server = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = b"\0" * (8 << 20)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", server, &port.to_string()])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed().as_secs() < 15, "test server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let opts = RegistryOptions {
        plain_http: true,
        ..RegistryOptions::default()
    };
    let mut reg = Registry::connect(&format!("127.0.0.1:{port}"), "ns/app", &opts).unwrap();
    let result = reg.blob_sized(D, 10);
    child.kill().unwrap();
    child.wait().unwrap();
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(D) && err.contains("more than 10 bytes"),
        "{err}"
    );
    assert_eq!(
        reg.stats.retries, 0,
        "an oversized blob is not fetched again"
    );
}
