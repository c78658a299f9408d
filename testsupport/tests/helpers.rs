//! The shared helpers do what their documentation says: free ports bind and lie outside the
//! ephemeral range, git fixtures are reproducible, `Bin` reports failures with their output,
//! sha256 matches a known digest, and the rcgen CA writes its keys owner-only.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use distro_testsupport::bin::Bin;
use distro_testsupport::{free_addr, free_port, git, sha256_file};

#[test]
fn free_ports_bind() {
    TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let addr = free_addr();
    assert!(addr.ip().is_loopback());
    TcpListener::bind(addr).unwrap();
}

/// The ports come from outside the ephemeral range, where no outgoing connection can take
/// them between the test finding one and its server binding it, and one process is not
/// given the same port twice while it is held.
#[test]
fn free_ports_are_outside_the_ephemeral_range_and_distinct() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let mut it = range.split_whitespace().map(|n| n.parse::<u16>().unwrap());
    let (lo, hi) = (it.next().unwrap(), it.next().unwrap());
    let mut held = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let addr = free_addr();
        assert!(
            addr.port() < lo || addr.port() > hi,
            "{addr} is in the ephemeral range {lo}-{hi}"
        );
        assert!(seen.insert(addr.port()), "{addr} handed out twice");
        held.push(TcpListener::bind(addr).unwrap());
    }
}

#[test]
fn git_fixtures_are_reproducible() {
    if !distro_testsupport::require_tool("git_fixtures_are_reproducible", "git") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let ids: Vec<String> = ["a", "b"]
        .iter()
        .map(|name| {
            let dir = t.path().join(name);
            git::init(&dir);
            std::fs::write(dir.join("README"), "fixture\n").unwrap();
            git::commit_all(&dir, "fixture")
        })
        .collect();
    assert_eq!(ids[0], ids[1], "same tree, identity and date: same commit");
    assert_eq!(
        git::run(
            &t.path().join("a"),
            &["log", "-1", "--format=%an <%ae> %aI"]
        ),
        format!("{} <{}> 2026-01-01T00:00:00Z", git::NAME, git::EMAIL)
    );
    let failed = git::output(t.path(), &["rev-parse", "--verify", "no-such-ref"]);
    assert!(!failed.status.success());
    let panic = std::panic::catch_unwind(|| git::run(t.path(), &["no-such-command"]));
    let msg = panic.unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("no-such-command") && msg.contains("stderr"),
        "{msg}"
    );
}

#[test]
fn bin_reports_args_status_and_output() {
    let sh = Bin::new("/bin/sh").env("TESTSUPPORT_X", "x");
    assert_eq!(sh.ok(&["-c", "echo $TESTSUPPORT_X"]), "x\n");
    assert!(sh
        .fails(&["-c", "echo out; echo err >&2; exit 3"])
        .contains("out\nerr"));
    let panic = std::panic::catch_unwind(|| sh.ok(&["-c", "echo said; echo why >&2; exit 4"]));
    let msg = panic.unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    for want in ["`sh -c", "exit status: 4", "said", "why"] {
        assert!(msg.contains(want), "{want:?} missing in {msg}");
    }
    assert_eq!(
        sh.json(&["-c", "echo '{\"a\": 1}' # ", "--format", "json"])["a"],
        1
    );
}

#[test]
fn sha256_of_a_file() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("abc");
    std::fs::write(&p, "abc").unwrap();
    assert_eq!(
        sha256_file(&p),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[cfg(feature = "rcgen")]
#[test]
fn rcgen_ca_writes_owner_only_keys() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = tempfile::tempdir().unwrap();
    let pki = distro_testsupport::pki::Pki::new(t.path(), "mesh");
    assert!(std::fs::read_to_string(&pki.bundle)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    for (cert, key) in [
        pki.issue("spiffe://test.mesh/ns/a/sa/a", "a"),
        pki.server("server"),
        pki.client("client"),
    ] {
        assert!(cert.is_file());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
}
