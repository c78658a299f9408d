//! The one subprocess runner.
//!
//! A [`Cmd`] is a program, its arguments and the reason it runs ("resolve the line's source
//! ref"). Running it never hangs on a full pipe (stdout and stderr are drained on their own
//! threads, stdin is fed on another), and a failure is a [`CmdError`] that shows the reason, the
//! command line (shell-quoted, so it can be pasted), the working directory, the exit status and
//! the last [`STDERR_TAIL_LINES`] lines of stderr (each cut at [`STDERR_TAIL_LINE_BYTES`]).
//! A long-running process (a server under test, a relay) is started with [`Cmd::spawn`] or
//! [`Cmd::spawn_logged`], whose log's tail ([`log_tail`]) reads like a failure's stderr tail.
//!
//! git always runs through [`Cmd::git`]: no system or global configuration, a fixed author and
//! committer, the C locale, no pager, no prompts, no inherited `GIT_DIR`-style variables and no
//! automatic gc, so its results depend on the repository alone.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Lines of stderr kept in a failure message.
pub const STDERR_TAIL_LINES: usize = 20;
/// Longest line of stderr kept in a failure message; longer ones are cut and marked.
pub const STDERR_TAIL_LINE_BYTES: usize = 400;
/// Bytes of stderr kept while it is also shown live ([`Cmd::run_streaming`]).
const STREAMED_STDERR_KEPT: usize = 64 * 1024;

/// Author and committer of every commit git makes for the distro (scratch worktrees, snapshots).
pub const GIT_IDENTITY: (&str, &str) = ("distro", "distro@localhost");

/// Variables that would point git at another repository, index or object store than the one
/// the command names.
const GIT_REPO_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_COMMON_DIR",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
];

/// A subprocess failed to start, failed, or ran out of time.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started (not installed, not executable, bad directory).
    #[error("{why}: cannot start `{command}`: {source}\n  help: {help}")]
    Spawn {
        /// Why it was to run.
        why: String,
        /// The command line.
        command: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
        /// What to do about it.
        help: String,
    },
    /// It ran and exited unsuccessfully (non-zero, or killed by a signal).
    #[error("{why}: `{command}`{} failed ({status}){}{}", in_dir(.dir), tail_block(.stderr_tail), help_line(.help))]
    Failed {
        /// Why it ran.
        why: String,
        /// The command line.
        command: String,
        /// Its working directory, when set.
        dir: Option<PathBuf>,
        /// Exit status (shown as the OS reports it: `exit status: 1`, `signal: 9 (SIGKILL)`).
        status: ExitStatus,
        /// The last lines of its stderr, each prefixed `  | `.
        stderr_tail: String,
        /// What to do about it (empty when there is nothing general to say).
        help: String,
    },
    /// It did not exit within its time limit and was killed.
    #[error("{why}: `{command}`{} did not exit within {}s and was killed{}", in_dir(.dir), .limit.as_secs_f64(), tail_block(.stderr_tail))]
    TimedOut {
        /// Why it ran.
        why: String,
        /// The command line.
        command: String,
        /// Its working directory, when set.
        dir: Option<PathBuf>,
        /// The limit.
        limit: Duration,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// The log file a background command was to write to could not be created.
    #[error("{why}: cannot create the log {} for `{command}`: {source}", path.display())]
    Log {
        /// Why it was to run.
        why: String,
        /// The command line.
        command: String,
        /// The log file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for it, or reading its output, failed.
    #[error("{why}: `{command}`: {source}")]
    Io {
        /// Why it ran.
        why: String,
        /// The command line.
        command: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

fn in_dir(dir: &Option<PathBuf>) -> String {
    dir.as_ref()
        .map(|d| format!(" (in {})", d.display()))
        .unwrap_or_default()
}

fn tail_block(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n{tail}")
    }
}

fn help_line(help: &str) -> String {
    if help.is_empty() {
        String::new()
    } else {
        format!("\n  help: {help}")
    }
}

/// The last [`STDERR_TAIL_LINES`] non-empty-trailing lines of `stderr`, each cut at
/// [`STDERR_TAIL_LINE_BYTES`] bytes and prefixed `  | ` for an error message; empty when
/// `stderr` has no text.
pub fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    let mut out = Vec::with_capacity(lines.len() - start + 1);
    if start > 0 {
        out.push(format!("  | ... ({start} earlier lines)"));
    }
    for line in &lines[start..] {
        let line = line.trim_end_matches('\r');
        if line.len() > STDERR_TAIL_LINE_BYTES {
            let mut cut = STDERR_TAIL_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(format!("  | {} [...]", &line[..cut]));
        } else {
            out.push(format!("  | {line}"));
        }
    }
    out.join("\n")
}

/// [`tail`] of a log file (a background command's, see [`Cmd::spawn_logged`]); empty when it
/// cannot be read, since it only adds detail to a message about something else.
pub fn log_tail(path: &Path) -> String {
    std::fs::read(path).map(|b| tail(&b)).unwrap_or_default()
}

/// One argument as a POSIX shell would need it to read it back unchanged.
fn shell_quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,^{}".contains(&b));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Where a child's stderr goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stderr {
    /// Captured whole into the [`Output`].
    Capture,
    /// Shown on this process's stderr as it comes, and its tail kept for a failure message.
    Tee,
}

