//! Running a crate's real binary from its tests.
//!
//! `env!("CARGO_BIN_EXE_<name>")` is only defined inside the tests of the crate that has the
//! binary, so the path is a parameter: `Bin::new(env!("CARGO_BIN_EXE_distro"))`. Every failure
//! message shows the arguments, the exit status, stdout and stderr.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A binary under test with the environment every run of it gets.
#[derive(Clone, Debug)]
pub struct Bin {
    path: PathBuf,
    set: Vec<(OsString, OsString)>,
    removed: Vec<OsString>,
    dir: Option<PathBuf>,
}

impl Bin {
    /// The binary at `path` (a test's `env!("CARGO_BIN_EXE_<name>")`), run with the test's
    /// environment until [`Bin::env`] or [`Bin::env_remove`] say otherwise.
    pub fn new(path: impl AsRef<Path>) -> Bin {
        Bin {
            path: path.as_ref().to_path_buf(),
            set: Vec::new(),
            removed: Vec::new(),
            dir: None,
        }
    }

    /// Sets `key=value` for every run.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Bin {
        self.set
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Removes `key` from the environment of every run.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Bin {
        self.removed.push(key.as_ref().to_os_string());
        self
    }

    /// Runs in `dir` instead of the test's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Bin {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A `Command` for the binary with the environment applied and stdin from /dev/null; add
    /// arguments, more environment or pipes and run it with [`run`] or [`ok`].
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.path);
        for key in &self.removed {
            c.env_remove(key);
        }
        for (key, value) in &self.set {
            c.env(key, value);
        }
        if let Some(dir) = &self.dir {
            c.current_dir(dir);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `BIN ARGS` and returns its output whatever the exit status.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run(self.cmd().args(args))
    }

    /// Runs `BIN ARGS`, asserting success; returns stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert_ok(&out, &self.describe(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `BIN ARGS`, asserting failure; returns stdout followed by stderr.
    pub fn fails<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "{} should have failed:\n{}",
            self.describe(args),
            report(&out)
        );
        format!("{}{}", stdout(&out), stderr(&out))
    }

    /// Runs `BIN ARGS --format json`, asserting success; returns stdout parsed as JSON.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut all: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
        all.extend(["--format".into(), "json".into()]);
        let text = self.ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} printed no JSON ({e}):\n{text}", self.describe(&all)))
    }

    fn describe<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string());
        let args: Vec<_> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        format!("`{name} {}`", args.join(" "))
    }
}

/// Runs `cmd` (`Command::output`: stdin is /dev/null unless the caller set it) and returns its output
/// whatever the exit status; panics only when it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()))
}

/// Runs `cmd` with `input` written to its stdin (then closed) and returns its output whatever
/// the exit status; panics only when it cannot be started or fed.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .unwrap_or_else(|e| panic!("writing the stdin of {:?}: {e}", cmd.get_program()));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {:?}: {e}", cmd.get_program()))
}

/// Runs `cmd`, asserting success (the message shows the command, status, stdout and stderr);
/// returns its output.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert_ok(&out, &format!("{cmd:?}"));
    out
}

/// Asserts that `out` (of `what`) succeeded, showing its status, stdout and stderr if not.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", report(out));
}

/// stdout of `out`, lossily as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of `out`, lossily as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit status, stdout and stderr of `out`, for a failure message.
pub fn report(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}
