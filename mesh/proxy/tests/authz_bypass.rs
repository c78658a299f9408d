//! Authorization cannot be walked around: a DENY on `/secret` holds for every spelling of the
//! path (normalisation before matching) and for traffic that is almost HTTP (protocol
//! detection fails closed), against a real, lenient application: Python's `http.server`
//! serving a file named `secret`. Each test first shows that the application itself does serve
//! the evasive form, so a pass means the proxy stopped it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SECRET: &str = "TOP-SECRET-FILE-CONTENTS";

/// `python3 -m http.server` on a directory holding `secret`, `public` and `x/`.
struct FileServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn file_server(dir: &Path) -> Option<FileServer> {
    if !distro_testsupport::require(
        "authz_bypass",
        "python3",
        "apt-get install python3 (scripts/install-deps.sh)",
    ) {
        return None;
    }
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("x")).unwrap();
    std::fs::write(root.join("secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(root.join("public"), "public file\n").unwrap();
    let addr = free_addr();
    let child = Command::new("python3")
        .args(["-m", "http.server", &addr.port().to_string(), "--bind"])
        .arg(addr.ip().to_string())
        .arg("--directory")
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = FileServer { child, addr };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "python http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

/// Sends raw bytes, returns everything read until the peer closes (or 5 s pass).
fn raw(addr: SocketAddr, data: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(data).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out); // a reset after the reply is fine: `out` is what counts
    String::from_utf8_lossy(&out).to_string()
}

fn get(addr: SocketAddr, target: &str) -> String {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n").as_bytes(),
    )
}

