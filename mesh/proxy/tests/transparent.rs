//! Transparent outbound mode: in a network namespace made for the test, iptables REDIRECTs the
//! application's connections to the proxy, which recovers the original destination with
//! `SO_ORIGINAL_DST`, finds the service and originates mTLS. Needs root (skipped otherwise,
//! with the reason printed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

fn spawn_in_ns(ns: &str, dir: &Path, name: &str, args: &[&str]) -> Kill {
    let err = std::fs::File::create(dir.join(format!("{name}.err"))).unwrap();
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    Kill(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap(),
    )
}

/// The system Python: the application runs as `nobody`, who cannot reach a per-user install.
const PY: &str = "/usr/bin/python3";

const PY_GET: &str = "import sys,urllib.request\ntry:\n  r=urllib.request.urlopen(sys.argv[1],timeout=5); print(r.status); print(r.read().decode())\nexcept Exception as e:\n  print('ERR', e)";

const APP: &str = "127.0.0.1:18080";
const B_IN: &str = "127.0.0.1:18443";
const T_PORT: u16 = 15001;
const ADM_A: &str = "127.0.0.1:15000";
const ADM_B: &str = "127.0.0.1:15100";

/// A namespace of the test's own with a backend, proxy B (inbound, STRICT, admitting only A's
/// identity) in front of it, proxy A with a transparent listener, and the iptables rule that
/// REDIRECTs connections of the application's user (`nobody`, uid 65534) to B's address into
/// A's listener; every part ready. Dropped in reverse: processes, then the namespace.
struct Capture {
    _a: Kill,
    _b: Kill,
    _backend: Kill,
    ns: String,
    _netns: Netns,
    dir: tempfile::TempDir,
}

impl Capture {
    /// `None` (a loud skip outside CI) when a requirement is missing.
    fn new(test: &str, tag: &str) -> Option<Capture> {
        if !distro_testsupport::require_root(test, "transparent capture needs CAP_NET_ADMIN")
            || !distro_testsupport::require_tool(test, "iptables")
            || !distro_testsupport::require_tool(test, "ip")
            || !distro_testsupport::require_tool(test, "setpriv")
        {
            return None;
        }
        if !Path::new(PY).exists() {
            distro_testsupport::missing(
                test,
                &format!("{PY} is not installed"),
                &distro_testsupport::install_step("python3"),
            );
            return None;
        }
        let ns = format!("mp-{tag}-{}", std::process::id());
        let made = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !made {
            distro_testsupport::missing(
                test,
                "cannot create a network namespace here (ip netns add failed)",
                "run as root on a kernel with network namespaces",
            );
            return None;
        }
        let netns = Netns(ns.clone());
        assert!(in_ns(&ns, &["ip", "link", "set", "lo", "up"])
            .status
            .success());
        let dir = tempfile::tempdir().unwrap();
        // Only the proxies (root) read the PKI files: `nobody` needs no access.
        let pki = Pki::new(dir.path(), "mesh");
        let backend = spawn_in_ns(
            &ns,
            dir.path(),
            "backend",
            &[
                PY,
                "-m",
                "http.server",
                "18080",
                "--bind",
                "127.0.0.1",
                "--directory",
                dir.path().to_str().unwrap(),
            ],
        );
        std::fs::write(dir.path().join("hello.txt"), "hello from b\n").unwrap();
        let b_cfg = dir.path().join("b.json");
        std::fs::write(
            &b_cfg,
            json!({
                "admin": ADM_B,
                "inbound": {"listen": B_IN, "app": APP, "protocol": "http"},
                "identity": identity_files(&pki, &id("b", "b"), "b"),
                "mesh": mesh(&id("b", "b"), "STRICT", json!([]), json!([]),
                    json!([{"name": "a-only", "action": "ALLOW", "sources": [id("a", "a")]}])),
            })
            .to_string(),
        )
        .unwrap();
        let a_cfg = dir.path().join("a.json");
        std::fs::write(
            &a_cfg,
            json!({
                "admin": ADM_A,
                "transparent": {"listen": format!("127.0.0.1:{T_PORT}")},
                "identity": identity_files(&pki, &id("a", "a"), "a"),
                "mesh": mesh(&id("a", "a"), "STRICT",
                    json!([{"name": "b", "protocol": "http", "endpoints": [{"address": B_IN, "identity": id("b", "b")}]}]),
                    json!([]), json!([])),
            })
            .to_string(),
        )
        .unwrap();
        let run = |name: &str, cfg: &Path| {
            spawn_in_ns(
                &ns,
                dir.path(),
                name,
                &[
                    proxy_bin(),
                    "run",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--threads",
                    "1",
                ],
            )
        };
        let b = run("proxy-b", &b_cfg);
        let a = run("proxy-a", &a_cfg);
        // Only the application's user is captured, so the proxy's own connections are not
        // looped back.
        let t_port = T_PORT.to_string();
        let rule = in_ns(
            &ns,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                "127.0.0.1",
                "--dport",
                "18443",
                "-m",
                "owner",
                "--uid-owner",
                "65534",
                "-j",
                "REDIRECT",
                "--to-ports",
                &t_port,
            ],
        );
        assert!(
            rule.status.success(),
            "iptables: {}",
            String::from_utf8_lossy(&rule.stderr)
        );
        let c = Capture {
            _a: a,
            _b: b,
            _backend: backend,
            ns,
            _netns: netns,
            dir,
        };
        c.wait_ready();
        Some(c)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// GET `url` with Python in the namespace as root: "STATUS\nBODY" or "ERR ...".
    fn get(&self, url: &str) -> String {
        String::from_utf8_lossy(&in_ns(&self.ns, &[PY, "-c", PY_GET, url]).stdout).into_owned()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let urls = [
                format!("http://{ADM_A}/ready"),
                format!("http://{ADM_B}/ready"),
                format!("http://{APP}/hello.txt"),
            ];
            if urls.iter().all(|u| self.get(u).starts_with("200")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "proxies not ready in the namespace:\nA: {}\nB: {}",
                self.log("proxy-a.err"),
                self.log("proxy-b.err")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// An application (running as `nobody`) connects to the server's address in plaintext;
/// iptables sends it to the proxy's transparent listener, which recovers the original
/// destination, and the request arrives at the server's proxy over mTLS carrying the client's
/// SPIFFE ID (B admits only A); A logs it as outbound to B's address.
#[test]
fn transparent_redirect_recovers_original_destination() {
    let Some(c) = Capture::new("transparent_redirect_recovers_original_destination", "rd") else {
        return;
    };
    let out = in_ns(
        &c.ns,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            PY,
            "-c",
            PY_GET,
            &format!("http://{B_IN}/hello.txt"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("200") && text.contains("hello from b"),
        "redirected request failed: {text} {}\nA: {}",
        String::from_utf8_lossy(&out.stderr),
        c.log("proxy-a.err")
    );
    let b_log = c.log("proxy-b.out");
    assert!(b_log.contains(&id("a", "a")), "B's access log: {b_log}");
    let a_log = c.log("proxy-a.out");
    assert!(
        a_log.contains("\"direction\":\"outbound\"") && a_log.contains(B_IN),
        "A's access log: {a_log}"
    );
}

/// Traffic of a user the rule does not capture (root) is not redirected: plaintext straight to
/// B, which is STRICT, gets no answer.
#[test]
fn uncaptured_traffic_is_not_redirected() {
    let Some(c) = Capture::new("uncaptured_traffic_is_not_redirected", "un") else {
        return;
    };
    let direct = c.get(&format!("http://{B_IN}/hello.txt"));
    assert!(direct.starts_with("ERR"), "{direct}");
}
