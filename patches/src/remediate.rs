//! Dependency remediation: bump each crate of a tree's Cargo.lock that an advisory affects to
//! the lowest fixed version its semver requirements allow, with `cargo update --precise`
//! (offline), and say what a source patch would have to do where no such version exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::advisory::{parse_lock, scan, AdvisoryDb, Finding, LockedPackage};
use crate::dep3::matches_req;
use crate::error::PatchError;
use crate::index::LocalIndex;
use distro_hostio::Cmd;

/// One requirement on a crate, and who states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// Who: a manifest path, or `crate@version` for a dependency.
    pub by: String,
    /// The requirement as written.
    pub req: String,
}

/// A crate moved to a fixed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bump {
    /// Crate.
    pub package: String,
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
    /// Advisories it fixes.
    pub advisories: Vec<String>,
    /// The requirements the new version satisfies.
    pub requirements: Vec<Requirement>,
}

/// A crate that no compatible release fixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unfixable {
    /// Crate.
    pub package: String,
    /// Locked version.
    pub version: String,
    /// Advisories that stay open.
    pub advisories: Vec<String>,
    /// Requirements that rule the fixed versions out.
    pub requirements: Vec<Requirement>,
    /// The lowest release that fixes them, ignoring requirements, if any is known.
    pub lowest_fixed: Option<String>,
    /// Why, and what a source patch would have to do.
    pub explanation: String,
}

/// What a remediation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Remediation {
    /// Crates bumped.
    pub bumps: Vec<Bump>,
    /// Crates left affected.
    pub unfixable: Vec<Unfixable>,
    /// sha256 of Cargo.lock before.
    pub lock_before: String,
    /// sha256 of Cargo.lock after.
    pub lock_after: String,
}

/// Requirements on `name` stated by the manifests under `tree` and by the locked crates that
/// depend on it (from the local index).
pub fn requirements(
    tree: &Path,
    lock: &[LockedPackage],
    index: &LocalIndex,
    name: &str,
    version: &semver::Version,
) -> Result<Vec<Requirement>, PatchError> {
    let mut out = Vec::new();
    for manifest in manifests(tree) {
        let text = std::fs::read_to_string(&manifest).map_err(|e| PatchError::io(&manifest, e))?;
        let value: toml::Table = toml::from_str(&text).map_err(|e| PatchError::Manifest {
            path: manifest.clone(),
            message: e.message().to_string(),
            help: "fix the manifest; cargo cannot read it either".into(),
        })?;
        let rel = manifest
            .strip_prefix(tree)
            .unwrap_or(&manifest)
            .display()
            .to_string();
        let mut tables: Vec<&toml::Table> = Vec::new();
        for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(t) = value.get(key).and_then(toml::Value::as_table) {
                tables.push(t);
            }
        }
        if let Some(t) = value
            .get("workspace")
            .and_then(|w| w.get("dependencies"))
            .and_then(toml::Value::as_table)
        {
            tables.push(t);
        }
        if let Some(targets) = value.get("target").and_then(toml::Value::as_table) {
            for t in targets.values() {
                for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
                    if let Some(t) = t.get(key).and_then(toml::Value::as_table) {
                        tables.push(t);
                    }
                }
            }
        }
        for t in tables {
            for (key, spec) in t {
                let (package, req) = match spec {
                    toml::Value::String(r) => (key.as_str(), Some(r.as_str())),
                    toml::Value::Table(d) => (
                        d.get("package")
                            .and_then(toml::Value::as_str)
                            .unwrap_or(key),
                        d.get("version").and_then(toml::Value::as_str),
                    ),
                    _ => (key.as_str(), None),
                };
                if package != name {
                    continue;
                }
                if let Some(req) = req {
                    // A requirement the locked version does not meet belongs to another
                    // semver-incompatible copy of the crate.
                    if semver::VersionReq::parse(req).is_ok_and(|r| matches_req(&r, version)) {
                        out.push(Requirement {
                            by: rel.clone(),
                            req: req.to_string(),
                        });
                    }
                }
            }
        }
    }
    for p in lock.iter().filter(|p| p.depends_on(name, version)) {
        if !p.is_registry() {
            continue;
        }
        let Some(entry) = index
            .versions(&p.name)
            .into_iter()
            .find(|v| v.version == p.version)
        else {
            continue;
        };
        for (dep, req) in entry.deps {
            if dep == name
                && semver::VersionReq::parse(&req).is_ok_and(|r| matches_req(&r, version))
            {
                out.push(Requirement {
                    by: format!("{}@{}", p.name, p.version),
                    req,
                });
            }
        }
    }
    out.sort_by(|a, b| a.by.cmp(&b.by));
    out.dedup();
    Ok(out)
}

