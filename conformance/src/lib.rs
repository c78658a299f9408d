//! The conformance suite: emulated customer environments × scenarios, run against what ships.
//!
//! - [`profile`]: the environments, declarative files under `conformance/profiles/`.
//! - [`env`]: bringing one up with network namespaces, veths, bridges, routes and impairments,
//!   the released binaries (VM hosts) and images under runc ([`container`]); torn down through
//!   the [`ledger`], also on failure, SIGINT/SIGTERM, and by the next run after a crash.
//! - [`scenarios`]: the table of scenarios, selected per profile by capability.
//! - [`report`]: JUnit XML, Markdown and HTML renderings of the typed
//!   [`distro_schema::ConformanceSummary`].
//! - [`shard`]: sharding, CI workflow emission and merging shard results.
//! - [`fixture`]: the application, delay relay and load client run inside the namespaces.
//!
//! - [`stage`]: the release stage: the suite on `OUT/<line>` (N-1 is the previous line built
//!   beside it), reused when nothing changed, "not run" when not root (`--conformance auto`).
//!
//! [`run`] is the entry point of `distro conformance`; [`stage::stage`] the one of `distro release`.
#![forbid(unsafe_code)]

pub mod container;
pub mod env;
pub mod exec;
pub mod fixture;
pub mod ledger;
pub mod mirror;
pub mod profile;
pub mod report;
pub mod scenarios;
pub mod shard;
pub mod stage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use distro_schema::{ConformanceSummary, Counts, Outcome, ProfileResult, ScenarioResult};

use crate::env::{Env, Inputs, LineArtifacts};
use crate::profile::Profile;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The line under test: a `distro build` output directory (`<out>` with one line, or
    /// `<out>/<line>`).
    pub line: PathBuf,
    /// The previous line, for version-skew and upgrade profiles. When absent: the newest line
    /// older than `line` built beside it ([`default_previous`]), else the line itself (the
    /// summary notes that skew uses the same build twice).
    pub previous_line: Option<PathBuf>,
    /// Where profiles are read from.
    pub profiles_dir: PathBuf,
    /// Profiles to run (empty: all).
    pub profiles: Vec<String>,
    /// Scenarios to run (empty: all).
    pub scenarios: Vec<String>,
    /// Run only shard `I` of `N` (1-based) of the selected profiles.
    pub shard: Option<(u32, u32)>,
    /// Profiles brought up at the same time.
    pub jobs: usize,
    /// Where the reports go.
    pub report_dir: PathBuf,
    /// Where environments keep their files while they run.
    pub work_dir: PathBuf,
    /// Where run ledgers live (a second run cleans leftovers found here).
    pub state_dir: PathBuf,
    /// The program with the `conformance fixture` subcommands (the `distro` binary).
    pub fixture_bin: PathBuf,
    /// Run container hosts under runc (false: as bare binaries, noted in the summary).
    pub containers: bool,
    /// Keep the environments' files (configs, logs) after the run, for debugging; namespaces
    /// and processes are removed all the same.
    pub keep_files: bool,
    /// The command line, for the report's "how to reproduce".
    pub reproduce: String,
}

