//! Errors that name the file, line and column, and say what to do.

use std::fmt;
use std::path::PathBuf;

/// Why a distribution definition could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read distribution definition {}: {message}\n  help: pass --config PATH to a readable distro.toml", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The file is not valid TOML, or a value has the wrong type or an unknown key.
    #[error("{location}: {message}\n  help: {help}")]
    Syntax {
        /// Where.
        location: Location,
        /// What the parser said.
        message: String,
        /// What to change.
        help: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{location}: {message}\n  help: {help}")]
    Invalid {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
        /// What to change.
        help: String,
    },
}

impl ConfigError {
    /// The position the error points at, when it has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { location, .. } | ConfigError::Invalid { location, .. } => {
                Some(location)
            }
        }
    }
}

/// A position in a file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Location {
    /// The location of byte offset `offset` in `text`.
    pub(crate) fn at(path: &std::path::Path, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before[nl + 1..].chars().count()
        }) + 1;
        Location {
            path: path.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}
