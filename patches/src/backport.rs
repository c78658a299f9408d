//! Backporting one fix to every supported line.
//!
//! A fix is a patch file or a commit; a merge commit is refused unless a parent is named
//! (`mainline`), and then its diff against that parent is the fix, with provenance saying so.
//! Relative revisions (`HEAD~1`) and branch names resolve against the line the fix is taken
//! from, never against whatever the repository has checked out.
//!
//! For each line the fix is first checked against what the line already carries: the same
//! patch in its series, a queue patch for the same advisory (aliases folded through the advisory
//! database), or the fix in the line's own history (its commit is an ancestor, a commit with the
//! same patch id, or a commit naming the advisory). Lines outside the affected range (the
//! patch's `Affected-Versions`, else the advisory's `patched`/`unaffected` ranges) are not tried
//! when their ref is a release; a development or unreleased line is judged by its code instead.
//! Then the fix is tried in a worktree of the line's source at its ref, on top of the line's
//! queue: a clean `git apply`, then "already present" (the reverse applies), then a three-way
//! merge. A conflict reports the conflicting files and hunks and the likely prerequisites, found
//! relative to where the fix was written (its parent commit) and ranked by how many of the
//! conflicting hunks' context lines each commit introduced (see [`Prerequisite`]). On request
//! the conflicting worktree is kept for the maintainer to resolve, and [`continue_backport`]
//! records the resolution. A successful backport is added to the line's series; one that had to
//! change is rewritten with `Origin: backport`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use distro_config::Line;
use serde::{Deserialize, Serialize};

use crate::advisory::AdvisoryDb;
use crate::dep3::{self, Origin, OriginCategory, PatchMeta};
use crate::error::PatchError;
use crate::series::Series;
use crate::source::LineSource;
use distro_hostio::Cmd;

/// What to backport.
#[derive(Debug, Clone)]
pub enum Input {
    /// A patch file (git-format with DEP-3 headers).
    File(PathBuf),
    /// A commit (id, tag, branch or a revision relative to the line's ref such as `HEAD~1`).
    Commit(String),
}

impl Input {
    /// A path that exists is a patch file; anything else is taken as a commit.
    pub fn guess(arg: &str) -> Input {
        if Path::new(arg).is_file() {
            Input::File(PathBuf::from(arg))
        } else {
            Input::Commit(arg.to_string())
        }
    }
}

/// DEP-3 fields given as options, added to the fix's own (from its commit trailers).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Advisory ids (CVE, GHSA, RUSTSEC).
    pub advisories: Vec<String>,
    /// Severity (low, medium, high, critical).
    pub severity: Option<String>,
    /// Bug tracker URLs.
    pub bugs: Vec<String>,
}

impl Overrides {
    fn is_empty(&self) -> bool {
        self.advisories.is_empty() && self.severity.is_none() && self.bugs.is_empty()
    }
}

/// How to read a fix.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The ref of the line the fix is taken from: `HEAD` in a revision means this ref.
    pub line_ref: Option<String>,
    /// For a merge commit: backport its diff against this parent (1-based).
    pub mainline: Option<u32>,
    /// DEP-3 fields to add.
    pub overrides: Overrides,
}

/// A region of a file that did not merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictHunk {
    /// 1-based line of the region in the line's file (after the merge attempt).
    pub line: usize,
    /// The region (conflict markers included), or what git said about it.
    pub text: String,
}

/// A file that did not merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictFile {
    /// Path in the tree.
    pub path: String,
    /// Its conflicting hunks.
    pub hunks: Vec<ConflictHunk>,
}

/// How a prerequisite relates to the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// Reachable from the fix's parent but not from the line: the line lacks it.
    MissingFromLine,
    /// On the line since its merge-base with the fix's parent: it changed the code the fix
    /// expects (e.g. a refactor), so the fix must be adapted to it.
    OnLine,
}

/// Which context lines of a conflicting hunk a commit introduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// File.
    pub path: String,
    /// The hunk: its first line (at the fix's parent for [`Relation::MissingFromLine`], in the
    /// line's file for [`Relation::OnLine`]).
    pub hunk: usize,
    /// The lines (same numbering) the commit last changed.
    pub lines: Vec<usize>,
}

/// A commit that is likely a prerequisite, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prerequisite {
    /// Full id.
    pub id: String,
    /// Subject line.
    pub summary: String,
    /// Missing from the line, or on it.
    pub relation: Relation,
    /// How many of the conflicting hunks' context lines it introduced (`git blame`).
    pub context_lines: usize,
    /// Where.
    pub evidence: Vec<Evidence>,
}

/// The result on one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// `git apply` took it unchanged.
    Applied,
    /// It needed a three-way merge; the queue gets the merged result.
    ThreeWay,
    /// The line already has the change.
    AlreadyPresent {
        /// How that was found.
        reason: String,
    },
    /// The line already carries a different fix for the same advisory.
    AlreadyFixed {
        /// The queue patch or commit that fixes it.
        by: String,
        /// How that was found.
        reason: String,
    },
    /// The line's upstream version is outside the fix's affected range.
    NotAffected {
        /// The line's upstream version.
        version: String,
        /// The affected range (and where it came from).
        affected: String,
    },
    /// It does not apply, even with a three-way merge.
    Conflict {
        /// Conflicting files and hunks.
        files: Vec<ConflictFile>,
        /// Likely prerequisites, most context introduced first.
        prerequisites: Vec<Prerequisite>,
        /// The worktree kept for resolution (`--keep`).
        #[serde(skip_serializing_if = "Option::is_none")]
        kept: Option<PathBuf>,
    },
    /// Not tried on this line.
    NotTried {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// Short words for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied cleanly",
            Outcome::ThreeWay => "applied with three-way merge",
            Outcome::AlreadyPresent { .. } => "already present",
            Outcome::AlreadyFixed { .. } => "already fixed",
            Outcome::NotAffected { .. } => "not affected",
            Outcome::Conflict { .. } => "conflict",
            Outcome::NotTried { .. } => "not tried",
        }
    }
}

/// One line's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineResult {
    /// The line.
    pub line: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The queue file written, when the backport was added to the series.
    pub added: Option<PathBuf>,
    /// Anything else worth saying (e.g. no queue configured, judged by code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The result of a backport over several lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// File name the patch has in queues.
    pub patch: String,
    /// Its description.
    pub description: String,
    /// Its provenance (`Origin`).
    pub origin: String,
    /// Advisories it fixes.
    pub advisories: Vec<String>,
    /// The commit the fix was written on (its parent), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Per line, in the order tried.
    pub lines: Vec<LineResult>,
}

