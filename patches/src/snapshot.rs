//! The advisory database as a dated snapshot on disk: which upstream commit it is, from when,
//! how many advisories it holds and how old it is ([`Snapshot`]), and refreshing it
//! ([`update`]) from the upstream git repository, a local mirror (a git repository, or a plain
//! copy with a `SNAPSHOT` file) or a `.tar.gz` archive of one, for air-gapped sites.
//!
//! A refresh is staged in a temporary directory beside the database, validated there (a
//! `crates/` folder whose every advisory parses, a known date) and only then swapped in by
//! rename; on any failure the database in place is left as it was. The refreshed tree carries
//! no `.git`: its `SNAPSHOT` file names the upstream commit and date, the same format as the
//! snapshot the repository ships, so it can be committed as is.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Serialize;

use crate::advisory::AdvisoryDb;
use crate::error::PatchError;
use distro_hostio::Cmd;

/// The RustSec advisory database upstream (also what deny.toml's `db-urls` names).
pub const UPSTREAM_URL: &str = "https://github.com/rustsec/advisory-db";

/// The file naming a snapshot's upstream commit and date.
pub const SNAPSHOT_FILE: &str = "SNAPSHOT";

/// What a database on disk is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Where it is.
    pub path: PathBuf,
    /// The upstream commit it was taken at, when known.
    pub commit: Option<String>,
    /// The date of that commit, when known.
    pub date: Option<NaiveDate>,
    /// Number of advisories it holds.
    pub advisories: usize,
    /// Days between `date` and the day it was inspected.
    pub age_days: Option<i64>,
    /// The configured limit (distro.toml `[advisories] max_age_days`).
    pub max_age_days: u32,
    /// Older than `max_age_days`, or of unknown date.
    pub stale: bool,
}

impl Snapshot {
    /// Describes the database `db` (already loaded) as of `today`.
    pub fn of(db: &AdvisoryDb, today: NaiveDate, max_age_days: u32) -> Snapshot {
        let (commit, date) = origin(&db.root);
        let age_days = date.map(|d| (today - d).num_days());
        Snapshot {
            path: db.root.clone(),
            commit,
            date,
            advisories: db.len(),
            age_days,
            max_age_days,
            stale: age_days.is_none_or(|a| a > i64::from(max_age_days)),
        }
    }

    /// Loads the database at `root` and describes it.
    pub fn read(root: &Path, today: NaiveDate, max_age_days: u32) -> Result<Snapshot, PatchError> {
        Ok(Snapshot::of(&AdvisoryDb::load(root)?, today, max_age_days))
    }

    /// `RustSec advisory-db bf5c0d245a92 (2026-08-21)`: the snapshot in one phrase.
    pub fn label(&self) -> String {
        let commit = self
            .commit
            .as_deref()
            .map(|c| &c[..12.min(c.len())])
            .unwrap_or("(unknown commit)");
        let date = self
            .date
            .map(|d| d.to_string())
            .unwrap_or_else(|| "unknown date".into());
        format!("RustSec advisory-db {commit} ({date})")
    }

    /// The warning to show when the snapshot is stale.
    pub fn warning(&self) -> Option<String> {
        if !self.stale {
            return None;
        }
        let how_old = match (self.date, self.age_days) {
            (Some(d), Some(a)) => format!(
                "is from {d}, {a} days old, older than the configured {} days",
                self.max_age_days
            ),
            _ => "has no known date (no SNAPSHOT file and no git history)".to_string(),
        };
        Some(format!(
            "the advisory database {} at {} {how_old}: advisories published since are not considered; refresh it with `distro advisories update` (or `--from PATH` from a local mirror)",
            self.label(),
            self.path.display()
        ))
    }
}

/// The upstream commit and date of a database: from its git history when it is a checkout,
/// else from its `SNAPSHOT` file.
fn origin(root: &Path) -> (Option<String>, Option<NaiveDate>) {
    if root.join(".git").exists() {
        if let Some(found) = git_origin(root) {
            return (Some(found.0), Some(found.1));
        }
    }
    match std::fs::read_to_string(root.join(SNAPSHOT_FILE)) {
        Ok(text) => parse_snapshot_file(&text),
        Err(_) => (None, None),
    }
}

