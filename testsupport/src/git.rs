//! Git fixtures: git run in a directory with a fixed identity, fixed dates and no user or system
//! configuration, so a fixture repository has the same commits on every machine.
//!
//! [`run`] panics with the command and git's stderr when git fails and returns stdout trimmed;
//! [`output`] is for a test that expects git to fail (or wants the raw output); [`command`] is
//! the configured `Command` for anything else (a `git daemon`, a clone into a path).

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The author and committer date of every commit made through this module, unless a test
/// names another with [`run_at`].
pub const DATE: &str = "2026-01-01T00:00:00Z";
/// The author and committer name.
pub const NAME: &str = "Upstream Dev";
/// The author and committer email.
pub const EMAIL: &str = "dev@upstream.example";

/// `git` in `dir` with the fixed identity, `date` as author and committer date, `main` as the
/// initial branch, no signing, and neither the system's nor the user's configuration.
pub fn command_at(dir: &Path, date: &str) -> Command {
    let mut c = Command::new("git");
    c.args([
        "-c",
        "init.defaultBranch=main",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "tag.gpgsign=false",
    ])
    .current_dir(dir)
    .stdin(Stdio::null())
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .env("GIT_CONFIG_GLOBAL", "/dev/null")
    .env("GIT_AUTHOR_NAME", NAME)
    .env("GIT_AUTHOR_EMAIL", EMAIL)
    .env("GIT_COMMITTER_NAME", NAME)
    .env("GIT_COMMITTER_EMAIL", EMAIL)
    .env("GIT_AUTHOR_DATE", date)
    .env("GIT_COMMITTER_DATE", date);
    c
}

/// [`command_at`] with the fixed [`DATE`].
pub fn command(dir: &Path) -> Command {
    command_at(dir, DATE)
}

/// Runs `git ARGS` in `dir` (see [`command_at`]) and returns its output whatever the exit
/// status: for a test that expects git to fail.
pub fn output_at(dir: &Path, args: &[&str], date: &str) -> Output {
    command_at(dir, date)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running git {args:?} in {}: {e}", dir.display()))
}

/// [`output_at`] with the fixed [`DATE`].
pub fn output(dir: &Path, args: &[&str]) -> Output {
    output_at(dir, args, DATE)
}

/// Runs `git ARGS` in `dir` with `date` as author and committer date; panics with the command
/// and git's stderr when it fails. Returns stdout, trimmed.
pub fn run_at(dir: &Path, args: &[&str], date: &str) -> String {
    let out = output_at(dir, args, date);
    assert!(
        out.status.success(),
        "git {args:?} in {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// [`run_at`] with the fixed [`DATE`].
pub fn run(dir: &Path, args: &[&str]) -> String {
    run_at(dir, args, DATE)
}

/// `git init -q -b main` in `dir` (created when missing).
pub fn init(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    run(dir, &["init", "-q", "-b", "main"]);
}

/// Stages everything in `dir` and commits it with `message` at `date`; returns the commit id.
pub fn commit_all_at(dir: &Path, message: &str, date: &str) -> String {
    run_at(dir, &["add", "-A"], date);
    run_at(dir, &["commit", "-q", "-m", message], date);
    run_at(dir, &["rev-parse", "HEAD"], date)
}

/// [`commit_all_at`] with the fixed [`DATE`].
pub fn commit_all(dir: &Path, message: &str) -> String {
    commit_all_at(dir, message, DATE)
}

/// `git daemon` serving every repository under a directory on a free 127.0.0.1 port; killed
/// when dropped.
pub struct Daemon {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
}

impl Daemon {
    /// Serves the repositories under `base` (`git://127.0.0.1:PORT/<path below base>`) and
    /// waits until the port accepts connections (10 s at most). `None` after
    /// [`crate::missing`] when git's `git-daemon` is not installed (a failure under CI).
    pub fn serve(test: &str, base: &Path) -> Option<Daemon> {
        // The daemon binary itself, not the `git daemon` wrapper: killing the wrapper would
        // leave the daemon running.
        let exec = run(base, &["--exec-path"]);
        let daemon_bin = Path::new(&exec).join("git-daemon");
        if !daemon_bin.is_file() {
            crate::missing(
                test,
                "`git daemon` is not installed",
                "apt-get install git (scripts/install-deps.sh)",
            );
            return None;
        }
        let port = crate::free_port();
        let child = Command::new(&daemon_bin)
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", daemon_bin.display()));
        let daemon = Daemon { child, port };
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "git daemon did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(daemon)
    }

    /// `git://127.0.0.1:PORT/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("git://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
