//! One module per subcommand; each parses its arguments and calls one library entry point.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::output::Format;

pub mod attest;
pub mod audit;
pub mod build;
pub mod conformance;
pub mod image;
pub mod keygen;
pub mod matrix;
pub mod patches;
pub mod policy;
pub mod pull;
pub mod push;
pub mod release;
pub mod sbom;
pub mod sign;
pub mod verify;

/// What every subcommand gets: the global options.
pub struct Context {
    /// `--config`, or the built-in definition.
    pub config_path: PathBuf,
    /// `--format`.
    pub format: Format,
    /// `--quiet`.
    pub quiet: bool,
}

/// The built-in distribution definition, beside this crate's manifest.
pub const BUILTIN_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/distro.toml");

impl Context {
    /// Global options, with the built-in definition when `--config` is absent.
    pub fn new(config: Option<PathBuf>, format: Format, quiet: bool) -> Self {
        Context {
            config_path: config.unwrap_or_else(|| PathBuf::from(BUILTIN_CONFIG)),
            format,
            quiet,
        }
    }

    /// Loads and validates the distribution definition.
    pub fn distribution(&self) -> anyhow::Result<distro_config::Distribution> {
        distro_config::load(&self.config_path).with_context(|| {
            format!(
                "loading distribution definition {}",
                self.config_path.display()
            )
        })
    }

    /// The default output directory: `out/` beside the repository holding the definition.
    pub fn default_out(&self) -> PathBuf {
        let dir = self.config_path.parent().unwrap_or(Path::new("."));
        dir.join("..").join("out")
    }

    /// Prints a status line on stderr unless `--quiet`.
    pub fn status(&self, text: &str) {
        crate::output::status(self.quiet, text);
    }
}
