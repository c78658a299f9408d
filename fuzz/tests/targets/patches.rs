//! Patch queues: DEP-3 headers, quilt series, and the advisory data and lockfiles the backport
//! engine reads.

use std::path::Path;

use distro_fuzz::{fuzz, Options};
use distro_patches::{advisory, dep3, series::Series};

const DEP3_TOKENS: &[&str] = &[
    "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n",
    "From: ",
    "Subject: [PATCH] ",
    "Date: ",
    "Description: ",
    "Origin: ",
    "upstream, ",
    "backport, ",
    "vendor, ",
    "commit:",
    "https://",
    "Bug: ",
    "Bug-Debian: ",
    "Author: ",
    "Forwarded: ",
    "Applied-Upstream: ",
    "Last-Update: ",
    "2026-02-30",
    "Advisories: ",
    "CVE-2026-12345",
    "GHSA-abcd-1234-wxyz",
    "RUSTSEC-2026-0001",
    "Severity: ",
    "critical",
    "Affected-Versions: ",
    ">=0.1.0, <0.3.2 || ",
    "^1.2.3-rc.1",
    " .\n",
    "\n ",
    "---\n",
    "diff --git a/x b/x\n",
    "--- a/x\n+++ b/x\n@@ -1 +1 @@\n",
    "Index: ",
];

/// DEP-3 headers (and git format-patch mails): never a panic; an error names the patch file;
/// a header that parses, written out again by `render_header` (as backports do), parses back
/// to the same fields.
#[test]
fn dep3_header() {
    let opts = Options::new("dep3").dictionary(DEP3_TOKENS);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input);
        let path = Path::new("queue/fix.patch");
        match dep3::parse(path, &text) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("queue/fix.patch"),
                    "error names no file: {msg}"
                );
                msg
            }
            Ok(meta) => {
                let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).expect("a date");
                let rendered = dep3::render_header(&meta, date);
                let again = dep3::parse(path, &rendered).unwrap_or_else(|e| {
                    panic!("render_header wrote a header that does not parse ({e}):\n{rendered}")
                });
                assert_eq!(
                    again.description, meta.description,
                    "description\n{rendered}"
                );
                assert_eq!(again.origin, meta.origin, "origin\n{rendered}");
                assert_eq!(again.advisories, meta.advisories, "advisories\n{rendered}");
                assert_eq!(again.severity, meta.severity, "severity\n{rendered}");
                assert_eq!(
                    again.affected_versions, meta.affected_versions,
                    "affected versions\n{rendered}"
                );
                assert_eq!(again.commit, meta.commit, "commit\n{rendered}");
                let _ = dep3::diff_part(&text);
                format!("ok {} advisories", meta.advisories.len())
            }
        }
    });
}

/// Quilt `series` files: never a panic; errors name the file and a line inside it; every
/// entry parsed stays inside the queue directory and is listed once.
#[test]
fn quilt_series() {
    let opts = Options::new("series").dictionary(&[
        "-p0",
        "-p1",
        "-p",
        " # ",
        "../",
        "/etc/passwd",
        "./",
        "a.patch",
        "\n",
        "\t",
        "\r\n",
    ]);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input);
        let lines = text.lines().count();
        match Series::parse(Path::new("patches/series"), &text) {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("patches/series"), "{msg}");
                msg
            }
            Ok(s) => {
                let mut names = std::collections::HashSet::new();
                for e in &s.entries {
                    assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
                    let p = Path::new(&e.name);
                    assert!(
                        !e.name.is_empty()
                            && p.components()
                                .all(|c| matches!(c, std::path::Component::Normal(_))),
                        "{:?} leaves the queue directory",
                        e.name
                    );
                    assert!(names.insert(e.name.clone()), "{:?} twice", e.name);
                }
                format!("ok {}", s.entries.len().min(3))
            }
        }
    });
}

/// Advisories of the RustSec database (Markdown with a TOML front block): never a panic.
#[test]
fn rustsec_advisory() {
    let opts = Options::new("advisory").dictionary(&[
        "```toml\n",
        "```\n",
        "[advisory]\n",
        "id = ",
        "package = ",
        "date = ",
        "aliases = [",
        "[versions]\n",
        "patched = [",
        "unaffected = [",
        "[affected]\n",
        "informational = ",
        "withdrawn = ",
        "\">= 1.2.3, < 2\"",
    ]);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input);
        match advisory::parse_advisory(Path::new("crates/x/RUSTSEC-2026-0001.md"), &text) {
            Err(e) => e.to_string(),
            Ok(a) => {
                let _ = a.affects(&semver::Version::new(1, 2, 3));
                "ok".into()
            }
        }
    });
}

/// `Cargo.lock` files (the lockfile of a line's source): never a panic.
#[test]
fn cargo_lock() {
    let opts = Options::new("cargo-lock")
        .dictionary(&[
            "[[package]]\n",
            "name = ",
            "version = ",
            "source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
            "dependencies = [",
            "checksum = ",
            "version = 4\n",
        ])
        .max_len(256 << 10);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input);
        match advisory::parse_lock(Path::new("Cargo.lock"), &text) {
            Err(e) => e.to_string(),
            Ok(p) => format!("ok {}", p.len().min(3)),
        }
    });
}
