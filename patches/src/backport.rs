//! Backporting one fix to every supported line.
//!
//! For each line the fix is tried in its own worktree of the line's source at its ref, on top of
//! the line's current queue: a clean `git apply`, then "already present" (the reverse applies),
//! then a three-way merge (`git apply --3way`). A conflict reports the conflicting files and
//! hunks and the commits that touched those files on the newer line but are missing from this
//! one (likely prerequisites). Lines outside the patch's `Affected-Versions` are not tried.
//! A successful backport is added to the line's series; one that had to change is rewritten
//! with `Origin: backport`.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use distro_config::Line;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::dep3::{self, Origin, OriginCategory, PatchMeta};
use crate::error::PatchError;
use crate::series::Series;
use crate::source::LineSource;

/// What to backport.
#[derive(Debug, Clone)]
pub enum Input {
    /// A patch file (git-format with DEP-3 headers).
    File(PathBuf),
    /// A commit of the newest line's repository.
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

/// A commit that is likely a prerequisite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    /// Full id.
    pub id: String,
    /// Subject line.
    pub summary: String,
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
    /// The line's upstream version is outside the patch's affected range.
    NotAffected {
        /// The line's upstream version.
        version: String,
        /// The affected range.
        affected: String,
    },
    /// It does not apply, even with a three-way merge.
    Conflict {
        /// Conflicting files and hunks.
        files: Vec<ConflictFile>,
        /// Commits on the newer line, missing here, that touched those files.
        prerequisites: Vec<CommitInfo>,
    },
}

impl Outcome {
    /// Short words for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied cleanly",
            Outcome::ThreeWay => "applied with three-way merge",
            Outcome::AlreadyPresent { .. } => "already present",
            Outcome::NotAffected { .. } => "not affected",
            Outcome::Conflict { .. } => "conflict",
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
    /// Anything else worth saying (e.g. no queue configured).
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
    /// Advisories it fixes.
    pub advisories: Vec<String>,
    /// Per line, in the order tried.
    pub lines: Vec<LineResult>,
}

/// Options of a backport.
#[derive(Debug, Clone)]
pub struct Options {
    /// Add successful backports to the lines' series (false: only report).
    pub write: bool,
    /// Date written as `Last-Update` of rewritten patches.
    pub today: NaiveDate,
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
    /// The commit (for commit input): prerequisites are looked up below it.
    pub commit: Option<String>,
    /// A saved copy of the text (git apply reads files).
    file: PathBuf,
    _keep: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Fix {
    /// Reads the fix; commits are formatted with `git format-patch` in `repo`.
    pub fn load(input: &Input, repo: &Path) -> Result<Fix, PatchError> {
        match input {
            Input::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| PatchError::io(path, e))?;
                let meta = dep3::parse(path, &text)?;
                let abs = path.canonicalize().map_err(|e| PatchError::io(path, e))?;
                Ok(Fix {
                    name: path
                        .file_name()
                        .map_or_else(|| "fix.patch".into(), |n| n.to_string_lossy().into_owned()),
                    text,
                    meta,
                    commit: None,
                    file: abs,
                    _keep: None,
                })
            }
            Input::Commit(rev) => {
                let mut c = Cmd::git(format!("resolve commit {rev}"));
                c.cwd(repo)
                    .args(["rev-parse", "--verify", "--quiet"])
                    .arg(format!("{rev}^{{commit}}"));
                let out = c.output()?;
                if !out.status.success() {
                    return Err(PatchError::invalid(
                        format!("`{rev}` is neither a patch file nor a commit of {}", repo.display()),
                        "pass the path of a git-format patch, or a commit id (or ref) of the newest line's repository",
                    ));
                }
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let mut f = Cmd::git(format!("format commit {rev} as a patch"));
                f.cwd(repo)
                    .args([
                        "format-patch",
                        "-1",
                        "--stdout",
                        "--no-signature",
                        "--full-index",
                    ])
                    .arg(&id);
                let text = f.stdout()?;
                let pseudo = PathBuf::from(format!("commit:{id}"));
                let mut meta = dep3::parse(&pseudo, &text)?;
                if meta.origin.as_ref().is_none_or(|o| o.reference.is_none()) {
                    meta.origin = Some(Origin {
                        category: meta
                            .origin
                            .as_ref()
                            .map_or(OriginCategory::Upstream, |o| o.category),
                        reference: Some(format!("commit:{id}")),
                    });
                }
                let slug: String = meta
                    .description
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
                    .join("-");
                let name = format!("{}-{slug}.patch", &id[..12.min(id.len())]);
                // Keep the queue copy honest: same header fields the commit carried, plus Origin.
                let body = dep3::diff_part(&text);
                let today = chrono::Utc::now().date_naive();
                let full = format!(
                    "{}\n{body}",
                    dep3::render_header(&meta, meta.last_update.unwrap_or(today))
                );
                let dir =
                    tempfile::tempdir().map_err(|e| PatchError::io(std::env::temp_dir(), e))?;
                let file = dir.path().join(&name);
                std::fs::write(&file, &full).map_err(|e| PatchError::io(&file, e))?;
                Ok(Fix {
                    name,
                    text: full,
                    meta,
                    commit: Some(id),
                    file,
                    _keep: Some(std::sync::Arc::new(dir)),
                })
            }
        }
    }
}

