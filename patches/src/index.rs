//! Cargo's local registry index cache (`$CARGO_HOME/registry/index/*/.cache`): the published
//! versions of a crate and the requirements of each on its dependencies, read without network.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One published version of a crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexVersion {
    /// Version.
    pub version: semver::Version,
    /// Yanked versions are never chosen.
    pub yanked: bool,
    /// Its dependencies: (crate name, requirement).
    pub deps: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RawEntry {
    vers: String,
    #[serde(default)]
    yanked: bool,
    #[serde(default)]
    deps: Vec<RawDep>,
}

#[derive(Deserialize)]
struct RawDep {
    name: String,
    req: String,
    #[serde(default)]
    package: Option<String>,
}

/// The index caches under a cargo home.
#[derive(Debug, Clone)]
pub struct LocalIndex {
    caches: Vec<PathBuf>,
}

impl LocalIndex {
    /// The caches of every registry under `cargo_home` (none when it has no index).
    pub fn new(cargo_home: &Path) -> LocalIndex {
        let mut caches: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry").join("index"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path().join(".cache")))
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        caches.sort();
        LocalIndex { caches }
    }

    /// Whether any cache was found.
    pub fn is_empty(&self) -> bool {
        self.caches.is_empty()
    }

    /// Published versions of `name` (empty when the cache has no entry for it).
    pub fn versions(&self, name: &str) -> Vec<IndexVersion> {
        let lower = name.to_ascii_lowercase();
        let rel = match lower.len() {
            0 => return Vec::new(),
            1 => PathBuf::from("1").join(&lower),
            2 => PathBuf::from("2").join(&lower),
            3 => PathBuf::from("3").join(&lower[..1]).join(&lower),
            _ => PathBuf::from(&lower[..2]).join(&lower[2..4]).join(&lower),
        };
        let mut out: Vec<IndexVersion> = Vec::new();
        for cache in &self.caches {
            let Ok(bytes) = std::fs::read(cache.join(&rel)) else {
                continue;
            };
            // The cache file is a small header followed by NUL-separated (version, JSON) pairs.
            for chunk in bytes.split(|b| *b == 0) {
                if chunk.first() != Some(&b'{') {
                    continue;
                }
                let Ok(raw) = serde_json::from_slice::<RawEntry>(chunk) else {
                    continue;
                };
                let Ok(version) = semver::Version::parse(&raw.vers) else {
                    continue;
                };
                if out.iter().any(|v| v.version == version) {
                    continue;
                }
                out.push(IndexVersion {
                    version,
                    yanked: raw.yanked,
                    deps: raw
                        .deps
                        .into_iter()
                        .map(|d| (d.package.unwrap_or(d.name), d.req))
                        .collect(),
                });
            }
        }
        out.sort_by(|a, b| a.version.cmp(&b.version));
        out
    }
}
