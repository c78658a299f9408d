//! The declarative mesh configuration: TOML files in a directory, merged, validated with source
//! positions, and cut into one [`ProxyConfig`] per workload.
//!
//! ```toml
//! [tls]                      # optional; defaults to the full FIPS set, TLS 1.2+
//! min_version = "TLSv1_3"
//! cipher_suites = ["TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256"]
//! kx_groups = ["secp256r1", "secp384r1"]
//!
//! [[peer_authentication]]    # later entries win; default STRICT
//! workload = "spiffe://example.org/ns/legacy/*"
//! mtls_mode = "PERMISSIVE"
//!
//! [[services]]
//! name = "reviews"
//! protocol = "http"          # or "tcp"
//! allowed_clients = ["spiffe://example.org/ns/default/*"]   # who receives it; default all
//! [[services.endpoints]]
//! address = "127.0.0.1:9081"
//! identity = "spiffe://example.org/ns/default/sa/reviews"
//! labels = { version = "v1" }
//!
//! [[routes]]
//! service = "reviews"
//! name = "canary"
//! match = { path_prefix = "/", headers = { "x-canary" = "1" }, method = "GET" }
//! destinations = [{ labels = { version = "v2" }, weight = 10 }, { labels = { version = "v1" }, weight = 90 }]
//! retries = { attempts = 2, per_try_timeout_ms = 500, budget_percent = 20 }
//! timeout_ms = 3000
//!
//! [[authorization]]
//! workload = "spiffe://example.org/ns/default/sa/reviews"   # whose inbound it guards
//! name = "frontend-reads"
//! action = "ALLOW"
//! sources = ["spiffe://example.org/ns/default/sa/frontend"]
//! methods = ["GET"]
//! paths = ["/reviews"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use mesh_core::api::{
    source_matches, Action, AuthorizationRule, Endpoint, InboundPolicy, MtlsMode, Protocol,
    ProxyConfig, RetryPolicy, Route, RouteMatch, Service, TlsPolicy, WeightedDestination,
};
use mesh_core::identity::SpiffeId;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// One problem in a configuration file.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The field (dotted path), when known.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: field `{}`: {}",
                self.file, self.line, self.field, self.message
            )
        }
    }
}

