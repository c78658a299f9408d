//! The documents as written (serde models with source spans), the context that turns a span
//! into a file and line, and checks shared by several document kinds.

use std::collections::BTreeMap;

use mesh_core::api::{Action, MtlsMode, Protocol};
use mesh_core::identity::SpiffeId;
use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDoc {
    #[serde(default)]
    pub(super) tls: Option<Spanned<TlsDoc>>,
    #[serde(default)]
    pub(super) peer_authentication: Vec<PeerAuthDoc>,
    #[serde(default)]
    pub(super) services: Vec<ServiceDoc>,
    #[serde(default)]
    pub(super) routes: Vec<RouteDoc>,
    #[serde(default)]
    pub(super) authorization: Vec<AuthzDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsDoc {
    #[serde(default)]
    pub(super) min_version: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) cipher_suites: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) kx_groups: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerAuthDoc {
    pub(super) workload: Spanned<String>,
    pub(super) mtls_mode: MtlsMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceDoc {
    pub(super) name: Spanned<String>,
    pub(super) protocol: Protocol,
    #[serde(default)]
    pub(super) allowed_clients: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) endpoints: Vec<EndpointDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointDoc {
    pub(super) address: Spanned<String>,
    pub(super) identity: Spanned<String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteDoc {
    pub(super) service: Spanned<String>,
    pub(super) name: Spanned<String>,
    #[serde(rename = "match", default)]
    pub(super) match_: Option<Spanned<MatchDoc>>,
    pub(super) destinations: Spanned<Vec<Spanned<DestDoc>>>,
    #[serde(default)]
    pub(super) retries: Option<Spanned<RetryDoc>>,
    #[serde(default)]
    pub(super) timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchDoc {
    #[serde(default)]
    pub(super) path_prefix: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DestDoc {
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    pub(super) weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryDoc {
    pub(super) attempts: u32,
    pub(super) per_try_timeout_ms: u64,
    #[serde(default = "default_budget")]
    pub(super) budget_percent: u32,
}

fn default_budget() -> u32 {
    20
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthzDoc {
    pub(super) workload: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) action: Action,
    #[serde(default)]
    pub(super) sources: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) paths: Vec<Spanned<String>>,
}

/// Longest route timeout and per-try timeout (1 hour): a duration the proxy can add to a clock
/// without overflowing, and longer than any request a mesh should hold open.
pub(super) const MAX_ROUTE_TIMEOUT_MS: u64 = 3_600_000;

pub(super) const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    pub(super) fn line(&self, offset: usize) -> usize {
        self.text
            .get(..offset)
            .map(|s| s.matches('\n').count() + 1)
            .unwrap_or(1)
    }
    pub(super) fn err(
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

pub(super) fn valid_pattern(p: &str, trust_domain: &str) -> Result<(), String> {
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

/// Parses each source as a [`FileDoc`]; a source that is not valid TOML of that shape adds one
/// error (with its line) and is left out.
pub(super) fn read_all<'a>(
    sources: &'a [(String, String)],
    errors: &mut Vec<ConfigError>,
) -> Vec<(&'a str, &'a str, FileDoc)> {
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
    docs
}
