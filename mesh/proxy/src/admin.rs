//! The admin endpoint (plain HTTP, bind it to loopback): `/ready`, `/healthz`, `/config`,
//! `/certs`, `/fips`, `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::state::{now_unix, Proxy};

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into()) + "\n";
    reply(status, "application/json", body)
}

/// Refreshes the gauges that are derived from time (certificate expiry, staleness).
fn refresh_gauges(proxy: &Proxy) {
    if let Some(c) = proxy.tls.cert_info() {
        proxy.metrics.set(
            "mesh_proxy_cert_expiry_seconds",
            "Seconds until the workload certificate expires.",
            &[("spiffe_id", &c.spiffe_id)],
            (c.not_after - now_unix()) as f64,
        );
    }
    let cp = proxy.control_plane();
    if cp.configured {
        proxy.metrics.set(
            "mesh_proxy_config_stale",
            "1 while the control plane is unreachable and the last known configuration is served.",
            &[],
            if cp.connected { 0.0 } else { 1.0 },
        );
    }
}

/// The JSON status document used by `/ready` and `/config`.
pub fn status(proxy: &Proxy) -> serde_json::Value {
    let cp = proxy.control_plane();
    let mesh = proxy.mesh();
    json!({
        "ready": proxy.ready(),
        "identity": proxy.tls.cert_info().map(|c| c.spiffe_id),
        "config_version": mesh.as_ref().map(|m| m.version),
        "config_source": mesh.as_ref().map(|m| m.source),
        "control_plane": cp,
        "stale": cp.configured && !cp.connected,
    })
}

async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/ready" | "/readyz" => {
            let code = if proxy.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_reply(code, &status(&proxy))
        }
        "/config" => {
            let mut v = status(&proxy);
            v["config"] = proxy
                .mesh()
                .map(|m| serde_json::to_value(&m.config).unwrap_or_default())
                .unwrap_or_default();
            json_reply(StatusCode::OK, &v)
        }
        "/certs" => match proxy.tls.cert_info() {
            Some(c) => json_reply(
                StatusCode::OK,
                &json!({
                    "spiffe_id": c.spiffe_id,
                    "serial": c.serial,
                    "not_before": rfc3339(c.not_before),
                    "not_after": rfc3339(c.not_after),
                    "seconds_until_expiry": c.not_after - now_unix(),
                    "chain_length": c.chain_len,
                    "trust_bundle_roots": c.trust_bundle_roots,
                }),
            ),
            None => json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "no workload certificate yet"}),
            ),
        },
        "/fips" => json_reply(
            StatusCode::OK,
            &serde_json::to_value(&proxy.fips).unwrap_or_default(),
        ),
        "/metrics" => {
            refresh_gauges(&proxy);
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                proxy.metrics.render(),
            )
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /ready /config /certs /fips /metrics\n".into(),
        ),
    }
}

/// Serves the admin endpoint until the listener fails.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    // Its own small limit, so the admin endpoint stays reachable during a flood of the data path.
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(handle(proxy, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}
