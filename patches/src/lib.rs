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
pub mod dep3;
mod error;
pub mod evaluate;
pub mod flows;
pub mod index;
pub mod matrix;
pub mod remediate;
pub mod series;
pub mod snapshot;
pub mod source;
pub mod vex;

pub use apply::{apply_series, read_queue, AppliedPatch, QueuedPatch};
pub use error::PatchError;

/// The chrono the public API uses (dates of support windows), for callers without their own.
pub use chrono;

/// Where the repository keeps its RustSec advisory database snapshot, relative to its root.
pub const VENDORED_ADVISORY_DB: &str = "patches/advisory-db";

/// The advisory database a checkout ships: `patches/advisory-db` of the nearest directory above
/// `config` (distro.toml) that has one. When none has, the path where the built-in layout would
/// keep it (`<config dir>/../patches/advisory-db`), so the caller's error names it.
/// `distro.toml`'s `[advisories] db` and `--advisory-db` take precedence over this default.
pub fn default_advisory_db(config: &std::path::Path) -> std::path::PathBuf {
    let dir = config.parent().unwrap_or(std::path::Path::new("."));
    let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    absolute
        .ancestors()
        .map(|a| a.join(VENDORED_ADVISORY_DB))
        .find(|db| db.join("crates").is_dir())
        .unwrap_or_else(|| dir.join("..").join(VENDORED_ADVISORY_DB))
}