/// Options of a backport.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// Add successful backports to the lines' series (false: only report).
    pub write: bool,
    /// Date written as `Last-Update` of rewritten patches.
    pub today: NaiveDate,
    /// The advisory database: affected ranges of named advisories, alias folding.
    pub db: Option<&'a AdvisoryDb>,
    /// Keep conflicting worktrees under this directory (`<dir>/<line>`, state in
    /// `<dir>/<line>.json`) for [`continue_backport`].
    pub keep: Option<PathBuf>,
}

/// A fix read from a file or a commit, ready to try.
#[derive(Debug, Clone)]
pub struct Fix {
    /// Queue file name.
    pub name: String,
    /// Full patch text.
    pub text: String,
    /// Parsed header.
    pub meta: PatchMeta,
    /// The commit (for commit input, or a patch file whose `From <id>` is in the repository).
    pub commit: Option<String>,
    /// The commit the fix was written on: the commit's parent, or the named parent of a merge.
    pub base: Option<String>,
    /// A saved copy of the text (git apply reads files).
    file: PathBuf,
    _keep: Option<std::sync::Arc<tempfile::TempDir>>,
}

fn git_in(repo: &Path, why: impl Into<String>) -> Cmd {
    let mut c = Cmd::git(why);
    c.cwd(repo);
    c
}

/// The commit `rev` names in `repo`, `HEAD` meaning `line_ref` when given.
pub fn resolve_commit(
    repo: &Path,
    rev: &str,
    line_ref: Option<&str>,
) -> Result<String, PatchError> {
    let relative = rev == "HEAD"
        || rev
            .strip_prefix("HEAD")
            .is_some_and(|rest| rest.starts_with(['~', '^', '@']));
    let spec = match (relative, line_ref) {
        (true, Some(r)) => {
            let base = resolve_commit(repo, r, None)?;
            format!("{base}{}", &rev[4..])
        }
        _ => rev.to_string(),
    };
    if spec.starts_with('-') {
        return Err(PatchError::invalid(
            format!("`{rev}` is not a revision"),
            "name a commit id, tag or branch",
        ));
    }
    let out = git_in(repo, format!("resolve commit {rev}"))
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{spec}^{{commit}}"))
        .output()?;
    if !out.status.success() {
        return Err(PatchError::invalid(
            format!("`{rev}` is neither a patch file nor a commit of {}", repo.display()),
            "pass the path of a git-format patch, or a commit id, tag or branch of the line's repository (HEAD means the line's ref)",
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn parents(repo: &Path, id: &str) -> Result<Vec<String>, PatchError> {
    let line = git_in(repo, format!("list the parents of {id}"))
        .args(["rev-list", "--parents", "-n", "1", id])
        .stdout()?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect())
}

fn commit_exists(repo: &Path, id: &str) -> bool {
    git_in(repo, "check whether the patch's commit is known")
        .args(["cat-file", "-e"])
        .arg(format!("{id}^{{commit}}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn slug(description: &str) -> String {
    description
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-")
}

fn apply_overrides(meta: &mut PatchMeta, o: &Overrides, origin: &Path) -> Result<(), PatchError> {
    for raw in &o.advisories {
        let id = dep3::normalise_id(raw.trim());
        if !dep3::is_advisory_id(&id) {
            return Err(PatchError::invalid(
                format!(
                    "--advisory `{raw}` is not a CVE, GHSA or RUSTSEC advisory id ({})",
                    origin.display()
                ),
                "write ids like CVE-2026-12345, GHSA-abcd-1234-wxyz or RUSTSEC-2026-0049",
            ));
        }
        if !meta.advisories.contains(&id) {
            meta.advisories.push(id);
        }
    }
    if let Some(s) = &o.severity {
        meta.severity = Some(dep3::Severity::parse(s).ok_or_else(|| {
            PatchError::invalid(
                format!("--severity `{s}` is not one of low, medium, high, critical"),
                "write one of: low, medium, high, critical",
            )
        })?);
    }
    for b in &o.bugs {
        if !meta.bugs.contains(b) {
            meta.bugs.push(b.clone());
        }
    }
    Ok(())
}

impl Fix {
    /// Reads the fix; commits are read from `repo` (the repository of the line the fix is
    /// taken from, whose ref is `opts.line_ref`).
    pub fn load(input: &Input, repo: &Path, opts: &LoadOptions) -> Result<Fix, PatchError> {
        let dir = tempfile::tempdir().map_err(|e| PatchError::io(std::env::temp_dir(), e))?;
        let (name, text, meta, commit, base) = match input {
            Input::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| PatchError::io(path, e))?;
                let mut meta = dep3::parse(path, &text)?;
                let name = path
                    .file_name()
                    .map_or_else(|| "fix.patch".into(), |n| n.to_string_lossy().into_owned());
                // A format-patch file names its commit: when the repository has it, the fix
                // was written on that commit's parent.
                let commit = meta.commit.clone().filter(|c| commit_exists(repo, c));
                let base = match &commit {
                    Some(c) => parents(repo, c)?.into_iter().next(),
                    None => None,
                };
                let text = if opts.overrides.is_empty() {
                    text
                } else {
                    apply_overrides(&mut meta, &opts.overrides, path)?;
                    let today = chrono::Utc::now().date_naive();
                    format!(
                        "{}\n{}",
                        dep3::render_header(&meta, meta.last_update.unwrap_or(today)),
                        dep3::diff_part(&text)
                    )
                };
                (name, text, meta, commit, base)
            }
            Input::Commit(rev) => {
                let id = resolve_commit(repo, rev, opts.line_ref.as_deref())?;
                let ps = parents(repo, &id)?;
                let (text, base, merge_note) = if ps.len() > 1 {
                    let Some(n) = opts.mainline else {
                        return Err(PatchError::invalid(
                            format!(
                                "`{rev}` ({}) is a merge commit of {} parents: its change depends on the parent it is compared with",
                                &id[..12.min(id.len())],
                                ps.len()
                            ),
                            "pass --mainline N to backport its diff against parent N (1 is the branch merged into), or name the fix's own commit",
                        ));
                    };
                    let parent = usize::try_from(n)
                        .ok()
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|i| ps.get(i))
                        .cloned()
                        .ok_or_else(|| {
                            PatchError::invalid(
                                format!("--mainline {n}: merge {id} has {} parents", ps.len()),
                                format!("pass a parent number from 1 to {}", ps.len()),
                            )
                        })?;
                    let header = git_in(repo, format!("read the message of merge {id}"))
                        .args([
                            "log",
                            "-1",
                            "--format=From: %an <%ae>%nDate: %aD%nSubject: [PATCH] %s%n%n%b",
                        ])
                        .arg(&id)
                        .stdout()?;
                    let diff = git_in(repo, format!("diff merge {id} against its parent {n}"))
                        .args(["diff", "--full-index", "--binary"])
                        .arg(&parent)
                        .arg(&id)
                        .stdout()?;
                    let text = format!(
                        "From {id} Mon Sep 17 00:00:00 2001\n{}\n---\n{diff}",
                        header.trim_end()
                    );
                    (text, Some(parent.clone()), Some((n, parent)))
                } else {
                    let text = git_in(repo, format!("format commit {rev} as a patch"))
                        .args([
                            "format-patch",
                            "-1",
                            "--stdout",
                            "--no-signature",
                            "--full-index",
                        ])
                        .arg(&id)
                        .stdout()?;
                    (text, ps.into_iter().next(), None)
                };
                let pseudo = PathBuf::from(format!("commit:{id}"));
                let mut meta = dep3::parse(&pseudo, &text)?;
                meta.commit = Some(id.clone());
                match merge_note {
                    Some((n, parent)) => {
                        // Exactly what the queue carries: this merge's diff against that parent.
                        meta.origin = Some(Origin {
                            category: meta
                                .origin
                                .as_ref()
                                .map_or(OriginCategory::Upstream, |o| o.category),
                            reference: Some(format!(
                                "commit:{id} (diff against parent {n} {parent})"
                            )),
                        });
                    }
                    None => {
                        if meta.origin.as_ref().is_none_or(|o| o.reference.is_none()) {
                            meta.origin = Some(Origin {
                                category: meta
                                    .origin
                                    .as_ref()
                                    .map_or(OriginCategory::Upstream, |o| o.category),
                                reference: Some(format!("commit:{id}")),
                            });
                        }
                    }
                }
                apply_overrides(&mut meta, &opts.overrides, &pseudo)?;
                let name = format!(
                    "{}-{}.patch",
                    &id[..12.min(id.len())],
                    slug(&meta.description)
                );
                // The queue copy carries the commit's own header fields (From <id>, author,
                // author date, trailers) plus Origin.
                let body = dep3::diff_part(&text);
                let today = chrono::Utc::now().date_naive();
                let full = format!(
                    "{}\n{body}",
                    dep3::render_header(&meta, meta.last_update.unwrap_or(today))
                );
                (name, full, meta, Some(id), base)
            }
        };
        let file = dir.path().join(&name);
        std::fs::write(&file, &text).map_err(|e| PatchError::io(&file, e))?;
        Ok(Fix {
            name,
            text,
            meta,
            commit,
            base,
            file,
            _keep: Some(std::sync::Arc::new(dir)),
        })
    }
}

/// The upstream version a line's source carries: its latest patch release, or MAJOR.MINOR.0.
pub fn upstream_version(line: &Line) -> semver::Version {
    line.latest
        .as_deref()
        .and_then(|l| semver::Version::parse(l).ok())
        .unwrap_or_else(|| line.semver.clone())
}

/// Whether the line's version label can be trusted: its ref is a tag and a release is recorded
/// (`latest`). Branches, commits and unreleased lines are judged by their code.
pub fn is_release(line: &Line, source: &LineSource) -> bool {
    line.latest.is_some()
        && git_in(
            &source.repo,
            format!("check whether {} is a release tag", line.source.git_ref),
        )
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/tags/{}", line.source.git_ref))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether upstream version `version` carries the bug `meta` fixes: its `Affected-Versions`,
/// else the ranges of the advisories it names (RustSec `patched` and `unaffected`), else yes.
/// Also says where the answer came from.
pub fn affected_range(
    meta: &PatchMeta,
    version: &semver::Version,
    db: Option<&AdvisoryDb>,
) -> (bool, String) {
    if let Some(r) = &meta.affected {
        return (
            r.matches(version),
            meta.affected_versions.clone().unwrap_or_default(),
        );
    }
    if let Some(db) = db {
        for id in &meta.advisories {
            if let Some(a) = db.find(id).filter(|a| !a.withdrawn) {
                let mut text = format!("advisory {}: patched {}", a.id, list_or_none(&a.patched));
                if !a.unaffected.is_empty() {
                    text.push_str(&format!(", unaffected {}", a.unaffected.join(" || ")));
                }
                return (a.affects(version), text);
            }
        }
    }
    (true, "*".into())
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" || ")
    }
}

/// Advisory ids folded through the database: each id, its advisory's id and its aliases,
/// upper-cased for comparison.
pub fn fold_ids(ids: &[String], db: Option<&AdvisoryDb>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let u = s.to_ascii_uppercase();
        if !out.contains(&u) {
            out.push(u);
        }
    };
    for id in ids {
        push(id);
        if let Some(a) = db.and_then(|db| db.find(id)) {
            push(&a.id);
            for al in &a.aliases {
                push(al);
            }
        }
    }
    out
}

