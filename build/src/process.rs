//! Subprocesses that say why they run, and whose failures show the command and its stderr.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::BuildError;

/// A command with the reason it runs.
pub struct Cmd {
    why: String,
    inner: Command,
    help: String,
}

impl Cmd {
    /// `program`, run in order to `why` (e.g. "resolve the line's ref").
    pub fn new(program: impl AsRef<OsStr>, why: impl Into<String>) -> Self {
        Cmd {
            why: why.into(),
            inner: Command::new(program),
            help: "install it, or put it on PATH".into(),
        }
    }

    /// What to tell the user when the program cannot be started.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.inner.arg(arg);
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.inner.current_dir(dir);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.inner.env(k, v);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Self {
        self.inner.env_remove(k);
        self
    }

    /// The command line as text, for messages and provenance.
    pub fn display(&self) -> String {
        let mut parts = vec![self.inner.get_program().to_string_lossy().into_owned()];
        parts.extend(
            self.inner
                .get_args()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        parts.join(" ")
    }

    fn spawn_error(&self, source: std::io::Error) -> BuildError {
        BuildError::Spawn {
            why: self.why.clone(),
            program: self.inner.get_program().to_string_lossy().into_owned(),
            source,
            help: self.help.clone(),
        }
    }

    fn failure(&self, status: String, stderr: &[u8]) -> BuildError {
        let text = String::from_utf8_lossy(stderr);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        BuildError::Command {
            why: self.why.clone(),
            command: self.display(),
            status,
            stderr_tail: tail,
        }
    }

    /// Runs to completion capturing stdout and stderr; fails on a non-zero exit.
    pub fn output(mut self) -> Result<Output, BuildError> {
        let out = self.inner.output().map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            return Err(self.failure(out.status.to_string(), &out.stderr));
        }
        Ok(out)
    }

    /// Runs and returns trimmed stdout.
    pub fn stdout_text(self) -> Result<String, BuildError> {
        let out = self.output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs with stdout captured and stderr passed through (or captured when `quiet`).
    pub fn run_streaming(mut self, quiet: bool) -> Result<Output, BuildError> {
        self.inner.stdout(Stdio::piped());
        self.inner.stderr(if quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        let child = self.inner.spawn().map_err(|e| self.spawn_error(e))?;
        let out = child.wait_with_output().map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            let tail = if quiet {
                out.stderr.clone()
            } else {
                b"(cargo's output is above)".to_vec()
            };
            return Err(self.failure(out.status.to_string(), &tail));
        }
        Ok(out)
    }

    /// Runs with a time limit, capturing output; the exit status is returned, not judged.
    pub fn output_with_timeout(mut self, limit: Duration) -> Result<Output, BuildError> {
        self.inner.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.inner.spawn().map_err(|e| self.spawn_error(e))?;
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if start.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(
                        self.failure(format!("no exit within {}s (killed)", limit.as_secs()), b"")
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(self.spawn_error(e)),
            }
        }
        child.wait_with_output().map_err(|e| self.spawn_error(e))
    }
}
