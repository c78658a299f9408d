//! A fuzz smoke run of the distro.toml parser without a fuzzing toolchain: thousands of
//! deterministic mutations of a valid definition must never panic, and every error must point
//! inside the text. (A coverage-guided target would need nightly Rust, which CI does not have.)

use std::path::Path;

const SEED: &str = include_str!("../../distro/distro.toml");

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "\n",
    "{",
    "}",
    ",",
    "0",
    "-1",
    "2026-13-40",
    "1.2.3",
    "true",
    "name",
    "line",
    "component",
    "#",
    "\u{0}",
    "é",
    "9999999999999999999999",
];

/// Mutated definitions never panic the parser; errors carry a location inside the file.
#[test]
fn mutated_definitions_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let lines = SEED.lines().count() + 1;
    for _ in 0..5000 {
        let mut text: Vec<char> = SEED.chars().collect();
        for _ in 0..(1 + rng.below(4)) {
            let at = rng.below(text.len());
            match rng.below(3) {
                0 => {
                    text.remove(at);
                }
                1 => {
                    let tok = TOKENS[rng.below(TOKENS.len())];
                    for (i, c) in tok.chars().enumerate() {
                        text.insert(at + i, c);
                    }
                }
                _ => {
                    let end = (at + rng.below(40)).min(text.len());
                    text.drain(at..end);
                }
            }
        }
        let text: String = text.into_iter().collect();
        if let Err(e) = distro_config::parse(Path::new("distro.toml"), &text) {
            if let Some(loc) = e.location() {
                assert!(loc.line >= 1 && loc.line <= lines + 40, "{e}");
            }
            assert!(!e.to_string().is_empty());
        }
    }
}
