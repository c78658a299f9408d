//! One module per subcommand; each parses its arguments and calls one library entry point.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use distro_patches::advisory::AdvisoryDb;
use distro_patches::snapshot::Snapshot;

use crate::output::Format;

pub mod advisories;
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
pub mod record;
pub mod release;
pub mod sbom;
pub mod sign;
pub mod verify;

/// What every subcommand gets: the global options.
pub struct Context {
    /// `--config` (or `DISTRO_CONFIG`), else the definition found from the working directory
    /// (see [`find_config`]); when none was found, where it was first looked for.
    pub config_path: PathBuf,
    /// Why no definition was found, when `--config` was absent and the search found nothing.
    config_missing: Option<String>,
    /// `--format`.
    pub format: Format,
    /// `--quiet`.
    pub quiet: bool,
}

/// The built-in distribution definition's place in a checkout of this repository.
pub const BUILTIN_CONFIG: &str = "distro/distro.toml";

/// Finds the distribution definition when `--config` is absent: `distro.toml` in `cwd`, else
/// the built-in `distro/distro.toml` of the nearest directory at or above `cwd` that has one
/// (the checkout the user is in). Never a path of the machine `distro` was compiled on.
pub fn find_config(cwd: &Path) -> Result<PathBuf, String> {
    let here = cwd.join("distro.toml");
    if here.is_file() {
        return Ok(here);
    }
    if let Some(found) = cwd
        .ancestors()
        .map(|d| d.join(BUILTIN_CONFIG))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    Err(format!(
        "no distribution definition: there is no distro.toml in {} and no {BUILTIN_CONFIG} in it or any directory above it\n  help: run distro inside a checkout of the repository (its {BUILTIN_CONFIG} is the built-in distribution), or pass --config PATH (or set DISTRO_CONFIG) to a distro.toml",
        cwd.display()
    ))
}

/// Where the advisory database of a report comes from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOrigin {
    /// `--advisory-db`.
    Flag,
    /// `[advisories] db` of distro.toml.
    Config,
    /// The snapshot the repository ships (`patches/advisory-db`).
    Vendored,
}

impl DbOrigin {
    fn describe(self) -> &'static str {
        match self {
            DbOrigin::Flag => "given with --advisory-db",
            DbOrigin::Config => "named by [advisories] db in distro.toml",
            DbOrigin::Vendored => "the snapshot the repository ships",
        }
    }
}

impl Context {
    /// Global options; without `--config` the definition is looked for from the working
    /// directory ([`find_config`]).
    pub fn new(config: Option<PathBuf>, format: Format, quiet: bool) -> Self {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let (config_path, config_missing) = match config {
            Some(p) => (p, None),
            None => match find_config(&cwd) {
                Ok(p) => (p, None),
                Err(why) => (cwd.join("distro.toml"), Some(why)),
            },
        };
        Context {
            config_path,
            config_missing,
            format,
            quiet,
        }
    }

    /// Loads and validates the distribution definition.
    pub fn distribution(&self) -> anyhow::Result<distro_config::Distribution> {
        if let Some(why) = &self.config_missing {
            anyhow::bail!("{why}");
        }
        distro_config::load(&self.config_path).with_context(|| {
            format!(
                "loading distribution definition {}",
                self.config_path.display()
            )
        })
    }

    /// The definition when there is one: `None` only when `--config` was absent and none was
    /// found; a definition that was found but does not load is an error.
    pub fn distribution_if_any(&self) -> anyhow::Result<Option<distro_config::Distribution>> {
        if self.config_missing.is_some() {
            return Ok(None);
        }
        self.distribution().map(Some)
    }

    /// The advisory database to use: `--advisory-db`, else distro.toml's `[advisories] db`,
    /// else the snapshot the repository ships.
    pub fn advisory_db_path(
        &self,
        explicit: Option<&Path>,
        dist: Option<&distro_config::Distribution>,
    ) -> (PathBuf, DbOrigin) {
        if let Some(p) = explicit {
            return (p.to_path_buf(), DbOrigin::Flag);
        }
        if let Some(p) = dist.and_then(|d| d.advisories.db.clone()) {
            return (p, DbOrigin::Config);
        }
        let anchor = if self.config_missing.is_some() {
            std::env::current_dir()
                .unwrap_or_else(|_| PathBuf::from("."))
                .join("distro.toml")
        } else {
            self.config_path.clone()
        };
        (
            distro_patches::default_advisory_db(&anchor),
            DbOrigin::Vendored,
        )
    }

