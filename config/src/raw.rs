//! The file as written, with source spans, and its validation into the model.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, Location};
use crate::model::{
    Advisories, Component, Distribution, FipsPolicy, ImageSettings, Line, Source, Support,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    distribution: RawDistribution,
    #[serde(default)]
    support: Option<RawSupport>,
    #[serde(default)]
    fips: Option<RawFips>,
    #[serde(default)]
    image: Option<RawImage>,
    advisories: Option<RawAdvisories>,
    #[serde(default, rename = "component")]
    components: Vec<Spanned<RawComponent>>,
    #[serde(default, rename = "line")]
    lines: Vec<Spanned<RawLine>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistribution {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    vendor: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupport {
    months: Spanned<i64>,
    #[serde(default)]
    warn_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFips {
    require_validated_module: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    #[serde(default)]
    base: Option<Spanned<String>>,
    #[serde(default)]
    base_sbom: Option<String>,
}

/// Whether `s` names an image pinned by digest or a local layout/archive.
fn pinned_base(s: &str) -> bool {
    if s.starts_with("oci:") || s.starts_with("oci-archive:") {
        return s.len() > s.find(':').map_or(0, |i| i + 1);
    }
    s.rsplit_once("@sha256:").is_some_and(|(repo, hex)| {
        repo.contains('/')
            && hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdvisories {
    #[serde(default)]
    db: Option<Spanned<String>>,
    #[serde(default)]
    max_age_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    name: Spanned<String>,
    package: Spanned<String>,
    #[serde(default)]
    binary: Option<Spanned<String>>,
    #[serde(default)]
    features: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    fips_required: bool,
    #[serde(default)]
    description: String,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    version: Spanned<String>,
    release_date: Spanned<DateInput>,
    #[serde(default)]
    eol: Option<Spanned<DateInput>>,
    #[serde(default)]
    latest: Option<Spanned<String>>,
    source: Spanned<RawSource>,
    #[serde(default)]
    patches: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    git: Spanned<String>,
    #[serde(rename = "ref")]
    git_ref: Spanned<String>,
}

/// A date written either as a TOML date (`2026-11-28`) or as a string (`"2026-11-28"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum DateInput {
    Toml(toml::value::Datetime),
    Text(String),
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn invalid<T>(
        &self,
        span: std::ops::Range<usize>,
        message: String,
        help: &str,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            location: Location::at(self.path, self.text, span.start),
            message,
            help: help.to_string(),
        })
    }

    fn date(&self, value: &Spanned<DateInput>, field: &str) -> Result<NaiveDate, ConfigError> {
        let text = match value.get_ref() {
            DateInput::Toml(dt) => match (dt.date, dt.time) {
                (Some(d), None) if dt.offset.is_none() => {
                    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
                }
                _ => {
                    return self.invalid(
                        value.span(),
                        format!("`{field}` must be a calendar date, found `{dt}`"),
                        "write the day only, as YYYY-MM-DD (for example 2026-11-28)",
                    )
                }
            },
            DateInput::Text(s) => s.clone(),
        };
        match NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
            Ok(d) => Ok(d),
            Err(e) => self.invalid(
                value.span(),
                format!("`{field}` = `{text}` is not a valid date ({e})"),
                "write the day as YYYY-MM-DD (for example 2026-11-28)",
            ),
        }
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(crate) fn parse(path: &Path, text: &str) -> Result<Distribution, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let message = e.message().trim().to_string();
        let help = if message.contains("unknown field") {
            "remove the key or fix its spelling; the accepted keys are listed in the message"
        } else if message.contains("missing field") {
            "add the missing key to this table"
        } else {
            "fix the TOML at this position"
        };
        ConfigError::Syntax {
            location: Location::at(path, text, offset),
            message,
            help: help.to_string(),
        }
    })?;
    let cx = Ctx { path, text };
    let base = path.parent().unwrap_or(Path::new("."));

    let name = raw.distribution.name.get_ref().trim().to_string();
    if !is_ident(&name) {
        return cx.invalid(
            raw.distribution.name.span(),
            format!("distribution name `{name}` is empty or has characters other than letters, digits, `-` and `_`"),
            "use a short identifier such as `fips-mesh`; it becomes part of image names",
        );
    }

    let support = match raw.support {
        None => Support {
            months: 14,
            warn_days: 30,
        },
        Some(s) => {
            let months = *s.months.get_ref();
            if !(1..=120).contains(&months) {
                return cx.invalid(
                    s.months.span(),
                    format!("support.months = {months} is outside 1..=120"),
                    "set the number of months each minor line is supported (14 for the standard policy)",
                );
            }
            let warn_days = match &s.warn_days {
                None => 30,
                Some(w) if (0..=365).contains(w.get_ref()) => *w.get_ref(),
                Some(w) => {
                    return cx.invalid(
                        w.span(),
                        format!("support.warn_days = {} is outside 0..=365", w.get_ref()),
                        "set how many days before end of life a line is reported as ending soon (30 by default)",
                    )
                }
            };
            // Both bounds were checked above, so the conversions cannot fail.
            Support {
                months: u32::try_from(months).unwrap_or(14),
                warn_days: u32::try_from(warn_days).unwrap_or(30),
            }
        }
    };

    let fips = FipsPolicy {
        require_validated_module: raw.fips.is_none_or(|f| f.require_validated_module),
    };

    let mut image = ImageSettings::default();
    if let Some(ri) = raw.image {
        if let Some(b) = &ri.base {
            let v = b.get_ref().trim();
            if !pinned_base(v) {
                return cx.invalid(
                    b.span(),
                    format!("image.base = `{v}` is neither an OCI layout nor a registry image pinned by digest"),
                    "write `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or `REGISTRY/REPO@sha256:<64 hex digits>` (a tag alone can move)",
                );
            }
            image.base = Some(v.to_string());
        }
        image.base_sbom = ri.base_sbom.map(|p| base.join(p));
    }
    let mut advisories = Advisories {
        db: None,
        max_age_days: Advisories::DEFAULT_MAX_AGE_DAYS,
    };
    if let Some(a) = &raw.advisories {
        if let Some(db) = &a.db {
            let text = db.get_ref().trim();
            if text.is_empty() {
                return cx.invalid(
                    db.span(),
                    "advisories.db is empty".into(),
                    "give the directory of a RustSec advisory-db snapshot, relative to this file, or remove the key to use the snapshot this repository ships (patches/advisory-db)",
                );
            }
            let p = PathBuf::from(text);
            advisories.db = Some(if p.is_absolute() { p } else { base.join(p) });
        }
        if let Some(m) = &a.max_age_days {
            let days = *m.get_ref();
            if !(1..=3650).contains(&days) {
                return cx.invalid(
                    m.span(),
                    format!("advisories.max_age_days = {days} is outside 1..=3650"),
                    "set after how many days a database snapshot is reported as stale (90 by default)",
                );
            }
            // Checked just above: the value fits.
            advisories.max_age_days =
                u32::try_from(days).unwrap_or(Advisories::DEFAULT_MAX_AGE_DAYS);
        }
    }

    if raw.components.is_empty() {
        return cx.invalid(
            0..0,
            "the distribution has no components".into(),
            "add a [[component]] table with name, package and binary",
        );
    }
    let mut components = Vec::new();
    let mut seen = BTreeSet::new();
    for rc in &raw.components {
        let c = rc.get_ref();
        let cname = c.name.get_ref().trim().to_string();
        if !is_ident(&cname) {
            return cx.invalid(
                c.name.span(),
                format!("component name `{cname}` is not a valid identifier"),
                "use letters, digits, `-` and `_` only",
            );
        }
        if !seen.insert(cname.clone()) {
            return cx.invalid(
                c.name.span(),
                format!("component `{cname}` is defined twice"),
                "give each [[component]] a unique name",
            );
        }
        let package = c.package.get_ref().trim().to_string();
        if !is_ident(&package) {
            return cx.invalid(
                c.package.span(),
                format!("package `{package}` is not a valid cargo package name"),
                "name the cargo package that builds this component",
            );
        }
        let binary = match &c.binary {
            Some(b) if is_ident(b.get_ref()) => b.get_ref().clone(),
            Some(b) => {
                return cx.invalid(
                    b.span(),
                    format!("binary `{}` is not a valid target name", b.get_ref()),
                    "name the [[bin]] target of the package",
                )
            }
            None => package.clone(),
        };
        let mut features = Vec::new();
        for f in &c.features {
            let v = f.get_ref();
            if v.is_empty() || v.contains(char::is_whitespace) || v.contains(',') {
                return cx.invalid(
                    f.span(),
                    format!("feature `{v}` is not a valid cargo feature name"),
                    "list one feature per string, e.g. features = [\"fips\"]",
                );
            }
            features.push(v.clone());
        }
        components.push(Component {
            name: cname,
            package,
            binary,
            features,
            fips_required: c.fips_required,
            description: c.description.clone(),
        });
    }

    if raw.lines.is_empty() {
        return cx.invalid(
            0..0,
            "the distribution has no release lines".into(),
            "add a [[line]] table with version, release_date and source",
        );
    }
    let mut lines = Vec::new();
    let mut versions = BTreeSet::new();
    for rl in &raw.lines {
        let l = rl.get_ref();
        let version = l.version.get_ref().trim().to_string();
        let semver =
            match semver::Version::parse(&format!("{version}.0")) {
                Ok(v) if v.pre.is_empty() && v.build.is_empty() => v,
                _ => return cx.invalid(
                    l.version.span(),
                    format!("line version `{version}` is not MAJOR.MINOR"),
                    "name the minor line, e.g. version = \"1.4\"; patch releases go in `latest`",
                ),
            };
        if !versions.insert(version.clone()) {
            return cx.invalid(
                l.version.span(),
                format!("line `{version}` is defined twice"),
                "give each [[line]] a unique version",
            );
        }
        let release_date = cx.date(&l.release_date, "release_date")?;
        let eol_override = match &l.eol {
            None => None,
            Some(e) => {
                let d = cx.date(e, "eol")?;
                if d <= release_date {
                    return cx.invalid(
                        e.span(),
                        format!("eol {d} is not after release_date {release_date}"),
                        "set an end of life after the release date, or remove `eol` to use the support policy",
                    );
                }
                Some(d)
            }
        };
        let latest = match &l.latest {
            None => None,
            Some(s) => match semver::Version::parse(s.get_ref()) {
                Ok(v) if v.major == semver.major && v.minor == semver.minor => {
                    Some(s.get_ref().clone())
                }
                _ => {
                    return cx.invalid(
                        s.span(),
                        format!(
                            "latest = `{}` is not a patch release of line {version}",
                            s.get_ref()
                        ),
                        &format!(
                            "write the newest patch release of this line, e.g. \"{version}.3\""
                        ),
                    )
                }
            },
        };
        let src = l.source.get_ref();
        let git = src.git.get_ref().trim().to_string();
        if git.is_empty() {
            return cx.invalid(
                src.git.span(),
                "source.git is empty".into(),
                "give a git URL, or a path relative to this file (\"..\" is the repository holding it)",
            );
        }
        let git = if git.contains("://") || git.starts_with("git@") || Path::new(&git).is_absolute()
        {
            git
        } else {
            base.join(&git).to_string_lossy().into_owned()
        };
        let git_ref = src.git_ref.get_ref().trim().to_string();
        if git_ref.is_empty() || git_ref.starts_with('-') || git_ref.contains(char::is_whitespace) {
            return cx.invalid(
                src.git_ref.span(),
                format!("source.ref `{git_ref}` is not a usable git ref"),
                "name a branch, tag or commit, e.g. ref = \"v1.4.0\"",
            );
        }
        let patches = l.patches.as_ref().map(|p| {
            let p = PathBuf::from(p.get_ref());
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        });
        lines.push(Line {
            version,
            semver,
            release_date,
            eol_override,
            latest,
            source: Source { git, git_ref },
            patches,
        });
    }

    Ok(Distribution {
        path: path.to_path_buf(),
        name,
        description: raw.distribution.description,
        vendor: raw.distribution.vendor,
        support,
        fips,
        image,
        advisories,
        components,
        lines,
    })
}
