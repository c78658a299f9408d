//! The support matrix: per line, its window, status and advisories at a date.

use chrono::NaiveDate;
use distro_config::{Distribution, Line};
use serde::Serialize;

use crate::error::PatchError;

/// Where a line stands at a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Released and more than `warn_days` from its end.
    Supported,
    /// Supported, but `warn_days` or fewer days remain (the end-of-life day included).
    EndingSoon,
    /// Past its last day of support.
    EndOfLife,
    /// Its release date is still ahead.
    Unreleased,
}

impl Status {
    /// Words for the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Supported => "supported",
            Status::EndingSoon => "ends soon",
            Status::EndOfLife => "end of life",
            Status::Unreleased => "unreleased",
        }
    }
}

/// One row of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatrixRow {
    /// `MAJOR.MINOR`.
    pub line: String,
    /// First release.
    pub release_date: NaiveDate,
    /// Last day of support.
    pub eol: NaiveDate,
    /// Days from the date asked about to `eol` (negative once past it).
    pub days_left: i64,
    /// Status at that date.
    pub status: Status,
    /// Latest patch release.
    pub latest: Option<String>,
    /// Advisories that affect the line as shipped (not fixed by its queue).
    pub advisories_open: Vec<String>,
    /// Advisories its patch queue fixes.
    pub advisories_fixed: Vec<String>,
}

/// Window and status of `line` at `at`.
pub fn line_status(dist: &Distribution, line: &Line, at: NaiveDate) -> (NaiveDate, i64, Status) {
    let eol = line.eol(&dist.support);
    let days_left = (eol - at).num_days();
    let status = if at < line.release_date {
        Status::Unreleased
    } else if days_left < 0 {
        Status::EndOfLife
    } else if days_left <= i64::from(dist.support.warn_days) {
        Status::EndingSoon
    } else {
        Status::Supported
    };
    (eol, days_left, status)
}

/// The matrix at `at`, lines newest first; advisories are left empty (see
/// [`crate::advisory`] to fill them).
pub fn matrix(dist: &Distribution, at: NaiveDate) -> Vec<MatrixRow> {
    let mut lines: Vec<&Line> = dist.lines.iter().collect();
    lines.sort_by(|a, b| b.semver.cmp(&a.semver));
    lines
        .into_iter()
        .map(|l| {
            let (eol, days_left, status) = line_status(dist, l, at);
            MatrixRow {
                line: l.version.clone(),
                release_date: l.release_date,
                eol,
                days_left,
                status,
                latest: l.latest.clone(),
                advisories_open: Vec::new(),
                advisories_fixed: Vec::new(),
            }
        })
        .collect()
}

/// Lines supported (or ending soon) at `at`.
pub fn supported_lines(dist: &Distribution, at: NaiveDate) -> Vec<&Line> {
    dist.lines
        .iter()
        .filter(|l| {
            matches!(
                line_status(dist, l, at).2,
                Status::Supported | Status::EndingSoon
            )
        })
        .collect()
}

/// One entry of an endoflife.date-style product file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EolCycle {
    /// The line.
    pub release_cycle: String,
    /// First release.
    pub release_date: NaiveDate,
    /// Last day of support.
    pub eol: NaiveDate,
    /// Latest patch release (the line's `.0` when none is recorded).
    pub latest: String,
}

/// The matrix as endoflife.date release cycles.
pub fn endoflife(rows: &[MatrixRow]) -> Vec<EolCycle> {
    rows.iter()
        .map(|r| EolCycle {
            release_cycle: r.line.clone(),
            release_date: r.release_date,
            eol: r.eol,
            latest: r.latest.clone().unwrap_or_else(|| format!("{}.0", r.line)),
        })
        .collect()
}

/// What releasing a line at a date means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseCheck {
    /// Go ahead.
    Ok,
    /// Go ahead, but say this (the line ends within `warn_days`, or it is end of life and the
    /// release is forced).
    Warn(String),
}

/// May `line` be released at `at`? An end-of-life line is refused unless `force`.
pub fn check_release(
    dist: &Distribution,
    line: &Line,
    at: NaiveDate,
    force: bool,
) -> Result<ReleaseCheck, PatchError> {
    let (eol, days_left, status) = line_status(dist, line, at);
    match status {
        Status::EndOfLife if !force => Err(PatchError::invalid(
            format!(
                "line {} reached its end of life on {eol} ({} days before {at}); releasing it is refused",
                line.version, -days_left
            ),
            "release a supported line, extend the line's `eol` in distro.toml, or pass --force",
        )),
        Status::EndOfLife => Ok(ReleaseCheck::Warn(format!(
            "line {} is past its end of life ({eol}); releasing anyway because it was forced",
            line.version
        ))),
        Status::EndingSoon => Ok(ReleaseCheck::Warn(format!(
            "line {} ends on {eol}, {days_left} day(s) after {at}: tell users to move to a newer line",
            line.version
        ))),
        Status::Unreleased | Status::Supported => Ok(ReleaseCheck::Ok),
    }
}

/// Fills the advisory columns of `rows` from each line's [`crate::evaluate::evaluate`]: the
/// same answers the line's VEX document and `distro patches scan` give (aliases folded into
/// one advisory). Lines that cannot be evaluated get a note instead.
pub fn fill_advisories(
    rows: &mut [MatrixRow],
    dist: &Distribution,
    db: &crate::advisory::AdvisoryDb,
) -> Vec<String> {
    let mut notes = Vec::new();
    for row in rows.iter_mut() {
        let Some(line) = dist.line(&row.line) else {
            continue;
        };
        match crate::evaluate::evaluate(dist, line, db, &std::collections::BTreeMap::new()) {
            Ok(e) => {
                row.advisories_open = e.open();
                row.advisories_fixed = e.fixed();
            }
            Err(e) => notes.push(format!("line {}: {e}", line.version)),
        }
    }
    notes
}
