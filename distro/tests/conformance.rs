//! `distro conformance` end to end, as root, against the shared release output: the whole
//! matrix passes and writes its reports; a deliberately broken proxy fails exactly the identity
//! scenario; without root nothing runs; an interrupted or killed run leaves nothing behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use distro_schema::{ConformanceSummary, Outcome};
use distro_testsupport as ts;

const BIN: &str = env!("CARGO_BIN_EXE_distro");

/// The heavy tests bring environments up; one at a time keeps them inside the 2-core budget.
static HEAVY: Mutex<()> = Mutex::new(());

fn tools(test: &str) -> bool {
    ts::require_root(test, "network namespaces, veth pairs, runc")
        && ts::require_tools(
            test,
            &[
                "ip",
                "tc",
                "iptables",
                "ip6tables",
                "curl",
                "openssl",
                "runc",
                "umoci",
            ],
        )
}

fn release() -> PathBuf {
    ts::release_out(Path::new(BIN), true)
}

fn run(args: &[&str]) -> Output {
    let mut all = vec!["conformance"];
    all.extend_from_slice(args);
    ts::bin::Bin::new(BIN).env_remove("DISTRO_CONFIG").run(&all)
}

fn summary(out: &Output) -> ConformanceSummary {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a ConformanceSummary ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Network namespaces whose names the ledgers in `state` (or a finished run) used.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn ledgers(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "ledger"))
                .collect()
        })
        .unwrap_or_default()
}

fn ledger_entries(state: &Path, kind: &str) -> Vec<String> {
    ledgers(state)
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{kind} ")).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn pid_alive(entry: &str) -> bool {
    let mut it = entry.split(' ');
    let (Some(pid), Some(start)) = (it.next(), it.next()) else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 2..].to_string();
            // Zombies have exited (only a wait() is missing).
            (!rest.starts_with('Z')).then(|| rest.split_whitespace().nth(19).map(str::to_string))?
        })
        .is_some_and(|s| s == start)
}

