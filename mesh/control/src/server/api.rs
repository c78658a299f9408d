//! The TLS API listener: connection limits before any TLS work, the handshake within its
//! timeout, per-request authentication of the client's SVID, and routing to the handlers.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use mesh_core::api::{self, reason};
use mesh_core::identity::SpiffeId;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::handlers::{ack, bootstrap, config_poll, poll_since, renew};
use super::http::{refuse, status_for, Body};
use super::Shared;
use crate::ca::issuance::{self, VerifiedLeaf};
use crate::ca::Ca;
use crate::tokens::Refusal;

pub(super) async fn api_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (tcp, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Limits first, before any TLS work: a refused connection is closed at once.
        let guard = match shared.limits.admit(remote.ip()) {
            Ok(g) => g,
            Err(hit) => {
                shared.metrics.connection_refused(hit.label());
                warn_limit(&shared, remote, hit.label());
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let cfg = match shared.tls.read() {
            Ok(c) => c.clone(),
            Err(_) => continue,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let handshake = shared.settings.handshake_timeout;
            let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    shared.metrics.refused(reason::TLS_HANDSHAKE);
                    info!(remote = %remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    shared.metrics.timed_out("handshake");
                    return;
                }
            };
            let peer = Peer {
                chain: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
                verified: Mutex::new(None),
            };
            // Counted as a connected proxy only if the SVID is one this CA honours.
            let proxy = authenticate(&shared, &peer).is_ok();
            if proxy {
                shared
                    .metrics
                    .connected_proxies
                    .fetch_add(1, Ordering::Relaxed);
            }
            serve_conn(shared.clone(), tls, peer, remote).await;
            if proxy {
                shared
                    .metrics
                    .connected_proxies
                    .fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
}

/// Logs a refused connection, at most once a second (a flood must not flood the log too).
fn warn_limit(shared: &Shared, remote: SocketAddr, limit: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if shared.last_limit_warning.swap(now, Ordering::Relaxed) != now {
        warn!(remote = %remote, limit, open = shared.limits.open(), "connection refused: limit reached (see mesh_control_connections_refused_total)");
    }
}

/// The client of one API connection: its certificate chain, if it sent one, and what verifying
/// it against the CA found.
struct Peer {
    chain: Option<Vec<CertificateDer<'static>>>,
    /// The chain's leaf as verified against this CA (the `Arc` current at the time). The
    /// signature and trust domain of a certificate do not change while its connection is open,
    /// so they are checked again only when the CA changes (a rotation, a reload); the record,
    /// which a revocation removes, and the expiry are checked on every request.
    verified: Mutex<Option<(Arc<Ca>, VerifiedLeaf)>>,
}

/// The SPIFFE ID of an mTLS client whose SVID this control plane issued and still honours.
fn authenticate(shared: &Shared, peer: &Peer) -> Result<SpiffeId, Refusal> {
    let chain = peer.chain.as_deref().ok_or_else(|| {
        Refusal::new(
            reason::UNAUTHENTICATED,
            "this endpoint needs mTLS with an SVID",
        )
    })?;
    let ca = shared
        .ca
        .read()
        .map(|c| c.clone())
        .map_err(|_| Refusal::new(reason::INTERNAL, "CA lock poisoned"))?;
    let mut verified = peer
        .verified
        .lock()
        .map_err(|_| Refusal::new(reason::INTERNAL, "peer lock poisoned"))?;
    let leaf = match &*verified {
        Some((at, leaf)) if Arc::ptr_eq(at, &ca) => leaf.clone(),
        _ => {
            let leaf = issuance::verify_leaf(&ca, &shared.trust_domain, chain)?;
            *verified = Some((ca, leaf.clone()));
            leaf
        }
    };
    drop(verified);
    shared.store_call(|| issuance::check_honoured(&shared.state, &leaf))
}

async fn serve_conn<IO>(shared: Arc<Shared>, io: IO, peer: Peer, remote: SocketAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = Arc::new(peer);
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        let peer = peer.clone();
        async move { Ok::<_, std::convert::Infallible>(handle_api(&shared, req, &peer, remote).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.settings.header_read_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if r.as_ref().is_err_and(|e| e.is_timeout()) {
                shared.metrics.timed_out("header");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(3), conn).await;
        }
    }
}

async fn handle_api(
    shared: &Shared,
    req: Request<Incoming>,
    client: &Peer,
    remote: SocketAddr,
) -> Response<Body> {
    // Every mTLS endpoint needs an SVID this CA issued and still honours (checked per request,
    // so a revocation or expiry applies to open keep-alive connections too).
    let peer = client.chain.is_some().then(|| authenticate(shared, client));
    let who = match &peer {
        Some(Ok(p)) => p.to_string(),
        _ => remote.to_string(),
    };
    let needs_svid = |what: &str| -> Result<SpiffeId, Refusal> {
        match &peer {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(r)) => Err(r.clone()),
            None => Err(Refusal::new(reason::UNAUTHENTICATED, what.to_string())),
        }
    };
    let path = req.uri().path().to_string();
    // The bootstrap, renew and ack futures are boxed: a request's future is as large as the
    // largest of its arms, and the one every connection holds for long is the config poll.
    let result = match (req.method().clone(), path.as_str()) {
        (Method::POST, api::PATH_BOOTSTRAP) => Box::pin(bootstrap(shared, req)).await,
        (Method::POST, api::PATH_RENEW) => {
            match needs_svid("renew needs mTLS with the current SVID") {
                Ok(p) => Box::pin(renew(shared, req, &p)).await,
                Err(r) => Err(r),
            }
        }
        (Method::GET, api::PATH_CONFIG) => {
            match needs_svid("config needs mTLS with an SVID; bootstrap first") {
                Ok(p) => {
                    // The request is dropped before the long wait: its header bytes pin hyper's
                    // first read buffer (8 KiB), and a held long-poll is the common state of a
                    // connection (10,000 proxies, 10,000 such buffers).
                    let since = poll_since(&req);
                    drop(req);
                    Ok(config_poll(shared, since, &p).await)
                }
                Err(r) => Err(r),
            }
        }
        (Method::POST, api::PATH_CONFIG_ACK) => match needs_svid("ack needs mTLS with an SVID") {
            Ok(p) => Box::pin(ack(shared, req, &p)).await,
            Err(r) => Err(r),
        },
        _ => Err(Refusal::new(
            reason::NOT_FOUND,
            format!("no endpoint {} {path}", req.method()),
        )),
    };
    match result {
        Ok(r) => r,
        Err(r) => {
            let status = status_for(r.reason);
            let timed_out = r.reason == reason::TIMEOUT;
            let mut resp = refuse(shared, status, r, &who);
            if timed_out {
                resp.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            resp
        }
    }
}