/// All problems found in one load; the configuration is refused as a whole.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        write!(f, "{}", lines.join("; "))
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    tls: Option<Spanned<TlsDoc>>,
    #[serde(default)]
    peer_authentication: Vec<PeerAuthDoc>,
    #[serde(default)]
    services: Vec<ServiceDoc>,
    #[serde(default)]
    routes: Vec<RouteDoc>,
    #[serde(default)]
    authorization: Vec<AuthzDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsDoc {
    #[serde(default)]
    min_version: Option<Spanned<String>>,
    #[serde(default)]
    cipher_suites: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    kx_groups: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerAuthDoc {
    workload: Spanned<String>,
    mtls_mode: MtlsMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDoc {
    name: Spanned<String>,
    protocol: Protocol,
    #[serde(default)]
    allowed_clients: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    endpoints: Vec<EndpointDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointDoc {
    address: Spanned<String>,
    identity: Spanned<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDoc {
    service: Spanned<String>,
    name: Spanned<String>,
    #[serde(rename = "match", default)]
    match_: Option<Spanned<MatchDoc>>,
    destinations: Spanned<Vec<Spanned<DestDoc>>>,
    #[serde(default)]
    retries: Option<Spanned<RetryDoc>>,
    #[serde(default)]
    timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchDoc {
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestDoc {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryDoc {
    attempts: u32,
    per_try_timeout_ms: u64,
    #[serde(default = "default_budget")]
    budget_percent: u32,
}

fn default_budget() -> u32 {
    20
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthzDoc {
    workload: Spanned<String>,
    name: Spanned<String>,
    action: Action,
    #[serde(default)]
    sources: Vec<Spanned<String>>,
    #[serde(default)]
    methods: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
}

/// The validated, merged mesh configuration (also what `state/config.json` keeps).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct MeshConfig {
    /// TLS policy for everyone.
    pub tls: TlsPolicy,
    /// Peer-authentication entries, `(workload pattern, mode)`; the last match wins.
    pub peer_authentication: Vec<(String, MtlsMode)>,
    /// Services, with who may receive them.
    pub services: Vec<ServiceEntry>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Authorization rules, `(workload pattern, rule)`.
    pub authorization: Vec<(String, AuthorizationRule)>,
}

/// A service and the clients it is distributed to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceEntry {
    /// The service as proxies see it.
    pub service: Service,
    /// Patterns of identities that receive it.
    pub allowed_clients: Vec<String>,
}

/// Longest route timeout and per-try timeout (1 hour): a duration the proxy can add to a clock
/// without overflowing, and longer than any request a mesh should hold open.
const MAX_ROUTE_TIMEOUT_MS: u64 = 3_600_000;

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text
            .get(..offset)
            .map(|s| s.matches('\n').count() + 1)
            .unwrap_or(1)
    }
    fn err(
        &mut self,
        span: std::ops::Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }
}

fn valid_pattern(p: &str, trust_domain: &str) -> Result<(), String> {
    if p == "*" {
        return Ok(());
    }
    let base = p.strip_suffix("/*").unwrap_or(p);
    let id = SpiffeId::parse(base).map_err(|e| e.to_string())?;
    if id.trust_domain() != trust_domain {
        return Err(format!(
            "trust domain {:?} is not this mesh's {trust_domain:?}",
            id.trust_domain()
        ));
    }
    Ok(())
}

/// Loads every `*.toml` in `dir` (or the one file `dir`), in name order, and validates the merge.
pub fn load(dir: &Path, trust_domain: &str) -> Result<MeshConfig, ConfigErrors> {
    let mut files = Vec::new();
    if dir.is_dir() {
        let rd = std::fs::read_dir(dir).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: dir.display().to_string(),
                line: 0,
                field: String::new(),
                message: format!("cannot read directory: {e}"),
            }])
        })?;
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(dir.to_path_buf());
    }
    let mut sources = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(t) => sources.push((f.display().to_string(), t)),
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    file: f.display().to_string(),
                    line: 0,
                    field: String::new(),
                    message: format!("cannot read: {e}"),
                }]))
            }
        }
    }
    parse_sources(&sources, trust_domain)
}

