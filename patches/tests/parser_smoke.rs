//! Smoke run of the parsers of outside input (patch headers, series files, advisories,
//! lockfiles) on mutated samples: they may reject input, never panic.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use distro_patches::{advisory, dep3, series::Series};

const SAMPLES: &[&str] = &[
    "From 1 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH] x\n\nOrigin: upstream, commit:1\nAdvisories: CVE-2026-1, RUSTSEC-2026-0001\nSeverity: high\nAffected-Versions: >=0.1, <0.3\nLast-Update: 2026-01-01\n---\ndiff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-a\n+b\n",
    "Description: d\n more\n .\nOrigin: https://x/y\nBug-Debian: 1\n\n--- a/x\n+++ b/x\n",
    "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\nDate: Thu, 1 Jan 2026 00:00:00 +0000\nSubject: u\n\nOrigin: upstream, commit:1 (diff against parent 1 2)\nAffected-Versions: >=1.39.0, <1.42.1 || >=1.43.0, <1.43.1\n---\n",
    "# c\na.patch -p0\n\nb.patch\n",
    "```toml\n[advisory]\nid = \"RUSTSEC-2026-0001\"\npackage = \"x\"\ndate = \"2026-01-01\"\n[versions]\npatched = [\">= 1.2.3, < 2\", \"^2.1\"]\nunaffected = [\"< 0.1\"]\n```\n# t\n",
    "version = 4\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+x\"\ndependencies = [\"b 1.0.0\"]\n",
];

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn mutate(rng: &mut Rng, s: &str) -> String {
    let mut b: Vec<u8> = s.as_bytes().to_vec();
    let alphabet = b":,-\n \t[]#>=<.`\"{}\\/0123456789aZ\xc3\xa9";
    for _ in 0..(rng.next() % 8 + 1) {
        let pos = if b.is_empty() {
            0
        } else {
            (rng.next() as usize) % b.len()
        };
        match rng.next() % 4 {
            0 if !b.is_empty() => {
                b.remove(pos);
            }
            1 => b.insert(pos, alphabet[(rng.next() as usize) % alphabet.len()]),
            2 => {
                let end = (pos + (rng.next() as usize % 16)).min(b.len());
                b.truncate(end.max(pos));
            }
            _ => {
                let end = (pos + (rng.next() as usize % 24)).min(b.len());
                let chunk = b[pos..end].to_vec();
                for (i, c) in chunk.into_iter().enumerate() {
                    b.insert(pos + i, c);
                }
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// 20,000 mutated inputs through every parser without a panic.
#[test]
fn parsers_never_panic_on_mutated_input() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let p = Path::new("fuzz");
    for i in 0..20_000 {
        let text = mutate(&mut rng, SAMPLES[i % SAMPLES.len()]);
        let _ = dep3::parse(p, &text);
        let _ = Series::parse(p, &text);
        let _ = advisory::parse_advisory(p, &text);
        let _ = advisory::parse_lock(p, &text);
        let _ = dep3::diff_part(&text);
    }
}