/// The commit (40 hex digits) and the first `YYYY-MM-DD` date a `SNAPSHOT` file names.
pub fn parse_snapshot_file(text: &str) -> (Option<String>, Option<NaiveDate>) {
    let words = || text.split(|c: char| !c.is_ascii_alphanumeric() && c != '-');
    let commit = words()
        .find(|w| w.len() == 40 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    let date = words().find_map(|w| NaiveDate::parse_from_str(w, "%Y-%m-%d").ok());
    (commit, date)
}

fn git_origin(repo: &Path) -> Option<(String, NaiveDate)> {
    let text = Cmd::git_in_plain_tree("read the advisory database's commit and date", repo)
        .args(["log", "-1", "--format=%H %cs"])
        .stdout()
        .ok()?;
    let mut parts = text.split_whitespace();
    let commit = parts.next()?.to_string();
    let date = NaiveDate::parse_from_str(parts.next()?, "%Y-%m-%d").ok()?;
    Some((commit, date))
}

/// Where a refresh comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateSource {
    /// A git repository: a URL (the upstream, a `file://` mirror) or a local repository path.
    Git(String),
    /// A plain copy of the database (with a `SNAPSHOT` file or a `.git`).
    Dir(PathBuf),
    /// A `.tar.gz` of a git checkout or of a plain copy.
    Archive(PathBuf),
}

impl UpdateSource {
    /// Reads `--from`: an existing `.tar.gz`/`.tgz` file is an archive, a URL or a directory
    /// with a `.git` (or a bare repository) is cloned, another directory is copied.
    pub fn guess(from: &str) -> UpdateSource {
        // Local paths are made absolute: git runs them from elsewhere.
        let p = &std::path::absolute(from).unwrap_or_else(|_| PathBuf::from(from));
        let url = from.contains("://") || from.starts_with("git@");
        let repository =
            p.join(".git").exists() || (p.join("HEAD").is_file() && p.join("objects").is_dir());
        if p.is_file() && (from.ends_with(".tar.gz") || from.ends_with(".tgz")) {
            UpdateSource::Archive(p.to_path_buf())
        } else if url {
            UpdateSource::Git(from.to_string())
        } else if repository {
            UpdateSource::Git(p.display().to_string())
        } else {
            UpdateSource::Dir(p.to_path_buf())
        }
    }

    /// The source as the user would write it.
    pub fn display(&self) -> String {
        match self {
            UpdateSource::Git(u) => u.clone(),
            UpdateSource::Dir(p) | UpdateSource::Archive(p) => p.display().to_string(),
        }
    }
}

/// What [`update`] did.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    /// Where the new snapshot came from.
    pub source: String,
    /// The database that was in place, when there was a readable one.
    pub previous: Option<Snapshot>,
    /// The database now in place.
    pub current: Snapshot,
    /// Whether the upstream commit changed.
    pub changed: bool,
}