/// A program, its arguments, and why it runs.
pub struct Cmd {
    why: String,
    /// Set by [`Cmd::help`]; without it a start failure says to install the program.
    help: Option<String>,
    inner: Command,
    dir: Option<PathBuf>,
}

impl Cmd {
    /// `program`, run in order to `why` (a phrase: "check whether the patch applies cleanly").
    /// Its stdin is empty unless input is given ([`Cmd::output_with_input`]).
    pub fn new(program: impl AsRef<OsStr>, why: impl Into<String>) -> Self {
        Cmd {
            why: why.into(),
            help: None,
            inner: Command::new(program),
            dir: None,
        }
    }

    /// git, set up so that its results depend on the repository alone: no system or global
    /// configuration (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`), the fixed
    /// [`GIT_IDENTITY`] as author and committer, `LC_ALL=C` (its messages are read), no pager,
    /// no terminal or askpass prompt, none of the variables that redirect it to another
    /// repository, and no automatic gc or maintenance after the many small commits of scratch
    /// worktrees.
    pub fn git(why: impl Into<String>) -> Self {
        let mut c = Cmd::new("git", why);
        let (name, email) = GIT_IDENTITY;
        c.inner
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", email)
            .env("GIT_COMMITTER_NAME", name)
            .env("GIT_COMMITTER_EMAIL", email)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .env("SSH_ASKPASS", "")
            .env("GIT_PAGER", "cat")
            .env("PAGER", "cat")
            .env("LC_ALL", "C")
            .env_remove("LANGUAGE");
        for var in GIT_REPO_VARS {
            c.inner.env_remove(var);
        }
        c.args([
            "--no-pager",
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgSign=false",
            "-c",
            "tag.gpgSign=false",
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
        ]);
        c
    }

    /// [`Cmd::git`] run in `tree`, treating it as a plain directory unless it is itself a
    /// repository: discovery stops at its parent (`GIT_CEILING_DIRECTORIES`), so an enclosing
    /// repository (an output directory inside a checkout) is never touched.
    pub fn git_in_plain_tree(why: impl Into<String>, tree: &Path) -> Self {
        let mut c = Cmd::git(why);
        if let Some(parent) = tree.parent() {
            c.inner.env("GIT_CEILING_DIRECTORIES", parent);
        }
        c.cwd(tree);
        c
    }

    /// What to tell the user when the program cannot be started or fails (without it, a start
    /// failure says to install the program, and a failure has no help line).
    pub fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets the working directory (named in failure messages).
    pub fn cwd(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.inner.current_dir(dir.as_ref());
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.inner.env(key, value);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.inner.env_remove(key);
        self
    }

    /// Fixes the author and committer dates of the commits this git command makes (RFC 3339 or
    /// git's own formats), for reproducible commit ids.
    pub fn commit_date(&mut self, when: &str) -> &mut Self {
        self.inner
            .env("GIT_AUTHOR_DATE", when)
            .env("GIT_COMMITTER_DATE", when);
        self
    }

