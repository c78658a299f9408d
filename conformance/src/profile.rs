//! Environment profiles: declarative TOML files under `conformance/profiles/` naming networks,
//! hosts (with their role and whether they run containers or bare binaries), link impairments
//! and the capabilities scenarios select on. Thresholds sit beside each profile in
//! `<name>.thresholds.toml`. The runner never hard-codes an environment: everything it brings up
//! comes from here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a profile could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read profile {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a profile.
    #[error("{path}:{line}: {message} (see conformance/profiles/README.md for the format)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// Well-formed but inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// `--profile` named a profile that does not exist.
    #[error("no profile named `{name}` in {dir}; available: {available}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// Where profiles were looked up.
        dir: PathBuf,
        /// Comma-separated names that exist.
        available: String,
    },
}

/// A network (one L2 segment; hosts on different networks reach each other through the
/// environment's gateway namespace, which routes between all of them and has no way out).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Short name, unique in the profile.
    pub name: String,
    /// IPv4 subnet (`/24`), if the network has IPv4.
    #[serde(default)]
    pub ipv4: Option<String>,
    /// IPv6 subnet (`/64`), if the network has IPv6.
    #[serde(default)]
    pub ipv6: Option<String>,
}

/// What a host does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs `mesh-control`.
    Control,
    /// An application with its `mesh-proxy` sidecar.
    Workload,
    /// A mirror registry (Debian `docker-registry`) the images are pulled from.
    Registry,
    /// No mesh: the non-mesh and non-FIPS clients (curl, openssl s_client) run here.
    Client,
}

/// How a host's mesh binaries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The released OCI image, unpacked with `umoci` and run under `runc` in the host's netns.
    #[default]
    Container,
    /// The released bare binaries (a legacy VM), joined with a one-time token.
    Vm,
}

/// Which line of the distribution a host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Line {
    /// `--line`.
    #[default]
    Current,
    /// `--previous-line`.
    Previous,
}

/// One host: a network namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Short name (letters, digits, `-`), unique in the profile.
    pub name: String,
    /// The network it is attached to.
    pub network: String,
    /// What it does.
    pub role: Role,
    /// Containers or bare binaries.
    #[serde(default)]
    pub kind: Kind,
    /// Which line it runs.
    #[serde(default)]
    pub line: Line,
    /// For workloads: the mesh service it serves (`frontend` calls, `backend` answers).
    #[serde(default)]
    pub service: Option<String>,
    /// For workloads: the `version` label of its endpoint.
    #[serde(default)]
    pub version: Option<String>,
    /// Address family others reach it by when its network has both (`ipv4` or `ipv6`).
    #[serde(default)]
    pub family: Option<Family>,
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// Impairments of every attachment to one network (both ends of each veth).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// The network.
    pub network: String,
    /// MTU of the attachments.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Added latency, each direction, in milliseconds: a userspace TCP relay in the gateway
    /// namespace (the kernel here has no netem) delays every byte to and from these hosts.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Random packet loss in percent (`iptables -m statistic --mode random`), on ingress of the
    /// hosts of this network.
    #[serde(default)]
    pub loss_percent: Option<f64>,
    /// Bandwidth limit (`tc tbf` rate, e.g. `10mbit`).
    #[serde(default)]
    pub rate: Option<String>,
}

/// The mesh-wide TLS policy a profile imposes (the FIPS-strict profile narrows it).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MeshTls {
    /// `TLSv1_2` or `TLSv1_3`.
    #[serde(default)]
    pub min_version: Option<String>,
    /// Cipher suites (rustls names).
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups.
    #[serde(default)]
    pub kx_groups: Vec<String>,
}

/// Limits scenarios are judged by; each profile has its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Every proxy must have a pushed configuration within this time.
    pub config_push_ms: u64,
    /// Largest allowed |observed share − configured share| of a traffic split.
    pub split_tolerance: f64,
    /// Requests sent for a traffic split.
    pub split_requests: u32,
    /// Weights of the `v1` and `v2` backends in the split.
    pub split_weights: [u32; 2],
    /// Requests sent in the retry scenario.
    pub retry_requests: u32,
    /// Slowest single mTLS request allowed in the connectivity scenario.
    pub request_max_ms: u64,
    /// How long load runs around a CA rotation or an outage, in seconds.
    pub load_seconds: u64,
    /// SVID lifetime the control plane issues (short, so rotation happens during the run).
    pub svid_ttl: String,
    /// How long a bring-up step (a process becoming ready) may take.
    pub ready_timeout_ms: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            config_push_ms: 2000,
            split_tolerance: 0.1,
            split_requests: 200,
            split_weights: [80, 20],
            retry_requests: 60,
            request_max_ms: 1000,
            load_seconds: 8,
            svid_ttl: "1h".into(),
            ready_timeout_ms: 30_000,
        }
    }
}

