//! Commands inside a host's network namespace (`exec::in_ns`), through the one runner: they run
//! there, and a failure shows the whole `ip netns exec` command line and its stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use distro_conformance::exec::in_ns;
use distro_hostio::Cmd;

/// A network namespace of this test, removed when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("distro-exec-{tag}-{}", std::process::id());
        Cmd::new("ip", "create a namespace for the test")
            .args(["netns", "add", &name])
            .run()
            .unwrap();
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Cmd::new("ip", "remove the test's namespace")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

/// Root and `ip` (a failure under CI=true, a loud skip elsewhere).
fn can_make_namespaces(test: &str) -> bool {
    distro_testsupport::require_root(test, "creates a network namespace")
        && distro_testsupport::require_tool(test, "ip")
}

/// A command run with `in_ns` sees the namespace's links (only its loopback), not the host's.
#[test]
fn commands_run_inside_the_namespace() {
    if !can_make_namespaces("commands_run_inside_the_namespace") {
        return;
    }
    let ns = Netns::new("links");
    let links = in_ns(&ns.0, "ip", "list the namespace's links")
        .args(["-o", "link", "show"])
        .stdout_text()
        .unwrap();
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, ["lo"], "{links}");
}

/// A failing command in a namespace names why it ran, the whole command line (with the
/// namespace) and the end of its stderr.
#[test]
fn failures_show_the_namespace_and_stderr() {
    if !can_make_namespaces("failures_show_the_namespace_and_stderr") {
        return;
    }
    let ns = Netns::new("fail");
    let c = in_ns(&ns.0, "sh", "probe the host");
    assert_eq!(c.display(), format!("ip netns exec {} sh", ns.0));
    let msg = in_ns(&ns.0, "sh", "probe the host")
        .args(["-c", "echo 'no route to the mirror' >&2; exit 3"])
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(&format!("probe the host: `ip netns exec {} sh -c ", ns.0)),
        "{msg}"
    );
    assert!(
        msg.contains("exit status: 3") && msg.contains("  | no route to the mirror"),
        "{msg}"
    );
}
