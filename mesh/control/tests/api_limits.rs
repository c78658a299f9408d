//! The API listener under abuse: slow or silent clients are cut at the handshake, header and
//! body timeouts; connection caps (global and per peer address) bound the descriptors a flood
//! can hold, refusals are counted in /metrics, and a legitimate client keeps being served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mesh_core::api;
use mesh_core::identity::SpiffeId;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEGIT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// What happened to one abusive connection.
#[derive(Debug)]
enum Outcome {
    /// Closed before or during the TLS handshake (refused by a limit).
    Refused,
    /// Admitted; the server answered `status` and closed after `closed_after` (from the
    /// moment the headers were sent).
    Cut { status: u16, closed_after: Duration },
    /// Still open when the client gave up.
    Held,
}

/// One client that completes TLS, declares `Content-Length: 60000` on `POST /v1/bootstrap`
/// and sends nothing more, then waits (at most `give_up`) for the server to close.
async fn slow_body_client(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    give_up: Duration,
) -> Outcome {
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return Outcome::Refused;
    };
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let name = ServerName::try_from(api::CONTROL_PLANE_SERVER_NAME).unwrap();
    let Ok(Ok(mut tls)) = tokio::time::timeout(give_up, connector.connect(name, tcp)).await else {
        return Outcome::Refused;
    };
    let head = "POST /v1/bootstrap HTTP/1.1\r\nhost: mesh-control\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n";
    if tls.write_all(head.as_bytes()).await.is_err() || tls.flush().await.is_err() {
        return Outcome::Refused;
    }
    let sent = Instant::now();
    let mut got = Vec::new();
    match tokio::time::timeout(give_up, tls.read_to_end(&mut got)).await {
        Err(_) => Outcome::Held,
        // A reset after the response still counts as closed.
        Ok(_) => {
            let text = String::from_utf8_lossy(&got);
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            Outcome::Cut {
                status,
                closed_after: sent.elapsed(),
            }
        }
    }
}

/// 500 clients each declaring a 60,000-byte body and sending none: the control plane's
/// descriptors stay bounded by the per-peer cap (counted in /proc/PID/fd), every admitted one
/// is answered 408 and closed within the body timeout, the rest are refused at once and
/// counted in /metrics, and a client from another address is still served during the flood.
#[test]
fn slow_body_flood_is_bounded_cut_and_counted_while_a_legitimate_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(
        dir.path(),
        &[
            "--body-read-timeout",
            "2s",
            "--max-connections-per-peer",
            "32",
            "--max-connections",
            "200",
        ],
    );
    let pid = cp.child.as_ref().unwrap().id();
    let legit_id = "spiffe://example.org/ns/vm/sa/legit";
    let tokens: Vec<String> = (0..3).map(|_| cp.join_token(legit_id, "10m")).collect();
    let baseline = open_fds(pid);
    assert!(baseline > 0, "cannot read /proc/{pid}/fd");

    let roots = mesh_core::tls::roots_from_pem(&cp.bundle()).unwrap();
    let expected =
        mesh_core::tls::ExpectedPeer::Exact(SpiffeId::parse(&api::control_plane_id(TD)).unwrap());
    let cfg = Arc::new(mesh_core::tls::spiffe_bootstrap_client_config(roots, expected).unwrap());

    // Sample the descriptor count while the flood runs.
    let done = Arc::new(AtomicBool::new(false));
    let max_fds = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, max_fds) = (done.clone(), max_fds.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                max_fds.fetch_max(open_fds(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // The legitimate client bootstraps from 127.0.0.2 in the middle of the flood.
    let legit = {
        let cp_api = cp.api;
        let bundle = cp.bundle();
        let tokens = tokens.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut statuses = Vec::new();
            for t in &tokens {
                let csr =
                    mesh_core::identity::generate_csr(&SpiffeId::parse(legit_id).unwrap()).unwrap();
                let body = serde_json::to_vec(&api::BootstrapRequest {
                    token: t.clone(),
                    csr_pem: csr.csr_pem,
                })
                .unwrap();
                let r = request_from(
                    Some(LEGIT),
                    cp_api,
                    &bundle,
                    None,
                    "POST",
                    api::PATH_BOOTSTRAP,
                    body,
                    Duration::from_secs(10),
                );
                statuses.push(r.map(|r| r.status));
                std::thread::sleep(Duration::from_millis(300));
            }
            statuses
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let outcomes: Vec<Outcome> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..500 {
            tasks.push(tokio::spawn(slow_body_client(
                cp.api,
                cfg.clone(),
                Duration::from_secs(15),
            )));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    eprintln!("flood of 500 done in {:?}", started.elapsed());
    let legit_statuses = legit.join().unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    let max_fds = max_fds.load(Ordering::Relaxed);
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Refused))
        .count();
    let held = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Held))
        .count();
    let cut: Vec<(u16, Duration)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Cut {
                status,
                closed_after,
            } => Some((*status, *closed_after)),
            _ => None,
        })
        .collect();
    eprintln!(
        "baseline fds {baseline}, max during flood {max_fds}; refused {refused}, cut {}, held {held}",
        cut.len()
    );
    assert_eq!(
        held, 0,
        "connections held past 15 s: the body timeout did not cut them"
    );
    assert!(
        max_fds <= baseline + 32 + 12,
        "descriptors not bounded by the per-peer cap of 32: baseline {baseline}, max {max_fds}"
    );
    assert!(
        !cut.is_empty(),
        "no flood connection was admitted at all: {outcomes:?}"
    );
    for (status, after) in &cut {
        assert_eq!(*status, 408, "an admitted slow body must be answered 408");
        assert!(
            *after < Duration::from_secs(5),
            "a slow body was held {after:?} (body timeout 2 s)"
        );
    }
    assert!(
        refused >= 300,
        "only {refused} of 500 refused by a cap of 32"
    );
    let counted = cp.metric("mesh_control_connections_refused_total{limit=\"per_peer\"}");
    assert_eq!(
        counted, refused as f64,
        "every refused connection is counted in /metrics"
    );
    assert_eq!(
        cp.metric("mesh_control_connection_timeouts_total{phase=\"body\"}"),
        cut.len() as f64
    );
    assert_eq!(
        cp.metric("mesh_control_refusals_total{reason=\"timeout\"}"),
        cut.len() as f64
    );
    for s in &legit_statuses {
        assert_eq!(
            s.as_ref().ok(),
            Some(&200),
            "the legitimate client was not served during the flood: {legit_statuses:?}"
        );
    }
    // Everything is released afterwards.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cp.metric("mesh_control_api_connections_open") > 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cp.metric("mesh_control_api_connections_open"), 0.0);
    assert!(
        open_fds(pid) <= baseline + 4,
        "descriptors leaked: {} now, baseline {baseline}",
        open_fds(pid)
    );
}

