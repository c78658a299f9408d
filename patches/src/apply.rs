//! Applying a line's patch series to a source tree: what `distro build` builds.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dep3;
use crate::error::PatchError;
use crate::series::Series;
use distro_hostio::sha256_hex;
use distro_hostio::Cmd;

/// One patch that was applied, as the build's provenance lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPatch {
    /// File name as listed in the series.
    pub name: String,
    /// sha256 of the patch file.
    pub sha256: String,
    /// DEP-3 origin (`upstream, commit:ID`, `backport, …`, `vendor`).
    pub origin: String,
    /// Advisory ids it fixes.
    pub advisories: Vec<String>,
}

/// Applies `patches_dir/series` in order to the plain directory `tree` and stops at the first
/// patch that does not apply, naming it and its series line.
///
/// `tree` need not be a git repository; an enclosing repository is never used. Each patch is
/// applied atomically (all of its files or none) by `git apply`.
pub fn apply_series(tree: &Path, patches_dir: &Path) -> Result<Vec<AppliedPatch>, PatchError> {
    let series = Series::read(patches_dir)?;
    if !tree.is_dir() {
        return Err(PatchError::io(
            tree,
            "not a directory (the source tree to patch)",
        ));
    }
    let tree = tree.canonicalize().map_err(|e| PatchError::io(tree, e))?;
    // Read and check every patch first: a header error or a missing file is reported before
    // anything changes.
    let mut patches = Vec::new();
    for entry in &series.entries {
        let path = patches_dir.join(&entry.name);
        let bytes = std::fs::read(&path).map_err(|e| PatchError::Series {
            path: series.path.clone(),
            line: entry.line,
            message: format!("cannot read patch {}: {e}", path.display()),
            help: "add the patch file to the queue directory or remove it from the series".into(),
        })?;
        let meta = dep3::parse(&path, &String::from_utf8_lossy(&bytes))?;
        let abs = path.canonicalize().map_err(|e| PatchError::io(&path, e))?;
        patches.push((entry, path, abs, bytes, meta));
    }
    let applied: Vec<AppliedPatch> = patches
        .iter()
        .map(|(entry, _, _, bytes, meta)| AppliedPatch {
            name: entry.name.clone(),
            sha256: sha256_hex(bytes),
            origin: meta.origin_text(),
            advisories: meta.advisories.clone(),
        })
        .collect();
    if patches.is_empty() {
        return Ok(applied);
    }
    // Fast path: the whole series as one `git apply` input (one input is applied atomically;
    // several inputs are not), when all patches share a strip level. On failure the tree is
    // unchanged and the patches are retried one by one to name the first that fails.
    if patches.iter().all(|p| p.0.strip == patches[0].0.strip) {
        let mut joined =
            tempfile::NamedTempFile::new().map_err(|e| PatchError::io(std::env::temp_dir(), e))?;
        for p in &patches {
            joined
                .write_all(&p.3)
                .map_err(|e| PatchError::io(joined.path(), e))?;
            joined
                .write_all(b"\n")
                .map_err(|e| PatchError::io(joined.path(), e))?;
        }
        let mut all = Cmd::git_in_plain_tree("apply the whole series", &tree);
        all.args(["apply", "--whitespace=nowarn"])
            .arg(format!("-p{}", patches[0].0.strip))
            .arg(joined.path());
        if all.output()?.status.success() {
            return Ok(applied);
        }
    }
    for (entry, path, abs, _, _) in &patches {
        let mut cmd = Cmd::git_in_plain_tree(format!("apply patch {}", entry.name), &tree);
        cmd.args(["apply", "--whitespace=nowarn"])
            .arg(format!("-p{}", entry.strip))
            .arg(abs);
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(PatchError::NotApplied {
                patch: path.clone(),
                series: series.path.clone(),
                series_line: entry.line,
                tree: tree.clone(),
                stderr: distro_hostio::cmd::tail(&out.stderr),
            });
        }
    }
    Ok(applied)
}

/// A patch of a queue with its parsed header.
#[derive(Debug, Clone)]
pub struct QueuedPatch {
    /// Its series entry.
    pub entry: crate::series::SeriesEntry,
    /// The patch file.
    pub path: std::path::PathBuf,
    /// Its header.
    pub meta: dep3::PatchMeta,
    /// Files its diff changes (paths after the `b/` prefix).
    pub files: Vec<String>,
}

impl QueuedPatch {
    /// A patch that only changes Cargo.lock files: a dependency bump, not a source fix.
    pub fn is_lockfile_only(&self) -> bool {
        !self.files.is_empty()
            && self
                .files
                .iter()
                .all(|f| f == "Cargo.lock" || f.ends_with("/Cargo.lock"))
    }
}

/// Paths a diff changes.
fn diff_files(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in text.lines() {
        if let Some(p) = l.strip_prefix("+++ ") {
            let p = p.split('\t').next().unwrap_or(p).trim();
            if p == "/dev/null" {
                continue;
            }
            let p = p.split_once('/').map_or(p, |(_, rest)| rest).to_string();
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Reads a queue's series and every patch header in it (without applying anything).
pub fn read_queue(patches_dir: &Path) -> Result<Vec<QueuedPatch>, PatchError> {
    let series = Series::read(patches_dir)?;
    series
        .entries
        .iter()
        .map(|entry| {
            let path = patches_dir.join(&entry.name);
            let text = std::fs::read_to_string(&path).map_err(|e| PatchError::Series {
                path: series.path.clone(),
                line: entry.line,
                message: format!("cannot read patch {}: {e}", path.display()),
                help: "add the patch file to the queue directory or remove it from the series"
                    .into(),
            })?;
            let meta = dep3::parse(&path, &text)?;
            Ok(QueuedPatch {
                entry: entry.clone(),
                files: diff_files(dep3::diff_part(&text)),
                path,
                meta,
            })
        })
        .collect()
}
