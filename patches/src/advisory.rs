//! A local copy of the RustSec advisory database (its on-disk layout:
//! `crates/<name>/RUSTSEC-*.md`, TOML front matter in a fenced toml block) and matching it
//! against a Cargo.lock. No network: air-gapped sites mirror the repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dep3::matches_req;
use crate::error::PatchError;

/// One advisory.
#[derive(Debug, Clone, Serialize)]
pub struct Advisory {
    /// `RUSTSEC-YYYY-NNNN`.
    pub id: String,
    /// Affected crate.
    pub package: String,
    /// Publication date, as written.
    pub date: String,
    /// Other ids (CVE, GHSA).
    pub aliases: Vec<String>,
    /// Title (the first Markdown heading).
    pub title: String,
    /// `informational` kind (unmaintained, unsound, notice), when not a vulnerability.
    pub informational: Option<String>,
    /// Withdrawn advisories never match.
    pub withdrawn: bool,
    /// Patched ranges, as written.
    pub patched: Vec<String>,
    /// Unaffected ranges, as written.
    pub unaffected: Vec<String>,
    /// CVSS vector, when given.
    pub cvss: Option<String>,
    /// The advisory file.
    pub path: PathBuf,
    #[serde(skip)]
    patched_reqs: Vec<semver::VersionReq>,
    #[serde(skip)]
    unaffected_reqs: Vec<semver::VersionReq>,
}

impl Advisory {
    /// Whether version `v` of the package is affected (in no patched or unaffected range).
    pub fn affects(&self, v: &semver::Version) -> bool {
        !self.withdrawn
            && !self.patched_reqs.iter().any(|r| matches_req(r, v))
            && !self.unaffected_reqs.iter().any(|r| matches_req(r, v))
    }

    /// A vulnerability (not an informational notice) that has not been withdrawn.
    pub fn is_vulnerability(&self) -> bool {
        self.informational.is_none() && !self.withdrawn
    }

    /// Whether `id` names this advisory (its id or an alias).
    pub fn is_named(&self, id: &str) -> bool {
        self.id.eq_ignore_ascii_case(id) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
    }
}

#[derive(Deserialize)]
struct FrontMatter {
    advisory: RawAdvisory,
    #[serde(default)]
    versions: RawVersions,
}

#[derive(Deserialize)]
struct RawAdvisory {
    id: String,
    package: String,
    #[serde(default)]
    date: Option<toml::Value>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    withdrawn: Option<toml::Value>,
    #[serde(default)]
    cvss: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawVersions {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

/// The advisories of a database, by crate.
#[derive(Debug, Default)]
pub struct AdvisoryDb {
    /// Where it was read from.
    pub root: PathBuf,
    by_crate: BTreeMap<String, Vec<Advisory>>,
}

impl AdvisoryDb {
    /// Reads every `crates/*/*.md` advisory under `root`.
    pub fn load(root: &Path) -> Result<AdvisoryDb, PatchError> {
        let crates = root.join("crates");
        let dirs = std::fs::read_dir(&crates).map_err(|e| PatchError::Advisory {
            path: crates.clone(),
            message: format!("cannot read the advisory database: {e}"),
            help: "pass --advisory-db PATH to a local copy of the RustSec advisory-db repository"
                .into(),
        })?;
        let mut db = AdvisoryDb {
            root: root.to_path_buf(),
            by_crate: BTreeMap::new(),
        };
        let mut dirs: Vec<PathBuf> = dirs.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs.into_iter().filter(|d| d.is_dir()) {
            let entries = std::fs::read_dir(&dir).map_err(|e| PatchError::io(&dir, e))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(|e| PatchError::io(&f, e))?;
                let adv = parse_advisory(&f, &text)?;
                db.by_crate
                    .entry(adv.package.clone())
                    .or_default()
                    .push(adv);
            }
        }
        Ok(db)
    }

    /// Advisories about `package`.
    pub fn for_crate(&self, package: &str) -> &[Advisory] {
        self.by_crate.get(package).map_or(&[], Vec::as_slice)
    }

    /// Number of advisories.
    pub fn len(&self) -> usize {
        self.by_crate.values().map(Vec::len).sum()
    }

    /// Whether it holds no advisory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The advisory named `id` (its id or an alias).
    pub fn find(&self, id: &str) -> Option<&Advisory> {
        self.by_crate.values().flatten().find(|a| a.is_named(id))
    }
}

/// Parses one advisory file.
pub fn parse_advisory(path: &Path, text: &str) -> Result<Advisory, PatchError> {
    let err = |message: String| {
        PatchError::Advisory {
        path: path.to_path_buf(),
        message,
        help: "fix or remove the advisory file; the database layout is RustSec's (```toml front matter, then Markdown)".into(),
    }
    };
    let body = text.trim_start();
    let rest = body
        .strip_prefix("```toml")
        .ok_or_else(|| err("does not start with a ```toml front matter block".into()))?;
    let end = rest
        .find("\n```")
        .ok_or_else(|| err("the ```toml block is not closed".into()))?;
    let front: FrontMatter =
        toml::from_str(&rest[..end]).map_err(|e| err(format!("front matter: {}", e.message())))?;
    let markdown = &rest[end + 4..];
    let title = markdown
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or_default()
        .trim()
        .to_string();
    let parse_reqs = |list: &[String]| -> Result<Vec<semver::VersionReq>, PatchError> {
        list.iter()
            .map(|r| {
                semver::VersionReq::parse(r).map_err(|e| err(format!("version range `{r}`: {e}")))
            })
            .collect()
    };
    let patched_reqs = parse_reqs(&front.versions.patched)?;
    let unaffected_reqs = parse_reqs(&front.versions.unaffected)?;
    let a = front.advisory;
    Ok(Advisory {
        id: a.id,
        package: a.package,
        date: a
            .date
            .map(|d| d.to_string().trim_matches('"').to_string())
            .unwrap_or_default(),
        aliases: a.aliases,
        title,
        informational: a.informational,
        withdrawn: a.withdrawn.is_some(),
        patched: front.versions.patched,
        unaffected: front.versions.unaffected,
        cvss: a.cvss,
        path: path.to_path_buf(),
        patched_reqs,
        unaffected_reqs,
    })
}

/// A package of a Cargo.lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedPackage {
    /// Crate name.
    pub name: String,
    /// Locked version.
    pub version: semver::Version,
    /// `source`, absent for workspace members and path dependencies.
    pub source: Option<String>,
    /// Its dependencies, as the lockfile writes them (`name` or `name version`).
    pub dependencies: Vec<String>,
}

