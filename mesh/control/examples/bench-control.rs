//! Benchmark: N simulated proxies long-poll a real `mesh-control`; one configuration change;
//! how long until every proxy has it, and the control plane's memory. With `--replicas R`
//! (R > 1) the control plane is R replicas over a 3-member etcd cluster started on loopback,
//! the proxies spread over the replicas, the change made through replica 0's configuration
//! directory; the store's write latency (`mesh_control_store_write_seconds`) and each
//! replica's memory are reported too.
//!
//! Run through `bench/control/run.sh` (which builds in release mode and raises the open-file
//! limit), or directly:
//! `cargo run --release -p mesh-control --example bench-control -- --proxies 1000`.
//! Prints one JSON object on stdout; progress on stderr.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use distro_hostio::Cmd;
use distro_testsupport::etcd::Cluster;
use distro_testsupport::free_addr;
use http_body_util::{BodyExt, Full};
use mesh_core::api::{self, BootstrapRequest, ConfigResponse, SvidResponse};
use mesh_core::identity::{self, SpiffeId};
use mesh_core::tls::{self, ExpectedPeer};
use rustls::pki_types::ServerName;

const TD: &str = "bench.example";

struct Opts {
    proxies: usize,
    bin: PathBuf,
    concurrency: usize,
    replicas: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        proxies: 1000,
        bin: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/mesh-control"),
        concurrency: 16,
        replicas: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1)) {
            ("--proxies", Some(v)) => o.proxies = v.parse().expect("--proxies N"),
            ("--bin", Some(v)) => o.bin = PathBuf::from(v),
            ("--concurrency", Some(v)) => o.concurrency = v.parse().expect("--concurrency N"),
            ("--replicas", Some(v)) => o.replicas = v.parse().expect("--replicas N"),
            (a, _) => panic!(
                "unknown argument {a}; use --proxies N --bin PATH --concurrency N --replicas N"
            ),
        }
        i += 2;
    }
    o
}

