//! Snapshots of every subcommand's `--help`: the CLI is an interface people script against, so a
//! change to it shows up here and is accepted deliberately (`cargo insta review`).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_distro"))
        .args(args)
        .arg("--help")
        .env_remove("DISTRO_CONFIG")
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// `distro --help` and the help of every subcommand.
#[test]
fn help_texts() {
    insta::assert_snapshot!("distro", help(&[]));
    for sub in [
        "build",
        "matrix",
        "patches",
        "sbom",
        "policy",
        "image",
        "keygen",
        "push",
        "pull",
        "sign",
        "attest",
        "verify",
        "release",
        "audit",
        "conformance",
        "advisories",
    ] {
        insta::assert_snapshot!(sub, help(&[sub]));
    }
}
