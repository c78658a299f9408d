//! The contract between the control plane (`mesh-control`) and the proxies (`mesh-proxy`).
//!
//! # Transport
//!
//! HTTP/1.1 with JSON bodies (`content-type: application/json`) over TLS built only from
//! [`crate::crypto::provider`] (FIPS suites and groups; see [`crate::tls`]). The control plane
//! serves one TLS port ([`DEFAULT_CONTROL_ADDR`]) and a plain-HTTP ops port
//! ([`DEFAULT_OPS_ADDR`]: `/healthz`, `/readyz`, `/metrics`, `/fips`).
//!
//! The control plane's own serving certificate is an SVID for
//! `spiffe://<trust-domain>/ns/mesh-system/sa/mesh-control` ([`control_plane_id`]) issued by the
//! mesh CA. A client verifies it with [`crate::tls::SpiffeServerVerifier`] expecting that ID,
//! against the trust bundle it was given out of band (`<state-dir>/bundle.pem` of the control
//! plane, copied to the host with the join token); the TLS server name sent is
//! [`CONTROL_PLANE_SERVER_NAME`]. `mesh-proxy` builds its control-plane client configuration
//! from that verifier over its swappable [`crate::tls::TrustStore`], expecting
//! [`crate::tls::ExpectedPeer::PathInAnyTrustDomain`] of the control plane's path until it holds
//! an SVID (a join token does not tell it its trust domain) and the exact ID afterwards. A client
//! with a fixed identity can use [`crate::tls::spiffe_client_config`] and
//! [`crate::tls::spiffe_bootstrap_client_config`] (the control-plane benchmark does).
//!
//! | method | path | client cert | request body | success |
//! |---|---|---|---|---|
//! | POST | [`PATH_BOOTSTRAP`] | none | [`BootstrapRequest`] | 200 [`SvidResponse`] |
//! | POST | [`PATH_RENEW`] | current SVID | [`RenewRequest`] | 200 [`SvidResponse`] |
//! | GET | [`PATH_CONFIG`]`?since=<version>` | current SVID | — | 200 [`ConfigResponse`] or 304 |
//! | POST | [`PATH_CONFIG_ACK`] | current SVID | [`ConfigAck`] | 204 |
//!
//! * Bootstrap proves identity with a token ([`BootstrapRequest::token`]): either a one-time join
//!   token (created by `mesh-control token create --identity ... --ttl 10m`, opaque string
//!   starting with [`JOIN_TOKEN_PREFIX`]) or a Kubernetes-style service-account JWT (ES256; `iss`,
//!   `sub` = `system:serviceaccount:<ns>:<sa>`, `aud` = the trust domain, `exp`).
//!   The CSR must ask for exactly the SPIFFE ID the token entitles (or no URI SAN at all, in which
//!   case the entitled one is used); anything else is refused with
//!   [`reason::CSR_IDENTITY_MISMATCH`]. Build CSRs with [`crate::identity::generate_csr`] (or
//!   [`crate::identity::generate_bootstrap_csr`], no SAN) so the private key never leaves the
//!   workload.
//! * Renew: the identity is the SPIFFE ID of the presented client certificate.
//! * Config is a long poll: when the proxy's config version is newer than `since` the answer is
//!   immediate (`since=0` always gets the full snapshot); otherwise the server waits up to
//!   [`LONG_POLL_SECS`] seconds and answers `304 Not Modified` (empty body) if nothing changed.
//!   Each proxy gets only what it needs: its own inbound policy and the services it may call.
//!   The version is the control plane's global configuration version (monotonic across
//!   restarts); a CA rotation bumps it too (the trust bundle is part of [`ProxyConfig`]).
//! * Ack: the proxy reports whether it applied a version, and why not.
//! * Errors: any 4xx/5xx carries [`ErrorBody`] with a stable [`ErrorBody::reason`] code (see
//!   [`reason`]).
//! * A proxy that loses the control plane reconnects with exponential backoff (capped) and keeps
//!   its last good config and certificate.
//! * Every SVID response also carries the trust bundle; during a CA rotation overlap it holds
//!   both the old and the new root, so peers with SVIDs from either CA keep talking. During the
//!   overlap the control plane's own certificate still comes from the old CA, so a proxy that
//!   only knows the old root can reconnect and be pushed the new bundle; proxies should renew
//!   their SVID (`POST /v1/renew`) when the pushed bundle changes, and well before `not_after`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The default cap of [`reconnect_backoff`] (the proxy's `backoff_max_ms`).
pub const DEFAULT_RECONNECT_BACKOFF_MAX_MS: u64 = 5000;

