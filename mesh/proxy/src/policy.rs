//! Inbound authorization: evaluates [`crate::config::InboundPolicy`] for one request or
//! connection.
//!
//! Semantics (those of the contract): a matching DENY refuses; otherwise, when there are ALLOW
//! rules, one must match; with no ALLOW rules everything not denied is allowed. A plaintext
//! client (PERMISSIVE mode) has no identity, so it matches only rules whose source list is empty
//! (`*` means any *authenticated* peer). A TCP connection has no method or path: rules that name methods or
//! paths never match it, which is why a port with such rules refuses traffic that is not HTTP
//! ([`inspects_http`]).
//!
//! Paths are matched as [`crate::path`] normalised them (dot-segments removed, slashes merged,
//! unreserved characters decoded), without the query, case-sensitively.

use mesh_core::api::source_matches;

use crate::config::{Action, InboundPolicy};

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether it may pass.
    pub allowed: bool,
    /// The rule that decided (`default-allow`, `no-allow-rule-matched`, or a rule name).
    pub rule: String,
}

/// What is being authorized.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The peer's SPIFFE ID (`None` for plaintext).
    pub source: Option<&'a str>,
    /// HTTP method (`None` for TCP).
    pub method: Option<&'a str>,
    /// HTTP path (`None` for TCP).
    pub path: Option<&'a str>,
}

fn rule_matches(rule: &crate::config::AuthorizationRule, req: &Request<'_>) -> bool {
    let source_ok = rule.sources.is_empty()
        || req
            .source
            .is_some_and(|id| rule.sources.iter().any(|p| source_matches(p, id)));
    let method_ok = rule.methods.is_empty()
        || req
            .method
            .is_some_and(|m| rule.methods.iter().any(|x| x.eq_ignore_ascii_case(m)));
    let path_ok = rule.paths.is_empty()
        || req
            .path
            .is_some_and(|p| rule.paths.iter().any(|x| path_prefix_matches(x, p)));
    source_ok && method_ok && path_ok
}

/// `/api` matches `/api` and `/api/x`, not `/apix`; a prefix ending in `/` or `*` matches
/// anything under it. `path` is normalised and carries no query.
fn path_prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.strip_suffix('*').unwrap_or(prefix);
    if prefix.ends_with('/') || prefix.is_empty() {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

/// Whether any rule looks at HTTP (names methods or paths). On such a port, traffic that is not
/// valid HTTP is refused instead of passed on as TCP, where those rules could never match.
pub fn inspects_http(policy: &InboundPolicy) -> bool {
    policy
        .authorization
        .iter()
        .any(|r| !r.methods.is_empty() || !r.paths.is_empty())
}

/// Decides whether `req` may pass `policy`.
pub fn authorize(policy: &InboundPolicy, req: &Request<'_>) -> Decision {
    if let Some(r) = policy
        .authorization
        .iter()
        .find(|r| r.action == Action::Deny && rule_matches(r, req))
    {
        return Decision {
            allowed: false,
            rule: r.name.clone(),
        };
    }
    let mut allows = policy
        .authorization
        .iter()
        .filter(|r| r.action == Action::Allow)
        .peekable();
    if allows.peek().is_none() {
        return Decision {
            allowed: true,
            rule: "default-allow".into(),
        };
    }
    match allows.find(|r| rule_matches(r, req)) {
        Some(r) => Decision {
            allowed: true,
            rule: r.name.clone(),
        },
        None => Decision {
            allowed: false,
            rule: "no-allow-rule-matched".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthorizationRule;

    fn rule(
        name: &str,
        action: Action,
        sources: &[&str],
        methods: &[&str],
        paths: &[&str],
    ) -> AuthorizationRule {
        AuthorizationRule {
            name: name.into(),
            action,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// DENY wins, ALLOW rules restrict, plaintext matches only source-less rules.
    #[test]
    fn deny_then_allow() {
        let p = InboundPolicy {
            authorization: vec![
                rule("no-admin", Action::Deny, &[], &[], &["/admin"]),
                rule(
                    "frontend",
                    Action::Allow,
                    &["spiffe://td/ns/web/*"],
                    &["GET"],
                    &["/api"],
                ),
            ],
        };
        let web = Some("spiffe://td/ns/web/sa/front");
        let ok = |s, m, path| {
            authorize(
                &p,
                &Request {
                    source: s,
                    method: Some(m),
                    path: Some(path),
                },
            )
            .allowed
        };
        assert!(ok(web, "GET", "/api/items"));
        assert!(!ok(web, "POST", "/api/items"));
        assert!(!ok(web, "GET", "/admin/x"));
        assert!(!ok(web, "GET", "/apix"));
        assert!(!ok(Some("spiffe://td/ns/other/sa/x"), "GET", "/api"));
        assert!(inspects_http(&p));
        assert!(!inspects_http(&InboundPolicy {
            authorization: vec![rule("peers", Action::Allow, &["*"], &[], &[])],
        }));
        assert!(!ok(None, "GET", "/api"));
        let tcp = authorize(
            &p,
            &Request {
                source: web,
                method: None,
                path: None,
            },
        );
        assert!(!tcp.allowed, "{tcp:?}");
        assert!(
            authorize(
                &InboundPolicy::default(),
                &Request {
                    source: None,
                    method: None,
                    path: None
                }
            )
            .allowed
        );
    }
}