/// Every built-in profile and scenario against the freshly built binaries and images: nothing
/// fails, every profile passes something, every scenario passes somewhere, the reports are
/// written (JUnit with the environment, line and versions), and nothing is left behind.
#[test]
fn whole_matrix_passes_on_the_released_build() {
    let test = "whole_matrix_passes_on_the_released_build";
    if !tools(test) {
        return;
    }
    let out_dir = release();
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    // The containers run as the images' user (65532): it must reach the environment's files.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let reports = tmp.path().join("reports");
    let state = tmp.path().join("state");
    let line = out_dir.display().to_string();
    let mut args = vec![
        "--line",
        &line,
        "--previous-line",
        &line,
        "--format",
        "json",
        "--jobs",
        "3",
    ];
    let (r, w, s) = (
        reports.display().to_string(),
        tmp.path().join("work").display().to_string(),
        state.display().to_string(),
    );
    args.extend(["--report-dir", &r, "--work-dir", &w, "--state-dir", &s]);
    let started = Instant::now();
    let out = run(&args);
    eprintln!(
        "matrix took {:?}\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = summary(&out);
    let failures: Vec<String> = sum
        .profiles
        .iter()
        .flat_map(|p| {
            p.scenarios
                .iter()
                .filter(|r| r.outcome == Outcome::Failed)
                .map(|r| r.message.clone().unwrap_or_default())
                .chain(p.setup_error.clone())
        })
        .collect();
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    assert!(out.status.success(), "exit {:?}", out.status);
    let all =
        distro_conformance::profile::load_dir(&distro_conformance::profile::builtin_dir()).unwrap();
    assert_eq!(sum.profiles.len(), all.len());
    for p in &sum.profiles {
        assert_eq!(p.result, Outcome::Passed, "{}", p.name);
        assert!(
            p.counts.passed >= 3,
            "{} passed only {}",
            p.name,
            p.counts.passed
        );
    }
    for sc in distro_conformance::scenarios::SCENARIOS {
        assert!(
            sum.profiles.iter().any(|p| p
                .scenarios
                .iter()
                .any(|r| r.name == sc.name && r.outcome == Outcome::Passed)),
            "scenario {} passed nowhere",
            sc.name
        );
    }
    assert!(
        sum.notes
            .iter()
            .any(|n| n.contains("same build as line N and N-1")),
        "{:?}",
        sum.notes
    );
    assert!(
        sum.versions.contains_key("mesh-proxy.fips_module")
            && sum.versions.contains_key("source_commit"),
        "{:?}",
        sum.versions
    );
    let junit = std::fs::read_to_string(reports.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<property name=\"environment\" value=\"wan\"/>"),
        "{junit}"
    );
    assert!(
        junit.contains(&format!("<property name=\"line\" value=\"{}\"/>", sum.line)),
        "{junit}"
    );
    assert!(
        junit.contains("<property name=\"version.mesh-proxy.fips_module\""),
        "{junit}"
    );
    let html = std::fs::read_to_string(reports.join("report.html")).unwrap();
    assert!(
        html.contains("<td class=\"env\">legacy-vm</td>") && !html.contains("<script"),
        "{html}"
    );
    let on_disk: ConformanceSummary =
        serde_json::from_str(&std::fs::read_to_string(reports.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, sum, "summary.json and --format json differ");
    assert!(
        ledgers(&state).is_empty(),
        "ledgers left: {:?}",
        ledgers(&state)
    );
    assert!(
        namespaces_with("dc")
            .iter()
            .all(|n| !sum.profiles.iter().any(|p| n.contains(&p.name))),
        "namespaces left: {:?}",
        namespaces_with("dc")
    );
}

/// A proxy built with the test-only feature `conformance-broken-identity` (it skips the check
/// of the server's SPIFFE ID) makes exactly `wrong-identity-refused` fail, with a message naming
/// the environment, the scenario and what was observed.
#[test]
fn broken_identity_check_fails_exactly_the_identity_scenario() {
    let test = "broken_identity_check_fails_exactly_the_identity_scenario";
    if !tools(test) {
        return;
    }
    let out_dir = release();
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    // Its own target directory: the shared one holds the real debug proxy other tests run.
    let target = ts::target_dir().join("conformance-broken");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "mesh-proxy",
            "--features",
            "conformance-broken-identity",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(ts::repo_root())
        .status()
        .unwrap();
    assert!(status.success(), "building the broken proxy failed");
    let released = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("bin/mesh-control").is_file())
        .expect("a line with bin/ in the release output");
    let tmp = tempfile::tempdir().unwrap();
    let line = tmp
        .path()
        .join("broken")
        .join(released.file_name().unwrap());
    std::fs::create_dir_all(line.join("bin")).unwrap();
    std::fs::copy(
        released.join("bin/mesh-control"),
        line.join("bin/mesh-control"),
    )
    .unwrap();
    std::fs::copy(target.join("debug/mesh-proxy"), line.join("bin/mesh-proxy")).unwrap();
    let (l, r, w, s) = (
        line.display().to_string(),
        tmp.path().join("reports").display().to_string(),
        tmp.path().join("work").display().to_string(),
        tmp.path().join("state").display().to_string(),
    );
    // VM hosts run the broken bare binary; the image is the released one.
    let out = run(&[
        "--line",
        &l,
        "--profile",
        "flat",
        "--no-containers",
        "--format",
        "json",
        "--report-dir",
        &r,
        "--work-dir",
        &w,
        "--state-dir",
        &s,
    ]);
    let sum = summary(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flat = &sum.profiles[0];
    let failed: Vec<&str> = flat
        .scenarios
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| r.name.as_str())
        .collect();
    let messages: Vec<&String> = flat
        .scenarios
        .iter()
        .filter_map(|r| r.message.as_ref())
        .collect();
    assert_eq!(failed, ["wrong-identity-refused"], "{messages:#?}");
    assert!(
        flat.counts.passed >= 8,
        "the rest must pass: {:?}",
        flat.counts
    );
    let msg = flat
        .scenarios
        .iter()
        .find(|r| r.name == "wrong-identity-refused")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(msg.starts_with("[flat] wrong-identity-refused:"), "{msg}");
    assert!(
        msg.contains("the server identity was not checked") && msg.contains("200"),
        "{msg}"
    );
}