/// Tries `fix` on each of `lines` (see [`backport_many`]).
pub fn backport(fix: &Fix, lines: &[&Line], opts: &Options<'_>) -> Result<Report, PatchError> {
    let mut reports = backport_many(std::slice::from_ref(fix), lines, opts)?;
    reports
        .pop()
        .ok_or_else(|| PatchError::invalid("no backport report", "report this as a bug"))
}

/// Tries each fix, in order, on each of `lines`.
///
/// Every line gets one worktree of its source at its ref with its queue applied; the fixes are
/// tried there one after another, and each one that applies is committed in the worktree so
/// the next fix sees it (as it will in the queue). Lines run in parallel. Successes are then
/// added to the queues (when `opts.write`), in fix order. Prerequisites of a conflict are
/// looked up relative to the fix's parent; for a patch file of unknown origin, relative to the
/// newest line.
pub fn backport_many(
    fixes: &[Fix],
    lines: &[&Line],
    opts: &Options<'_>,
) -> Result<Vec<Report>, PatchError> {
    let mut ordered: Vec<&Line> = lines.to_vec();
    ordered.sort_by(|a, b| b.semver.cmp(&a.semver));
    let newest = ordered.first().map(|l| l.source.git_ref.clone());
    type Tried = Vec<(LineResult, Option<String>)>;
    let per_line: Vec<Result<Tried, PatchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ordered
            .iter()
            .map(|line| scope.spawn(|| try_line(fixes, line, newest.as_deref(), opts)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(PatchError::invalid(
                        "a backport worker panicked",
                        "report this as a bug",
                    ))
                })
            })
            .collect()
    });
    let mut per_line: Vec<Tried> = per_line.into_iter().collect::<Result<_, _>>()?;
    let mut reports = Vec::new();
    for (i, fix) in fixes.iter().enumerate() {
        let mut results = Vec::new();
        for (line, tried) in ordered.iter().zip(per_line.iter_mut()) {
            let (mut result, text) = std::mem::replace(
                &mut tried[i],
                (
                    LineResult {
                        line: String::new(),
                        outcome: Outcome::Applied,
                        added: None,
                        note: None,
                    },
                    None,
                ),
            );
            if opts.write && matches!(result.outcome, Outcome::Applied | Outcome::ThreeWay) {
                match &line.patches {
                    Some(dir) => {
                        let dest = dir.join(&fix.name);
                        distro_hostio::write_atomic(
                            &dest,
                            text.as_deref().unwrap_or(&fix.text).as_bytes(),
                            distro_hostio::PUBLIC,
                        )?;
                        crate::series::append(dir, &fix.name)?;
                        result.added = Some(dest);
                    }
                    None => {
                        result.note = Some(format!(
                            "line {} has no patch queue: set `patches = \"patches/{}\"` in its [[line]] to record backports",
                            line.version, line.version
                        ))
                    }
                }
            }
            results.push(result);
        }
        reports.push(Report {
            patch: fix.name.clone(),
            description: fix.meta.description.clone(),
            origin: fix.meta.origin_text(),
            advisories: fix.meta.advisories.clone(),
            base: fix.base.clone(),
            lines: results,
        });
    }
    Ok(reports)
}

