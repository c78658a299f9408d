//! One evaluation of (line, advisory), which `distro matrix`, `distro patches scan`, the
//! OpenVEX document (and so `distro verify`, which reads it) all report.
//!
//! An advisory concerns a line in one of three ways:
//! - it affects a crate of the line's Cargo.lock at its ref: fixed when the patched tree's
//!   lockfile no longer has an affected compatible copy (a bump) or a source patch of the queue
//!   names it, else affected;
//! - a source patch of the line's queue names it: fixed;
//! - a patch of another line's queue names it: on a release line, judged by the version range
//!   (the patch's `Affected-Versions`, else the advisory's own ranges); on a development or
//!   unreleased line (its ref is not a release tag), judged by its code — the fix does not
//!   reverse-apply and the code it changes is present → affected.
//!
//! Ids fold through the database: a CVE or GHSA alias of a RustSec advisory is that advisory,
//! so nothing is listed twice under two names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use distro_config::{Distribution, Line};
use serde::Serialize;

use crate::advisory::{parse_lock, scan, AdvisoryDb, LockedPackage};
use crate::apply::{read_queue, QueuedPatch};
use crate::error::PatchError;
use crate::source::LineSource;
use distro_hostio::Cmd;

/// What an advisory means for a line (OpenVEX statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Fixed by a patch or a dependency bump.
    Fixed,
    /// The line as shipped carries the bug.
    Affected,
    /// The line does not carry it.
    NotAffected,
    /// Cannot be told without a person looking.
    UnderInvestigation,
}

impl Status {
    /// The OpenVEX spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Fixed => "fixed",
            Status::Affected => "affected",
            Status::NotAffected => "not_affected",
            Status::UnderInvestigation => "under_investigation",
        }
    }
}

/// One (line, advisory) answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Primary id (the RustSec id when the database knows the advisory).
    pub advisory: String,
    /// Its other ids.
    pub aliases: Vec<String>,
    /// Its title, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The answer.
    pub status: Status,
    /// The crate it is about (dependency advisories).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// That crate's version in the Cargo.lock at the line's ref.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its version as shipped (the patched tree's Cargo.lock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipped: Option<String>,
    /// The queue patch that fixes it, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// How the answer was found.
    pub notes: String,
    /// For not_affected: the OpenVEX justification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// For affected: what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Evaluation {
    /// Whether `id` names this advisory (its id or an alias).
    pub fn is_named(&self, id: &str) -> bool {
        self.advisory.eq_ignore_ascii_case(id)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
    }
}

/// Every answer for one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineEvaluation {
    /// The line.
    pub line: String,
    /// The upstream version of its source (its label).
    pub upstream_version: String,
    /// `version` for a release line, `code` for a development or unreleased one.
    pub judged_by: String,
    /// Advisories that concern the line.
    pub advisories: Vec<Evaluation>,
    /// Advisories of the line's crates that were checked and do not affect the versions
    /// shipped (not_affected), for a VEX document that would otherwise have nothing to state.
    pub checked: Vec<Evaluation>,
}

impl LineEvaluation {
    /// Primary ids of advisories still open (affected or under investigation), once each.
    pub fn open(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in &self.advisories {
            if matches!(e.status, Status::Affected | Status::UnderInvestigation)
                && !out.contains(&e.advisory)
            {
                out.push(e.advisory.clone());
            }
        }
        out
    }

    /// Primary ids of advisories fixed (and not open in another copy of the crate), once each.
    pub fn fixed(&self) -> Vec<String> {
        let open = self.open();
        let mut out: Vec<String> = Vec::new();
        for e in &self.advisories {
            if e.status == Status::Fixed
                && !open.contains(&e.advisory)
                && !out.contains(&e.advisory)
            {
                out.push(e.advisory.clone());
            }
        }
        out
    }
}

