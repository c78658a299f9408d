//! Conformance suite: environment profiles, scenarios, JUnit reports.
//!
//! Part of the `distro-conformance` crate; see the repository README for how it fits the release flow.
#![forbid(unsafe_code)]
