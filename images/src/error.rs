//! Errors of the image library; each names the file, reference or digest involved and says what
//! to do next.

use std::path::PathBuf;

/// Everything that can go wrong assembling, moving, signing or verifying an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An atomic write was refused (the destination is a device, FIFO or directory) or failed.
    #[error(transparent)]
    Write(#[from] distro_hostio::WriteError),
    /// A subprocess (apt, dpkg) could not be started or failed; the message says why it ran,
    /// shows the command, its status and the end of its stderr.
    #[error(transparent)]
    Command(Box<distro_hostio::CmdError>),
    /// A JSON document could not be parsed.
    #[error("{what} is not valid JSON: {source}")]
    Json {
        /// Which document (file path or blob digest).
        what: String,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// A document parsed but does not have the expected shape or content.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which document.
        what: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Content does not hash to the digest it is stored or referenced under.
    #[error("{what}: content has digest {actual} but is referenced as {expected}; the store was modified or corrupted in transit")]
    DigestMismatch {
        /// Which blob or manifest.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// A manifest, tag or blob is not in the store.
    #[error("{what} not found in {store}")]
    NotFound {
        /// What was looked for.
        what: String,
        /// The layout, archive or registry repository.
        store: String,
    },
    /// An image reference could not be parsed.
    #[error("invalid image reference `{reference}`: {reason} (use REGISTRY/REPO:TAG, oci:DIR[:TAG] or oci-archive:FILE[:TAG])")]
    Reference {
        /// The reference as given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The registry refused or failed a request.
    #[error("registry {registry}: {operation}: {message}")]
    Registry {
        /// Registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// The registry's or transport's error.
        message: String,
    },
    /// A key could not be generated, read or used.
    #[error("key {what}: {reason}")]
    Key {
        /// The key file or role.
        what: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The crypto module is not in FIPS mode.
    #[error(
        "the AWS-LC module is not in FIPS mode ({0}); rebuild with the `fips` feature of aws-lc-rs"
    )]
    NotFips(String),
    /// An option was refused for safety.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A document with invalid content.
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A JSON parse error.
    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            what: what.into(),
            source,
        }
    }
}

impl From<distro_hostio::CmdError> for Error {
    fn from(e: distro_hostio::CmdError) -> Self {
        Error::Command(Box::new(e))
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
