//! Images: OCI manifests, indexes and archives, image references, DSSE envelopes,
//! simple-signing payloads and keys (PEM public and private keys, cosign's encrypted key).
//!
//! The verifier targets sign their seeds with a key made at run time, which only this process
//! holds: whatever verifies under it must be exactly what was signed, however it was mutated.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use base64::Engine as _;
use distro_fuzz::{fuzz, Options};
use distro_images::cosign::{self, Envelope, Predicate, StoredAttestation};
use distro_images::keys::{SigningKey, VerifyingKey};
use distro_images::oci::{self, Descriptor, Index, Manifest};
use distro_images::store::{self, Layout, Store};
use distro_images::verify::{self, Policy};
use distro_images::ImageRef;

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "-0",
    "1e400",
    "\\u0000",
    "\\ud800",
    "\"schemaVersion\":2",
    "\"mediaType\":",
    "\"config\":",
    "\"layers\":[",
    "\"manifests\":[",
    "\"digest\":\"sha256:",
    "\"size\":",
    "\"annotations\":{",
    "\"payloadType\":",
    "\"payload\":",
    "\"signatures\":[",
    "\"keyid\":",
    "\"sig\":",
    "\"critical\":",
    "\"identity\":",
    "\"docker-reference\":",
    "\"image\":",
    "\"docker-manifest-digest\":",
    "\"type\":",
    "\"optional\":",
    "\"_type\":",
    "\"subject\":[",
    "\"predicateType\":",
    "\"predicate\":",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.in-toto+json",
    "cosign container image signature",
];

/// The key only this test process holds, and what it signed.
struct Signed {
    key: SigningKey,
    /// (payload type, payload) of every envelope signed.
    envelopes: Vec<(String, Vec<u8>)>,
    /// The envelopes, serialized: seeds.
    envelope_seeds: Vec<Vec<u8>>,
    /// Digests of the images signed in the archive seed.
    images: BTreeSet<String>,
    /// The archive seed.
    archive: Vec<u8>,
    /// A simple-signing payload for the archive's image.
    payload: Vec<u8>,
    /// The archive's manifests (image, `.sig`, `.att`) and its index.json.
    manifests: Vec<Vec<u8>>,
    index: Vec<u8>,
}

fn signed() -> &'static Signed {
    static SIGNED: OnceLock<Signed> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let key = SigningKey::generate().expect("a key from the FIPS module");
        let digest = format!("sha256:{}", "a".repeat(64));
        let statement = cosign::statement(
            "registry.example/fips-mesh/mesh-proxy",
            &digest,
            &Predicate {
                predicate_type: cosign::PREDICATE_SLSA.into(),
                body: serde_json::json!({"buildDefinition": {"buildType": "https://example/b"}}),
            },
        )
        .expect("a statement");
        let mut envelopes = vec![(cosign::INTOTO_PAYLOAD_TYPE.to_string(), statement)];
        envelopes.push(("text/plain".into(), b"hello".to_vec()));
        let envelope_seeds = envelopes
            .iter()
            .map(|(t, p)| {
                serde_json::to_vec(&Envelope::sign(t, p, &key).expect("signed")).expect("json")
            })
            .collect();
        let (archive, image, manifests, index) = archive_seed(&key);
        let payload = cosign::simple_signing_payload("registry.example/fips-mesh/x", &image);
        Signed {
            key,
            envelopes,
            envelope_seeds,
            images: BTreeSet::from([image]),
            archive,
            payload,
            manifests,
            index,
        }
    })
}

