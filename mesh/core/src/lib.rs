//! The shared core of the mesh binaries.
//!
//! [`crypto`] is the only place a rustls `CryptoProvider` is made: AWS-LC in FIPS mode, cut down
//! to the FIPS-approved suites and groups. [`tls`] builds every TLS configuration the components
//! use from that provider, and [`fips`] lets a binary prove at run time what it links and
//! negotiates (the `fips-check` command and the admin `/fips` endpoint), and refuse to start when
//! it is not in FIPS mode. [`api`] is the control-plane ↔ proxy contract and [`identity`] holds
//! SPIFFE IDs and workload-side CSR generation. [`path`] is the request-path normal form every
//! route and authorization rule matches: the proxy normalises requests with it and the control
//! plane refuses rule paths not in that form.
#![deny(unsafe_code)]

#[cfg(not(any(feature = "fips", feature = "non-fips")))]
compile_error!(
    "mesh-core needs a crypto backend: enable feature `fips` (releases) or `non-fips` (tests)"
);

pub mod api;
pub mod crypto;
pub mod fips;
pub mod identity;
pub mod path;
pub mod tls;
