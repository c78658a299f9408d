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

/// An application (running as `nobody`) connects to the server's address in plaintext;
/// iptables sends it to the proxy's transparent listener, and the request arrives at the
/// server's proxy over mTLS carrying the client's SPIFFE ID.
#[test]
fn transparent_redirect_recovers_original_destination() {
    let test = "transparent_redirect_recovers_original_destination";
    if !distro_testsupport::require_root(test, "transparent capture needs CAP_NET_ADMIN")
        || !distro_testsupport::require_tool(test, "iptables")
        || !distro_testsupport::require_tool(test, "ip")
        || !distro_testsupport::require_tool(test, "setpriv")
    {
        return;
    }
    if !Path::new(PY).exists() {
        distro_testsupport::missing(
            test,
            &format!("{PY} is not installed"),
            &distro_testsupport::install_step("python3"),
        );
        return;
    }
    let ns = format!("mp-transp-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !made {
        distro_testsupport::missing(
            "transparent_redirect_recovers_original_destination",
            "cannot create a network namespace here (ip netns add failed)",
            "run as root on a kernel with network namespaces",
        );
        return;
    }
    let _ns = Netns(ns.clone());
    assert!(in_ns(&ns, &["ip", "link", "set", "lo", "up"])
        .status
        .success());
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    // Readable by `nobody` is not needed: only the proxies (root) read these.
    let (app, b_in, t_port, adm_a, adm_b) = (
        "127.0.0.1:18080",
        "127.0.0.1:18443",
        15001,
        "127.0.0.1:15000",
        "127.0.0.1:15100",
    );
    let _backend = spawn_in_ns(
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
            "admin": adm_b,
            "inbound": {"listen": b_in, "app": app, "protocol": "http"},
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
            "admin": adm_a,
            "transparent": {"listen": format!("127.0.0.1:{t_port}")},
            "identity": identity_files(&pki, &id("a", "a"), "a"),
            "mesh": mesh(&id("a", "a"), "STRICT",
                json!([{"name": "b", "protocol": "http", "endpoints": [{"address": b_in, "identity": id("b", "b")}]}]),
                json!([]), json!([])),
        })
        .to_string(),
    )
    .unwrap();
    let _b = spawn_in_ns(
        &ns,
        dir.path(),
        "proxy-b",
        &[
            proxy_bin(),
            "run",
            "--config",
            b_cfg.to_str().unwrap(),
            "--threads",
            "1",
        ],
    );
    let _a = spawn_in_ns(
        &ns,
        dir.path(),
        "proxy-a",
        &[
            proxy_bin(),
            "run",
            "--config",
            a_cfg.to_str().unwrap(),
            "--threads",
            "1",
        ],
    );
    // Only the application's user is captured, so the proxy's own connections are not looped back.
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
            &t_port.to_string(),
        ],
    );
    assert!(
        rule.status.success(),
        "iptables: {}",
        String::from_utf8_lossy(&rule.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = in_ns(&ns, &[PY, "-c", PY_GET, &format!("http://{adm_a}/ready")]);
        let b = in_ns(&ns, &[PY, "-c", PY_GET, &format!("http://{adm_b}/ready")]);
        let be = in_ns(&ns, &[PY, "-c", PY_GET, &format!("http://{app}/hello.txt")]);
        if [a, b, be]
            .iter()
            .all(|o| String::from_utf8_lossy(&o.stdout).starts_with("200"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxies not ready in the namespace:\nA: {}\nB: {}",
            std::fs::read_to_string(dir.path().join("proxy-a.err")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("proxy-b.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let out = in_ns(
        &ns,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            PY,
            "-c",
            PY_GET,
            &format!("http://{b_in}/hello.txt"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("200") && text.contains("hello from b"),
        "redirected request failed: {text} {}\nA: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.path().join("proxy-a.err")).unwrap_or_default()
    );
    // B saw the request over mTLS from A (its policy admits only A).
    let b_log = std::fs::read_to_string(dir.path().join("proxy-b.out")).unwrap_or_default();
    assert!(b_log.contains(&id("a", "a")), "B's access log: {b_log}");
    let a_log = std::fs::read_to_string(dir.path().join("proxy-a.out")).unwrap_or_default();
    assert!(
        a_log.contains("\"direction\":\"outbound\"") && a_log.contains(b_in),
        "A's access log: {a_log}"
    );

    // Root's own traffic is not captured: plaintext straight to B in STRICT gets nothing.
    let direct = in_ns(
        &ns,
        &[PY, "-c", PY_GET, &format!("http://{b_in}/hello.txt")],
    );
    assert!(
        String::from_utf8_lossy(&direct.stdout).starts_with("ERR"),
        "{}",
        String::from_utf8_lossy(&direct.stdout)
    );
}
