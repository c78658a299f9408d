//! Configuration of the proxy.
//!
//! Two parts, kept apart on purpose:
//! - [`ProxyConfig`]: the mesh configuration the control plane pushes (identity, trust bundle,
//!   mTLS mode, TLS policy, inbound authorization, services and routes). With a static setup it
//!   is read from the local file's `mesh` section instead.
//! - [`LocalConfig`]: what only this host knows (listen addresses, the local application's
//!   address, certificate files, where the control plane is, resource limits).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use mesh_core::api::{
    Action, AuthorizationRule, Endpoint, InboundPolicy, MtlsMode, Protocol, ProxyConfig,
    RetryPolicy, Route, RouteMatch, Service, TlsPolicy, WeightedDestination,
};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON for the expected shape.
    #[error(
        "{path}:{line}:{column}: {message} (see mesh/proxy/README section `config` for the format)"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde said.
        message: String,
    },
    /// The content is well-formed but inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// The inbound listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundListener {
    /// Where peers connect.
    pub listen: SocketAddr,
    /// The local application.
    pub app: SocketAddr,
    /// `http`, `tcp`, or `detect` (sniff the first bytes after TLS).
    #[serde(default = "default_detect")]
    pub protocol: String,
    /// Speak HTTP/2 (prior knowledge) to the application instead of HTTP/1.1.
    #[serde(default)]
    pub app_http2: bool,
}

fn default_detect() -> String {
    "detect".into()
}

/// One explicit outbound listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundListener {
    /// The service it leads to.
    pub service: String,
    /// Where the application connects (loopback).
    pub listen: SocketAddr,
}

/// Transparent outbound capture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransparentListener {
    /// Where iptables REDIRECTs outbound connections.
    pub listen: SocketAddr,
}

/// Certificate files (static identity).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityFiles {
    /// Leaf + intermediates (PEM).
    pub cert_chain: PathBuf,
    /// Private key (PEM, PKCS#8 or SEC1).
    pub key: PathBuf,
    /// Trusted roots (PEM).
    pub trust_bundle: PathBuf,
}

/// Where and how to reach the control plane.
///
/// In the file, `addresses` lists the replicas; the older single `address` is still read (as
/// a list of one). Giving both, neither, an empty list or one address twice is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ControlPlaneFile")]
pub struct ControlPlaneSettings {
    /// `host:port` of each replica's TLS port; never empty, no address twice. The proxy talks
    /// to one at a time (see [`crate::control`]: where it starts, and how it moves on).
    pub addresses: Vec<SocketAddr>,
    /// PEM bundle to authenticate the control plane before the proxy has its own bundle.
    pub ca_bundle: PathBuf,
    /// File holding the join token or service-account JWT.
    pub token_file: PathBuf,
    /// Cap of the reconnect backoff.
    pub backoff_max_ms: u64,
    /// Renew when this fraction of the lifetime has passed.
    pub renew_fraction: f64,
}

/// `control_plane` as written in the file, before the replica list is checked.
#[derive(Deserialize)]
struct ControlPlaneFile {
    #[serde(default)]
    address: Option<SocketAddr>,
    #[serde(default)]
    addresses: Option<Vec<SocketAddr>>,
    ca_bundle: PathBuf,
    token_file: PathBuf,
    #[serde(default = "default_backoff")]
    backoff_max_ms: u64,
    #[serde(default = "default_renew")]
    renew_fraction: f64,
}

impl TryFrom<ControlPlaneFile> for ControlPlaneSettings {
    type Error = String;

    fn try_from(f: ControlPlaneFile) -> Result<Self, String> {
        let addresses = match (f.address, f.addresses) {
            (Some(_), Some(_)) => {
                return Err(
                    "control_plane: give `addresses` (the list of replicas) or the older \
                            single `address`, not both"
                        .into(),
                )
            }
            (None, None) => {
                return Err("control_plane: `addresses` is required: the control-plane \
                            replicas' TLS ports, e.g. [\"10.0.0.1:15012\", \"10.0.0.2:15012\"]"
                    .into())
            }
            (Some(one), None) => vec![one],
            (None, Some(list)) => list,
        };
        if addresses.is_empty() {
            return Err(
                "control_plane: `addresses` is empty; list at least one control-plane \
                        replica (host:port of its TLS port)"
                    .into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = addresses.iter().find(|a| !seen.insert(**a)) {
            return Err(format!(
                "control_plane: `addresses` lists {twice} twice; list each replica once"
            ));
        }
        Ok(ControlPlaneSettings {
            addresses,
            ca_bundle: f.ca_bundle,
            token_file: f.token_file,
            backoff_max_ms: f.backoff_max_ms,
            renew_fraction: f.renew_fraction,
        })
    }
}

fn default_backoff() -> u64 {
    mesh_core::api::DEFAULT_RECONNECT_BACKOFF_MAX_MS
}
fn default_renew() -> f64 {
    0.5
}

/// Resource limits (bad input).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Open connections across all listeners; more are closed at once.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout_ms: u64,
    /// Largest request header block.
    pub max_header_bytes: usize,
    /// Time a client has to finish the TLS handshake (or send its first byte).
    pub handshake_timeout_ms: u64,
    /// Largest request body buffered for retries.
    pub max_buffered_body: usize,
    /// Consecutive failures that eject an endpoint.
    pub eject_after_failures: u32,
    /// How long an ejected endpoint is left out.
    pub eject_for_ms: u64,
    /// Connect timeout to endpoints.
    pub connect_timeout_ms: u64,
    /// How long an idle pooled connection (to an endpoint or the local application) is kept.
    pub pool_idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 64 * 1024,
            handshake_timeout_ms: 10_000,
            max_buffered_body: 4 * 1024 * 1024,
            eject_after_failures: 5,
            eject_for_ms: 10_000,
            connect_timeout_ms: 2_000,
            pool_idle_timeout_ms: 60_000,
        }
    }
}

