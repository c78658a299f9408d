//! The line's source: resolve its ref to a commit and export that commit as a plain tree.

use std::path::{Path, PathBuf};

use distro_config::Source;

use crate::fsutil;
use crate::process::Cmd;
use crate::BuildError;

/// Marker written into an exported tree: which commit it holds.
const MARKER: &str = ".distro-source";

/// An exported source tree.
#[derive(Debug, Clone)]
pub struct ExportedSource {
    /// The directory holding the tree.
    pub tree: PathBuf,
    /// The commit it was exported from.
    pub commit: String,
    /// The commit's committer time, used as SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
}

fn source_error(src: &Source, message: String, help: &str) -> BuildError {
    BuildError::Source {
        repository: src.git.clone(),
        git_ref: src.git_ref.clone(),
        message,
        help: help.to_string(),
    }
}

/// Resolves the ref and exports the commit's tree into `dest` (replaced when it holds another
/// commit; reused as is when it already holds this one, so a second run does no work).
pub fn export(src: &Source, dest: &Path) -> Result<ExportedSource, BuildError> {
    let repo = &src.git;
    let commit = Cmd::new("git", "resolve the line's source ref")
        .help("install git")
        .args(["-C", repo, "rev-parse", "--verify", "--end-of-options"])
        .arg(format!("{}^{{commit}}", src.git_ref))
        .stdout_text()
        .map_err(|e| {
            source_error(
                src,
                format!("cannot resolve the ref: {e}"),
                "check `source.git` and `source.ref` of this line in distro.toml",
            )
        })?;
    let epoch_text = Cmd::new("git", "read the commit time for SOURCE_DATE_EPOCH")
        .args(["-C", repo, "show", "-s", "--format=%ct", &commit])
        .stdout_text()?;
    let source_date_epoch: i64 = epoch_text.parse().map_err(|_| {
        source_error(src, format!("unexpected commit time `{epoch_text}`"), "check the repository")
    })?;

    let marker = dest.join(MARKER);
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(commit.as_str()) {
        return Ok(ExportedSource {
            tree: dest.to_path_buf(),
            commit,
            source_date_epoch,
        });
    }
    // Export next to the destination, then swap it in, so an interrupted export never leaves a
    // tree that looks complete.
    let parent = dest.parent().unwrap_or(Path::new("."));
    fsutil::create_dir(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".src-export-")
        .tempdir_in(parent)
        .map_err(fsutil::io("creating a staging directory in", parent))?;
    let archive = Cmd::new("git", "export the source tree at the resolved commit")
        .args(["-C", repo, "archive", "--format=tar", &commit])
        .output()?;
    let tar_path = staging.path().join("source.tar");
    std::fs::write(&tar_path, &archive.stdout).map_err(fsutil::io("writing", &tar_path))?;
    let tree = staging.path().join("tree");
    fsutil::create_dir(&tree)?;
    Cmd::new("tar", "unpack the exported source tree")
        .arg("-xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&tree)
        .output()?;
    std::fs::write(tree.join(MARKER), &commit).map_err(fsutil::io("writing", &marker))?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(fsutil::io("removing the previous export", dest))?;
    }
    std::fs::rename(&tree, dest).map_err(fsutil::io("moving the export into place at", dest))?;
    Ok(ExportedSource {
        tree: dest.to_path_buf(),
        commit,
        source_date_epoch,
    })
}