/// The wait before reconnection attempt `step` (1, 2, ...) to a lost control plane: a step of
/// 100 ms × 2^step (200 ms at step 1, 400 ms at step 2, ...) up to `cap_ms` (at least 100 ms),
/// of which a random 50–100 % is waited, so a fleet that lost its control plane at the same
/// instant does not come back in lockstep. `random` is any uniformly random number. The proxy
/// waits this long; `bench/control` measures the reconnect of 10,000 proxies that wait the
/// same way.
pub fn reconnect_backoff(step: u32, cap_ms: u64, random: u64) -> std::time::Duration {
    let cap = cap_ms.max(100);
    let ms = 100u64.saturating_mul(1u64 << step.min(16)).min(cap);
    let jitter = random % (ms / 2 + 1);
    std::time::Duration::from_millis(ms / 2 + jitter)
}

/// Default address of the control plane's TLS API.
pub const DEFAULT_CONTROL_ADDR: &str = "127.0.0.1:15012";
/// Default address of the control plane's plain-HTTP ops endpoint.
pub const DEFAULT_OPS_ADDR: &str = "127.0.0.1:15010";
/// TLS server name (SNI) a proxy sends to the control plane. The server is authenticated by its
/// SPIFFE ID, not by this name.
pub const CONTROL_PLANE_SERVER_NAME: &str = "mesh-control";
/// Namespace and service account of the control plane's own SPIFFE ID.
pub const CONTROL_PLANE_NS_SA: (&str, &str) = ("mesh-system", "mesh-control");

/// `POST`: first certificate, authenticated by a token.
pub const PATH_BOOTSTRAP: &str = "/v1/bootstrap";
/// `POST`: new certificate for the identity of the presented one (mTLS).
pub const PATH_RENEW: &str = "/v1/renew";
/// `GET ?since=<version>`: long-poll for the proxy's configuration (mTLS).
pub const PATH_CONFIG: &str = "/v1/config";
/// `POST`: the proxy acknowledges or rejects a configuration version (mTLS).
pub const PATH_CONFIG_ACK: &str = "/v1/config/ack";
/// How long the control plane holds a config long-poll before answering 304.
pub const LONG_POLL_SECS: u64 = 25;
/// Largest request body the control plane accepts (bytes); larger ones get [`reason::TOO_LARGE`].
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Prefix of one-time join tokens (`mjt1.<id>.<secret>`), to tell them from JWTs.
pub const JOIN_TOKEN_PREFIX: &str = "mjt1.";

/// The SPIFFE ID of the control plane in `trust_domain`.
pub fn control_plane_id(trust_domain: &str) -> String {
    format!(
        "spiffe://{trust_domain}/ns/{}/sa/{}",
        CONTROL_PLANE_NS_SA.0, CONTROL_PLANE_NS_SA.1
    )
}

/// Body of `POST /v1/bootstrap`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootstrapRequest {
    /// A one-time join token or a service-account JWT (ES256).
    pub token: String,
    /// PKCS#10 CSR (PEM) for a P-256 key, asking for the token's SPIFFE ID as its only URI SAN.
    pub csr_pem: String,
}

/// Body of `POST /v1/renew`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RenewRequest {
    /// PKCS#10 CSR (PEM) for a fresh P-256 key.
    pub csr_pem: String,
}

/// A freshly issued X.509-SVID (answer to bootstrap and renew).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SvidResponse {
    /// The SPIFFE ID in the certificate's URI SAN.
    pub spiffe_id: String,
    /// Leaf certificate followed by any intermediates (PEM).
    pub svid_chain_pem: String,
    /// Every root the workload must trust now (PEM; two during a CA rotation overlap).
    pub trust_bundle_pem: String,
    /// End of the leaf's validity (RFC 3339, UTC).
    pub not_after: String,
}

/// Answer of `GET /v1/config` when there is something newer than `since`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigResponse {
    /// Configuration version (monotonic, survives control-plane restarts).
    pub version: u64,
    /// The configuration of this proxy.
    pub config: ProxyConfig,
}

/// Body of `POST /v1/config/ack`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfigAck {
    /// The version being acknowledged.
    pub version: u64,
    /// Whether the proxy applied it.
    pub accepted: bool,
    /// Why the proxy rejected it (empty when accepted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong and what to do, for a person.
    pub error: String,
    /// Stable machine-readable code, one of [`reason`].
    pub reason: String,
}

