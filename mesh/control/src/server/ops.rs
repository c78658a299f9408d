//! The plain-HTTP ops endpoint: `/healthz`, `/readyz`, `/metrics`, `/fips`, `/proxies`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::http::{json_response, text, Body};
use super::Shared;

pub(super) async fn ops_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc_shared = shared.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = svc_shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle_ops(&shared, req.uri().path())) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

fn handle_ops(shared: &Shared, path: &str) -> Response<Body> {
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" | "/ready" => {
            let snap = shared.snapshot.borrow().clone();
            let error = shared.config_error.lock().ok().and_then(|e| e.clone());
            // Ready: serving a good configuration, and the store can commit writes (for etcd:
            // a quorum answers). Without the store the last state keeps being served, but
            // bootstrap, renewal and configuration changes are refused.
            let store = shared.state.health();
            let ready = shared.ever_good_config.load(Ordering::Relaxed) && store.reachable;
            let proxies = shared.proxies.lock().map(|p| p.len()).unwrap_or(0);
            let body = serde_json::json!({
                "ready": ready,
                "store": store,
                "config_version": snap.version,
                "ca_generation": shared.metrics.ca_generation.load(Ordering::Relaxed),
                "last_config_error": error,
                "proxies_acked": proxies,
                "certificates_on_record": shared.state.issued_count(),
            });
            json_response(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                &body,
            )
        }
        "/metrics" => {
            let mut body = shared.metrics.render(shared.limits.open());
            shared.state.render_metrics(&mut body);
            text(StatusCode::OK, body, "text/plain; version=0.0.4")
        }
        "/fips" => json_response(StatusCode::OK, &shared.settings.fips_report),
        "/proxies" => {
            let p = shared
                .proxies
                .lock()
                .map(|p| serde_json::to_value(&*p).unwrap_or_default())
                .unwrap_or_default();
            json_response(StatusCode::OK, &p)
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}
