//! The TLS API listener: connection limits before any TLS work, the handshake within its
//! timeout, per-request authentication of the client's SVID, and routing to the handlers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
        // A long-poll connection lives as long as its proxy (10,000 of them at once), so the
        // task holds no more than a small driver: the handshake's state is boxed and freed when
        // it ends, and the hyper connection (with the TLS session in it) is one allocation. An
        // async block holding the handshake, the stream and the connection side by side was
        // 6.8 KiB a connection, a task's size being that of its largest state.
        tokio::spawn(async move {
            let _guard = guard;
            let Some(tls) = Box::pin(handshake(&shared, cfg, tcp, remote)).await else {
                return;
            };
            serve_conn(shared, tls, remote).await;
        });
    }
}

type TlsTcp = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// The TLS handshake of one API connection, within the handshake timeout.
async fn handshake(
    shared: &Shared,
    cfg: Arc<rustls::ServerConfig>,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
) -> Option<TlsTcp> {
    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp);
    match tokio::time::timeout(shared.settings.handshake_timeout, accept).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            shared.metrics.refused(reason::TLS_HANDSHAKE);
            info!(remote = %remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            shared.metrics.timed_out("handshake");
            None
        }
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
    /// Whether this connection counts in `mesh_control_connected_proxies`: from the first
    /// request on it that an SVID this CA honours authenticated, until it closes.
    counted: AtomicBool,
}

/// The leaf of an mTLS client's chain, verified against this control plane's CA: the part of
/// authenticating it that cannot change while its connection is open, so done again only when
/// the CA changes. [`honoured`] is the rest.
fn verified_leaf(shared: &Shared, peer: &Peer) -> Result<VerifiedLeaf, Refusal> {
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
    Ok(match &*verified {
        Some((at, leaf)) if Arc::ptr_eq(at, &ca) => leaf.clone(),
        _ => {
            let leaf = issuance::verify_leaf(&ca, &shared.trust_domain, chain)?;
            *verified = Some((ca, leaf.clone()));
            leaf
        }
    })
}

