//! `distro matrix`: the support matrix at a date (table, JSON, or endoflife.date export), and
//! the release gate for one line.

use std::path::PathBuf;
use std::process::ExitCode;

use distro_patches::chrono::{self, NaiveDate};
use distro_patches::matrix::{self, ReleaseCheck};

use super::Context;
use crate::output::{self, Format, Refusal};

/// Arguments of `distro matrix`.
#[derive(clap::Args)]
pub struct Args {
    /// Date to evaluate support at (YYYY-MM-DD; default: today, UTC).
    #[arg(long, value_name = "DATE")]
    pub at: Option<NaiveDate>,
    /// Print the endoflife.date-style release cycles (JSON) instead of the matrix.
    #[arg(long)]
    pub endoflife: bool,
    /// Local RustSec advisory database (default: `[advisories] db` of distro.toml, else the
    /// repository's patches/advisory-db).
    #[arg(long, value_name = "PATH")]
    pub advisory_db: Option<PathBuf>,
    /// Skip the advisory columns (no database or source access). The columns are the lines'
    /// evaluations that `distro patches scan` and the VEX documents report too.
    #[arg(long)]
    pub no_advisories: bool,
    /// Check whether LINE may be released at the date: refused when end of life (exit 3),
    /// warned when ending within the support policy's warn_days.
    #[arg(long, value_name = "LINE")]
    pub check_release: Option<String>,
    /// With --check-release: allow releasing an end-of-life line.
    #[arg(long, requires = "check_release")]
    pub force: bool,
}

/// Runs `distro matrix`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let mut dist = cx.distribution()?;
    if !args.no_advisories && !args.endoflife && args.check_release.is_none() {
        // The advisory columns read every line's source: remote ones come from the cache.
        cx.localise_sources(&mut dist)?;
    }
    let dist = dist;
    let at = args.at.unwrap_or_else(|| chrono::Utc::now().date_naive());
    if let Some(version) = &args.check_release {
        let line = super::select_line(&dist, Some(version))?;
        // An end-of-life line is the policy saying no (exit 3), not an error: the check ran.
        let (eol, days_left, status) = matrix::line_status(&dist, line, at);
        let (decision, message) = match matrix::check_release(&dist, line, at, args.force) {
            Ok(ReleaseCheck::Ok) => ("allow", format!("line {version} may be released on {at}")),
            Ok(ReleaseCheck::Warn(w)) => ("warn", w),
            Err(e) if status == matrix::Status::EndOfLife => ("refuse", e.to_string()),
            Err(e) => return Err(e.into()),
        };
        if cx.format == Format::Json {
            // What a pipeline reads: the decision and the facts it was made on. A refusal still
            // exits 3 after the document.
            output::json(&serde_json::json!({
                "line": version,
                "at": at,
                "status": status,
                "eol": eol,
                "days_left": days_left,
                "forced": args.force,
                "decision": decision,
                "message": message,
            }))?;
        }
        match decision {
            "allow" => cx.status(&message),
            "warn" => cx.status(&format!("warning: {message}")),
            _ => return Err(anyhow::Error::new(Refusal(message))),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = matrix::matrix(&dist, at);
    if args.endoflife {
        output::json(&matrix::endoflife(&rows))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut snapshot = None;
    if !args.no_advisories {
        match cx.advisory_db(args.advisory_db.as_deref(), Some(&dist)) {
            Ok((db, snap)) => {
                for note in matrix::fill_advisories(&mut rows, &dist, &db) {
                    cx.status(&format!("warning: {note}"));
                }
                snapshot = Some(snap);
            }
            Err(e) => cx.status(&format!("warning: advisories not shown: {e}")),
        }
    }
    for r in &rows {
        if r.status == matrix::Status::EndingSoon {
            cx.status(&format!(
                "warning: line {} ends on {} ({} day(s) left)",
                r.line, r.eol, r.days_left
            ));
        }
    }
    match cx.format {
        Format::Json => {
            output::json(&serde_json::json!({ "at": at, "lines": rows, "advisory_db": snapshot }))?
        }
        Format::Text => output::data(&table(&rows)),
    }
    Ok(ExitCode::SUCCESS)
}

fn table(rows: &[matrix::MatrixRow]) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let mut cells = vec![[
        "LINE".to_string(),
        "RELEASED".into(),
        "EOL".into(),
        "DAYS LEFT".into(),
        "STATUS".into(),
        "LATEST".into(),
        "OPEN ADVISORIES".into(),
        "FIXED".into(),
    ]];
    for r in rows {
        cells.push([
            r.line.clone(),
            r.release_date.to_string(),
            r.eol.to_string(),
            r.days_left.to_string(),
            r.status.as_str().to_string(),
            r.latest.clone().unwrap_or_else(|| "-".into()),
            list(&r.advisories_open),
            list(&r.advisories_fixed),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
