//! Library-level tests of `distro-images`: DSSE PAE against the spec's example, reference
//! parsing, layout tag semantics, the hardening-manifest rules, key round trips, and that every
//! parser of outside input rejects garbage with an error instead of panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use distro_images::cosign::{self, Envelope};
use distro_images::hardening::{HardeningManifest, Maintainer, Resource};
use distro_images::keys::{SigningKey, VerifyingKey};
use distro_images::oci::{Manifest, MEDIA_MANIFEST};
use distro_images::store::{Layout, Store};
use distro_images::verify::Policy;
use distro_images::{digest, Error, ImageRef};

/// PAE matches the DSSE specification's worked example byte for byte.
#[test]
fn pae_matches_dsse_spec_example() {
    assert_eq!(
        cosign::pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    assert_eq!(cosign::pae("", b""), b"DSSEv1 0  0 ".to_vec());
}

/// A signed envelope verifies with its key and not with another, and not once its payload or
/// payload type changes.
#[test]
fn envelope_signature_binds_type_and_payload() {
    let k = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    let env = Envelope::sign("application/vnd.in-toto+json", b"{\"a\":1}", &k).unwrap();
    assert!(env.verify("t", &k.public()).unwrap());
    assert!(!env.verify("t", &other.public()).unwrap());
    let mut changed = env.clone();
    changed.payload_type = "text/plain".into();
    assert!(!changed.verify("t", &k.public()).unwrap());
    let mut changed = env.clone();
    changed.payload = "eyJhIjoyfQ==".into();
    assert!(!changed.verify("t", &k.public()).unwrap());
    assert_eq!(env.signatures[0].keyid, k.keyid());
}

/// Key round trip: the PKCS#8 PEM written reloads to the same key id; a public key PEM that is
/// not P-256 or not a public key is refused with a reason.
#[test]
fn keys_round_trip_and_reject_wrong_kinds() {
    let t = tempfile::tempdir().unwrap();
    let k = SigningKey::generate().unwrap();
    let (priv_path, pub_path) = (t.path().join("k.key"), t.path().join("k.pub"));
    distro_images::keys::write_key_pair(&k, &priv_path, &pub_path, false).unwrap();
    let again = SigningKey::load(&priv_path, None).unwrap();
    assert_eq!(again.keyid(), k.keyid());
    let p = VerifyingKey::load(&pub_path).unwrap();
    let sig = again.sign(b"m").unwrap();
    assert!(p.verify(b"m", &sig));
    assert!(!p.verify(b"n", &sig));
    let err = VerifyingKey::from_pem("x", k.to_pkcs8_pem().unwrap().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("is not PUBLIC KEY"), "{err}");
    // A public key named as the private one (kept owner-only, so its kind is what is refused).
    let pub_as_private = t.path().join("pub-as-private.key");
    std::fs::copy(&pub_path, &pub_as_private).unwrap();
    std::fs::set_permissions(
        &pub_as_private,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let err = SigningKey::load(&pub_as_private, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("PEM label `PUBLIC KEY` is not supported"),
        "{err}"
    );
    assert!(matches!(
        distro_images::keys::write_key_pair(&k, &priv_path, &pub_path, false),
        Err(Error::Refused(_))
    ));
}

/// References: registry (tag, digest, port), oci: and oci-archive: with and without tags, and
/// the cosign tag derived from a digest.
#[test]
fn references_parse() {
    let r = ImageRef::parse("127.0.0.1:5000/fips-mesh/mesh-proxy:0.1.0").unwrap();
    assert_eq!(
        r.docker_reference().unwrap(),
        "127.0.0.1:5000/fips-mesh/mesh-proxy"
    );
    assert_eq!(r.selector().unwrap(), "0.1.0");
    let d = format!("sha256:{}", "a".repeat(64));
    let r = ImageRef::parse(&format!("localhost:5000/x@{d}")).unwrap();
    assert_eq!(r.selector().unwrap(), d);
    assert_eq!(r.tag(), None);
    assert_eq!(
        ImageRef::parse("oci:/tmp/a/b:1.0").unwrap(),
        ImageRef::Layout {
            path: "/tmp/a/b".into(),
            tag: Some("1.0".into())
        }
    );
    assert_eq!(
        ImageRef::parse("oci:./rel/dir").unwrap(),
        ImageRef::Layout {
            path: "./rel/dir".into(),
            tag: None
        }
    );
    assert_eq!(
        ImageRef::parse("oci-archive:x.tar:t").unwrap(),
        ImageRef::Archive {
            path: "x.tar".into(),
            tag: Some("t".into())
        }
    );
    assert!(
        ImageRef::parse("mesh-proxy:0.1.0").is_err(),
        "the registry host must be explicit"
    );
    assert_eq!(
        digest::cosign_tag(&d, "sig").unwrap(),
        format!("sha256-{}.sig", "a".repeat(64))
    );
    assert!(digest::cosign_tag("sha256:XYZ", "sig").is_err());
}

/// In a layout a tag moves to the new manifest and the old entry goes; untagged manifests are
/// kept once; a blob whose bytes were changed on disk is refused with both digests named.
#[test]
fn layout_tags_move_and_blobs_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let mut l = Layout::open_dir(t.path(), true).unwrap();
    let d1 = l
        .put_manifest(Some("v1"), b"{\"schemaVersion\":2,\"a\":1}", MEDIA_MANIFEST)
        .unwrap();
    let d2 = l
        .put_manifest(Some("v1"), b"{\"schemaVersion\":2,\"a\":2}", MEDIA_MANIFEST)
        .unwrap();
    l.put_manifest(None, b"{\"schemaVersion\":2,\"a\":3}", MEDIA_MANIFEST)
        .unwrap();
    l.put_manifest(None, b"{\"schemaVersion\":2,\"a\":3}", MEDIA_MANIFEST)
        .unwrap();
    assert_eq!(l.tags(), vec!["v1".to_string()]);
    assert_eq!(l.index().manifests.len(), 2);
    let mut reopened = Layout::open_dir(t.path(), false).unwrap();
    assert_eq!(reopened.manifest("v1").unwrap().unwrap().digest, d2);
    assert!(
        reopened.manifest(&d1).unwrap().is_some(),
        "the old manifest blob stays addressable"
    );
    let path = t
        .path()
        .join("blobs/sha256")
        .join(d2.trim_start_matches("sha256:"));
    std::fs::write(&path, b"{\"schemaVersion\":2,\"a\":9}").unwrap();
    match reopened.manifest("v1") {
        Err(Error::DigestMismatch { expected, .. }) => assert_eq!(expected, d2),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(matches!(
        l.put_blob(&d1, b"other bytes"),
        Err(Error::DigestMismatch { .. })
    ));
}

fn valid_manifest() -> HardeningManifest {
    let mut labels = std::collections::BTreeMap::new();
    for l in distro_images::hardening::REQUIRED_LABELS {
        labels.insert(l.to_string(), "x".to_string());
    }
    labels.insert("mil.dso.ironbank.image.type".into(), "opensource".into());
    HardeningManifest {
        api_version: "v1".into(),
        name: "fips-mesh/mesh-proxy".into(),
        tags: vec!["0.1.0".into(), "latest".into()],
        args: [
            ("BASE_IMAGE".to_string(), "scratch".to_string()),
            ("BASE_TAG".to_string(), "scratch".to_string()),
        ]
        .into_iter()
        .collect(),
        labels,
        resources: vec![Resource {
            filename: "b".into(),
            url: "https://e.invalid/b".into(),
            sha256: "0".repeat(64),
        }],
        maintainers: vec![Maintainer {
            name: "N".into(),
            username: "n".into(),
            email: "n@e.invalid".into(),
        }],
    }
}

/// The hardening-manifest rules catch `latest` first, missing labels and args, a bad sha256, an
/// unsupported URL scheme, a bad name and a missing maintainer; quotes are escaped in YAML.
#[test]
fn hardening_rules() {
    assert!(
        valid_manifest().problems().is_empty(),
        "{:?}",
        valid_manifest().problems()
    );
    let mut m = valid_manifest();
    m.tags = vec!["latest".into()];
    m.labels.remove("org.opencontainers.image.url");
    m.args.remove("BASE_TAG");
    m.resources[0].sha256 = "ABC".into();
    m.resources[0].url = "ftp://x".into();
    m.name = "Fips/Mesh".into();
    m.maintainers.clear();
    let p = m.problems().join("\n");
    for want in [
        "first tag is `latest`",
        "org.opencontainers.image.url is missing",
        "args.BASE_TAG is missing",
        "sha256 `ABC`",
        "ftp://x",
        "name `Fips/Mesh`",
        "maintainers is empty",
    ] {
        assert!(p.contains(want), "missing `{want}` in:\n{p}");
    }
    let mut m = valid_manifest();
    m.labels
        .insert("org.opencontainers.image.description".into(), "it's".into());
    assert!(m.to_yaml().contains("'it''s'"));
}

/// A policy file with an unknown key is an error, and the default requires everything.
#[test]
fn policy_defaults_and_unknown_keys() {
    let p = Policy::default();
    assert!(
        p.require_fips
            && p.require_validated_module
            && p.require_sbom
            && p.require_provenance
            && p.require_vex
    );
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("p.toml");
    std::fs::write(&f, "require_fips = false\n").unwrap();
    let p = Policy::load(&f).unwrap();
    assert!(!p.require_fips && p.require_sbom);
    std::fs::write(&f, "requre_fips = false\n").unwrap();
    assert!(Policy::load(&f)
        .unwrap_err()
        .to_string()
        .contains("requre_fips"));
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every parser of outside input (manifest, envelope, simple-signing payload, SPKI and private
/// key PEM, cosign encrypted key, OCI archive) returns an error on garbage and on truncated or
/// bit-flipped valid input, never panics (a smoke run in lieu of a fuzzer); and no tampered
/// DSSE envelope verifies unless what it signs (payload type and payload) is untouched.
#[test]
fn parsers_reject_garbage_without_panicking() {
    let k = SigningKey::generate().unwrap();
    let original =
        Envelope::sign("application/vnd.in-toto+json", br#"{"a":"statement"}"#, &k).unwrap();
    let original_payload = original.payload_bytes("original").unwrap();
    assert!(
        original.verify("original", &k.public()).unwrap(),
        "the untampered envelope verifies (else the checks below prove nothing)"
    );
    let env = serde_json::to_vec(&original).unwrap();
    let mut envelopes_rejected = 0;
    let payload = cosign::simple_signing_payload("r/x", &format!("sha256:{}", "b".repeat(64)));
    let manifest = Manifest::new(
        distro_images::oci::Descriptor::of("application/vnd.oci.image.config.v1+json", b"{}"),
        vec![],
    )
    .to_bytes();
    let cosign_key = b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjoyLCJyIjo4LCJwIjoxfSwic2FsdCI6IkFBQUEifSwiY2lwaGVyIjp7Im5hbWUiOiJuYWNsL3NlY3JldGJveCIsIm5vbmNlIjoiQUFBQSJ9LCJjaXBoZXJ0ZXh0IjoiQUFBQSJ9\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n".to_vec();
    let t = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<u8>> = vec![
        env,
        payload,
        manifest,
        k.public().to_pem().into_bytes(),
        cosign_key,
    ];
    for (i, seed) in seeds.iter().enumerate() {
        for round in 0..200u64 {
            let mut input = seed.clone();
            match round % 5 {
                0 => input.truncate((round as usize * 7) % (seed.len() + 1)),
                // One letter or digit swapped for another: JSON stays well-formed, so the
                // envelope parses and its signature check is what must refuse it.
                4 => {
                    let alnum: Vec<usize> = (0..input.len())
                        .filter(|&j| input[j].is_ascii_alphanumeric())
                        .collect();
                    if let Some(&at) = alnum.get((round as usize * 7919) % alnum.len().max(1)) {
                        input[at] = if input[at] == b'A' { b'B' } else { b'A' };
                    }
                }
                1 => {
                    let n = input.len().max(1);
                    for (j, b) in noise(round, 4).into_iter().enumerate() {
                        let at = (round as usize * 31 + j * 17) % n;
                        if let Some(x) = input.get_mut(at) {
                            *x ^= b | 1;
                        }
                    }
                }
                2 => input = noise(round + i as u64, (round as usize * 13) % 300),
                _ => input.extend(noise(round, 5)),
            }
            let _ = Manifest::parse("fuzz", &input);
            if let Ok(e) = Envelope::parse("fuzz", &input) {
                match e.verify("fuzz", &k.public()) {
                    // Only a change to what the signature does not cover (the keyid hint) may
                    // still verify.
                    Ok(true) => {
                        assert_eq!(
                            e.payload_type,
                            original.payload_type,
                            "tampered payloadType verified: {}",
                            String::from_utf8_lossy(&input)
                        );
                        assert_eq!(
                            e.payload_bytes("fuzz").unwrap(),
                            original_payload,
                            "tampered payload verified: {}",
                            String::from_utf8_lossy(&input)
                        );
                        assert_eq!(e.signatures.len(), 1);
                    }
                    Ok(false) | Err(_) => envelopes_rejected += 1,
                }
            }
            let _ = cosign::parse_simple_signing("fuzz", &input);
            let _ = VerifyingKey::from_pem("fuzz", &input);
            let key_file = t.path().join("k");
            std::fs::write(&key_file, &input).unwrap();
            let _ = SigningKey::load(&key_file, Some(b"pw"));
            let _ = Layout::open_archive(&key_file);
        }
    }
    assert!(
        envelopes_rejected > 0,
        "some tampered envelopes parsed and were rejected by verify"
    );
}

/// Every single-character change to the base64 payload, payloadType or signature of a DSSE
/// envelope makes `Envelope::verify` fail (the envelope check of `distro verify`).
#[test]
fn every_tampered_envelope_fails_to_verify() {
    let k = SigningKey::generate().unwrap();
    let env = Envelope::sign(
        "application/vnd.in-toto+json",
        br#"{"_type":"https://in-toto.io/Statement/v1","predicate":{"status":"fixed"}}"#,
        &k,
    )
    .unwrap();
    assert!(env.verify("original", &k.public()).unwrap());
    let swap = |c: char| if c == 'A' { 'B' } else { 'A' };
    let mut tried = 0;
    for i in 0..env.payload.len() {
        let mut t = env.clone();
        let mut chars: Vec<char> = t.payload.chars().collect();
        if chars[i] == '=' {
            continue;
        }
        chars[i] = swap(chars[i]);
        t.payload = chars.into_iter().collect();
        assert!(
            !t.verify("tampered", &k.public()).unwrap_or(false),
            "payload changed at {i} still verifies"
        );
        tried += 1;
    }
    for i in 0..env.signatures[0].sig.len() {
        let mut t = env.clone();
        let mut chars: Vec<char> = t.signatures[0].sig.chars().collect();
        if chars[i] == '=' {
            continue;
        }
        chars[i] = swap(chars[i]);
        t.signatures[0].sig = chars.into_iter().collect();
        assert!(
            !t.verify("tampered", &k.public()).unwrap_or(false),
            "signature changed at {i} still verifies"
        );
        tried += 1;
    }
    let mut t = env.clone();
    t.payload_type = "application/vnd.in-toto+jsoN".into();
    assert!(!t.verify("tampered", &k.public()).unwrap_or(false));
    let other = SigningKey::generate().unwrap();
    assert!(!env.verify("other key", &other.public()).unwrap());
    assert!(tried > 100, "{tried} changes tried");
}