/// A loaded profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// File stem.
    #[serde(skip)]
    pub name: String,
    /// Where it was read from.
    #[serde(skip)]
    pub path: PathBuf,
    /// The customer environment it emulates.
    pub description: String,
    /// What it supports; scenarios whose requirements are not all here are `unsupported`.
    pub capabilities: BTreeSet<String>,
    /// Networks.
    pub networks: Vec<Network>,
    /// Hosts.
    pub hosts: Vec<Host>,
    /// Link impairments.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Mesh-wide TLS policy.
    #[serde(default)]
    pub mesh_tls: MeshTls,
    /// From `<name>.thresholds.toml` (defaults where absent).
    #[serde(skip)]
    pub thresholds: Thresholds,
    /// File name → hex sha256 of the bytes [`Profile::load`] read and parsed (the profile and,
    /// when present, its thresholds file): what a result records is what was run.
    #[serde(skip)]
    definition: std::collections::BTreeMap<String, String>,
}

/// Every capability a profile may declare; a typo is an error, not a silently unsupported
/// scenario.
pub const CAPABILITIES: &[&str] = &[
    "mtls",
    "identity",
    "authorization",
    "non-mesh-client",
    "non-fips-client",
    "traffic-split",
    "retries",
    "ca-rotation",
    "config-push",
    "cp-outage",
    "metrics",
    "air-gapped",
    "upgrade",
    "impaired-link",
];

impl Profile {
    /// Reads `path` and the thresholds file beside it.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut p: Profile = parse(path, &text)?;
        p.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        p.path = path.to_path_buf();
        p.record_definition(path, &text);
        let tpath = path.with_file_name(format!("{}.thresholds.toml", p.name));
        if tpath.exists() {
            let t = std::fs::read_to_string(&tpath).map_err(|source| ProfileError::Read {
                path: tpath.clone(),
                source,
            })?;
            p.thresholds = parse(&tpath, &t)?;
            p.record_definition(&tpath, &t);
        }
        p.validate()?;
        Ok(p)
    }

    fn record_definition(&mut self, file: &Path, text: &str) {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.definition
            .insert(name, distro_hostio::sha256_hex(text.as_bytes()));
    }

    fn invalid(&self, message: String) -> ProfileError {
        ProfileError::Invalid {
            path: self.path.clone(),
            message,
        }
    }

    fn validate(&self) -> Result<(), ProfileError> {
        for c in &self.capabilities {
            if !CAPABILITIES.contains(&c.as_str()) {
                return Err(self.invalid(format!(
                    "unknown capability `{c}`; known: {}",
                    CAPABILITIES.join(", ")
                )));
            }
        }
        let mut names = BTreeSet::new();
        for n in &self.networks {
            if n.ipv4.is_none() && n.ipv6.is_none() {
                return Err(self.invalid(format!(
                    "network `{}` has neither `ipv4` nor `ipv6`",
                    n.name
                )));
            }
            if let Some(v4) = &n.ipv4 {
                prefix_v4(v4).ok_or_else(|| {
                    self.invalid(format!(
                        "network `{}`: ipv4 `{v4}` is not a /24 like 10.80.1.0/24",
                        n.name
                    ))
                })?;
            }
            if let Some(v6) = &n.ipv6 {
                prefix_v6(v6).ok_or_else(|| {
                    self.invalid(format!(
                        "network `{}`: ipv6 `{v6}` is not a /64 like fd80:1::/64",
                        n.name
                    ))
                })?;
            }
            if !names.insert(n.name.clone()) {
                return Err(self.invalid(format!("network `{}` is defined twice", n.name)));
            }
        }
        let mut hosts = BTreeSet::new();
        for h in &self.hosts {
            if h.name.is_empty()
                || h.name.len() > 12
                || !h
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(self.invalid(format!(
                    "host `{}`: names are 1-12 characters of a-z, 0-9 and `-`",
                    h.name
                )));
            }
            if !hosts.insert(h.name.clone()) {
                return Err(self.invalid(format!("host `{}` is defined twice", h.name)));
            }
            if !names.contains(&h.network) {
                return Err(self.invalid(format!(
                    "host `{}` is on unknown network `{}`",
                    h.name, h.network
                )));
            }
            if h.role == Role::Workload && h.service.is_none() {
                return Err(self.invalid(format!(
                    "workload `{}` needs `service` (the mesh service it serves)",
                    h.name
                )));
            }
        }
        let count = |r: Role| self.hosts.iter().filter(|h| h.role == r).count();
        if count(Role::Control) != 1 {
            return Err(self.invalid("exactly one host must have role `control`".into()));
        }
        for svc in ["frontend", "backend"] {
            if !self
                .hosts
                .iter()
                .any(|h| h.role == Role::Workload && h.service.as_deref() == Some(svc))
            {
                return Err(self.invalid(format!(
                    "a workload with service `{svc}` is required (scenarios call frontend → backend)"
                )));
            }
        }
        for l in &self.links {
            if !names.contains(&l.network) {
                return Err(self.invalid(format!("link on unknown network `{}`", l.network)));
            }
        }
        if self.capabilities.contains("air-gapped") && count(Role::Registry) != 1 {
            return Err(
                self.invalid("capability `air-gapped` needs one host with role `registry`".into())
            );
        }
        if (self.capabilities.contains("non-mesh-client")
            || self.capabilities.contains("non-fips-client"))
            && count(Role::Client) == 0
        {
            return Err(self.invalid(
                "non-mesh/non-FIPS client scenarios need a host with role `client`".into(),
            ));
        }
        Ok(())
    }

    /// The files that define this profile (`<name>.toml` and, when present,
    /// `<name>.thresholds.toml`) → hex sha256 of the contents that were loaded.
    pub fn definition_sha256(&self) -> std::collections::BTreeMap<String, String> {
        self.definition.clone()
    }

    /// Whether any host runs the previous line.
    pub fn uses_previous_line(&self) -> bool {
        self.hosts.iter().any(|h| h.line == Line::Previous)
    }

    /// Whether any host runs a container.
    pub fn uses_containers(&self) -> bool {
        self.hosts
            .iter()
            .any(|h| h.kind == Kind::Container && matches!(h.role, Role::Control | Role::Workload))
    }

    /// The network a host is on.
    pub fn network_of(&self, host: &Host) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == host.network)
    }

    /// The impairments of a network, if any.
    pub fn link_of(&self, network: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.network == network)
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ProfileError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1
            })
            .unwrap_or(1);
        ProfileError::Parse {
            path: path.to_path_buf(),
            line,
            message: e.message().to_string(),
        }
    })
}

