//! The FIPS module table and the policy built on it.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::path::Path;

use distro_build::fips::module::{self, MODULE_TABLE};
use distro_build::lockfile::Lockfile;
use distro_config::FipsPolicy;
use distro_schema::CmvpStatus;

fn lock_with(versions: &[&str]) -> Lockfile {
    let mut text = String::from("version = 4\n");
    for v in versions {
        text.push_str(&format!(
            "\n[[package]]\nname = \"aws-lc-fips-sys\"\nversion = \"{v}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
        ));
    }
    Lockfile::parse(Path::new("Cargo.lock"), &text).unwrap()
}

/// The table pins the crate line → module line → certificate mapping; changing it is deliberate.
#[test]
fn table_is_pinned() {
    let rows: Vec<String> = MODULE_TABLE
        .iter()
        .map(|m| {
            format!(
                "{}.{} -> {}.x static={:?} dynamic={:?} {}",
                m.crate_line.0,
                m.crate_line.1,
                m.module_major,
                m.static_certificate,
                m.dynamic_certificate,
                m.status.as_str()
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "0.12 -> 2.x static=Some(4816) dynamic=None validated",
            "0.13 -> 3.x static=Some(5314) dynamic=Some(5298) validated",
            "0.14 -> 4.x static=None dynamic=None in-process",
        ]
    );
}

/// Each crate line is identified with its module line, certificate and status.
#[test]
fn identifies_module_lines() {
    let m = module::identify(&lock_with(&["0.13.17"]), Path::new("Cargo.lock")).unwrap();
    assert_eq!(
        (m.module_line.as_str(), m.cmvp_certificate, m.cmvp_status),
        ("3.x", Some(5314), CmvpStatus::Validated)
    );
    let m = module::identify(&lock_with(&["0.12.9"]), Path::new("Cargo.lock")).unwrap();
    assert_eq!(
        (m.module_line.as_str(), m.cmvp_certificate),
        ("2.x", Some(4816))
    );
    let m = module::identify(&lock_with(&["0.14.1"]), Path::new("Cargo.lock")).unwrap();
    assert_eq!(
        (m.cmvp_certificate, m.cmvp_status),
        (None, CmvpStatus::InProcess)
    );
    let m = module::identify(&lock_with(&["0.11.0"]), Path::new("Cargo.lock")).unwrap();
    assert_eq!(m.cmvp_status, CmvpStatus::NotValidated);
}

/// No module, or two modules, in one lockfile is an error that says what to do.
#[test]
fn missing_or_duplicate_module_is_an_error() {
    let e = module::identify(&lock_with(&[]), Path::new("Cargo.lock")).unwrap_err();
    assert!(e.to_string().contains("no `aws-lc-fips-sys`"), "{e}");
    let e =
        module::identify(&lock_with(&["0.13.17", "0.14.1"]), Path::new("Cargo.lock")).unwrap_err();
    assert!(e.to_string().contains("2 versions"), "{e}");
}

/// The policy accepts a validated module, refuses an in-process one when validation is
/// required, and accepts it when the distribution allows uncertified modules.
#[test]
fn policy_on_validation() {
    let strict = FipsPolicy {
        require_validated_module: true,
    };
    let lax = FipsPolicy {
        require_validated_module: false,
    };
    let ok = module::identify(&lock_with(&["0.13.17"]), Path::new("Cargo.lock")).unwrap();
    let in_process = module::identify(&lock_with(&["0.14.1"]), Path::new("Cargo.lock")).unwrap();
    assert!(module::check_policy(&ok, &strict, Path::new("Cargo.lock")).is_ok());
    assert!(module::check_policy(&in_process, &lax, Path::new("Cargo.lock")).is_ok());
    let e = module::check_policy(&in_process, &strict, Path::new("Cargo.lock"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("0.12.x (AWS-LC FIPS 2.x, CMVP #4816)"), "{e}");
    assert!(e.contains("0.13.x (AWS-LC FIPS 3.x, CMVP #5314)"), "{e}");
    assert!(e.contains("require_validated_module = false"), "{e}");
}

/// The validation facts an auditor reads: certificate page and security policy of the static
/// certificate, FIPS 140-3, the module-not-product statement, and a source for every fact; a
/// sunset date that no source confirmed is absent and its source says "unconfirmed".
#[test]
fn validation_facts_name_their_sources_and_admit_what_is_unconfirmed() {
    let mut m = module::identify(&lock_with(&["0.13.17"]), Path::new("Cargo.lock")).unwrap();
    // The lockfile alone cannot say how the module is linked; the evidence reads that from the
    // binary before asking for the validation facts. Unknown linkage names no certificate.
    assert_eq!(module::validation(&m).certificate, None);
    m.linkage = distro_schema::ModuleLinkage::Dynamic;
    assert_eq!(module::validation(&m).certificate, Some(5298));
    m.linkage = distro_schema::ModuleLinkage::Static;
    let v = module::validation(&m);
    assert_eq!(v.standard, "FIPS 140-3");
    assert_eq!(v.status, CmvpStatus::Validated);
    assert_eq!(v.certificate, Some(5314));
    assert_eq!(
        v.certificate_url.as_deref(),
        Some("https://csrc.nist.gov/projects/cryptographic-module-validation-program/certificate/5314")
    );
    assert!(v.security_policy_url.unwrap().ends_with("/140sp5314.pdf"));
    assert_eq!(v.sunset_date, None);
    assert!(v.scope.contains("not to this product"));
    let facts: Vec<&str> = v.sources.iter().map(|f| f.fact.as_str()).collect();
    for f in [
        "module line",
        "certificate, status and standard",
        "security policy",
        "sunset date",
        "tested operational environment",
    ] {
        assert!(facts.contains(&f), "no source for {f}: {facts:?}");
    }
    let sunset = v.sources.iter().find(|f| f.fact == "sunset date").unwrap();
    assert!(
        sunset.source.starts_with("unconfirmed"),
        "{}",
        sunset.source
    );
    assert!(v.tested_operational_environment.starts_with("unconfirmed"));

    let v = module::validation(
        &module::identify(&lock_with(&["0.14.1"]), Path::new("Cargo.lock")).unwrap(),
    );
    assert_eq!((v.certificate, v.status), (None, CmvpStatus::InProcess));
    assert_eq!(v.certificate_url, None);
}