/// Parses and validates named TOML sources as one configuration.
pub fn parse_sources(
    sources: &[(String, String)],
    trust_domain: &str,
) -> Result<MeshConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let mut cfg = MeshConfig {
        tls: TlsPolicy::default(),
        ..Default::default()
    };
    let mut tls_seen: Option<String> = None;
    let mut service_names: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut pending_routes: Vec<(String, &str, RouteDoc)> = Vec::new();
    let mut docs = Vec::new();
    for (file, text) in sources {
        match toml::from_str::<FileDoc>(text) {
            Ok(doc) => docs.push((file.as_str(), text.as_str(), doc)),
            Err(e) => {
                let line = e
                    .span()
                    .map(|s| {
                        text.get(..s.start)
                            .map(|t| t.matches('\n').count() + 1)
                            .unwrap_or(1)
                    })
                    .unwrap_or(0);
                errors.push(ConfigError {
                    file: file.clone(),
                    line,
                    field: String::new(),
                    message: e.message().trim().to_string(),
                });
            }
        }
    }
    for (file, text, doc) in docs {
        let mut cx = Ctx {
            file,
            text,
            errors: &mut errors,
        };
        if let Some(tls) = doc.tls {
            if let Some(prev) = &tls_seen {
                cx.err(
                    tls.span(),
                    "tls",
                    format!("a [tls] table is already defined in {prev}; keep one"),
                );
            }
            tls_seen = Some(file.to_string());
            let tls = tls.into_inner();
            if let Some(v) = tls.min_version {
                if !["TLSv1_2", "TLSv1_3"].contains(&v.get_ref().as_str()) {
                    cx.err(
                        v.span(),
                        "tls.min_version",
                        format!(
                            "{:?} is not allowed; use \"TLSv1_2\" or \"TLSv1_3\"",
                            v.get_ref()
                        ),
                    );
                }
                cfg.tls.min_version = v.into_inner();
            }
            let fips_suites: Vec<String> = mesh_core::crypto::FIPS_CIPHER_SUITES
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect();
            if let Some(list) = tls.cipher_suites {
                if list.get_ref().is_empty() {
                    cx.err(
                        list.span(),
                        "tls.cipher_suites",
                        "empty; name at least one FIPS suite",
                    );
                }
                let mut out = Vec::new();
                for s in list.into_inner() {
                    if !fips_suites.contains(s.get_ref()) {
                        cx.err(
                            s.span(),
                            "tls.cipher_suites",
                            format!(
                                "{:?} is not a FIPS-approved suite; allowed: {}",
                                s.get_ref(),
                                fips_suites.join(", ")
                            ),
                        );
                    }
                    out.push(s.into_inner());
                }
                cfg.tls.cipher_suites = out;
            }
            if let Some(list) = tls.kx_groups {
                if list.get_ref().is_empty() {
                    cx.err(
                        list.span(),
                        "tls.kx_groups",
                        "empty; name secp256r1 and/or secp384r1",
                    );
                }
                let mut out = Vec::new();
                for g in list.into_inner() {
                    if !["secp256r1", "secp384r1"].contains(&g.get_ref().as_str()) {
                        cx.err(
                            g.span(),
                            "tls.kx_groups",
                            format!(
                                "{:?} is not a FIPS-approved group; allowed: secp256r1, secp384r1",
                                g.get_ref()
                            ),
                        );
                    }
                    out.push(g.into_inner());
                }
                cfg.tls.kx_groups = out;
            }
            if cfg.tls.min_version == "TLSv1_3"
                && !cfg
                    .tls
                    .cipher_suites
                    .iter()
                    .any(|s| s.starts_with("TLS13_"))
            {
                cx.err(
                    0..0,
                    "tls.cipher_suites",
                    "min_version is TLSv1_3 but no TLS 1.3 suite is allowed",
                );
            }
        }
        for pa in doc.peer_authentication {
            if let Err(m) = valid_pattern(pa.workload.get_ref(), trust_domain) {
                cx.err(pa.workload.span(), "peer_authentication.workload", m);
            }
            cfg.peer_authentication
                .push((pa.workload.into_inner(), pa.mtls_mode));
        }
        for s in doc.services {
            let name = s.name.get_ref().clone();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                cx.err(
                    s.name.span(),
                    "services.name",
                    format!("{name:?}: use letters, digits, '-', '.', '_'"),
                );
            }
            let line = cx.line(s.name.span().start);
            if let Some((f, l)) = service_names.get(&name) {
                cx.err(
                    s.name.span(),
                    "services.name",
                    format!("service {name:?} is already defined at {f}:{l}"),
                );
            }
            service_names.insert(name.clone(), (file.to_string(), line));
            if s.endpoints.is_empty() {
                cx.err(
                    s.name.span(),
                    "services.endpoints",
                    format!("service {name:?} has no endpoints"),
                );
            }
            let mut endpoints = Vec::new();
            for ep in s.endpoints {
                if ep
                    .address
                    .get_ref()
                    .parse::<std::net::SocketAddr>()
                    .is_err()
                {
                    cx.err(ep.address.span(), "services.endpoints.address", format!("{:?} is not host:port with an IP address (e.g. 127.0.0.1:9080 or [::1]:9080)", ep.address.get_ref()));
                }
                match SpiffeId::parse(ep.identity.get_ref()) {
                    Ok(id) if id.trust_domain() != trust_domain => cx.err(
                        ep.identity.span(),
                        "services.endpoints.identity",
                        format!(
                            "trust domain {:?} is not this mesh's {trust_domain:?}",
                            id.trust_domain()
                        ),
                    ),
                    Ok(_) => {}
                    Err(e) => cx.err(
                        ep.identity.span(),
                        "services.endpoints.identity",
                        e.to_string(),
                    ),
                }
                endpoints.push(Endpoint {
                    address: ep.address.into_inner(),
                    identity: ep.identity.into_inner(),
                    labels: ep.labels,
                });
            }
            let mut allowed = Vec::new();
            for c in s
                .allowed_clients
                .unwrap_or_else(|| vec![Spanned::new(0..0, "*".to_string())])
            {
                if let Err(m) = valid_pattern(c.get_ref(), trust_domain) {
                    cx.err(c.span(), "services.allowed_clients", m);
                }
                allowed.push(c.into_inner());
            }
            cfg.services.push(ServiceEntry {
                service: Service {
                    name,
                    protocol: s.protocol,
                    endpoints,
                },
                allowed_clients: allowed,
            });
        }
        for r in doc.routes {
            pending_routes.push((file.to_string(), text, r));
        }
        for a in doc.authorization {
            if let Err(m) = valid_pattern(a.workload.get_ref(), trust_domain) {
                cx.err(a.workload.span(), "authorization.workload", m);
            }
            for s in &a.sources {
                if let Err(m) = valid_pattern(s.get_ref(), trust_domain) {
                    cx.err(s.span(), "authorization.sources", m);
                }
            }
            for m in &a.methods {
                if !METHODS.contains(&m.get_ref().as_str()) {
                    cx.err(
                        m.span(),
                        "authorization.methods",
                        format!(
                            "{:?} is not an HTTP method (upper case: {})",
                            m.get_ref(),
                            METHODS.join(", ")
                        ),
                    );
                }
            }
            for p in &a.paths {
                if !p.get_ref().starts_with('/') {
                    cx.err(
                        p.span(),
                        "authorization.paths",
                        format!("{:?} must start with '/'", p.get_ref()),
                    );
                }
            }
            cfg.authorization.push((
                a.workload.into_inner(),
                AuthorizationRule {
                    name: a.name.into_inner(),
                    action: a.action,
                    sources: a.sources.into_iter().map(Spanned::into_inner).collect(),
                    methods: a.methods.into_iter().map(Spanned::into_inner).collect(),
                    paths: a.paths.into_iter().map(Spanned::into_inner).collect(),
                },
            ));
        }
    }
    // Routes last: they refer to services that may be defined in any file.
    let mut route_names = BTreeSet::new();
    for (file, text, r) in pending_routes {
        let mut cx = Ctx {
            file: &file,
            text,
            errors: &mut errors,
        };
        let svc = cfg
            .services
            .iter()
            .find(|s| &s.service.name == r.service.get_ref())
            .map(|s| s.service.clone());
        match &svc {
            None => cx.err(
                r.service.span(),
                "routes.service",
                format!("no service named {:?} is defined", r.service.get_ref()),
            ),
            Some(s) if s.protocol != Protocol::Http => cx.err(
                r.service.span(),
                "routes.service",
                format!(
                    "service {:?} is tcp; routes apply to http services only",
                    s.name
                ),
            ),
            _ => {}
        }
        if !route_names.insert((r.service.get_ref().clone(), r.name.get_ref().clone())) {
            cx.err(
                r.name.span(),
                "routes.name",
                format!(
                    "route {:?} of service {:?} is defined twice",
                    r.name.get_ref(),
                    r.service.get_ref()
                ),
            );
        }
        let m = r.match_.map(|m| {
            let span = m.span();
            let m = m.into_inner();
            if let Some(meth) = &m.method {
                if !METHODS.contains(&meth.as_str()) {
                    cx.err(
                        span.clone(),
                        "routes.match.method",
                        format!("{meth:?} is not an HTTP method (upper case)"),
                    );
                }
            }
            if let Some(p) = &m.path_prefix {
                if !p.starts_with('/') {
                    cx.err(
                        span.clone(),
                        "routes.match.path_prefix",
                        format!("{p:?} must start with '/'"),
                    );
                }
            }
            RouteMatch {
                path_prefix: m.path_prefix,
                headers: m
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
                method: m.method,
            }
        });
        let dspan = r.destinations.span();
        let dests = r.destinations.into_inner();
        if dests.is_empty() {
            cx.err(
                dspan.clone(),
                "routes.destinations",
                "no destinations; add at least one with a weight",
            );
        }
        if !dests.is_empty() && dests.iter().all(|d| d.get_ref().weight == 0) {
            cx.err(
                dspan,
                "routes.destinations",
                "all weights are 0; at least one must be positive",
            );
        }
        let mut out = Vec::new();
        for d in dests {
            let span = d.span();
            let d = d.into_inner();
            if let Some(s) = &svc {
                let hits = s
                    .endpoints
                    .iter()
                    .filter(|e| d.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
                    .count();
                if hits == 0 {
                    cx.err(
                        span,
                        "routes.destinations.labels",
                        format!(
                            "labels {:?} select no endpoint of service {:?}",
                            d.labels, s.name
                        ),
                    );
                }
            }
            out.push(WeightedDestination {
                labels: d.labels,
                weight: d.weight,
            });
        }
        let retries = r.retries.map(|rt| {
            let span = rt.span();
            let rt = rt.into_inner();
            if rt.attempts > 10 {
                cx.err(
                    span.clone(),
                    "routes.retries.attempts",
                    format!("{} is too many; at most 10", rt.attempts),
                );
            }
            if rt.per_try_timeout_ms == 0 || rt.per_try_timeout_ms > MAX_ROUTE_TIMEOUT_MS {
                cx.err(
                    span.clone(),
                    "routes.retries.per_try_timeout_ms",
                    format!(
                        "{} is out of range: 1..={MAX_ROUTE_TIMEOUT_MS} (1 ms to 1 hour)",
                        rt.per_try_timeout_ms
                    ),
                );
            }
            if rt.budget_percent > 100 {
                cx.err(
                    span,
                    "routes.retries.budget_percent",
                    "a percentage: 0..=100",
                );
            }
            RetryPolicy {
                attempts: rt.attempts,
                per_try_timeout_ms: rt.per_try_timeout_ms,
                budget_percent: rt.budget_percent,
            }
        });
        if let Some(t) = &r.timeout_ms {
            if *t.get_ref() == 0 || *t.get_ref() > MAX_ROUTE_TIMEOUT_MS {
                cx.err(
                    t.span(),
                    "routes.timeout_ms",
                    format!(
                        "{} is out of range: 1..={MAX_ROUTE_TIMEOUT_MS} (1 ms to 1 hour; leave it out for no timeout)",
                        t.get_ref()
                    ),
                );
            }
        }
        cfg.routes.push(Route {
            service: r.service.into_inner(),
            name: r.name.into_inner(),
            match_: m.unwrap_or_default(),
            destinations: out,
            retries,
            timeout_ms: r.timeout_ms.map(Spanned::into_inner),
        });
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}

impl MeshConfig {
    /// The configuration one workload receives: its own inbound policy and mTLS mode, and only
    /// the services (and their routes) it is allowed to call.
    pub fn view_for(&self, identity: &str, trust_bundle_pem: &str) -> ProxyConfig {
        let mtls_mode = self
            .peer_authentication
            .iter()
            .rev()
            .find(|(p, _)| source_matches(p, identity))
            .map(|(_, m)| *m)
            .unwrap_or(MtlsMode::Strict);
        let services: Vec<Service> = self
            .services
            .iter()
            .filter(|s| {
                s.allowed_clients
                    .iter()
                    .any(|p| source_matches(p, identity))
            })
            .map(|s| s.service.clone())
            .collect();
        let routes = self
            .routes
            .iter()
            .filter(|r| services.iter().any(|s| s.name == r.service))
            .cloned()
            .collect();
        ProxyConfig {
            identity: identity.to_string(),
            trust_bundle_pem: trust_bundle_pem.to_string(),
            mtls_mode,
            tls: self.tls.clone(),
            inbound: InboundPolicy {
                authorization: self
                    .authorization
                    .iter()
                    .filter(|(w, _)| source_matches(w, identity))
                    .map(|(_, r)| r.clone())
                    .collect(),
            },
            services,
            routes,
        }
    }

    /// A digest of the configuration, to tell whether a reload changed anything.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MeshConfig, ConfigErrors> {
        parse_sources(&[("mesh.toml".into(), text.into())], "example.org")
    }

    /// A full example parses and each workload gets only what it needs.
    #[test]
    fn example_and_views() {
        let cfg = parse(
            r#"
[[services]]
name = "reviews"
protocol = "http"
allowed_clients = ["spiffe://example.org/ns/default/sa/frontend"]
[[services.endpoints]]
address = "127.0.0.1:9081"
identity = "spiffe://example.org/ns/default/sa/reviews"
labels = { version = "v1" }

[[routes]]
service = "reviews"
name = "all"
destinations = [{ labels = { version = "v1" }, weight = 1 }]

[[authorization]]
workload = "spiffe://example.org/ns/default/sa/reviews"
name = "frontend"
action = "ALLOW"
sources = ["spiffe://example.org/ns/default/sa/frontend"]
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let fe = cfg.view_for("spiffe://example.org/ns/default/sa/frontend", "");
        assert_eq!(fe.services.len(), 1);
        assert_eq!(fe.routes.len(), 1);
        assert!(fe.inbound.authorization.is_empty());
        let rv = cfg.view_for("spiffe://example.org/ns/default/sa/reviews", "");
        assert!(rv.services.is_empty());
        assert_eq!(rv.inbound.authorization.len(), 1);
    }

    /// The example shipped in `config/example/mesh.toml` is valid.
    #[test]
    fn shipped_example_is_valid() {
        let text = include_str!("../config/example/mesh.toml");
        let cfg = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let checkout = cfg.view_for("spiffe://example.org/ns/shop/sa/checkout", "");
        assert_eq!(checkout.services.len(), 2);
        let legacy = cfg.view_for("spiffe://example.org/ns/legacy/sa/billing-db", "");
        assert_eq!(legacy.mtls_mode, MtlsMode::Permissive);
        assert_eq!(legacy.inbound.authorization[0].action, Action::Deny);
    }

    /// Errors name the file, the line and the field.
    #[test]
    fn errors_name_file_line_field() {
        let err = parse("[tls]\nmin_version = \"TLSv1_2\"\ncipher_suites = [\"TLS13_CHACHA20_POLY1305_SHA256\"]\n")
            .err()
            .unwrap_or_else(|| panic!("accepted a non-FIPS suite"));
        let s = err.to_string();
        assert!(s.contains("mesh.toml:3: field `tls.cipher_suites`"), "{s}");
        let err = parse("[[services]]\nname = \"a\"\nprotocol = \"udp\"\n")
            .err()
            .unwrap_or_else(|| panic!("accepted udp"));
        assert!(err.to_string().contains("mesh.toml:3"), "{err}");
        let err = parse(
            "[[routes]]\nservice = \"nope\"\nname = \"r\"\ndestinations = [{ weight = 1 }]\n",
        )
        .err()
        .unwrap_or_else(|| panic!("accepted unknown service"));
        assert!(
            err.to_string()
                .contains("mesh.toml:2: field `routes.service`"),
            "{err}"
        );
    }

    /// Route timeouts of zero or beyond an hour (up to u64::MAX) are refused naming the field.
    #[test]
    fn route_timeouts_out_of_range_are_refused() {
        let svc = "[[services]]\nname = \"a\"\nprotocol = \"http\"\n[[services.endpoints]]\naddress = \"127.0.0.1:1\"\nidentity = \"spiffe://example.org/ns/a/sa/a\"\n";
        for (field, route) in [
            ("routes.timeout_ms", "timeout_ms = 18446744073709551615"),
            ("routes.timeout_ms", "timeout_ms = 3600001"),
            (
                "routes.retries.per_try_timeout_ms",
                "retries = { attempts = 1, per_try_timeout_ms = 18446744073709551615, budget_percent = 10 }",
            ),
            (
                "routes.retries.per_try_timeout_ms",
                "retries = { attempts = 1, per_try_timeout_ms = 0, budget_percent = 10 }",
            ),
        ] {
            let text = format!(
                "{svc}[[routes]]\nservice = \"a\"\nname = \"r\"\ndestinations = [{{ weight = 1 }}]\n{route}\n"
            );
            let err = parse(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted {route}"));
            assert!(
                err.to_string().contains(&format!("field `{field}`")),
                "{route}: {err}"
            );
        }
        let ok = format!(
            "{svc}[[routes]]\nservice = \"a\"\nname = \"r\"\ndestinations = [{{ weight = 1 }}]\ntimeout_ms = 3600000\n"
        );
        assert!(
            parse(&ok).is_ok(),
            "{:?}",
            parse(&ok).err().map(|e| e.to_string())
        );
    }
}
