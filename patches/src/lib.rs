//! Support matrix, DEP-3 patch queues, backports, advisory remediation and VEX.
//!
//! Long-term support is carried by this crate. For each release line of a distribution
//! (`distro_config::Line`), it tells how long the line is supported ([`matrix`]), keeps a
//! quilt-style queue of DEP-3-annotated patches ([`dep3`], [`series`]) and applies it to the
//! line's source to produce the tree `distro build` builds ([`apply_series`]), tries an upstream
//! fix on every supported line in its own worktree ([`backport`]), matches the line's Cargo.lock
//! against a local RustSec database ([`advisory`]) and bumps affected crates to the lowest
//! compatible fixed version ([`remediate`]), and states per line which advisories are fixed,
//! not affecting or still open as OpenVEX ([`vex`]) — from one evaluation of each (line,
//! advisory) that the matrix and the scan report too ([`evaluate`]).
//!
//! Everything that touches git or cargo runs their CLIs as subprocesses; each says why it runs
//! and fails with the command, its status and its stderr tail.
#![forbid(unsafe_code)]

pub mod advisory;
mod apply;
pub mod backport;
mod cmd;
pub mod dep3;
mod error;
pub mod evaluate;
pub mod flows;
mod fsutil;
pub mod index;
pub mod matrix;
pub mod remediate;
pub mod series;
pub mod source;
pub mod vex;

pub use apply::{apply_series, read_queue, AppliedPatch, QueuedPatch};
pub use error::PatchError;
pub use fsutil::{sha256_hex, write_atomic};

/// The chrono the public API uses (dates of support windows), for callers without their own.
pub use chrono;

/// The advisory database beside a checkout: `<repository>/../shared/advisory-db`, where the
/// repository is the parent of the directory holding `config` (distro.toml).
pub fn default_advisory_db(config: &std::path::Path) -> std::path::PathBuf {
    let dir = config.parent().unwrap_or(std::path::Path::new("."));
    dir.join("..").join("..").join("shared").join("advisory-db")
}
