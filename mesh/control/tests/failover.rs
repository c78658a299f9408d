//! Proxies fail over across control-plane replicas: three `mesh-control` replicas over a real
//! 3-member etcd cluster, two real `mesh-proxy` processes (client side A, server side B in
//! front of a tiny backend), configuration changes pushed in a loop and requests sent through
//! the data path all along, and `kill -9` of the replicas the proxies are connected to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use distro_testsupport::etcd::{have_etcd, Cluster};
use distro_testsupport::http::KeepAlive;
use serde_json::{json, Value};

fn id(ns: &str, sa: &str) -> String {
    format!("spiffe://{TD}/ns/{ns}/sa/{sa}")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> SystemTime {
    let mut t = SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let m = if p.is_dir() {
            newest(&p)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        t = t.max(m);
    }
    t
}

/// The `mesh-proxy` binary, next to `mesh-control` in the target directory; built (once per
/// test process) when it is missing or older than the proxy's or mesh-core's sources, so the
/// test never runs a proxy that predates the code under test.
fn proxy_bin() -> &'static Path {
    static BIN_PATH: OnceLock<PathBuf> = OnceLock::new();
    BIN_PATH.get_or_init(|| {
        let dir = Path::new(BIN).parent().unwrap().to_path_buf();
        let bin = dir.join("mesh-proxy");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sources = newest(&root.join("proxy/src")).max(newest(&root.join("core/src")));
        let fresh = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= sources);
        if !fresh {
            eprintln!("building mesh-proxy (missing or older than its sources): this test runs the real proxy");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-p", "mesh-proxy", "--bin", "mesh-proxy"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().unwrap();
            assert!(status.success(), "cargo build -p mesh-proxy failed");
        }
        bin
    })
}