/// Cargo manifests under `tree`, skipping build output and VCS data.
fn manifests(tree: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            if p.is_dir() {
                if name != "target" && name != ".git" && name != "out" {
                    stack.push(p);
                }
            } else if name == "Cargo.toml" {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Scans `tree/Cargo.lock` against `db`.
pub fn scan_tree(tree: &Path, db: &AdvisoryDb) -> Result<Vec<Finding>, PatchError> {
    let path = tree.join("Cargo.lock");
    let text = std::fs::read_to_string(&path).map_err(|e| PatchError::io(&path, e))?;
    Ok(scan(db, &parse_lock(&path, &text)?))
}

/// Decides, without changing anything, what [`remediate_tree`] would do: the bumps to make and
/// the crates no compatible release fixes.
///
/// The chosen version is the lowest published, non-yanked release (from the local index at
/// `cargo_home`) that no advisory of the database affects, that is newer than the locked one,
/// and that every requirement on the crate allows. Where the index has no entry, the lower
/// bounds of the patched ranges are the candidates and cargo decides.
pub fn plan(tree: &Path, db: &AdvisoryDb, cargo_home: &Path) -> Result<Remediation, PatchError> {
    let lock_path = tree.join("Cargo.lock");
    let before = std::fs::read(&lock_path).map_err(|e| PatchError::io(&lock_path, e))?;
    let lock = parse_lock(&lock_path, &String::from_utf8_lossy(&before))?;
    let findings = scan(db, &lock);
    let index = LocalIndex::new(cargo_home);
    let mut grouped: BTreeMap<(String, semver::Version), Vec<String>> = BTreeMap::new();
    for f in &findings {
        grouped
            .entry((f.package.clone(), f.version.clone()))
            .or_default()
            .push(f.advisory.clone());
    }
    let digest = distro_hostio::sha256_hex(&before);
    let mut result = Remediation {
        lock_before: digest.clone(),
        lock_after: digest,
        ..Remediation::default()
    };
    for ((name, old), advisories) in grouped {
        let reqs = requirements(tree, &lock, &index, &name, &old)?;
        let parsed: Vec<semver::VersionReq> = reqs
            .iter()
            .filter_map(|r| semver::VersionReq::parse(&r.req).ok())
            .collect();
        let advs = db.for_crate(&name);
        let fixed = |v: &semver::Version| {
            advs.iter()
                .filter(|a| a.is_vulnerability())
                .all(|a| !a.affects(v))
        };
        let published = index.versions(&name);
        let candidates: Vec<semver::Version> = if published.is_empty() {
            let mut c: Vec<semver::Version> = advs
                .iter()
                .flat_map(|a| a.patched.iter())
                .filter_map(|r| lower_bound(r))
                .collect();
            c.sort();
            c.dedup();
            c
        } else {
            published
                .iter()
                .filter(|v| !v.yanked)
                .map(|v| v.version.clone())
                .collect()
        };
        let lowest_fixed = candidates
            .iter()
            .find(|v| fixed(v) && v.pre.is_empty())
            .cloned();
        let target = candidates.iter().find(|v| {
            *v > &old && v.pre.is_empty() && fixed(v) && parsed.iter().all(|r| r.matches(v))
        });
        match target {
            Some(new) => result.bumps.push(Bump {
                package: name,
                from: old.to_string(),
                to: new.to_string(),
                advisories,
                requirements: reqs,
            }),
            None => {
                let blocking: Vec<String> = reqs
                    .iter()
                    .map(|r| format!("{} requires {}", r.by, r.req))
                    .collect();
                let explanation = match &lowest_fixed {
                    Some(v) => format!(
                        "no release of {name} satisfies {} and is fixed; the lowest fixed release is {v}. \
                         Either relax those requirements to allow {v} (a semver-incompatible upgrade: the dependents' \
                         source must be ported to its API), or carry a source patch: vendor {name} {old} \
                         ([patch.crates-io] {name} = {{ path = ... }}) and backport the fix of {} from {v} into it",
                        if blocking.is_empty() { "the lockfile's constraints".to_string() } else { blocking.join(", ") },
                        advisories.join(", ")
                    ),
                    None => format!(
                        "no fixed release of {name} is known; carry a source patch that removes the vulnerable \
                         code from {name} {old} (vendor it with [patch.crates-io]) or drop the dependency"
                    ),
                };
                result.unfixable.push(Unfixable {
                    package: name,
                    version: old.to_string(),
                    advisories,
                    requirements: reqs,
                    lowest_fixed: lowest_fixed.map(|v| v.to_string()),
                    explanation,
                });
            }
        }
    }
    Ok(result)
}

/// Bumps every affected crate of `tree/Cargo.lock` to its lowest compatible fixed version
/// (see [`plan`]), in place, with `cargo update --offline -p NAME@OLD --precise NEW`, and
/// checks that the lockfile then holds the new versions.
pub fn remediate_tree(
    tree: &Path,
    db: &AdvisoryDb,
    cargo_home: &Path,
) -> Result<Remediation, PatchError> {
    let mut result = plan(tree, db, cargo_home)?;
    for b in &result.bumps {
        let mut c = Cmd::new(
            "cargo",
            format!(
                "bump {} {} -> {} to fix {}",
                b.package,
                b.from,
                b.to,
                b.advisories.join(", ")
            ),
        );
        c.cwd(tree)
            .args(["update", "--offline", "--quiet", "-p"])
            .arg(format!("{}@{}", b.package, b.from))
            .arg("--precise")
            .arg(&b.to);
        c.run()?;
    }
    let lock_path = tree.join("Cargo.lock");
    let after = std::fs::read(&lock_path).map_err(|e| PatchError::io(&lock_path, e))?;
    result.lock_after = distro_hostio::sha256_hex(&after);
    let now = parse_lock(&lock_path, &String::from_utf8_lossy(&after))?;
    for b in &result.bumps {
        if !now
            .iter()
            .any(|p| p.name == b.package && p.version.to_string() == b.to)
        {
            return Err(PatchError::invalid(
                format!("cargo update left {} without version {}", b.package, b.to),
                format!(
                    "run `cargo update --offline -p {}@{} --precise {}` in {} to see why",
                    b.package,
                    b.from,
                    b.to,
                    tree.display()
                ),
            ));
        }
    }
    Ok(result)
}

/// The lowest version a RustSec range like `>= 1.2.3, < 1.3` starts at.
fn lower_bound(range: &str) -> Option<semver::Version> {
    let first = range.split(',').next()?.trim();
    let v = first
        .strip_prefix(">=")
        .or_else(|| first.strip_prefix('^'))?
        .trim();
    semver::Version::parse(v).ok()
}
