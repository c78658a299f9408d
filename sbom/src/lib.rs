//! CycloneDX and SPDX SBOMs, embedded dependency lists, and cargo-deny policy.
//!
//! Part of the `distro-sbom` crate; see the repository README for how it fits the release flow.
#![forbid(unsafe_code)]
