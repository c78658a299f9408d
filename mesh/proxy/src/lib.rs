//! `mesh-proxy`, the FIPS sidecar of the mesh, as a library the binary wires up.
//!
//! - [`config`]: the local file and the mesh configuration (the contract types of
//!   [`mesh_core::api`]).
//! - [`tls`]: identity, trust bundle and TLS configurations, swappable at run time (rotation).
//! - [`inbound`]: mTLS termination (STRICT / PERMISSIVE with ClientHello sniffing),
//!   authorization by SPIFFE ID, method and path, forwarding to the local application.
//! - [`outbound`]: explicit and transparent listeners, routing, weighted splits, retries with a
//!   budget, timeouts, outlier ejection, mTLS origination that checks the server's SPIFFE ID.
//! - [`control`]: bootstrap, renewal and configuration long-poll against `mesh-control`, and
//!   failover across its replicas.
//! - [`admin`] and [`metrics`]: `/ready`, `/config`, `/certs`, `/fips`, `/metrics`.
//! - [`path`]: request-path normalisation, applied before any route or rule matches.
//! - [`state`]: the shared state they all read.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod control;
pub mod inbound;
pub mod io;
pub mod metrics;
pub mod outbound;
/// Request-path normalisation lives in mesh-core: the control plane checks rule paths with it.
pub use mesh_core::path;
pub mod policy;
pub mod state;
pub mod tls;

pub use state::Proxy;