/// Why a run could not happen (scenario failures are not errors: they are in the summary).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not root.
    #[error(
        "distro conformance needs root: it creates network namespaces, veth pairs and bridges and runs containers under runc; nothing was run (rerun with sudo)"
    )]
    NotRoot,
    /// A profile is broken or unknown.
    #[error(transparent)]
    Profile(#[from] profile::ProfileError),
    /// A scenario name is unknown.
    #[error("no scenario named `{0}`; see `distro conformance --list`")]
    UnknownScenario(String),
    /// The shard is out of range.
    #[error("shard {0}/{1}: I must be between 1 and N")]
    BadShard(u32, u32),
    /// The artifacts are missing.
    #[error(transparent)]
    Env(#[from] env::EnvError),
    /// The ledger could not be written.
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    /// A report could not be written.
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// The containers' user could not reach the working directory.
    #[error("the images' user (uid 65532) cannot reach {0}: make it and its parents world-searchable (chmod o+x) or use the default --work-dir")]
    WorkDirNotReachable(PathBuf),
    /// An input of the run (a build record, an image index) exists but cannot be read.
    #[error("reading {}: {source}\n  help: make it readable, or rebuild the line", path.display())]
    Input {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Leftovers of an earlier run could not be removed.
    #[error("leftovers of an earlier run could not be removed: {0}")]
    Leftovers(String),
}

/// Said (in the summary's notes, the profile's warnings and the reports) whenever version skew
/// and upgrade ran one build on both sides.
pub const SAME_BUILD_TWICE: &str = "skew uses the same build twice";

/// The line a skew or upgrade profile takes as N-1 when none is given: the newest line older
/// than `line_dir` (by `MAJOR.MINOR` of the directory names) that is built beside it
/// (`<out>/<older>/bin`).
pub fn default_previous(line_dir: &std::path::Path) -> Option<PathBuf> {
    let me = env::line_version(line_dir.file_name()?.to_str()?)?;
    let parent = line_dir.parent()?;
    std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("bin").is_dir())
        .filter_map(|p| {
            let v = env::line_version(p.file_name()?.to_str()?)?;
            (v < me).then_some((v, p))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, p)| p)
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The profiles `opts` selects, after shard filtering.
pub fn select(opts: &Options) -> Result<Vec<Profile>, Error> {
    let all = profile::load_dir(&opts.profiles_dir)?;
    for n in &opts.scenarios {
        if scenarios::find(n).is_none() {
            return Err(Error::UnknownScenario(n.clone()));
        }
    }
    let mut chosen = Vec::new();
    if opts.profiles.is_empty() {
        chosen = all;
    } else {
        for n in &opts.profiles {
            let p = all.iter().find(|p| &p.name == n).ok_or_else(|| {
                profile::ProfileError::Unknown {
                    name: n.clone(),
                    dir: opts.profiles_dir.clone(),
                    available: all
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            chosen.push(p.clone());
        }
    }
    if let Some((i, n)) = opts.shard {
        if i == 0 || n == 0 || i > n {
            return Err(Error::BadShard(i, n));
        }
        chosen = shard::pick(chosen, i, n);
    }
    Ok(chosen)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A fresh run id: 6 hex digits from the pid and the clock (names must stay short: interface
/// and namespace names carry it).
fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    format!(
        "dc{:06x}",
        (t ^ std::process::id().rotate_left(12)) & 0xff_ffff
    )
}

/// Runs the selected matrix and writes the reports; returns the summary (also on scenario
/// failures — look at `totals.failed`).
pub fn run(opts: &Options) -> Result<ConformanceSummary, Error> {
    if !is_root() {
        return Err(Error::NotRoot);
    }
    let selected = select(opts)?;
    let current = LineArtifacts::locate(&opts.line)?;
    let defaulted = opts.previous_line.is_none();
    let previous = match &opts.previous_line {
        Some(p) => LineArtifacts::locate(p)?,
        None => match default_previous(&current.dir) {
            Some(d) => LineArtifacts::locate(&d)?,
            None => current.clone(),
        },
    };
    ledger::install_signal_handlers();
    let (cleaned, problems) = ledger::clean_leftovers(&opts.state_dir);
    if !problems.is_empty() {
        return Err(Error::Leftovers(problems.join("; ")));
    }
    if cleaned > 0 {
        tracing::warn!("removed the leftovers of {cleaned} earlier interrupted run(s)");
    }
    let mut notes = Vec::new();
    let same =
        std::fs::canonicalize(&current.dir).ok() == std::fs::canonicalize(&previous.dir).ok();
    let skew = selected.iter().any(|p| p.uses_previous_line());
    if same && skew {
        notes.push(format!(
            "{SAME_BUILD_TWICE}: version-skew and upgrade profiles ran with the same build as line N and N-1 ({}): {}",
            current.dir.display(),
            if defaulted {
                "no older line is built beside it and no --previous-line was given"
            } else {
                "--previous-line names the line under test"
            }
        ));
    } else if skew && defaulted {
        notes.push(format!(
            "N-1 is line {} ({}), the newest older line built beside {}",
            previous.name,
            previous.dir.display(),
            current.name
        ));
    }
    if !opts.containers && selected.iter().any(|p| p.uses_containers()) {
        notes.push(
            "container hosts ran the released bare binaries, not the images (--no-containers)"
                .into(),
        );
    }
    if opts.containers
        && selected
            .iter()
            .any(|p| p.hosts.iter().any(|h| h.role == profile::Role::Registry))
    {
        notes.push("air-gapped: images pulled from the mirror were verified against a signature-only policy (a key made for the run); the release's attestations are attached by `distro release`".into());
    }
    let mut versions = BTreeMap::new();
    for (k, v) in current.versions() {
        versions.insert(k, v);
    }
    if !same {
        for (k, v) in previous.versions() {
            versions.insert(format!("previous/{k}"), v);
        }
    }
    let inputs = Inputs {
        current: current.clone(),
        previous: previous.clone(),
        fixture_bin: opts.fixture_bin.clone(),
        containers: opts.containers,
        keep_files: opts.keep_files,
    };
    if opts.containers {
        std::fs::create_dir_all(&opts.work_dir)
            .map_err(|_| Error::WorkDirNotReachable(opts.work_dir.clone()))?;
        let mut dir = Some(opts.work_dir.as_path());
        while let Some(d) = dir {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(d)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o001 == 0 {
                return Err(Error::WorkDirNotReachable(d.to_path_buf()));
            }
            dir = d.parent().filter(|p| !p.as_os_str().is_empty());
        }
    }
    let rid = run_id();
    let work = opts.work_dir.join(&rid);
    let started_at = now_rfc3339();
    let start = Instant::now();
    let queue = Arc::new(Mutex::new(
        selected.iter().cloned().enumerate().collect::<Vec<_>>(),
    ));
    let results = Arc::new(Mutex::new(Vec::<(usize, ProfileResult)>::new()));
    let first_error = Arc::new(Mutex::new(None::<Error>));
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            let (queue, results, first_error) =
                (queue.clone(), results.clone(), first_error.clone());
            let (inputs, work, rid) = (&inputs, &work, &rid);
            scope.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| {
                    if q.is_empty() {
                        None
                    } else {
                        Some(q.remove(0))
                    }
                });
                let Some((i, p)) = next else { break };
                let mut warnings = Vec::new();
                if same && p.uses_previous_line() {
                    warnings.push(format!(
                        "{SAME_BUILD_TWICE}: N and N-1 are both {}",
                        inputs.current.dir.display()
                    ));
                }
                if !inputs.containers && p.uses_containers() {
                    warnings.push(
                        "container hosts ran the released bare binaries, not the images (--no-containers)"
                            .to_string(),
                    );
                }
                match run_profile(&p, opts, rid, work, inputs.clone(), warnings) {
                    Ok(r) => {
                        if let Ok(mut g) = results.lock() {
                            g.push((i, r));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut g) = first_error.lock() {
                            g.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if !opts.keep_files {
        let _ = std::fs::remove_dir(&work);
    } else {
        tracing::info!("environment files kept in {}", work.display());
    }
    if let Some(e) = first_error.lock().ok().and_then(|mut g| g.take()) {
        return Err(e);
    }
    let mut results = results
        .lock()
        .map(|mut g| std::mem::take(&mut *g))
        .unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    let profiles: Vec<ProfileResult> = results.into_iter().map(|(_, r)| r).collect();
    let mut totals = Counts::default();
    for p in &profiles {
        totals.merge(&p.counts);
    }
    let summary = ConformanceSummary {
        schema_version: distro_schema::SCHEMA_VERSION.to_string(),
        line: current.name.clone(),
        previous_line: (!same).then(|| previous.name.clone()),
        versions,
        started_at,
        duration_ms: start.elapsed().as_millis() as u64,
        shard: opts.shard.map(|(i, n)| format!("{i}/{n}")),
        totals,
        profiles,
        notes,
        reproduce: opts.reproduce.clone(),
    };
    report::write_all(&summary, &opts.report_dir)?;
    Ok(summary)
}

fn run_profile(
    p: &Profile,
    opts: &Options,
    rid: &str,
    work: &std::path::Path,
    inputs: Inputs,
    warnings: Vec<String>,
) -> Result<ProfileResult, Error> {
    let start = Instant::now();
    tracing::info!(profile = %p.name, "bringing the environment up");
    let ledger = ledger::Ledger::create(&opts.state_dir, &format!("{rid}-{}", p.name))?;
    let selected =
        |name: &str| opts.scenarios.is_empty() || opts.scenarios.iter().any(|s| s == name);
    let mut counts = Counts::default();
    let mut results = Vec::new();
    let mut setup_error = None;
    match Env::bring_up(p, rid, ledger.clone(), work, inputs) {
        Err(e) => {
            let msg = format!("[{}] the environment could not be brought up: {e}", p.name);
            tracing::error!("{msg}");
            for sc in scenarios::SCENARIOS {
                let (outcome, message) = classify(p, sc, &selected);
                let (outcome, message) = match outcome {
                    Outcome::Passed => (Outcome::Failed, Some(msg.clone())),
                    o => (o, message),
                };
                counts.add(outcome);
                results.push(ScenarioResult {
                    name: sc.name.into(),
                    description: sc.description.into(),
                    outcome,
                    duration_ms: 0,
                    message,
                    observations: Vec::new(),
                });
            }
            setup_error = Some(e.to_string());
        }
        Ok(env) => {
            tracing::info!(profile = %p.name, ms = start.elapsed().as_millis() as u64, "environment up");
            for sc in scenarios::SCENARIOS {
                let (outcome, message) = classify(p, sc, &selected);
                if outcome != Outcome::Passed {
                    counts.add(outcome);
                    results.push(ScenarioResult {
                        name: sc.name.into(),
                        description: sc.description.into(),
                        outcome,
                        duration_ms: 0,
                        message,
                        observations: Vec::new(),
                    });
                    continue;
                }
                let t = Instant::now();
                let r = (sc.run)(&env);
                let duration_ms = t.elapsed().as_millis() as u64;
                let (outcome, message, observations) = match r {
                    Ok(obs) => (Outcome::Passed, None, obs),
                    Err(m) => (
                        Outcome::Failed,
                        Some(format!("[{}] {}: {m}", p.name, sc.name)),
                        Vec::new(),
                    ),
                };
                match &message {
                    Some(m) => tracing::error!("FAIL {m}"),
                    None => {
                        tracing::info!(profile = %p.name, scenario = sc.name, duration_ms, "pass")
                    }
                }
                counts.add(outcome);
                results.push(ScenarioResult {
                    name: sc.name.into(),
                    description: sc.description.into(),
                    outcome,
                    duration_ms,
                    message,
                    observations,
                });
            }
            env.teardown();
        }
    }
    let problems = ledger.cleanup();
    if !problems.is_empty() {
        let msg = format!("cleanup left resources behind: {}", problems.join("; "));
        tracing::error!(profile = %p.name, "{msg}");
        setup_error = Some(match setup_error {
            Some(e) => format!("{e}; {msg}"),
            None => msg,
        });
    }
    let result = if counts.failed > 0 || setup_error.is_some() {
        Outcome::Failed
    } else if counts.passed > 0 {
        Outcome::Passed
    } else {
        Outcome::Skipped
    };
    tracing::info!(profile = %p.name, result = result.as_str(), seconds = start.elapsed().as_secs(), "environment done");
    Ok(ProfileResult {
        name: p.name.clone(),
        description: p.description.clone(),
        result,
        counts,
        duration_ms: start.elapsed().as_millis() as u64,
        capabilities: p.capabilities.iter().cloned().collect(),
        definition_sha256: p.definition_sha256(),
        warnings,
        setup_error,
        scenarios: results,
    })
}

/// Whether a scenario runs in a profile: `Passed` means "run it"; otherwise skipped or
/// unsupported with the reason.
fn classify(
    p: &Profile,
    sc: &scenarios::Scenario,
    selected: &dyn Fn(&str) -> bool,
) -> (Outcome, Option<String>) {
    if !selected(sc.name) {
        return (Outcome::Skipped, Some("not selected (--scenario)".into()));
    }
    let missing: Vec<&str> = sc
        .requires
        .iter()
        .copied()
        .filter(|c| !p.capabilities.contains(*c))
        .collect();
    if !missing.is_empty() {
        return (
            Outcome::Unsupported,
            Some(format!("the profile lacks {}", missing.join(", "))),
        );
    }
    (Outcome::Passed, None)
}
