//! OCI image assembly, registry push/pull, cosign-compatible signatures and attestations, verification.
//!
//! Part of the `distro-images` crate; see the repository README for how it fits the release flow.
#![forbid(unsafe_code)]
