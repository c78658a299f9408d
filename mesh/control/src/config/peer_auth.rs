//! `[[peer_authentication]]`: the mTLS mode per workload pattern (later entries win).

use mesh_core::api::MtlsMode;

use super::docs::{valid_pattern, Ctx, PeerAuthDoc};

/// Checks one entry; returns `(workload pattern, mode)`.
pub(super) fn parse(cx: &mut Ctx<'_>, pa: PeerAuthDoc, trust_domain: &str) -> (String, MtlsMode) {
    if let Err(m) = valid_pattern(pa.workload.get_ref(), trust_domain) {
        cx.err(pa.workload.span(), "peer_authentication.workload", m);
    }
    (pa.workload.into_inner(), pa.mtls_mode)
}
