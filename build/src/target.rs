//! The cargo target directory: one per output directory, shared by its lines.
//!
//! Every line of one `--out` directory builds in `OUT/target`, so a second line reuses what
//! the first compiled of the same dependencies, the AWS-LC FIPS module above all (its cmake
//! build is most of a clean build). Reuse is sound for everything cargo identifies by content:
//! registry crates by name, version and checksum, and the compiler flags are the same for every
//! line because paths are remapped relative to `OUT` ([`crate::cargo`]).
//!
//! Two things cargo gets wrong for exported trees, so this module handles them:
//!
//! - **Same package, other tree.** Cargo identifies a workspace's own (path) packages by name,
//!   version and their path *relative to the workspace root*, so two lines whose trees both
//!   carry `mesh-core 0.1.0` compile to one unit, and whichever line builds second gets the
//!   first one's objects. A line with a path package (name and version) that another line
//!   of the shared directory also has builds in its own `OUT/<line>/target` instead, and the
//!   build says why ([`Target::note`]).
//! - **Older files.** Cargo decides freshness by modification times, and an exported tree
//!   carries its commit's times: a tree exported again at an older commit, or without a patch
//!   that was applied before, looks older than the last build, and cargo would keep the old
//!   objects. When the tree's content (commit and applied patches) differs from what was last
//!   built from it here, its files are given the current time first.
//!
//! Each target directory records its lines in `.distro-lines.json` and is locked
//! (`.distro-lock`) for a line's whole build, so concurrent builds of two lines take turns and
//! never copy each other's binary out of `release/`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::lockfile::Lockfile;
use crate::source::ExportedSource;
use crate::BuildError;

/// The record of the lines a target directory has built.
const RECORD: &str = ".distro-lines.json";
/// Held while a line builds in the directory.
const LOCK: &str = ".distro-lock";

/// What a target directory knows about one line built in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LineEntry {
    /// The line's exported tree.
    tree: PathBuf,
    /// Its path packages (`name version`), the units cargo would confuse across trees.
    path_packages: Vec<String>,
    /// The source (commit and patches) last built successfully from the tree here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    built: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    /// Line version → entry.
    lines: BTreeMap<String, LineEntry>,
}

