//! The conformance stage of a release: the suite run on one line of a release output
//! directory, the way `distro release` needs it.
//!
//! - The line under test is `OUT/<line>`; N-1 for version skew and upgrade is `OUT/<previous>`
//!   when given, else the newest older line built beside it ([`crate::default_previous`]), else
//!   the line itself (the summary says "skew uses the same build twice").
//! - The reports go to `OUT/<line>/conformance/` (`summary.json`, `junit.xml`, `report.md`,
//!   `report.html`), with `inputs.sha256`: the digest of everything the run depended on (both
//!   lines' `build.json` and image indexes, the profiles, the selection). A second stage call
//!   with the same inputs reuses a summary without failures instead of running again (a
//!   resumed release does no work); a failed run is always run again.
//! - The suite needs root. [`Mode`] says what happens without it: `required` fails,
//!   `auto` returns [`StageOutcome::NotRun`] saying exactly why (the release record keeps no
//!   summary, and verify with `--require-test-result` will refuse the images), `off` never runs.

use std::path::{Path, PathBuf};

use distro_schema::ConformanceSummary;

use crate::{profile, Error, Options};

/// Whether the release runs the suite (`distro release --conformance MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Run it; not being root is an error.
    Required,
    /// Run it when root; otherwise say so and go on without a summary.
    #[default]
    Auto,
    /// Do not run it.
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "required" => Ok(Mode::Required),
            "auto" => Ok(Mode::Auto),
            "off" => Ok(Mode::Off),
            other => Err(format!(
                "`{other}` is not a conformance mode: use required, auto or off"
            )),
        }
    }
}

/// How the stage runs the suite.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// What to do without root.
    pub mode: Mode,
    /// The program with the `conformance fixture` subcommands (the `distro` binary).
    pub fixture_bin: PathBuf,
    /// Where profiles are read from (default: the built-in ones).
    pub profiles_dir: PathBuf,
    /// Profiles to run (empty: every profile).
    pub profiles: Vec<String>,
    /// Scenarios to run (empty: every scenario).
    pub scenarios: Vec<String>,
    /// Profiles brought up at the same time.
    pub jobs: usize,
    /// Where environments keep their files while they run.
    pub work_dir: PathBuf,
    /// Where run ledgers live.
    pub state_dir: PathBuf,
}

impl StageOptions {
    /// The defaults of `distro conformance`: every built-in profile and scenario, 3 at a time,
    /// `/tmp/distro-conformance`, `/run/distro-conformance`.
    pub fn new(mode: Mode, fixture_bin: PathBuf) -> Self {
        StageOptions {
            mode,
            fixture_bin,
            profiles_dir: profile::builtin_dir(),
            profiles: Vec::new(),
            scenarios: Vec::new(),
            jobs: 3,
            work_dir: PathBuf::from("/tmp/distro-conformance"),
            state_dir: PathBuf::from("/run/distro-conformance"),
        }
    }
}

/// What the stage did.
#[derive(Debug, Clone)]
pub enum StageOutcome {
    /// The suite ran (or its summary for the same inputs was reused). Scenario failures are in
    /// the summary (`totals.failed`), not an error: the caller decides (a release stops).
    Ran {
        /// The summary, also in `report_dir/summary.json`.
        summary: Box<ConformanceSummary>,
        /// `OUT/<line>/conformance`.
        report_dir: PathBuf,
        /// Whether an earlier run's summary was reused (nothing changed).
        reused: bool,
    },
    /// The suite did not run, and why (not root under [`Mode::Auto`], or [`Mode::Off`]).
    NotRun {
        /// What to record ("not run: ...").
        reason: String,
    },
}

impl StageOutcome {
    /// The summary, when the suite ran.
    pub fn summary(&self) -> Option<&ConformanceSummary> {
        match self {
            StageOutcome::Ran { summary, .. } => Some(summary.as_ref()),
            StageOutcome::NotRun { .. } => None,
        }
    }

    /// One line for the release's log and record.
    pub fn describe(&self) -> String {
        match self {
            StageOutcome::Ran {
                summary,
                report_dir,
                reused,
            } => format!(
                "{} passed, {} failed, {} skipped, {} unsupported{} (reports in {})",
                summary.totals.passed,
                summary.totals.failed,
                summary.totals.skipped,
                summary.totals.unsupported,
                if *reused {
                    "; nothing changed since the last run, its summary was reused"
                } else {
                    ""
                },
                report_dir.display()
            ),
            StageOutcome::NotRun { reason } => format!("not run: {reason}"),
        }
    }
}

/// The file beside the reports holding the digest of the run's inputs.
pub const INPUTS_FILE: &str = "inputs.sha256";

