//! The dependency list embedded in every shipped binary, in the cargo-auditable format.
//!
//! Format (what `cargo auditable`, `rust-audit-info`, `cargo audit bin`, syft and trivy read): a
//! zlib-compressed JSON document `{"packages":[{"name","version","source","kind"?,"dependencies"?,
//! "root"?}]}` in an ELF section named `.dep-v0`. `source` is `crates.io`, `git`, `local` or
//! `registry`; `kind` is present (`"build"`) only for build-only packages; `dependencies` are
//! indices into `packages`; exactly one package has `"root": true`. Packages are sorted by name,
//! version and source, so the same graph always gives the same bytes.
//!
//! `distro build` links with plain cargo, so the section is added after linking with `objcopy`
//! (GNU binutils); the result is deterministic for the same binary and list.

use distro_hostio::Cmd;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize};

use crate::graph::{DepKind, Graph, Package, PkgSource};
use crate::SbomError;

/// Name of the ELF section cargo-auditable uses.
pub const SECTION: &str = ".dep-v0";
/// zlib level cargo-auditable uses; fixed so output is reproducible.
const ZLIB_LEVEL: u8 = 7;
/// Largest decompressed list accepted when reading a binary (a guard against zip bombs).
const MAX_JSON: usize = 64 << 20;

/// The embedded dependency list (cargo-auditable's `VersionInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepList {
    /// Every package, root included.
    pub packages: Vec<DepListPackage>,
}

/// One package of a [`DepList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepListPackage {
    /// Crate name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `crates.io`, `git`, `local`, `registry` (other strings are accepted when reading).
    pub source: String,
    /// `build` for build-only packages; absent for runtime ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Indices of dependencies in `packages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<usize>,
    /// The binary's own package.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root: bool,
}

impl DepList {
    /// The list for a resolved graph (same order and indices as the graph).
    pub fn from_graph(graph: &Graph) -> DepList {
        DepList {
            packages: graph
                .packages
                .iter()
                .enumerate()
                .map(|(i, p)| DepListPackage {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    source: p.source.auditable_kind().to_string(),
                    kind: (p.kind == DepKind::Build).then(|| "build".to_string()),
                    dependencies: p.dependencies.clone(),
                    root: i == graph.root,
                })
                .collect(),
        }
    }

    /// The compact JSON cargo-auditable writes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, integers and booleans cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The zlib-compressed section payload.
    pub fn to_section_bytes(&self) -> Vec<u8> {
        miniz_oxide::deflate::compress_to_vec_zlib(&self.to_json(), ZLIB_LEVEL)
    }

    /// Decodes a section payload, checking the invariants readers rely on.
    pub fn from_section_bytes(bytes: &[u8], origin: &Path) -> Result<DepList, SbomError> {
        let bad = |detail: String| SbomError::BadDependencyList {
            path: origin.to_path_buf(),
            detail,
        };
        let json = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(bytes, MAX_JSON)
            .map_err(|e| {
                bad(format!(
                    "not zlib data (or larger than {MAX_JSON} bytes): {e:?}"
                ))
            })?;
        let list: DepList = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
        list.validate().map_err(bad)?;
        Ok(list)
    }

    /// One root, indices in range, no cycles (cargo-auditable's rules).
    fn validate(&self) -> Result<(), String> {
        let n = self.packages.len();
        let roots = self.packages.iter().filter(|p| p.root).count();
        if roots != 1 {
            return Err(format!("{roots} root packages (exactly one expected)"));
        }
        for (i, p) in self.packages.iter().enumerate() {
            if let Some(&d) = p.dependencies.iter().find(|&&d| d >= n) {
                return Err(format!(
                    "package {i} ({}) depends on index {d}, but there are {n} packages",
                    p.name
                ));
            }
        }
        // Kahn's algorithm: anything left over sits on a cycle.
        let mut indegree = vec![0usize; n];
        for p in &self.packages {
            for &d in &p.dependencies {
                indegree[d] += 1;
            }
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut seen = 0;
        while let Some(i) = ready.pop() {
            seen += 1;
            for &d in &self.packages[i].dependencies {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.push(d);
                }
            }
        }
        if seen != n {
            return Err("the dependency graph has a cycle".into());
        }
        Ok(())
    }

    /// A graph from an embedded list; licences, checksums and features are not in the format.
    pub fn to_graph(&self, binary: &str) -> Graph {
        let root = self.packages.iter().position(|p| p.root).unwrap_or(0);
        let packages = self
            .packages
            .iter()
            .map(|p| Package {
                name: p.name.clone(),
                version: p.version.clone(),
                source: match p.source.as_str() {
                    "crates.io" => PkgSource::CratesIo,
                    "git" => PkgSource::Git {
                        url: String::new(),
                        rev: String::new(),
                    },
                    "local" => PkgSource::Local(None),
                    other => PkgSource::Registry(if other == "registry" {
                        String::new()
                    } else {
                        other.to_string()
                    }),
                },
                license: None,
                checksum: None,
                kind: if p.kind.as_deref() == Some("build") {
                    DepKind::Build
                } else {
                    DepKind::Runtime
                },
                features: Vec::new(),
                dependencies: p
                    .dependencies
                    .iter()
                    .copied()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                description: None,
                repository: None,
            })
            .collect();
        Graph::normalized(binary.to_string(), String::new(), root, packages)
    }
}

