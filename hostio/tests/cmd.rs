//! The subprocess runner: failure messages (reason, command, status, bounded stderr tail),
//! start failures, timeouts, large pipes, input, and the one git setup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use distro_hostio::cmd::{tail, STDERR_TAIL_LINES, STDERR_TAIL_LINE_BYTES};
use distro_hostio::{Cmd, CmdError};

fn sh(script: &str, why: &str) -> Cmd {
    let mut c = Cmd::new("sh", why);
    c.args(["-c", script]);
    c
}

/// A failure names why the command ran, the command line, its exit status and the end of its
/// stderr, and the help text given.
#[test]
fn failure_shows_reason_command_status_and_stderr() {
    let mut c = sh(
        "echo first >&2; echo 'the real problem' >&2; exit 3",
        "resolve the ref",
    );
    c.help("check `source.ref` in distro.toml");
    let err = c.run().unwrap_err();
    assert!(matches!(err, CmdError::Failed { .. }));
    let msg = err.to_string();
    assert!(msg.starts_with("resolve the ref: `sh -c "), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("  | first\n  | the real problem"), "{msg}");
    assert!(
        msg.contains("help: check `source.ref` in distro.toml"),
        "{msg}"
    );
}

/// The stderr tail keeps only the last lines, says how many were left out, and cuts long lines.
#[test]
fn stderr_tail_is_bounded() {
    let err = sh(
        "i=0; while [ $i -lt 500 ]; do echo line$i >&2; i=$((i+1)); done; head -c 5000 /dev/zero | tr '\\0' x >&2; exit 1",
        "make noise",
    )
    .run()
    .unwrap_err();
    let CmdError::Failed { stderr_tail, .. } = &err else {
        panic!("{err}");
    };
    let lines: Vec<&str> = stderr_tail.lines().collect();
    assert_eq!(lines.len(), STDERR_TAIL_LINES + 1, "{stderr_tail}");
    assert_eq!(
        lines[0],
        format!("  | ... ({} earlier lines)", 501 - STDERR_TAIL_LINES)
    );
    assert!(!stderr_tail.contains("line480\n"), "old lines dropped");
    assert!(stderr_tail.contains("  | line499"));
    let last = lines[lines.len() - 1];
    assert!(
        last.ends_with(" [...]") && last.len() < STDERR_TAIL_LINE_BYTES + 20,
        "{last}"
    );
    assert!(err.to_string().len() < 20 * 1024, "message is bounded");
}

/// `tail` of nothing is nothing (no empty `  | ` line in messages).
#[test]
fn empty_stderr_has_no_tail() {
    assert_eq!(tail(b""), "");
    assert_eq!(tail(b"\n\n"), "");
    let msg = sh("exit 2", "fail quietly").run().unwrap_err().to_string();
    assert!(msg.ends_with("failed (exit status: 2)"), "{msg}");
}

/// A program that is not installed is a start failure that names it and says to install it.
#[test]
fn missing_program_says_what_to_install() {
    let err = Cmd::new("distro-no-such-tool", "check the thing")
        .arg("--flag")
        .run()
        .unwrap_err();
    assert!(matches!(err, CmdError::Spawn { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("check the thing: cannot start `distro-no-such-tool --flag`"),
        "{msg}"
    );
    assert!(msg.contains("install `distro-no-such-tool`"), "{msg}");
}

/// `output` returns any exit status; `run` and `stdout` fail unless it is 0.
#[test]
fn output_returns_any_status_run_judges_it() {
    let out = sh("echo out; exit 4", "verdict").output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(out.stdout, b"out\n");
    assert!(sh("exit 4", "verdict").stdout().is_err());
    assert_eq!(sh("echo '  x  '", "trim").stdout_text().unwrap(), "x");
    assert_eq!(sh("echo '  x  '", "as is").stdout().unwrap(), "  x  \n");
}

/// The working directory is used and named in a failure.
#[test]
fn failure_names_the_directory() {
    let d = tempfile::tempdir().unwrap();
    let mut c = sh("pwd; exit 1", "look around");
    c.cwd(d.path());
    let msg = c.run().unwrap_err().to_string();
    assert!(
        msg.contains(&format!("(in {})", d.path().display())),
        "{msg}"
    );
}

/// Arguments are shell-quoted in the displayed command line.
#[test]
fn display_quotes_arguments() {
    let mut c = Cmd::new("printf", "print");
    c.args([r"%s\n", "plain-arg", "two words", "it's"]);
    assert_eq!(
        c.display(),
        r"printf '%s\n' plain-arg 'two words' 'it'\''s'"
    );
}

/// A child that writes more than a pipe holds to both stdout and stderr, while reading a large
/// stdin, neither deadlocks nor loses output.
#[test]
fn large_pipes_do_not_deadlock() {
    let input = vec![b'y'; 1 << 20];
    let mut c = sh(
        "cat; head -c 1048576 /dev/zero >&2; head -c 1048576 /dev/zero",
        "copy a lot",
    );
    let out = c.output_with_input(&input).unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 2 << 20);
    assert_eq!(out.stderr.len(), 1 << 20);
    let out = sh("head -c 1048576 /dev/zero >&2; echo done", "fill stderr")
        .output_with_timeout(Duration::from_secs(30))
        .unwrap();
    assert_eq!(out.stdout, b"done\n");
}

/// A command past its time limit is killed and reported as such, with its stderr so far.
#[test]
fn timeout_kills_and_reports() {
    let start = Instant::now();
    let err = sh("echo started >&2; exec sleep 30", "wait forever")
        .output_with_timeout(Duration::from_millis(300))
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10), "killed promptly");
    let CmdError::TimedOut { stderr_tail, .. } = &err else {
        panic!("{err}");
    };
    assert!(stderr_tail.contains("started"), "{err}");
    assert!(
        err.to_string()
            .contains("did not exit within 0.3s and was killed"),
        "{err}"
    );
}

