//! Subprocesses (git, cargo, tar): each says why it runs, and its failure shows the command,
//! its exit status and the tail of its stderr.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::PatchError;

/// Lines of stderr kept in error messages.
const STDERR_TAIL_LINES: usize = 20;

/// A command and the reason it runs.
pub(crate) struct Cmd {
    why: String,
    inner: Command,
    display: String,
}

impl Cmd {
    /// `program` run for `why` (e.g. "check whether the patch applies cleanly").
    pub(crate) fn new(program: &str, why: impl Into<String>) -> Self {
        let mut inner = Command::new(program);
        inner.stdin(Stdio::null());
        Cmd {
            why: why.into(),
            inner,
            display: program.to_string(),
        }
    }

    /// git with a fixed identity and no user or system configuration that changes results.
    pub(crate) fn git(why: impl Into<String>) -> Self {
        let mut c = Cmd::new("git", why);
        c.inner
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "distro-patches")
            .env("GIT_AUTHOR_EMAIL", "distro-patches@localhost")
            .env("GIT_COMMITTER_NAME", "distro-patches")
            .env("GIT_COMMITTER_EMAIL", "distro-patches@localhost")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
        // No automatic gc/maintenance after the many small commits in scratch worktrees.
        c.args([
            "-c",
            "core.autocrlf=false",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
        ]);
        c
    }

    /// git that treats `tree` as a plain directory unless it is itself a repository: discovery
    /// stops at its parent, so an enclosing repository (e.g. an output dir inside a checkout)
    /// is never touched.
    pub(crate) fn git_in_plain_tree(why: impl Into<String>, tree: &Path) -> Self {
        let mut c = Cmd::git(why);
        if let Some(parent) = tree.parent() {
            c.inner.env("GIT_CEILING_DIRECTORIES", parent);
        }
        c.cwd(tree);
        c
    }

    pub(crate) fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        let a = a.as_ref();
        self.display.push(' ');
        self.display.push_str(&a.to_string_lossy());
        self.inner.arg(a);
        self
    }

    pub(crate) fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    pub(crate) fn cwd(&mut self, dir: &Path) -> &mut Self {
        self.inner.current_dir(dir);
        self
    }

    /// Runs it and returns its output whatever the exit status (only a spawn failure errs).
    pub(crate) fn output(&mut self) -> Result<Output, PatchError> {
        self.inner.output().map_err(|e| PatchError::Command {
            why: self.why.clone(),
            command: self.display.clone(),
            status: format!("could not start: {e}"),
            stderr: String::new(),
        })
    }

    /// Runs it with `input` on its stdin and returns its output whatever the exit status.
    pub(crate) fn output_with_input(&mut self, input: &[u8]) -> Result<Output, PatchError> {
        use std::io::Write as _;
        let spawn_err = |e: std::io::Error, cmd: &Cmd| PatchError::Command {
            why: cmd.why.clone(),
            command: cmd.display.clone(),
            status: format!("could not start: {e}"),
            stderr: String::new(),
        };
        self.inner
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.inner.spawn().map_err(|e| spawn_err(e, self))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A child that exits early closes the pipe; its status tells what went wrong.
            let _ = stdin.write_all(input);
        }
        child.wait_with_output().map_err(|e| spawn_err(e, self))
    }

    /// Runs it and fails unless it exits 0.
    pub(crate) fn run(&mut self) -> Result<Output, PatchError> {
        let out = self.output()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(self.failure(&out))
        }
    }

    /// Runs it and returns stdout as text, failing unless it exits 0.
    pub(crate) fn stdout(&mut self) -> Result<String, PatchError> {
        let out = self.run()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The error describing a failed run.
    pub(crate) fn failure(&self, out: &Output) -> PatchError {
        PatchError::Command {
            why: self.why.clone(),
            command: self.display.clone(),
            status: out.status.to_string(),
            stderr: tail(&out.stderr),
        }
    }
}

/// The last lines of a process's stderr, indented for an error message.
pub(crate) fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