fn mesh_toml(weight: u32) -> String {
    format!(
        r#"
[[services]]
name = "reviews"
protocol = "http"
[[services.endpoints]]
address = "127.0.0.1:19081"
identity = "spiffe://{TD}/ns/shop/sa/reviews"
labels = {{ version = "v1" }}
[[services.endpoints]]
address = "127.0.0.1:19082"
identity = "spiffe://{TD}/ns/shop/sa/reviews"
labels = {{ version = "v2" }}

[[routes]]
service = "reviews"
name = "canary"
destinations = [{{ labels = {{ version = "v1" }}, weight = {} }}, {{ labels = {{ version = "v2" }}, weight = {weight} }}]
"#,
        100 - weight
    )
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn try_connect(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(
            ServerName::try_from(api::CONTROL_PLANE_SERVER_NAME).unwrap(),
            tcp,
        )
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

async fn connect(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Sender {
    try_connect(addr, cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn try_call(
    send: &mut Sender,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "mesh-control")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, body.to_bytes()))
}

async fn call(send: &mut Sender, method: &str, path: &str, body: Vec<u8>) -> (u16, Bytes) {
    try_call(send, method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What one simulated proxy saw of the control-plane restart: when it tried to reconnect,
/// and when it had a configuration again.
struct Reconnect {
    attempts: Vec<Instant>,
    done: Instant,
    _conn: Sender,
}

/// A proxy whose long-poll ended because the control plane went away: it tries again at once,
/// then after each failure waits as `mesh-proxy` does ([`api::reconnect_backoff`] with the
/// proxy's default cap, [`api::DEFAULT_RECONNECT_BACKOFF_MAX_MS`]). It is back when a new connection answers a config request (`since=0`,
/// answered at once; a real proxy then long-polls from its version).
async fn reconnect(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Reconnect {
    let mut attempts = Vec::new();
    let mut failures = 0u32;
    loop {
        attempts.push(Instant::now());
        let tried = tokio::time::timeout(Duration::from_secs(10), async {
            let mut s = try_connect(addr, cfg.clone()).await?;
            let path = format!("{}?since=0", api::PATH_CONFIG);
            match try_call(&mut s, "GET", &path, Vec::new()).await? {
                (200, _) => Ok(s),
                (status, _) => Err(format!("status {status}")),
            }
        })
        .await;
        if let Ok(Ok(conn)) = tried {
            return Reconnect {
                attempts,
                done: Instant::now(),
                _conn: conn,
            };
        }
        failures += 1;
        assert!(failures < 50, "proxy did not reconnect: {tried:?}");
        let mut r = [0u8; 8];
        aws_lc_rs::rand::fill(&mut r).unwrap();
        let wait = api::reconnect_backoff(
            failures,
            api::DEFAULT_RECONNECT_BACKOFF_MAX_MS,
            u64::from_le_bytes(r),
        );
        tokio::time::sleep(wait).await;
    }
}

/// User plus system CPU time of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// One mesh-control process under benchmark.
struct Replica {
    child: std::process::Child,
    api: std::net::SocketAddr,
    ops: std::net::SocketAddr,
}

impl Replica {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The metrics exposition; empty while the ops endpoint does not answer.
    fn metrics(&self) -> String {
        distro_testsupport::http::get(self.ops, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn stop(mut self) {
        let _ = Cmd::new("kill", "stopping the control plane under benchmark")
            .args(["-TERM", &self.pid().to_string()])
            .output();
        let _ = self.child.wait();
    }
}

/// The store write latency a replica's metrics report: (count, mean ms, p99 ms as the upper
/// bound of the bucket that holds the 99th percentile).
fn store_writes(metrics: &str) -> (u64, f64, f64) {
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let mut buckets = Vec::new();
    let (mut sum, mut count) = (0.0, 0.0);
    for l in metrics.lines() {
        if let Some(rest) = l.strip_prefix("mesh_control_store_write_seconds_bucket{le=\"") {
            let le = rest.split('"').next().unwrap_or_default();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            buckets.push((le, value(l).unwrap_or(0.0)));
        } else if l.starts_with("mesh_control_store_write_seconds_sum ") {
            sum = value(l).unwrap_or(0.0);
        } else if l.starts_with("mesh_control_store_write_seconds_count ") {
            count = value(l).unwrap_or(0.0);
        }
    }
    let p99 = buckets
        .iter()
        .find(|(_, c)| *c >= count * 0.99)
        .map_or(f64::INFINITY, |(le, _)| *le);
    let mean = if count > 0.0 { sum / count } else { 0.0 };
    (count as u64, mean * 1000.0, p99 * 1000.0)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let o = opts();
    assert!(
        o.bin.exists(),
        "{} not found: build it with `cargo build --release -p mesh-control`",
        o.bin.display()
    );
    assert!(o.replicas >= 1, "--replicas must be at least 1");
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("mesh");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(cfg_dir.join("mesh.toml"), mesh_toml(10)).unwrap();

    // A service-account token issuer, as a Kubernetes API server would be.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let issuer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let spki = issuer.public_key().as_der().unwrap();
    let pub_pem = dir.path().join("sa.pub.pem");
    std::fs::write(&pub_pem, identity::pem_encode("PUBLIC KEY", spki.as_ref())).unwrap();

    // The state: a local directory for one process, else etcd with the sealing key (0600).
    let etcd = (o.replicas > 1).then(|| {
        assert!(
            distro_testsupport::have("etcd") && distro_testsupport::have("etcdctl"),
            "--replicas {} needs etcd: {}",
            o.replicas,
            distro_testsupport::etcd::INSTALL
        );
        Cluster::start(dir.path())
    });
    let state_args: Vec<String> = match &etcd {
        None => vec![
            "--state-dir".into(),
            dir.path().join("state").display().to_string(),
        ],
        Some(e) => {
            let key = dir.path().join("state.key");
            let mut k = [0u8; 32];
            aws_lc_rs::rand::fill(&mut k).unwrap();
            distro_hostio::write_atomic(&key, hex::encode(k).as_bytes(), distro_hostio::PRIVATE)
                .unwrap_or_else(|e| panic!("{e}"));
            vec![
                "--state".into(),
                format!("etcd://{}/bench", e.endpoints()),
                "--state-key-file".into(),
                key.display().to_string(),
            ]
        }
    };

    // Replica 0 watches the configuration directory; the others learn changes from etcd.
    let start = |i: usize, api: std::net::SocketAddr, ops: std::net::SocketAddr| -> Replica {
        let mut c = Cmd::new(&o.bin, "the control plane under benchmark");
        c.arg("run")
            .args(&state_args)
            .args([
                "--trust-domain",
                TD,
                "--long-poll",
                "120s",
                "--watch-interval",
                "100ms",
            ])
            .args(["--listen", &api.to_string(), "--ops", &ops.to_string()])
            .arg("--sa-issuer-key")
            .arg(&pub_pem)
            // Every simulated proxy connects from 127.0.0.1: lift the per-peer cap above N.
            .args(["--max-connections", &(o.proxies + 256).to_string()])
            .args(["--max-connections-per-peer", &(o.proxies + 256).to_string()])
            .env("RUST_LOG", "warn");
        if i == 0 {
            c.arg("--config").arg(&cfg_dir);
        }
        let child = c
            .spawn_logged(&dir.path().join(format!("control-{i}.log")))
            .unwrap_or_else(|e| panic!("{e}"));
        let r = Replica { child, api, ops };
        let t = Instant::now();
        while std::net::TcpStream::connect(api).is_err() || r.metrics().is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "mesh-control replica {i} did not start: {}",
                std::fs::read_to_string(dir.path().join(format!("control-{i}.log")))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    };
    let replicas: Vec<Replica> = (0..o.replicas)
        .map(|i| start(i, free_addr(), free_addr()))
        .collect();
    let bundle = match &etcd {
        None => std::fs::read_to_string(dir.path().join("state/bundle.pem")).unwrap(),
        Some(e) => e.value("/bench/bundle.pem").trim_end().to_string() + "\n",
    };
    let rss = |q: &str| -> Vec<u64> { replicas.iter().map(|r| rss_kib(r.pid(), q)).collect() };
    let rss_idle = rss("VmRSS:");
    let pids: Vec<u32> = replicas.iter().map(|r| r.pid()).collect();
    let apis: Vec<std::net::SocketAddr> = replicas.iter().map(|r| r.api).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = o.proxies;
    let result = rt.block_on(async move {
        let roots = tls::roots_from_pem(&bundle).unwrap();
        let expected = ExpectedPeer::Exact(SpiffeId::parse(&api::control_plane_id(TD)).unwrap());
        let boot_cfg = Arc::new(tls::spiffe_bootstrap_client_config(roots.clone(), expected.clone()).unwrap());
        let issuer = Arc::new(issuer);

        // 1. Bootstrap every proxy (its own identity, its own key, a JWT each), proxy i on
        //    replica i mod R: every bootstrap writes its serial to the store.
        let t_boot = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(o.concurrency));
        let mut boots = Vec::new();
        for i in 0..n {
            let (sem, boot_cfg, issuer) = (sem.clone(), boot_cfg.clone(), issuer.clone());
            let api_addr = apis[i % apis.len()];
            boots.push(tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                let id = SpiffeId::workload(TD, "bench", &format!("proxy-{i}")).unwrap();
                let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
                let claims = serde_json::json!({"iss": "bench", "sub": format!("system:serviceaccount:bench:proxy-{i}"), "aud": TD, "exp": exp});
                let input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let sig = issuer.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
                let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
                let csr = identity::generate_csr(&id).unwrap();
                let t = Instant::now();
                let mut s = connect(api_addr, boot_cfg).await;
                let body = serde_json::to_vec(&BootstrapRequest { token, csr_pem: csr.csr_pem.clone() }).unwrap();
                let (status, body) = call(&mut s, "POST", api::PATH_BOOTSTRAP, body).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                let took = t.elapsed().as_secs_f64() * 1000.0;
                let svid: SvidResponse = serde_json::from_slice(&body).unwrap();
                (identity::certs_from_pem(&svid.svid_chain_pem).unwrap(), csr, api_addr, took)
            }));
        }
        let mut creds = Vec::new();
        let mut boot_ms = Vec::new();
        for b in boots {
            let (chain, csr, api_addr, took) = b.await.unwrap();
            boot_ms.push(took);
            creds.push((chain, csr, api_addr));
        }
        boot_ms.sort_by(|a, b| a.total_cmp(b));
        let bootstrap_secs = t_boot.elapsed().as_secs_f64();
        eprintln!("bootstrapped {n} proxies in {bootstrap_secs:.1}s");
        // What the bootstraps left (their connections are closed), before any proxy connects.
        let rss_bootstrapped: Vec<u64> = pids.iter().map(|p| rss_kib(*p, "VmRSS:")).collect();

        // 2. Every proxy connects over mTLS to its replica, takes the snapshot, and long-polls
        //    for the next.
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n);
        let mut polls = Vec::new();
        let mut answers = Vec::new();
        for (chain, csr, api_addr) in creds {
            let cfg = Arc::new(tls::spiffe_client_config(roots.clone(), chain, csr.key_der(), expected.clone()).unwrap());
            let (sem, ready_tx) = (sem.clone(), ready_tx.clone());
            let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
            answers.push(answer_rx);
            polls.push(tokio::spawn(async move {
                let mut s = {
                    let _p = sem.acquire().await.unwrap();
                    connect(api_addr, cfg.clone()).await
                };
                let (status, body) = call(&mut s, "GET", &format!("{}?since=0", api::PATH_CONFIG), Vec::new()).await;
                assert_eq!(status, 200);
                let v: ConfigResponse = serde_json::from_slice(&body).unwrap();
                ready_tx.send(()).await.unwrap();
                let (status, body) = call(&mut s, "GET", &format!("{}?since={}", api::PATH_CONFIG, v.version), Vec::new()).await;
                let at = Instant::now();
                // The answer is checked once every proxy has its answer: 10,000 simulated
                // proxies share the control plane's 2 cores, and their own parsing would
                // otherwise be counted as the push's time.
                let _ = answer_tx.send((at, status, body));
                // 4. Hold the next long-poll until the control plane is restarted, then
                //    reconnect as a proxy does.
                let next = format!("{}?since={}", api::PATH_CONFIG, v.version + 1);
                let _ = try_call(&mut s, "GET", &next, Vec::new()).await;
                drop(s);
                reconnect(api_addr, cfg).await
            }));
        }
        for _ in 0..n {
            ready_rx.recv().await.unwrap();
        }
        // Let the last requests reach the server's wait.
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!("{n} proxies connected and waiting");
        (boot_ms, bootstrap_secs, polls, answers, rss_bootstrapped)
    });
    let (boot_ms, bootstrap_secs, polls, answers, rss_bootstrapped) = result;
    let cpu = |rs: &[Replica]| -> f64 { rs.iter().map(|r| cpu_secs(r.pid())).sum() };
    let cpu_connected = cpu(&replicas);
    let rss_connected = rss("VmRSS:");

    // 3. One change, through replica 0's configuration directory.
    let t0 = Instant::now();
    distro_hostio::write_atomic(
        &cfg_dir.join("mesh.toml"),
        mesh_toml(50).as_bytes(),
        distro_hostio::PUBLIC,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut lat: Vec<f64> = rt.block_on(async move {
        let mut got = Vec::new();
        for a in answers {
            got.push(a.await.unwrap());
        }
        let mut lat = Vec::new();
        for (at, status, body) in got {
            assert_eq!(status, 200, "long-poll ended without a change");
            let next: ConfigResponse = serde_json::from_slice(&body).unwrap();
            assert_eq!(next.config.routes[0].destinations[1].weight, 50);
            lat.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        }
        lat
    });
    let cpu_push = cpu(&replicas) - cpu_connected;
    lat.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    let rss_peak = rss("VmHWM:");
    let writes: Vec<serde_json::Value> = replicas
        .iter()
        .map(|r| {
            let (count, mean, p99) = store_writes(&r.metrics());
            serde_json::json!({ "count": count, "mean_ms": mean, "p99_ms_at_most": p99 })
        })
        .collect();

    // 4. The whole control plane restarts: every proxy's long-poll ends at once, and every
    //    proxy reconnects with the proxy's jittered backoff.
    eprintln!("restarting the control plane: {n} proxies reconnect");
    let addrs: Vec<_> = replicas.iter().map(|r| (r.api, r.ops)).collect();
    let t_down = Instant::now();
    for r in replicas {
        r.stop();
    }
    let replicas: Vec<Replica> = addrs
        .iter()
        .enumerate()
        .map(|(i, (api, ops))| start(i, *api, *ops))
        .collect();
    let t_up = Instant::now();
    let back: Vec<Reconnect> = rt.block_on(async move {
        let mut back = Vec::new();
        for p in polls {
            back.push(p.await.unwrap());
        }
        back
    });
    let cpu_reconnect = cpu(&replicas);
    let ms = |t: Instant, from: Instant| t.saturating_duration_since(from).as_secs_f64() * 1000.0;
    let mut done: Vec<f64> = back.iter().map(|b| ms(b.done, t_down)).collect();
    done.sort_by(|a, b| a.total_cmp(b));
    let all_attempts: Vec<Instant> = back
        .iter()
        .flat_map(|b| b.attempts.iter().copied())
        .collect();
    // Attempts per 10 ms while the control plane was back up: the height of the herd.
    let mut per_10ms = std::collections::BTreeMap::<u64, u64>::new();
    for a in all_attempts.iter().filter(|a| **a >= t_up) {
        *per_10ms.entry((ms(*a, t_up) / 10.0) as u64).or_default() += 1;
    }
    let peak_10ms = per_10ms.values().copied().max().unwrap_or(0);
    let reconnect_json = serde_json::json!({
        "restart_ms": ms(t_up, t_down),
        "reconnected_ms_after_restart_began": { "p50": percentile(&done, 0.5), "p99": percentile(&done, 0.99), "max": percentile(&done, 1.0) },
        "attempts": all_attempts.len(),
        "failed_attempts": all_attempts.len() - back.len(),
        "peak_attempts_per_10ms_once_up": peak_10ms,
        "backoff": format!("mesh_core::api::reconnect_backoff, cap {} ms (mesh-proxy's default)", api::DEFAULT_RECONNECT_BACKOFF_MAX_MS),
        "control_plane_cpu_seconds": cpu_reconnect,
    });
    eprintln!(
        "control plane restarted in {:.0} ms; all {n} proxies back {:.0} ms after it went down (p50 {:.0} ms), {} attempts, at most {peak_10ms} in any 10 ms",
        ms(t_up, t_down),
        percentile(&done, 1.0),
        percentile(&done, 0.5),
        all_attempts.len()
    );
    drop(back);
    for r in replicas {
        r.stop();
    }
    drop(etcd);
    // Growth per connected proxy over `from` (per replica): from idle, everything the proxy
    // costs; from after the bootstraps, its connection alone.
    let per_proxy = |from: &[u64]| -> Vec<f64> {
        rss_connected
            .iter()
            .zip(from)
            .map(|(c, i)| c.saturating_sub(*i) as f64 * o.replicas as f64 / n as f64)
            .collect()
    };
    let out = serde_json::json!({
        "proxies": n,
        "replicas": o.replicas,
        "store": if o.replicas > 1 { "etcd (3 members, loopback)" } else { "local directory" },
        "cores": std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0),
        "bootstrap_seconds": bootstrap_secs,
        "bootstrap_request_ms": { "p50": percentile(&boot_ms, 0.5), "p99": percentile(&boot_ms, 0.99) },
        "propagation_ms": { "p50": p50, "p99": p99, "max": max, "includes_file_watch_interval_ms": 100 },
        "goal_p99_ms": 1000,
        "goal_met": p99 < 1000.0,
        "rss_goal_kib_per_proxy": 20,
        "store_writes": writes,
        "control_plane_rss_kib": { "idle": rss_idle, "bootstrapped": rss_bootstrapped, "connected": rss_connected, "peak": rss_peak },
        "control_plane_rss_kib_per_proxy": per_proxy(&rss_idle),
        "control_plane_rss_kib_per_connection": per_proxy(&rss_bootstrapped),
        "control_plane_cpu_seconds": { "bootstrap_and_connect": cpu_connected, "push": cpu_push },
        "reconnect": reconnect_json,
    });
    eprintln!(
        "one change reached all {n} proxies on {} replica(s) in {max:.0} ms (p50 {p50:.0} ms, p99 {p99:.0} ms); RSS per replica with all connected {rss_connected:?} KiB, peak {rss_peak:?} KiB",
        o.replicas
    );
    println!("{out}");
}
