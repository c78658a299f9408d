//! The `[tls]` table: one per configuration, FIPS-approved suites and groups only.

use mesh_core::api::TlsPolicy;
use toml::Spanned;

use super::docs::{Ctx, TlsDoc};

/// Checks the `[tls]` table of `cx.file` into `policy`; `seen` names the file that defined one
/// already, if any.
pub(super) fn parse(
    cx: &mut Ctx<'_>,
    tls: Spanned<TlsDoc>,
    seen: &mut Option<String>,
    policy: &mut TlsPolicy,
) {
    let file = cx.file;
    if let Some(prev) = seen {
        cx.err(
            tls.span(),
            "tls",
            format!("a [tls] table is already defined in {prev}; keep one"),
        );
    }
    *seen = Some(file.to_string());
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
        policy.min_version = v.into_inner();
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
        policy.cipher_suites = out;
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
        policy.kx_groups = out;
    }
    if policy.min_version == "TLSv1_3"
        && !policy.cipher_suites.iter().any(|s| s.starts_with("TLS13_"))
    {
        cx.err(
            0..0,
            "tls.cipher_suites",
            "min_version is TLSv1_3 but no TLS 1.3 suite is allowed",
        );
    }
}