    /// Loads the advisory database (see [`Context::advisory_db_path`]) and says on stderr
    /// which snapshot it is, warning with its date when it is older than the configured age.
    pub fn advisory_db(
        &self,
        explicit: Option<&Path>,
        dist: Option<&distro_config::Distribution>,
    ) -> anyhow::Result<(AdvisoryDb, Snapshot)> {
        let (path, origin) = self.advisory_db_path(explicit, dist);
        // Shown in every report: without the `..` of a path relative to distro.toml.
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        if !path.join("crates").is_dir() {
            anyhow::bail!(
                "no advisory database at {} ({}): it has no crates/ folder\n  help: {}",
                path.display(),
                origin.describe(),
                DB_HELP
            );
        }
        let db = AdvisoryDb::load(&path).map_err(|e| {
            anyhow::anyhow!(
                "the advisory database at {} ({}) does not parse: {e}\n  help: replace it with a good copy: `distro advisories update` (or `--from PATH|URL`); {}",
                path.display(),
                origin.describe(),
                DB_HELP
            )
        })?;
        let snapshot = Snapshot::of(&db, today(), max_age(dist));
        self.status(&format!(
            "advisory database: {}, {} advisories, {}",
            snapshot.label(),
            snapshot.advisories,
            path.display()
        ));
        if let Some(w) = snapshot.warning() {
            self.warn(&w);
        }
        Ok((db, snapshot))
    }

    /// The default output directory: `out/` beside the repository holding the definition.
    pub fn default_out(&self) -> PathBuf {
        let dir = self.config_path.parent().unwrap_or(Path::new("."));
        dir.join("..").join("out")
    }

    /// Points every line with a remote source at its mirror under `<out>/sources` (cloned or
    /// fetched as needed), saying so on stderr for each.
    pub fn localise_sources(&self, dist: &mut distro_config::Distribution) -> anyhow::Result<()> {
        let cache = self.default_out().join("sources");
        for m in distro_patches::source::localise(dist, &cache)? {
            self.status(&format!(
                "source {} {} ({})",
                m.url,
                m.action,
                m.mirror.display()
            ));
        }
        Ok(())
    }

    /// Prints a warning on stderr unless `--quiet`.
    pub fn warn(&self, text: &str) {
        crate::output::status(self.quiet, &format!("warning: {text}"));
    }

    /// Prints a status line on stderr unless `--quiet`.
    pub fn status(&self, text: &str) {
        crate::output::status(self.quiet, text);
    }
}

/// How to get an advisory database, for error messages.
pub const DB_HELP: &str = "the repository ships one at patches/advisory-db (run distro inside a checkout); elsewhere set `[advisories] db = \"PATH\"` in distro.toml or pass --advisory-db PATH to a copy of rustsec/advisory-db, or fetch one with `distro advisories update --from PATH|URL`";

/// Today, UTC: the day snapshot ages are counted to.
pub fn today() -> distro_patches::chrono::NaiveDate {
    distro_patches::chrono::Utc::now().date_naive()
}

/// The configured staleness limit (distro.toml `[advisories] max_age_days`).
pub fn max_age(dist: Option<&distro_config::Distribution>) -> u32 {
    dist.map_or(distro_config::Advisories::DEFAULT_MAX_AGE_DAYS, |d| {
        d.advisories.max_age_days
    })
}

/// Hex sha256 of a file ([`distro_hostio::sha256_file`]), the error naming the file.
pub fn sha256_of(path: &Path) -> anyhow::Result<String> {
    distro_hostio::sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}

/// The line `version` names (`--line`), or the newest when none is given; an unknown one is an
/// error naming the definition and listing its lines.
pub fn select_line<'d>(
    dist: &'d distro_config::Distribution,
    version: Option<&str>,
) -> anyhow::Result<&'d distro_config::Line> {
    match version {
        Some(v) => dist.line(v).with_context(|| {
            let known: Vec<&str> = dist.lines.iter().map(|l| l.version.as_str()).collect();
            format!(
                "no line `{v}` in {}; lines: {}",
                dist.path.display(),
                known.join(", ")
            )
        }),
        None => dist
            .newest_line()
            .with_context(|| format!("{} defines no release lines", dist.path.display())),
    }
}