/// The local file given to `mesh-proxy run --config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalConfig {
    /// Admin endpoint.
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// Inbound listener.
    #[serde(default)]
    pub inbound: Option<InboundListener>,
    /// Explicit outbound listeners.
    #[serde(default)]
    pub outbound: Vec<OutboundListener>,
    /// Transparent outbound listener.
    #[serde(default)]
    pub transparent: Option<TransparentListener>,
    /// Static identity from files.
    #[serde(default)]
    pub identity: Option<IdentityFiles>,
    /// Control plane.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneSettings>,
    /// Static mesh configuration (used when there is no control plane, or until it answers).
    #[serde(default)]
    pub mesh: Option<ProxyConfig>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Write a JSON access log line per request/connection to stdout.
    #[serde(default = "yes")]
    pub access_log: bool,
    /// How request paths are normalised before routes and authorization rules see them.
    #[serde(default)]
    pub http_paths: crate::path::PathSettings,
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 15000))
}
fn yes() -> bool {
    true
}

impl LocalConfig {
    /// Reads and checks a local configuration file (JSON).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks the text of a local configuration file; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let cfg: LocalConfig = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if cfg.identity.is_none() && cfg.control_plane.is_none() {
            return Err(ConfigError::Invalid(format!(
                "{}: needs `identity` (certificate files) or `control_plane` (bootstrap)",
                path.display()
            )));
        }
        if cfg.control_plane.is_none() && cfg.mesh.is_none() {
            return Err(ConfigError::Invalid(format!(
                "{}: without `control_plane`, a static `mesh` section is required",
                path.display()
            )));
        }
        if let Some(mesh) = &cfg.mesh {
            validate(mesh)
                .map_err(|e| ConfigError::Invalid(format!("{}: mesh: {e}", path.display())))?;
        }
        Ok(cfg)
    }
}

