//! Smoke runs of the parsers of outside input (CSRs, tokens, configuration files).

use mesh_core::api::reason;
use mesh_core::identity::{self, SpiffeId};

use crate::ca::issuance;
use crate::config;
use crate::state::State;
use crate::tokens::{self, SaIssuer};

/// Deterministic mutations of inputs for the smoke runs below.
fn mutations(seed: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut v = seed.to_vec();
            for _ in 0..(next() % 8 + 1) {
                if v.is_empty() {
                    break;
                }
                let i = (next() as usize) % v.len();
                match next() % 3 {
                    0 => v[i] = next() as u8,
                    1 => {
                        v.remove(i);
                    }
                    _ => v.truncate(i),
                }
            }
            v
        })
        .collect()
}

/// Smoke run: thousands of mutated CSRs are refused with a reason or parsed, never a panic.
#[test]
fn csr_parser_survives_mutations() {
    let id = SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap_or_else(|e| panic!("{e}"));
    let csr = identity::generate_csr(&id).unwrap_or_else(|e| panic!("{e}"));
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(csr.csr_pem.as_bytes())
        .map(|d: rustls::pki_types::CertificateSigningRequestDer<'static>| d.as_ref().to_vec())
        .unwrap_or_default();
    let mut accepted = 0;
    for m in mutations(&der, 3000) {
        let pem = identity::pem_encode("CERTIFICATE REQUEST", &m);
        if issuance::check_csr(&pem).is_ok() {
            accepted += 1;
        }
    }
    for m in mutations(csr.csr_pem.as_bytes(), 1000) {
        // Parsed, or refused with a CSR reason and a message; never a panic or another code.
        if let Err(r) = issuance::check_csr(&String::from_utf8_lossy(&m)) {
            assert!(
                [reason::CSR_INVALID, reason::CSR_IDENTITY_MISMATCH].contains(&r.reason),
                "{}: {}",
                r.reason,
                r.message
            );
            assert!(!r.message.is_empty());
        }
    }
    assert!(accepted < 3000, "mutations should mostly be refused");
}

/// Smoke run: mutated JWTs and join tokens never panic and are never accepted.
#[test]
fn token_parsers_survive_mutations() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = State::open_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIiwiYXVkIjoiZXhhbXBsZS5vcmciLCJleHAiOjk5OTk5OTk5OTl9.c2ln";
    let issuer = SaIssuer {
        iss: None,
        public_key: vec![4; 65],
        file: "test".into(),
    };
    for m in mutations(jwt.as_bytes(), 3000) {
        let t = String::from_utf8_lossy(&m);
        assert!(tokens::verify_sa_jwt(&t, std::slice::from_ref(&issuer), "example.org").is_err());
    }
    let join = "mjt1.0123456789abcdef01234567.c2VjcmV0c2VjcmV0";
    for m in mutations(join.as_bytes(), 3000) {
        assert!(tokens::check_join_token(&state, &String::from_utf8_lossy(&m)).is_err());
    }
}

/// Smoke run: mutated configuration files give errors with a line, never a panic.
#[test]
fn config_parser_survives_mutations() {
    let text = include_str!("../../config/example/mesh.toml");
    for m in mutations(text.as_bytes(), 1500) {
        let t = String::from_utf8_lossy(&m).into_owned();
        if let Err(e) = config::parse_sources(&[("m.toml".into(), t)], "example.org") {
            assert!(!e.0.is_empty());
        }
    }
}
