//! Running outside tools (`ip`, `tc`, `iptables`, `curl`, `openssl`, `runc`, `umoci`, the
//! released binaries): every command says why it runs, and its failure shows the command, its
//! exit status and the tail of its stderr.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A command that failed.
#[derive(Debug, thiserror::Error)]
#[error("{why}: `{command}` {status}{tail}")]
pub struct CmdError {
    /// Why it ran.
    pub why: String,
    /// The command line.
    pub command: String,
    /// How it ended.
    pub status: String,
    /// The last lines of its stderr (prefixed with a newline when present).
    pub tail: String,
}

/// A command with the reason it runs.
pub struct Cmd {
    why: String,
    cmd: Command,
    line: String,
}

impl Cmd {
    /// `program` run for `why`.
    pub fn new(program: impl AsRef<std::ffi::OsStr>, why: impl Into<String>) -> Cmd {
        let p = program.as_ref();
        Cmd {
            why: why.into(),
            line: p.to_string_lossy().into_owned(),
            cmd: Command::new(p),
        }
    }

    /// `ip netns exec NS program` run for `why`.
    pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>, why: impl Into<String>) -> Cmd {
        let mut c = Cmd::new("ip", why);
        c.args(["netns", "exec", ns]);
        c.arg(program);
        c
    }

    /// One argument.
    pub fn arg(&mut self, a: impl AsRef<std::ffi::OsStr>) -> &mut Cmd {
        let a = a.as_ref();
        self.line.push(' ');
        self.line.push_str(&a.to_string_lossy());
        self.cmd.arg(a);
        self
    }

    /// Several arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// The command line, for messages.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Runs it to completion; success or a [`CmdError`].
    pub fn run(&mut self) -> Result<Output, CmdError> {
        let out = self.output()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(self.error(&out.status.to_string(), &out.stderr))
        }
    }

    /// Runs it to completion; the output whatever the status (a spawn failure is an error).
    pub fn output(&mut self) -> Result<Output, CmdError> {
        self.cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.error(&format!("could not start: {e}"), &[]))
    }

    /// Starts it in the background with stdout and stderr going to `log`.
    pub fn spawn_logged(&mut self, log: &Path) -> Result<std::process::Child, CmdError> {
        let f = std::fs::File::create(log)
            .map_err(|e| self.error(&format!("cannot create log {}: {e}", log.display()), &[]))?;
        let f2 = f
            .try_clone()
            .map_err(|e| self.error(&format!("cannot reopen log {}: {e}", log.display()), &[]))?;
        self.cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .map_err(|e| self.error(&format!("could not start: {e}"), &[]))
    }

    /// Starts it in the background with stdout piped (stderr discarded).
    pub fn spawn_piped(&mut self) -> Result<std::process::Child, CmdError> {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| self.error(&format!("could not start: {e}"), &[]))
    }

    fn error(&self, status: &str, stderr: &[u8]) -> CmdError {
        CmdError {
            why: self.why.clone(),
            command: self.line.clone(),
            status: status.to_string(),
            tail: tail(stderr),
        }
    }
}

/// The last 8 lines of `bytes`, newline-prefixed, or empty.
pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let from = lines.len().saturating_sub(8);
    format!("\n  {}", lines[from..].join("\n  "))
}

/// The last lines of a log file, for failure messages.
pub fn log_tail(path: &Path) -> String {
    std::fs::read(path).map(|b| tail(&b)).unwrap_or_default()
}