/// A small signed and attested image in an OCI archive, made with the library the way a
/// release makes one; returns the archive's bytes, the image digest, its manifests and index.
fn archive_seed(key: &SigningKey) -> (Vec<u8>, String, Vec<Vec<u8>>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut layout = Layout::open_dir(&dir.path().join("oci"), true).expect("layout");
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let layer = b"not really a tar layer";
    let cd = Descriptor::of(oci::MEDIA_CONFIG, config);
    let ld = Descriptor::of(oci::MEDIA_LAYER_GZIP, layer);
    layout.put_blob(&cd.digest, config).expect("config blob");
    layout.put_blob(&ld.digest, layer).expect("layer blob");
    let manifest = Manifest::new(cd, vec![ld]).to_bytes();
    let image = layout
        .put_manifest(Some("0.1.0"), &manifest, oci::MEDIA_MANIFEST)
        .expect("manifest");
    cosign::sign(
        &mut layout,
        Some("0.1.0"),
        "registry.example/fips-mesh/x",
        key,
    )
    .expect("sign");
    cosign::attest(
        &mut layout,
        Some("0.1.0"),
        "registry.example/fips-mesh/x",
        key,
        &[Predicate {
            predicate_type: cosign::PREDICATE_CYCLONEDX.into(),
            body: serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.6"}),
        }],
    )
    .expect("attest");
    let out = dir.path().join("image.tar");
    layout.write_archive(&out).expect("archive");
    let manifests = layout
        .tags()
        .iter()
        .filter_map(|t| layout.manifest(t).expect("tagged manifest"))
        .map(|m| m.bytes)
        .collect();
    let index = serde_json::to_vec(layout.index()).expect("index");
    (
        std::fs::read(&out).expect("read archive"),
        image,
        manifests,
        index,
    )
}

/// OCI image manifests: never a panic; a manifest that parses serializes to bytes that parse
/// back to the same manifest, and serializing is stable.
#[test]
fn oci_manifest() {
    let opts = Options::new("oci-manifest")
        .seeds(signed().manifests.clone())
        .dictionary(JSON_TOKENS);
    fuzz(opts, |input| {
        match Manifest::parse("fuzz manifest", input) {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("fuzz manifest"), "{msg}");
                msg
            }
            Ok(m) => {
                let bytes = m.to_bytes();
                let again = Manifest::parse("round trip", &bytes).expect("its own bytes parse");
                assert_eq!(again, m);
                assert_eq!(again.to_bytes(), bytes);
                format!("ok {} layers", m.layers.len().min(3))
            }
        }
    });
}

/// OCI image indexes (`index.json`): never a panic; round trip as for manifests.
#[test]
fn oci_index() {
    let opts = Options::new("oci-index")
        .seeds([signed().index.clone()])
        .dictionary(JSON_TOKENS);
    fuzz(opts, |input| {
        match store::parse_index("fuzz index.json", input) {
            Err(e) => e.to_string(),
            Ok(index) => {
                let bytes = serde_json::to_vec(&index).expect("an index serializes");
                let again: Index = store::parse_index("round trip", &bytes).expect("parses");
                assert_eq!(again, index);
                format!("ok {}", index.manifests.len().min(3))
            }
        }
    });
}

/// Image references (command line, `[image] base`): never a panic; the reference a parsed one
/// prints as parses to the same reference.
#[test]
fn image_reference() {
    let opts = Options::new("image-reference").dictionary(&[
        "oci:",
        "oci-archive:",
        ":",
        "@",
        "sha256:",
        "/",
        "localhost",
        "127.0.0.1:5000",
        "[::1]:5000",
        "docker.io",
        "library/",
        ".",
        "..",
        "_",
        "-",
        "__",
    ]);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input);
        match ImageRef::parse(&text) {
            Err(e) => e.to_string(),
            Ok(r) => {
                let printed = r.to_string();
                let again = ImageRef::parse(&printed).unwrap_or_else(|e| {
                    panic!("`{text}` parsed, prints as `{printed}`, which does not parse: {e}")
                });
                assert_eq!(again, r, "`{text}` prints as `{printed}`");
                "ok".into()
            }
        }
    });
}

