//! The outbound side: the application talks plaintext to a local listener per upstream service
//! (explicit mode) or is redirected by iptables (transparent mode, original destination from
//! `SO_ORIGINAL_DST`); the proxy routes, splits by weight, load-balances across healthy
//! endpoints, retries within a budget, applies timeouts, ejects failing endpoints, and
//! originates mTLS that checks each server's SPIFFE ID. HTTP connections to upstream proxies are
//! pooled and use HTTP/2 when ALPN agrees.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::config::{Endpoint, Protocol, Route, Service};
use crate::inbound::{local_response, server_builder, strip_hop_by_hop, Body, BoxError};
use crate::io::{connect_mesh, BoxIo};
use crate::metrics::Listener;
use crate::state::{Proxy, RouteIndex, ServiceIndex};
use crate::tls::Alpn;

/// A pooled mTLS connection to an upstream proxy.
pub struct MeshConn {
    io: TokioIo<TlsStream<TcpStream>>,
    h2: bool,
}

impl Connection for MeshConn {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.h2 {
            c.negotiated_h2()
        } else {
            c
        }
    }
}

impl hyper::rt::Read for MeshConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for MeshConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Connector for the pooled client: the URI authority is the endpoint address, and the SPIFFE
/// ID it must present comes from the configuration in force.
#[derive(Clone)]
pub struct MeshConnector {
    proxy: Arc<Proxy>,
}

impl tower_service::Service<Uri> for MeshConnector {
    type Response = MeshConn;
    type Error = crate::io::ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<MeshConn, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let proxy = self.proxy.clone();
        Box::pin(async move {
            let addr = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let expected = proxy
                .mesh()
                .and_then(|m| m.endpoint_ids.get(&addr).cloned())
                .ok_or_else(|| crate::io::ConnectError::Connect {
                    addr: addr.clone(),
                    message: "no endpoint with this address in the configuration".into(),
                })?;
            let tls = connect_mesh(&proxy, &addr, &expected, Alpn::Http).await?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(MeshConn {
                io: TokioIo::new(tls),
                h2,
            })
        })
    }
}

/// The outbound side, shared by all outbound listeners.
pub struct Outbound {
    proxy: Arc<Proxy>,
    client: Client<MeshConnector, Body>,
}

/// Whether `r` applies to `req`, whose normalised path is `path` (see [`crate::path`]).
fn route_matches(r: &Route, req: &Request<Incoming>, path: &str) -> bool {
    let m = &r.match_;
    m.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        && m.method
            .as_deref()
            .is_none_or(|x| req.method().as_str().eq_ignore_ascii_case(x))
        && m.headers.iter().all(|(k, v)| {
            req.headers()
                .get(k.as_str())
                .is_some_and(|h| h.as_bytes() == v.as_bytes())
        })
}

fn labels_match(ep: &Endpoint, want: &std::collections::BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| ep.labels.get(k) == Some(v))
}