/// A group of ids that name one advisory: its primary id, aliases and title.
fn identify(ids: &[String], db: &AdvisoryDb) -> Vec<(String, Vec<String>, Option<String>)> {
    let mut groups: Vec<(String, Vec<String>, Option<String>)> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for id in ids {
        match db.find(id) {
            Some(a) => {
                if !groups.iter().any(|g| g.0 == a.id) {
                    groups.push((
                        a.id.clone(),
                        a.aliases.clone(),
                        Some(a.title.clone()).filter(|t| !t.is_empty()),
                    ));
                }
            }
            None => unknown.push(id.clone()),
        }
    }
    // Ids the database does not know, named together by one patch, are one advisory (the
    // patch's header lists a problem's CVE and GHSA ids), unless one of them is known.
    if !unknown.is_empty() {
        if groups.is_empty() {
            groups.push((unknown[0].clone(), unknown[1..].to_vec(), None));
        } else {
            for u in unknown {
                groups[0].1.push(u);
            }
        }
    }
    groups
}

/// The upstream and patched Cargo.lock, queue and patched tree of a line.
struct LineState {
    upstream_lock: Vec<LockedPackage>,
    patched_lock: Vec<LockedPackage>,
    queue: Vec<QueuedPatch>,
    _scratch: tempfile::TempDir,
    tree: PathBuf,
}

fn line_state(line: &Line) -> Result<LineState, PatchError> {
    let source = LineSource::of(line)?;
    let lock_name = PathBuf::from(format!("{}:Cargo.lock", line.source.git_ref));
    let upstream_lock = match source.read("Cargo.lock")? {
        Some(t) => parse_lock(&lock_name, &t)?,
        None => Vec::new(),
    };
    let scratch = tempfile::tempdir().map_err(|e| PatchError::io(std::env::temp_dir(), e))?;
    let tree = scratch.path().join("src");
    crate::flows::patched_tree(line, &tree)?;
    let patched_path = tree.join("Cargo.lock");
    let patched_lock = match std::fs::read_to_string(&patched_path) {
        Ok(t) => parse_lock(&patched_path, &t)?,
        Err(_) => Vec::new(),
    };
    let queue = match &line.patches {
        Some(dir) if dir.join("series").is_file() => read_queue(dir)?,
        _ => Vec::new(),
    };
    Ok(LineState {
        upstream_lock,
        patched_lock,
        queue,
        _scratch: scratch,
        tree,
    })
}

/// Evaluates every advisory that concerns `line`. `open_actions` gives, by advisory id, what
/// to do about an advisory no patch fixes (from a remediation plan); without it the action
/// names the patched ranges.
pub fn evaluate(
    dist: &Distribution,
    line: &Line,
    db: &AdvisoryDb,
    open_actions: &BTreeMap<String, String>,
) -> Result<LineEvaluation, PatchError> {
    let state = line_state(line)?;
    evaluate_state(dist, line, db, &state, open_actions)
}

/// [`evaluate`], with the open actions computed from the line's patched tree (e.g. a
/// remediation plan run on it).
pub fn evaluate_with_tree(
    dist: &Distribution,
    line: &Line,
    db: &AdvisoryDb,
    actions: impl FnOnce(&Path) -> Result<BTreeMap<String, String>, PatchError>,
) -> Result<LineEvaluation, PatchError> {
    let state = line_state(line)?;
    let open_actions = if state.tree.join("Cargo.lock").is_file() {
        actions(&state.tree)?
    } else {
        BTreeMap::new()
    };
    evaluate_state(dist, line, db, &state, &open_actions)
}