/// What the line already carries of `fix`, checked without a worktree: a queue patch for the
/// same advisory, or the fix in the line's history.
fn already_carried(
    fix: &Fix,
    line: &Line,
    queue: &[crate::QueuedPatch],
    source: &LineSource,
    db: Option<&AdvisoryDb>,
) -> Result<Option<Outcome>, PatchError> {
    let wanted = fold_ids(&fix.meta.advisories, db);
    if !wanted.is_empty() {
        for q in queue {
            let theirs = fold_ids(&q.meta.advisories, db);
            if let Some(shared) = theirs.iter().find(|id| wanted.contains(id)) {
                return Ok(Some(Outcome::AlreadyFixed {
                    by: q.entry.name.clone(),
                    reason: format!(
                        "patch {} in the line's queue (series line {}) fixes {shared}, as this fix does",
                        q.entry.name, q.entry.line
                    ),
                }));
            }
        }
    }
    let line_ref = &line.source.git_ref;
    let repo = &source.repo;
    if let Some(c) = &fix.commit {
        let anc = git_in(
            repo,
            "check whether the fix's commit is in the line's history",
        )
        .args(["merge-base", "--is-ancestor", c])
        .arg(format!("{line_ref}^{{commit}}"))
        .output()?;
        if anc.status.success() {
            return Ok(Some(Outcome::AlreadyPresent {
                reason: format!(
                    "commit {} is in the line's history ({line_ref})",
                    &c[..12.min(c.len())]
                ),
            }));
        }
    }
    // The same change under another commit id (a cherry-pick): equal patch ids.
    let fix_id = patch_id(repo, fix.text.as_bytes())?;
    if let Some(fix_id) = fix_id {
        let mut log = git_in(repo, "list the line's commits touching the fix's files");
        log.args([
            "log",
            "-p",
            "--no-merges",
            "--format=commit %H",
            "-n",
            "200",
        ]);
        match &fix.base {
            Some(b) => log.arg(format!("{b}..{line_ref}")),
            None => log.arg(line_ref),
        };
        log.arg("--");
        for f in diff_paths(&fix.text) {
            log.arg(f);
        }
        let text = log.stdout()?;
        let mut pid = git_in(repo, "compute patch ids of the line's commits");
        pid.args(["patch-id", "--stable"]);
        let out = pid.output_with_input(text.as_bytes())?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = l.split_whitespace();
            if let (Some(p), Some(c)) = (parts.next(), parts.next()) {
                if p == fix_id {
                    return Ok(Some(Outcome::AlreadyPresent {
                        reason: format!(
                            "commit {} in the line's history makes the same change (same patch id)",
                            &c[..12.min(c.len())]
                        ),
                    }));
                }
            }
        }
    }
    // The fix merged forward or adapted by hand upstream: a commit naming the advisory.
    if !wanted.is_empty() {
        let mut log = git_in(repo, "look for the advisory in the line's history");
        log.args(["log", "-i", "-F", "--format=%H%x09%s", "-n", "1"]);
        for id in &wanted {
            log.arg(format!("--grep={id}"));
        }
        log.arg(format!("{line_ref}^{{commit}}"));
        if let Some(fc) = &fix.commit {
            log.arg(format!("^{fc}"));
        }
        let found = log.stdout()?;
        if let Some((c, subject)) = found.lines().next().and_then(|l| l.split_once('\t')) {
            let message = git_in(repo, "read the commit that names the advisory")
                .args(["log", "-1", "--format=%B", c])
                .stdout()?
                .to_ascii_uppercase();
            let named = wanted.iter().find(|id| message.contains(id.as_str()));
            return Ok(Some(Outcome::AlreadyFixed {
                by: format!("commit {} ({subject})", &c[..12.min(c.len())]),
                reason: format!(
                    "commit {c} in the line's history ({line_ref}) names {} in its message",
                    named.map_or("the advisory", |s| s.as_str())
                ),
            }));
        }
    }
    Ok(None)
}

/// `git patch-id --stable` of a patch text (None when it has no diff).
fn patch_id(repo: &Path, text: &[u8]) -> Result<Option<String>, PatchError> {
    let mut c = git_in(repo, "compute the fix's patch id");
    c.args(["patch-id", "--stable"]);
    let out = c.output_with_input(text)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string))
}

/// Paths (after `a/`/`b/`) a patch changes.
fn diff_paths(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in parse_hunks(dep3::diff_part(text)) {
        if !out.contains(&h.old_path) {
            out.push(h.old_path.clone());
        }
        if !out.contains(&h.new_path) {
            out.push(h.new_path);
        }
    }
    out.retain(|p| p != "/dev/null");
    out
}

/// One hunk of a unified diff.
#[derive(Debug, Clone)]
struct Hunk {
    old_path: String,
    new_path: String,
    old_start: usize,
    /// Context and removed lines: what the fix expects to find.
    preimage: Vec<String>,
}

