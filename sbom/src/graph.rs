//! The exact dependency graph of one binary: its package, its enabled features, its target.
//!
//! `cargo metadata`'s `resolve` is workspace-wide and feature-unified, so it over-reports what one
//! binary contains. The graph here is taken from one `cargo tree` run, which applies Cargo's own
//! feature resolver (resolver 2) to exactly one package, one feature set and one target, and
//! prints each node's features, licence and repository; `Cargo.lock` adds the checksums.
//!
//! Dependency kinds included: **normal** dependencies (linked into the binary) and **build**
//! dependencies (build scripts and proc-macros that run at build time), each transitively, for
//! the host target only. Dev-dependencies are excluded. A package reachable from the binary's
//! package through normal edges without passing through a proc-macro crate is
//! [`DepKind::Runtime`] (linked into the binary); every other package is [`DepKind::Build`]: build
//! dependencies, proc-macros, and what only they use. This is cargo-auditable's rule, except that
//! cargo-auditable counts proc-macros as runtime; they are never linked, so here they are not.

use distro_hostio::Cmd;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::SbomError;

/// crates.io's registry source id as it appears in `cargo metadata` and `Cargo.lock`.
pub const CRATES_IO_SOURCE: &str = "registry+https://github.com/rust-lang/crates.io-index";
/// crates.io's sparse-protocol source id.
pub const CRATES_IO_SPARSE_SOURCE: &str = "sparse+https://index.crates.io/";

/// Where a package comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PkgSource {
    /// The public crates registry.
    CratesIo,
    /// Another registry (its source id, or empty when only the kind is known).
    Registry(String),
    /// A git repository: its URL and the locked commit (empty when only the kind is known).
    Git {
        /// Repository URL.
        url: String,
        /// Locked commit.
        rev: String,
    },
    /// A path on disk (a workspace member or a path dependency).
    Local(Option<PathBuf>),
}

impl PkgSource {
    /// Parses a Cargo source id (`registry+URL`, `sparse+URL`, `git+URL?...#REV`), `None` = local.
    pub fn from_cargo(source: Option<&str>, manifest_dir: Option<PathBuf>) -> PkgSource {
        match source {
            None => PkgSource::Local(manifest_dir),
            Some(s) if s == CRATES_IO_SOURCE || s == CRATES_IO_SPARSE_SOURCE => PkgSource::CratesIo,
            Some(s) if s.starts_with("git+") => {
                let rest = &s["git+".len()..];
                let (url_q, rev) = rest.split_once('#').unwrap_or((rest, ""));
                let url = url_q.split('?').next().unwrap_or(url_q);
                PkgSource::Git {
                    url: url.to_string(),
                    rev: rev.to_string(),
                }
            }
            Some(s) => PkgSource::Registry(s.to_string()),
        }
    }

    /// The cargo-auditable name of this kind of source.
    pub fn auditable_kind(&self) -> &'static str {
        match self {
            PkgSource::CratesIo => "crates.io",
            PkgSource::Registry(_) => "registry",
            PkgSource::Git { .. } => "git",
            PkgSource::Local(_) => "local",
        }
    }
}

/// How a package is used by the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DepKind {
    /// Linked into the binary.
    Runtime,
    /// Only runs at build time (build script, proc-macro, or a dependency of one).
    Build,
}

/// One package in a binary's graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Crate name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Where it comes from.
    pub source: PkgSource,
    /// `license` from its manifest, as written (may use `/`), when known.
    pub license: Option<String>,
    /// Hex SHA-256 of the `.crate` file from Cargo.lock (registry packages only).
    pub checksum: Option<String>,
    /// Runtime or build-only.
    pub kind: DepKind,
    /// Features enabled for it in this binary's build (sorted).
    pub features: Vec<String>,
    /// Indices of its dependencies in [`Graph::packages`] (sorted, unique).
    pub dependencies: Vec<usize>,
    /// One-line description from its manifest.
    pub description: Option<String>,
    /// Repository URL from its manifest.
    pub repository: Option<String>,
}

