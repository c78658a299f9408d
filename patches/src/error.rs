//! Errors of the patch engine: each names the file, line, patch or command that caused it and
//! says what to do next.

use std::path::PathBuf;

/// Why a patch-queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// A file or directory could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The queue directory has no `series` file.
    #[error("{}: no series file\n  help: create it with one patch file name per line (an empty file applies nothing)", path.display())]
    SeriesMissing {
        /// The expected series file.
        path: PathBuf,
    },
    /// A line of a `series` file is not usable.
    #[error("{}:{line}: {message}\n  help: {help}", path.display())]
    Series {
        /// The series file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
        /// What to change.
        help: String,
    },
    /// A patch header (DEP-3 field) is malformed where it matters.
    #[error("{}:{line}: {message}\n  help: {help}", path.display())]
    Header {
        /// The patch file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
        /// What to change.
        help: String,
    },
    /// A patch of a series does not apply to the tree.
    #[error("patch {} (series {}:{series_line}) does not apply to {}:\n{stderr}\n  help: refresh the patch against the line's source (`distro patches backport` re-derives it) or remove it from the series", patch.display(), series.display(), tree.display())]
    NotApplied {
        /// The patch file.
        patch: PathBuf,
        /// The series file naming it.
        series: PathBuf,
        /// Its 1-based line in the series.
        series_line: usize,
        /// The tree it was applied to.
        tree: PathBuf,
        /// What `git apply` said.
        stderr: String,
    },
    /// A subprocess could not be started, failed or ran out of time.
    #[error(transparent)]
    Command(Box<distro_hostio::CmdError>),
    /// An atomic write was refused or failed.
    #[error(transparent)]
    Write(#[from] distro_hostio::WriteError),
    /// An advisory file of the advisory database is malformed.
    #[error("{}: {message}\n  help: {help}", path.display())]
    Advisory {
        /// The advisory file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
    /// A Cargo.lock or Cargo.toml could not be understood.
    #[error("{}: {message}\n  help: {help}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
    /// A request that cannot be carried out as asked.
    #[error("{message}\n  help: {help}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
}

impl PatchError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        PatchError::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>, help: impl Into<String>) -> Self {
        PatchError::Invalid {
            message: message.into(),
            help: help.into(),
        }
    }
}

impl From<distro_hostio::CmdError> for PatchError {
    fn from(e: distro_hostio::CmdError) -> Self {
        PatchError::Command(Box::new(e))
    }
}
