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
use crate::state::Proxy;

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
            let tls = connect_mesh(&proxy, &addr, &expected, None).await?;
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
        self.accept_loop(listener, "outbound", move |this, stream, peer| {
            let service = service.clone();
            async move { this.connection(stream, peer, &service, None).await }
        })
        .await;
    }

    /// Serves the transparent listener (connections redirected by iptables).
    pub async fn serve_transparent(self: Arc<Self>, listener: TcpListener) {
        let own = listener.local_addr().ok();
        self.accept_loop(listener, "transparent", move |this, stream, peer| async move {
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

    async fn accept_loop<F, Fut>(self: Arc<Self>, listener: TcpListener, name: &'static str, f: F)
    where
        F: Fn(Arc<Self>, TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let f = Arc::new(f);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, listener = name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.proxy.conn_limit.clone().try_acquire_owned() else {
                self.proxy.metrics.inc(
                    "mesh_proxy_connections_rejected_total",
                    "Connections closed at once because the connection limit was reached.",
                    &[("listener", name)],
                );
                continue;
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let f = f.clone();
            tokio::spawn(async move {
                this.proxy.metrics.add(
                    "mesh_proxy_connections_active",
                    "Open connections.",
                    &[("listener", name)],
                    1.0,
                );
                f(this.clone(), stream, peer).await;
                this.proxy.metrics.add(
                    "mesh_proxy_connections_active",
                    "Open connections.",
                    &[("listener", name)],
                    -1.0,
                );
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

    fn pick_endpoint<'a>(
        &self,
        svc: &'a Service,
        labels: &std::collections::BTreeMap<String, String>,
        tried: &[String],
    ) -> Option<&'a Endpoint> {
        let candidates: Vec<&Endpoint> = svc
            .endpoints
            .iter()
            .filter(|e| labels_match(e, labels) && !tried.contains(&e.address))
            .collect();
        let healthy: Vec<&Endpoint> = candidates
            .iter()
            .copied()
            .filter(|e| !self.proxy.is_ejected(&e.address))
            .collect();
        // When everything is ejected, use everything rather than fail (panic threshold 100%).
        let pool = if healthy.is_empty() {
            candidates
        } else {
            healthy
        };
        if pool.is_empty() {
            return None;
        }
        let i = (self.proxy.random() % pool.len() as u64) as usize;
        pool.get(i).copied()
    }

    fn pick_destination<'a>(
        &self,
        route: Option<&'a Route>,
    ) -> std::borrow::Cow<'a, std::collections::BTreeMap<String, String>> {
        use std::borrow::Cow;
        let Some(r) = route else {
            return Cow::Owned(Default::default());
        };
        let total: u64 = r.destinations.iter().map(|d| u64::from(d.weight)).sum();
        if total == 0 {
            return Cow::Owned(Default::default());
        }
        let mut x = self.proxy.random() % total;
        for d in &r.destinations {
            let w = u64::from(d.weight);
            if x < w {
                return Cow::Borrowed(&d.labels);
            }
            x -= w;
        }
        Cow::Owned(Default::default())
    }

    async fn request(&self, req: Request<Incoming>, service: &str) -> Response<Body> {
        let start = Instant::now();
        let Some(mesh) = self.proxy.mesh() else {
            return local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "mesh-proxy: no configuration yet",
            );
        };
        let Some(svc) = mesh.config.services.iter().find(|s| s.name == service) else {
            return local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("mesh-proxy: unknown service {service}"),
            );
        };
        let target = match crate::inbound::normalized_target(&self.proxy, "outbound", &req) {
            Ok(t) => t,
            Err(resp) => return *resp,
        };
        let route = mesh
            .config
            .routes
            .iter()
            .filter(|r| r.service == service)
            .find(|r| route_matches(r, &req, &target.path));
        let route_name = route
            .map(|r| r.name.clone())
            .unwrap_or_else(|| "default".into());
        let labels = self.pick_destination(route).into_owned();
        let method = req.method().clone();
        // What the endpoint is sent: the normalised path and the query as received.
        let path = target.path_and_query();
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if parts.headers.get(http::header::HOST).is_none() {
            if let Ok(v) = HeaderValue::from_str(service) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
        let body = match Limited::new(body, self.proxy.local.limits.max_buffered_body)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let too_big = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                return if too_big {
                    local_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "mesh-proxy: request body too large",
                    )
                } else {
                    local_response(
                        StatusCode::BAD_REQUEST,
                        "mesh-proxy: request body could not be read",
                    )
                };
            }
        };
        let retries = route.and_then(|r| r.retries.clone());
        // One "service/route" string per request: the retry-budget key and the metrics label.
        let budget_key = format!("{service}/{route_name}");
        if let Some(r) = &retries {
            self.proxy.budget_deposit(&budget_key, r.budget_percent);
        }
        let max_attempts = 1 + retries.as_ref().map(|r| r.attempts).unwrap_or(0);
        let per_try = retries
            .as_ref()
            .map(|r| Duration::from_millis(r.per_try_timeout_ms))
            .filter(|d| !d.is_zero());
        let overall = route.and_then(|r| r.timeout_ms).map(Duration::from_millis);
        let deadline = overall.map(|d| tokio::time::Instant::now() + d);
        let idempotent = matches!(
            method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        );

        let mut tried: Vec<String> = Vec::new();
        let mut attempt = 0;
        let mut peer_identity = String::from("none");
        let resp = loop {
            attempt += 1;
            let Some(ep) = self
                .pick_endpoint(svc, &labels, &tried)
                .or_else(|| self.pick_endpoint(svc, &labels, &[]))
            else {
                break local_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("mesh-proxy: no endpoints for {service}"),
                );
            };
            tried.push(ep.address.clone());
            peer_identity = ep.identity.clone();
            let uri = match format!("http://{}{}", ep.address, path).parse::<Uri>() {
                Ok(u) => u,
                Err(_) => {
                    break local_response(StatusCode::BAD_REQUEST, "mesh-proxy: bad request target")
                }
            };
            let mut up = Request::new(
                Full::new(body.clone())
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            );
            *up.method_mut() = method.clone();
            *up.uri_mut() = uri;
            *up.version_mut() = Version::HTTP_11;
            *up.headers_mut() = parts.headers.clone();
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
                    self.proxy.endpoint_result(service, &ep.address, !fail);
                    let retry = matches!(s.as_u16(), 502..=504);
                    (retry, Ok(resp))
                }
                Ok(Err(e)) => {
                    self.proxy.endpoint_result(service, &ep.address, false);
                    let retry = e.is_connect() || idempotent;
                    tracing::warn!(service, endpoint = %ep.address, error = %error_chain(&e), "outbound request failed");
                    (retry, Err(StatusCode::BAD_GATEWAY))
                }
                Err(()) => {
                    self.proxy.endpoint_result(service, &ep.address, false);
                    (idempotent, Err(StatusCode::GATEWAY_TIMEOUT))
                }
            };
            let past_deadline = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if retryable && attempt < max_attempts && !past_deadline {
                if self.proxy.budget_withdraw(&budget_key) {
                    self.proxy.metrics.inc(
                        "mesh_proxy_retries_total",
                        "Retries by service and route.",
                        &[("service", service), ("route", &route_name)],
                    );
                    continue;
                }
                self.proxy.metrics.inc(
                    "mesh_proxy_retry_budget_exhausted_total",
                    "Retries not made because the route's retry budget was spent.",
                    &[("service", service), ("route", &route_name)],
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
        let code = resp.status().as_u16().to_string();
        self.proxy.metrics.inc(
            "mesh_proxy_requests_total",
            "HTTP requests by direction, route, peer identity and status.",
            &[
                ("direction", "outbound"),
                ("route", &budget_key),
                ("peer_identity", &peer_identity),
                ("code", &code),
            ],
        );
        self.proxy.metrics.observe(
            "mesh_proxy_request_duration_seconds",
            "HTTP request latency (to response headers) by direction, route and peer identity.",
            &[
                ("direction", "outbound"),
                ("route", &budget_key),
                ("peer_identity", &peer_identity),
            ],
            elapsed,
        );
        self.proxy.access_log(|| {
            json!({
                "ts": chrono::Utc::now().to_rfc3339(),
                "direction": "outbound",
                "service": service,
                "route": route_name,
                "method": method.as_str(),
                "path": path,
                "upstream": tried.last(),
                "peer_identity": peer_identity,
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
        let mut tried = Vec::new();
        let none = std::collections::BTreeMap::new();
        for _ in 0..3 {
            let ep = match pinned {
                Some(p) => svc.endpoints.iter().find(|e| e.address == p.to_string()),
                None => self.pick_endpoint(svc, &none, &tried),
            };
            let Some(ep) = ep else { break };
            tried.push(ep.address.clone());
            match connect_mesh(&self.proxy, &ep.address, &ep.identity, Some(Vec::new())).await {
                Ok(mut up) => {
                    self.proxy.endpoint_result(&svc.name, &ep.address, true);
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
                    self.proxy.endpoint_result(&svc.name, &ep.address, false);
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
