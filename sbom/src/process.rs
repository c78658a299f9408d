//! Running the external tools this crate drives (cargo, objcopy, cargo-deny), each with a reason.

use std::process::{Command, Output};

use crate::SbomError;

/// Runs `cmd`, explaining `why` and `help` if it cannot start or exits non-zero.
pub(crate) fn run(mut cmd: Command, why: &str, help: &str) -> Result<Output, SbomError> {
    let line = render(&cmd);
    tracing::debug!("{why}: {line}");
    let out = cmd.output().map_err(|e| SbomError::Command {
        why: why.to_string(),
        command: line.clone(),
        status: format!("could not start: {e}"),
        stderr_tail: String::new(),
        help: help.to_string(),
    })?;
    if !out.status.success() {
        return Err(failed(&line, why, help, &out));
    }
    Ok(out)
}

/// Runs `cmd` and returns its output whatever the exit status (for tools whose exit status is a verdict).
pub(crate) fn run_any_status(mut cmd: Command, why: &str, help: &str) -> Result<Output, SbomError> {
    let line = render(&cmd);
    tracing::debug!("{why}: {line}");
    cmd.output().map_err(|e| SbomError::Command {
        why: why.to_string(),
        command: line,
        status: format!("could not start: {e}"),
        stderr_tail: String::new(),
        help: help.to_string(),
    })
}

/// The error for a command that ran and failed.
pub(crate) fn failed(line: &str, why: &str, help: &str, out: &Output) -> SbomError {
    SbomError::Command {
        why: why.to_string(),
        command: line.to_string(),
        status: format!("failed with {}", out.status),
        stderr_tail: tail(&String::from_utf8_lossy(&out.stderr), 20),
        help: help.to_string(),
    }
}

/// The command line, for messages.
pub(crate) fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}
