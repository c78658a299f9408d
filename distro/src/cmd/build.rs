//! `distro build`: build every component of a release line in FIPS mode.
//!
//! [`build`] is the build stage's entry point; `distro release` calls it too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::Context;
use crate::output::{self, Format};

/// Arguments of `distro build`.
#[derive(clap::Args)]
pub struct Args {
    /// Release line to build (default: the newest line of the distribution).
    #[arg(long, value_name = "VERSION")]
    line: Option<String>,
    /// Output directory (default: `out/` at the root of the repository holding distro.toml).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs `distro build`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let dist = cx.distribution()?;
    let line = super::select_line(&dist, args.line.as_deref())?;
    let out = args.out.unwrap_or_else(|| cx.default_out());
    let record = build(cx, &dist, line, &out, !cx.quiet)?;
    // The line's release record, as `distro release` starts it after its build stage.
    let line_dir =
        std::fs::canonicalize(out.join(&line.version)).unwrap_or_else(|_| out.join(&line.version));
    if let Some(path) = super::record::update_by_hand(
        cx,
        line.latest.as_deref(),
        &line_dir,
        &record,
        super::record::of_build(cx, &line_dir),
        |_| {},
    )? {
        cx.status(&format!("[build] release record: {}", path.display()));
    }
    match cx.format {
        Format::Json => output::json(&record)?,
        Format::Text => {
            let mut s = format!(
                "{} {} built from {} ({})\n",
                record.distribution, record.line, record.source.repository, record.source.commit
            );
            for c in &record.components {
                s.push_str(&format!(
                    "  {:<14} {}  sha256:{}\n    FIPS mode: {}  module: {}  CMVP: {} ({})\n    evidence: {}\n    provenance: {}\n",
                    c.name,
                    c.binary,
                    c.sha256,
                    if c.fips.mode { "yes" } else { "NO" },
                    c.fips.module_version,
                    c.fips.cmvp_certificate.map_or("-".to_string(), |n| format!("#{n}")),
                    c.fips.cmvp_status.as_str(),
                    c.evidence,
                    c.provenance,
                ));
            }
            output::data(&s);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The build stage: builds every component of `line` into `OUT/<line>` (patches applied, FIPS
/// evidence from the binary, provenance) and returns the record it also writes as
/// `build.json`. A FIPS policy the module does not meet, or a binary that is not in FIPS mode,
/// is a policy refusal (exit 3). `show_cargo` passes cargo's own output through to stderr.
pub fn build(
    cx: &Context,
    dist: &distro_config::Distribution,
    line: &distro_config::Line,
    out: &Path,
    show_cargo: bool,
) -> anyhow::Result<distro_schema::BuildRecord> {
    let progress = |msg: &str| cx.status(&format!("[build] {msg}"));
    Ok(distro_build::build_line(
        dist,
        line,
        &distro_build::BuildOptions {
            out_dir: out.to_path_buf(),
            show_cargo_output: show_cargo,
            progress: &progress,
        },
    )?)
}