    /// Why it runs.
    pub fn why(&self) -> &str {
        &self.why
    }

    /// The command line, shell-quoted, for messages and provenance (environment not shown).
    pub fn display(&self) -> String {
        let mut parts = vec![shell_quote(self.inner.get_program())];
        parts.extend(self.inner.get_args().map(shell_quote));
        parts.join(" ")
    }

    /// The arguments, for records that list them.
    pub fn get_args(&self) -> Vec<OsString> {
        self.inner.get_args().map(OsStr::to_os_string).collect()
    }

    /// Runs it to completion and returns its output whatever the exit status (for tools whose
    /// status is a verdict); only a start or I/O failure is an error.
    pub fn output(&mut self) -> Result<Output, CmdError> {
        self.exec(None, Stderr::Capture, None)
    }

    /// Runs it with `input` on its stdin and returns its output whatever the exit status.
    pub fn output_with_input(&mut self, input: &[u8]) -> Result<Output, CmdError> {
        self.exec(Some(input), Stderr::Capture, None)
    }

    /// Runs it with a time limit and returns its output whatever the exit status; a run past
    /// the limit is killed and is [`CmdError::TimedOut`].
    pub fn output_with_timeout(&mut self, limit: Duration) -> Result<Output, CmdError> {
        self.exec(None, Stderr::Capture, Some(limit))
    }

    /// Runs it and fails unless it exits 0.
    pub fn run(&mut self) -> Result<Output, CmdError> {
        let out = self.output()?;
        self.check(out)
    }