/// Checks references between services and routes, that every endpoint address means one
/// identity, and that the TLS policy stays FIPS.
pub fn validate(cfg: &ProxyConfig) -> Result<(), String> {
    // Address -> (service, identity) of its first listing. Connections to an address are
    // verified against one expected identity, so an address listed with two identities is
    // ambiguous: refuse the configuration rather than pick one (fail closed).
    let mut ids: std::collections::HashMap<SocketAddr, (&str, &str)> =
        std::collections::HashMap::new();
    for s in &cfg.services {
        for e in &s.endpoints {
            let Ok(addr) = e.address.parse::<SocketAddr>() else {
                return Err(format!(
                    "service `{}`: endpoint address `{}` is not ip:port",
                    s.name, e.address
                ));
            };
            if let Err(err) = mesh_core::identity::SpiffeId::parse(&e.identity) {
                return Err(format!(
                    "service `{}`: endpoint `{}`: identity: {err}",
                    s.name, e.address
                ));
            }
            match ids.get(&addr) {
                Some((svc, id)) if *id != e.identity => {
                    let (first, second) = (svc, s.name.as_str());
                    return Err(format!(
                        "endpoint address `{}` is listed with two identities: `{id}` in service \
                         `{first}` and `{}` in service `{second}`; a connection to it can be \
                         verified against one identity only (fix the endpoints of `{first}` or \
                         `{second}`)",
                        e.address, e.identity
                    ));
                }
                Some(_) => {}
                None => {
                    ids.insert(addr, (s.name.as_str(), e.identity.as_str()));
                }
            }
        }
    }
    for rule in &cfg.inbound.authorization {
        if let Some(p) = rule
            .paths
            .iter()
            .find(|p| !crate::path::rule_path_is_normal(p))
        {
            return Err(format!(
                "authorization rule `{}`: path `{p}` is not in normal form (requests are matched \
                 after normalisation: no `.`/`..` segments, no `//`, unreserved characters not \
                 percent-encoded, upper-case hex; see mesh/proxy/README section `paths`)",
                rule.name
            ));
        }
    }
    for r in &cfg.routes {
        if let Some(p) = r
            .match_
            .path_prefix
            .as_deref()
            .filter(|p| !crate::path::rule_path_is_normal(p))
        {
            return Err(format!(
                "route `{}`: path_prefix `{p}` is not in normal form (see mesh/proxy/README \
                 section `paths`)",
                r.name
            ));
        }
        let Some(svc) = cfg.services.iter().find(|s| s.name == r.service) else {
            return Err(format!(
                "route `{}` names unknown service `{}`",
                r.name, r.service
            ));
        };
        if svc.protocol == Protocol::Tcp {
            return Err(format!(
                "route `{}`: service `{}` is tcp; routes are HTTP only",
                r.name, svc.name
            ));
        }
        if !r.destinations.is_empty() && r.destinations.iter().all(|d| d.weight == 0) {
            return Err(format!("route `{}`: all destination weights are 0", r.name));
        }
    }
    mesh_core::tls::policy_provider(&cfg.tls)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, addr: &str, identity: &str) -> Service {
        Service {
            name: name.into(),
            protocol: Protocol::Http,
            endpoints: vec![Endpoint {
                address: addr.into(),
                identity: identity.into(),
                labels: Default::default(),
            }],
        }
    }

    /// One address, two identities: refused with both services named, whatever the spelling
    /// of the address; one address, one identity in two services: accepted.
    #[test]
    fn ambiguous_endpoint_identity_is_refused() {
        let mut cfg = ProxyConfig {
            services: vec![
                svc("shop", "127.0.0.1:8443", "spiffe://td/ns/shop/sa/shop"),
                svc("pay", "127.0.0.1:8443", "spiffe://td/ns/pay/sa/pay"),
            ],
            ..Default::default()
        };
        let e = validate(&cfg).err().unwrap_or_default();
        assert!(
            e.contains("service `shop`")
                && e.contains("service `pay`")
                && e.contains("127.0.0.1:8443"),
            "{e}"
        );
        cfg.services[1].endpoints[0].identity = "spiffe://td/ns/shop/sa/shop".into();
        assert_eq!(validate(&cfg), Ok(()));
        cfg.services[1].endpoints[0].address = "[::ffff:127.0.0.1]:8443".into();
        assert_eq!(
            validate(&cfg),
            Ok(()),
            "a different address is not ambiguous"
        );
        cfg.services[1].endpoints[0].identity = "not-a-spiffe-id".into();
        assert!(validate(&cfg).is_err_and(|e| e.contains("not a SPIFFE ID")));
    }

    fn control_plane(section: &str) -> Result<LocalConfig, String> {
        let text = format!(
            r#"{{"outbound": [], "control_plane": {{"ca_bundle": "b.pem", "token_file": "t", {section}}}}}"#
        );
        LocalConfig::parse(Path::new("proxy.json"), &text).map_err(|e| e.to_string())
    }

    /// `addresses` is a list of replicas; the older single `address` is read as a list of
    /// one; both, neither, an empty list or an address listed twice are refused, naming the
    /// file and what to write instead.
    #[test]
    fn control_plane_addresses() {
        let addrs = |r: Result<LocalConfig, String>| {
            r.map(|c| c.control_plane.map(|cp| cp.addresses).unwrap_or_default())
        };
        let two: Vec<SocketAddr> = vec![
            SocketAddr::from(([127, 0, 0, 1], 15012)),
            SocketAddr::from(([127, 0, 0, 2], 15012)),
        ];
        assert_eq!(
            addrs(control_plane(
                r#""addresses": ["127.0.0.1:15012", "127.0.0.2:15012"]"#
            )),
            Ok(two.clone())
        );
        assert_eq!(
            addrs(control_plane(r#""address": "127.0.0.1:15012""#)),
            Ok(two[..1].to_vec()),
            "the older single address still works"
        );
        for (section, says) in [
            (
                r#""address": "127.0.0.1:1", "addresses": ["127.0.0.2:1"]"#,
                "not both",
            ),
            (r#""backoff_max_ms": 10"#, "`addresses` is required"),
            (r#""addresses": []"#, "`addresses` is empty"),
            (
                r#""addresses": ["127.0.0.1:1", "127.0.0.2:1", "127.0.0.1:1"]"#,
                "lists 127.0.0.1:1 twice",
            ),
            (r#""addresses": ["localhost:1"]"#, "invalid socket address"),
        ] {
            let e = control_plane(section).err().unwrap_or_default();
            assert!(
                e.contains("proxy.json:") && e.contains(says),
                "{section}: {e}"
            );
        }
        // What the proxy reports (`/config`) is the list, whichever key the file used.
        let cp = control_plane(r#""address": "127.0.0.1:15012""#)
            .ok()
            .and_then(|c| c.control_plane);
        let v = serde_json::to_value(cp).unwrap_or_default();
        assert_eq!(v["addresses"], serde_json::json!(["127.0.0.1:15012"]));
    }
}