/// `10.80.1.0/24` → `10.80.1.`.
pub fn prefix_v4(subnet: &str) -> Option<String> {
    let net = subnet.strip_suffix(".0/24")?;
    let parts: Vec<&str> = net.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())).then(|| format!("{net}."))
}

/// `fd80:1::/64` → `fd80:1::`.
pub fn prefix_v6(subnet: &str) -> Option<String> {
    let net = subnet.strip_suffix("/64")?;
    let addr: std::net::Ipv6Addr = net.parse().ok()?;
    let seg = addr.segments();
    (seg[4..].iter().all(|s| *s == 0) && net.ends_with("::")).then(|| net.to_string())
}

/// The built-in profiles' directory (beside this crate's manifest).
pub fn builtin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}

/// Every profile in `dir` (files `*.toml` that are not `*.thresholds.toml`), sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Profile>, ProfileError> {
    let rd = std::fs::read_dir(dir).map_err(|source| ProfileError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
            n.is_some_and(|n| n.ends_with(".toml") && !n.ends_with(".thresholds.toml"))
        })
        .collect();
    paths.sort();
    paths.iter().map(|p| Profile::load(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digests a result records are of the bytes that were loaded (both files), and a
    /// thresholds file that is changed afterwards does not change them: what ran is recorded.
    #[test]
    fn definition_digests_are_of_what_was_loaded() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for f in ["flat.toml", "flat.thresholds.toml"] {
            std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap_or_else(|e| panic!("{e}"));
        }
        let p = Profile::load(&dir.path().join("flat.toml")).unwrap_or_else(|e| panic!("{e}"));
        let d = p.definition_sha256();
        assert_eq!(d.len(), 2, "{d:?}");
        for (name, digest) in &d {
            let bytes = std::fs::read(dir.path().join(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(digest, &distro_hostio::sha256_hex(&bytes), "{name}");
        }
        std::fs::write(dir.path().join("flat.thresholds.toml"), "# changed\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.definition_sha256(), d);
    }
}