/// Replaces the database at `dest` with a fresh one from `source`, atomically: fetched and
/// validated in a temporary directory beside `dest`, then renamed into place. On any error the
/// database at `dest` is unchanged.
pub fn update(
    dest: &Path,
    source: &UpdateSource,
    today: NaiveDate,
    max_age_days: u32,
) -> Result<UpdateReport, PatchError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| PatchError::io(&parent, e))?;
    let previous = Snapshot::read(dest, today, max_age_days).ok();
    let staging = tempfile::Builder::new()
        .prefix(".advisory-db-update-")
        .tempdir_in(&parent)
        .map_err(|e| PatchError::io(&parent, format!("creating a staging directory: {e}")))?;
    let fresh = std::path::absolute(staging.path().join("db"))
        .map_err(|e| PatchError::io(staging.path(), e))?;
    fetch(source, staging.path(), &fresh)?;
    let current = validate(&fresh, source, today, max_age_days)?;

    let old = staging.path().join("old");
    if dest.exists() {
        std::fs::rename(dest, &old)
            .map_err(|e| PatchError::io(dest, format!("moving the old database aside: {e}")))?;
    }
    if let Err(e) = std::fs::rename(&fresh, dest) {
        // Put the old database back; the staging directory (and the new copy) is removed.
        if old.exists() {
            let _ = std::fs::rename(&old, dest);
        }
        return Err(PatchError::io(
            dest,
            format!("moving the new database into place: {e}"),
        ));
    }
    let current = Snapshot {
        path: dest.to_path_buf(),
        ..current
    };
    let changed = previous.as_ref().map(|p| &p.commit) != Some(&current.commit);
    Ok(UpdateReport {
        source: source.display(),
        previous,
        current,
        changed,
    })
}