fn parse_hunks(diff: &str) -> Vec<Hunk> {
    let strip = |p: &str| -> String {
        let p = p.split('\t').next().unwrap_or(p).trim();
        if p == "/dev/null" {
            return p.to_string();
        }
        p.split_once('/').map_or(p, |(_, rest)| rest).to_string()
    };
    let mut out: Vec<Hunk> = Vec::new();
    let (mut old_path, mut new_path) = (String::new(), String::new());
    let mut current: Option<Hunk> = None;
    for l in diff.lines() {
        if l.starts_with("diff --git ") {
            if let Some(h) = current.take() {
                out.push(h);
            }
        } else if let Some(p) = l.strip_prefix("--- ") {
            if let Some(h) = current.take() {
                out.push(h);
            }
            old_path = strip(p);
        } else if let Some(p) = l.strip_prefix("+++ ") {
            new_path = strip(p);
        } else if let Some(rest) = l.strip_prefix("@@ -") {
            if let Some(h) = current.take() {
                out.push(h);
            }
            let start = rest
                .split([',', ' '])
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            current = Some(Hunk {
                old_path: old_path.clone(),
                new_path: new_path.clone(),
                old_start: start,
                preimage: Vec::new(),
            });
        } else if let Some(h) = current.as_mut() {
            if let Some(t) = l.strip_prefix(' ').or_else(|| l.strip_prefix('-')) {
                h.preimage.push(t.to_string());
            } else if l.is_empty() {
                h.preimage.push(String::new());
            } else if !l.starts_with('+') && !l.starts_with('\\') {
                // Anything else (an `index` line, a mail signature) ends the hunk.
                out.extend(current.take());
            }
        }
    }
    if let Some(h) = current.take() {
        out.push(h);
    }
    out
}

/// Where the `needle` lines occur contiguously in `hay` (1-based first line).
fn find_block(hay: &[&str], needle: &[&str]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    (0..=hay.len() - needle.len())
        .find(|&i| hay[i..i + needle.len()] == *needle)
        .map(|i| i + 1)
}