/// The resolved dependency graph of one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// The binary's name.
    pub binary: String,
    /// Index of the binary's own package in `packages`.
    pub root: usize,
    /// Target triple the graph was resolved for (empty when unknown, e.g. read from a binary).
    pub target: String,
    /// Every package, sorted by name, version and source (deterministic).
    pub packages: Vec<Package>,
}

impl Graph {
    /// The binary's own package.
    pub fn root_package(&self) -> &Package {
        &self.packages[self.root]
    }

    /// Finds a package by name (the first, if several versions are present).
    pub fn find(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// Sorts packages by (name, version, source), remaps indices and records the root.
    pub(crate) fn normalized(
        binary: String,
        target: String,
        root: usize,
        mut packages: Vec<Package>,
    ) -> Graph {
        let mut order: Vec<usize> = (0..packages.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (&packages[a], &packages[b]);
            (&pa.name, version_key(&pa.version), &pa.source).cmp(&(
                &pb.name,
                version_key(&pb.version),
                &pb.source,
            ))
        });
        let mut new_index = vec![0usize; packages.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        for p in &mut packages {
            let mut deps: Vec<usize> = p.dependencies.iter().map(|&d| new_index[d]).collect();
            deps.sort_unstable();
            deps.dedup();
            p.dependencies = deps;
        }
        let mut slots: Vec<Option<Package>> = packages.into_iter().map(Some).collect();
        let sorted = order.iter().filter_map(|&old| slots[old].take()).collect();
        Graph {
            binary,
            target,
            root: new_index[root],
            packages: sorted,
        }
    }
}

/// Orders versions numerically where they parse, textually otherwise.
fn version_key(v: &str) -> (Vec<u64>, String) {
    let core = v.split(['-', '+']).next().unwrap_or(v);
    let nums = core
        .split('.')
        .map(|n| n.parse::<u64>().unwrap_or(u64::MAX))
        .collect();
    (nums, v.to_string())
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct MetaPackage {
    name: String,
    description: Option<String>,
    manifest_path: PathBuf,
    targets: Vec<MetaTarget>,
}

#[derive(Deserialize)]
struct MetaTarget {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct Lockfile {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// The host target triple, from `rustc -vV`.
pub fn host_triple() -> Result<String, SbomError> {
    let out = Cmd::new("rustc", "ask rustc for the host target")
        .help("install a Rust toolchain (rustup)")
        .arg("-vV")
        .run()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| SbomError::Parse {
            what: "host triple",
            origin: "rustc -vV".into(),
            detail: "no `host:` line".into(),
        })
}

fn metadata_no_deps(manifest: &Path) -> Result<Metadata, SbomError> {
    let mut cmd = Cmd::new("cargo", "read the workspace's packages with cargo metadata");
    cmd.help("check that the directory holds a Cargo workspace")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
        ])
        .arg(manifest);
    let out = cmd.run()?;
    serde_json::from_slice(&out.stdout).map_err(|e| SbomError::Parse {
        what: "cargo metadata output",
        origin: manifest.display().to_string(),
        detail: e.to_string(),
    })
}

/// Waits for a query thread; a panic in it becomes an error.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T, SbomError>>) -> Result<T, SbomError> {
    h.join()
        .unwrap_or_else(|_| Err(SbomError::NotFound("a cargo query thread panicked".into())))
}

