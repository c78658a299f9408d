//! Licence, ban, source and advisory policy per component, by the pinned `cargo-deny` binary.
//!
//! The project's `deny.toml` is the policy; it is read, never edited. For a check, a copy of it
//! in a temporary directory points `[advisories] db-path` at a local copy of the RustSec database
//! (so the check runs offline, e.g. from the snapshot the repository ships, `patches/advisory-db`), and may override
//! `maximum-db-staleness`. cargo-deny opens a database for URL `U` at `<db-path>/<last path
//! segment of U>-<XxHash64(seed 0xca80de71, lower-cased U) as 16 hex digits>` and requires a git
//! checkout there; [`AdvisoryDb::prepare`] builds that layout from a plain snapshot directory,
//! dated (commit and `FETCH_HEAD` time) at the snapshot's date so the staleness rule stays real.
//!
//! Scope: cargo-deny is pointed at the component's own `Cargo.toml` with its features, with
//! `--exclude-dev`, so the component's package is the only root of the graph (cargo-deny's
//! documented behaviour for a workspace member) and dev-dependencies do not count. Its JSON
//! diagnostics are parsed into a typed [`PolicyReport`]: crate, check, code, message, way out.

use distro_hostio::cmd::tail;
use distro_hostio::{Cmd, CmdError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::SbomError;

/// The default advisory database URL cargo-deny uses when `db-urls` is empty.
pub const DEFAULT_DB_URL: &str = "https://github.com/rustsec/advisory-db";

/// The directory name cargo-deny uses for an advisory database URL.
pub fn db_dir_name(url: &str) -> String {
    let mut u = url.trim().to_lowercase();
    // `Url::parse` gives an empty path a trailing slash; nothing else changes for plain URLs.
    if u.matches('/').count() == 2 {
        u.push('/');
    }
    let name = u
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("empty_")
        .to_string();
    let hash = twox_hash::XxHash64::oneshot(0xca80_de71, u.as_bytes());
    format!("{name}-{hash:016x}")
}

/// A local advisory database laid out the way cargo-deny reads it.
pub struct AdvisoryDb {
    dir: tempfile::TempDir,
    date: Option<String>,
}

impl AdvisoryDb {
    /// Copies `snapshot` (a RustSec advisory-db tree, e.g. `patches/advisory-db`) into a
    /// temporary `db-path` once per URL in `urls`, each as a one-commit git repository dated at
    /// the snapshot's date (read from its `SNAPSHOT` file; today when absent).
    pub fn prepare(snapshot: &Path, urls: &[String]) -> Result<AdvisoryDb, SbomError> {
        if !snapshot.join("crates").is_dir() {
            return Err(SbomError::Policy(format!(
                "{} is not a RustSec advisory database (no crates/ directory)\nhelp: pass the directory of an advisory-db checkout or snapshot with --advisory-db",
                snapshot.display()
            )));
        }
        let date = std::fs::read_to_string(snapshot.join("SNAPSHOT"))
            .ok()
            .and_then(|t| find_date(&t));
        let dir = tempfile::Builder::new()
            .prefix("distro-advisory-dbs-")
            .tempdir()
            .map_err(|e| {
                SbomError::io("creating a temporary directory in", std::env::temp_dir(), e)
            })?;
        let urls: Vec<String> = if urls.is_empty() {
            vec![DEFAULT_DB_URL.to_string()]
        } else {
            urls.to_vec()
        };
        for url in &urls {
            let repo = dir.path().join(db_dir_name(url));
            copy_tree(snapshot, &repo)?;
            git_snapshot(&repo, url, date.as_deref())?;
        }
        Ok(AdvisoryDb { dir, date })
    }

    /// The `db-path` to give cargo-deny.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The snapshot's date, when known.
    pub fn date(&self) -> Option<&str> {
        self.date.as_deref()
    }
}

/// First `YYYY-MM-DD` in a text.
fn find_date(text: &str) -> Option<String> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(9)).find_map(|i| {
        let s = &b[i..i + 10];
        let ok = s.iter().enumerate().all(|(j, c)| {
            if j == 4 || j == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
        ok.then(|| String::from_utf8_lossy(s).into_owned())
    })
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), SbomError> {
    std::fs::create_dir_all(to).map_err(|e| SbomError::io("creating", to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| SbomError::io("reading", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SbomError::io("reading", from, e))?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let ft = entry
            .file_type()
            .map_err(|e| SbomError::io("reading", &src, e))?;
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            let bytes = std::fs::read(&src).map_err(|e| SbomError::io("reading", &src, e))?;
            std::fs::write(&dst, bytes).map_err(|e| SbomError::io("writing", &dst, e))?;
        }
    }
    Ok(())
}

fn git_snapshot(repo: &Path, url: &str, date: Option<&str>) -> Result<(), SbomError> {
    let help = "install git; cargo-deny reads its advisory database as a git checkout";
    // The snapshot's commit is dated like the snapshot, so its id is reproducible.
    let git = |args: &[&str], why: &str| -> Result<String, SbomError> {
        let mut c = Cmd::git(why);
        c.help(help).arg("-C").arg(repo).args(args);
        if let Some(d) = date {
            c.commit_date(&format!("{d}T00:00:00Z"));
        }
        Ok(c.stdout_text()?)
    };
    git(
        &["init", "-q", "-b", "main"],
        "make the advisory database a git checkout",
    )?;
    git(&["add", "-A"], "stage the advisory database snapshot")?;
    git(
        &["commit", "-q", "-m", "advisory-db snapshot"],
        "commit the advisory database snapshot",
    )?;
    let head = git(&["rev-parse", "HEAD"], "read the snapshot commit")?;
    let fetch_head = repo.join(".git").join("FETCH_HEAD");
    std::fs::write(&fetch_head, format!("{head}\t\tbranch 'main' of {url}\n"))
        .map_err(|e| SbomError::io("writing", &fetch_head, e))?;
    // cargo-deny takes FETCH_HEAD's mtime as the time of the last fetch: make it the snapshot's.
    if let Some(t) = date
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| u64::try_from(t.and_utc().timestamp()).ok())
    {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
        std::fs::File::options()
            .write(true)
            .open(&fetch_head)
            .and_then(|f| f.set_modified(when))
            .map_err(|e| SbomError::io("dating", &fetch_head, e))?;
    }
    Ok(())
}

