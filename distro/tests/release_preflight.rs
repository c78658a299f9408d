//! `distro release` checks what its later stages need before it builds anything (issue 10: a
//! missing advisory database used to stop the release only after 12 minutes of building).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The built-in definition with `[advisories] db` pointing at `db`, written into `dir`.
fn config_with_db(dir: &Path, db: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("distro/distro.toml")).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("db = ") {
                format!("db = \"{}\"", db.display())
            } else if l.starts_with("source = ") {
                format!(
                    "source = {{ git = \"{}\", ref = \"HEAD\" }}",
                    repo().display()
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("distro.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A stand-in registry on 127.0.0.1 that answers `GET /v2/` with 200, so only the problem
/// under test is reported.
fn fake_registry() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().take(4).flatten() {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    port
}

fn release(config: &Path, out: &Path, port: u16, path_env: Option<&str>) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distro"));
    cmd.arg("--config")
        .arg(config)
        .arg("release")
        .arg("--out")
        .arg(out)
        .arg("--to")
        .arg(format!("127.0.0.1:{port}/fips-mesh"))
        .arg("--plain-http")
        .arg("--key")
        .arg(out.join("release.key"));
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    let started = Instant::now();
    let o = cmd.output().unwrap();
    (o, started.elapsed())
}

/// A release whose advisory database path is broken (missing, or an advisory that does not
/// parse) stops in seconds, before building, naming the database and how to get one; no build
/// directory is written.
#[test]
fn release_with_broken_advisory_db_stops_before_building() {
    let t = tempfile::tempdir().unwrap();
    let half = t.path().join("half-written-db");
    std::fs::create_dir_all(half.join("crates/x")).unwrap();
    std::fs::write(
        half.join("crates/x/RUSTSEC-2026-0001.md"),
        "```toml\n[advisory]\n",
    )
    .unwrap();
    for (db, why) in [
        (t.path().join("no-such-db"), "no advisory database at"),
        (half, "RUSTSEC-2026-0001.md"),
    ] {
        let config = config_with_db(t.path(), &db);
        let out = t.path().join("out");
        let (o, took) = release(&config, &out, fake_registry(), None);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "release should stop: {e}");
        assert!(took < Duration::from_secs(30), "took {took:?}: {e}");
        assert!(
            e.contains("release preflight") && e.contains("nothing was built"),
            "{e}"
        );
        assert!(e.contains("advisory database") && e.contains(why), "{e}");
        assert!(
            e.contains("distro advisories update"),
            "says how to get one: {e}"
        );
        assert!(
            !e.contains("- registry:"),
            "the registry was reachable: {e}"
        );
        assert!(
            !out.join("0.1").exists(),
            "no build directory may be written: {}",
            out.display()
        );
    }
}

/// Missing tools and an unreachable registry are each named with the way to get them, in one
/// report, before any stage runs.
#[test]
fn release_preflight_names_missing_tools_and_unreachable_registry() {
    let t = tempfile::tempdir().unwrap();
    let config = config_with_db(t.path(), &repo().join("patches/advisory-db"));
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let out = t.path().join("out");
    let (o, took) = release(
        &config,
        &out,
        distro_testsupport::free_port(),
        Some(bin.to_str().unwrap()),
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    for needle in [
        "`cmake` is not on PATH",
        "apt-get install cmake",
        "`go` is not on PATH",
        "apt-get install golang-go",
        "`cargo` is not on PATH",
        "`git` is not on PATH",
        "nothing is listening at 127.0.0.1:",
        "scripts/release-local.sh",
    ] {
        assert!(e.contains(needle), "missing `{needle}` in:\n{e}");
    }
    assert!(
        !e.contains("- advisory database:"),
        "the database is fine: {e}"
    );
    assert!(!out.join("0.1").exists());
}