/// Computes the dependency graph of `binary` in `package` of the workspace at `manifest_dir`,
/// with exactly the given features, for the host target, from the locked lockfile, offline.
///
/// Includes normal and build dependencies (transitively); excludes dev-dependencies. See the
/// module documentation for how runtime and build-only packages are told apart.
///
/// One `cargo tree -e normal,build` run gives the graph (Cargo's own feature resolution, with
/// each node's features, licence and repository, and `[build-dependencies]` markers for edge
/// kinds); `cargo metadata --no-deps` checks that the binary exists; `Cargo.lock` gives the
/// checksums. They run concurrently.
pub fn resolve(
    manifest_dir: &Path,
    package: &str,
    binary: &str,
    features: &[String],
    no_default_features: bool,
) -> Result<Graph, SbomError> {
    let manifest = manifest_dir.join("Cargo.toml");
    let fetch_help = format!(
        "make sure {} has a complete Cargo.lock and its crates are downloaded: `cargo fetch --locked --manifest-path {}`",
        manifest_dir.display(),
        manifest.display()
    );
    let mut tree = Cmd::new(
        "cargo",
        "resolve the binary's dependency graph with cargo tree",
    );
    tree.help(&fetch_help)
        .arg("tree")
        .arg("--manifest-path")
        .arg(&manifest)
        .args([
            "-p",
            package,
            "-e",
            "normal,build",
            "--target",
            "host-tuple",
        ])
        .args([
            "--charset",
            "ascii",
            "--format",
            "{p}\t{f}\t{l}\t{r}",
            "--locked",
            "--offline",
        ]);
    if no_default_features {
        tree.arg("--no-default-features");
    }
    if !features.is_empty() {
        tree.arg("--features").arg(features.join(","));
    }
    // Independent queries: run them at once.
    let (target, meta, tree_out) = std::thread::scope(|s| {
        let t = s.spawn(host_triple);
        let m = s.spawn(|| metadata_no_deps(&manifest));
        let out = tree.run();
        (join(t), join(m), out)
    });
    let (target, meta, tree_out): (String, Metadata, _) = (target?, meta?, tree_out?);

    let root_meta = meta
        .packages
        .iter()
        .find(|p| p.name == package)
        .ok_or_else(|| SbomError::NotFound(format!(
            "package `{package}` is not a member of the workspace at {}\nhelp: check `package` in distro.toml",
            manifest_dir.display()
        )))?;
    if !root_meta
        .targets
        .iter()
        .any(|t| t.name == binary && t.kind.iter().any(|k| k == "bin"))
    {
        let bins: Vec<&str> = root_meta
            .targets
            .iter()
            .filter(|t| t.kind.iter().any(|k| k == "bin"))
            .map(|t| t.name.as_str())
            .collect();
        return Err(SbomError::NotFound(format!(
            "package `{package}` has no binary `{binary}` (it has: {})\nhelp: check `binary` in distro.toml",
            if bins.is_empty() { "none".to_string() } else { bins.join(", ") }
        )));
    }

    let lock_path = meta.workspace_root.join("Cargo.lock");
    let lock_text =
        std::fs::read_to_string(&lock_path).map_err(|e| SbomError::io("reading", &lock_path, e))?;
    let lock: Lockfile = toml::from_str(&lock_text).map_err(|e| SbomError::Parse {
        what: "Cargo.lock",
        origin: lock_path.display().to_string(),
        detail: e.to_string(),
    })?;
    let descriptions: HashMap<PathBuf, &str> = meta
        .packages
        .iter()
        .filter_map(|p| {
            let dir = p.manifest_path.parent()?.to_path_buf();
            p.description.as_deref().map(|d| (dir, d))
        })
        .collect();

    let lines = parse_tree(&String::from_utf8_lossy(&tree_out.stdout))?;
    build_graph(binary, target, &lines, &lock.package, &descriptions)
}

