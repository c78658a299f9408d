//! `[[routes]]`: checked last, since they refer to services that may be defined in any file:
//! an http service, unique names, destinations that select endpoints, bounded retries and
//! timeouts.

use std::collections::BTreeSet;

use mesh_core::api::{Protocol, RetryPolicy, Route, RouteMatch, WeightedDestination};
use toml::Spanned;

use super::docs::{Ctx, RouteDoc, MAX_ROUTE_TIMEOUT_MS, METHODS};
use super::ServiceEntry;

/// Checks one route against the merged `services`; `names` holds the `(service, route)` pairs
/// seen so far.
pub(super) fn parse(
    cx: &mut Ctx<'_>,
    r: RouteDoc,
    services: &[ServiceEntry],
    names: &mut BTreeSet<(String, String)>,
) -> Route {
    let svc = services
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
    if !names.insert((r.service.get_ref().clone(), r.name.get_ref().clone())) {
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
            } else if let Err(msg) = mesh_core::path::check_rule_path(p) {
                cx.err(span.clone(), "routes.match.path_prefix", msg);
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
    Route {
        service: r.service.into_inner(),
        name: r.name.into_inner(),
        match_: m.unwrap_or_default(),
        destinations: out,
        retries,
        timeout_ms: r.timeout_ms.map(Spanned::into_inner),
    }
}
