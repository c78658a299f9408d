//! `distro patches …`: the security patch queues of the release lines — apply, backport,
//! scan, remediate, VEX.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use distro_patches::advisory::AdvisoryDb;
use distro_patches::backport::{self, Input, Outcome};
use distro_patches::chrono::{self, NaiveDate};
use distro_patches::snapshot::Snapshot;
use distro_patches::{flows, matrix};

use super::Context;
use crate::output::{self, Format};

/// Subcommands of `distro patches`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Apply a line's patch series to its source: the tree `distro build` builds.
    Apply {
        /// The release line (MAJOR.MINOR).
        #[arg(long)]
        line: String,
        /// Where to write the patched tree (default: OUT/<line>/src beside the repository).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// List a line's patch queue with each patch's DEP-3 header (origin, advisories, severity,
    /// affected range); header errors name the file and line.
    List {
        /// The release line.
        #[arg(long)]
        line: String,
    },
    /// Try fixes (patch files or commits) on every supported line; several fixes are tried in
    /// order, each on top of the ones before it. JSON: one report, or an array of reports when
    /// several fixes are given. Exits 2 when a line conflicts.
    ///
    /// A line whose queue or history already carries the fix (or another fix for the same
    /// advisory) says so. Lines outside the affected range are skipped when their ref is a
    /// release, and judged by their code otherwise. A conflict lists the likely prerequisites,
    /// relative to the commit the fix was written on, most conflicting context first.
    Backport {
        /// Git-format patches with DEP-3 headers, or commits (ids, tags, branches, or HEAD~N
        /// relative to the --from line's ref).
        #[arg(value_name = "PATCH|COMMIT", required_unless_present = "resume", num_args = 1..)]
        fixes: Vec<String>,
        /// Only these lines (repeatable; default: every line supported at --at).
        #[arg(long = "line", value_name = "LINE")]
        lines: Vec<String>,
        /// The line whose repository and ref commits are read from (default: the newest line
        /// tried).
        #[arg(long, value_name = "LINE")]
        from: Option<String>,
        /// For a merge commit: backport its diff against parent N (1 = the branch merged into).
        /// Without it a merge commit is refused.
        #[arg(long, value_name = "N")]
        mainline: Option<u32>,
        /// Advisory the fix addresses (repeatable), added to the commit's `Advisories:` trailer.
        #[arg(long = "advisory", value_name = "ID")]
        advisories: Vec<String>,
        /// Severity of the fixed problem (low, medium, high, critical).
        #[arg(long, value_name = "LEVEL")]
        severity: Option<String>,
        /// Bug tracker URL (repeatable).
        #[arg(long = "bug", value_name = "URL")]
        bugs: Vec<String>,
        /// Local RustSec advisory database, for the ranges and aliases of the advisories a fix
        /// names (default: the distribution's; skipped with a warning when absent).
        #[arg(long, value_name = "PATH")]
        advisory_db: Option<PathBuf>,
        /// Date deciding which lines are supported (default: today, UTC).
        #[arg(long, value_name = "DATE")]
        at: Option<NaiveDate>,
        /// Report only; do not add successful backports to the series.
        #[arg(long, conflicts_with = "keep")]
        dry_run: bool,
        /// Keep the worktree of a line that conflicts (under OUT/backports/LINE) and print its
        /// path; resolve it there, then run `--continue LINE`.
        #[arg(long)]
        keep: bool,
        /// Take back the resolved worktree kept for LINE: its change against the line becomes a
        /// queue patch with the fix's DEP-3 header and `Origin: backport`.
        #[arg(long = "continue", value_name = "LINE", conflicts_with_all = ["fixes", "keep", "dry_run"])]
        resume: Option<String>,
    },
    /// List the advisories that affect a line's Cargo.lock (before its queue), and what each
    /// means for the line as shipped.
    ///
    /// The answers are the line's evaluation, which the matrix and the VEX document report too.
    Scan {
        /// The release line.
        #[arg(long)]
        line: String,
        /// Local RustSec advisory database (default: `[advisories] db` of distro.toml, else the
        /// repository's patches/advisory-db).
        #[arg(long, value_name = "PATH")]
        advisory_db: Option<PathBuf>,
    },
    /// Bump affected crates of a line to the lowest compatible fixed versions; the lockfile
    /// change is added to the line's queue as a vendor patch.
    Remediate {
        /// The release line.
        #[arg(long)]
        line: String,
        /// Local RustSec advisory database (default: `[advisories] db` of distro.toml, else the
        /// repository's patches/advisory-db).
        #[arg(long, value_name = "PATH")]
        advisory_db: Option<PathBuf>,
        /// Remediate this tree's Cargo.lock in place instead of the line's queue.
        #[arg(long, value_name = "DIR")]
        tree: Option<PathBuf>,
        /// Report what would change without writing the queue.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the OpenVEX 0.2.0 document of a line's release.
    Vex {
        /// The release line.
        #[arg(long)]
        line: String,
        /// The release (default: the line's latest).
        #[arg(long, value_name = "VERSION")]
        release: Option<String>,
        /// Local RustSec advisory database (default: `[advisories] db` of distro.toml, else the
        /// repository's patches/advisory-db).
        #[arg(long, value_name = "PATH")]
        advisory_db: Option<PathBuf>,
        /// Write the document here (atomically) instead of stdout; stdout then reports whether
        /// a document was written. When there is nothing to state, no file is written (a stale
        /// one is removed) and the report says why.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// A pushed image of the release, REPOSITORY@sha256:HEX (repeatable): the products are
        /// then `pkg:oci/…` purls of the images instead of the distribution's generic purl.
        #[arg(long = "image", value_name = "REF")]
        images: Vec<String>,
        /// Document timestamp, RFC 3339 (default: now), for reproducible output.
        #[arg(long, value_name = "TIME")]
        timestamp: Option<String>,
    },
}

/// Runs `distro patches`.
pub fn run(command: Command, cx: &Context) -> anyhow::Result<ExitCode> {
    let mut dist = cx.distribution()?;
    cx.localise_sources(&mut dist)?;
    let dist = dist;
    let line_of = |v: &str| super::select_line(&dist, Some(v));
    // Names the snapshot on stderr and warns when it is stale.
    let db_at = |p: Option<PathBuf>| -> anyhow::Result<(AdvisoryDb, Snapshot)> {
        cx.advisory_db(p.as_deref(), Some(&dist))
    };
    match command {
        Command::Apply { line, out } => {
            let l = line_of(&line)?;
            let dest = out.unwrap_or_else(|| cx.default_out().join(&l.version).join("src"));
            cx.status(&format!(
                "patching line {} ({} at {}) into {}",
                l.version,
                l.source.git,
                l.source.git_ref,
                dest.display()
            ));
            let applied = flows::patched_tree(l, &dest)?;
            match cx.format {
                Format::Json => output::json(
                    &serde_json::json!({ "line": l.version, "tree": dest, "patches": applied }),
                )?,
                Format::Text => {
                    let mut s = String::new();
                    for p in &applied {
                        let adv = if p.advisories.is_empty() {
                            "-".to_string()
                        } else {
                            p.advisories.join(",")
                        };
                        s.push_str(&format!(
                            "{}  {}  {}  {}\n",
                            p.name,
                            &p.sha256[..16],
                            p.origin,
                            adv
                        ));
                    }
                    s.push_str(&format!(
                        "{} patch(es) applied; tree: {}\n",
                        applied.len(),
                        dest.display()
                    ));
                    output::data(&s);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backport {
            fixes,
            lines,
            from,
            mainline,
            advisories,
            severity,
            bugs,
            advisory_db,
            at,
            dry_run,
            keep,
            resume,
        } => {
            let keep_dir = cx.default_out().join("backports");
            if let Some(v) = resume {
                let l = line_of(&v)?;
                let done =
                    backport::continue_backport(&keep_dir, l, chrono::Utc::now().date_naive())?;
                match cx.format {
                    Format::Json => output::json(&done)?,
                    Format::Text => output::data(&format!(
                        "line {}: recorded {} ({}; {}); removed worktree {}\n",
                        done.line,
                        done.added.display(),
                        done.origin,
                        done.files.join(", "),
                        done.removed_worktree.display()
                    )),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let at = at.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let chosen: Vec<&distro_config::Line> = if lines.is_empty() {
                matrix::supported_lines(&dist, at)
            } else {
                lines
                    .iter()
                    .map(|v| line_of(v))
                    .collect::<anyhow::Result<_>>()?
            };
            anyhow::ensure!(
                !chosen.is_empty(),
                "no line is supported on {at}; pass --line or --at"
            );
            let from_line = match &from {
                Some(v) => line_of(v)?,
                None => chosen
                    .iter()
                    .max_by(|a, b| a.semver.cmp(&b.semver))
                    .copied()
                    .context("no line")?,
            };
            let repo = distro_patches::source::LineSource::of(from_line)?.repo;
            let overrides = backport::Overrides {
                advisories,
                severity,
                bugs,
            };
            anyhow::ensure!(
                fixes.len() == 1
                    || (overrides.advisories.is_empty()
                        && overrides.severity.is_none()
                        && overrides.bugs.is_empty()),
                "--advisory, --severity and --bug describe one fix; pass a single fix with them"
            );
            let load = backport::LoadOptions {
                line_ref: Some(from_line.source.git_ref.clone()),
                mainline,
                overrides,
            };
            let fixes = fixes
                .iter()
                .map(|f| backport::Fix::load(&Input::guess(f), &repo, &load))
                .collect::<Result<Vec<_>, _>>()?;
            let explicit_db = advisory_db.is_some();
            let db_path =
                advisory_db.unwrap_or_else(|| distro_patches::default_advisory_db(&cx.config_path));
            let db = match AdvisoryDb::load(&db_path) {
                Ok(db) => Some(db),
                Err(e) if !explicit_db => {
                    cx.status(&format!(
                        "warning: advisory database not read ({e}); affected ranges come from the patches' Affected-Versions only"
                    ));
                    None
                }
                Err(e) => return Err(e.into()),
            };
            cx.status(&format!(
                "backporting {} fix(es) to {} line(s)",
                fixes.len(),
                chosen.len()
            ));
            let reports = backport::backport_many(
                &fixes,
                &chosen,
                &backport::Options {
                    write: !dry_run,
                    today: chrono::Utc::now().date_naive(),
                    db: db.as_ref(),
                    keep: keep.then(|| keep_dir.clone()),
                },
            )?;
            let conflicts = reports
                .iter()
                .flat_map(|r| &r.lines)
                .filter(|l| matches!(l.outcome, Outcome::Conflict { .. }))
                .count();
            for l in reports.iter().flat_map(|r| &r.lines) {
                if let Outcome::Conflict {
                    kept: Some(dir), ..
                } = &l.outcome
                {
                    cx.status(&format!(
                        "line {}: conflicting worktree kept at {}; resolve it, then run `distro patches backport --continue {}`",
                        l.line,
                        dir.display(),
                        l.line
                    ));
                }
            }
            match (cx.format, reports.as_slice()) {
                (Format::Json, [one]) => output::json(one)?,
                (Format::Json, many) => output::json(&many)?,
                (Format::Text, all) => {
                    output::data(&all.iter().map(backport_text).collect::<Vec<_>>().join("\n"))
                }
            }
            Ok(if conflicts > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::List { line } => {
            let l = line_of(&line)?;
            let queue = match &l.patches {
                Some(dir) => distro_patches::read_queue(dir)?,
                None => Vec::new(),
            };
            match cx.format {
                Format::Json => {
                    let items: Vec<_> = queue
                        .iter()
                        .map(|p| serde_json::json!({ "name": p.entry.name, "series_line": p.entry.line, "files": p.files, "header": p.meta }))
                        .collect();
                    output::json(
                        &serde_json::json!({ "line": l.version, "queue": l.patches, "patches": items }),
                    )?
                }
                Format::Text => {
                    let mut s = String::new();
                    for p in &queue {
                        let m = &p.meta;
                        s.push_str(&format!(
                            "{}  [{}]  {}\n    advisories: {}  severity: {}  affected: {}\n",
                            p.entry.name,
                            m.origin_text(),
                            m.description,
                            if m.advisories.is_empty() {
                                "-".into()
                            } else {
                                m.advisories.join(",")
                            },
                            m.severity.map_or("-", |x| x.as_str()),
                            m.affected_versions.as_deref().unwrap_or("*"),
                        ));
                    }
                    if l.patches.is_none() {
                        s.push_str(&format!(
                            "line {} has no patch queue (no `patches` in its [[line]])\n",
                            l.version
                        ));
                    } else {
                        s.push_str(&format!(
                            "{} patch(es) in the queue of line {}\n",
                            queue.len(),
                            l.version
                        ));
                    }
                    output::data(&s);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan { line, advisory_db } => {
            let l = line_of(&line)?;
            let (db, snapshot) = db_at(advisory_db)?;
            let findings = flows::scan_line(l, &db)?;
            let evaluation = flows::evaluate_line(&dist, l, &db, &cargo_home()?)?;
            match cx.format {
                Format::Json => output::json(&serde_json::json!({
                    "line": l.version,
                    "findings": findings,
                    "advisories": evaluation.advisories,
                    "open": evaluation.open(),
                    "fixed": evaluation.fixed(),
                    "advisory_db": snapshot,
                }))?,
                Format::Text => {
                    let mut s = String::new();
                    for f in &findings {
                        s.push_str(&format!(
                            "{}  {} {}  {}\n",
                            f.advisory, f.package, f.version, f.title
                        ));
                    }
                    s.push_str(&format!(
                        "{} advisory match(es) in line {}'s Cargo.lock before its queue\n",
                        findings.len(),
                        l.version
                    ));
                    for e in &evaluation.advisories {
                        s.push_str(&format!(
                            "{}  {}  {}\n",
                            e.advisory,
                            e.status.as_str(),
                            e.notes
                        ));
                    }
                    s.push_str(&format!(
                        "line {} as shipped: open {}; fixed {}\n",
                        l.version,
                        list(&evaluation.open()),
                        list(&evaluation.fixed())
                    ));
                    output::data(&s);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Remediate {
            line,
            advisory_db,
            tree,
            dry_run,
        } => {
            let l = line_of(&line)?;
            let (db, _) = db_at(advisory_db)?;
            let home = cargo_home()?;
            let result = match tree {
                Some(t) => {
                    let r = if dry_run {
                        distro_patches::remediate::plan(&t, &db, &home)?
                    } else {
                        distro_patches::remediate::remediate_tree(&t, &db, &home)?
                    };
                    flows::LineRemediation {
                        line: l.version.clone(),
                        remediation: r,
                        patch: None,
                    }
                }
                None => {
                    flows::remediate_line(l, &db, &home, chrono::Utc::now().date_naive(), !dry_run)?
                }
            };
            match cx.format {
                Format::Json => output::json(&result)?,
                Format::Text => {
                    let mut s = String::new();
                    for b in &result.remediation.bumps {
                        s.push_str(&format!(
                            "bumped {} {} -> {}  fixes {}\n",
                            b.package,
                            b.from,
                            b.to,
                            b.advisories.join(",")
                        ));
                    }
                    for u in &result.remediation.unfixable {
                        s.push_str(&format!(
                            "NOT FIXED {} {} ({}): {}\n",
                            u.package,
                            u.version,
                            u.advisories.join(","),
                            u.explanation
                        ));
                    }
                    if let Some(p) = &result.patch {
                        s.push_str(&format!(
                            "added {} to the series of line {}\n",
                            p.display(),
                            l.version
                        ));
                    }
                    if result.remediation.bumps.is_empty()
                        && result.remediation.unfixable.is_empty()
                    {
                        s.push_str(&format!(
                            "line {}: no advisory affects its Cargo.lock\n",
                            l.version
                        ));
                    }
                    output::data(&s);
                }
            }
            Ok(if result.remediation.unfixable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Vex {
            line,
            release,
            advisory_db,
            output: out,
            images,
            timestamp,
        } => {
            let l = line_of(&line)?;
            let (db, snapshot) = db_at(advisory_db)?;
            let ts = match timestamp {
                Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
                    .with_context(|| {
                        format!("--timestamp `{t}` is not RFC 3339 (e.g. 2026-11-28T00:00:00Z)")
                    })?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let mut vex = flows::vex_line(
                &dist,
                l,
                release.as_deref(),
                &images,
                &db,
                &cargo_home()?,
                ts,
            )?;
            // The document says which advisory data it was judged against (verify shows it).
            if let Some(doc) = vex.document.as_mut() {
                doc.tooling = format!("{}; advisories: {}", doc.tooling, snapshot.label());
            }
            match (&out, &vex.document) {
                (Some(path), Some(doc)) => {
                    let text = serde_json::to_string_pretty(doc)? + "\n";
                    distro_hostio::write_atomic(path, text.as_bytes(), distro_hostio::PUBLIC)?;
                    cx.status(&format!(
                        "wrote {} ({} statements{})",
                        path.display(),
                        doc.statements.len(),
                        if vex.checked_only {
                            ", not_affected for the advisories checked against the line's crates"
                        } else {
                            ""
                        }
                    ));
                }
                (Some(path), None) => {
                    if path.exists() {
                        std::fs::remove_file(path)
                            .with_context(|| format!("removing the stale {}", path.display()))?;
                    }
                    cx.status(&format!(
                        "no VEX document written to {}: {}",
                        path.display(),
                        vex.reason.as_deref().unwrap_or_default()
                    ));
                }
                (None, Some(doc)) => output::json(doc)?,
                (None, None) => cx.status(&format!(
                    "no VEX document: {}",
                    vex.reason.as_deref().unwrap_or_default()
                )),
            }
            // With -o, stdout reports what was written (data other stages read); without it,
            // stdout is the document itself (JSON reports the absence of one).
            let report = serde_json::json!({
                "line": vex.line,
                "release": vex.release,
                "written": out.is_some() && vex.document.is_some(),
                "path": out.as_ref().filter(|_| vex.document.is_some()),
                "statements": vex.statements,
                "checked_only": vex.checked_only,
                "reason": vex.reason,
            });
            match (cx.format, &out, &vex.document) {
                (Format::Json, Some(_), _) | (Format::Json, None, None) => output::json(&report)?,
                (Format::Text, Some(_), _) => output::data(&format!(
                    "line {}: {}\n",
                    vex.line,
                    match &vex.document {
                        Some(_) => format!("{} statement(s) written", vex.statements),
                        None => format!(
                            "no VEX written: {}",
                            vex.reason.as_deref().unwrap_or_default()
                        ),
                    }
                )),
                _ => {}
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

/// `$CARGO_HOME`, else `~/.cargo`: where cargo keeps its registry index cache.
fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME")
        .context("neither CARGO_HOME nor HOME is set: cannot find cargo's index cache")?;
    Ok(Path::new(&home).join(".cargo"))
}

fn backport_text(r: &backport::Report) -> String {
    let mut s = format!("{}: {}\norigin: {}\n", r.patch, r.description, r.origin);
    if !r.advisories.is_empty() {
        s.push_str(&format!("fixes {}\n", r.advisories.join(", ")));
    }
    for l in &r.lines {
        s.push_str(&format!("line {}: {}", l.line, l.outcome.label()));
        match &l.outcome {
            Outcome::AlreadyPresent { reason } | Outcome::NotTried { reason } => {
                s.push_str(&format!(" ({reason})"))
            }
            Outcome::AlreadyFixed { by, reason } => s.push_str(&format!(" by {by} ({reason})")),
            Outcome::NotAffected { version, affected } => {
                s.push_str(&format!(" ({version} is outside {affected})"))
            }
            _ => {}
        }
        if let Some(p) = &l.added {
            s.push_str(&format!("; added {}", p.display()));
        }
        s.push('\n');
        if let Some(n) = &l.note {
            s.push_str(&format!("  note: {n}\n"));
        }
        if let Outcome::Conflict {
            files,
            prerequisites,
            kept,
        } = &l.outcome
        {
            for f in files {
                s.push_str(&format!("  conflict in {}\n", f.path));
                for h in &f.hunks {
                    s.push_str(&format!("    at line {}:\n", h.line));
                    for t in h.text.lines() {
                        s.push_str(&format!("      {t}\n"));
                    }
                }
            }
            if !prerequisites.is_empty() {
                s.push_str("  likely prerequisites, most conflicting context first:\n");
                for c in prerequisites {
                    let relation = match c.relation {
                        backport::Relation::MissingFromLine => "missing from the line",
                        backport::Relation::OnLine => "on the line, changed the fix's context",
                    };
                    let evidence: Vec<String> = c
                        .evidence
                        .iter()
                        .map(|e| {
                            let lines: Vec<String> =
                                e.lines.iter().map(ToString::to_string).collect();
                            format!("{} (hunk at {}) lines {}", e.path, e.hunk, lines.join(","))
                        })
                        .collect();
                    s.push_str(&format!(
                        "    {} {}  [{relation}; {} context line(s){}{}]\n",
                        &c.id[..12.min(c.id.len())],
                        c.summary,
                        c.context_lines,
                        if evidence.is_empty() { "" } else { ": " },
                        evidence.join("; ")
                    ));
                }
            }
            if let Some(k) = kept {
                s.push_str(&format!(
                    "  worktree kept at {}: resolve it, then `distro patches backport --continue {}`\n",
                    k.display(),
                    l.line
                ));
            }
        }
    }
    s
}
