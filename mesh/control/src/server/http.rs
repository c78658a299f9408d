//! HTTP plumbing shared by the API and the ops endpoint: JSON and text responses, refusals with
//! their status codes, and request bodies read within a size and a time limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use mesh_core::api::{self, reason, ErrorBody};
use serde::Serialize;
use tracing::warn;

use super::Shared;
use crate::tokens::Refusal;

pub(super) type Body = Full<Bytes>;

pub(super) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn refuse(
    shared: &Shared,
    status: StatusCode,
    r: Refusal,
    peer: &str,
) -> Response<Body> {
    shared.metrics.refused(r.reason);
    warn!(reason = r.reason, peer = %peer, error = %r.message, "request refused");
    json_response(
        status,
        &ErrorBody {
            error: r.message,
            reason: r.reason.to_string(),
        },
    )
}

pub(super) fn status_for(reason: &str) -> StatusCode {
    match reason {
        reason::TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        reason::TIMEOUT => StatusCode::REQUEST_TIMEOUT,
        reason::UNAUTHENTICATED => StatusCode::UNAUTHORIZED,
        reason::TOKEN_EXPIRED | reason::TOKEN_REPLAYED | reason::TOKEN_INVALID => {
            StatusCode::UNAUTHORIZED
        }
        reason::CSR_IDENTITY_MISMATCH | reason::FOREIGN_TRUST_DOMAIN => StatusCode::FORBIDDEN,
        reason::SVID_NOT_HONOURED => StatusCode::FORBIDDEN,
        reason::NOT_FOUND => StatusCode::NOT_FOUND,
        reason::INTERNAL => StatusCode::INTERNAL_SERVER_ERROR,
        crate::state::REASON_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Reads a request body within `--body-read-timeout`: a client that declares a body and sends
/// it slowly, or not at all, is answered 408 and its connection closed.
pub(super) async fn read_body(shared: &Shared, req: Request<Incoming>) -> Result<Bytes, Refusal> {
    let limit = shared.settings.body_read_timeout;
    match tokio::time::timeout(limit, read_body_unbounded(req)).await {
        Ok(r) => r,
        Err(_) => {
            shared.metrics.timed_out("body");
            Err(Refusal::new(
                reason::TIMEOUT,
                format!(
                    "request body not received within {}",
                    crate::durations::fmt(limit)
                ),
            ))
        }
    }
}

async fn read_body_unbounded(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            reason::TOO_LARGE,
            format!("request body larger than {} bytes", api::MAX_REQUEST_BYTES),
        )
    };
    if let Some(len) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > api::MAX_REQUEST_BYTES {
            // Read (and drop) a moderately large body so the client sees the 413 instead of a
            // reset while it is still sending; anything larger is cut off at once.
            if len <= 16 * api::MAX_REQUEST_BYTES {
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
            }
            return Err(too_large());
        }
    }
    match Limited::new(req.into_body(), api::MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(Refusal::new(
            reason::BAD_REQUEST,
            format!("cannot read request body: {e}"),
        )),
    }
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            reason::BAD_REQUEST,
            format!("body is not a {what} JSON object: {e}"),
        )
    })
}

pub(super) fn text(status: StatusCode, body: String, ctype: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}