/// Without root the suite says exactly that, exits 4 (not 1, a failure) and creates nothing.
#[test]
fn without_root_nothing_runs() {
    let test = "without_root_nothing_runs";
    if !ts::require_root(test, "to drop to an unprivileged user with setpriv")
        || !ts::require(test, "setpriv", "apt-get install util-linux")
    {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let before = namespaces_with("dc");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "conformance",
            "--line",
        ])
        .arg(tmp.path())
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("needs root") && err.contains("nothing was run"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(!state.exists(), "a state directory was created");
    assert_eq!(namespaces_with("dc"), before);
}

/// Processes whose command line mentions `needle` (the test's directory): catches processes
/// the ledger never recorded.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rfind(')')
                .is_some_and(|i| stat[i + 2..].starts_with('Z'));
            (cmd.contains(needle) && !zombie)
                .then(|| format!("{} {cmd}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// Starts a flat run in the background and waits until it has started processes.
fn start_background(line: &str, tmp: &Path) -> std::process::Child {
    let state = tmp.join("state");
    let child = Command::new(BIN)
        .args([
            "conformance",
            "--line",
            line,
            "--profile",
            "flat",
            "--no-containers",
            "--scenario",
            "control-plane-outage",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--work-dir")
        .arg(tmp.join("work"))
        .arg("--report-dir")
        .arg(tmp.join("reports"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger_entries(&state, "pid").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the run never started its processes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// SIGTERM in the middle of a run: it removes every namespace and process it created and exits
/// 143.
#[test]
fn sigterm_removes_everything_the_run_created() {
    let test = "sigterm_removes_everything_the_run_created";
    if !tools(test) {
        return;
    }
    let out_dir = release();
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start_background(&out_dir.display().to_string(), tmp.path());
    let state = tmp.path().join("state");
    let netns = ledger_entries(&state, "netns");
    let pids = ledger_entries(&state, "pid");
    assert!(!netns.is_empty());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let left: Vec<&String> = netns
        .iter()
        .filter(|n| Path::new("/run/netns").join(n).exists())
        .collect();
    assert!(left.is_empty(), "namespaces left after SIGTERM: {left:?}");
    let alive: Vec<&String> = pids.iter().filter(|p| pid_alive(p)).collect();
    assert!(alive.is_empty(), "processes left after SIGTERM: {alive:?}");
    let stray = processes_mentioning(&tmp.path().display().to_string());
    assert!(
        stray.is_empty(),
        "unrecorded processes left after SIGTERM: {stray:?}"
    );
    assert!(ledgers(&state).is_empty());
}

/// A run killed with SIGKILL cannot clean up; the next run removes its leftovers first.
#[test]
fn next_run_removes_the_leftovers_of_a_killed_run() {
    let test = "next_run_removes_the_leftovers_of_a_killed_run";
    if !tools(test) {
        return;
    }
    let out_dir = release();
    let _g = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let line = out_dir.display().to_string();
    let mut child = start_background(&line, tmp.path());
    let state = tmp.path().join("state");
    let netns = ledger_entries(&state, "netns");
    let pids = ledger_entries(&state, "pid");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        netns
            .iter()
            .any(|n| Path::new("/run/netns").join(n).exists()),
        "SIGKILL left nothing to clean?"
    );
    let (s, w, r) = (
        state.display().to_string(),
        tmp.path().join("work2").display().to_string(),
        tmp.path().join("reports2").display().to_string(),
    );
    let out = run(&[
        "--line",
        &line,
        "--profile",
        "fips-strict",
        "--scenario",
        "metrics-scrape",
        "--no-containers",
        "--state-dir",
        &s,
        "--work-dir",
        &w,
        "--report-dir",
        &r,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed the leftovers of 1 earlier"));
    let left: Vec<&String> = netns
        .iter()
        .filter(|n| Path::new("/run/netns").join(n).exists())
        .collect();
    assert!(left.is_empty(), "leftover namespaces: {left:?}");
    let alive: Vec<&String> = pids.iter().filter(|p| pid_alive(p)).collect();
    assert!(alive.is_empty(), "leftover processes: {alive:?}");
    let stray = processes_mentioning(&tmp.path().join("work").display().to_string());
    assert!(
        stray.is_empty(),
        "unrecorded processes of the killed run left: {stray:?}"
    );
    assert!(ledgers(&state).is_empty());
}
