//! Fuzz targets of mesh-control's parsers of outside input: the mesh configuration files, the
//! CSRs workloads send, and service-account tokens. They run with the harness of the `fuzz/`
//! crate (`distro_fuzz`; corpus in `fuzz/corpus/control-*`) and live here because mesh-control
//! is a binary crate: its modules cannot be reached from another crate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use distro_fuzz::{fuzz, Options};
use mesh_core::api::reason;
use mesh_core::identity::{self, SpiffeId};

use crate::ca::issuance;
use crate::{config, tokens};

const TD: &str = "example.org";

/// Mesh configuration files: never a panic; every error names the file and a line inside it;
/// an accepted configuration survives the state file's JSON round trip unchanged, and the view
/// cut for each of its workloads is one the proxy's own validator accepts.
#[test]
fn control_config() {
    let opts = Options::new("control-config").dictionary(&[
        "[tls]\n",
        "[[peer_authentication]]\n",
        "[[services]]\n",
        "[[services.endpoints]]\n",
        "[[routes]]\n",
        "[[authorization]]\n",
        "min_version = ",
        "\"TLSv1_1\"",
        "cipher_suites = [",
        "\"TLS13_CHACHA20_POLY1305_SHA256\"",
        "kx_groups = [\"X25519\"]",
        "workload = ",
        "mtls_mode = \"DISABLE\"",
        "name = ",
        "protocol = ",
        "allowed_clients = [",
        "address = \"[::1]:0\"",
        "identity = ",
        "\"spiffe://example.org/ns/a/sa/b\"",
        "\"spiffe://other.org/*\"",
        "labels = { version = \"v1\" }",
        "service = ",
        "match = { path_prefix = \"/\", headers = { \"x\" = \"1\" }, method = \"GET\" }",
        "destinations = [{ labels = {}, weight = 0 }]",
        "retries = { attempts = 4294967295, per_try_timeout_ms = 0, budget_percent = 101 }",
        "timeout_ms = ",
        "action = \"DENY\"",
        "sources = [",
        "methods = [",
        "paths = [\"/a/../b\", \"//x\", \"/%7e\"]",
    ]);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input).into_owned();
        let lines = text.lines().count().max(1);
        match config::parse_sources(&[("mesh.toml".into(), text)], TD) {
            Err(errors) => {
                assert!(!errors.0.is_empty(), "refused without an error");
                for e in &errors.0 {
                    assert_eq!(e.file, "mesh.toml", "{e}");
                    assert!(e.line <= lines + 1, "line {} of {lines}: {e}", e.line);
                    assert!(!e.message.is_empty());
                }
                errors.0[0].message.clone()
            }
            Ok(cfg) => {
                let json = serde_json::to_vec(&cfg).expect("serializes");
                let again: config::MeshConfig =
                    serde_json::from_slice(&json).expect("its own JSON parses");
                assert_eq!(again, cfg, "state file round trip");
                let workloads = cfg
                    .services
                    .iter()
                    .flat_map(|s| s.service.endpoints.iter().map(|e| e.identity.clone()));
                for id in workloads {
                    let view = cfg.view_for(&id, "");
                    if let Err(e) = mesh_proxy::config::validate(&view) {
                        panic!("mesh-control accepted a configuration whose view for {id} the proxy refuses: {e}");
                    }
                }
                format!("ok {}", cfg.services.len().min(3))
            }
        }
    });
}

/// CSRs: never a panic; a refusal carries a CSR reason and a message; an accepted CSR asks for
/// at most one identity, and only a valid SPIFFE ID passes the entitlement check.
#[test]
fn control_csr() {
    let id = SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap();
    let csr = identity::generate_csr(&id).unwrap();
    let opts = Options::new("control-csr")
        .seeds([csr.csr_pem.into_bytes()])
        .dictionary(&[
            "-----BEGIN CERTIFICATE REQUEST-----\n",
            "-----END CERTIFICATE REQUEST-----\n",
            "MIIB",
            "=",
            "\n",
        ]);
    fuzz(opts, move |input| {
        let text = String::from_utf8_lossy(input);
        match issuance::check_csr(&text) {
            Err(r) => {
                assert!(
                    [reason::CSR_INVALID, reason::CSR_IDENTITY_MISMATCH].contains(&r.reason),
                    "{}: {}",
                    r.reason,
                    r.message
                );
                assert!(!r.message.is_empty());
                r.message
            }
            Ok(c) => {
                let entitled = issuance::check_requested(TD, c.requested.as_deref(), &id);
                if entitled.is_ok() {
                    if let Some(req) = &c.requested {
                        assert_eq!(SpiffeId::parse(req).unwrap(), id);
                    }
                }
                format!("accepted {}", entitled.is_ok())
            }
        }
    });
}