impl Outbound {
    /// Prepares the outbound side (the upstream connection pool).
    pub fn new(proxy: Arc<Proxy>) -> Arc<Self> {
        let mut b = Client::builder(TokioExecutor::new());
        // Without a pool timer the idle timeout is only checked when a connection is taken
        // out again, so every connection of the busiest moment would stay open (and hold its
        // TLS buffers) for ever: memory that ratchets up with each new peak.
        b.pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(
                proxy.local.limits.pool_idle_timeout_ms,
            ))
            .pool_max_idle_per_host(256);
        let client = b.build(MeshConnector {
            proxy: proxy.clone(),
        });
        Arc::new(Outbound { proxy, client })
    }

    /// Serves one explicit listener for `service`.
    pub async fn serve_explicit(self: Arc<Self>, listener: TcpListener, service: String) {
        let service = Arc::new(service);
        self.accept_loop(listener, Listener::Outbound, move |this, stream, peer| {
            let service = service.clone();
            async move { this.connection(stream, peer, &service, None).await }
        })
        .await;
    }

    /// Serves the transparent listener (connections redirected by iptables).
    pub async fn serve_transparent(self: Arc<Self>, listener: TcpListener) {
        let own = listener.local_addr().ok();
        self.accept_loop(listener, Listener::Transparent, move |this, stream, peer| async move {
            let dst = match original_dst(&stream) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "transparent: no original destination (not redirected?)");
                    return;
                }
            };
            if Some(dst) == own {
                tracing::warn!(%peer, "transparent: connection addressed to the proxy itself; closed");
                return;
            }
            let found = this.proxy.mesh().and_then(|m| {
                m.config
                    .services
                    .iter()
                    .find(|s| s.endpoints.iter().any(|e| e.address == dst.to_string()))
                    .map(|s| s.name.clone())
            });
            match found {
                Some(service) => this.connection(stream, peer, &service, Some(dst)).await,
                None => this.passthrough(stream, peer, dst).await,
            }
        })
        .await;
    }

    async fn accept_loop<F, Fut>(self: Arc<Self>, listener: TcpListener, kind: Listener, f: F)
    where
        F: Fn(Arc<Self>, TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let f = Arc::new(f);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, listener = kind.as_str(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.proxy.conn_limit.clone().try_acquire_owned() else {
                self.proxy.metrics.connection_rejected(kind);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let f = f.clone();
            tokio::spawn(async move {
                let _active = this.proxy.metrics.connection_opened(kind);
                f(this.clone(), stream, peer).await;
                drop(permit);
            });
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        service: &str,
        pinned: Option<SocketAddr>,
    ) {
        let svc = self.proxy.mesh().and_then(|m| {
            m.config
                .services
                .iter()
                .find(|s| s.name == service)
                .cloned()
        });
        let Some(svc) = svc else {
            tracing::warn!(%peer, service, "outbound: service not in the configuration; connection closed");
            return;
        };
        match svc.protocol {
            Protocol::Tcp => self.tcp(Box::new(stream), peer, &svc, pinned).await,
            Protocol::Http => {
                let this = self.clone();
                let name = Arc::new(svc.name.clone());
                let handler = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let this = this.clone();
                    let name = name.clone();
                    async move { Ok::<_, Infallible>(this.request(req, &name).await) }
                });
                if let Err(e) = server_builder(&self.proxy)
                    .serve_connection(TokioIo::new(stream), handler)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "outbound HTTP connection ended with an error");
                }
            }
        }
    }

    /// Picks an endpoint of `svc` whose labels contain `labels`, not in `tried`, preferring
    /// endpoints that are not ejected (when all are ejected, any of them: panic threshold
    /// 100%). No allocation: two passes over the endpoints.
    fn pick_endpoint(
        &self,
        svc: &Service,
        si: &ServiceIndex,
        labels: &std::collections::BTreeMap<String, String>,
        tried: &Tried,
    ) -> Option<usize> {
        let candidate = |i: usize| !tried.contains(i) && labels_match(&svc.endpoints[i], labels);
        let healthy = |i: usize| {
            si.endpoints
                .get(i)
                .is_none_or(|e| !self.proxy.is_ejected(&e.health))
        };
        let (mut all, mut ok) = (0u64, 0u64);
        for i in 0..svc.endpoints.len() {
            if candidate(i) {
                all += 1;
                if healthy(i) {
                    ok += 1;
                }
            }
        }
        if all == 0 {
            return None;
        }
        let only_healthy = ok > 0;
        let mut k = self.proxy.random() % if only_healthy { ok } else { all };
        let mut first = None;
        for i in 0..svc.endpoints.len() {
            if !candidate(i) || (only_healthy && !healthy(i)) {
                continue;
            }
            first.get_or_insert(i);
            if k == 0 {
                return Some(i);
            }
            k -= 1;
        }
        // An endpoint was ejected between the two passes.
        first
    }

    fn pick_destination<'a>(
        &self,
        route: Option<&'a Route>,
    ) -> Option<&'a std::collections::BTreeMap<String, String>> {
        let r = route?;
        let total: u64 = r.destinations.iter().map(|d| u64::from(d.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.proxy.random() % total;
        for d in &r.destinations {
            let w = u64::from(d.weight);
            if x < w {
                return Some(&d.labels);
            }
            x -= w;
        }
        None
    }

    async fn request(&self, req: Request<Incoming>, service: &str) -> Response<Body> {
        let start = Instant::now();
        let Some(mesh) = self.proxy.mesh() else {
            return local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "mesh-proxy: no configuration yet",
            );
        };
        let Some((si, svc)) = mesh
            .services
            .get(service)
            .and_then(|si| Some((si, mesh.config.services.get(si.service)?)))
        else {
            return local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("mesh-proxy: unknown service {service}"),
            );
        };
        let target = match crate::inbound::normalized_target(&self.proxy, "outbound", &req) {
            Ok(t) => t,
            Err(resp) => return *resp,
        };
        let ri: &RouteIndex = si
            .routes
            .iter()
            .find(|ri| {
                ri.route
                    .and_then(|i| mesh.config.routes.get(i))
                    .is_some_and(|r| route_matches(r, &req, &target.path))
            })
            .unwrap_or(&si.default_route);
        let route = ri.route.and_then(|i| mesh.config.routes.get(i));
        let no_labels = std::collections::BTreeMap::new();
        let labels = self.pick_destination(route).unwrap_or(&no_labels);
        // What the endpoint is sent: the normalised path and the query as received.
        let path: http::uri::PathAndQuery = match target.path_and_query_for(req.uri()) {
            Some(p) => p,
            None => {
                return local_response(StatusCode::BAD_REQUEST, "mesh-proxy: bad request target")
            }
        };
        let (mut parts, body) = req.into_parts();
        let method = parts.method.clone();
        strip_hop_by_hop(&mut parts.headers);
        if parts.headers.get(http::header::HOST).is_none() {
            if let Ok(v) = HeaderValue::from_str(service) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
        let retries = route.and_then(|r| r.retries.as_ref());
        let max_attempts = 1 + retries.map(|r| r.attempts).unwrap_or(0);
        // Only a request that may be sent twice is buffered; otherwise the body streams.
        let mut body = if max_attempts > 1 {
            match Limited::new(body, self.proxy.local.limits.max_buffered_body)
                .collect()
                .await
            {
                Ok(b) => Pending::Buffered(b.to_bytes()),
                Err(e) => {
                    let too_big = e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some();
                    return if too_big {
                        local_response(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "mesh-proxy: request body too large to buffer for retries",
                        )
                    } else {
                        local_response(
                            StatusCode::BAD_REQUEST,
                            "mesh-proxy: request body could not be read",
                        )
                    };
                }
            }
        } else {
            Pending::Stream(body)
        };
        if let Some(b) = &ri.budget {
            b.deposit();
        }
        let per_try = retries
            .map(|r| Duration::from_millis(r.per_try_timeout_ms))
            .filter(|d| !d.is_zero());
        let overall = route.and_then(|r| r.timeout_ms).map(Duration::from_millis);
        let deadline = overall.map(|d| tokio::time::Instant::now() + d);
        let idempotent = matches!(
            method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        );

        let mut tried = Tried::default();
        let mut attempt = 0;
        let mut picked: Option<usize> = None;
        let resp = loop {
            attempt += 1;
            let Some(i) = self
                .pick_endpoint(svc, si, labels, &tried)
                .or_else(|| self.pick_endpoint(svc, si, labels, &Tried::default()))
            else {
                break local_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("mesh-proxy: no endpoints for {service}"),
                );
            };
            tried.insert(i);
            picked = Some(i);
            let (ep, epi) = (&svc.endpoints[i], &si.endpoints[i]);
            let Some(authority) = epi.authority.clone() else {
                break local_response(StatusCode::BAD_GATEWAY, "mesh-proxy: bad endpoint address");
            };
            let uri = Uri::from_parts({
                let mut u = http::uri::Parts::default();
                u.scheme = Some(http::uri::Scheme::HTTP);
                u.authority = Some(authority);
                u.path_and_query = Some(path.clone());
                u
            });
            let Ok(uri) = uri else {
                break local_response(StatusCode::BAD_REQUEST, "mesh-proxy: bad request target");
            };
            let last_try = attempt >= max_attempts;
            let up_body = match &mut body {
                Pending::Buffered(b) => Full::new(b.clone()).map_err(|e| match e {}).boxed_unsync(),
                Pending::Stream(_) => match std::mem::replace(&mut body, Pending::Sent) {
                    Pending::Stream(b) => b.map_err(BoxError::from).boxed_unsync(),
                    _ => Full::new(bytes::Bytes::new())
                        .map_err(|e| match e {})
                        .boxed_unsync(),
                },
                Pending::Sent => Full::new(bytes::Bytes::new())
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            };
            let mut up = Request::new(up_body);
            *up.method_mut() = method.clone();
            *up.uri_mut() = uri;
            *up.version_mut() = Version::HTTP_11;
            *up.headers_mut() = if last_try {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            let fut = self.client.request(up);
            let try_deadline = match (per_try, deadline) {
                (Some(p), Some(d)) => Some((tokio::time::Instant::now() + p).min(d)),
                (Some(p), None) => Some(tokio::time::Instant::now() + p),
                (None, d) => d,
            };
            let result = match try_deadline {
                Some(d) => tokio::time::timeout_at(d, fut).await.map_err(|_| ()),
                None => Ok(fut.await),
            };
            let (retryable, outcome) = match result {
                Ok(Ok(resp)) => {
                    let s = resp.status();
                    let fail = s.is_server_error();
                    self.proxy
                        .endpoint_result(service, &ep.address, &epi.health, !fail);
                    let retry = matches!(s.as_u16(), 502..=504);
                    (retry, Ok(resp))
                }
                Ok(Err(e)) => {
                    self.proxy
                        .endpoint_result(service, &ep.address, &epi.health, false);
                    let retry = e.is_connect() || idempotent;
                    tracing::warn!(service, endpoint = %ep.address, error = %error_chain(&e), "outbound request failed");
                    (retry, Err(StatusCode::BAD_GATEWAY))
                }
                Err(()) => {
                    self.proxy
                        .endpoint_result(service, &ep.address, &epi.health, false);
                    (idempotent, Err(StatusCode::GATEWAY_TIMEOUT))
                }
            };
            let past_deadline = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if retryable && !last_try && !past_deadline {
                if ri.budget.as_ref().is_some_and(|b| b.withdraw()) {
                    self.proxy.metrics.inc(
                        "mesh_proxy_retries_total",
                        "Retries by service and route.",
                        &[("service", service), ("route", route_name(route))],
                    );
                    continue;
                }
                self.proxy.metrics.inc(
                    "mesh_proxy_retry_budget_exhausted_total",
                    "Retries not made because the route's retry budget was spent.",
                    &[("service", service), ("route", route_name(route))],
                );
            }
            break match outcome {
                Ok(resp) => {
                    let mut resp = resp.map(|b| b.map_err(BoxError::from).boxed_unsync());
                    strip_hop_by_hop(resp.headers_mut());
                    resp
                }
                Err(StatusCode::GATEWAY_TIMEOUT) => local_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "mesh-proxy: upstream timed out",
                ),
                Err(code) => local_response(code, "mesh-proxy: upstream unavailable"),
            };
        };
        let elapsed = start.elapsed();
        self.proxy
            .route_stats(svc, ri, picked)
            .record(resp.status().as_u16(), elapsed);
        self.proxy.access_log(|| {
            let ep = picked.and_then(|i| svc.endpoints.get(i));
            json!({
                "ts": chrono::Utc::now().to_rfc3339(),
                "direction": "outbound",
                "service": service,
                "route": route_name(route),
                "method": method.as_str(),
                "path": path.as_str(),
                "upstream": ep.map(|e| e.address.as_str()),
                "peer_identity": ep.map(|e| e.identity.as_str()).unwrap_or("none"),
                "attempts": attempt,
                "status": resp.status().as_u16(),
                "duration_ms": elapsed.as_secs_f64() * 1000.0,
            })
        });
        resp
    }

    async fn tcp(
        &self,
        mut io: BoxIo,
        peer: SocketAddr,
        svc: &Service,
        pinned: Option<SocketAddr>,
    ) {
        let start = Instant::now();
        let mut tried = Tried::default();
        let none = std::collections::BTreeMap::new();
        let Some(mesh) = self.proxy.mesh() else {
            return;
        };
        let Some(si) = mesh.services.get(&svc.name) else {
            return;
        };
        for _ in 0..3 {
            let i = match pinned {
                Some(p) => svc
                    .endpoints
                    .iter()
                    .position(|e| e.address == p.to_string()),
                None => self.pick_endpoint(svc, si, &none, &tried),
            };
            let Some((i, ep)) = i.and_then(|i| Some((i, svc.endpoints.get(i)?))) else {
                break;
            };
            let Some(health) = si.endpoints.get(i).map(|e| e.health.clone()) else {
                break;
            };
            tried.insert(i);
            match connect_mesh(&self.proxy, &ep.address, &ep.identity, Alpn::Opaque).await {
                Ok(mut up) => {
                    self.proxy
                        .endpoint_result(&svc.name, &ep.address, &health, true);
                    let (sent, received) = tokio::io::copy_bidirectional(&mut io, &mut up)
                        .await
                        .unwrap_or((0, 0));
                    self.proxy.metrics.inc(
                        "mesh_proxy_tcp_connections_total",
                        "TCP connections proxied, by direction and peer identity.",
                        &[("direction", "outbound"), ("peer_identity", &ep.identity)],
                    );
                    self.proxy.access_log(|| {
                        json!({
                            "ts": chrono::Utc::now().to_rfc3339(),
                            "direction": "outbound",
                            "protocol": "tcp",
                            "service": svc.name,
                            "peer": peer.to_string(),
                            "upstream": ep.address,
                            "peer_identity": ep.identity,
                            "bytes_sent": sent,
                            "bytes_received": received,
                            "duration_ms": start.elapsed().as_secs_f64() * 1000.0,
                        })
                    });
                    return;
                }
                Err(e) => {
                    self.proxy
                        .endpoint_result(&svc.name, &ep.address, &health, false);
                    tracing::warn!(service = %svc.name, error = %e, "outbound TCP connect failed");
                    if pinned.is_some() {
                        break;
                    }
                }
            }
        }
        tracing::warn!(%peer, service = %svc.name, "outbound TCP: no endpoint reachable; connection closed");
    }

    async fn passthrough(&self, mut stream: TcpStream, peer: SocketAddr, dst: SocketAddr) {
        match TcpStream::connect(dst).await {
            Ok(mut up) => {
                let (sent, received) = tokio::io::copy_bidirectional(&mut stream, &mut up)
                    .await
                    .unwrap_or((0, 0));
                self.proxy.access_log(|| {
                    json!({
                        "ts": chrono::Utc::now().to_rfc3339(),
                        "direction": "outbound",
                        "protocol": "tcp-passthrough",
                        "peer": peer.to_string(),
                        "upstream": dst.to_string(),
                        "bytes_sent": sent,
                        "bytes_received": received,
                    })
                });
            }
            Err(e) => tracing::warn!(%dst, error = %e, "transparent passthrough connect failed"),
        }
    }
}