fn status(reply: &str) -> u16 {
    reply
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

struct Setup {
    dir: tempfile::TempDir,
    /// A client SVID (`a/a`) and the bundle, for mTLS clients.
    client: (std::path::PathBuf, std::path::PathBuf),
    bundle: std::path::PathBuf,
    app: FileServer,
    proxy: ProxyProc,
    inbound: SocketAddr,
}

/// A proxy in PERMISSIVE mode (plaintext reaches the detection step directly) in front of the
/// file server, with `authz` as its inbound rules and `extra` merged into its local file.
fn setup(authz: Value, extra: Value) -> Option<Setup> {
    let dir = tempfile::tempdir().unwrap();
    let app = file_server(dir.path())?;
    let pki = Pki::new(dir.path(), "mesh");
    let inbound = free_addr();
    let mut cfg = json!({
        "inbound": {"listen": inbound, "app": app.addr, "protocol": "detect"},
        "identity": identity_files(&pki, &id("b", "b"), "b"),
        "mesh": mesh(&id("b", "b"), "PERMISSIVE", json!([]), json!([]), authz),
        "limits": {"header_read_timeout_ms": 2000},
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let proxy = start_proxy(dir.path(), "b", cfg, true);
    Some(Setup {
        client: pki.issue(&id("a", "a"), "a"),
        bundle: pki.bundle.clone(),
        dir,
        app,
        proxy,
        inbound,
    })
}

fn deny_secret() -> Value {
    json!([{"name": "no-secret", "action": "DENY", "sources": [], "methods": [], "paths": ["/secret"]}])
}

/// The bypass of issue 16: with DENY `/secret`, every other spelling of the path
/// (`/x/../secret`, `//secret`, `/./secret`, `/%73ecret`, `/secret/`, `/%2e%2e/secret`,
/// `/secret%2F..`, …) gets 403 or 400 and never the file; `/SECRET` is another path (case is
/// not normalised) and the case-sensitive application has no such file.
#[test]
fn deny_rule_cannot_be_bypassed_by_path_encoding() {
    let Some(mut s) = setup(deny_secret(), json!({})) else {
        return;
    };
    // The application is lenient: it serves the evasive spellings itself.
    for target in ["/x/../secret", "//secret", "/./secret", "/%73ecret"] {
        let direct = get(s.app.addr, target);
        assert!(
            direct.contains(SECRET),
            "test premise: the app serves {target} directly:\n{direct}"
        );
    }
    for target in [
        "/secret",
        "/x/../secret",
        "//secret",
        "/./secret",
        "/%73ecret",
        "/%73%65%63%72%65%74",
        "/secret/",
        "/secret?x=1",
        "/%2e%2e/secret",
        "/x/%2E%2E/secret",
        "/x/.%2e/secret",
        "/secret%2F..",
        "/secret%2f..",
        "/x/..%2Fsecret",
        "/x%2F..%2Fsecret",
        "/x/..\\secret",
        "/x/%5C../secret",
        "/secret%00",
        "/x/%zz/../secret",
        "///x//..//secret",
    ] {
        let reply = get(s.inbound, target);
        let code = status(&reply);
        assert!(
            code == 403 || code == 400,
            "{target}: expected 403 or 400, got {code}:\n{reply}"
        );
        assert!(
            !reply.contains(SECRET),
            "{target} leaked the file:\n{reply}"
        );
    }
    let upper = get(s.inbound, "/SECRET");
    assert_eq!(status(&upper), 404, "{upper}");
    assert!(!upper.contains(SECRET), "{upper}");
    // Normal traffic still flows, with the normalised path forwarded and the query untouched.
    let ok = get(s.inbound, "/x/../public?q=/../secret");
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(ok.contains("public file"), "{ok}");
    let log = s.proxy.access_log();
    assert!(
        log.iter().any(|l| l["path"] == "/public?q=/../secret"),
        "the normalised path is logged and forwarded: {log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l["rule"] == "no-secret" && l["path"] == "/secret" && l["status"] == 403),
        "{log:?}"
    );
    let m = s.proxy.metrics();
    for reason in [
        "escaped_slash",
        "escapes_root",
        "nul",
        "invalid_percent_encoding",
    ] {
        assert!(
            metric_sum(
                &m,
                "mesh_proxy_path_refused_total",
                &["direction=\"inbound\"", &format!("reason=\"{reason}\"")]
            ) >= 1.0,
            "{reason}: {m}"
        );
    }
    assert!(s.proxy.alive());
    drop(s.dir);
}

/// `http_paths.escaped_slashes = "unescape_and_redirect"` answers 307 with the decoded,
/// normalised target (which is then refused or allowed on its own merits);
/// `unescape_and_forward` decodes and matches the decoded path.
#[test]
fn escaped_slash_actions_are_configurable() {
    let Some(s) = setup(
        deny_secret(),
        json!({"http_paths": {"escaped_slashes": "unescape_and_redirect"}}),
    ) else {
        return;
    };
    let r = get(s.inbound, "/x%2F..%2Fpublic?a=1");
    assert_eq!(status(&r), 307, "{r}");
    assert!(
        r.to_ascii_lowercase().contains("location: /public?a=1\r\n"),
        "{r}"
    );
    let r = get(s.inbound, "/x%2F..%2Fsecret");
    assert_eq!(status(&r), 307, "{r}");
    assert!(!r.contains(SECRET));
    drop(s);
    let Some(s) = setup(
        deny_secret(),
        json!({"http_paths": {"escaped_slashes": "unescape_and_forward"}}),
    ) else {
        return;
    };
    let r = get(s.inbound, "/x%2F..%2Fsecret");
    assert_eq!(status(&r), 403, "{r}");
    let r = get(s.inbound, "/x%2F..%2Fpublic");
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("public file"), "{r}");
}

/// The detection evasion of issue 16: on a `detect` port whose rules inspect paths, request
/// lines that are almost HTTP (tab after the method, lower-case method, bare LF, HTTP/0.9,
/// double space) are refused with 400, logged and counted per reason, never forwarded as TCP;
/// an mTLS client that waits out the detection window is refused too.
#[test]
fn protocol_detection_evasion_is_refused() {
    let Some(mut s) = setup(deny_secret(), json!({})) else {
        return;
    };
    let evasions: &[(&[u8], &str)] = &[
        (
            b"GET\t/secret HTTP/1.1\r\nhost: app\r\n\r\n",
            "bad_separator",
        ),
        (
            b"GET  /secret HTTP/1.1\r\nhost: app\r\n\r\n",
            "bad_separator",
        ),
        (
            b"get /secret HTTP/1.1\r\nhost: app\r\n\r\n",
            "invalid_method",
        ),
        (b"GET /secret HTTP/1.1\nhost: app\n\n", "bare_lf"),
        (b"GET /secret\r\n", "http09"),
        (
            b"GET /secret HTTP/1.2\r\nhost: app\r\n\r\n",
            "unsupported_version",
        ),
    ];
    // The application serves the tab and bare-LF forms itself.
    for data in [evasions[0].0, evasions[3].0] {
        let direct = raw(s.app.addr, data);
        assert!(
            direct.contains(SECRET),
            "test premise: the app serves {:?} directly:\n{direct}",
            String::from_utf8_lossy(data)
        );
    }
    for (data, reason) in evasions {
        let reply = raw(s.inbound, data);
        assert!(
            !reply.contains(SECRET),
            "{:?} leaked the file:\n{reply}",
            String::from_utf8_lossy(data)
        );
        assert!(
            reply.starts_with("HTTP/1.1 400"),
            "{:?}: expected the proxy's 400:\n{reply}",
            String::from_utf8_lossy(data)
        );
        assert!(reply.contains(reason), "{reply}");
    }
    // A plaintext client that pauses mid-request is still parsed as HTTP (and denied).
    let mut c = TcpStream::connect(s.inbound).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"G").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.write_all(b"ET /secret HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out); // what was read is what counts
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    // An mTLS client that waits out the 1 s detection window after its handshake is not
    // turned into TCP: it is refused.
    if distro_testsupport::require(
        "protocol_detection_evasion_is_refused",
        "openssl",
        "apt-get install openssl (scripts/install-deps.sh)",
    ) {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-ign_eof", "-connect"])
            .arg(s.inbound.to_string())
            .arg("-cert")
            .arg(&s.client.0)
            .arg("-key")
            .arg(&s.client.1)
            .arg("-CAfile")
            .arg(&s.bundle)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        let mut stdin = child.stdin.take().unwrap();
        // The proxy may already have closed the connection: a failed write is expected.
        let _ = stdin.write_all(b"GET /secret HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n");
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains(SECRET), "{text}");
        assert!(
            !text.contains("HTTP/1.1"),
            "silent client got an answer: {text}"
        );
        let m = s.proxy.metrics();
        assert!(
            metric_sum(
                &m,
                "mesh_proxy_protocol_refused_total",
                &["listener=\"inbound\"", "reason=\"silent\""]
            ) >= 1.0,
            "silent client not counted:\n{m}"
        );
    }

    let m = s.proxy.metrics();
    for (_, reason) in evasions {
        assert!(
            metric_sum(
                &m,
                "mesh_proxy_protocol_refused_total",
                &["listener=\"inbound\"", &format!("reason=\"{reason}\"")]
            ) >= 1.0,
            "{reason} not counted:\n{m}"
        );
    }
    assert!(s
        .proxy
        .stderr_text()
        .contains("inbound connection refused: not valid HTTP"));
    // Real HTTP still works on the same port.
    let ok = get(s.inbound, "/public");
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(s.proxy.alive());
}

/// A port whose rules name no method or path still passes bytes that are not HTTP as TCP
/// (here a tab-separated request line reaches the lenient app): only HTTP-inspecting rules
/// make detection fail closed.
#[test]
fn ports_without_http_rules_pass_unknown_bytes_as_tcp() {
    let Some(s) = setup(
        json!([{"name": "anyone", "action": "ALLOW", "sources": [], "methods": [], "paths": []}]),
        json!({}),
    ) else {
        return;
    };
    let reply = raw(
        s.inbound,
        b"GET\t/public HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    );
    assert!(reply.contains("public file"), "{reply}");
    let m = s.proxy.metrics();
    assert_eq!(
        metric_sum(&m, "mesh_proxy_protocol_refused_total", &[]),
        0.0,
        "{m}"
    );
}
