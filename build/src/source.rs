//! The line's source: resolve its ref to a commit, and have the patch engine
//! ([`distro_patches::flows::patched_tree`], the same code `distro patches apply` runs) export
//! that commit with the line's queue applied. A line whose `source.git` is a URL is read from
//! its bare mirror in the source cache (`OUT/sources/<hash>.git`), made and updated by
//! [`distro_patches::source::mirror`] exactly as `distro patches` and `distro matrix` do. This
//! module adds only what the build needs on top: the commit and its time (SOURCE_DATE_EPOCH),
//! and a marker that lets a rerun with the same commit and queue reuse the tree.

use std::path::{Path, PathBuf};

use distro_config::Line;
pub use distro_patches::source::Mirrored;
pub use distro_patches::AppliedPatch;

use crate::fsutil;
use crate::BuildError;
use distro_hostio::Cmd;

/// Marker written into an exported tree: which commit and queue it holds.
const MARKER: &str = ".distro-source";

/// Record of the patches applied to an exported tree, kept beside it for reruns.
const PATCHES_RECORD: &str = ".distro-patches.json";

/// An exported source tree.
#[derive(Debug, Clone)]
pub struct ExportedSource {
    /// The directory holding the tree.
    pub tree: PathBuf,
    /// The commit it was exported from.
    pub commit: String,
    /// How provenance names the source ([`source_repository`]): never a path of this machine
    /// unless the line's source is a local path that names no repository URL.
    pub repository: String,
    /// The commit's committer time, used as SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
    /// Patches applied on top of the commit, in series order.
    pub patches: Vec<AppliedPatch>,
    /// For a remote source: its mirror in the source cache and whether it was cloned or updated.
    pub fetched: Option<Mirrored>,
}