/// Turns parsed `cargo tree` lines into the graph.
///
/// Nodes of cargo tree are (package, features); a package can appear as several nodes (e.g. with
/// other features as a build dependency). Reachability is computed over nodes, so a dependency
/// that only a build-time instance of a package pulls in stays build-only; the published graph
/// merges nodes per package.
fn build_graph(
    binary: &str,
    target: String,
    lines: &[TreeLine],
    lock: &[LockPackage],
    descriptions: &HashMap<PathBuf, &str>,
) -> Result<Graph, SbomError> {
    let bad = |detail: String| SbomError::Parse {
        what: "cargo tree output",
        origin: "cargo tree".into(),
        detail,
    };
    // Packages by identity (name, version, extra); nodes by (package, features).
    let mut pkg_index: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    let mut pkgs: Vec<&TreeLine> = Vec::new();
    let mut node_index: HashMap<(usize, String), usize> = HashMap::new();
    let mut node_pkg: Vec<usize> = Vec::new();
    let mut node_proc_macro: Vec<bool> = Vec::new();
    let mut node_edges: Vec<BTreeSet<(usize, bool)>> = Vec::new(); // (child, is_build_edge)
    let mut features_of: Vec<BTreeSet<String>> = Vec::new();
    // Stack of (node, children are build dependencies).
    let mut stack: Vec<(usize, bool)> = Vec::new();
    for line in lines {
        match &line.kind {
            LineKind::BuildHeader => {
                if line.depth >= stack.len() {
                    return Err(bad(format!(
                        "[build-dependencies] at depth {} without a parent",
                        line.depth
                    )));
                }
                stack.truncate(line.depth + 1);
                if let Some(top) = stack.last_mut() {
                    top.1 = true;
                }
            }
            LineKind::Package(p) => {
                let key = (p.name.clone(), p.version.clone(), p.extra.clone());
                let pi = *pkg_index.entry(key).or_insert_with(|| {
                    pkgs.push(line);
                    features_of.push(BTreeSet::new());
                    pkgs.len() - 1
                });
                features_of[pi].extend(p.features.iter().cloned());
                let ni = *node_index
                    .entry((pi, p.features.join(",")))
                    .or_insert_with(|| {
                        node_pkg.push(pi);
                        node_proc_macro.push(p.proc_macro);
                        node_edges.push(BTreeSet::new());
                        node_pkg.len() - 1
                    });
                if line.depth > stack.len() {
                    return Err(bad(format!(
                        "depth jumps to {} after {}",
                        line.depth,
                        stack.len()
                    )));
                }
                stack.truncate(line.depth);
                if let Some(&(parent, build)) = stack.last() {
                    if parent != ni {
                        node_edges[parent].insert((ni, build));
                    }
                }
                stack.push((ni, false));
            }
        }
    }
    if pkgs.is_empty() {
        return Err(bad("no packages".into()));
    }
    // Runtime: reachable from the root through normal edges, never through a proc-macro.
    let mut runtime_node = vec![false; node_pkg.len()];
    let mut queue = vec![0usize];
    runtime_node[0] = true;
    while let Some(n) = queue.pop() {
        for &(c, build) in &node_edges[n] {
            if !build && !node_proc_macro[c] && !runtime_node[c] {
                runtime_node[c] = true;
                queue.push(c);
            }
        }
    }
    let mut runtime_pkg = vec![false; pkgs.len()];
    let mut pkg_edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); pkgs.len()];
    for (n, &p) in node_pkg.iter().enumerate() {
        runtime_pkg[p] |= runtime_node[n];
        for &(c, _) in &node_edges[n] {
            if node_pkg[c] != p {
                pkg_edges[p].insert(node_pkg[c]);
            }
        }
    }

    let mut packages = Vec::with_capacity(pkgs.len());
    for (i, line) in pkgs.iter().enumerate() {
        let LineKind::Package(p) = &line.kind else {
            continue;
        };
        let source = tree_source(p.extra.as_deref());
        let checksum = lock_checksum(lock, &p.name, &p.version, &source);
        let description = match &source {
            PkgSource::Local(Some(dir)) => descriptions
                .get(dir)
                .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" ")),
            _ => None,
        };
        packages.push(Package {
            name: p.name.clone(),
            version: p.version.clone(),
            source,
            license: p.license.clone(),
            checksum,
            kind: if runtime_pkg[i] {
                DepKind::Runtime
            } else {
                DepKind::Build
            },
            features: features_of[i].iter().cloned().collect(),
            dependencies: pkg_edges[i].iter().copied().collect(),
            description,
            repository: p.repository.clone(),
        });
    }
    Ok(Graph::normalized(binary.to_string(), target, 0, packages))
}

/// The source of a package from what cargo tree prints after its version.
fn tree_source(extra: Option<&str>) -> PkgSource {
    match extra {
        None => PkgSource::CratesIo,
        Some(e) if e.starts_with('/') => PkgSource::Local(Some(PathBuf::from(e))),
        Some(e) if e.starts_with("registry ") => PkgSource::Registry(
            e.trim_start_matches("registry ")
                .trim_matches('`')
                .to_string(),
        ),
        Some(e) => {
            let (url_q, rev) = e.split_once('#').unwrap_or((e, ""));
            let url = url_q.split('?').next().unwrap_or(url_q);
            PkgSource::Git {
                url: url.to_string(),
                rev: rev.to_string(),
            }
        }
    }
}

