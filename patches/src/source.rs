//! A line's upstream source: reading files at its ref, exporting a plain tree, worktrees.

use std::path::{Path, PathBuf};

use crate::error::PatchError;
use distro_hostio::Cmd;

/// `git worktree add/remove` read and write the repository's shared worktree list and race
/// when run concurrently on one repository; this serialises them within the process.
static WORKTREE_ADMIN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn admin_lock() -> std::sync::MutexGuard<'static, ()> {
    // A poisoned lock only means another worker panicked; the guarded data is ().
    WORKTREE_ADMIN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A repository and the ref of one line in it.
#[derive(Debug, Clone)]
pub struct LineSource {
    /// Local repository directory.
    pub repo: PathBuf,
    /// Branch, tag or commit.
    pub git_ref: String,
}

impl LineSource {
    /// The source of a configured line; only local repositories (paths) are read directly:
    /// [`localise`] first replaces remote sources by their mirrors in the cache.
    pub fn of(line: &distro_config::Line) -> Result<LineSource, PatchError> {
        let git = line
            .source
            .git
            .strip_prefix("file://")
            .unwrap_or(&line.source.git);
        let repo = PathBuf::from(git);
        if !repo.exists() {
            return Err(PatchError::invalid(
                format!("line {}: source repository {} is not a local path (and was not fetched into the source cache)", line.version, line.source.git),
                "`distro patches` and `distro matrix` fetch remote sources into out/sources/; elsewhere, mirror the repository locally (git clone --mirror) and point source.git at the mirror",
            ));
        }
        Ok(LineSource {
            repo,
            git_ref: line.source.git_ref.clone(),
        })
    }

    /// The full commit id of the ref.
    pub fn commit(&self) -> Result<String, PatchError> {
        let mut c = Cmd::git(format!(
            "resolve ref {} of {}",
            self.git_ref,
            self.repo.display()
        ));
        c.cwd(&self.repo)
            .args(["rev-parse", "--verify"])
            .arg(format!("{}^{{commit}}", self.git_ref));
        Ok(c.stdout()?.trim().to_string())
    }

    /// The content of `path` at the ref, or None when it does not exist there.
    pub fn read(&self, path: &str) -> Result<Option<String>, PatchError> {
        let mut c = Cmd::git(format!("read {path} at {}", self.git_ref));
        c.cwd(&self.repo)
            .arg("show")
            .arg(format!("{}:{path}", self.git_ref));
        let out = c.output()?;
        if out.status.success() {
            Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
        } else {
            // Distinguish a missing file from a missing ref.
            self.commit()?;
            Ok(None)
        }
    }

    /// Writes the tree at the ref into `dest` (created; must not exist or be empty) as plain
    /// files, without a `.git`.
    pub fn export(&self, dest: &Path) -> Result<(), PatchError> {
        std::fs::create_dir_all(dest).map_err(|e| PatchError::io(dest, e))?;
        let archive =
            tempfile::NamedTempFile::new().map_err(|e| PatchError::io(std::env::temp_dir(), e))?;
        let mut c = Cmd::git(format!(
            "export the source of {} at {}",
            self.repo.display(),
            self.git_ref
        ));
        c.cwd(&self.repo)
            .args(["archive", "--format=tar", "-o"])
            .arg(archive.path())
            .arg(&self.git_ref);
        c.run()?;
        let mut t = Cmd::new("tar", "unpack the exported source tree");
        t.arg("-xf").arg(archive.path()).arg("-C").arg(dest);
        t.run()?;
        Ok(())
    }

    /// A detached worktree of the ref at `dir` (which must not exist).
    pub fn worktree(&self, dir: &Path) -> Result<Worktree, PatchError> {
        let mut c = Cmd::git(format!("check out {} in its own worktree", self.git_ref));
        c.cwd(&self.repo)
            .args(["worktree", "add", "--detach", "--quiet"])
            .arg(dir)
            .arg(&self.git_ref);
        {
            let _guard = admin_lock();
            c.run()?;
        }
        Ok(Worktree {
            repo: self.repo.clone(),
            dir: dir.to_path_buf(),
            keep: std::cell::Cell::new(false),
        })
    }
}

/// A worktree removed (with its administrative files) when dropped, unless kept.
#[derive(Debug)]
pub struct Worktree {
    repo: PathBuf,
    /// Its directory.
    pub dir: PathBuf,
    keep: std::cell::Cell<bool>,
}