/// The upstream version a line's source carries: its latest patch release, or MAJOR.MINOR.0.
pub fn upstream_version(line: &Line) -> semver::Version {
    line.latest
        .as_deref()
        .and_then(|l| semver::Version::parse(l).ok())
        .unwrap_or_else(|| line.semver.clone())
}

/// Tries `fix` on each of `lines` (see [`backport_many`]).
pub fn backport(fix: &Fix, lines: &[&Line], opts: &Options) -> Result<Report, PatchError> {
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
/// added to the queues (when `opts.write`), in fix order. For a file, prerequisites of a
/// conflict are looked up on the newest line; for a commit, below the commit.
pub fn backport_many(
    fixes: &[Fix],
    lines: &[&Line],
    opts: &Options,
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
                        crate::write_atomic(&dest, text.as_deref().unwrap_or(&fix.text).as_bytes())?;
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
            advisories: fix.meta.advisories.clone(),
            lines: results,
        });
    }
    Ok(reports)
}

/// Tries every fix on one line, in one worktree; per fix the result and, for a three-way merge,
/// the rewritten patch.
fn try_line(
    fixes: &[Fix],
    line: &Line,
    newest_ref: Option<&str>,
    opts: &Options,
) -> Result<Vec<(LineResult, Option<String>)>, PatchError> {
    let version = upstream_version(line);
    let result = |outcome| LineResult {
        line: line.version.clone(),
        outcome,
        added: None,
        note: None,
    };
    let mut in_series: Vec<String> = match &line.patches {
        Some(dir) => Series::read(dir)
            .map(|s| s.entries.into_iter().map(|e| e.name).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    let mut session: Option<(tempfile::TempDir, crate::source::Worktree, LineSource)> = None;
    // Clean applies staged but not yet committed in the session's worktree.
    let mut pending = false;
    for fix in fixes {
        if !fix.meta.affects(&version) {
            out.push((
                result(Outcome::NotAffected {
                    version: version.to_string(),
                    affected: fix.meta.affected_versions.clone().unwrap_or_default(),
                }),
                None,
            ));
            continue;
        }
        if in_series.contains(&fix.name) {
            out.push((
                result(Outcome::AlreadyPresent {
                    reason: format!("{} is already in the line's series", fix.name),
                }),
                None,
            ));
            continue;
        }
        if session.is_none() {
            let source = LineSource::of(line)?;
            let scratch =
                tempfile::tempdir().map_err(|e| PatchError::io(std::env::temp_dir(), e))?;
            let wt = source.worktree(&scratch.path().join(format!("line-{}", line.version)))?;
            if let Some(dir) = &line.patches {
                if dir.join("series").is_file() && !crate::apply_series(&wt.dir, dir)?.is_empty() {
                    wt.commit_all("the line's patch series")?;
                }
            }
            session = Some((scratch, wt, source));
        }
        let Some((_, wt, source)) = session.as_ref() else {
            continue; // unreachable: the session was just created
        };
        let mut commit_pending = || -> Result<(), PatchError> {
            if pending {
                wt.commit_all("backports applied cleanly")?;
                pending = false;
            }
            Ok(())
        };
        let (outcome, text) =
            try_fix(fix, line, wt, source, newest_ref, opts, &mut commit_pending)?;
        let git = |why: &str| {
            let mut c = Cmd::git(why.to_string());
            c.cwd(&wt.dir);
            c
        };
        // Successes stay in the worktree, so later fixes are tried on top of them as the
        // queue will have them: a clean apply is already staged (committed lazily), a
        // three-way result is committed now.
        match outcome {
            Outcome::Applied => {
                pending = true;
                in_series.push(fix.name.clone());
            }
            Outcome::ThreeWay => {
                wt.commit_all(&format!("backport {}", fix.name))?;
                in_series.push(fix.name.clone());
            }
            Outcome::Conflict { .. } => {
                git("reset the worktree after the conflict")
                    .args(["reset", "--hard", "--quiet", "HEAD"])
                    .run()?;
                git("remove files the attempt left")
                    .args(["clean", "-fdq"])
                    .run()?;
            }
            Outcome::AlreadyPresent { .. } | Outcome::NotAffected { .. } => {}
        }
        out.push((result(outcome), text));
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
    opts: &Options,
    commit_pending: &mut dyn FnMut() -> Result<(), PatchError>,
) -> Result<(Outcome, Option<String>), PatchError> {
    let git = |why: &str| {
        let mut c = Cmd::git(why.to_string());
        c.cwd(&wt.dir);
        c
    };
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
    commit_pending()?;
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
        let mut meta = fix.meta.clone();
        let reference = meta
            .origin
            .as_ref()
            .and_then(|o| o.reference.clone())
            .or_else(|| fix.commit.as_ref().map(|c| format!("commit:{c}")));
        meta.origin = Some(Origin {
            category: OriginCategory::Backport,
            reference,
        });
        meta.last_update = Some(opts.today);
        let text = format!("{}\n{diff}", dep3::render_header(&meta, opts.today));
        return Ok((Outcome::ThreeWay, Some(text)));
    }
    let files = conflict_files(
        &wt.dir,
        &unmerged,
        &String::from_utf8_lossy(&three.stderr),
        &String::from_utf8_lossy(&clean.stderr),
    );
    let newer = fix.commit.as_ref().map(|c| format!("{c}^")).or_else(|| {
        newest_ref
            .filter(|r| *r != line.source.git_ref)
            .map(str::to_string)
    });
    let prerequisites = match newer {
        Some(newer) => prerequisites(&source.repo, &line.source.git_ref, &newer, &files)?,
        None => Vec::new(),
    };
    Ok((
        Outcome::Conflict {
            files,
            prerequisites,
        },
        None,
    ))
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

/// Commits reachable from `newer` and not from `line_ref` (ignoring ones cherry-picked to the
/// line) that touched `files`: likely prerequisites of the fix.
fn prerequisites(
    repo: &Path,
    line_ref: &str,
    newer: &str,
    files: &[ConflictFile],
) -> Result<Vec<CommitInfo>, PatchError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = Cmd::git("find commits of the newer line that touched the conflicting files");
    c.cwd(repo)
        .args([
            "log",
            "--no-merges",
            "--cherry-pick",
            "--right-only",
            "--format=%H%x09%s",
            "-n",
            "20",
        ])
        .arg(format!("{line_ref}...{newer}"))
        .arg("--");
    for f in files {
        c.arg(&f.path);
    }
    Ok(c.stdout()?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, s)| CommitInfo {
            id: id.to_string(),
            summary: s.to_string(),
        })
        .collect())
}
