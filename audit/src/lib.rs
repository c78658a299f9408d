//! `distro audit`: the compliance auditor's report of a released image.
//!
//! The auditor's question is "what exactly is in this image, and can I trust the answer?". The
//! report answers from what the registry (or an OCI layout, archive or release directory,
//! offline) holds, and only after verifying it: [`collect`] runs `distro_images::verify` with the
//! auditor's key and refuses input that does not verify, unless told to report anyway (the
//! report then says so first). From the attestations whose signatures verified it gathers
//! every SBOM component with licence and purl, the FIPS module with its CMVP certificate and the
//! binary's evidence, the VEX status of every advisory, the provenance (source commit, patches,
//! toolchain) and conformance results, into one typed [`report::AuditReport`]. [`render`]
//! writes that value as JSON, and as HTML and Markdown through templates over the same value,
//! so the formats cannot disagree.
#![forbid(unsafe_code)]

pub mod collect;
pub mod error;
pub mod render;
pub mod report;

pub use collect::{audit, Options, Target};
pub use error::AuditError;
pub use render::{render, ReportFormat};
pub use report::AuditReport;