/// Stable refusal codes carried in [`ErrorBody::reason`] (and used as the `reason` label of the
/// control plane's refusal metric).
pub mod reason {
    /// The token's `exp` (or join-token TTL) has passed.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// The join token was already used.
    pub const TOKEN_REPLAYED: &str = "token_replayed";
    /// The token is not one this control plane issued or trusts (bad signature, unknown id).
    pub const TOKEN_INVALID: &str = "token_invalid";
    /// The CSR asks for a SPIFFE ID the caller is not entitled to.
    pub const CSR_IDENTITY_MISMATCH: &str = "csr_identity_mismatch";
    /// The CSR cannot be parsed, its signature is bad, or its key is not P-256.
    pub const CSR_INVALID: &str = "csr_invalid";
    /// The requested identity belongs to another trust domain.
    pub const FOREIGN_TRUST_DOMAIN: &str = "foreign_trust_domain";
    /// The request body is larger than [`super::MAX_REQUEST_BYTES`].
    pub const TOO_LARGE: &str = "too_large";
    /// The request body is not the JSON this endpoint expects.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The endpoint needs a client certificate (mTLS) and none was presented.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// Unknown path or method.
    pub const NOT_FOUND: &str = "not_found";
    /// The control plane failed internally (state could not be written, ...).
    pub const INTERNAL: &str = "internal";
    /// Metric label only: a TLS handshake with the API failed (unknown CA, non-FIPS suite, ...).
    pub const TLS_HANDSHAKE: &str = "tls_handshake";
    /// The client certificate chains to a trusted root but is not an SVID this control plane
    /// issued and still honours (another CA under a shared root, unknown or expired serial).
    pub const SVID_NOT_HONOURED: &str = "svid_not_honoured";
    /// The client took too long to send its request (headers or body); the connection is closed.
    pub const TIMEOUT: &str = "timeout";
}

/// Everything one proxy needs, pushed by the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ProxyConfig {
    /// The proxy's own SPIFFE ID (from its client certificate).
    pub identity: String,
    /// Roots to trust for peers (PEM; two during a CA rotation overlap).
    pub trust_bundle_pem: String,
    /// Inbound peer authentication.
    pub mtls_mode: MtlsMode,
    /// TLS policy for inbound and outbound mesh connections.
    #[serde(default)]
    pub tls: TlsPolicy,
    /// Inbound authorization of this workload.
    pub inbound: InboundPolicy,
    /// The services this workload may call, with their endpoints.
    pub services: Vec<Service>,
    /// Routes for those services (HTTP only).
    pub routes: Vec<Route>,
}

/// Inbound peer authentication mode.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    /// Only mTLS connections with a valid SVID are accepted.
    #[default]
    Strict,
    /// mTLS and plain-text are both accepted (migration).
    Permissive,
}

/// TLS policy. Names are rustls' (`{:?}` of `CipherSuite` / `NamedGroup` / `ProtocolVersion`),
/// all of them FIPS-approved: the control plane refuses a configuration naming anything else.
/// Proxies apply it with [`crate::tls::policy_provider`], the one narrower, whose rules (no
/// empty list, at least one TLS 1.3 suite, ...) are documented there. Omitted from a
/// [`ProxyConfig`], it is [`TlsPolicy::default`]: the whole FIPS set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Lowest protocol version: `"TLSv1_2"` or `"TLSv1_3"`.
    pub min_version: String,
    /// Allowed suites, e.g. `"TLS13_AES_256_GCM_SHA384"`, `"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"`.
    pub cipher_suites: Vec<String>,
    /// Allowed key-exchange groups: `"secp256r1"`, `"secp384r1"`.
    pub kx_groups: Vec<String>,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        TlsPolicy {
            min_version: "TLSv1_2".into(),
            cipher_suites: crate::crypto::FIPS_CIPHER_SUITES
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect(),
            kx_groups: crate::crypto::provider()
                .kx_groups
                .iter()
                .map(|g| format!("{:?}", g.name()))
                .collect(),
        }
    }
}

/// Inbound authorization of one workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct InboundPolicy {
    /// Rules, evaluated as: any matching DENY refuses; else, if there are ALLOW rules, one must
    /// match; with no ALLOW rules everything not denied is allowed.
    pub authorization: Vec<AuthorizationRule>,
}

/// One authorization rule. Empty lists match anything.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationRule {
    /// Rule name (from the policy file), for logs.
    pub name: String,
    /// What a match does.
    pub action: Action,
    /// Peer SPIFFE IDs, exact or a prefix ending in `/*` (`spiffe://td/ns/x/*`); `*` for any.
    #[serde(default)]
    pub sources: Vec<String>,
    /// HTTP methods (upper case).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path prefixes.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// Action of an authorization rule.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Refuse the request.
    Deny,
}

