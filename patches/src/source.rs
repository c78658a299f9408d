//! A line's upstream source: reading files at its ref, exporting a plain tree, worktrees.

use std::path::{Path, PathBuf};

use crate::cmd::Cmd;
use crate::error::PatchError;

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
    /// The source of a configured line; only local repositories (paths) are read directly.
    pub fn of(line: &distro_config::Line) -> Result<LineSource, PatchError> {
        let git = line
            .source
            .git
            .strip_prefix("file://")
            .unwrap_or(&line.source.git);
        let repo = PathBuf::from(git);
        if !repo.exists() {
            return Err(PatchError::invalid(
                format!("line {}: source repository {} is not a local path", line.version, line.source.git),
                "mirror the repository locally (git clone --mirror) and point source.git at the mirror",
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
        })
    }
}

/// A worktree removed (with its administrative files) when dropped.
#[derive(Debug)]
pub struct Worktree {
    repo: PathBuf,
    /// Its directory.
    pub dir: PathBuf,
}

impl Worktree {
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