/// The Cargo.lock checksum of a registry package.
fn lock_checksum(
    lock: &[LockPackage],
    name: &str,
    version: &str,
    source: &PkgSource,
) -> Option<String> {
    let candidates: Vec<&LockPackage> = lock
        .iter()
        .filter(|l| l.name == name && l.version == version && l.checksum.is_some())
        .collect();
    let pick = match source {
        PkgSource::CratesIo => candidates.iter().find(|l| {
            l.source
                .as_deref()
                .is_some_and(|s| s == CRATES_IO_SOURCE || s == CRATES_IO_SPARSE_SOURCE)
        }),
        PkgSource::Registry(_) if candidates.len() == 1 => candidates.first(),
        PkgSource::Registry(name) => candidates.iter().find(|l| {
            l.source
                .as_deref()
                .is_some_and(|s| s.contains(name.as_str()))
        }),
        _ => None,
    };
    pick.and_then(|l| l.checksum.clone())
}

/// The `Cargo.toml` of workspace member `package` in the workspace at `manifest_dir`.
pub fn package_manifest(manifest_dir: &Path, package: &str) -> Result<PathBuf, SbomError> {
    let manifest = manifest_dir.join("Cargo.toml");
    let meta = metadata_no_deps(&manifest)?;
    meta.packages
        .into_iter()
        .find(|p| p.name == package)
        .map(|p| p.manifest_path)
        .ok_or_else(|| SbomError::NotFound(format!(
            "package `{package}` is not a member of the workspace at {}\nhelp: check `package` in distro.toml",
            manifest_dir.display()
        )))
}

/// One line of `cargo tree --charset ascii --format "{p}\t{f}\t{l}\t{r}"`.
struct TreeLine {
    depth: usize,
    kind: LineKind,
}

enum LineKind {
    /// `[build-dependencies]`: the following children of the node at `depth` are build edges.
    BuildHeader,
    /// A package node.
    Package(TreePkg),
}

/// A package as cargo tree prints it.
#[derive(Debug)]
struct TreePkg {
    name: String,
    version: String,
    /// What follows the version: a path, a git URL, `registry `name``; nothing for crates.io.
    extra: Option<String>,
    proc_macro: bool,
    features: Vec<String>,
    license: Option<String>,
    repository: Option<String>,
}