/// Tries every fix on one line, in one worktree; per fix the result and, for a three-way merge,
/// the rewritten patch.
fn try_line(
    fixes: &[Fix],
    line: &Line,
    newest_ref: Option<&str>,
    opts: &Options<'_>,
) -> Result<Vec<(LineResult, Option<String>)>, PatchError> {
    let version = upstream_version(line);
    let result = |outcome, note: Option<String>| LineResult {
        line: line.version.clone(),
        outcome,
        added: None,
        note,
    };
    let source = LineSource::of(line)?;
    let release = is_release(line, &source);
    let queue: Vec<crate::QueuedPatch> = match &line.patches {
        Some(dir) if dir.join("series").is_file() => crate::read_queue(dir)?,
        _ => Vec::new(),
    };
    let mut in_series: Vec<String> = match &line.patches {
        Some(dir) => Series::read(dir)
            .map(|s| s.entries.into_iter().map(|e| e.name).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    let mut session: Option<(Option<tempfile::TempDir>, crate::source::Worktree)> = None;
    // Clean applies staged but not yet committed in the session's worktree.
    let mut pending = false;
    // Set once a conflicting worktree is kept: later fixes are not tried on it.
    let mut kept: Option<PathBuf> = None;
    for fix in fixes {
        let (affected, range) = affected_range(&fix.meta, &version, opts.db);
        let mut note = None;
        if !affected {
            if release {
                out.push((
                    result(
                        Outcome::NotAffected {
                            version: version.to_string(),
                            affected: range,
                        },
                        None,
                    ),
                    None,
                ));
                continue;
            }
            note = Some(format!(
                "the line's ref `{}` is not a release tag: judged by its code, not by its version {version} (outside {range})",
                line.source.git_ref
            ));
        }
        if in_series.contains(&fix.name) {
            out.push((
                result(
                    Outcome::AlreadyPresent {
                        reason: format!("{} is already in the line's series", fix.name),
                    },
                    note,
                ),
                None,
            ));
            continue;
        }
        if let Some(k) = &kept {
            out.push((
                result(
                    Outcome::NotTried {
                        reason: format!(
                            "an earlier fix conflicts on this line; its worktree is kept at {}",
                            k.display()
                        ),
                    },
                    note,
                ),
                None,
            ));
            continue;
        }
        if let Some(o) = already_carried(fix, line, &queue, &source, opts.db)? {
            out.push((result(o, note), None));
            continue;
        }
        if session.is_none() {
            let (scratch, dir) = match &opts.keep {
                Some(k) => {
                    let dir = k.join(&line.version);
                    if dir.exists() || k.join(format!("{}.json", line.version)).exists() {
                        return Err(PatchError::invalid(
                            format!(
                                "line {}: a kept backport worktree exists at {}",
                                line.version,
                                dir.display()
                            ),
                            format!(
                                "finish it with `distro patches backport --continue {}`, or remove {} and {}.json",
                                line.version,
                                dir.display(),
                                dir.display()
                            ),
                        ));
                    }
                    std::fs::create_dir_all(k).map_err(|e| PatchError::io(k, e))?;
                    (None, dir)
                }
                None => {
                    let scratch =
                        tempfile::tempdir().map_err(|e| PatchError::io(std::env::temp_dir(), e))?;
                    let dir = scratch.path().join(format!("line-{}", line.version));
                    (Some(scratch), dir)
                }
            };
            let wt = source.worktree(&dir)?;
            if let Some(dir) = &line.patches {
                if dir.join("series").is_file() && !crate::apply_series(&wt.dir, dir)?.is_empty() {
                    wt.commit_all("the line's patch series")?;
                }
            }
            session = Some((scratch, wt));
        }
        let Some((_, wt)) = session.as_mut() else {
            continue; // unreachable: the session was just created
        };
        let mut commit_pending = |wt: &crate::source::Worktree| -> Result<(), PatchError> {
            if pending {
                wt.commit_all("backports applied cleanly")?;
                pending = false;
            }
            Ok(())
        };
        let (outcome, text) = try_fix(
            fix,
            line,
            wt,
            &source,
            newest_ref,
            opts,
            &mut commit_pending,
        )?;
        let git = |why: &str| git_in(&wt.dir, why.to_string());
        // Successes stay in the worktree, so later fixes are tried on top of them as the
        // queue will have them: a clean apply is already staged (committed lazily), a
        // three-way result is committed now.
        let outcome = match outcome {
            Outcome::Applied => {
                pending = true;
                in_series.push(fix.name.clone());
                Outcome::Applied
            }
            Outcome::ThreeWay => {
                wt.commit_all(&format!("backport {}", fix.name))?;
                in_series.push(fix.name.clone());
                Outcome::ThreeWay
            }
            Outcome::Conflict {
                files,
                prerequisites,
                ..
            } if opts.keep.is_some() => {
                let keep_dir = opts.keep.clone().unwrap_or_default();
                let base = git("record the commit the resolution is taken against")
                    .args(["rev-parse", "HEAD"])
                    .stdout()?
                    .trim()
                    .to_string();
                let state = KeptBackport {
                    line: line.version.clone(),
                    worktree: wt.dir.clone(),
                    repo: source.repo.clone(),
                    base,
                    patch: fix.name.clone(),
                    fix_text: fix.text.clone(),
                };
                let json = serde_json::to_vec_pretty(&state).map_err(|e| {
                    PatchError::invalid(
                        format!("cannot record the kept backport: {e}"),
                        "report this as a bug",
                    )
                })?;
                distro_hostio::write_atomic(
                    &keep_dir.join(format!("{}.json", line.version)),
                    &json,
                    distro_hostio::PUBLIC,
                )?;
                wt.keep();
                kept = Some(wt.dir.clone());
                Outcome::Conflict {
                    files,
                    prerequisites,
                    kept: Some(wt.dir.clone()),
                }
            }
            c @ Outcome::Conflict { .. } => {
                git("reset the worktree after the conflict")
                    .args(["reset", "--hard", "--quiet", "HEAD"])
                    .run()?;
                git("remove files the attempt left")
                    .args(["clean", "-fdq"])
                    .run()?;
                c
            }
            other => other,
        };
        out.push((result(outcome, note), text));
    }
    Ok(out)
}

/// One fix on one prepared worktree: clean, already present, three-way, or conflict.
fn try_fix(
    fix: &Fix,
    line: &Line,
    wt: &crate::source::Worktree,
    source: &LineSource,
    newest_ref: Option<&str>,
    opts: &Options<'_>,
    commit_pending: &mut dyn FnMut(&crate::source::Worktree) -> Result<(), PatchError>,
) -> Result<(Outcome, Option<String>), PatchError> {
    let git = |why: &str| git_in(&wt.dir, why.to_string());
    // `git apply --index` is atomic: it applies everything or changes nothing.
    let clean = git("apply the fix if it applies cleanly")
        .args(["apply", "--index"])
        .arg(&fix.file)
        .output()?;
    if clean.status.success() {
        return Ok((Outcome::Applied, None));
    }
    // The clean successes before this one are committed, so a three-way diff against HEAD
    // shows this fix only and a reset after a conflict keeps them.
    commit_pending(wt)?;
    if git("check whether the line already has the fix")
        .args(["apply", "--check", "--reverse"])
        .arg(&fix.file)
        .output()?
        .status
        .success()
    {
        return Ok((
            Outcome::AlreadyPresent {
                reason: "the fix reverse-applies: its changes are in the line's source".into(),
            },
            None,
        ));
    }
    let three = git("merge the fix three-way")
        .args(["apply", "--3way"])
        .arg(&fix.file)
        .output()?;
    let unmerged = git("list files left unmerged")
        .args(["diff", "--name-only", "--diff-filter=U"])
        .stdout()?;
    if three.status.success() && unmerged.trim().is_empty() {
        let diff = git("take the merged result as the backported patch")
            .args(["diff", "--cached", "HEAD"])
            .stdout()?;
        if diff.trim().is_empty() {
            return Ok((
                Outcome::AlreadyPresent {
                    reason: "the three-way merge changes nothing: the line already has the fix"
                        .into(),
                },
                None,
            ));
        }
        let text = backport_text(&fix.meta, fix.commit.as_deref(), &diff, opts.today);
        return Ok((Outcome::ThreeWay, Some(text)));
    }
    let files = conflict_files(
        &wt.dir,
        &unmerged,
        &String::from_utf8_lossy(&three.stderr),
        &String::from_utf8_lossy(&clean.stderr),
    );
    // Where the fix was written: its parent; for a patch file of unknown origin, the newest
    // line (the best guess of where such a patch comes from).
    let base = fix.base.clone().or_else(|| {
        newest_ref
            .filter(|r| *r != line.source.git_ref)
            .map(str::to_string)
    });
    let prerequisites = match base {
        Some(base) => prerequisites(
            &source.repo,
            &wt.dir,
            &line.source.git_ref,
            &base,
            &fix.text,
            &files,
        )?,
        None => Vec::new(),
    };
    Ok((
        Outcome::Conflict {
            files,
            prerequisites,
            kept: None,
        },
        None,
    ))
}

/// The queue text of an adapted fix: its header with `Origin: backport` (keeping the
/// reference), `Last-Update: today`, then `diff`.
fn backport_text(meta: &PatchMeta, commit: Option<&str>, diff: &str, today: NaiveDate) -> String {
    let mut meta = meta.clone();
    let reference = meta
        .origin
        .as_ref()
        .and_then(|o| o.reference.clone())
        .or_else(|| commit.map(|c| format!("commit:{c}")));
    meta.origin = Some(Origin {
        category: OriginCategory::Backport,
        reference,
    });
    meta.last_update = Some(today);
    format!("{}\n{diff}", dep3::render_header(&meta, today))
}

/// Conflicting files with their conflict regions; when the three-way merge could not even
/// start (no common ancestor blob), the files and lines git reported.
fn conflict_files(
    dir: &Path,
    unmerged: &str,
    three_err: &str,
    clean_err: &str,
) -> Vec<ConflictFile> {
    let mut files: Vec<ConflictFile> = Vec::new();
    for path in unmerged.lines().map(str::trim).filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(dir.join(path)).unwrap_or_default();
        let mut hunks = Vec::new();
        let mut current: Option<(usize, Vec<&str>)> = None;
        for (i, l) in text.lines().enumerate() {
            if l.starts_with("<<<<<<<") {
                current = Some((i + 1, vec![l]));
            } else if let Some((start, mut body)) = current.take() {
                body.push(l);
                if l.starts_with(">>>>>>>") {
                    hunks.push(ConflictHunk {
                        line: start,
                        text: body.join("\n"),
                    });
                } else {
                    current = Some((start, body));
                }
            }
        }
        files.push(ConflictFile {
            path: path.to_string(),
            hunks,
        });
    }
    if files.is_empty() {
        // "error: patch failed: src/lib.rs:12"
        for l in clean_err.lines().chain(three_err.lines()) {
            let Some(rest) = l.split("patch failed: ").nth(1) else {
                continue;
            };
            let (path, line) = rest.rsplit_once(':').unwrap_or((rest, "0"));
            let hunk = ConflictHunk {
                line: line.trim().parse().unwrap_or(0),
                text: l.trim().to_string(),
            };
            match files.iter_mut().find(|f| f.path == path) {
                Some(f) => {
                    if !f.hunks.contains(&hunk) {
                        f.hunks.push(hunk)
                    }
                }
                None => files.push(ConflictFile {
                    path: path.to_string(),
                    hunks: vec![hunk],
                }),
            }
        }
    }
    files
}

/// `git blame --porcelain` of lines `start..start+len` of `path` at `rev`: the commit of each
/// line, with its line number.
fn blame(
    dir: &Path,
    rev: &str,
    path: &str,
    start: usize,
    len: usize,
) -> Result<Vec<(String, usize)>, PatchError> {
    if len == 0 || start == 0 {
        return Ok(Vec::new());
    }
    let out = git_in(
        dir,
        format!("find which commits wrote {path}:{start}+{len}"),
    )
    .args(["blame", "--porcelain", "-L"])
    .arg(format!("{start},+{len}"))
    .arg(rev)
    .arg("--")
    .arg(path)
    .output()?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    let mut lines = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = l.split(' ');
        let (Some(id), Some(_orig), Some(fin)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(n) = fin.parse::<usize>() {
                lines.push((id.to_string(), n));
            }
        }
    }
    Ok(lines)
}