/// What to check.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Component name (for the report).
    pub component: String,
    /// The component package's own `Cargo.toml`.
    pub manifest_path: PathBuf,
    /// Features it is built with.
    pub features: Vec<String>,
    /// Built with `--no-default-features`.
    pub no_default_features: bool,
    /// The project's `deny.toml`.
    pub deny_toml: PathBuf,
    /// `db-path` prepared by [`AdvisoryDb::prepare`]; `None` leaves deny.toml's own setting.
    pub advisory_db: Option<PathBuf>,
    /// Overrides `maximum-db-staleness` (ISO 8601 duration such as `P180D`).
    pub max_db_staleness: Option<String>,
    /// The `cargo-deny` program (default `cargo-deny` on PATH).
    pub cargo_deny: PathBuf,
}

/// One diagnostic that matters (errors and warnings; `note`/`help` acceptances are counted only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `error` or `warning`.
    pub severity: String,
    /// `advisories`, `bans`, `licenses`, `sources`.
    pub check: String,
    /// cargo-deny's code (`banned`, `rejected`, `vulnerability`, `source-not-allowed`, ...).
    pub code: String,
    /// The crate it is about.
    #[serde(rename = "crate")]
    pub crate_name: String,
    /// Its version.
    pub version: String,
    /// The advisory id, for advisories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory: Option<String>,
    /// cargo-deny's message.
    pub message: String,
    /// What to do about it.
    pub way_out: String,
    /// How it gets into the component (`crate <- parent <- ... <- component`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// cargo-deny's notes and labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Finding {
    /// `check/code crate version (advisory)`: the finding in one line, as refusals list it.
    pub fn summary(&self) -> String {
        format!(
            "{}/{} {} {}{}",
            self.check,
            self.code,
            self.crate_name,
            self.version,
            self.advisory
                .as_ref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        )
    }
}