/// A streamed run still has the stderr tail in its failure.
#[test]
fn streaming_failure_keeps_the_tail() {
    let msg = sh(
        "echo 'error: linking failed' >&2; exit 101",
        "build the proxy",
    )
    .run_streaming(false)
    .unwrap_err()
    .to_string();
    assert!(msg.contains("  | error: linking failed"), "{msg}");
}

/// git runs without any user or system configuration, with the fixed identity and in the C
/// locale.
#[test]
fn git_setup_is_fixed() {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("git is not installed (apt-get install git)");
    }
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // A global config that would change results if it were read.
    std::fs::write(
        home.join(".gitconfig"),
        "[user]\n\tname = Wrong Person\n\temail = wrong@example.invalid\n[core]\n\tautocrlf = true\n",
    )
    .unwrap();
    let repo = d.path().join("repo");
    let git = |args: &[&str], why: &str| {
        let mut c = Cmd::git(why);
        c.env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("LANG", "de_DE.UTF-8")
            .cwd(&repo)
            .args(args);
        c
    };
    std::fs::create_dir_all(&repo).unwrap();
    git(&["init", "-q"], "init").run().unwrap();
    std::fs::write(repo.join("f"), "x\n").unwrap();
    git(&["add", "f"], "stage").run().unwrap();
    git(&["commit", "-q", "-m", "m"], "commit")
        .commit_date("2026-01-01T00:00:00Z")
        .run()
        .unwrap();
    let who = git(
        &["log", "-1", "--format=%an <%ae> %cn <%ce> %ct"],
        "read the commit",
    )
    .stdout_text()
    .unwrap();
    assert_eq!(
        who,
        "distro <distro@localhost> distro <distro@localhost> 1767225600"
    );
    let branch = git(&["symbolic-ref", "--short", "HEAD"], "branch")
        .stdout_text()
        .unwrap();
    assert_eq!(branch, "main");
    let err = git(&["rev-parse", "--verify", "no-such-ref"], "resolve a ref")
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fatal: Needed a single revision"),
        "C locale: {err}"
    );
}

/// `git_in_plain_tree` does not discover an enclosing repository.
#[test]
fn plain_tree_does_not_see_the_enclosing_repository() {
    let d = tempfile::tempdir().unwrap();
    let mut init = Cmd::git("init");
    init.cwd(d.path()).args(["init", "-q"]);
    init.run().unwrap();
    let tree = d.path().join("out/tree");
    std::fs::create_dir_all(&tree).unwrap();
    let out = Cmd::git_in_plain_tree("look for a repository", &tree)
        .args(["rev-parse", "--git-dir"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the enclosing repository was found");
}

/// A background command's stdout and stderr both go to its log, whose tail reads as a failure's
/// stderr tail does; stdin is empty, so a reader of it does not wait.
#[test]
fn spawn_logged_writes_both_streams_to_the_log() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("server.log");
    let mut child = sh("cat; echo to-stdout; echo to-stderr >&2", "serve")
        .spawn_logged(&log)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("to-stdout\n") && text.contains("to-stderr\n"),
        "{text}"
    );
    let t = distro_hostio::cmd::log_tail(&log);
    assert!(
        t.contains("  | to-stdout") && t.contains("  | to-stderr"),
        "{t}"
    );
    assert_eq!(distro_hostio::cmd::log_tail(&d.path().join("missing")), "");
}

/// A log that cannot be created is an error naming the log, the reason and the command, and
/// nothing is started; a background program that is not installed says what to install.
#[test]
fn spawn_failures_name_the_log_or_the_program() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("no-such-dir/server.log");
    let err = sh("touch started", "serve the mirror")
        .cwd(d.path())
        .spawn_logged(&log)
        .unwrap_err();
    assert!(matches!(err, CmdError::Log { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("serve the mirror: cannot create the log ")
            && msg.contains(&log.display().to_string())
            && msg.contains("`sh -c 'touch started'`"),
        "{msg}"
    );
    assert!(!d.path().join("started").exists(), "nothing was started");
    let err = Cmd::new("distro-no-such-server", "serve")
        .spawn(std::process::Stdio::null(), std::process::Stdio::null())
        .unwrap_err();
    assert!(
        matches!(err, CmdError::Spawn { .. })
            && err.to_string().contains("install `distro-no-such-server`"),
        "{err}"
    );
}
