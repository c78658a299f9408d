//! `distro policy`: cargo-deny's licence, ban, source and advisory checks, per component.
//!
//! By default every component of the distribution is checked in the repository that holds
//! distro.toml (or `--source DIR`, e.g. a line's patched tree `OUT/<line>/src`), with that
//! repository's `deny.toml`, with the feature graph the build compiles (default features off,
//! the component's features on; [`check_component`], which the release's policy stage calls).
//! `--manifest-path` checks any other package instead. A component the policy denies (a
//! licence, a banned crate, a source, an advisory) is a policy refusal, exit 3; every finding
//! names the crate, the rule and the way out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use distro_sbom::policy::{self, AdvisoryDb, PolicyOptions, PolicyReport};

use super::Context;
use crate::output::{self, Format, Refusal};

/// Arguments of `distro policy`.
#[derive(clap::Args)]
pub struct Args {
    /// Source tree whose components are checked (default: the repository holding distro.toml).
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
    /// Only these components (repeatable).
    #[arg(long = "component", value_name = "NAME")]
    components: Vec<String>,
    /// Check this package instead of the distribution's components.
    #[arg(long, value_name = "CARGO_TOML", conflicts_with = "components")]
    manifest_path: Option<PathBuf>,
    /// Features for `--manifest-path` (comma-separated or repeated).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "FEATURES",
        requires = "manifest_path"
    )]
    features: Vec<String>,
    /// The policy (default: deny.toml of the repository holding distro.toml).
    #[arg(long, value_name = "FILE")]
    deny_toml: Option<PathBuf>,
    /// A local RustSec advisory-db snapshot to check against, offline (default: `[advisories]
    /// db` of distro.toml, else the repository's patches/advisory-db).
    #[arg(long, value_name = "DIR", env = "DISTRO_ADVISORY_DB")]
    advisory_db: Option<PathBuf>,
    /// Override deny.toml's `maximum-db-staleness` (ISO 8601 duration, e.g. `P365D`).
    #[arg(long, value_name = "DURATION")]
    max_db_staleness: Option<String>,
    /// The cargo-deny program.
    #[arg(long, value_name = "PATH", default_value = "cargo-deny")]
    cargo_deny: PathBuf,
}

/// The repository holding distro.toml (`<dir of distro.toml>/..`).
fn repository(cx: &Context) -> PathBuf {
    cx.config_path
        .parent()
        .map(|p| p.join(".."))
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The distribution's dependency policy: `deny.toml` of the repository holding distro.toml
/// (what `distro policy` checks by default and the release's policy stage applies to every
/// line).
pub fn default_deny_toml(cx: &Context) -> PathBuf {
    repository(cx).join("deny.toml")
}

/// A component of a source tree, as it is built.
pub struct Target<'a> {
    /// Component name (for the report).
    pub name: &'a str,
    /// The source tree (a workspace holding the package).
    pub source: &'a Path,
    /// Its cargo package.
    pub package: &'a str,
    /// The features it is built with, default features off (as `distro build` compiles it).
    pub features: Vec<String>,
}

/// cargo-deny's verdict on one component with exactly the feature graph the build compiles
/// (`--no-default-features` and the component's features): what `distro policy` reports and
/// the release's policy stage judges.
pub fn check_component(
    t: &Target<'_>,
    deny_toml: &Path,
    db: &AdvisoryDb,
    cargo_deny: &Path,
    max_db_staleness: Option<&str>,
) -> anyhow::Result<PolicyReport> {
    let manifest = distro_sbom::graph::package_manifest(t.source, t.package)
        .with_context(|| format!("component {} in {}", t.name, t.source.display()))?;
    check_manifest(
        t.name,
        &manifest,
        (t.features.clone(), true),
        deny_toml,
        db,
        cargo_deny,
        max_db_staleness,
    )
}

/// cargo-deny's four checks of one package, with `(features, no_default_features)`.
fn check_manifest(
    name: &str,
    manifest: &Path,
    (features, no_default_features): (Vec<String>, bool),
    deny_toml: &Path,
    db: &AdvisoryDb,
    cargo_deny: &Path,
    max_db_staleness: Option<&str>,
) -> anyhow::Result<PolicyReport> {
    let opts = PolicyOptions {
        component: name.to_string(),
        manifest_path: manifest.to_path_buf(),
        features,
        no_default_features,
        deny_toml: deny_toml.to_path_buf(),
        advisory_db: Some(db.path().to_path_buf()),
        max_db_staleness: max_db_staleness.map(str::to_string),
        cargo_deny: cargo_deny.to_path_buf(),
    };
    policy::check(&opts, db.date()).with_context(|| format!("policy check of {name}"))
}

