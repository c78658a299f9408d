//! `distro advisories status|update`: which RustSec advisory database snapshot the reports use,
//! and refreshing it (from upstream with git, or from a local mirror or archive when
//! air-gapped), atomically.

use std::path::PathBuf;
use std::process::ExitCode;

use distro_patches::snapshot::{self, Snapshot, UpdateSource};

use super::{max_age, today, Context};
use crate::output::{self, Format};

/// Subcommands of `distro advisories`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Show the advisory database in use: upstream commit, date, number of advisories, age
    /// (warns when older than `[advisories] max_age_days`).
    Status {
        /// The database (default: `[advisories] db` of distro.toml, else patches/advisory-db).
        #[arg(long, value_name = "PATH")]
        advisory_db: Option<PathBuf>,
    },
    /// Replace the advisory database with a newer snapshot, atomically: fetched and validated
    /// beside it, then renamed into place; on any failure the database in place is kept.
    Update {
        /// Where from: a git URL (default: the upstream rustsec/advisory-db), a local mirror
        /// (a git repository or a copy of the database) or a .tar.gz of one.
        #[arg(long, value_name = "PATH|URL")]
        from: Option<String>,
        /// The database to replace (default: `[advisories] db` of distro.toml, else
        /// patches/advisory-db).
        #[arg(long, value_name = "PATH")]
        advisory_db: Option<PathBuf>,
    },
}

/// Runs `distro advisories`.
pub fn run(command: Command, cx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status { advisory_db } => {
            let dist = cx.distribution_if_any()?;
            let (_, snap) = cx.advisory_db(advisory_db.as_deref(), dist.as_ref())?;
            match cx.format {
                Format::Json => output::json(&with_warning(&snap))?,
                Format::Text => output::data(&status_text(&snap)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Update { from, advisory_db } => {
            let dist = cx.distribution_if_any()?;
            let (dest, _) = cx.advisory_db_path(advisory_db.as_deref(), dist.as_ref());
            let source = match &from {
                Some(f) => UpdateSource::guess(f),
                None => UpdateSource::Git(snapshot::UPSTREAM_URL.to_string()),
            };
            cx.status(&format!(
                "updating the advisory database at {} from {}",
                dest.display(),
                source.display()
            ));
            let report = snapshot::update(&dest, &source, today(), max_age(dist.as_ref()))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{e}\n  note: the advisory database at {} was not changed{}",
                        dest.display(),
                        if from.is_none() {
                            "; without a network, pass --from PATH to a local mirror or archive"
                        } else {
                            ""
                        }
                    )
                })?;
            if let Some(w) = report.current.warning() {
                cx.warn(&w);
            }
            match cx.format {
                Format::Json => output::json(&report)?,
                Format::Text => {
                    let was = report
                        .previous
                        .as_ref()
                        .map_or_else(|| "none".to_string(), Snapshot::label);
                    output::data(&format!(
                        "{} {}: {} ({} advisories; was {})\n",
                        if report.changed {
                            "updated"
                        } else {
                            "unchanged"
                        },
                        report.current.path.display(),
                        report.current.label(),
                        report.current.advisories,
                        was
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The snapshot with its warning, as `status --format json` prints it.
fn with_warning(snap: &Snapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(snap).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("label".into(), snap.label().into());
        o.insert("warning".into(), snap.warning().into());
    }
    v
}

fn status_text(s: &Snapshot) -> String {
    let age = match s.age_days {
        Some(a) => format!(
            "{a} days (limit {}{})",
            s.max_age_days,
            if s.stale { ": STALE" } else { "" }
        ),
        None => "unknown (STALE)".into(),
    };
    format!(
        "advisory database: {}\n  commit:     {}\n  date:       {}\n  advisories: {}\n  age:        {age}\n",
        s.path.display(),
        s.commit.as_deref().unwrap_or("unknown"),
        s.date.map_or_else(|| "unknown".to_string(), |d| d.to_string()),
        s.advisories,
    )
}
