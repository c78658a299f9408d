//! The validated distribution definition.

use std::path::PathBuf;

use chrono::{Months, NaiveDate};

/// A validated distribution definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// The file it was read from.
    pub path: PathBuf,
    /// Distribution name (used in image names and reports).
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Who ships it (the `vendor` label of images).
    pub vendor: String,
    /// Support policy.
    pub support: Support,
    /// FIPS policy.
    pub fips: FipsPolicy,
    /// What the images are built on.
    pub image: ImageSettings,
    /// Which RustSec advisory database the reports use, and when it counts as stale.
    pub advisories: Advisories,
    /// Components, in file order.
    pub components: Vec<Component>,
    /// Release lines, in file order.
    pub lines: Vec<Line>,
}

/// How long lines are supported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// Months of support per minor line, counted from its release date.
    pub months: u32,
    /// A line this many days or fewer from its end is reported as ending soon.
    pub warn_days: u32,
}

/// What the distribution demands of its FIPS module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FipsPolicy {
    /// Only a module line with a CMVP certificate is acceptable; an in-process or unvalidated
    /// module fails the build.
    pub require_validated_module: bool,
}

/// What the images are built on (`[image]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageSettings {
    /// Another base image: `oci:DIR[:TAG]` (relative to distro.toml), `oci-archive:FILE[:TAG]`
    /// or `REGISTRY/REPO@sha256:...`. `None`: the Debian packages the binaries need.
    pub base: Option<String>,
    /// The base image's CycloneDX SBOM, when it is not beside its layout.
    pub base_sbom: Option<PathBuf>,
}

/// The `[advisories]` table: the RustSec database snapshot the reports and releases read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisories {
    /// `db`, resolved against the directory of distro.toml; `None` means the snapshot the
    /// repository ships (`patches/advisory-db`).
    pub db: Option<PathBuf>,
    /// A snapshot older than this many days is reported as stale (`max_age_days`, default 90).
    pub max_age_days: u32,
}

impl Advisories {
    /// `max_age_days` when the file does not say.
    pub const DEFAULT_MAX_AGE_DAYS: u32 = 90;
}

/// One component the distribution builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Component name (unique).
    pub name: String,
    /// Cargo package that builds it.
    pub package: String,
    /// Binary target inside that package.
    pub binary: String,
    /// Cargo features to enable (default features are off, so this is the whole set).
    pub features: Vec<String>,
    /// The binary must carry FIPS evidence or the build fails.
    pub fips_required: bool,
    /// One-line description (image label).
    pub description: String,
}

/// A release line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `MAJOR.MINOR`.
    pub version: String,
    /// Parsed version (patch 0).
    pub semver: semver::Version,
    /// The day the line was first released.
    pub release_date: NaiveDate,
    /// End-of-life override; otherwise release date + support months.
    pub eol_override: Option<NaiveDate>,
    /// Latest patch release of the line, e.g. `0.1.3`.
    pub latest: Option<String>,
    /// Where its source is.
    pub source: Source,
    /// Patch queue directory for this line (holding a quilt `series`), if any.
    pub patches: Option<PathBuf>,
}

impl Line {
    /// Last day of support: the override, or the release date plus `months`.
    pub fn eol(&self, support: &Support) -> NaiveDate {
        self.eol_override.unwrap_or_else(|| {
            self.release_date
                .checked_add_months(Months::new(support.months))
                .unwrap_or(NaiveDate::MAX)
        })
    }
}

/// A git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Repository: a URL, or a path resolved against the directory of distro.toml.
    pub git: String,
    /// Branch, tag or commit.
    pub git_ref: String,
}

impl Distribution {
    /// The line with this version.
    pub fn line(&self, version: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.version == version)
    }

    /// The newest line by version.
    pub fn newest_line(&self) -> Option<&Line> {
        self.lines.iter().max_by(|a, b| a.semver.cmp(&b.semver))
    }

    /// The component with this name.
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }
}