impl LockedPackage {
    /// From a registry (crates.io or another), so advisories apply to it.
    pub fn is_registry(&self) -> bool {
        self.source
            .as_deref()
            .is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"))
    }

    /// Whether it depends on `name` at `version` (a lockfile names the version only when the
    /// crate is locked at several; a bare name means the only locked one).
    pub fn depends_on(&self, name: &str, version: &semver::Version) -> bool {
        self.dependencies.iter().any(|d| {
            let mut parts = d.split_whitespace();
            let n = parts.next().unwrap_or_default();
            n == name && parts.next().is_none_or(|v| v == version.to_string())
        })
    }
}

#[derive(Deserialize)]
struct RawLock {
    #[serde(default)]
    package: Vec<RawLockedPackage>,
}

#[derive(Deserialize)]
struct RawLockedPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// Parses a Cargo.lock (any version of the format that has `[[package]]` tables).
pub fn parse_lock(path: &Path, text: &str) -> Result<Vec<LockedPackage>, PatchError> {
    let raw: RawLock = toml::from_str(text).map_err(|e| PatchError::Manifest {
        path: path.to_path_buf(),
        message: format!("not a Cargo.lock: {}", e.message()),
        help: "regenerate it with `cargo generate-lockfile`".into(),
    })?;
    raw.package
        .into_iter()
        .map(|p| {
            let version = semver::Version::parse(&p.version).map_err(|e| PatchError::Manifest {
                path: path.to_path_buf(),
                message: format!("package {} has version `{}`: {e}", p.name, p.version),
                help: "regenerate it with `cargo generate-lockfile`".into(),
            })?;
            Ok(LockedPackage {
                name: p.name,
                version,
                source: p.source,
                dependencies: p.dependencies,
            })
        })
        .collect()
}

/// An advisory that affects a locked package.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The advisory id.
    pub advisory: String,
    /// Its aliases.
    pub aliases: Vec<String>,
    /// Its title.
    pub title: String,
    /// The crate.
    pub package: String,
    /// The locked version.
    pub version: semver::Version,
    /// Patched ranges.
    pub patched: Vec<String>,
}

/// Vulnerability advisories affecting registry packages of `lock`, sorted by crate and id.
pub fn scan(db: &AdvisoryDb, lock: &[LockedPackage]) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in lock.iter().filter(|p| p.is_registry()) {
        for a in db.for_crate(&p.name) {
            if a.is_vulnerability() && a.affects(&p.version) {
                out.push(Finding {
                    advisory: a.id.clone(),
                    aliases: a.aliases.clone(),
                    title: a.title.clone(),
                    package: p.name.clone(),
                    version: p.version.clone(),
                    patched: a.patched.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.package, &a.version, &a.advisory).cmp(&(&b.package, &b.version, &b.advisory))
    });
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    const ADV: &str = "```toml\n[advisory]\nid = \"RUSTSEC-2026-0098\"\npackage = \"rustls-webpki\"\ndate = \"2026-04-14\"\naliases = [\"GHSA-965h-392x-2mh5\"]\n\n[versions]\npatched = [\">= 0.103.12, < 0.104.0-alpha.1\", \">= 0.104.0-alpha.6\"]\n```\n\n# Name constraints for URI names were incorrectly accepted\n";

    /// Front matter and title are read; ranges decide which versions are affected, including
    /// pre-releases between the two patched ranges.
    #[test]
    fn advisory_ranges() {
        let a = parse_advisory(Path::new("a.md"), ADV).unwrap();
        assert_eq!(
            a.title,
            "Name constraints for URI names were incorrectly accepted"
        );
        let v = |s| semver::Version::parse(s).unwrap();
        assert!(a.affects(&v("0.103.11")));
        assert!(!a.affects(&v("0.103.12")));
        assert!(a.affects(&v("0.104.0-alpha.5")));
        assert!(!a.affects(&v("0.104.0-alpha.6")));
        assert!(!a.affects(&v("0.104.1")));
        assert!(a.is_named("ghsa-965h-392x-2mh5"));
    }

    /// A file without front matter is an error naming the file.
    #[test]
    fn malformed_advisory_names_file() {
        let e = parse_advisory(Path::new("crates/x/RUSTSEC-1.md"), "# nope").unwrap_err();
        assert!(e.to_string().contains("crates/x/RUSTSEC-1.md"), "{e}");
    }
}