/// Runs `distro policy`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let repo = repository(cx);
    let deny_toml = args
        .deny_toml
        .clone()
        .unwrap_or_else(|| default_deny_toml(cx));
    if !deny_toml.is_file() {
        anyhow::bail!(
            "no policy at {}: pass --deny-toml FILE",
            deny_toml.display()
        );
    }

    // The same snapshot every other report reads, laid out the way cargo-deny wants it.
    let dist = if args.manifest_path.is_some() {
        cx.distribution_if_any().ok().flatten()
    } else {
        cx.distribution_if_any()?
    };
    let (_, snap) = cx.advisory_db(args.advisory_db.as_deref(), dist.as_ref())?;
    cx.status(&format!(
        "preparing the advisory database from {}",
        snap.path.display()
    ));
    let db = AdvisoryDb::prepare(&snap.path, &policy::db_urls(&deny_toml)?)?;
    let staleness = args.max_db_staleness.as_deref();

    let mut reports: Vec<PolicyReport> = Vec::new();
    if let Some(m) = &args.manifest_path {
        let name = m
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| m.display().to_string());
        cx.status(&format!("{name}: running cargo-deny"));
        reports.push(check_manifest(
            &name,
            m,
            (args.features.clone(), false),
            &deny_toml,
            &db,
            &args.cargo_deny,
            staleness,
        )?);
    } else {
        let dist = cx.distribution()?;
        let source = args.source.clone().unwrap_or_else(|| repo.clone());
        let chosen: Vec<_> = dist
            .components
            .iter()
            .filter(|c| args.components.is_empty() || args.components.contains(&c.name))
            .collect();
        if chosen.is_empty() {
            anyhow::bail!("no component matches {:?}", args.components);
        }
        for c in chosen {
            cx.status(&format!("{}: running cargo-deny", c.name));
            let target = Target {
                name: &c.name,
                source: &source,
                package: &c.package,
                features: c.features.clone(),
            };
            reports.push(check_component(
                &target,
                &deny_toml,
                &db,
                &args.cargo_deny,
                staleness,
            )?);
        }
    }

    if cx.format == Format::Json {
        output::json(&reports)?;
    } else {
        let mut s = String::new();
        for r in &reports {
            s.push_str(&format!(
                "{}: {}\n",
                r.component,
                if r.passed { "pass" } else { "FAIL" }
            ));
            for (check, c) in &r.summary {
                s.push_str(&format!(
                    "  {check:<10} {} errors, {} warnings\n",
                    c.errors, c.warnings
                ));
            }
            let unused = r
                .findings
                .iter()
                .filter(|f| f.crate_name.is_empty() && f.severity == "warning")
                .count();
            if unused > 0 {
                s.push_str(&format!("  note: {unused} deny.toml entries not needed by this component (details with --format json)\n"));
            }
            for f in r
                .findings
                .iter()
                .filter(|f| !(f.crate_name.is_empty() && f.severity == "warning"))
            {
                s.push_str(&format!(
                    "  {} [{}/{}] {} {}{}: {}\n    way out: {}\n",
                    f.severity,
                    f.check,
                    f.code,
                    f.crate_name,
                    f.version,
                    f.advisory
                        .as_ref()
                        .map(|a| format!(" ({a})"))
                        .unwrap_or_default(),
                    f.message,
                    f.way_out
                ));
                if f.path.len() > 1 {
                    s.push_str(&format!("    via: {}\n", f.path.join(" <- ")));
                }
            }
        }
        output::data(&s);
    }
    refusal(&reports)?;
    Ok(ExitCode::SUCCESS)
}

/// A licence, ban, source or advisory denial is the policy saying no (exit 3, after the report
/// on stdout), not an error: cargo-deny ran and judged. What could not be checked at all (no
/// deny.toml, a stale advisory database, cargo-deny missing) stays an error (exit 1).
fn refusal(reports: &[PolicyReport]) -> anyhow::Result<()> {
    let denied: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed)
        .map(|r| {
            let findings: Vec<String> = r
                .findings
                .iter()
                .filter(|f| f.severity == "error")
                .map(|f| f.summary())
                .collect();
            format!("{}: {}", r.component, findings.join(", "))
        })
        .collect();
    if denied.is_empty() {
        return Ok(());
    }
    Err(anyhow::Error::new(Refusal(format!(
        "the policy denies {} component(s):\n  {}\n  help: each finding's way out is in the report above (with --format json, its `way_out`)",
        denied.len(),
        denied.join("\n  ")
    ))))
}
