//! The one error type of this crate; every variant names what it was working on.

use std::path::PathBuf;

/// What can go wrong while computing, writing, reading or checking an SBOM.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A subprocess could not be started, failed or ran out of time.
    #[error(transparent)]
    Command(Box<distro_hostio::CmdError>),
    /// An atomic write was refused or failed.
    #[error(transparent)]
    Write(#[from] distro_hostio::WriteError),
    /// Output of a tool or a file did not have the expected shape.
    #[error("cannot parse {what} from {origin}: {detail}")]
    Parse {
        /// What was being parsed (`cargo metadata output`, `Cargo.lock`, ...).
        what: &'static str,
        /// Where it came from (a path or a command).
        origin: String,
        /// What was wrong.
        detail: String,
    },
    /// The requested package or binary does not exist in the workspace.
    #[error("{0}")]
    NotFound(String),
    /// The binary has no `.dep-v0` section.
    #[error("{path} has no `.dep-v0` section (cargo-auditable dependency list)\nhelp: it was not built by `distro build`; embed one with `distro sbom --embed` or build with cargo-auditable")]
    NoDependencyList {
        /// The binary.
        path: PathBuf,
    },
    /// The embedded dependency list is malformed.
    #[error(
        "the `.dep-v0` section of {path} is not a valid cargo-auditable dependency list: {detail}"
    )]
    BadDependencyList {
        /// The binary.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A generated document does not validate against its official schema; nothing was written.
    #[error("generated {format} document for {subject} does not validate against {schema}:\n{errors}\nhelp: this is a bug in distro-sbom; report it with the inputs")]
    Invalid {
        /// `CycloneDX 1.6`, `SPDX 2.3`.
        format: &'static str,
        /// The binary or image it describes.
        subject: String,
        /// Which schema.
        schema: &'static str,
        /// The validation errors, one per line with their JSON pointer.
        errors: String,
    },
    /// The advisory database or policy configuration could not be prepared.
    #[error("{0}")]
    Policy(String),
}

impl SbomError {
    /// An I/O error on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SbomError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<distro_hostio::CmdError> for SbomError {
    fn from(e: distro_hostio::CmdError) -> Self {
        SbomError::Command(Box::new(e))
    }
}
