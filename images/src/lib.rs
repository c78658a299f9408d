//! OCI image assembly, registry push/pull, cosign-compatible signatures and attestations, verification.
//!
//! Part of the `distro-images` crate; see the repository README for how it fits the release flow.
//! The pieces, in the order a release uses them:
//!
//! - [`base`]: the runnable base from the exact Debian packages the binaries need (or
//!   [`base_oci`]: another image named in distro.toml);
//! - [`assemble`]: a component's image from its binary on that base, deterministic, as an OCI layout;
//! - [`hardening`]: the Iron Bank `hardening_manifest.yaml` beside it;
//! - [`store`] and [`registry`]: where images live (layout, archive, registry) behind one trait;
//! - [`transfer`]: push (copy with signatures and attestations) and verified pull;
//! - [`keys`], [`cosign`]: ECDSA P-256 keys on aws-lc-rs (FIPS), cosign-style signatures and
//!   DSSE/in-toto attestations; [`testresult`]: the conformance suite's results as the in-toto
//!   test-result predicate;
//! - [`verify`]: the operator's check of signature, attestations and policy.
#![forbid(unsafe_code)]

pub mod assemble;
pub mod base;
pub mod base_oci;
pub mod cosign;
pub mod digest;
pub mod error;
pub mod hardening;
pub mod keys;
pub mod oci;
pub mod reference;
pub mod registry;
pub mod store;
pub mod testresult;
pub mod transfer;
pub mod verify;

pub use error::{Error, Result};
pub use reference::ImageRef;

/// The project's public URL (workspace `repository`), used where a build came from a local path.
pub const PROJECT_URL: &str = env!("CARGO_PKG_REPOSITORY");