/// Reads from `tcp` until EOF or `limit`; returns how long the server took to close.
fn closed_within(mut tcp: std::net::TcpStream, limit: Duration) -> Option<Duration> {
    use std::io::Read;
    let start = Instant::now();
    tcp.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// A TCP client that never starts TLS is cut at the handshake timeout, a TLS client that never
/// sends its headers at the header timeout, and both are counted by phase.
#[test]
fn silent_clients_are_cut_at_the_handshake_and_header_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(
        dir.path(),
        &["--handshake-timeout", "1s", "--header-read-timeout", "1s"],
    );
    let silent = std::net::TcpStream::connect(cp.api).unwrap();
    let took = closed_within(silent, Duration::from_secs(6))
        .expect("a client that never starts TLS was not cut");
    assert!(
        took < Duration::from_secs(3),
        "handshake cut after {took:?}"
    );
    assert_eq!(
        cp.metric("mesh_control_connection_timeouts_total{phase=\"handshake\"}"),
        1.0
    );

    // TLS done, then nothing (and, on a second connection, half a request line).
    let roots = mesh_core::tls::roots_from_pem(&cp.bundle()).unwrap();
    let expected =
        mesh_core::tls::ExpectedPeer::Exact(SpiffeId::parse(&api::control_plane_id(TD)).unwrap());
    let cfg = Arc::new(mesh_core::tls::spiffe_bootstrap_client_config(roots, expected).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for partial in ["", "POST /v1/boot"] {
        let took = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(cp.api).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(cfg.clone());
            let name = ServerName::try_from(api::CONTROL_PLANE_SERVER_NAME).unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(partial.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            let start = Instant::now();
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(6), tls.read_to_end(&mut buf))
                .await
                .map(|_| start.elapsed())
                .ok()
        });
        let took = took.unwrap_or_else(|| panic!("headers {partial:?}: connection not cut"));
        assert!(took < Duration::from_secs(3), "header cut after {took:?}");
    }
    assert_eq!(
        cp.metric("mesh_control_connection_timeouts_total{phase=\"header\"}"),
        2.0
    );
}

/// Over the global cap, a new connection (from any address) is closed at once and counted;
/// once the holders leave, clients are served again.
#[test]
fn global_connection_cap_refuses_extra_connections_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(
        dir.path(),
        &[
            "--max-connections",
            "5",
            "--max-connections-per-peer",
            "100",
        ],
    );
    // The harness's own health probe may still hold a slot for a moment.
    std::thread::sleep(Duration::from_millis(300));
    let holders: Vec<_> = (0..5)
        .map(|_| std::net::TcpStream::connect(cp.api).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let extra = std::net::TcpStream::connect(cp.api).unwrap();
    let took = closed_within(extra, Duration::from_secs(3))
        .expect("a connection over the global cap was not closed");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    let id = "spiffe://example.org/ns/vm/sa/after";
    let token = cp.join_token(id, "10m");
    let r = bootstrap_from(&cp, LEGIT, &token, id);
    assert!(
        r.is_err(),
        "served over the global cap from another address"
    );
    assert!(cp.metric("mesh_control_connections_refused_total{limit=\"global\"}") >= 2.0);
    assert_eq!(cp.metric("mesh_control_api_connections_open"), 5.0);
    drop(holders);
    std::thread::sleep(Duration::from_millis(300));
    let r = bootstrap_from(&cp, LEGIT, &token, id).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
