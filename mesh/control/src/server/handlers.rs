//! The API's handlers: bootstrap (join token or service-account JWT), renewal, the
//! configuration long-poll and its acknowledgement.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use mesh_core::api::{
    self, reason, BootstrapRequest, ConfigAck, ConfigResponse, RenewRequest, SvidResponse,
};
use mesh_core::identity::SpiffeId;
use rcgen::CertificateSigningRequestParams;
use tracing::{info, warn};

use super::http::{json_response, parse_json, read_body, Body};
use super::{ProxyStatus, Shared};
use crate::ca::issuance::{self, IssuedRecord};
use crate::ca::{self, Ca, Issued};
use crate::state::issued_key;
use crate::tokens::{self, Claim, Refusal};

/// Signs an SVID for `id` and records it in `issued/`; nothing is handed out yet. The record is
/// created only if its serial is not on record yet, so a serial is never issued twice, by this
/// replica or another (a collision of 127 random bits is signed again with a new serial).
fn sign_and_record(
    shared: &Shared,
    params: &CertificateSigningRequestParams,
    id: &SpiffeId,
    kind: &'static str,
) -> Result<(Arc<Ca>, Issued), Refusal> {
    let ca = shared
        .ca
        .read()
        .map(|c| c.clone())
        .map_err(|_| Refusal::new(reason::INTERNAL, "CA lock poisoned"))?;
    for _ in 0..3 {
        let issued = ca
            .issue(params, id, shared.settings.svid_ttl)
            .map_err(|e| Refusal::new(reason::INTERNAL, e.to_string()))?;
        let rec = IssuedRecord {
            serial: issued.serial_hex.clone(),
            spiffe_id: id.to_string(),
            not_after: issued.not_after.clone(),
            issued_at: ca::rfc3339(time::OffsetDateTime::now_utc()),
            kind: kind.to_string(),
            ca_generation: ca.active_gen,
        };
        let recorded = shared
            .state
            .write_json_if(&issued_key(&issued.serial_hex), None, &rec)
            .map_err(|e| Refusal::new(e.reason(), e.to_string()))?;
        if recorded {
            return Ok((ca, issued));
        }
        warn!(serial = %issued.serial_hex, "serial already on record; signing again with a new one");
    }
    Err(Refusal::new(
        reason::INTERNAL,
        "could not record a fresh serial after 3 tries",
    ))
}

/// Hands out an SVID that was signed and recorded.
fn svid_response(
    shared: &Shared,
    ca: &Ca,
    issued: Issued,
    id: &SpiffeId,
    kind: &'static str,
) -> Response<Body> {
    shared.metrics.issued(kind);
    info!(spiffe_id = %id, serial = %issued.serial_hex, not_after = %issued.not_after, kind, "issued X.509-SVID");
    json_response(
        StatusCode::OK,
        &SvidResponse {
            spiffe_id: id.to_string(),
            svid_chain_pem: issued.chain_pem,
            trust_bundle_pem: ca.bundle_pem().to_string(),
            not_after: issued.not_after,
        },
    )
}

pub(super) async fn bootstrap(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let body = read_body(shared, req).await?;
    let br: BootstrapRequest = parse_json(&body, "bootstrap request")?;
    if br.token.starts_with(api::JOIN_TOKEN_PREFIX) {
        // Check, validate the CSR, sign and record, then use the token up; the exclusive claim
        // is the commit point. A refusal or failure before it leaves the token usable; of
        // concurrent requests with one token exactly one claims it, the others are replays
        // and their certificates are discarded (and their records removed) unseen.
        let _guard = shared.join_lock.lock().await;
        shared.store_call(|| join_with_token(shared, &br))
    } else {
        let id =
            tokens::verify_sa_jwt(&br.token, &shared.settings.sa_issuers, &shared.trust_domain)?;
        let csr = issuance::check_csr(&br.csr_pem)?;
        issuance::check_requested(&shared.trust_domain, csr.requested.as_deref(), &id)?;
        let (ca, issued) =
            shared.store_call(|| sign_and_record(shared, &csr.params, &id, "bootstrap"))?;
        Ok(svid_response(shared, &ca, issued, &id, "bootstrap"))
    }
}

