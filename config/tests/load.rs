//! Loading and validating distribution definitions.

use std::path::Path;

use distro_config::{parse, ConfigError};

const GOOD: &str = r#"
[distribution]
name = "test-mesh"

[support]
months = 14

[fips]
require_validated_module = true

[[component]]
name = "mesh-proxy"
package = "mesh-proxy"
features = ["fips"]

[[line]]
version = "1.2"
release_date = 2025-01-31
source = { git = "..", ref = "v1.2.0" }
"#;

fn err(text: &str) -> ConfigError {
    match parse(Path::new("dist/distro.toml"), text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// The built-in distribution definition loads and validates.
#[test]
fn builtin_definition_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../distro/distro.toml");
    let d = distro_config::load(&path).unwrap();
    assert!(d.component("mesh-proxy").is_some());
    assert!(d.component("mesh-control").is_some());
    assert!(d.components.iter().all(|c| c.fips_required));
    assert_eq!(d.support.months, 14);
    // Two lines from this repository: 0.1 at a pinned commit with a patch queue, 0.2 at HEAD;
    // both inside their 14-month window on 2026-12-02.
    let lines: Vec<(&str, &str)> = d
        .lines
        .iter()
        .map(|l| (l.version.as_str(), l.source.git_ref.as_str()))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, "0.1");
    assert_eq!(lines[0].1.len(), 40, "0.1 is pinned by full commit id");
    assert_eq!(lines[1], ("0.2", "HEAD"));
    let queue = d.lines[0].patches.as_ref().expect("0.1 has a patch queue");
    assert!(queue.join("series").is_file(), "{}", queue.display());
    assert!(d.lines[1].patches.is_none());
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
    for l in &d.lines {
        assert!(
            l.release_date <= today && l.eol(&d.support) > today,
            "{}",
            l.version
        );
        assert!(l.source.git.ends_with("/distro/.."), "{}", l.source.git);
    }
}

/// Defaults fill in, the binary defaults to the package, relative sources resolve.
#[test]
fn good_definition_parses_with_defaults() {
    let d = parse(Path::new("dist/distro.toml"), GOOD).unwrap();
    assert_eq!(d.components[0].binary, "mesh-proxy");
    assert_eq!(d.support.warn_days, 30);
    let line = &d.lines[0];
    assert_eq!(line.source.git, "dist/..");
    // Jan 31 + 14 months clamps to the end of March of the next year.
    assert_eq!(line.eol(&d.support).to_string(), "2026-03-31");
}

/// Malformed TOML points at the line and column of the problem.
#[test]
fn malformed_toml_names_the_line() {
    let e = err("[distribution]\nname = \"x\"\n\n[[component]\nname = 1\n");
    let loc = e.location().unwrap();
    assert_eq!(loc.line, 4, "{e}");
    assert!(e.to_string().starts_with("dist/distro.toml:4:"), "{e}");
}

/// A misspelt key is refused with its line, and the message lists what is accepted.
#[test]
fn unknown_key_names_the_line() {
    let text = GOOD.replace("features = [\"fips\"]", "feature = [\"fips\"]");
    let e = err(&text);
    assert_eq!(e.location().unwrap().line, 14, "{e}");
    assert!(e.to_string().contains("unknown field `feature`"), "{e}");
}

/// An impossible date is refused at its own line with a hint of the format.
#[test]
fn bad_date_names_the_line() {
    let text = GOOD.replace("2025-01-31", "\"2025-02-30\"");
    let e = err(&text);
    assert_eq!(e.location().unwrap().line, 18, "{e}");
    let s = e.to_string();
    assert!(
        s.contains("release_date") && s.contains("YYYY-MM-DD"),
        "{s}"
    );
}

/// A line version that is not MAJOR.MINOR is refused.
#[test]
fn bad_line_version_is_refused() {
    let e = err(&GOOD.replace("version = \"1.2\"", "version = \"1.2.3\""));
    assert_eq!(e.location().unwrap().line, 17, "{e}");
    assert!(e.to_string().contains("MAJOR.MINOR"), "{e}");
}

/// Duplicate components are refused at the second definition.
#[test]
fn duplicate_component_is_refused() {
    let text = GOOD.replace(
        "[[line]]",
        "[[component]]\nname = \"mesh-proxy\"\npackage = \"other\"\n\n[[line]]",
    );
    let e = err(&text);
    assert_eq!(e.location().unwrap().line, 17, "{e}");
    assert!(e.to_string().contains("defined twice"), "{e}");
}

/// An end of life before the release is refused.
#[test]
fn eol_before_release_is_refused() {
    let text = GOOD.replace(
        "release_date = 2025-01-31",
        "release_date = 2025-01-31\neol = 2024-12-01",
    );
    let e = err(&text);
    assert_eq!(e.location().unwrap().line, 19, "{e}");
}

/// A missing file says how to point at another.
#[test]
fn missing_file_says_what_to_do() {
    let e = distro_config::load(Path::new("/nonexistent/distro.toml")).unwrap_err();
    assert!(e.to_string().contains("--config"), "{e}");
}

/// Without an `[advisories]` table the repository's own snapshot is used and 90 days is the
/// staleness limit; a relative `db` resolves against the directory of distro.toml.
#[test]
fn advisories_table_defaults_and_relative_db() {
    let d = parse(Path::new("dist/distro.toml"), GOOD).unwrap();
    assert_eq!(d.advisories.db, None);
    assert_eq!(d.advisories.max_age_days, 90);
    let text = format!("{GOOD}\n[advisories]\ndb = \"../mirror/advisory-db\"\nmax_age_days = 30\n");
    let d = parse(Path::new("dist/distro.toml"), &text).unwrap();
    assert_eq!(
        d.advisories.db.as_deref(),
        Some(Path::new("dist/../mirror/advisory-db"))
    );
    assert_eq!(d.advisories.max_age_days, 30);
}

/// A staleness limit outside 1..=3650 days is refused at its own line.
#[test]
fn advisories_max_age_out_of_range_names_the_line() {
    let text = format!("{GOOD}\n[advisories]\nmax_age_days = 0\n");
    let e = err(&text);
    assert_eq!(e.location().unwrap().line, 22, "{e}");
    assert!(e.to_string().contains("max_age_days"), "{e}");
}

/// The built-in definition names the advisory database the repository ships.
#[test]
fn builtin_definition_uses_the_vendored_advisory_db() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../distro/distro.toml");
    let d = distro_config::load(&path).unwrap();
    let db = d
        .advisories
        .db
        .expect("the built-in distro.toml sets [advisories] db");
    assert!(
        db.join("crates").is_dir() && db.join("SNAPSHOT").is_file(),
        "{} is not the vendored snapshot",
        db.display()
    );
}