/// DSSE envelopes: never a panic; a parsed envelope round-trips through JSON; and one that
/// verifies under the test's key says exactly what that key signed (payload type and payload),
/// also through the full attestation check `verify` uses.
#[test]
fn dsse_envelope() {
    let s = signed();
    let opts = Options::new("dsse-envelope")
        .seeds(s.envelope_seeds.clone())
        .dictionary(JSON_TOKENS);
    fuzz(opts, |input| {
        let s = signed();
        let public = s.key.public();
        let env = match Envelope::parse("fuzz envelope", input) {
            Err(e) => return e.to_string(),
            Ok(env) => env,
        };
        let bytes = serde_json::to_vec(&env).expect("serializes");
        assert_eq!(Envelope::parse("round trip", &bytes).expect("parses"), env);
        let verified = match env.verify("fuzz envelope", &public) {
            Err(e) => return e.to_string(),
            Ok(v) => v,
        };
        if verified {
            let payload = env
                .payload_bytes("fuzz envelope")
                .expect("verified, so base64");
            assert!(
                s.envelopes.contains(&(env.payload_type.clone(), payload)),
                "an envelope that the key never signed verifies: {}",
                String::from_utf8_lossy(input)
            );
        }
        let stored = StoredAttestation {
            layer_digest: distro_images::digest::sha256(input),
            predicate_type: None,
            envelope: input.to_vec(),
        };
        let image = format!("sha256:{}", "a".repeat(64));
        match verify::check_attestation(&stored, &image, &public, 0) {
            Ok(v) => {
                assert!(
                    verified,
                    "check_attestation accepted what Envelope::verify refused"
                );
                assert_eq!(v.predicate_type, cosign::PREDICATE_SLSA);
                "attestation verified".into()
            }
            Err(e) => format!("verified={verified} {e}"),
        }
    });
}

/// cosign simple-signing payloads: never a panic; the payload written for what a parsed one
/// names parses to the same fields.
#[test]
fn simple_signing() {
    let s = signed();
    let opts = Options::new("simple-signing")
        .seeds([s.payload.clone()])
        .dictionary(JSON_TOKENS);
    fuzz(opts, |input| {
        match cosign::parse_simple_signing("fuzz payload", input) {
            Err(e) => e.to_string(),
            Ok(p) => {
                let again = cosign::parse_simple_signing(
                    "round trip",
                    &cosign::simple_signing_payload(&p.docker_reference, &p.manifest_digest),
                )
                .expect("parses");
                assert_eq!(again.docker_reference, p.docker_reference);
                assert_eq!(again.manifest_digest, p.manifest_digest);
                assert_eq!(again.kind, cosign::SIMPLE_SIGNING_TYPE);
                format!("ok {}", p.kind == cosign::SIMPLE_SIGNING_TYPE)
            }
        }
    });
}

const PEM_TOKENS: &[&str] = &[
    "-----BEGIN PUBLIC KEY-----\n",
    "-----END PUBLIC KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\n",
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
    "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
    "-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n",
    "=",
    "==",
    "\r\n",
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg",
];

/// Public keys (SPKI PEM, `distro keygen`'s or cosign.pub): never a panic; a key that parses
/// writes a PEM that parses to the same key.
#[test]
fn public_key() {
    let s = signed();
    let opts = Options::new("public-key")
        .seeds([s.key.public().to_pem().into_bytes()])
        .dictionary(PEM_TOKENS);
    fuzz(opts, |input| {
        match VerifyingKey::from_pem("fuzz.pub", input) {
            Err(e) => e.to_string(),
            Ok(k) => {
                let again =
                    VerifyingKey::from_pem("round trip", k.to_pem().as_bytes()).expect("parses");
                assert_eq!(again, k);
                "ok".into()
            }
        }
    });
}

/// Private keys (PKCS#8 PEM): never a panic; a key that parses writes a PKCS#8 PEM that parses
/// to the same key, and signs what its public key verifies.
#[test]
fn private_key() {
    let s = signed();
    let pem = s.key.to_pkcs8_pem().expect("pem");
    let opts = Options::new("private-key")
        .seeds([pem.as_bytes().to_vec()])
        .dictionary(PEM_TOKENS);
    fuzz(opts, |input| {
        match SigningKey::from_pem("fuzz.key", input, None) {
            Err(e) => e.to_string(),
            Ok(k) => {
                let pem = k.to_pkcs8_pem().expect("exports");
                let again =
                    SigningKey::from_pem("round trip", pem.as_bytes(), None).expect("parses");
                assert_eq!(again.keyid(), k.keyid());
                let sig = again.sign(b"m").expect("signs");
                assert!(k.public().verify(b"m", &sig));
                "ok".into()
            }
        }
    });
}

