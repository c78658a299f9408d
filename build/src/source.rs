//! The line's source: resolve its ref to a commit and export that commit as a plain tree.

use std::path::{Path, PathBuf};

use distro_config::Source;

use crate::fsutil;
use crate::process::Cmd;
use crate::BuildError;

/// Marker written into an exported tree: which commit it holds.
const MARKER: &str = ".distro-source";

/// Record of the patches applied to an exported tree, kept beside it for reruns.
const PATCHES_RECORD: &str = ".distro-patches.json";

/// A patch applied to the exported tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedPatch {
    /// File name in the series.
    pub name: String,
    /// sha256 of the patch file.
    pub sha256: String,
    /// DEP-3 origin.
    pub origin: String,
    /// Advisory ids it fixes.
    pub advisories: Vec<String>,
}

/// An exported source tree.
#[derive(Debug, Clone)]
pub struct ExportedSource {
    /// The directory holding the tree.
    pub tree: PathBuf,
    /// The commit it was exported from.
    pub commit: String,
    /// The commit's committer time, used as SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
    /// Patches applied on top of the commit, in series order.
    pub patches: Vec<AppliedPatch>,
}

/// Digest of a patch queue directory (every regular file, by name), so a change to the queue
/// makes the next build re-export and re-apply.
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
        all.extend_from_slice(fsutil::sha256_file(&p)?.as_bytes());
        all.push(b'\n');
    }
    Ok(fsutil::sha256_hex(&all))
}

fn source_error(src: &Source, message: String, help: &str) -> BuildError {
    BuildError::Source {
        repository: src.git.clone(),
        git_ref: src.git_ref.clone(),
        message,
        help: help.to_string(),
    }
}

/// Resolves the ref, exports the commit's tree into `dest` and applies the line's patch queue
/// (`patches`, a directory holding a quilt `series`) to it. The tree is replaced when it holds
/// another commit or queue, and reused as is when it already holds this one, so a second run
/// does no work.
pub fn export(
    src: &Source,
    dest: &Path,
    patches: Option<&Path>,
) -> Result<ExportedSource, BuildError> {
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
        source_error(
            src,
            format!("unexpected commit time `{epoch_text}`"),
            "check the repository",
        )
    })?;

    let key = match patches {
        Some(dir) => format!("{commit}\npatches:{}", queue_digest(dir)?),
        None => commit.clone(),
    };
    let marker = dest.join(MARKER);
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(key.as_str()) {
        let applied = match std::fs::read(dest.join(PATCHES_RECORD)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        return Ok(ExportedSource {
            tree: dest.to_path_buf(),
            commit,
            source_date_epoch,
            patches: applied,
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
    let applied: Vec<AppliedPatch> = match patches {
        None => Vec::new(),
        Some(dir) => distro_patches::apply_series(&tree, dir)
            .map_err(|e| BuildError::Patch {
                queue: dir.to_path_buf(),
                message: e.to_string(),
            })?
            .into_iter()
            .map(|p| AppliedPatch {
                name: p.name,
                sha256: p.sha256,
                origin: p.origin,
                advisories: p.advisories,
            })
            .collect(),
    };
    let record = serde_json::to_vec_pretty(&applied).unwrap_or_default();
    std::fs::write(tree.join(PATCHES_RECORD), record).map_err(fsutil::io("writing", &tree))?;
    std::fs::write(tree.join(MARKER), &key).map_err(fsutil::io("writing", &marker))?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(fsutil::io("removing the previous export", dest))?;
    }
    std::fs::rename(&tree, dest).map_err(fsutil::io("moving the export into place at", dest))?;
    Ok(ExportedSource {
        tree: dest.to_path_buf(),
        commit,
        source_date_epoch,
        patches: applied,
    })
}