fn parse_tree(text: &str) -> Result<Vec<TreeLine>, SbomError> {
    let bad = |line: &str, why: &str| SbomError::Parse {
        what: "cargo tree output",
        origin: "cargo tree".into(),
        detail: format!("{why}: {line:?}"),
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // The tree drawing is made of 4-character groups: "|-- ", "`-- ", "|   ", "    ".
        let mut rest = line;
        let mut groups = 0;
        while let Some(g) = rest.get(..4) {
            if matches!(g, "|-- " | "`-- " | "|   " | "    ") {
                groups += 1;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        if rest.starts_with("[build-dependencies]") {
            out.push(TreeLine {
                depth: groups,
                kind: LineKind::BuildHeader,
            });
            continue;
        }
        if rest.starts_with('[') {
            // Other edge kinds are not requested; a header here means the output changed.
            return Err(bad(line, "unexpected section"));
        }
        let rest = rest.trim_end();
        let rest = rest.strip_suffix("(*)").unwrap_or(rest).trim_end();
        let mut fields = rest.split('\t');
        let p = fields.next().unwrap_or("").trim_end();
        let f = fields.next().unwrap_or("");
        let l = fields.next().unwrap_or("").trim();
        let r = fields.next().unwrap_or("").trim();
        let (p, proc_macro) = match p.strip_suffix("(proc-macro)") {
            Some(s) => (s.trim_end(), true),
            None => (p, false),
        };
        let (name, after) = p
            .split_once(" v")
            .ok_or_else(|| bad(line, "no ` v` before the version"))?;
        let (version, extra) = match after.split_once(' ') {
            Some((v, e)) => (
                v,
                Some(
                    e.trim()
                        .trim_start_matches('(')
                        .trim_end_matches(')')
                        .to_string(),
                ),
            ),
            None => (after, None),
        };
        out.push(TreeLine {
            depth: groups,
            kind: LineKind::Package(TreePkg {
                name: name.to_string(),
                version: version.to_string(),
                extra,
                proc_macro,
                features: f
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                license: (!l.is_empty()).then(|| l.to_string()),
                repository: (!r.is_empty()).then(|| r.to_string()),
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses depth, package, source, features, licence, repository, build-dependency headers,
    /// and the `(*)` and `(proc-macro)` markers of cargo tree's ascii output.
    #[test]
    fn parses_cargo_tree_lines() {
        let text = "app v0.1.0 (/w/app)\tfips\tMIT/Apache-2.0\t\n\
                    |-- serde_derive v1.0.229 (proc-macro)\tdefault\tMIT\thttps://g/serde (*)\n\
                    |   [build-dependencies]\n\
                    |   `-- cc v1.2.0\t\tMIT\t\n";
        let lines = parse_tree(text).unwrap_or_default();
        assert_eq!(lines.len(), 4);
        let LineKind::Package(root) = &lines[0].kind else {
            panic!("package")
        };
        assert_eq!(root.extra.as_deref(), Some("/w/app"));
        assert_eq!(root.features, vec!["fips".to_string()]);
        assert_eq!(root.license.as_deref(), Some("MIT/Apache-2.0"));
        let LineKind::Package(sd) = &lines[1].kind else {
            panic!("package")
        };
        assert_eq!(
            (lines[1].depth, sd.name.as_str(), sd.proc_macro),
            (1, "serde_derive", true)
        );
        assert_eq!(sd.repository.as_deref(), Some("https://g/serde"));
        assert!(matches!(lines[2].kind, LineKind::BuildHeader));
        assert_eq!(lines[2].depth, 1);
        assert_eq!(lines[3].depth, 2);
    }

    /// Build edges, proc-macros and what only they use are build-only; a package used both ways
    /// is runtime.
    #[test]
    fn runtime_and_build_kinds() {
        let text = "app v0.1.0 (/w/app)\t\t\t\n\
                    |-- both v1.0.0\t\t\t\n\
                    |-- derive v1.0.0 (proc-macro)\t\t\t\n\
                    |   `-- syn v2.0.0\t\t\t\n\
                    [build-dependencies]\n\
                    `-- cc v1.0.0\t\t\t\n\
                    \x20   `-- both v1.0.0\t\t\t\n";
        let lines = parse_tree(text).unwrap_or_default();
        let g = build_graph("app", String::new(), &lines, &[], &HashMap::new());
        let g = g.unwrap_or_else(|e| panic!("{e}"));
        let kind = |n: &str| g.find(n).map(|p| p.kind);
        assert_eq!(kind("app"), Some(DepKind::Runtime));
        assert_eq!(kind("both"), Some(DepKind::Runtime));
        assert_eq!(kind("derive"), Some(DepKind::Build));
        assert_eq!(kind("syn"), Some(DepKind::Build));
        assert_eq!(kind("cc"), Some(DepKind::Build));
        assert_eq!(g.root_package().name, "app");
    }

    /// Git and registry source ids map to the cargo-auditable source kinds.
    #[test]
    fn source_kinds() {
        assert_eq!(
            PkgSource::from_cargo(Some(CRATES_IO_SOURCE), None).auditable_kind(),
            "crates.io"
        );
        let git = PkgSource::from_cargo(Some("git+https://g.example/r?branch=x#abc"), None);
        assert_eq!(
            git,
            PkgSource::Git {
                url: "https://g.example/r".into(),
                rev: "abc".into()
            }
        );
        assert_eq!(PkgSource::from_cargo(None, None).auditable_kind(), "local");
        assert_eq!(
            PkgSource::from_cargo(Some("sparse+https://r.example/"), None).auditable_kind(),
            "registry"
        );
    }
}