    /// Runs it and returns its stdout as text (lossy UTF-8, as is), failing unless it exits 0.
    pub fn stdout(&mut self) -> Result<String, CmdError> {
        let out = self.run()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs it and returns its stdout trimmed, failing unless it exits 0.
    pub fn stdout_text(&mut self) -> Result<String, CmdError> {
        Ok(self.stdout()?.trim().to_string())
    }

    /// Runs it with stdout captured and stderr shown live on this process's stderr (long
    /// builds), or captured when `quiet`; fails unless it exits 0, with the tail of stderr
    /// either way.
    pub fn run_streaming(&mut self, quiet: bool) -> Result<Output, CmdError> {
        let mode = if quiet { Stderr::Capture } else { Stderr::Tee };
        let out = self.exec(None, mode, None)?;
        self.check(out)
    }

    /// Starts it in the background (long-running servers, relays) with stdin empty, stdout and
    /// stderr as given, and returns the child: the caller waits for it or kills it. A start
    /// failure is [`CmdError::Spawn`], as for a run to completion.
    pub fn spawn(&mut self, stdout: Stdio, stderr: Stdio) -> Result<Child, CmdError> {
        tracing::debug!("{} (background): {}", self.why, self.display());
        self.inner
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        self.inner.spawn().map_err(|source| CmdError::Spawn {
            why: self.why.clone(),
            command: self.display(),
            source,
            help: self.spawn_help(),
        })
    }

    /// [`Cmd::spawn`] with stdout and stderr both going to `log` (created, or truncated), so
    /// that a failure later can show its tail ([`log_tail`]).
    pub fn spawn_logged(&mut self, log: &Path) -> Result<Child, CmdError> {
        let log_error = |source| CmdError::Log {
            why: self.why.clone(),
            command: self.display(),
            path: log.to_path_buf(),
            source,
        };
        let out = std::fs::File::create(log).map_err(log_error)?;
        let err = out.try_clone().map_err(log_error)?;
        self.spawn(out.into(), err.into())
    }

    /// The error for a run that exited unsuccessfully.
    pub fn failure(&self, out: &Output) -> CmdError {
        self.failed(out.status, &out.stderr)
    }

    fn failed(&self, status: ExitStatus, stderr: &[u8]) -> CmdError {
        CmdError::Failed {
            why: self.why.clone(),
            command: self.display(),
            dir: self.dir.clone(),
            status,
            stderr_tail: tail(stderr),
            help: self.help.clone().unwrap_or_default(),
        }
    }

    fn spawn_help(&self) -> String {
        self.help.clone().unwrap_or_else(|| {
            let program = self.inner.get_program();
            format!(
                "install `{}`, or put it on PATH",
                Path::new(program)
                    .file_name()
                    .unwrap_or(program)
                    .to_string_lossy()
            )
        })
    }

    fn check(&self, out: Output) -> Result<Output, CmdError> {
        if out.status.success() {
            Ok(out)
        } else {
            Err(self.failure(&out))
        }
    }

    fn io_error(&self, source: std::io::Error) -> CmdError {
        CmdError::Io {
            why: self.why.clone(),
            command: self.display(),
            source,
        }
    }

    /// Spawns with every pipe drained on its own thread, so neither a chatty child nor a large
    /// input can deadlock, and waits (up to `limit`).
    fn exec(
        &mut self,
        input: Option<&[u8]>,
        stderr: Stderr,
        limit: Option<Duration>,
    ) -> Result<Output, CmdError> {
        tracing::debug!("{}: {}", self.why, self.display());
        self.inner
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.inner.spawn().map_err(|source| CmdError::Spawn {
            why: self.why.clone(),
            command: self.display(),
            source,
            help: self.spawn_help(),
        })?;
        let result = std::thread::scope(|s| {
            if let (Some(data), Some(mut pipe)) = (input, child.stdin.take()) {
                s.spawn(move || {
                    // A child that exits early closes the pipe; its status says what went wrong.
                    let _ = pipe.write_all(data);
                });
            }
            let out_pipe = child.stdout.take();
            let out = s.spawn(move || read_all(out_pipe));
            let err_pipe = child.stderr.take();
            let err = s.spawn(move || match stderr {
                Stderr::Capture => read_all(err_pipe),
                Stderr::Tee => tee_tail(err_pipe),
            });
            let status = wait(&mut child, limit);
            let stdout = out.join().unwrap_or_else(|_| Ok(Vec::new()));
            let stderr = err.join().unwrap_or_else(|_| Ok(Vec::new()));
            (status, stdout, stderr)
        });
        let (status, stdout, stderr) = result;
        let stderr = stderr.map_err(|e| self.io_error(e))?;
        match status.map_err(|e| self.io_error(e))? {
            Some(status) => Ok(Output {
                status,
                stdout: stdout.map_err(|e| self.io_error(e))?,
                stderr,
            }),
            None => Err(CmdError::TimedOut {
                why: self.why.clone(),
                command: self.display(),
                dir: self.dir.clone(),
                limit: limit.unwrap_or_default(),
                stderr_tail: tail(&stderr),
            }),
        }
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cmd({}: {})", self.why, self.display())
    }
}

/// Waits for `child`; `None` when it was killed at `limit`. (Only the child is killed: a
/// grandchild that keeps its pipes open delays the return until it exits.)
fn wait(child: &mut Child, limit: Option<Duration>) -> std::io::Result<Option<ExitStatus>> {
    let Some(limit) = limit else {
        return child.wait().map(Some);
    };
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() >= limit {
            // Already exited between the check and the kill is fine: wait reaps it either way.
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_all(pipe: Option<impl Read>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        p.read_to_end(&mut buf)?;
    }
    Ok(buf)
}

/// Copies the child's stderr to ours as it comes and returns its last
/// [`STREAMED_STDERR_KEPT`] bytes.
fn tee_tail(pipe: Option<impl Read>) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let Some(mut p) = pipe else {
        return Ok(kept);
    };
    let mut buf = [0u8; 8192];
    let mut ours = std::io::stderr();
    loop {
        let n = match p.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Our stderr closed is no reason to fail the child.
        let _ = ours.write_all(&buf[..n]);
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * STREAMED_STDERR_KEPT {
            kept.drain(..kept.len() - STREAMED_STDERR_KEPT);
        }
    }
    if kept.len() > STREAMED_STDERR_KEPT {
        kept.drain(..kept.len() - STREAMED_STDERR_KEPT);
    }
    Ok(kept)
}