/// cosign's encrypted key (`cosign.key`: scrypt + NaCl secretbox around PKCS#8), made here
/// with small scrypt parameters so many inputs run.
fn cosign_key_seed(key: &SigningKey, password: &[u8], log_n: u8) -> Vec<u8> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let b64 = base64::engine::general_purpose::STANDARD;
    let der = pem_contents(key.to_pkcs8_pem().expect("pem").as_bytes());
    let salt = [7u8; 32];
    let nonce = [9u8; 24];
    let params = scrypt::Params::new(log_n, 8, 1, 32).expect("params");
    let mut k = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut k).expect("scrypt");
    let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&k).expect("key");
    let ct = cipher
        .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), der.as_slice())
        .expect("encrypts");
    let json = serde_json::json!({
        "kdf": {"name": "scrypt", "params": {"N": 1u64 << log_n, "r": 8, "p": 1}, "salt": b64.encode(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64.encode(nonce)},
        "ciphertext": b64.encode(ct),
    });
    let body = b64.encode(serde_json::to_vec(&json).expect("json"));
    let mut pem = String::from("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n");
    pem.into_bytes()
}

fn pem_contents(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

/// cosign encrypted keys: never a panic, and no input takes long or much memory whatever its
/// scrypt parameters say; one that decrypts is the key that was encrypted, or a key at all.
#[test]
fn cosign_encrypted_key() {
    let s = signed();
    let opts = Options::new("cosign-key")
        .seeds([
            cosign_key_seed(&s.key, b"fuzz", 4),
            cosign_key_seed(&s.key, b"fuzz", 1),
        ])
        .dictionary(PEM_TOKENS);
    fuzz(opts, |input| {
        // The JSON inside the PEM is what a mutation should reach: mutate both forms.
        match SigningKey::from_pem("cosign.key", input, Some(b"fuzz")) {
            Err(e) => e.to_string(),
            Ok(k) => {
                let sig = k.sign(b"m").expect("signs");
                assert!(k.public().verify(b"m", &sig));
                "ok".into()
            }
        }
    });
}

/// OCI archives (`oci-archive:FILE`, what an air-gapped operator verifies): never a panic,
/// bounded memory; every tag resolves or fails cleanly; and when `verify` accepts a signature
/// it is for an image the test's key signed.
#[test]
fn oci_archive() {
    let s = signed();
    let opts = Options::new("oci-archive")
        .seeds([s.archive.clone()])
        .dictionary(JSON_TOKENS)
        .max_len(256 << 10)
        .max_memory(64 << 20);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzz.tar");
    fuzz(opts, move |input| {
        let s = signed();
        std::fs::write(&path, input).expect("writing the input");
        let mut layout = match Layout::open_archive(&path) {
            Err(e) => return e.to_string(),
            Ok(l) => l,
        };
        let policy = Policy {
            require_fips: false,
            require_validated_module: false,
            require_provenance: false,
            require_vex: false,
            ..Policy::default()
        };
        let mut outcome = String::new();
        for tag in layout.tags() {
            let report = verify::verify(
                &mut layout,
                "fuzz",
                Some(&tag),
                &s.key.public(),
                &policy,
                None,
            );
            if report.checks.iter().any(|c| c.name == "signature" && c.ok) {
                let d = report.digest.clone().unwrap_or_default();
                assert!(
                    s.images.contains(&d),
                    "a signature verified for {d}, which the key never signed"
                );
            }
            let failed: Vec<&str> = report
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name.as_str())
                .collect();
            outcome.push_str(&format!("{} {failed:?};", report.passed));
            let _ = cosign::image_tags(&layout);
        }
        outcome
    });
}