impl Record {
    fn read(dir: &Path) -> Record {
        // A missing or unreadable record only costs reuse: every tree is then treated as new.
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
    /// Whether it is the output directory's shared one.
    pub shared: bool,
    /// Why the line does not share, when it does not.
    pub note: Option<String>,
    line: String,
    source_key: String,
    _lock: File,
}

fn lock_dir(dir: &Path) -> Result<File, BuildError> {
    fsutil::create_dir(dir)?;
    let path = dir.join(LOCK);
    let file = File::create(&path).map_err(fsutil::io("creating the lock file", &path))?;
    file.lock()
        .map_err(fsutil::io("locking the target directory with", &path))?;
    Ok(file)
}

/// `name version` of every path package (no `source`) of the lockfile.
fn path_packages(lock: &Lockfile) -> Vec<String> {
    let mut v: Vec<String> = lock
        .packages
        .iter()
        .filter(|p| p.source.is_none())
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    v.sort();
    v.dedup();
    v
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
            let kind = e.file_type().map_err(fsutil::io("reading", &e.path()))?;
            let path = e.path();
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
    /// Chooses and locks the target directory of `line` (whose exported source is `src`, with
    /// lockfile `lock`) under the canonical output directory `out`: the shared `out/target`
    /// unless a path package of the tree is also a path package of another line built there,
    /// then `out/<line>/target`. Makes the tree look new to cargo when its content is not what
    /// was last built from it in that directory. The lock is held until the value is dropped.
    pub fn prepare(
        out: &Path,
        line: &str,
        src: &ExportedSource,
        lock: &Lockfile,
    ) -> Result<Target, BuildError> {
        let packages = path_packages(lock);
        let shared_dir = out.join("target");
        let shared_lock = lock_dir(&shared_dir)?;
        let mut record = Record::read(&shared_dir);
        let clash = record
            .lines
            .iter()
            .filter(|(l, e)| l.as_str() != line && e.tree != src.tree)
            .find_map(|(l, e)| {
                let same: Vec<&str> = packages
                    .iter()
                    .filter(|p| e.path_packages.contains(p))
                    .map(String::as_str)
                    .collect();
                (!same.is_empty()).then(|| (l.clone(), same.join(", ")))
            });
        let (dir, file, note, mut record) = match clash {
            None => (shared_dir, shared_lock, None, record),
            Some((other, same)) => {
                // This line may have shared before its packages changed: it no longer does.
                if record.lines.remove(line).is_some() {
                    record.write(&shared_dir)?;
                }
                drop(shared_lock);
                let own = out.join(line).join("target");
                let file = lock_dir(&own)?;
                let note = format!(
                    "line {line} builds in its own target directory {}: it has the same workspace packages as line {other} ({same}), which cargo would take for the same crates",
                    own.display()
                );
                let own_record = Record::read(&own);
                (own, file, Some(note), own_record)
            }
        };
        let key = source_key(src);
        let entry = record.lines.entry(line.to_string()).or_default();
        let fresh = entry.tree == src.tree && entry.built.as_deref() == Some(key.as_str());
        if !fresh {
            touch_tree(&src.tree)?;
            entry.built = None;
        }
        entry.tree = src.tree.clone();
        entry.path_packages = packages;
        record.write(&dir)?;
        Ok(Target {
            shared: note.is_none(),
            dir,
            note,
            line: line.to_string(),
            source_key: key,
            _lock: file,
        })
    }

    /// Records that every component of the line was built from the tree as it is now, so the
    /// next build of the same content does no work.
    pub fn finish(self) -> Result<(), BuildError> {
        let mut record = Record::read(&self.dir);
        if let Some(e) = record.lines.get_mut(&self.line) {
            e.built = Some(self.source_key.clone());
        }
        record.write(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockfile::LockedPackage;

    fn lockfile(packages: &[(&str, &str)]) -> Lockfile {
        Lockfile {
            packages: packages
                .iter()
                .map(|(n, v)| LockedPackage {
                    name: (*n).into(),
                    version: (*v).into(),
                    source: None,
                    checksum: None,
                })
                .collect(),
        }
    }

    fn tree(root: &Path, line: &str, commit: &str) -> ExportedSource {
        let t = root.join(line).join("src");
        std::fs::create_dir_all(&t).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(t.join("lib.rs"), commit).unwrap_or_else(|e| panic!("{e}"));
        ExportedSource {
            tree: t,
            commit: commit.into(),
            repository: "file:///x".into(),
            source_date_epoch: 0,
            patches: Vec::new(),
        }
    }

    fn mtime(p: &Path) -> std::time::SystemTime {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Lines with different workspace package versions share `OUT/target`; a line whose
    /// packages another line also has builds in its own directory and says why.
    #[test]
    fn lines_share_unless_their_packages_clash() {
        let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = tree(out.path(), "0.1", "aaa");
        let b = tree(out.path(), "0.2", "bbb");
        let c = tree(out.path(), "0.3", "ccc");
        let t = Target::prepare(out.path(), "0.1", &a, &lockfile(&[("core", "0.1.0")]));
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        assert!(t.shared && t.dir == out.path().join("target"), "{t:?}");
        drop(t);
        let t = Target::prepare(out.path(), "0.2", &b, &lockfile(&[("core", "0.2.0")]));
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        assert!(t.shared, "{t:?}");
        drop(t);
        let t = Target::prepare(out.path(), "0.3", &c, &lockfile(&[("core", "0.1.0")]));
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.shared, "{t:?}");
        assert_eq!(t.dir, out.path().join("0.3/target"));
        let note = t.note.clone().unwrap_or_default();
        assert!(
            note.contains("line 0.1") && note.contains("core 0.1.0"),
            "{note}"
        );
    }

    /// A tree whose content changed since it was last built (here: another commit, with an
    /// older file time, as an export of an older commit has) is touched so cargo rebuilds it;
    /// the same content built before is left alone.
    #[test]
    fn changed_tree_is_touched_unchanged_is_not() {
        let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let set_old = |src: &ExportedSource| {
            File::options()
                .write(true)
                .open(src.tree.join("lib.rs"))
                .and_then(|f| f.set_modified(old))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        let lock = lockfile(&[("core", "0.1.0")]);
        let a = tree(out.path(), "0.1", "aaa");
        set_old(&a);
        let t = Target::prepare(out.path(), "0.1", &a, &lock).unwrap_or_else(|e| panic!("{e}"));
        assert!(mtime(&a.tree.join("lib.rs")) > old, "first build: touched");
        t.finish().unwrap_or_else(|e| panic!("{e}"));

        set_old(&a);
        let t = Target::prepare(out.path(), "0.1", &a, &lock).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            mtime(&a.tree.join("lib.rs")),
            old,
            "same content: untouched"
        );
        t.finish().unwrap_or_else(|e| panic!("{e}"));

        let b = tree(out.path(), "0.1", "older-commit");
        set_old(&b);
        let t = Target::prepare(out.path(), "0.1", &b, &lock).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            mtime(&b.tree.join("lib.rs")) > old,
            "other content: touched"
        );
        // Not finished (the build failed): the next attempt touches again.
        drop(t);
        set_old(&b);
        let _t = Target::prepare(out.path(), "0.1", &b, &lock).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            mtime(&b.tree.join("lib.rs")) > old,
            "unfinished build: touched"
        );
    }
}
