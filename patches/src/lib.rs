//! Support matrix, DEP-3 patch queues, backports, advisory remediation and VEX.
//!
//! Part of the `distro-patches` crate; see the repository README for how it fits the release flow.
#![forbid(unsafe_code)]
