//! `[[authorization]]`: inbound rules per workload pattern (sources, methods, paths).

use mesh_core::api::AuthorizationRule;
use toml::Spanned;

use super::docs::{valid_pattern, AuthzDoc, Ctx, METHODS};

/// Checks one rule; returns `(workload pattern, rule)`.
pub(super) fn parse(
    cx: &mut Ctx<'_>,
    a: AuthzDoc,
    trust_domain: &str,
) -> (String, AuthorizationRule) {
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
        } else if let Err(m) = mesh_core::path::check_rule_path(p.get_ref()) {
            // The proxy refuses such a rule too: refused here, the file and line are named.
            cx.err(p.span(), "authorization.paths", m);
        }
    }
    (
        a.workload.into_inner(),
        AuthorizationRule {
            name: a.name.into_inner(),
            action: a.action,
            sources: a.sources.into_iter().map(Spanned::into_inner).collect(),
            methods: a.methods.into_iter().map(Spanned::into_inner).collect(),
            paths: a.paths.into_iter().map(Spanned::into_inner).collect(),
        },
    )
}
