//! The distribution definition, `distro.toml`.

use std::path::Path;

use distro_fuzz::{fuzz, Options};

/// `distro.toml`: never a panic; every error names the file, and its line (when it has one)
/// is inside the text.
#[test]
fn distro_toml() {
    let opts = Options::new("distro-toml")
        .dictionary(&[
            "[distribution]\n",
            "[support]\n",
            "[fips]\n",
            "[image]\n",
            "[advisories]\n",
            "[[component]]\n",
            "[[line]]\n",
            "name = ",
            "version = ",
            "release_date = ",
            "eol = ",
            "latest = ",
            "source = { git = \".\", ref = \"HEAD\" }",
            "patches = ",
            "features = [",
            "months = ",
            "warn_days = ",
            "require_validated_module = ",
            "base = ",
            "base_sbom = ",
            "db = ",
            "max_age_days = ",
            "2026-02-30",
            "1.2.3",
            "true",
            "\"\"\"",
            "'''",
            "\\u0000",
            "é",
        ])
        .max_len(1 << 20);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input);
        let lines = text.lines().count().max(1);
        match distro_config::parse(Path::new("dist/distro.toml"), &text) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("dist/distro.toml"),
                    "error names no file: {msg}"
                );
                if let Some(loc) = e.location() {
                    assert!(
                        loc.line >= 1 && loc.line <= lines + 1,
                        "line {} of a {lines}-line file: {msg}",
                        loc.line
                    );
                }
                msg
            }
            Ok(d) => format!("ok {} lines", d.lines.len().min(3)),
        }
    });
}