/// A bootstrap with a join token (under the join lock): check it, validate the CSR, sign and
/// record, then use the token up.
fn join_with_token(shared: &Shared, br: &BootstrapRequest) -> Result<Response<Body>, Refusal> {
    let valid = tokens::check_join_token(&shared.state, &br.token)?;
    let csr = issuance::check_csr(&br.csr_pem)?;
    issuance::check_requested(
        &shared.trust_domain,
        csr.requested.as_deref(),
        &valid.identity,
    )?;
    let (ca, issued) = sign_and_record(shared, &csr.params, &valid.identity, "bootstrap")?;
    let forget = || {
        let _ = shared.state.delete(&issued_key(&issued.serial_hex));
    };
    match tokens::claim(&shared.state, &valid.id) {
        Ok(Claim::Claimed) => {}
        Ok(Claim::AlreadyUsed) => {
            forget();
            return Err(Refusal::new(
                reason::TOKEN_REPLAYED,
                format!("join token {} was already used; create a new one", valid.id),
            ));
        }
        Err(e) => {
            forget();
            return Err(Refusal::new(e.reason(), e.to_string()));
        }
    }
    info!(token = %valid.id, spiffe_id = %valid.identity, "join token used");
    Ok(svid_response(
        shared,
        &ca,
        issued,
        &valid.identity,
        "bootstrap",
    ))
}

pub(super) async fn renew(
    shared: &Shared,
    req: Request<Incoming>,
    peer: &SpiffeId,
) -> Result<Response<Body>, Refusal> {
    let body = read_body(shared, req).await?;
    let rr: RenewRequest = parse_json(&body, "renew request")?;
    let csr = issuance::check_csr(&rr.csr_pem)?;
    issuance::check_requested(&shared.trust_domain, csr.requested.as_deref(), peer)?;
    let (ca, issued) = shared.store_call(|| sign_and_record(shared, &csr.params, peer, "renew"))?;
    Ok(svid_response(shared, &ca, issued, peer, "renew"))
}

/// The version a config long-poll already has (`?since=N`; 0 when absent or not a number, which
/// answers at once with the current version).
pub(super) fn poll_since(req: &Request<Incoming>) -> u64 {
    req.uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("since=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(super) async fn config_poll(shared: &Shared, since: u64, peer: &SpiffeId) -> Response<Body> {
    let mut rx = shared.snapshot.subscribe();
    let mut shutdown = shared.shutdown.clone();
    let deadline = tokio::time::Instant::now() + shared.settings.long_poll;
    let mut waited = false;
    loop {
        let snap = rx.borrow_and_update().clone();
        if snap.version != since {
            if waited {
                shared
                    .metrics
                    .push_latency(snap.changed_at.elapsed().as_secs_f64());
            }
            shared.metrics.pushes.fetch_add(1, Ordering::Relaxed);
            let config = snap.mesh.view_for(&peer.to_string(), &snap.bundle);
            return json_response(
                StatusCode::OK,
                &ConfigResponse {
                    version: snap.version,
                    config,
                },
            );
        }
        waited = true;
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.changed() => break,
        }
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    r
}

pub(super) async fn ack(
    shared: &Shared,
    req: Request<Incoming>,
    peer: &SpiffeId,
) -> Result<Response<Body>, Refusal> {
    let body = read_body(shared, req).await?;
    let a: ConfigAck = parse_json(&body, "config ack")?;
    shared.metrics.ack(a.accepted);
    if a.accepted {
        info!(proxy = %peer, version = a.version, "config acknowledged");
    } else {
        warn!(proxy = %peer, version = a.version, reason = %a.reason, "config rejected by proxy");
    }
    if let Ok(mut p) = shared.proxies.lock() {
        p.insert(
            peer.to_string(),
            ProxyStatus {
                acked_version: a.version,
                accepted: a.accepted,
                reason: a.reason,
            },
        );
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}