/// The SPIFFE ID of a verified leaf this control plane still honours (on record, not expired:
/// read from the store on every request, so a revocation applies to open connections). The read
/// is awaited, not run on a blocking thread: 10,000 long-polls answered at once are 10,000
/// reads. The first honoured request of a connection makes it count as a connected proxy
/// (which needs no read of its own at connect: after a restart, 10,000 proxies reconnect).
async fn honoured(
    shared: &Shared,
    client: &Peer,
    leaf: Result<VerifiedLeaf, Refusal>,
) -> Result<SpiffeId, Refusal> {
    let id = issuance::check_honoured(&shared.state, &leaf?).await?;
    if !client.counted.swap(true, Ordering::Relaxed) {
        shared
            .metrics
            .connected_proxies
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(id)
}

/// Serves HTTP/1 on an established TLS connection until it closes or the control plane shuts
/// down. The connection is set up here, synchronously, and moved into one heap allocation, so
/// the future returned holds a pointer to it and not a second copy of the stream.
fn serve_conn(
    shared: Arc<Shared>,
    tls: TlsTcp,
    remote: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send {
    let peer = Arc::new(Peer {
        chain: tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
        verified: Mutex::new(None),
        counted: AtomicBool::new(false),
    });
    let (svc_shared, svc_peer) = (shared.clone(), peer.clone());
    let svc = hyper::service::service_fn(move |req| {
        handle_api(svc_shared.clone(), req, svc_peer.clone(), remote)
    });
    let mut conn = Box::pin(
        hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(shared.settings.header_read_timeout)
            .serve_connection(TokioIo::new(tls), svc),
    );
    async move {
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
        if peer.counted.load(Ordering::Relaxed) {
            shared
                .metrics
                .connected_proxies
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What one API request runs: the route is chosen, and the client's chain verified, before
/// the future exists, and each route's future holds only what its handler needs. A held config
/// long-poll is the common state of a connection (10,000 proxies, 10,000 of them), so its
/// future does not keep the request head (which pins hyper's read buffer), or another route's
/// state.
type Handled = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

fn handle_api(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    client: Arc<Peer>,
    remote: SocketAddr,
) -> Handled {
    // Every mTLS endpoint needs an SVID this CA issued and still honours (checked per request,
    // so a revocation or expiry applies to open keep-alive connections too).
    let leaf = client
        .chain
        .is_some()
        .then(|| verified_leaf(&shared, &client));
    match (req.method(), req.uri().path()) {
        (&Method::POST, api::PATH_BOOTSTRAP) => Box::pin(async move {
            let who = who(&shared, &client, leaf, remote).await;
            Ok(answer(&shared, &who, bootstrap(&shared, req).await))
        }),
        (&Method::POST, api::PATH_RENEW) => Box::pin(async move {
            let what = "renew needs mTLS with the current SVID";
            Ok(match svid(&shared, &client, leaf, remote, what).await {
                Ok(p) => answer(&shared, &p.to_string(), renew(&shared, req, &p).await),
                Err(refused) => refused,
            })
        }),
        (&Method::GET, api::PATH_CONFIG) => {
            let since = poll_since(&req);
            drop(req);
            Box::pin(async move {
                let what = "config needs mTLS with an SVID; bootstrap first";
                Ok(match svid(&shared, &client, leaf, remote, what).await {
                    Ok(p) => config_poll(&shared, since, &p).await,
                    Err(refused) => refused,
                })
            })
        }
        (&Method::POST, api::PATH_CONFIG_ACK) => Box::pin(async move {
            Ok(
                match svid(
                    &shared,
                    &client,
                    leaf,
                    remote,
                    "ack needs mTLS with an SVID",
                )
                .await
                {
                    Ok(p) => answer(&shared, &p.to_string(), ack(&shared, req, &p).await),
                    Err(refused) => refused,
                },
            )
        }),
        (method, path) => {
            let r = Refusal::new(reason::NOT_FOUND, format!("no endpoint {method} {path}"));
            Box::pin(async move {
                Ok(answer(
                    &shared,
                    &who(&shared, &client, leaf, remote).await,
                    Err(r),
                ))
            })
        }
    }
}

/// The client's SPIFFE ID, for an endpoint that needs an SVID this CA honours; otherwise the
/// refusal, answered (`what` says why when the client sent no certificate).
async fn svid(
    shared: &Shared,
    client: &Peer,
    leaf: Option<Result<VerifiedLeaf, Refusal>>,
    remote: SocketAddr,
    what: &str,
) -> Result<SpiffeId, Response<Body>> {
    let r = match leaf {
        Some(leaf) => match honoured(shared, client, leaf).await {
            Ok(p) => return Ok(p),
            Err(r) => r,
        },
        None => Refusal::new(reason::UNAUTHENTICATED, what.to_string()),
    };
    Err(answer(shared, &remote.to_string(), Err(r)))
}

/// Who the client of a request is, for the log: the SPIFFE ID of an SVID this CA honours, or
/// the remote address.
async fn who(
    shared: &Shared,
    client: &Peer,
    leaf: Option<Result<VerifiedLeaf, Refusal>>,
    remote: SocketAddr,
) -> String {
    match leaf {
        Some(leaf) => match honoured(shared, client, leaf).await {
            Ok(p) => p.to_string(),
            Err(_) => remote.to_string(),
        },
        None => remote.to_string(),
    }
}

/// A handler's response, or the refusal's error body (a timed-out request also closes the
/// connection).
fn answer(shared: &Shared, who: &str, result: Result<Response<Body>, Refusal>) -> Response<Body> {
    match result {
        Ok(r) => r,
        Err(r) => {
            let status = status_for(r.reason);
            let timed_out = r.reason == reason::TIMEOUT;
            let mut resp = refuse(shared, status, r, who);
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