fn evaluate_state(
    dist: &Distribution,
    line: &Line,
    db: &AdvisoryDb,
    state: &LineState,
    open_actions: &BTreeMap<String, String>,
) -> Result<LineEvaluation, PatchError> {
    let source = LineSource::of(line)?;
    let release = crate::backport::is_release(line, &source);
    let version = crate::backport::upstream_version(line);
    let upstream = scan(db, &state.upstream_lock);
    let patched = scan(db, &state.patched_lock);
    let mut out: Vec<Evaluation> = Vec::new();
    let seen = |out: &Vec<Evaluation>, id: &str| out.iter().any(|e| e.is_named(id));

    // Dependency advisories of the upstream lockfile, one answer per advisory and crate copy:
    // the same advisory can be fixed in one copy and open in a semver-incompatible other.
    for f in &upstream {
        if out.iter().any(|e| {
            e.advisory == f.advisory
                && e.package.as_deref() == Some(&f.package)
                && e.version.as_deref() == Some(&f.version.to_string())
        }) {
            continue;
        }
        let names = |id: &str| {
            f.advisory.eq_ignore_ascii_case(id)
                || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
        };
        let by_patch = state
            .queue
            .iter()
            .find(|p| p.meta.advisories.iter().any(|id| names(id)));
        // The same copy after the queue: same name and major (or minor, below 1.0) version.
        let compatible = |v: &semver::Version| {
            v.major == f.version.major && (v.major > 0 || v.minor == f.version.minor)
        };
        let still = patched
            .iter()
            .any(|p| p.advisory == f.advisory && p.package == f.package && compatible(&p.version));
        let now: Vec<String> = state
            .patched_lock
            .iter()
            .filter(|p| p.name == f.package && compatible(&p.version))
            .map(|p| p.version.to_string())
            .collect();
        let bumped: Vec<&String> = now
            .iter()
            .filter(|v| **v != f.version.to_string())
            .collect();
        let mut e = Evaluation {
            advisory: f.advisory.clone(),
            aliases: f.aliases.clone(),
            title: Some(f.title.clone()).filter(|t| !t.is_empty()),
            status: Status::Fixed,
            package: Some(f.package.clone()),
            version: Some(f.version.to_string()),
            shipped: now.last().cloned(),
            by: by_patch.map(|p| p.entry.name.clone()),
            notes: String::new(),
            justification: None,
            action: None,
        };
        if !still {
            let bump = if bumped.is_empty() {
                String::new()
            } else {
                format!(
                    "{} bumped from {} to {}",
                    f.package,
                    f.version,
                    bumped
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            e.notes = match (by_patch, bump.is_empty()) {
                (Some(p), true) => {
                    format!("fixed by patch {} ({})", p.entry.name, p.meta.origin_text())
                }
                (Some(p), false) => format!("fixed by patch {}: {bump}", p.entry.name),
                (None, false) => bump,
                (None, true) => format!("{} no longer in the patched Cargo.lock", f.package),
            };
        } else if let Some(p) = by_patch.filter(|p| !p.is_lockfile_only()) {
            e.notes = format!(
                "fixed by source patch {} ({}) applied to {} {}",
                p.entry.name,
                p.meta.origin_text(),
                f.package,
                f.version
            );
        } else {
            e.status = Status::Affected;
            e.by = None;
            e.notes = format!("{} {} is in an affected range", f.package, f.version);
            e.action = Some(open_actions.get(&f.advisory).cloned().unwrap_or_else(|| {
                format!(
                    "Upgrade {} from {} to a release in {} (run `distro patches remediate --line {}`)",
                    f.package,
                    f.version,
                    if f.patched.is_empty() { "none known".to_string() } else { f.patched.join(" or ") },
                    line.version
                )
            }));
        }
        out.push(e);
    }

    // Advisories fixed by source patches of this line (the upstream project's own code).
    for p in &state.queue {
        for (id, aliases, title) in identify(&p.meta.advisories, db) {
            if seen(&out, &id) || aliases.iter().any(|a| seen(&out, a)) {
                continue;
            }
            out.push(Evaluation {
                advisory: id,
                aliases,
                title,
                status: Status::Fixed,
                package: None,
                version: None,
                shipped: None,
                by: Some(p.entry.name.clone()),
                notes: format!("fixed by patch {} ({})", p.entry.name, p.meta.origin_text()),
                justification: None,
                action: None,
            });
        }
    }

    // Advisories other lines carry patches for.
    for other in dist.lines.iter().filter(|l| l.version != line.version) {
        let Some(dir) = other
            .patches
            .as_ref()
            .filter(|d| d.join("series").is_file())
        else {
            continue;
        };
        for p in read_queue(dir)? {
            for (id, aliases, title) in identify(&p.meta.advisories, db) {
                if seen(&out, &id) || aliases.iter().any(|a| seen(&out, a)) {
                    continue;
                }
                let mut e = Evaluation {
                    advisory: id,
                    aliases,
                    title,
                    status: Status::Affected,
                    package: None,
                    version: None,
                    shipped: None,
                    by: None,
                    notes: String::new(),
                    justification: None,
                    action: None,
                };
                let backport = format!(
                    "Backport {} from line {}: distro patches backport {} --line {}",
                    p.entry.name,
                    other.version,
                    p.path.display(),
                    line.version
                );
                if release {
                    let (affected, range) =
                        crate::backport::affected_range(&p.meta, &version, Some(db));
                    if affected {
                        e.notes = format!(
                            "line {} (upstream {version}) is in the affected range {range} of patch {} (line {})",
                            line.version, p.entry.name, other.version
                        );
                        e.action = Some(backport);
                    } else {
                        e.status = Status::NotAffected;
                        e.justification = Some("vulnerable_code_not_present".into());
                        e.notes = format!(
                            "line {} (upstream {version}) is outside the affected range {range} of patch {} (line {})",
                            line.version, p.entry.name, other.version
                        );
                    }
                } else {
                    judge_by_code(&mut e, &p, &state.tree, line, other, backport)?;
                }
                out.push(e);
            }
        }
    }

    // What was checked and found not to apply: every vulnerability advisory of a crate the
    // line ships, outside the shipped version's affected ranges.
    let mut checked: Vec<Evaluation> = Vec::new();
    for pkg in state.patched_lock.iter().filter(|p| p.is_registry()) {
        for a in db.for_crate(&pkg.name) {
            if !a.is_vulnerability() || a.affects(&pkg.version) || seen(&out, &a.id) {
                continue;
            }
            if checked.iter().any(|c| {
                c.advisory == a.id && c.shipped.as_deref() == Some(&pkg.version.to_string())
            }) {
                continue;
            }
            checked.push(Evaluation {
                advisory: a.id.clone(),
                aliases: a.aliases.clone(),
                title: Some(a.title.clone()).filter(|t| !t.is_empty()),
                status: Status::NotAffected,
                package: Some(pkg.name.clone()),
                version: Some(pkg.version.to_string()),
                shipped: Some(pkg.version.to_string()),
                by: None,
                notes: format!(
                    "{} {} is outside the advisory's affected versions (patched: {})",
                    pkg.name,
                    pkg.version,
                    if a.patched.is_empty() {
                        "none".to_string()
                    } else {
                        a.patched.join(" || ")
                    }
                ),
                justification: Some("vulnerable_code_not_present".into()),
                action: None,
            });
        }
    }
    Ok(LineEvaluation {
        line: line.version.clone(),
        upstream_version: version.to_string(),
        judged_by: if release { "version" } else { "code" }.into(),
        advisories: out,
        checked,
    })
}

/// A line whose ref is not a release: does its code carry the bug patch `p` (of line `other`)
/// fixes? Files absent → component not present; the fix reverse-applies → already fixed in
/// its code; the fix applies → the vulnerable code is there; neither → a person must look.
fn judge_by_code(
    e: &mut Evaluation,
    p: &QueuedPatch,
    tree: &Path,
    line: &Line,
    other: &Line,
    backport: String,
) -> Result<(), PatchError> {
    let patch = p
        .path
        .canonicalize()
        .map_err(|e| PatchError::io(&p.path, e))?;
    let code = |why: &str, args: &[&str]| -> Result<bool, PatchError> {
        let mut c = Cmd::git_in_plain_tree(why.to_string(), tree);
        c.arg("apply").args(args).arg(&patch);
        Ok(c.output()?.status.success())
    };
    let label = format!(
        "line {} (ref `{}`, not a release tag) judged by its code against patch {} (line {})",
        line.version, line.source.git_ref, p.entry.name, other.version
    );
    let present = p.files.iter().any(|f| tree.join(f).exists());
    if !p.files.is_empty() && !present {
        e.status = Status::NotAffected;
        e.justification = Some("component_not_present".into());
        e.notes = format!("{label}: none of its files ({}) exist", p.files.join(", "));
    } else if code(
        "check whether the line's code already has the fix",
        &["--check", "--reverse"],
    )? {
        e.status = Status::NotAffected;
        e.justification = Some("vulnerable_code_not_present".into());
        e.notes = format!("{label}: the fix reverse-applies, its change is in the code");
    } else if code(
        "check whether the line's code has what the fix changes",
        &["--check"],
    )? {
        e.status = Status::Affected;
        e.notes = format!("{label}: the fix applies, so the vulnerable code is present");
        e.action = Some(backport);
    } else {
        e.status = Status::UnderInvestigation;
        e.notes = format!(
            "{label}: the code matches neither side of the fix; check by hand ({backport})"
        );
    }
    Ok(())
}
