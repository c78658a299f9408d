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
//!
//! One parser per document kind: [`tls`], [`peer_auth`], [`services`], [`routes`],
//! [`authorization`]; [`docs`] holds the serde models with their spans.

mod authorization;
mod docs;
mod peer_auth;
mod routes;
mod services;
mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use mesh_core::api::{
    source_matches, AuthorizationRule, InboundPolicy, MtlsMode, ProxyConfig, Route, Service,
    TlsPolicy,
};
use serde::{Deserialize, Serialize};

use docs::Ctx;

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
    let mut pending_routes = Vec::new();
    let docs = docs::read_all(sources, &mut errors);
    for (file, text, doc) in docs {
        let mut cx = Ctx {
            file,
            text,
            errors: &mut errors,
        };
        if let Some(t) = doc.tls {
            tls::parse(&mut cx, t, &mut tls_seen, &mut cfg.tls);
        }
        for pa in doc.peer_authentication {
            let entry = peer_auth::parse(&mut cx, pa, trust_domain);
            cfg.peer_authentication.push(entry);
        }
        for s in doc.services {
            let entry = services::parse(&mut cx, s, trust_domain, &mut service_names);
            cfg.services.push(entry);
        }
        for r in doc.routes {
            pending_routes.push((file, text, r));
        }
        for a in doc.authorization {
            let entry = authorization::parse(&mut cx, a, trust_domain);
            cfg.authorization.push(entry);
        }
    }
    // Routes last: they refer to services that may be defined in any file.
    let mut route_names = BTreeSet::new();
    for (file, text, r) in pending_routes {
        let mut cx = Ctx {
            file,
            text,
            errors: &mut errors,
        };
        let route = routes::parse(&mut cx, r, &cfg.services, &mut route_names);
        cfg.routes.push(route);
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
        distro_hostio::sha256_hex(&json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::api::Action;

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
        let text = include_str!("../../config/example/mesh.toml");
        let cfg = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let checkout = cfg.view_for("spiffe://example.org/ns/shop/sa/checkout", "");
        assert_eq!(checkout.services.len(), 2);
        let legacy = cfg.view_for("spiffe://example.org/ns/legacy/sa/billing-db", "");
        assert_eq!(legacy.mtls_mode, MtlsMode::Permissive);
        assert_eq!(legacy.inbound.authorization[0].action, Action::Deny);
    }

    /// A rule path the proxy could never match (not in its normal form) is refused with the
    /// file, the line and the form to write, not pushed for the proxy to refuse.
    #[test]
    fn rule_paths_not_in_normal_form_are_refused() {
        let rule = |path: &str| {
            format!(
                "[[authorization]]\nname = \"r\"\nworkload = \"spiffe://example.org/ns/a/sa/b\"\n\
                 action = \"DENY\"\npaths = [{path:?}]\n"
            )
        };
        for (path, write) in [
            ("/a/../b", "\"/b\""),
            ("//admin", "\"/admin\""),
            ("/%61dmin*", "\"/admin*\""),
            ("/revi\u{fffd}ws", "\"/revi%EF%BF%BDws\""),
        ] {
            let err = parse(&rule(path))
                .err()
                .unwrap_or_else(|| panic!("accepted rule path {path:?}"))
                .to_string();
            assert!(
                err.contains("mesh.toml:5: field `authorization.paths`"),
                "{err}"
            );
            assert!(err.contains(&format!("write {write}")), "{path:?}: {err}");
        }
        let err = parse(&rule("/../etc")).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("cannot be matched")),
            "{err:?}"
        );
        let route = "[[services]]\nname = \"s\"\nprotocol = \"http\"\n\
                     [[routes]]\nname = \"r\"\nservice = \"s\"\nmatch = { path_prefix = \"/x/./y\" }\n\
                     destinations = [{ labels = {}, weight = 1 }]\n";
        let err = parse(route)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("routes.match.path_prefix") && err.contains("write \"/x/y\""),
            "{err}"
        );
        assert!(parse(&rule("/reviews/*")).is_ok());
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