fn rev_list(repo: &Path, why: &str, args: &[String]) -> Result<Vec<String>, PatchError> {
    let mut c = git_in(repo, why.to_string());
    c.args(["rev-list", "--no-merges"]).args(args);
    Ok(c.stdout()?.lines().map(str::to_string).collect())
}

/// Likely prerequisites of a fix that conflicts on a line, relative to `base` (the commit the
/// fix was written on).
///
/// Candidates are the commits reachable from `base` but not from the line (the line lacks
/// them) and the commits on the line since its merge-base with `base` (they changed the code
/// the fix expects, e.g. a refactor). Each is credited, by `git blame`, with the context lines
/// of the conflicting hunks it introduced: on the fix's side, the lines each conflicting hunk
/// expects, blamed at `base`; on the line's side, the line's part of each conflict region,
/// blamed in the worktree. Commits are ranked by that count; when no commit is credited, the
/// missing commits that touched the conflicting files are listed with a count of 0.
fn prerequisites(
    repo: &Path,
    wt: &Path,
    line_ref: &str,
    base: &str,
    fix_text: &str,
    files: &[ConflictFile],
) -> Result<Vec<Prerequisite>, PatchError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let line_commit = format!("{line_ref}^{{commit}}");
    let missing: Vec<String> = rev_list(
        repo,
        "list commits of the fix's parent that the line lacks",
        &[
            "--cherry-pick".into(),
            "--right-only".into(),
            format!("{line_commit}...{base}"),
        ],
    )?;
    let merge_base = git_in(repo, "find where the line and the fix's parent diverged")
        .args(["merge-base"])
        .arg(&line_commit)
        .arg(base)
        .output()?;
    let on_line: Vec<String> = if merge_base.status.success() {
        let mb = String::from_utf8_lossy(&merge_base.stdout)
            .trim()
            .to_string();
        rev_list(
            repo,
            "list the line's commits since it diverged from the fix's parent",
            &[format!("{mb}..{line_commit}")],
        )?
    } else {
        Vec::new()
    };
    let mut credit: BTreeMap<String, (Relation, Vec<Evidence>)> = BTreeMap::new();
    let mut add = |id: &str, rel: Relation, path: &str, hunk: usize, line: usize| {
        let entry = credit
            .entry(id.to_string())
            .or_insert_with(|| (rel, Vec::new()));
        match entry
            .1
            .iter_mut()
            .find(|e| e.path == path && e.hunk == hunk)
        {
            Some(e) => e.lines.push(line),
            None => entry.1.push(Evidence {
                path: path.to_string(),
                hunk,
                lines: vec![line],
            }),
        }
    };
    let conflicting: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    // The fix's side: hunks of conflicting files whose expected lines are not in the line's
    // file as they stand, blamed where the fix was written.
    for h in parse_hunks(dep3::diff_part(fix_text)) {
        if !conflicting.contains(&h.new_path.as_str())
            && !conflicting.contains(&h.old_path.as_str())
        {
            continue;
        }
        let head = git_in(wt, "read the line's file")
            .arg("show")
            .arg(format!("HEAD:{}", h.old_path))
            .output()?;
        let head = String::from_utf8_lossy(&head.stdout).into_owned();
        let hay: Vec<&str> = head.lines().collect();
        let needle: Vec<&str> = h.preimage.iter().map(String::as_str).collect();
        if find_block(&hay, &needle).is_some() {
            continue; // this hunk finds its context on the line
        }
        for (id, n) in blame(repo, base, &h.old_path, h.old_start, h.preimage.len())? {
            if missing.contains(&id) {
                add(&id, Relation::MissingFromLine, &h.old_path, h.old_start, n);
            }
        }
    }
    // The line's side of each conflict region, found in the line's file and blamed there.
    for f in files {
        let head = git_in(wt, "read the line's file")
            .arg("show")
            .arg(format!("HEAD:{}", f.path))
            .output()?;
        let head = String::from_utf8_lossy(&head.stdout).into_owned();
        let hay: Vec<&str> = head.lines().collect();
        for h in &f.hunks {
            let ours: Vec<&str> = h
                .text
                .lines()
                .skip(1)
                .take_while(|l| !l.starts_with("|||||||") && !l.starts_with("======="))
                .collect();
            let Some(start) = find_block(&hay, &ours) else {
                continue;
            };
            for (id, n) in blame(wt, "HEAD", &f.path, start, ours.len())? {
                if on_line.contains(&id) {
                    add(&id, Relation::OnLine, &f.path, start, n);
                }
            }
        }
    }
    let summary = |id: &str| -> Result<String, PatchError> {
        Ok(git_in(repo, "read a prerequisite's subject")
            .args(["log", "-1", "--format=%s", id])
            .stdout()?
            .trim()
            .to_string())
    };
    let mut out: Vec<Prerequisite> = Vec::new();
    for (id, (relation, evidence)) in credit {
        out.push(Prerequisite {
            summary: summary(&id)?,
            context_lines: evidence.iter().map(|e| e.lines.len()).sum(),
            id,
            relation,
            evidence,
        });
    }
    // Most context first; ties: missing before on-line, then newest first (rev-list order).
    let order = |id: &str| {
        missing
            .iter()
            .chain(on_line.iter())
            .position(|c| c == id)
            .unwrap_or(usize::MAX)
    };
    out.sort_by(|a, b| {
        b.context_lines
            .cmp(&a.context_lines)
            .then(a.relation.cmp(&b.relation))
            .then(order(&a.id).cmp(&order(&b.id)))
    });
    if out.is_empty() {
        let mut c = git_in(
            repo,
            "find missing commits that touched the conflicting files",
        );
        c.args([
            "log",
            "--no-merges",
            "--cherry-pick",
            "--right-only",
            "--format=%H%x09%s",
            "-n",
            "20",
        ])
        .arg(format!("{line_commit}...{base}"))
        .arg("--");
        for f in files {
            c.arg(&f.path);
        }
        out = c
            .stdout()?
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(id, s)| Prerequisite {
                id: id.to_string(),
                summary: s.to_string(),
                relation: Relation::MissingFromLine,
                context_lines: 0,
                evidence: Vec::new(),
            })
            .collect();
    }
    Ok(out)
}