/// Service-account JWTs (ES256): never a panic; a token that verifies under the test issuer's
/// key is, byte for byte, one that key signed, and names the identity it was signed for.
#[test]
fn control_sa_jwt() {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let issuer = tokens::SaIssuer {
        iss: Some("https://kubernetes.default.svc".into()),
        public_key: pair.public_key().as_ref().to_vec(),
        file: "sa.pub".into(),
    };
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let sign = |claims: serde_json::Value| {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let signed = format!("{h}.{c}");
        let sig = pair.sign(&rng, signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    let good = sign(serde_json::json!({
        "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:a:b",
        "aud": [TD], "exp": exp, "nbf": exp - 7200,
    }));
    let other_aud = sign(serde_json::json!({
        "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:a:b",
        "aud": "other.org", "exp": exp,
    }));
    let signed_parts: Vec<String> = [&good, &other_aud]
        .iter()
        .map(|t| t.rsplit_once('.').unwrap().0.to_string())
        .collect();
    let opts = Options::new("control-sa-jwt")
        .seeds([good.clone().into_bytes(), other_aud.into_bytes()])
        .dictionary(&[".", "eyJ", "-", "_", "="]);
    fuzz(opts, move |input| {
        let text = String::from_utf8_lossy(input);
        match tokens::verify_sa_jwt(&text, std::slice::from_ref(&issuer), TD) {
            Err(r) => r.message,
            Ok(id) => {
                let signed = text.rsplit_once('.').map(|(s, _)| s).unwrap_or_default();
                assert!(
                    signed_parts.iter().any(|p| p == signed),
                    "a token the issuer never signed verifies: {text}"
                );
                assert_eq!(id.to_string(), "spiffe://example.org/ns/a/sa/b");
                "verified".into()
            }
        }
    });
}

/// `--state etcd://…` URLs: never a panic; an accepted URL is one no URL parser reads another
/// way: each endpoint parses (`http::Uri`) back to exactly the member given, with the URL's
/// scheme, no user information, path, query or fragment; a TLS member's host is a valid TLS
/// server name; the prefix is `/`-delimited with no empty, `.` or `..` segment; and printing
/// the parsed URL again parses to the same thing.
#[test]
fn control_state_url() {
    use crate::state::etcd::{parse_url, PLAIN_SCHEME, TLS_SCHEME};
    let opts = Options::new("control-state-url").max_len(512).dictionary(&[
        "etcd://",
        "etcds://",
        ":2379",
        ",",
        "/",
        "[::1]",
        "[",
        "]",
        "@",
        "#",
        "?",
        "%",
        "..",
        ".",
        "-",
        ":",
        "+",
        "0",
        "65535",
        "65536",
        "127.0.0.1",
        "http://",
    ]);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input).into_owned();
        let u = match parse_url(&text) {
            Err(e) => {
                assert!(!e.is_empty(), "an empty error for {text:?}");
                return e;
            }
            Ok(u) => u,
        };
        let scheme = if u.tls { "https" } else { "http" };
        let mut members = Vec::new();
        for e in &u.endpoints {
            let uri: http::Uri = e
                .parse()
                .unwrap_or_else(|err| panic!("{text:?}: endpoint {e} does not parse: {err}"));
            assert_eq!(uri.scheme_str(), Some(scheme), "{text:?}: {e}");
            let auth = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            assert!(!auth.contains('@'), "{text:?}: user information in {e}");
            assert!(
                uri.path() == "/" && uri.query().is_none(),
                "{text:?}: {e} has a path or query"
            );
            let port = uri
                .port_u16()
                .unwrap_or_else(|| panic!("{text:?}: {e} has no port"));
            let host = uri.host().unwrap_or_default();
            assert_eq!(
                format!("{scheme}://{host}:{port}"),
                *e,
                "{text:?}: the endpoint is read as another host or port"
            );
            if u.tls {
                let name = host.trim_start_matches('[').trim_end_matches(']');
                assert!(
                    rustls::pki_types::ServerName::try_from(name.to_string()).is_ok(),
                    "{text:?}: {name} is not a TLS server name"
                );
            }
            members.push(auth.to_string());
        }
        assert!(
            u.prefix.starts_with('/') && u.prefix.ends_with('/') && u.prefix.len() > 2,
            "{text:?}: prefix {}",
            u.prefix
        );
        let inner = &u.prefix[1..u.prefix.len() - 1];
        assert!(
            inner
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{text:?}: prefix {}",
            u.prefix
        );
        let again = format!(
            "{}{}{}",
            if u.tls { TLS_SCHEME } else { PLAIN_SCHEME },
            members.join(","),
            u.prefix
        );
        assert_eq!(
            parse_url(&again).as_ref(),
            Ok(&u),
            "{text:?} printed as {again}"
        );
        format!("{} members, prefix {}", u.endpoints.len(), u.prefix)
    });
}
