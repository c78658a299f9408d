//! Errors of the build stage; each names what failed and what to do.

use std::path::PathBuf;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file or directory operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A subprocess could not be started, failed or ran out of time.
    #[error(transparent)]
    Command(Box<distro_hostio::CmdError>),
    /// An atomic write was refused or failed.
    #[error(transparent)]
    Write(#[from] distro_hostio::WriteError),
    /// The source's Cargo.lock could not be read.
    #[error("{}: {message}\n  help: {help}", path.display())]
    Lockfile {
        /// The lockfile.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
    /// The lockfile resolves a FIPS module the distribution's policy does not accept.
    #[error("{}: {message}\n  help: {help}", lockfile.display())]
    FipsPolicy {
        /// The lockfile.
        lockfile: PathBuf,
        /// What is wrong.
        message: String,
        /// Which versions would satisfy the policy.
        help: String,
    },
    /// A component that must be FIPS is not; the evidence file says why.
    #[error("component `{component}` is refused as a FIPS release:\n  - {}\n  evidence: {}", reasons.join("\n  - "), evidence.display())]
    NotFips {
        /// The component.
        component: String,
        /// Its evidence file.
        evidence: PathBuf,
        /// Every check that failed.
        reasons: Vec<String>,
    },
    /// A built binary could not be analysed.
    #[error("cannot analyse {}: {message}", path.display())]
    Binary {
        /// The binary.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The line's source could not be exported, or its patch queue did not apply.
    #[error("preparing the source tree ({}): {message}\n  help: when a patch is named above, fix or drop it (`distro patches apply --line <line>` reproduces this), then build again", queue.display())]
    Patch {
        /// The queue directory (or the repository, for a line without a queue).
        queue: PathBuf,
        /// What the patch engine said (names the patch and its series line).
        message: String,
    },
    /// The record of the patches applied to a reused source tree is missing or unreadable, so
    /// the provenance cannot say which patches the build carries.
    #[error("{}: {message}\n  help: remove {} and build again: the source is exported and patched afresh, and the record rewritten", path.display(), tree.display())]
    PatchRecord {
        /// The record file.
        path: PathBuf,
        /// The exported tree it belongs to.
        tree: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The source could not be resolved or exported.
    #[error("source {repository} at `{git_ref}`: {message}\n  help: {help}")]
    Source {
        /// Repository.
        repository: String,
        /// Ref.
        git_ref: String,
        /// What went wrong.
        message: String,
        /// What to do.
        help: String,
    },
}

impl From<distro_hostio::CmdError> for BuildError {
    fn from(e: distro_hostio::CmdError) -> Self {
        BuildError::Command(Box::new(e))
    }
}