/// Embeds `deps` into `binary` as the `.dep-v0` section (replacing any existing one), atomically.
///
/// Uses `objcopy` from GNU binutils. The file keeps its permissions; its sha256 changes, so hash
/// the binary after embedding.
pub fn embed(binary: &Path, deps: &DepList) -> Result<(), SbomError> {
    let dir = binary
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let payload = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| SbomError::io("creating a temporary file in", dir, e))?;
    std::fs::write(payload.path(), deps.to_section_bytes())
        .map_err(|e| SbomError::io("writing", payload.path().to_path_buf(), e))?;
    let out = tempfile::Builder::new()
        .prefix(".embed-")
        .tempfile_in(dir)
        .map_err(|e| SbomError::io("creating a temporary file in", dir, e))?;
    let had_section = read_section(binary)?.is_some();
    let mut cmd = Cmd::new(
        "objcopy",
        format!("embed the dependency list into {}", binary.display()),
    );
    cmd.help("install GNU binutils (`apt-get install binutils`); objcopy must understand the binary's format");
    if had_section {
        cmd.args(["--remove-section", SECTION]);
    }
    cmd.arg("--add-section")
        .arg(format!("{SECTION}={}", payload.path().display()))
        .args(["--set-section-flags", &format!("{SECTION}=noload,readonly")])
        .arg(binary)
        .arg(out.path());
    cmd.run()?;
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(binary)
            .map_err(|e| SbomError::io("reading permissions of", binary, e))?
            .permissions()
            .mode()
            & 0o7777
    };
    // objcopy's output is scratch; the binary is replaced by the one atomic write, keeping
    // its mode (it stays executable).
    let bytes = std::fs::read(out.path())
        .map_err(|e| SbomError::io("reading", out.path().to_path_buf(), e))?;
    Ok(distro_hostio::write_atomic(binary, &bytes, mode)?)
}

/// The raw `.dep-v0` section of a binary, if it has one.
pub fn read_section(binary: &Path) -> Result<Option<Vec<u8>>, SbomError> {
    let data = std::fs::read(binary).map_err(|e| SbomError::io("reading", binary, e))?;
    let file = object::File::parse(&*data).map_err(|e| SbomError::Parse {
        what: "executable",
        origin: binary.display().to_string(),
        detail: e.to_string(),
    })?;
    match file.section_by_name(SECTION) {
        None => Ok(None),
        Some(s) => s
            .data()
            .map(|d| Some(d.to_vec()))
            .map_err(|e| SbomError::Parse {
                what: "`.dep-v0` section",
                origin: binary.display().to_string(),
                detail: e.to_string(),
            }),
    }
}

/// Reads and decodes the dependency list embedded in `binary`.
pub fn extract(binary: &Path) -> Result<DepList, SbomError> {
    let bytes = read_section(binary)?.ok_or_else(|| SbomError::NoDependencyList {
        path: PathBuf::from(binary),
    })?;
    DepList::from_section_bytes(&bytes, binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, deps: Vec<usize>, root: bool) -> DepListPackage {
        DepListPackage {
            name: name.into(),
            version: "1.0.0".into(),
            source: "crates.io".into(),
            kind: None,
            dependencies: deps,
            root,
        }
    }

    /// The JSON leaves out default fields exactly as cargo-auditable does.
    #[test]
    fn json_shape_matches_cargo_auditable() {
        let list = DepList {
            packages: vec![pkg("a", vec![1], true), pkg("b", vec![], false)],
        };
        assert_eq!(
            String::from_utf8_lossy(&list.to_json()),
            r#"{"packages":[{"name":"a","version":"1.0.0","source":"crates.io","dependencies":[1],"root":true},{"name":"b","version":"1.0.0","source":"crates.io"}]}"#
        );
    }

    /// Cycles, out-of-range indices and several roots are rejected when reading.
    #[test]
    fn rejects_malformed_lists() {
        let p = Path::new("x");
        let cyc = DepList {
            packages: vec![pkg("a", vec![1], true), pkg("b", vec![0], false)],
        };
        assert!(DepList::from_section_bytes(&cyc.to_section_bytes(), p).is_err());
        let range = DepList {
            packages: vec![pkg("a", vec![5], true)],
        };
        assert!(DepList::from_section_bytes(&range.to_section_bytes(), p).is_err());
        let roots = DepList {
            packages: vec![pkg("a", vec![], true), pkg("b", vec![], true)],
        };
        assert!(DepList::from_section_bytes(&roots.to_section_bytes(), p).is_err());
        assert!(DepList::from_section_bytes(b"not zlib", p).is_err());
    }
}