/// The verdict for one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReport {
    /// Component name.
    pub component: String,
    /// No errors.
    pub passed: bool,
    /// Errors and warnings.
    pub findings: Vec<Finding>,
    /// Per check: errors, warnings, notes, helps, as cargo-deny counts them.
    pub summary: BTreeMap<String, CheckCounts>,
    /// The advisory database snapshot date, when a local snapshot was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory_db_date: Option<String>,
    /// cargo-deny's version.
    pub cargo_deny: String,
}

/// Counts of one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCounts {
    /// Errors.
    pub errors: u64,
    /// Warnings.
    pub warnings: u64,
    /// Notes.
    pub notes: u64,
    /// Helps.
    pub helps: u64,
}

/// The check a cargo-deny code belongs to.
fn check_of(code: &str) -> &'static str {
    match code {
        "vulnerability"
        | "notice"
        | "unmaintained"
        | "unsound"
        | "yanked"
        | "index-failure"
        | "index-cache-load-failure"
        | "advisory-not-detected"
        | "advisory-ignored"
        | "unknown-advisory" => "advisories",
        "rejected"
        | "accepted"
        | "unlicensed"
        | "skipped-private-workspace-crate"
        | "license-not-encountered"
        | "license-exception-not-encountered"
        | "missing-clarification-file"
        | "parse-error"
        | "no-license-field"
        | "gather-failure"
        | "empty-license-field" => "licenses",
        "git-source-underspecified"
        | "allowed-source"
        | "allowed-by-organization"
        | "source-not-allowed"
        | "unmatched-source"
        | "unmatched-organization" => "sources",
        _ => "bans",
    }
}

/// The way out for a finding, from its code and cargo-deny's notes.
fn way_out(
    code: &str,
    krate: &str,
    version: &str,
    notes: &[String],
    advisory: Option<&str>,
) -> String {
    let note_with = |key: &str| {
        notes
            .iter()
            .find(|n| n.to_lowercase().contains(key))
            .cloned()
    };
    match code {
        "banned" => {
            let instead = note_with("use instead")
                .or_else(|| note_with("use-instead"))
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!("remove `{krate}` from the component's dependency graph{instead}; `cargo tree -i {krate}` shows who pulls it in")
        }
        "rejected" | "unlicensed" | "no-license-field" | "empty-license-field" => format!(
            "replace `{krate}` {version} ({}) with a crate under an allowed licence, or have the licence reviewed and added to [licenses] allow (or an exception for this crate) in deny.toml",
            notes.first().map_or("no licence", String::as_str)
        ),
        "vulnerability" | "unsound" | "notice" | "unmaintained" => {
            let patched = note_with("solution").or_else(|| note_with("upgrade"));
            match patched {
                Some(p) => format!("{p}; update Cargo.lock (`cargo update -p {krate}`) or backport the fix with `distro patches`"),
                None => format!(
                    "no patched release: replace `{krate}`, or record why it does not apply ({}) in [advisories] ignore with a reason",
                    advisory.unwrap_or("the advisory")
                ),
            }
        }
        "yanked" => format!("`{krate}` {version} was yanked: update to a release that is not (`cargo update -p {krate}`)"),
        "source-not-allowed" | "git-source-underspecified" => {
            format!("take `{krate}` from the public crates registry, or allow its source in [sources] of deny.toml")
        }
        "license-not-encountered" | "license-exception-not-encountered" | "unmatched-source" | "unmatched-organization" => {
            format!("nothing in this component needs it: no action, or drop the unused entry from deny.toml ({})", notes.join("; "))
        }
        "duplicate" => format!("unify the versions of `{krate}` or allow it in [bans] skip"),
        "wildcard" => format!("give `{krate}` an exact version requirement instead of `*`"),
        _ => "see cargo-deny's message and notes".to_string(),
    }
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    fields: serde_json::Value,
}

