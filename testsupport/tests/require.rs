//! The contract of `require`: under `CI=true` a missing tool fails the test and names the
//! install step; elsewhere the test is skipped with a SKIP line that reaches the log even though
//! the harness captures the output of passing tests.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use distro_testsupport::{install_step, python_install_step, require};

const PROBE: &str = "DISTRO_TESTSUPPORT_PROBE";

/// Not a check by itself: the body runs only when the test below starts this binary for it.
#[test]
fn probe_requires_a_missing_tool() {
    if std::env::var_os(PROBE).is_none() {
        return;
    }
    let present = require(
        "probe",
        "distro-no-such-tool",
        "apt-get install distro-no-such-tool",
    );
    assert!(!present, "a missing tool is reported missing");
}

fn probe(ci: Option<&str>) -> Output {
    let mut c = Command::new(std::env::current_exe().unwrap());
    // Captured as a passing test normally is: no --nocapture.
    c.args([
        "--exact",
        "probe_requires_a_missing_tool",
        "--test-threads=1",
    ])
    .env(PROBE, "1")
    .env_remove("CI");
    if let Some(v) = ci {
        c.env("CI", v);
    }
    c.output().unwrap()
}

/// Under CI=true the probe fails, and the failure names the install step.
#[test]
fn missing_tool_is_a_failure_under_ci() {
    let out = probe(Some("true"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("under CI=true this is a failure, not a skip")
            && text.contains("Install it: apt-get install distro-no-such-tool"),
        "{text}"
    );
    assert!(!text.contains("\nSKIP "), "no skip under CI: {text}");
}

/// Outside CI the probe passes and its SKIP line is in the output, uncaptured, on a line of
/// its own (what `.ci/run` counts).
#[test]
fn missing_tool_is_a_loud_skip_elsewhere() {
    let out = probe(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(
            "SKIP probe: `distro-no-such-tool` is not installed (install: apt-get install distro-no-such-tool)"
        )),
        "{stderr}"
    );
}

/// Every tool and module the tests require has an install step from scripts/install-deps.sh,
/// and that script really names the package.
#[test]
fn install_steps_name_what_install_deps_installs() {
    let script =
        std::fs::read_to_string(distro_testsupport::repo_root().join("scripts/install-deps.sh"))
            .unwrap();
    for tool in [
        "docker-registry",
        "openssl",
        "skopeo",
        "umoci",
        "jq",
        "python3",
        "curl",
        "chromium",
        "runc",
        "git",
        "iptables",
        "ip",
        "setpriv",
        "taskset",
        "objcopy",
        "htpasswd",
    ] {
        let step = install_step(tool);
        let pkg = step
            .strip_prefix("apt-get install ")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("{tool}: {step}"));
        assert!(
            script.contains(pkg),
            "{tool}: {pkg} is not in scripts/install-deps.sh"
        );
    }
    for tool in ["cargo-deny", "rust-audit-info"] {
        assert!(install_step(tool).starts_with("cargo install"));
        assert!(
            script.contains(tool),
            "{tool} is not in scripts/install-deps.sh"
        );
    }
    for (module, pip) in [
        ("cyclonedx.validation.json", "cyclonedx-python-lib"),
        ("securesystemslib", "securesystemslib"),
        ("prometheus_client", "prometheus-client"),
        ("vexipy", "vexipy"),
        ("nacl", "pynacl"),
        ("yaml", "PyYAML"),
    ] {
        let step = python_install_step(module);
        assert!(step.contains(pip), "{module}: {step}");
        assert!(
            script.contains(pip),
            "{pip} is not in scripts/install-deps.sh"
        );
    }
}