/// The destination a connection had before iptables REDIRECTed it.
pub fn original_dst(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let addr = match sock.original_dst_v4() {
        Ok(a) => a,
        Err(_) => sock.original_dst_v6()?,
    };
    addr.as_socket()
        .ok_or_else(|| std::io::Error::other("original destination is not an IP socket address"))
}

/// An error and its causes, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The request body of an outbound request: buffered when it may be sent more than once.
enum Pending {
    Buffered(bytes::Bytes),
    Stream(Incoming),
    Sent,
}

/// The route's name for logs and metrics.
fn route_name(route: Option<&Route>) -> &str {
    route.map(|r| r.name.as_str()).unwrap_or("default")
}

/// Endpoint indices already tried by one request (a bit set; no allocation below 128).
#[derive(Default)]
struct Tried {
    bits: u128,
    more: Vec<usize>,
}

impl Tried {
    fn insert(&mut self, i: usize) {
        match u32::try_from(i).ok().filter(|i| *i < 128) {
            Some(b) => self.bits |= 1u128 << b,
            None => self.more.push(i),
        }
    }
    fn contains(&self, i: usize) -> bool {
        match u32::try_from(i).ok().filter(|i| *i < 128) {
            Some(b) => self.bits & (1u128 << b) != 0,
            None => self.more.contains(&i),
        }
    }
}