/// Runs the suite on `out/<line>` (N-1: `out/<previous>`, or the default) and writes its reports
/// to `out/<line>/conformance/`. See the module documentation for reuse and [`Mode`].
pub fn stage(
    out: &Path,
    line: &str,
    previous: Option<&str>,
    opts: &StageOptions,
) -> Result<StageOutcome, Error> {
    if opts.mode == Mode::Off {
        return Ok(StageOutcome::NotRun {
            reason: "conformance is off (--conformance off)".into(),
        });
    }
    if !crate::is_root() {
        return match opts.mode {
            Mode::Required => Err(Error::NotRoot),
            _ => Ok(StageOutcome::NotRun {
                reason: format!(
                    "{} (--conformance auto; use --conformance required to make this an error)",
                    Error::NotRoot
                ),
            }),
        };
    }
    let line_dir = out.join(line);
    // `run` takes the default N-1 itself (and says so in the summary) when none is named.
    let named_previous = previous.map(|p| out.join(p));
    let previous_dir = named_previous
        .clone()
        .or_else(|| crate::default_previous(&line_dir));
    let report_dir = line_dir.join("conformance");
    let key = inputs_digest(&line_dir, previous_dir.as_deref(), opts)?;
    if let Some(summary) = reusable(&report_dir, &key) {
        tracing::info!(
            line,
            "conformance: nothing changed since the last passing run; reusing {}",
            report_dir.join("summary.json").display()
        );
        return Ok(StageOutcome::Ran {
            summary: Box::new(summary),
            report_dir,
            reused: true,
        });
    }
    let reproduce = format!(
        "distro conformance --line {}{} --report-dir {}",
        line_dir.display(),
        previous_dir
            .as_ref()
            .map(|p| format!(" --previous-line {}", p.display()))
            .unwrap_or_default(),
        report_dir.display()
    );
    let summary = crate::run(&Options {
        line: line_dir.clone(),
        previous_line: named_previous,
        profiles_dir: opts.profiles_dir.clone(),
        profiles: opts.profiles.clone(),
        scenarios: opts.scenarios.clone(),
        shard: None,
        jobs: opts.jobs,
        report_dir: report_dir.clone(),
        work_dir: opts.work_dir.clone(),
        state_dir: opts.state_dir.clone(),
        fixture_bin: opts.fixture_bin.clone(),
        containers: true,
        keep_files: false,
        reproduce,
    })?;
    distro_hostio::write_atomic(
        &report_dir.join(INPUTS_FILE),
        format!("{key}\n").as_bytes(),
        distro_hostio::PUBLIC,
    )
    .map_err(crate::report::ReportError::from)?;
    Ok(StageOutcome::Ran {
        summary: Box::new(summary),
        report_dir,
        reused: false,
    })
}

/// The earlier summary in `dir` when it was made from the inputs `key` and nothing failed.
fn reusable(dir: &Path, key: &str) -> Option<ConformanceSummary> {
    let stored = std::fs::read_to_string(dir.join(INPUTS_FILE)).ok()?;
    if stored.trim() != key {
        return None;
    }
    let s: ConformanceSummary =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).ok()?).ok()?;
    (s.totals.failed == 0 && s.profiles.iter().all(|p| p.setup_error.is_none())).then_some(s)
}

/// A file's bytes for the inputs digest: `None` when it is absent (a line not yet built); one
/// that exists but cannot be read is an error, never an empty input.
fn present(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Input {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// sha256 over everything a run depends on: the selection, both lines' `build.json` and image
/// indexes (the images are content-addressed, so their index names every byte), and every
/// profile file.
fn inputs_digest(
    line: &Path,
    previous: Option<&Path>,
    opts: &StageOptions,
) -> Result<String, Error> {
    let mut ctx = distro_hostio::Sha256::new();
    let mut feed = |label: &str, bytes: Option<&[u8]>| {
        let (label, bytes) = match bytes {
            Some(b) => (label.to_string(), b),
            None => (format!("{label} (absent)"), &[][..]),
        };
        ctx.update(label.as_bytes());
        ctx.update(&(bytes.len() as u64).to_le_bytes());
        ctx.update(bytes);
    };
    feed("profiles", Some(opts.profiles.join(",").as_bytes()));
    feed("scenarios", Some(opts.scenarios.join(",").as_bytes()));
    for (side, dir) in [("line", Some(line)), ("previous", previous)] {
        let Some(dir) = dir else {
            feed(side, Some(b"none"));
            continue;
        };
        feed(side, Some(dir.display().to_string().as_bytes()));
        let record = dir.join("build.json");
        feed("build.json", present(&record)?.as_deref());
        let images_dir = dir.join("images");
        let listed = std::fs::read_dir(&images_dir).and_then(|d| {
            d.map(|e| e.map(|e| e.path().join("oci/index.json")))
                .collect::<std::io::Result<Vec<PathBuf>>>()
        });
        let mut images = match listed {
            Ok(images) => images,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(Error::Input {
                    path: images_dir,
                    source,
                })
            }
        };
        images.sort();
        for i in images {
            feed(&i.display().to_string(), present(&i)?.as_deref());
        }
    }
    for p in profile::load_dir(&opts.profiles_dir)? {
        for (name, digest) in p.definition_sha256() {
            feed(&name, Some(digest.as_bytes()));
        }
    }
    Ok(ctx.finish_hex())
}