/// Removes the worktree `dir` of `repo` (with its administrative files).
pub fn remove_worktree(repo: &Path, dir: &Path) -> Result<(), PatchError> {
    let mut c = Cmd::git("remove the worktree");
    c.cwd(repo).args(["worktree", "remove", "--force"]).arg(dir);
    let _guard = admin_lock();
    c.run()?;
    Ok(())
}

impl Worktree {
    /// Leaves the worktree in place when dropped (for the maintainer to resolve a conflict).
    pub fn keep(&self) {
        self.keep.set(true);
    }

    /// Commits everything in the worktree (so a later `git apply --3way` has a clean index).
    pub fn commit_all(&self, message: &str) -> Result<(), PatchError> {
        let mut add = Cmd::git("stage the applied series in the worktree");
        add.cwd(&self.dir).args(["add", "-A"]);
        add.run()?;
        let mut c = Cmd::git("commit the applied series in the worktree");
        c.cwd(&self.dir).args([
            "commit",
            "--quiet",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ]);
        c.run()?;
        Ok(())
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        if self.keep.get() {
            return;
        }
        let mut c = Cmd::git("remove the temporary worktree");
        c.cwd(&self.repo)
            .args(["worktree", "remove", "--force"])
            .arg(&self.dir);
        let _guard = admin_lock();
        // Best effort: when removal fails, delete the directory and prune the stale record.
        if !c.output().is_ok_and(|o| o.status.success()) {
            let _ = std::fs::remove_dir_all(&self.dir);
            let mut p = Cmd::git("prune stale worktree records");
            p.cwd(&self.repo).args(["worktree", "prune"]);
            let _ = p.output();
        }
    }
}

/// Whether a line's `source.git` names a remote repository (a URL, including `file://`, or an
/// scp-style `user@host:path`) rather than a local path.
pub fn is_remote(git: &str) -> bool {
    git.contains("://") || (git.contains('@') && git.contains(':') && !Path::new(git).exists())
}

/// The bare mirror of `url` in `cache`: `<cache>/<first 16 hex of sha256(url)>.git`.
pub fn mirror_dir(cache: &Path, url: &str) -> PathBuf {
    cache.join(format!(
        "{}.git",
        &distro_hostio::sha256_hex(url.as_bytes())[..16]
    ))
}

/// A remote source brought into the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mirrored {
    /// The URL.
    pub url: String,
    /// Its bare mirror.
    pub mirror: PathBuf,
    /// `cloned` (first time) or `updated` (`git fetch`).
    pub action: String,
}

/// Brings `url` into `cache` as a bare mirror: `git clone --mirror` the first time, then
/// `git fetch --prune` (all refs, so tags and branches of every line are there).
pub fn mirror(url: &str, cache: &Path) -> Result<Mirrored, PatchError> {
    std::fs::create_dir_all(cache).map_err(|e| PatchError::io(cache, e))?;
    let dir = mirror_dir(cache, url);
    let action = if dir.join("HEAD").is_file() {
        let mut c = Cmd::git(format!("update the mirror of {url}"));
        c.cwd(&dir).args(["fetch", "--prune", "--quiet", "origin"]);
        c.run()?;
        "updated"
    } else {
        // Clone beside the final name and rename, so an interrupted clone leaves no half
        // mirror that later runs would take as complete.
        let staging = tempfile::Builder::new()
            .prefix(".mirror-")
            .tempdir_in(cache)
            .map_err(|e| PatchError::io(cache, e))?;
        let tmp = staging.path().join("repo.git");
        let mut c = Cmd::git(format!("fetch the source repository {url}"));
        c.cwd(cache)
            .args(["clone", "--mirror", "--quiet", "--", url])
            .arg(&tmp);
        c.run()?;
        std::fs::rename(&tmp, &dir).map_err(|e| PatchError::io(&dir, e))?;
        "cloned"
    };
    Ok(Mirrored {
        url: url.to_string(),
        mirror: dir,
        action: action.into(),
    })
}

/// Replaces every remote `source.git` of `dist` by its mirror in `cache`, fetching each URL
/// once; local paths (and local mirrors, for air-gapped sites) are left as they are.
pub fn localise(
    dist: &mut distro_config::Distribution,
    cache: &Path,
) -> Result<Vec<Mirrored>, PatchError> {
    let mut done: Vec<Mirrored> = Vec::new();
    for line in &mut dist.lines {
        if !is_remote(&line.source.git) {
            continue;
        }
        let m = match done.iter().find(|m| m.url == line.source.git) {
            Some(m) => m.clone(),
            None => {
                let m = mirror(&line.source.git, cache)?;
                done.push(m.clone());
                m
            }
        };
        line.source.git = m.mirror.to_string_lossy().into_owned();
    }
    Ok(done)
}