/// A running `mesh-proxy`.
struct Proxy {
    name: String,
    child: Child,
    admin: SocketAddr,
    stderr: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Starts a proxy with the local configuration `config` and waits until `/ready`.
    fn start(dir: &Path, name: &str, mut config: Value) -> Proxy {
        let admin = loopback();
        config["admin"] = json!(admin.to_string());
        config["access_log"] = json!(false);
        let cfg = dir.join(format!("{name}.json"));
        std::fs::write(&cfg, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let stderr = dir.join(format!("{name}.err"));
        let child = Command::new(proxy_bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .args(["--threads", "2"])
            .env("MESH_PROXY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .unwrap();
        let mut p = Proxy {
            name: name.into(),
            child,
            admin,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("proxy {name} exited early ({status}):\n{}", p.log());
            }
            if p.get("/ready").0 == 200 {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "proxy {name} not ready after 30 s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).unwrap_or((0, String::new()))
    }

    fn ready(&self) -> Value {
        serde_json::from_str(&self.get("/ready").1).unwrap_or_default()
    }

    /// The replica of its last successful exchange (`/ready` `control_plane.replica`).
    fn replica(&self) -> Option<String> {
        self.ready()["control_plane"]["replica"]
            .as_str()
            .map(str::to_string)
    }

    /// The names of the services in its configuration.
    fn services(&self) -> Vec<String> {
        let c: Value = serde_json::from_str(&self.get("/config").1).unwrap_or_default();
        c["config"]["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect()
    }
}

/// One HTTP/1.1 GET with `connection: close`: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {out:?}")))?;
    Ok((status, body.to_string()))
}

/// Requests through `addr` from three clients until stopped: two keep-alive, one connection
/// per request.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    clients: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let clients = (0..3)
            .map(|kind| {
                let (stop, ok) = (stop.clone(), ok.clone());
                std::thread::spawn(move || {
                    // One attempt a GET: a failed one is counted, then a new connection.
                    let mut keep = KeepAlive::new(addr);
                    let mut failed = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let r = if kind < 2 {
                            keep.get(&format!("/steady/{n}")).map(|(s, _)| s)
                        } else {
                            http_get(addr, &format!("/fresh/{n}")).map(|(s, _)| s)
                        };
                        match r {
                            Ok(200) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failed.push(format!("client {kind} request {n}: {other:?}")),
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    failed
                })
            })
            .collect();
        Load { stop, ok, clients }
    }

    /// Requests that succeeded so far.
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients: (requests that succeeded, what failed).
    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self
            .clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

/// The application behind proxy B: answers every request `200 ok` (keep-alive).
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        let resp = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// The mesh configuration: service `b` (proxy B's inbound) that A may call, and `extra`
/// services that only make each pushed version differ (their endpoints are never called).
fn mesh_toml(b_in: SocketAddr, extra: &[String]) -> String {
    let mut t = distro_testsupport::mesh::a_calls_b(&id("a", "a"), &id("b", "b"), b_in, &[]);
    for (i, name) in extra.iter().enumerate() {
        t.push_str(&format!(
            r#"
[[services]]
name = "{name}"
protocol = "http"
[[services.endpoints]]
address = "127.0.0.1:{port}"
identity = "{id}"
"#,
            port = 20000 + i,
            id = id("filler", "filler"),
        ));
    }
    t
}

/// Replaces the watched configuration file atomically (as an operator's tooling would).
/// Waits until `cond` holds, or fails with `what` after `within`.
fn wait_until(within: Duration, what: impl Fn() -> String, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Proxy B (inbound on `b_in`, in front of a [`backend`]) and proxy A (outbound listener for
/// service `b`, returned), both bootstrapped with join tokens made through `tokens` and
/// listing `addresses` as their control plane.
fn start_pair(
    dir: &Path,
    tokens: &ControlPlane,
    addresses: &[String],
    b_in: SocketAddr,
) -> (Proxy, Proxy, SocketAddr) {
    let bundle = dir.join("bundle.pem");
    std::fs::write(&bundle, tokens.bundle()).unwrap();
    let cp_section = |who: &str| {
        let token = dir.join(format!("{who}.token"));
        std::fs::write(&token, tokens.join_token(&id(who, who), "10m")).unwrap();
        json!({
            "addresses": addresses,
            "ca_bundle": bundle,
            "token_file": token,
            "backoff_max_ms": 1000,
        })
    };
    let app = backend();
    let b = Proxy::start(
        dir,
        "b",
        json!({"inbound": {"listen": b_in, "app": app, "protocol": "http"}, "control_plane": cp_section("b")}),
    );
    let a_out = loopback();
    let a = Proxy::start(
        dir,
        "a",
        json!({"outbound": [{"service": "b", "listen": a_out}], "control_plane": cp_section("a")}),
    );
    (a, b, a_out)
}

/// A replica's arguments: the configuration folder `cfg` watched every 100 ms, 3 s long polls,
/// and `extra`.
fn replica_args<'a>(cfg: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--config",
        cfg.to_str().unwrap(),
        "--watch-interval",
        "100ms",
        "--long-poll",
        "3s",
    ];
    args.extend_from_slice(extra);
    args
}

/// What the etcd failover tests start from: a temporary directory, B's application address,
/// the configuration folder (no extra services) and a 3-member etcd cluster. `None` after a
/// SKIP line (a failure under CI) when etcd is not installed.
fn etcd_setup(test: &str) -> Option<(tempfile::TempDir, SocketAddr, PathBuf, Cluster)> {
    if !have_etcd(test) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let b_in = loopback();
    let cfg = config_dir(dir.path(), &mesh_toml(b_in, &[]));
    let cluster = Cluster::start(dir.path());
    Some((dir, b_in, cfg, cluster))
}

/// Three replicas over etcd, each watching the same configuration files; proxies A and B list
/// all three. While one thread pushes a configuration change every 250 ms and three clients
/// send requests through A to B (two keep-alive, one connection per request), the replicas A
/// and B are connected to are killed with SIGKILL. Every data-path request succeeds, both
/// proxies move to a surviving replica (and say so on `/ready` and in their metrics), a
/// change made after the kill reaches both, and both renew their 10 s certificates there.
#[test]
fn proxies_fail_over_with_zero_failed_requests() {
    let Some((dir, b_in, cfg, cluster)) = etcd_setup("proxies_fail_over_with_zero_failed_requests")
    else {
        return;
    };
    let eps = cluster.endpoints();
    // Renewal every ~5 s: the proxies must renew through a survivor too.
    let args = replica_args(&cfg, &["--svid-ttl", "10s"]);
    let mut replicas: Vec<ControlPlane> = (0..3)
        .map(|_| ControlPlane::start_replica(dir.path(), &eps, "failover", &args))
        .collect();
    let addresses: Vec<String> = replicas.iter().map(|r| r.api.to_string()).collect();
    let (a, b, a_out) = start_pair(dir.path(), &replicas[0], &addresses, b_in);
    let (st, body) = http_get(a_out, "/first").unwrap();
    assert_eq!(st, 200, "{body}\nA:\n{}\nB:\n{}", a.log(), b.log());
    for p in [&a, &b] {
        let r = p.ready();
        assert_eq!(
            r["control_plane"]["replicas"],
            json!(addresses),
            "{}: {r}",
            p.name
        );
        assert!(p.replica().is_some_and(|r| addresses.contains(&r)), "{r}");
    }

    let load = Load::start(a_out);
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let pusher = {
        let (stop, pushed, cfg) = (stop.clone(), pushed.clone(), cfg.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                write_config(&cfg, &mesh_toml(b_in, &[format!("push-{n}")]));
                pushed.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    // Pushes reach both proxies before the kill.
    let version = |p: &Proxy| p.ready()["config_version"].as_u64().unwrap_or(0);
    let (va, vb) = (version(&a), version(&b));
    wait_until(
        Duration::from_secs(10),
        || {
            format!(
                "pushes do not reach the proxies: A {}, B {}",
                a.ready(),
                b.ready()
            )
        },
        || version(&a) >= va + 2 && version(&b) >= vb + 2,
    );
    let victims: Vec<String> = {
        let mut v = vec![a.replica().unwrap(), b.replica().unwrap()];
        v.dedup();
        v
    };
    let ok_before = load.ok();
    let serial = |p: &Proxy| -> String {
        let c: Value = serde_json::from_str(&p.get("/certs").1).unwrap_or_default();
        c["serial"].as_str().unwrap_or_default().to_string()
    };
    let serials_at_kill = [serial(&a), serial(&b)];
    for r in replicas.iter_mut() {
        if victims.contains(&r.api.to_string()) {
            r.kill9();
        }
    }
    eprintln!("killed {victims:?} after {ok_before} requests");
    let killed_at = Instant::now();
    for p in [&a, &b] {
        wait_until(
            Duration::from_secs(15),
            || {
                format!(
                    "{} did not move to a live replica: {}\n{}",
                    p.name,
                    p.ready(),
                    p.log()
                )
            },
            || {
                let r = p.ready();
                r["control_plane"]["connected"] == true
                    && r["control_plane"]["replica"]
                        .as_str()
                        .is_some_and(|r| !victims.contains(&r.to_string()))
            },
        );
        eprintln!(
            "{} on {:?} after {:?}",
            p.name,
            p.replica(),
            killed_at.elapsed()
        );
    }
    // Pushes go on for a while on the survivors, with the load.
    let pushed_at_kill = pushed.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(10),
        || "the pusher stalled".into(),
        || {
            pushed.load(Ordering::Relaxed) >= pushed_at_kill + 8
                && killed_at.elapsed() > Duration::from_secs(3)
        },
    );
    stop.store(true, Ordering::Relaxed);
    pusher.join().unwrap();
    let (ok, failed) = load.stop();
    eprintln!(
        "data path: {ok} requests succeeded, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failed data-path requests: {failed:?}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    assert!(
        ok >= ok_before + 50,
        "too little load after the kill: {ok_before} before, {ok} in all"
    );

    // A change made now, after the kill, reaches both proxies through the survivors.
    write_config(&cfg, &mesh_toml(b_in, &["after-the-kill".to_string()]));
    for p in [&a, &b] {
        wait_until(
            Duration::from_secs(10),
            || {
                format!(
                    "{} never got the change: {:?}\n{}",
                    p.name,
                    p.services(),
                    p.log()
                )
            },
            || p.services().contains(&"after-the-kill".to_string()),
        );
        let m = p.get("/metrics").1;
        let failovers = m
            .lines()
            .find_map(|l| l.strip_prefix("mesh_proxy_control_plane_failovers_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(failovers >= 1.0, "{}: {m}", p.name);
        let now = p.replica().unwrap();
        for v in &victims {
            assert!(
                m.contains(&format!(
                    "mesh_proxy_control_plane_replica{{address=\"{v}\"}} 0"
                )),
                "{}: {m}",
                p.name
            );
        }
        assert!(
            m.contains(&format!(
                "mesh_proxy_control_plane_replica{{address=\"{now}\"}} 1"
            )),
            "{}: {m}",
            p.name
        );
    }
    // Renewal goes on through the survivors: both proxies hold a certificate issued after the
    // kill, and the data path still works with it.
    for (p, before) in [&a, &b].into_iter().zip(&serials_at_kill) {
        wait_until(
            Duration::from_secs(20),
            || format!("{} did not renew after the kill: {}", p.name, p.log()),
            || serial(p) != *before,
        );
    }
    assert_eq!(http_get(a_out, "/last").unwrap().0, 200);
}

/// A replica cut off from etcd (its only member stopped) answers its proxies
/// `503 store_unavailable` once it must read the store: they move to the replica that sees
/// the store, with no failed data-path request, and a change made meanwhile reaches them.
/// (The proxies start while the healthy replica is down, so both begin on the one cut off.)
#[test]
fn proxies_leave_a_replica_cut_off_from_the_store() {
    let Some((dir, b_in, cfg, mut cluster)) =
        etcd_setup("proxies_leave_a_replica_cut_off_from_the_store")
    else {
        return;
    };
    let args = replica_args(&cfg, &[]);
    let mut good = ControlPlane::start_replica(dir.path(), &cluster.endpoints(), "cut", &args);
    let cut = ControlPlane::start_replica(dir.path(), &cluster.endpoint(2), "cut", &args);
    let addresses = vec![good.api.to_string(), cut.api.to_string()];
    good.kill9();
    let (a, b, a_out) = start_pair(dir.path(), &cut, &addresses, b_in);
    for p in [&a, &b] {
        assert_eq!(p.replica(), Some(cut.api.to_string()), "{}", p.name);
    }
    good.restart();
    let load = Load::start(a_out);
    std::thread::sleep(Duration::from_millis(500));
    cluster.stop_member(2);
    write_config(&cfg, &mesh_toml(b_in, &["while-cut-off".to_string()]));
    let moved_at = Instant::now();
    for p in [&a, &b] {
        wait_until(
            Duration::from_secs(30),
            || {
                format!(
                    "{} stayed on the cut-off replica: {}\n{}",
                    p.name,
                    p.ready(),
                    p.log()
                )
            },
            || {
                p.replica() == Some(good.api.to_string())
                    && p.services().contains(&"while-cut-off".to_string())
            },
        );
        eprintln!(
            "{} on the healthy replica with the change after {:?}",
            p.name,
            moved_at.elapsed()
        );
        assert!(
            p.log().contains("store_unavailable"),
            "{} moved for another reason:\n{}",
            p.name,
            p.log()
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let (ok, failed) = load.stop();
    eprintln!(
        "data path: {ok} requests succeeded, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "failed data-path requests: {failed:?}");
    assert!(ok >= 50, "too little load: {ok}");
}