/// Parses cargo-deny's `--format json` stream (one JSON object per line on stderr).
/// What cargo-deny's JSON stream says.
struct Parsed {
    findings: Vec<Finding>,
    summary: BTreeMap<String, CheckCounts>,
    log_errors: Vec<String>,
}

fn parse_diagnostics(stream: &str, deny_toml: &Path, map: LineMap) -> Parsed {
    let mut findings = Vec::new();
    let mut summary = BTreeMap::new();
    let mut errors = Vec::new();
    for raw in stream.lines().filter(|l| l.trim_start().starts_with('{')) {
        let Ok(line) = serde_json::from_str::<Line>(raw) else {
            continue;
        };
        let f = &line.fields;
        let s = |k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        match line.kind.as_str() {
            "diagnostic" => {
                let severity = s("severity");
                let code = s("code");
                if severity != "error" && severity != "warning" {
                    continue;
                }
                let mut notes: Vec<String> = f
                    .get("notes")
                    .and_then(|n| n.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(labels) = f.get("labels").and_then(|l| l.as_array()) {
                    for l in labels {
                        let msg = l.get("message").and_then(|m| m.as_str()).unwrap_or("");
                        let span = l.get("span").and_then(|m| m.as_str()).unwrap_or("");
                        let line_no = l.get("line").and_then(|m| m.as_u64());
                        if !msg.is_empty() || !span.is_empty() {
                            let label = if msg.is_empty() {
                                "licence".to_string()
                            } else {
                                msg.to_string()
                            };
                            notes.push(match line_no {
                                // Labels point into deny.toml for config rules, into a manifest otherwise.
                                Some(n)
                                    if code == "banned"
                                        || code.ends_with("not-encountered")
                                        || code.starts_with("unmatched") =>
                                {
                                    format!(
                                        "{label}: {span} ({}:{})",
                                        deny_toml.display(),
                                        map.original(n)
                                    )
                                }
                                _ => format!("{label}: {span}"),
                            });
                        }
                    }
                }
                let graph = f
                    .get("graphs")
                    .and_then(|g| g.as_array())
                    .and_then(|a| a.first());
                let (crate_name, version) = graph
                    .and_then(|g| g.get("Krate"))
                    .map(|k| {
                        (
                            k.get("name")
                                .and_then(|v| v.as_str())
                                .unwrap_or("")
                                .to_string(),
                            k.get("version")
                                .and_then(|v| v.as_str())
                                .unwrap_or("")
                                .to_string(),
                        )
                    })
                    .unwrap_or_default();
                let mut path = Vec::new();
                let mut node = graph;
                while let Some(g) = node {
                    if let Some(k) = g.get("Krate") {
                        path.push(format!(
                            "{} {}",
                            k.get("name").and_then(|v| v.as_str()).unwrap_or(""),
                            k.get("version").and_then(|v| v.as_str()).unwrap_or("")
                        ));
                    }
                    node = g
                        .get("parents")
                        .and_then(|p| p.as_array())
                        .and_then(|a| a.first());
                }
                let advisory = f
                    .get("advisory")
                    .and_then(|a| a.get("id"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                let message = s("message");
                findings.push(Finding {
                    way_out: way_out(&code, &crate_name, &version, &notes, advisory.as_deref()),
                    check: check_of(&code).to_string(),
                    severity,
                    code,
                    crate_name,
                    version,
                    advisory,
                    message,
                    path,
                    notes,
                });
            }
            "summary" => {
                for check in ["advisories", "bans", "licenses", "sources"] {
                    if let Some(c) = f.get(check) {
                        let n = |k: &str| c.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
                        summary.insert(
                            check.to_string(),
                            CheckCounts {
                                errors: n("errors"),
                                warnings: n("warnings"),
                                notes: n("notes"),
                                helps: n("helps"),
                            },
                        );
                    }
                }
            }
            "log" if s("level") == "ERROR" => errors.push(s("message")),
            _ => {}
        }
    }
    findings.sort_by(|a, b| {
        (&a.check, &a.crate_name, &a.version, &a.code).cmp(&(
            &b.check,
            &b.crate_name,
            &b.version,
            &b.code,
        ))
    });
    findings.dedup();
    Parsed {
        findings,
        summary,
        log_errors: errors,
    }
}

/// Where lines of the effective config came from in the project's deny.toml.
#[derive(Debug, Clone, Copy, Default)]
struct LineMap {
    /// 1-based line after which the override lines were inserted.
    after: usize,
    /// How many lines were inserted.
    inserted: usize,
}

impl LineMap {
    fn original(&self, line: u64) -> u64 {
        let l = usize::try_from(line).unwrap_or(usize::MAX);
        if self.inserted > 0 && l > self.after + self.inserted {
            (l - self.inserted) as u64
        } else {
            line
        }
    }
}

/// The effective config: the project's deny.toml, verbatim, with the local database and the
/// staleness override inserted at the top of `[advisories]` (the keys they replace are commented
/// out in place), so cargo-deny's line numbers map back to the project's file.
fn effective_config(opts: &PolicyOptions, dir: &Path) -> Result<(PathBuf, LineMap), SbomError> {
    let text = std::fs::read_to_string(&opts.deny_toml)
        .map_err(|e| SbomError::io("reading", &opts.deny_toml, e))?;
    // Parse first, so a broken policy is reported against the project's file.
    toml::from_str::<toml::Table>(&text).map_err(|e| SbomError::Parse {
        what: "deny.toml",
        origin: opts.deny_toml.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut overrides = Vec::new();
    if let Some(db) = &opts.advisory_db {
        overrides.push(format!(
            "db-path = {}",
            toml::Value::String(db.display().to_string())
        ));
    }
    if let Some(s) = &opts.max_db_staleness {
        overrides.push(format!(
            "maximum-db-staleness = {}",
            toml::Value::String(s.clone())
        ));
    }
    let overridden: Vec<&str> = overrides
        .iter()
        .filter_map(|o| o.split(' ').next())
        .collect();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = lines
        .iter()
        .position(|l| l.trim_start().starts_with("[advisories]"));
    let mut map = LineMap::default();
    if !overrides.is_empty() {
        match header {
            Some(h) => {
                let end = lines[h + 1..]
                    .iter()
                    .position(|l| l.trim_start().starts_with('['))
                    .map_or(lines.len(), |p| h + 1 + p);
                for l in &mut lines[h + 1..end] {
                    let key = l.split('=').next().unwrap_or("").trim();
                    if overridden.contains(&key) {
                        *l = format!("# overridden by distro policy: {l}");
                    }
                }
                map = LineMap {
                    after: h + 1,
                    inserted: overrides.len(),
                };
                for (i, o) in overrides.iter().enumerate() {
                    lines.insert(h + 1 + i, o.clone());
                }
            }
            None => {
                lines.push("[advisories]".into());
                lines.extend(overrides.iter().cloned());
            }
        }
    }
    let out = dir.join("deny.toml");
    let mut rendered = lines.join("\n");
    rendered.push('\n');
    std::fs::write(&out, rendered).map_err(|e| SbomError::io("writing", &out, e))?;
    Ok((out, map))
}

/// The advisory `db-urls` of a deny.toml (for [`AdvisoryDb::prepare`]).
pub fn db_urls(deny_toml: &Path) -> Result<Vec<String>, SbomError> {
    let text =
        std::fs::read_to_string(deny_toml).map_err(|e| SbomError::io("reading", deny_toml, e))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| SbomError::Parse {
        what: "deny.toml",
        origin: deny_toml.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(table
        .get("advisories")
        .and_then(|a| a.get("db-urls"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Runs cargo-deny's four checks on one component and returns the typed verdict.
///
/// A failed check is a report with `passed: false`, not an error; errors are for a check that
/// could not run (cargo-deny missing, database missing or stale, unreadable deny.toml).
pub fn check(
    opts: &PolicyOptions,
    advisory_db_date: Option<&str>,
) -> Result<PolicyReport, SbomError> {
    let dir = tempfile::Builder::new()
        .prefix("distro-policy-")
        .tempdir()
        .map_err(|e| SbomError::io("creating a temporary directory in", std::env::temp_dir(), e))?;
    let (config, map) = effective_config(opts, dir.path())?;
    let help =
        "install the pinned cargo-deny: `cargo install cargo-deny --locked --version 0.20.2`";

    let version = Cmd::new(&opts.cargo_deny, "ask cargo-deny for its version")
        .help(help)
        .arg("--version")
        .stdout_text()?;

    let why = format!(
        "check licences, bans, sources and advisories of {} with cargo-deny",
        opts.component
    );
    let mut cmd = Cmd::new(&opts.cargo_deny, why.clone());
    cmd.help(help)
        .args([
            "--format",
            "json",
            "--color",
            "never",
            "--log-level",
            "warn",
        ])
        .arg("--manifest-path")
        .arg(&opts.manifest_path)
        .args(["--offline", "--locked", "--exclude-dev"])
        .arg("--config")
        .arg(&config);
    if opts.no_default_features {
        cmd.arg("--no-default-features");
    }
    if !opts.features.is_empty() {
        cmd.arg("--features").arg(opts.features.join(","));
    }
    cmd.args(["check", "advisories", "bans", "licenses", "sources"]);
    cmd.env("CARGO_TERM_COLOR", "never");
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let Parsed {
        findings,
        summary,
        log_errors,
    } = parse_diagnostics(&stderr, &opts.deny_toml, map);
    if summary.is_empty() {
        // No summary: cargo-deny did not get to check anything.
        let detail = if log_errors.is_empty() {
            stderr.to_string()
        } else {
            log_errors.join("\n")
        };
        let stale = detail.contains("stale");
        return Err(SbomError::from(CmdError::Failed {
            why: format!("{why} (it stopped before checking anything)"),
            command: cmd.display(),
            dir: None,
            status: out.status,
            stderr_tail: tail(detail.as_bytes()),
            help: if stale {
                "the advisory database is older than maximum-db-staleness: update the snapshot, or raise the limit deliberately with --max-db-staleness".into()
            } else {
                "check the advisory database (--advisory-db DIR holding an advisory-db snapshot) and that the component's crates are downloaded (`cargo fetch --locked`)".into()
            },
        }));
    }
    let passed = out.status.success() && !findings.iter().any(|f| f.severity == "error");
    Ok(PolicyReport {
        component: opts.component.clone(),
        passed,
        findings,
        summary,
        advisory_db_date: advisory_db_date.map(str::to_string),
        cargo_deny: version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The database directory name matches the one cargo-deny 0.20 derives for the default URL.
    #[test]
    fn db_dir_name_matches_cargo_deny() {
        assert_eq!(db_dir_name(DEFAULT_DB_URL), "advisory-db-3157b0e258782691");
    }

    /// A date is found in a SNAPSHOT text.
    #[test]
    fn finds_snapshot_date() {
        assert_eq!(
            find_date("commit abc, 2026-08-21), CC0").as_deref(),
            Some("2026-08-21")
        );
        assert_eq!(find_date("none"), None);
    }
}
