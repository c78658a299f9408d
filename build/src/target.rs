//! The cargo target directory of a line, `OUT/<line>/target`, and what cargo cannot see in it.
//!
//! **Why each line has its own.** One target directory shared by the lines of an output
//! directory was tried: with the flags made line-independent, the second line reused the
//! registry crates, but the `cc` crate makes the C build scripts declare
//! `rerun-if-env-changed=SOURCE_DATE_EPOCH`, and `SOURCE_DATE_EPOCH` is each line's commit time.
//! So every switch of line reruns aws-lc-fips-sys's build script (cmake, mostly incremental)
//! and aws-lc-sys's (compiled by `cc` from scratch, minutes), and a second run of both lines
//! would no longer be a no-op. Sharing is also unsound for a workspace's own crates: cargo
//! identifies path packages by name, version and path *relative to the workspace root*, so two
//! lines' trees carrying `mesh-core 0.1.0` compile to the same unit, and with the older file
//! times of an exported tree the second line silently gets the first line's objects.
//!
//! **Older files.** Cargo decides freshness by modification times, and an exported tree carries
//! its commit's times: a tree exported again at an older commit, or without a patch that was
//! applied before, looks older than the last build, and cargo would keep the old objects (a
//! dropped patch would stay in the binary). So when the tree's content (commit and applied
//! patches) differs from what was last built from it here, its files get the current time
//! first; the same content built before is left alone, so a second run does no work.
//!
//! The directory is locked (`.distro-lock`) for the line's whole build, so two concurrent
//! builds of a line take turns, and its record (`.distro-source.json`) says what was built.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::source::ExportedSource;
use crate::BuildError;

/// What was last built in the directory.
const RECORD: &str = ".distro-source.json";
/// Held while a line builds in the directory.
const LOCK: &str = ".distro-lock";

/// What a target directory records about the tree built in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The exported tree.
    tree: PathBuf,
    /// The source (commit and patches) last built successfully from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    built: Option<String>,
}

impl Record {
    fn read(dir: &Path) -> Record {
        // A missing or unreadable record only costs reuse: the tree is then treated as new.
        std::fs::read(dir.join(RECORD))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn write(&self, dir: &Path) -> Result<(), BuildError> {
        fsutil::write_json(&dir.join(RECORD), self)
    }
}

/// The locked target directory a line builds in.
#[derive(Debug)]
pub struct Target {
    /// The directory (`CARGO_TARGET_DIR`).
    pub dir: PathBuf,
    tree: PathBuf,
    source_key: String,
    _lock: File,
}

/// What identifies the tree's content: its commit and the patches applied to it.
fn source_key(src: &ExportedSource) -> String {
    let mut key = src.commit.clone();
    for p in &src.patches {
        key.push_str(&format!("\n{} {}", p.name, p.sha256));
    }
    key
}

/// Gives every regular file under `tree` the current modification time, so cargo rebuilds
/// what was compiled from an earlier content of the tree.
fn touch_tree(tree: &Path) -> Result<(), BuildError> {
    let now = std::time::SystemTime::now();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(fsutil::io("reading", &dir))?;
        for e in entries {
            let e = e.map_err(fsutil::io("reading", &dir))?;
            let path = e.path();
            let kind = e.file_type().map_err(fsutil::io("reading", &path))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(now))
                    .map_err(fsutil::io("setting the modification time of", &path))?;
            }
        }
    }
    Ok(())
}

impl Target {
    /// Locks `line_dir/target` for building the exported source `src`, and makes the tree look
    /// new to cargo when its content is not what was last built from it there. The lock is held
    /// until the value is dropped.
    pub fn prepare(line_dir: &Path, src: &ExportedSource) -> Result<Target, BuildError> {
        let dir = line_dir.join("target");
        fsutil::create_dir(&dir)?;
        let lock_path = dir.join(LOCK);
        let lock = File::create(&lock_path).map_err(fsutil::io("creating", &lock_path))?;
        lock.lock()
            .map_err(fsutil::io("locking the target directory with", &lock_path))?;
        let key = source_key(src);
        let record = Record::read(&dir);
        if record.tree != src.tree || record.built.as_deref() != Some(key.as_str()) {
            touch_tree(&src.tree)?;
            Record {
                tree: src.tree.clone(),
                built: None,
            }
            .write(&dir)?;
        }
        Ok(Target {
            dir,
            tree: src.tree.clone(),
            source_key: key,
            _lock: lock,
        })
    }

    /// Records that every component was built from the tree as it is now, so the next build
    /// of the same content does no work.
    pub fn finish(self) -> Result<(), BuildError> {
        Record {
            tree: self.tree.clone(),
            built: Some(self.source_key.clone()),
        }
        .write(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(line_dir: &Path, commit: &str) -> ExportedSource {
        let t = line_dir.join("src");
        std::fs::create_dir_all(t.join("sub")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(t.join("sub/lib.rs"), commit).unwrap_or_else(|e| panic!("{e}"));
        ExportedSource {
            tree: t,
            commit: commit.into(),
            repository: "file:///x".into(),
            source_date_epoch: 0,
            patches: Vec::new(),
            fetched: None,
        }
    }

    fn mtime(p: &Path) -> std::time::SystemTime {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A tree whose content changed since it was last built (another commit, with an older
    /// file time, as an export of an older commit has) is touched so cargo rebuilds it; the
    /// same content built before is left alone; an unfinished build is redone.
    #[test]
    fn changed_tree_is_touched_unchanged_is_not() {
        let line_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let set_old = |src: &ExportedSource| {
            File::options()
                .write(true)
                .open(src.tree.join("sub/lib.rs"))
                .and_then(|f| f.set_modified(old))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        let file = |src: &ExportedSource| mtime(&src.tree.join("sub/lib.rs"));
        let a = tree(line_dir.path(), "aaa");
        set_old(&a);
        let t = Target::prepare(line_dir.path(), &a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.dir, line_dir.path().join("target"));
        assert!(file(&a) > old, "first build: touched");
        t.finish().unwrap_or_else(|e| panic!("{e}"));

        set_old(&a);
        let t = Target::prepare(line_dir.path(), &a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file(&a), old, "same content: untouched");
        t.finish().unwrap_or_else(|e| panic!("{e}"));

        let b = tree(line_dir.path(), "older-commit");
        set_old(&b);
        let t = Target::prepare(line_dir.path(), &b).unwrap_or_else(|e| panic!("{e}"));
        assert!(file(&b) > old, "other content: touched");
        drop(t); // not finished: the build failed
        set_old(&b);
        let _t = Target::prepare(line_dir.path(), &b).unwrap_or_else(|e| panic!("{e}"));
        assert!(file(&b) > old, "unfinished build: touched again");
    }
}