/// A conflicting backport kept for the maintainer to resolve (`<keep>/<line>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptBackport {
    /// The line.
    pub line: String,
    /// The worktree holding the conflict.
    pub worktree: PathBuf,
    /// The repository it belongs to.
    pub repo: PathBuf,
    /// The commit the fix was tried on (the line's ref with its queue): the resolution is the
    /// worktree's difference to it.
    pub base: String,
    /// Queue file name of the fix.
    pub patch: String,
    /// The fix as tried (its DEP-3 header is kept).
    pub fix_text: String,
}

/// What `--continue` recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Continued {
    /// The line.
    pub line: String,
    /// The queue file written.
    pub added: PathBuf,
    /// Files the resolution changes.
    pub files: Vec<String>,
    /// Its `Origin`.
    pub origin: String,
    /// The worktree removed.
    pub removed_worktree: PathBuf,
}

/// Takes back the resolution of a kept conflict on `line`: the worktree's change against the
/// commit the fix was tried on becomes a queue patch with the fix's DEP-3 header and
/// `Origin: backport`, appended to the line's series; the worktree is removed.
pub fn continue_backport(
    keep: &Path,
    line: &Line,
    today: NaiveDate,
) -> Result<Continued, PatchError> {
    let state_path = keep.join(format!("{}.json", line.version));
    let bytes = std::fs::read(&state_path).map_err(|e| PatchError::Invalid {
        message: format!(
            "no kept backport for line {} ({}: {e})",
            line.version,
            state_path.display()
        ),
        help: format!(
            "run `distro patches backport FIX --line {} --keep` first; it keeps the conflicting worktree",
            line.version
        ),
    })?;
    let state: KeptBackport = serde_json::from_slice(&bytes).map_err(|e| PatchError::Invalid {
        message: format!("{}: not a kept-backport record: {e}", state_path.display()),
        help: "remove it and the worktree beside it, and backport again with --keep".into(),
    })?;
    let queue = line.patches.clone().ok_or_else(|| {
        PatchError::invalid(
            format!(
                "line {} has no patch queue to record the resolution in",
                line.version
            ),
            format!(
                "set `patches = \"patches/{}\"` in its [[line]]",
                line.version
            ),
        )
    })?;
    let wt = &state.worktree;
    if !wt.is_dir() {
        return Err(PatchError::invalid(
            format!("the kept worktree {} is gone", wt.display()),
            format!(
                "remove {} and backport again with --keep",
                state_path.display()
            ),
        ));
    }
    git_in(wt, "stage the resolution")
        .args(["add", "-A"])
        .run()?;
    let changed = git_in(wt, "list the files the resolution changes")
        .args(["diff", "--cached", "--name-only"])
        .arg(&state.base)
        .stdout()?;
    let files: Vec<String> = changed.lines().map(str::to_string).collect();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(wt.join(f)) else {
            continue;
        };
        if let Some((n, _)) = text.lines().enumerate().find(|(_, l)| {
            l.starts_with("<<<<<<< ") || l.starts_with(">>>>>>> ") || *l == "======="
        }) {
            return Err(PatchError::invalid(
                format!("{}:{}: a conflict marker is left", wt.join(f).display(), n + 1),
                "resolve every conflict region (remove the <<<<<<< ======= >>>>>>> lines), then run --continue again",
            ));
        }
    }
    if files.is_empty() {
        return Err(PatchError::invalid(
            format!(
                "the kept worktree {} has no change against the line",
                wt.display()
            ),
            "edit the files to carry the fix, then run --continue again",
        ));
    }
    let diff = git_in(wt, "take the resolution as the backported patch")
        .args(["diff", "--cached", "--full-index"])
        .arg(&state.base)
        .stdout()?;
    let name = PathBuf::from(&state.patch);
    let meta = dep3::parse(&name, &state.fix_text)?;
    let text = backport_text(&meta, meta.commit.as_deref(), &diff, today);
    let added = queue.join(&state.patch);
    distro_hostio::write_atomic(&added, text.as_bytes(), distro_hostio::PUBLIC)?;
    let listed = Series::read(&queue).is_ok_and(|s| s.contains(&state.patch));
    if !listed {
        crate::series::append(&queue, &state.patch)?;
    }
    let origin = dep3::parse(&added, &text)?.origin_text();
    crate::source::remove_worktree(&state.repo, wt)?;
    std::fs::remove_file(&state_path).map_err(|e| PatchError::io(&state_path, e))?;
    Ok(Continued {
        line: line.version.clone(),
        added,
        files,
        origin,
        removed_worktree: wt.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    /// Hunks carry their file, first old line and the lines they expect (context and removed,
    /// not added); a block is found only where its lines occur contiguously.
    #[test]
    fn hunks_and_blocks() {
        let diff = "diff --git a/src/x.rs b/src/x.rs\nindex 1..2 100644\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -4,3 +4,3 @@ fn f()\n a\n-b\n+c\n d\n@@ -10 +10,2 @@\n e\n+f\n";
        let h = parse_hunks(diff);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].old_path.as_str(), h[0].old_start), ("src/x.rs", 4));
        assert_eq!(h[0].preimage, ["a", "b", "d"]);
        assert_eq!((h[1].old_start, h[1].preimage.len()), (10, 1));
        let hay = ["z", "a", "b", "d", "a"];
        assert_eq!(find_block(&hay, &["a", "b", "d"]), Some(2));
        assert_eq!(find_block(&hay, &["a", "d"]), None);
        assert_eq!(find_block(&hay, &[]), None);
    }

    /// Ids fold through the database: an alias finds its advisory and the advisory's other ids.
    #[test]
    fn ids_fold_through_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("crates/x/RUSTSEC-2026-0001.md");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "```toml\n[advisory]\nid = \"RUSTSEC-2026-0001\"\npackage = \"x\"\ndate = \"2026-01-01\"\naliases = [\"CVE-2026-0001\", \"GHSA-aaaa-bbbb-cccc\"]\n[versions]\npatched = []\n```\n# t\n").unwrap();
        let db = AdvisoryDb::load(dir.path()).unwrap();
        let folded = fold_ids(&["ghsa-aaaa-bbbb-cccc".to_string()], Some(&db));
        assert!(
            folded.contains(&"RUSTSEC-2026-0001".to_string()),
            "{folded:?}"
        );
        assert!(folded.contains(&"CVE-2026-0001".to_string()), "{folded:?}");
        assert_eq!(fold_ids(&["CVE-2026-9".to_string()], None), ["CVE-2026-9"]);
    }
}
