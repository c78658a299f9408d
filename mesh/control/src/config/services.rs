//! `[[services]]` and their endpoints: names unique across files, IP endpoints with identities
//! in this trust domain, and who receives the service.

use std::collections::BTreeMap;

use mesh_core::api::{Endpoint, Service};
use mesh_core::identity::SpiffeId;
use toml::Spanned;

use super::docs::{valid_pattern, Ctx, ServiceDoc};
use super::ServiceEntry;

/// Checks one service; `names` maps each service name seen so far to its `(file, line)`.
pub(super) fn parse(
    cx: &mut Ctx<'_>,
    s: ServiceDoc,
    trust_domain: &str,
    names: &mut BTreeMap<String, (String, usize)>,
) -> ServiceEntry {
    let file = cx.file;
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
    if let Some((f, l)) = names.get(&name) {
        cx.err(
            s.name.span(),
            "services.name",
            format!("service {name:?} is already defined at {f}:{l}"),
        );
    }
    names.insert(name.clone(), (file.to_string(), line));
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
            cx.err(
                ep.address.span(),
                "services.endpoints.address",
                format!(
                    "{:?} is not host:port with an IP address (e.g. 127.0.0.1:9080 or [::1]:9080)",
                    ep.address.get_ref()
                ),
            );
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
    ServiceEntry {
        service: Service {
            name,
            protocol: s.protocol,
            endpoints,
        },
        allowed_clients: allowed,
    }
}