/// Digest of a patch queue directory (every regular file, by name), so a change to the queue
/// makes the next build export and apply again.
fn queue_digest(dir: &Path) -> Result<String, BuildError> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(fsutil::io("reading the patch queue", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut all = Vec::new();
    for p in names {
        all.extend_from_slice(
            p.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        all.push(0);
        all.extend_from_slice(
            distro_hostio::sha256_file(&p)
                .map_err(fsutil::io("hashing", &p))?
                .as_bytes(),
        );
        all.push(b'\n');
    }
    Ok(distro_hostio::sha256_hex(&all))
}

fn source_error(line: &Line, message: String, help: &str) -> BuildError {
    BuildError::Source {
        repository: line.source.git.clone(),
        git_ref: line.source.git_ref.clone(),
        message,
        help: help.to_string(),
    }
}

/// Reads the record of the patches applied to a reused tree. A missing or unreadable record is
/// an error, never "no patches": the provenance signed from it must list what the build carries.
fn read_patches_record(tree: &Path) -> Result<Vec<AppliedPatch>, BuildError> {
    let path = tree.join(PATCHES_RECORD);
    let bad = |message: String| BuildError::PatchRecord {
        path: path.clone(),
        tree: tree.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        bad(format!(
            "cannot read the record of the patches applied to this tree ({e}), although its marker says it is complete"
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "is not a record of applied patches ({e}); it may have been edited or truncated"
        ))
    })
}

/// Resolves the line's ref and puts its source, with the line's queue applied, at `dest`.
/// A remote source (a URL, see [`distro_patches::source::is_remote`]) is first brought into
/// `sources` (the source cache, `OUT/sources`) as a bare mirror, or updated there with
/// `git fetch`, and read from it; a local path (or a local mirror, for air-gapped sites) is read
/// as it is. The tree is reused as is when it already holds this commit and queue, so a second
/// run does no work; otherwise it is replaced atomically.
pub fn export(line: &Line, dest: &Path, sources: &Path) -> Result<ExportedSource, BuildError> {
    let fetched = if distro_patches::source::is_remote(&line.source.git) {
        Some(
            distro_patches::source::mirror(&line.source.git, sources).map_err(|e| {
                source_error(
                    line,
                    format!(
                        "cannot fetch it into the source cache {}: {e}",
                        sources.display()
                    ),
                    "check the URL in `source.git` of this line in distro.toml and that it is reachable; on an air-gapped machine point `source.git` at a local mirror (git clone --mirror)",
                )
            })?,
        )
    } else {
        None
    };
    let repo = fetched
        .as_ref()
        .map(|m| m.mirror.to_string_lossy().into_owned())
        .unwrap_or_else(|| line.source.git.clone());
    let commit = Cmd::git("resolve the line's source ref")
        .args(["-C", &repo, "rev-parse", "--verify", "--end-of-options"])
        .arg(format!("{}^{{commit}}", line.source.git_ref))
        .stdout_text()
        .map_err(|e| {
            source_error(
                line,
                format!("cannot resolve the ref: {e}"),
                "check `source.git` and `source.ref` of this line in distro.toml",
            )
        })?;
    let epoch_text = Cmd::git("read the commit time for SOURCE_DATE_EPOCH")
        .args(["-C", &repo, "show", "-s", "--format=%ct", &commit])
        .stdout_text()?;
    let source_date_epoch: i64 = epoch_text.parse().map_err(|_| {
        source_error(
            line,
            format!("unexpected commit time `{epoch_text}`"),
            "check the repository",
        )
    })?;

    let key = match &line.patches {
        Some(dir) => format!("{commit}\npatches:{}", queue_digest(dir)?),
        None => commit.clone(),
    };
    let marker = dest.join(MARKER);
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(key.as_str()) {
        let patches = read_patches_record(dest)?;
        return Ok(ExportedSource {
            tree: dest.to_path_buf(),
            repository: source_repository(line, dest),
            commit,
            source_date_epoch,
            patches,
            fetched,
        });
    }

    // Export the resolved commit, not the ref, so the tree is the commit recorded above even if
    // the ref moves meanwhile; read it from the mirror when the source is remote.
    let mut pinned = line.clone();
    pinned.source.git_ref = commit.clone();
    pinned.source.git = repo.clone();
    let patches =
        distro_patches::flows::patched_tree(&pinned, dest).map_err(|e| BuildError::Patch {
            queue: line.patches.clone().unwrap_or_else(|| PathBuf::from(&repo)),
            message: e.to_string(),
        })?;
    // The marker is written last: an interrupted run leaves no marker and starts again.
    let record = serde_json::to_vec_pretty(&patches).map_err(|e| BuildError::PatchRecord {
        path: dest.join(PATCHES_RECORD),
        tree: dest.to_path_buf(),
        message: format!("cannot encode the record of applied patches: {e}"),
    })?;
    distro_hostio::write_atomic(&dest.join(PATCHES_RECORD), &record, distro_hostio::PUBLIC)?;
    distro_hostio::write_atomic(&marker, key.as_bytes(), distro_hostio::PUBLIC)?;
    Ok(ExportedSource {
        tree: dest.to_path_buf(),
        repository: source_repository(line, dest),
        commit,
        source_date_epoch,
        patches,
        fetched,
    })
}

/// The name of the line's source repository as provenance records it, so that two clones of
/// the same commit in different directories give the same statement:
///
/// - a URL (`https://…`, `ssh://…`, `git@…`, `file://…`) as written in distro.toml;
/// - for a local path, the repository URL the source itself declares (`[workspace.package]` or
///   `[package]` `repository` of its top-level Cargo.toml, read from the exported `tree`);
/// - only when it declares none, a `file://` URI of the local repository.
pub fn source_repository(line: &Line, tree: &Path) -> String {
    let git = &line.source.git;
    if git.contains("://") || git.starts_with("git@") {
        return git.clone();
    }
    if let Some(url) = declared_repository(&tree.join("Cargo.toml")) {
        return url;
    }
    let path = std::fs::canonicalize(git).unwrap_or_else(|_| PathBuf::from(git));
    format!("file://{}", path.display()).replace(' ', "%20")
}

/// `[workspace.package] repository`, else `[package] repository`, when it is a URL.
fn declared_repository(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    let from = |t: Option<&toml::Value>| {
        t.and_then(|p| p.get("repository"))
            .and_then(|r| r.as_str())
            .map(str::trim)
            .filter(|r| r.contains("://") || r.starts_with("git@"))
            .map(str::to_string)
    };
    from(doc.get("workspace").and_then(|w| w.get("package"))).or_else(|| from(doc.get("package")))
}