/// Whether `id` matches a source pattern of an [`AuthorizationRule`].
pub fn source_matches(pattern: &str, id: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

/// A service a proxy may call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Service {
    /// Service name (unique in the mesh).
    pub name: String,
    /// How the proxy treats its traffic.
    pub protocol: Protocol,
    /// Where it runs.
    pub endpoints: Vec<Endpoint>,
}

/// Application protocol of a service.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 or HTTP/2: routes apply.
    Http,
    /// Opaque TCP: passthrough inside mTLS.
    Tcp,
}

/// One instance of a service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` of the instance's proxy inbound listener (`[::1]:port` for IPv6).
    pub address: String,
    /// The SPIFFE ID the instance must present.
    pub identity: String,
    /// Labels such as `version = "v1"`, used by route destinations.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An HTTP route for one service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    /// The service the route belongs to.
    pub service: String,
    /// Route name (from the file), for logs and metrics.
    pub name: String,
    /// What requests it applies to. Routes of a service are tried in order; the first match wins.
    #[serde(rename = "match", default)]
    pub match_: RouteMatch,
    /// Weighted destinations (canaries); an endpoint belongs to a destination when its labels
    /// contain all of the destination's labels.
    pub destinations: Vec<WeightedDestination>,
    /// Retry policy, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// Overall request timeout (milliseconds), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Request match of a route. Absent fields match anything.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RouteMatch {
    /// Path prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Headers that must be present with exactly these values (names lower case).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// HTTP method (upper case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// One weighted destination of a route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WeightedDestination {
    /// Label subset selecting endpoints (empty = all endpoints of the service).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Relative weight.
    pub weight: u32,
}

/// Retry policy of a route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    /// Timeout of each try (milliseconds).
    pub per_try_timeout_ms: u64,
    /// Retries allowed as a percentage of recent requests (retry budget).
    pub budget_percent: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reconnect wait: 50–100 % of a step that doubles from 200 ms to the cap, never 0, and
    /// spread by the random number (a fleet with different random numbers does not line up).
    #[test]
    fn reconnect_backoff_doubles_to_the_cap_with_jitter() {
        let ms = |step, cap, r| reconnect_backoff(step, cap, r).as_millis();
        assert_eq!((ms(1, 5000, 0), ms(1, 5000, 100)), (100, 200));
        assert_eq!((ms(2, 5000, 0), ms(2, 5000, 200)), (200, 400));
        assert_eq!((ms(10, 5000, 0), ms(10, 5000, 2500)), (2500, 5000));
        assert_eq!(ms(40, 5000, u64::MAX), ms(16, 5000, u64::MAX));
        // A cap below 100 ms is raised to 100 ms: a wait of 0 would hammer the control plane.
        assert_eq!((ms(3, 0, 0), ms(3, 0, 50)), (50, 100));
        let spread: std::collections::BTreeSet<u128> =
            (0..1000u64).map(|r| ms(1, 5000, r)).collect();
        assert_eq!(spread.len(), 101, "every wait from 100 to 200 ms is drawn");
    }

    /// Source patterns: exact, prefix with `/*`, and `*`.
    #[test]
    fn source_patterns() {
        assert!(source_matches(
            "spiffe://td/ns/a/*",
            "spiffe://td/ns/a/sa/x"
        ));
        assert!(!source_matches(
            "spiffe://td/ns/a/*",
            "spiffe://td/ns/b/sa/x"
        ));
        assert!(source_matches(
            "spiffe://td/ns/a/sa/x",
            "spiffe://td/ns/a/sa/x"
        ));
        assert!(!source_matches(
            "spiffe://td/ns/a/sa/x",
            "spiffe://td/ns/a/sa/xy"
        ));
        assert!(source_matches("*", "spiffe://other/ns/a/sa/x"));
    }

    /// The JSON shape uses the contract's field names (`match`, upper-case enums).
    #[test]
    fn json_shape() {
        let route = Route {
            service: "s".into(),
            name: "r".into(),
            match_: RouteMatch {
                path_prefix: Some("/a".into()),
                ..Default::default()
            },
            destinations: vec![WeightedDestination {
                labels: BTreeMap::new(),
                weight: 1,
            }],
            retries: None,
            timeout_ms: None,
        };
        let v = serde_json::to_value(&route).unwrap_or_default();
        assert_eq!(v["match"]["path_prefix"], "/a");
        let v = serde_json::to_value(ProxyConfig::default()).unwrap_or_default();
        assert_eq!(v["mtls_mode"], "STRICT");
        assert_eq!(v["tls"]["kx_groups"][0], "secp256r1");
    }
}