/// Puts the source's tree at `fresh` (no `.git`), with a `SNAPSHOT` file when it came from git.
fn fetch(source: &UpdateSource, staging: &Path, fresh: &Path) -> Result<(), PatchError> {
    match source {
        UpdateSource::Git(url) => {
            let mut clone = Cmd::git("fetch the advisory database");
            clone.args(["clone", "--quiet", "--no-tags", "--single-branch"]);
            // A shallow clone saves most of the transfer; git ignores depth for local paths.
            if url.contains("://") || url.starts_with("git@") {
                clone.args(["--depth", "1"]);
            }
            clone.arg("--").arg(url).arg(fresh).run()?;
            finish_git_tree(fresh, url)
        }
        UpdateSource::Dir(dir) => {
            if !dir.is_dir() {
                return Err(PatchError::invalid(
                    format!("{}: no such directory", dir.display()),
                    "give --from a git URL, a local mirror (git repository or advisory-db copy) or a .tar.gz of one",
                ));
            }
            copy_tree(dir, fresh)?;
            if dir.join(".git").exists() {
                finish_git_tree(fresh, &dir.display().to_string())?;
            }
            Ok(())
        }
        UpdateSource::Archive(file) => {
            let unpack = staging.join("unpack");
            std::fs::create_dir_all(&unpack).map_err(|e| PatchError::io(&unpack, e))?;
            Cmd::new("tar", "unpack the advisory database archive")
                .arg("-xzf")
                .arg(file)
                .arg("-C")
                .arg(&unpack)
                .arg("--no-same-owner")
                .run()?;
            let root = if unpack.join("crates").is_dir() {
                unpack.clone()
            } else {
                let dirs: Vec<PathBuf> = std::fs::read_dir(&unpack)
                    .map_err(|e| PatchError::io(&unpack, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir())
                    .collect();
                match dirs.as_slice() {
                    [one] => one.clone(),
                    _ => {
                        return Err(PatchError::invalid(
                            format!(
                                "{}: the archive holds no advisory database (no crates/ at its top or in its one top folder)",
                                file.display()
                            ),
                            "archive a checkout of rustsec/advisory-db, e.g. `tar czf advisory-db.tar.gz advisory-db`",
                        ))
                    }
                }
            };
            std::fs::rename(&root, fresh).map_err(|e| PatchError::io(&root, e))?;
            if fresh.join(".git").exists() {
                finish_git_tree(fresh, &file.display().to_string())?;
            }
            Ok(())
        }
    }
}

/// Records the checkout's commit and date in `SNAPSHOT` and drops its `.git`.
fn finish_git_tree(tree: &Path, from: &str) -> Result<(), PatchError> {
    let (commit, date) = git_origin(tree).ok_or_else(|| {
        PatchError::invalid(
            format!("{from}: the fetched repository has no commit to date the snapshot by"),
            "point --from at a clone of rustsec/advisory-db with its history",
        )
    })?;
    let text = format!(
        "Snapshot of the RustSec advisory database (rustsec/advisory-db, commit {commit}, {date}), CC0-1.0.\nFetched from {from} by `distro advisories update`.\n"
    );
    let file = tree.join(SNAPSHOT_FILE);
    std::fs::write(&file, text).map_err(|e| PatchError::io(&file, e))?;
    let git = tree.join(".git");
    std::fs::remove_dir_all(&git).map_err(|e| PatchError::io(&git, e))?;
    Ok(())
}

/// The checks a new snapshot passes before it replaces the old one.
fn validate(
    fresh: &Path,
    source: &UpdateSource,
    today: NaiveDate,
    max_age_days: u32,
) -> Result<Snapshot, PatchError> {
    let from = source.display();
    if !fresh.join("crates").is_dir() {
        return Err(PatchError::invalid(
            format!("{from} is not a RustSec advisory database (no crates/ folder); the database in place is kept"),
            "point --from at rustsec/advisory-db (a clone, a mirror or an archive of one)",
        ));
    }
    let db = AdvisoryDb::load(fresh).map_err(|e| {
        PatchError::invalid(
            format!("the database from {from} does not parse: {e}; the database in place is kept"),
            "fetch a complete copy; a half-written or edited snapshot is never installed",
        )
    })?;
    if db.is_empty() {
        return Err(PatchError::invalid(
            format!("the database from {from} holds no advisory; the database in place is kept"),
            "fetch a complete copy of rustsec/advisory-db",
        ));
    }
    let snapshot = Snapshot::of(&db, today, max_age_days);
    if snapshot.date.is_none() {
        return Err(PatchError::invalid(
            format!("the database from {from} has no SNAPSHOT file and no git history, so its age is unknown; the database in place is kept"),
            "fetch it with git, or add a SNAPSHOT file naming its upstream commit and date (YYYY-MM-DD)",
        ));
    }
    Ok(snapshot)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), PatchError> {
    std::fs::create_dir_all(to).map_err(|e| PatchError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| PatchError::io(from, e))? {
        let entry = entry.map_err(|e| PatchError::io(from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry.file_type().map_err(|e| PatchError::io(&src, e))?;
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| PatchError::io(&src, e))?;
            // Copies of read-only mirrors stay writable, so the next update can replace them.
            let mut perm = std::fs::metadata(&dst)
                .map_err(|e| PatchError::io(&dst, e))?
                .permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&dst, perm).map_err(|e| PatchError::io(&dst, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    /// The vendored SNAPSHOT file's wording yields its commit and date.
    #[test]
    fn snapshot_file_names_commit_and_date() {
        let (c, d) = parse_snapshot_file("Snapshot of the RustSec advisory database (rustsec/advisory-db, commit bf5c0d245a92671908518d7e765914d437954ed6, 2026-08-21), CC0-1.0.");
        assert_eq!(
            c.as_deref(),
            Some("bf5c0d245a92671908518d7e765914d437954ed6")
        );
        assert_eq!(d, NaiveDate::from_ymd_opt(2026, 8, 21));
    }

    /// A snapshot is stale only past the limit, and the warning names its date; one of
    /// unknown date is stale.
    #[test]
    fn staleness_is_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("crates")).unwrap();
        let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        let unknown = Snapshot::read(dir.path(), day(11, 19), 90).unwrap();
        assert!(unknown.stale && unknown.warning().unwrap().contains("no known date"));
        std::fs::write(
            dir.path().join(SNAPSHOT_FILE),
            "commit bf5c0d245a92671908518d7e765914d437954ed6, 2026-08-21",
        )
        .unwrap();
        let fresh = Snapshot::read(dir.path(), day(11, 19), 90).unwrap();
        assert_eq!((fresh.age_days, fresh.stale), (Some(90), false));
        assert_eq!(fresh.warning(), None);
        let old = Snapshot::read(dir.path(), day(11, 20), 90).unwrap();
        assert!(old.stale);
        let w = old.warning().unwrap();
        assert!(w.contains("2026-08-21") && w.contains("91 days"), "{w}");
    }
}
