//! Bringing an environment up from a profile and tearing it down.
//!
//! One profile is one isolated world: a gateway namespace holding one bridge per network (and
//! the gateway's own address on each, so it routes between subnets and has no route out), and
//! one namespace per host attached to its network by a veth pair created directly between the
//! gateway namespace and the host namespace. Nothing is created in the root namespace but the
//! namespaces themselves, so profiles never share anything and run in parallel, and subnets may
//! even repeat between profiles. Everything is named with the run id and written to the
//! [`Ledger`] before it is created.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distro_hostio::{write_atomic, Cmd, CmdError, PRIVATE, PUBLIC};

use crate::exec::in_ns;
use crate::ledger::{Ledger, LedgerError};
use crate::profile::{prefix_v4, prefix_v6, Family, Host, Kind, Line, Profile, Role};

/// The trust domain of every environment.
pub const TRUST_DOMAIN: &str = "conformance.test";
/// The control plane's TLS API port.
pub const CP_PORT: u16 = 15012;
/// The control plane's ops port (loopback of its namespace).
pub const CP_OPS_PORT: u16 = 15010;
/// Each proxy's inbound mTLS port.
pub const INBOUND_PORT: u16 = 15006;
/// Each proxy's admin port (loopback of its namespace).
pub const ADMIN_PORT: u16 = 15000;
/// Each application's port (loopback of its namespace).
pub const APP_PORT: u16 = 8080;
/// First outbound listener port (loopback); one per service, in service order.
pub const OUTBOUND_BASE: u16 = 15101;
/// First port of the delay relays in the gateway namespace.
pub const RELAY_BASE: u16 = 20000;

/// Why an environment could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A command failed, or could not be started.
    #[error(transparent)]
    Cmd(Box<CmdError>),
    /// A file of the environment could not be written atomically.
    #[error(transparent)]
    Write(#[from] distro_hostio::WriteError),
    /// The ledger could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A file of the environment could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A process did not become ready.
    #[error("{what} {how}{log}")]
    NotReady {
        /// Which process, on which host.
        what: String,
        /// `exited before it was ready` or `was not ready within N ms`.
        how: String,
        /// The tail of its log.
        log: String,
    },
    /// A released artifact is missing.
    #[error("{0}")]
    Artifact(String),
}

impl From<CmdError> for EnvError {
    fn from(e: CmdError) -> Self {
        EnvError::Cmd(Box::new(e))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EnvError + '_ {
    move |source| EnvError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The released artifacts of one line: `<out>/<line>/bin/*` and `<out>/<line>/images/*/oci`.
#[derive(Debug, Clone)]
pub struct LineArtifacts {
    /// The line's directory (`<out>/<line>`).
    pub dir: PathBuf,
    /// Its name (the directory name).
    pub name: String,
}

/// `MAJOR.MINOR` (or `MAJOR.MINOR.PATCH`) of a line directory's name, for ordering lines.
pub fn line_version(name: &str) -> Option<(u64, u64, u64)> {
    let mut it = name.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = match it.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    it.next().is_none().then_some((major, minor, patch))
}

impl LineArtifacts {
    /// `dir` is `<out>/<line>` (it has `bin/`), or an `--out` directory: its one line, or the
    /// newest of several named `MAJOR.MINOR`.
    pub fn locate(dir: &Path) -> Result<LineArtifacts, EnvError> {
        let pick = if dir.join("bin").is_dir() {
            dir.to_path_buf()
        } else {
            let lines: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io(dir))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("bin").is_dir())
                .collect();
            let newest = lines
                .iter()
                .filter_map(|p| Some((line_version(p.file_name()?.to_str()?)?, p)))
                .max_by_key(|(v, _)| *v)
                .map(|(_, p)| p.clone());
            match (lines.as_slice(), newest) {
                ([one], _) => one.clone(),
                ([], _) => {
                    return Err(EnvError::Artifact(format!(
                        "{}: no `bin/` directory here or in a line below it; pass the output of \
                         `distro build --out DIR` (DIR or DIR/<line>)",
                        dir.display()
                    )))
                }
                // Several lines (a distribution with more than one): the newest is the line
                // under test, the one before it N-1 (see `default_previous`).
                (_, Some(pick)) => {
                    tracing::info!(
                        "{} holds {} lines; testing the newest, {} (pass {}/<line> for another)",
                        dir.display(),
                        lines.len(),
                        pick.display(),
                        dir.display()
                    );
                    pick
                }
                (_, None) => {
                    return Err(EnvError::Artifact(format!(
                        "{}: holds several lines; pass one of them: {}",
                        dir.display(),
                        lines
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
        };
        let name = pick
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(LineArtifacts { dir: pick, name })
    }

    /// A released binary.
    pub fn bin(&self, component: &str) -> Result<PathBuf, EnvError> {
        let p = self.dir.join("bin").join(component);
        if p.is_file() {
            Ok(p)
        } else {
            Err(EnvError::Artifact(format!(
                "{} is missing: run `distro build --out {}` first",
                p.display(),
                self.dir.parent().unwrap_or(&self.dir).display()
            )))
        }
    }

    /// A released image (OCI layout).
    pub fn image(&self, component: &str) -> Result<PathBuf, EnvError> {
        let p = self.dir.join("images").join(component).join("oci");
        if p.join("index.json").is_file() {
            Ok(p)
        } else {
            Err(EnvError::Artifact(format!(
                "{} is missing: run `distro image --out {}` first",
                p.display(),
                self.dir.parent().unwrap_or(&self.dir).display()
            )))
        }
    }

    /// What identifies this line's build, from `build.json`: the line, the source commit, and
    /// per component the FIPS module version and the binary's digest. Best effort: a missing
    /// or foreign file gives nothing.
    pub fn versions(&self) -> Vec<(String, String)> {
        let Ok(text) = std::fs::read_to_string(self.dir.join("build.json")) else {
            return Vec::new();
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(l) = v["line"].as_str() {
            out.push(("line".to_string(), l.to_string()));
        }
        if let Some(c) = v["source"]["commit"].as_str() {
            out.push(("source_commit".to_string(), c.to_string()));
        }
        if let Some(cs) = v["components"].as_array() {
            for c in cs {
                let Some(n) = c["name"].as_str() else {
                    continue;
                };
                if let Some(m) = c["fips"]["module_version"].as_str() {
                    out.push((format!("{n}.fips_module"), m.to_string()));
                }
                if let Some(d) = c["sha256"].as_str() {
                    out.push((format!("{n}.sha256"), d.to_string()));
                }
            }
        }
        out
    }
}

/// What one environment runs from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `--line`.
    pub current: LineArtifacts,
    /// `--previous-line` (the current line when absent).
    pub previous: LineArtifacts,
    /// The program that runs the fixtures (`distro`, which has `conformance fixture`).
    pub fixture_bin: PathBuf,
    /// Run container hosts as containers (false: as bare binaries, for a build without
    /// runnable images; the summary says so).
    pub containers: bool,
    /// Leave the environment's files behind (debugging).
    pub keep_files: bool,
}

/// A started process in a host namespace.
#[derive(Debug)]
pub struct Proc {
    /// What it is.
    pub what: String,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    /// For containers: the runc container id.
    pub container: Option<String>,
    child: Option<Child>,
}

impl Proc {
    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The tail of its log, newline-first (empty when the log is).
    pub fn log_tail(&self) -> String {
        let tail = distro_hostio::cmd::log_tail(&self.log);
        if tail.is_empty() {
            tail
        } else {
            format!("\n{tail}")
        }
    }
}

/// One host, brought up.
#[derive(Debug)]
pub struct HostRt {
    /// Its profile entry.
    pub spec: Host,
    /// Its namespace.
    pub ns: String,
    /// IPv4 address, when its network has IPv4.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 address, when its network has IPv6.
    pub v6: Option<Ipv6Addr>,
    /// Its directory (config, tokens, logs).
    pub dir: PathBuf,
    /// Its SPIFFE ID, for workloads.
    pub spiffe_id: Option<String>,
    /// Its application, for workloads.
    pub app: Mutex<Option<Proc>>,
    /// Its mesh binary (proxy, control plane or registry).
    pub main: Mutex<Option<Proc>>,
}

impl HostRt {
    /// The address others reach it by.
    pub fn addr(&self) -> IpAddr {
        match (self.spec.family, self.v4, self.v6) {
            (Some(Family::Ipv6), _, Some(v6)) => IpAddr::V6(v6),
            (_, Some(v4), _) => IpAddr::V4(v4),
            (_, _, Some(v6)) => IpAddr::V6(v6),
            // Invariant: validation guarantees each network has v4 or v6.
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// The name of the file whose existence makes its application answer 503.
    pub fn fail_file(&self) -> PathBuf {
        self.dir.join("fail")
    }
}

/// A running environment.
pub struct Env {
    /// The profile.
    pub profile: Profile,
    /// Run id (prefix of every name).
    pub run_id: String,
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// This environment's directory.
    pub dir: PathBuf,
    /// The gateway namespace.
    pub gateway: String,
    /// The hosts.
    pub hosts: Vec<HostRt>,
    /// What it runs.
    pub inputs: Inputs,
    /// The control plane's mesh configuration directory.
    pub mesh_dir: PathBuf,
    /// The control plane's state directory.
    pub cp_state: PathBuf,
    /// Delay relays: (target, relay address).
    pub relays: Vec<(SocketAddr, SocketAddr)>,
    /// Addresses of the `impostor` service's endpoints: zero-delay relays in the gateway to
    /// each backend's inbound (distinct addresses, so no endpoint address appears under two
    /// identities).
    pub impostor_addrs: Vec<SocketAddr>,
    /// Air-gapped: images pulled from the mirror, (host, component, OCI layout).
    pub pulled: crate::mirror::Pulled,
    /// Services in outbound-port order.
    pub services: Vec<String>,
    /// Current `backend` split weights `[v1, v2]` (scenarios change them).
    pub weights: Mutex<[u32; 2]>,
    /// Extra TOML appended to the generated mesh configuration (scenarios change it).
    pub extra_mesh: Mutex<String>,
    /// Other processes (relays).
    others: Mutex<Vec<Proc>>,
}

/// The SPIFFE ID of a workload service.
pub fn spiffe_id(service: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/sa/{service}")
}

impl Env {
    /// The host with role `control`.
    pub fn control(&self) -> &HostRt {
        // Invariant: validation guarantees exactly one.
        self.hosts
            .iter()
            .find(|h| h.spec.role == Role::Control)
            .unwrap_or(&self.hosts[0])
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&HostRt> {
        self.hosts.iter().find(|h| h.spec.name == name)
    }

    /// Workload hosts.
    pub fn workloads(&self) -> impl Iterator<Item = &HostRt> {
        self.hosts.iter().filter(|h| h.spec.role == Role::Workload)
    }

    /// Workloads serving `service`.
    pub fn serving(&self, service: &str) -> Vec<&HostRt> {
        self.workloads()
            .filter(|h| h.spec.service.as_deref() == Some(service))
            .collect()
    }

    /// The first `frontend` workload (the caller of every scenario).
    pub fn frontend(&self) -> &HostRt {
        self.serving("frontend")
            .first()
            .copied()
            .unwrap_or(&self.hosts[0])
    }

    /// The loopback port of the outbound listener for `service` on every workload.
    pub fn outbound_port(&self, service: &str) -> Option<u16> {
        self.services
            .iter()
            .position(|s| s == service)
            .map(|i| OUTBOUND_BASE + i as u16)
    }

    /// The line's artifacts a host runs.
    pub fn line_of(&self, h: &Host) -> &LineArtifacts {
        match h.line {
            Line::Current => &self.inputs.current,
            Line::Previous => &self.inputs.previous,
        }
    }

    /// The address by which others reach `port` on `h`: through the delay relay when its
    /// network is delayed.
    pub fn reach(&self, h: &HostRt, port: u16) -> SocketAddr {
        let direct = SocketAddr::new(h.addr(), port);
        self.relays
            .iter()
            .find(|(t, _)| *t == direct)
            .map(|(_, r)| *r)
            .unwrap_or(direct)
    }

    /// Runs a command in a host namespace (for scenarios).
    pub fn exec(&self, h: &HostRt, program: &str, why: &str) -> Cmd {
        in_ns(&h.ns, program, why)
    }

    /// Brings the environment up: namespaces, links, impairments, the control plane, every
    /// workload with its sidecar. On error the caller still calls [`Env::teardown`] (the
    /// ledger knows what exists).
    pub fn bring_up(
        profile: &Profile,
        run_id: &str,
        ledger: Arc<Ledger>,
        work: &Path,
        inputs: Inputs,
    ) -> Result<Env, EnvError> {
        let dir = work.join(&profile.name);
        if !inputs.keep_files {
            ledger.dir(&dir)?;
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tag = format!("{run_id}-{}", short(&profile.name));
        let gateway = format!("{tag}-gw");
        let mut env = Env {
            profile: profile.clone(),
            run_id: run_id.to_string(),
            ledger,
            mesh_dir: dir.join("mesh"),
            cp_state: dir.join("cp-state"),
            dir: dir.clone(),
            gateway,
            hosts: Vec::new(),
            inputs,
            relays: Vec::new(),
            impostor_addrs: Vec::new(),
            pulled: Vec::new(),
            services: Vec::new(),
            weights: Mutex::new(profile.thresholds.split_weights),
            extra_mesh: Mutex::new(String::new()),
            others: Mutex::new(Vec::new()),
        };
        env.network(&tag)?;
        if env.inputs.containers {
            env.pulled = crate::mirror::prepare(&env)?;
        }
        env.start_relays()?;
        env.plan_services();
        env.start_control()?;
        env.start_workloads()?;
        Ok(env)
    }

    fn netns_add(&self, name: &str) -> Result<(), EnvError> {
        self.ledger.netns(name)?;
        Cmd::new("ip", format!("create network namespace {name}"))
            .args(["netns", "add", name])
            .run()?;
        in_ns(name, "ip", "bring up loopback")
            .args(["link", "set", "lo", "up"])
            .run()?;
        Ok(())
    }

    fn network(&mut self, tag: &str) -> Result<(), EnvError> {
        let gw = self.gateway.clone();
        self.netns_add(&gw)?;
        let p = &self.profile;
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            in_ns(&gw, "sysctl", "let the gateway route between the subnets")
                .args(["-qw", key])
                .run()?;
        }
        for (ni, n) in p.networks.iter().enumerate() {
            let br = format!("br{ni}");
            in_ns(&gw, "ip", format!("bridge for network {}", n.name))
                .args(["link", "add", &br, "type", "bridge"])
                .run()?;
            if let Some(pre) = n.ipv4.as_deref().and_then(prefix_v4) {
                in_ns(&gw, "ip", "gateway address on the bridge")
                    .args(["addr", "add", &format!("{pre}1/24"), "dev", &br])
                    .run()?;
            }
            if let Some(pre) = n.ipv6.as_deref().and_then(prefix_v6) {
                in_ns(&gw, "ip", "gateway IPv6 address on the bridge")
                    .args(["addr", "add", &format!("{pre}1/64"), "dev", &br, "nodad"])
                    .run()?;
            }
            in_ns(&gw, "ip", "bring the bridge up")
                .args(["link", "set", &br, "up"])
                .run()?;
        }
        let hosts = p.hosts.clone();
        let mut index_in_net = std::collections::BTreeMap::<String, u8>::new();
        for (hi, h) in hosts.iter().enumerate() {
            let ns = format!("{tag}-{}", h.name);
            self.netns_add(&ns)?;
            let (ni, net) = p
                .networks
                .iter()
                .enumerate()
                .find(|(_, n)| n.name == h.network)
                .ok_or_else(|| EnvError::Artifact(format!("host {} has no network", h.name)))?;
            let idx = index_in_net.entry(net.name.clone()).or_insert(9);
            *idx += 1;
            let veth = format!("h{hi}");
            in_ns(
                &gw,
                "ip",
                format!("link host {} to network {}", h.name, net.name),
            )
            .args([
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])
            .run()?;
            in_ns(&gw, "ip", "attach the host's link to its bridge")
                .args(["link", "set", &veth, "master", &format!("br{ni}"), "up"])
                .run()?;
            let v4 = net
                .ipv4
                .as_deref()
                .and_then(prefix_v4)
                .and_then(|pre| format!("{pre}{idx}").parse::<Ipv4Addr>().ok());
            let v6 = net
                .ipv6
                .as_deref()
                .and_then(prefix_v6)
                .and_then(|pre| format!("{pre}{idx:x}").parse::<Ipv6Addr>().ok());
            if let (Some(a), Some(pre)) = (v4, net.ipv4.as_deref().and_then(prefix_v4)) {
                in_ns(&ns, "ip", "host address")
                    .args(["addr", "add", &format!("{a}/24"), "dev", "eth0"])
                    .run()?;
                in_ns(&ns, "ip", "host link up")
                    .args(["link", "set", "eth0", "up"])
                    .run()?;
                for other in p.networks.iter().filter(|o| o.name != net.name) {
                    if let Some(sub) = &other.ipv4 {
                        in_ns(
                            &ns,
                            "ip",
                            format!("route to network {} via the gateway", other.name),
                        )
                        .args(["route", "add", sub, "via", &format!("{pre}1")])
                        .run()?;
                    }
                }
            }
            if let (Some(a), Some(pre)) = (v6, net.ipv6.as_deref().and_then(prefix_v6)) {
                in_ns(&ns, "ip", "host IPv6 address")
                    .args(["addr", "add", &format!("{a}/64"), "dev", "eth0", "nodad"])
                    .run()?;
                in_ns(&ns, "ip", "host link up")
                    .args(["link", "set", "eth0", "up"])
                    .run()?;
                for other in p.networks.iter().filter(|o| o.name != net.name) {
                    if let Some(sub) = &other.ipv6 {
                        in_ns(
                            &ns,
                            "ip",
                            format!("IPv6 route to network {} via the gateway", other.name),
                        )
                        .args(["-6", "route", "add", sub, "via", &format!("{pre}1")])
                        .run()?;
                    }
                }
            }
            if let Some(link) = p.link_of(&net.name) {
                if let Some(mtu) = link.mtu {
                    let mtu = mtu.to_string();
                    in_ns(&gw, "ip", "link MTU (gateway side)")
                        .args(["link", "set", &veth, "mtu", &mtu])
                        .run()?;
                    in_ns(&ns, "ip", "link MTU (host side)")
                        .args(["link", "set", "eth0", "mtu", &mtu])
                        .run()?;
                }
                if let Some(rate) = &link.rate {
                    for (where_, dev) in [(&gw, veth.as_str()), (&ns, "eth0")] {
                        in_ns(where_, "tc", "bandwidth limit (tbf)")
                            .args([
                                "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst",
                                "32kbit", "latency", "400ms",
                            ])
                            .run()?;
                    }
                }
                if let Some(loss) = link.loss_percent {
                    let prob = format!("{:.4}", loss / 100.0);
                    for tool in ["iptables", "ip6tables"] {
                        in_ns(&ns, tool, "random packet loss (iptables statistic)")
                            .args([
                                "-A",
                                "INPUT",
                                "-i",
                                "eth0",
                                "-m",
                                "statistic",
                                "--mode",
                                "random",
                                "--probability",
                                &prob,
                                "-j",
                                "DROP",
                            ])
                            .run()?;
                    }
                }
            }
            let hdir = self.dir.join(&h.name);
            std::fs::create_dir_all(&hdir).map_err(io(&hdir))?;
            self.hosts.push(HostRt {
                spiffe_id: h.service.as_deref().map(spiffe_id),
                spec: h.clone(),
                ns,
                v4,
                v6,
                dir: hdir,
                app: Mutex::new(None),
                main: Mutex::new(None),
            });
        }
        Ok(())
    }

    fn spawn(
        &self,
        ns: &str,
        program: &Path,
        args: &[String],
        what: &str,
        log: &Path,
    ) -> Result<Proc, EnvError> {
        let mut c = in_ns(ns, program, what.to_string());
        c.args(args);
        let mut child = c.spawn_logged(log)?;
        // A ledger closed by a signal's cleanup: nobody would remove this process later.
        if let Err(e) = self.ledger.pid(child.id()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.into());
        }
        Ok(Proc {
            what: what.to_string(),
            log: log.to_path_buf(),
            container: None,
            child: Some(child),
        })
    }

    /// Starts `program` in `h`'s namespace, recorded in the ledger.
    pub(crate) fn spawn_in(
        &self,
        h: &HostRt,
        program: &Path,
        args: &[String],
        what: &str,
        log: &Path,
    ) -> Result<Proc, EnvError> {
        self.spawn(&h.ns, program, args, what, log)
    }

    /// Keeps a process until tear-down.
    pub(crate) fn keep(&self, p: Proc) {
        if let Ok(mut o) = self.others.lock() {
            o.push(p);
        }
    }

    /// Waits until `GET 127.0.0.1:port{path}` in `h` answers 200 (its main process alive).
    pub(crate) fn wait_ready(
        &self,
        h: &HostRt,
        port: u16,
        path: &str,
        what: &str,
    ) -> Result<(), EnvError> {
        self.wait_http(h, port, path, what)
    }

    /// Starts the delay relays: for every host on a delayed network, a relay in the gateway
    /// namespace for each port others use (control plane API, proxy inbound).
    fn start_relays(&mut self) -> Result<(), EnvError> {
        let mut port = RELAY_BASE;
        let mut relays = Vec::new();
        let mut impostors = Vec::new();
        let mut procs = Vec::new();
        for h in &self.hosts {
            let delay = self
                .profile
                .link_of(&h.spec.network)
                .and_then(|l| l.delay_ms);
            let target_port = match h.spec.role {
                Role::Control => CP_PORT,
                Role::Workload => INBOUND_PORT,
                _ => continue,
            };
            let target = SocketAddr::new(h.addr(), target_port);
            let impostor = h.spec.service.as_deref() == Some("backend");
            for (purpose, delay) in [("delay", delay), ("impostor", impostor.then_some(0))] {
                let Some(delay) = delay else { continue };
                let listen = SocketAddr::new(gateway_addr(h.addr()), port);
                port += 1;
                let log = self
                    .dir
                    .join(format!("relay-{purpose}-{}.log", h.spec.name));
                let p = self.spawn(
                    &self.gateway,
                    &self.inputs.fixture_bin,
                    &[
                        "conformance".into(),
                        "fixture".into(),
                        "relay".into(),
                        "--listen".into(),
                        listen.to_string(),
                        "--to".into(),
                        target.to_string(),
                        "--delay-ms".into(),
                        delay.to_string(),
                    ],
                    &format!("{purpose} relay {listen} → {target}"),
                    &log,
                )?;
                procs.push(p);
                if purpose == "delay" {
                    relays.push((target, listen));
                } else {
                    impostors.push(listen);
                }
            }
        }
        self.relays = relays;
        self.impostor_addrs = impostors;
        if let Ok(mut o) = self.others.lock() {
            o.extend(procs);
        }
        Ok(())
    }

    fn plan_services(&mut self) {
        let mut s: Vec<String> = self
            .workloads()
            .filter_map(|h| h.spec.service.clone())
            .collect();
        s.sort();
        s.dedup();
        s.retain(|x| x != "frontend");
        // Fixtures of the scenarios: the same backends without a split and with retries, and
        // the backends under an identity they do not have.
        s.push("backend-retry".into());
        s.push("impostor".into());
        self.services = s;
    }

    /// The mesh configuration (TOML) for the current weights and extra rules.
    pub fn mesh_toml(&self) -> String {
        let p = &self.profile;
        let mut t = String::new();
        t.push_str(
            "# Generated by distro conformance from the profile; rewritten by scenarios.\n[tls]\n",
        );
        t.push_str(&format!(
            "min_version = {:?}\n",
            p.mesh_tls.min_version.as_deref().unwrap_or("TLSv1_2")
        ));
        if !p.mesh_tls.cipher_suites.is_empty() {
            t.push_str(&format!("cipher_suites = {:?}\n", p.mesh_tls.cipher_suites));
        }
        if !p.mesh_tls.kx_groups.is_empty() {
            t.push_str(&format!("kx_groups = {:?}\n", p.mesh_tls.kx_groups));
        }
        let endpoints = |service: &str| {
            let mut e = String::new();
            for h in self.serving(service) {
                let id = h.spiffe_id.clone().unwrap_or_default();
                e.push_str(&format!(
                    "[[services.endpoints]]\naddress = \"{}\"\nidentity = \"{id}\"\nlabels = {{ version = \"{}\" }}\n",
                    self.reach(h, INBOUND_PORT),
                    h.spec.version.as_deref().unwrap_or("v1"),
                ));
            }
            e
        };
        for s in &self.services {
            t.push_str(&format!(
                "\n[[services]]\nname = \"{s}\"\nprotocol = \"http\"\n"
            ));
            match s.as_str() {
                "backend-retry" => t.push_str(&endpoints("backend")),
                "impostor" => {
                    for a in &self.impostor_addrs {
                        t.push_str(&format!(
                            "[[services.endpoints]]\naddress = \"{a}\"\nidentity = \"{}\"\n",
                            spiffe_id("impostor")
                        ));
                    }
                }
                other => t.push_str(&endpoints(other)),
            }
        }
        let w = self.weights.lock().map(|w| *w).unwrap_or([50, 50]);
        let mut dests = Vec::new();
        for (i, v) in ["v1", "v2"].iter().enumerate() {
            if self
                .serving("backend")
                .iter()
                .any(|h| h.spec.version.as_deref().unwrap_or("v1") == *v)
            {
                dests.push(format!(
                    "{{ labels = {{ version = \"{v}\" }}, weight = {} }}",
                    w[i]
                ));
            }
        }
        t.push_str(&format!(
            "\n[[routes]]\nservice = \"backend\"\nname = \"split\"\ndestinations = [{}]\n",
            dests.join(", ")
        ));
        t.push_str(
            "\n[[routes]]\nservice = \"backend-retry\"\nname = \"retry\"\ndestinations = [{ weight = 1 }]\nretries = { attempts = 3, per_try_timeout_ms = 2000, budget_percent = 100 }\n",
        );
        let mut sources: Vec<String> = self
            .workloads()
            .filter(|h| h.spec.service.as_deref() != Some("backend"))
            .filter_map(|h| h.spiffe_id.clone())
            .collect();
        sources.sort();
        sources.dedup();
        for svc in self
            .workloads()
            .filter_map(|h| h.spec.service.clone())
            .collect::<std::collections::BTreeSet<_>>()
        {
            t.push_str(&format!(
                "\n[[authorization]]\nworkload = \"{}\"\nname = \"mesh-reads-api\"\naction = \"ALLOW\"\nsources = {sources:?}\nmethods = [\"GET\"]\npaths = [\"/api\"]\n",
                spiffe_id(&svc)
            ));
        }
        if let Ok(x) = self.extra_mesh.lock() {
            t.push_str(&x);
        }
        t
    }

    /// Rewrites the control plane's configuration (atomically; it watches the directory).
    pub fn push_mesh(&self) -> Result<(), EnvError> {
        Ok(write_atomic(
            &self.mesh_dir.join("mesh.toml"),
            self.mesh_toml().as_bytes(),
            PUBLIC,
        )?)
    }

    fn start_control(&mut self) -> Result<(), EnvError> {
        std::fs::create_dir_all(&self.mesh_dir).map_err(io(&self.mesh_dir))?;
        std::fs::create_dir_all(&self.cp_state).map_err(io(&self.cp_state))?;
        self.push_mesh()?;
        self.launch_control()
    }

    /// Starts the control plane again after an outage (same state, same arguments).
    pub fn restart_control(&self) -> Result<(), EnvError> {
        self.launch_control()
    }

    /// Runs `mesh-control run` on the control host with the environment's state, trust domain
    /// and configuration, and waits for its /healthz.
    fn launch_control(&self) -> Result<(), EnvError> {
        let cp = self.control();
        let listen = SocketAddr::new(cp.addr(), CP_PORT);
        let args: Vec<String> = [
            "run",
            "--state-dir",
            &self.cp_state.display().to_string(),
            "--trust-domain",
            TRUST_DOMAIN,
            "--config",
            &self.mesh_dir.display().to_string(),
            "--listen",
            &listen.to_string(),
            "--ops",
            &format!("127.0.0.1:{CP_OPS_PORT}"),
            "--svid-ttl",
            &self.profile.thresholds.svid_ttl,
            "--watch-interval",
            "200ms",
            "--long-poll",
            "10s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let proc = self.start_component(cp, "mesh-control", &args)?;
        if let Ok(mut m) = cp.main.lock() {
            *m = Some(proc);
        }
        self.wait_http(cp, CP_OPS_PORT, "/healthz", "mesh-control")
    }

    /// Stops a host's main process (the control plane outage).
    pub fn stop_main(&self, h: &HostRt) {
        let p = h.main.lock().ok().and_then(|mut m| m.take());
        if let Some(p) = p {
            self.stop_proc(p);
        }
    }

    fn stop_proc(&self, mut p: Proc) {
        if let Some(id) = &p.container {
            let root = self.runc_root();
            let _ = Cmd::new("runc", "stop a container")
                .arg("--root")
                .arg(&root)
                .args(["kill", id, "KILL"])
                .output();
            let _ = Cmd::new("runc", "remove a container")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", id])
                .output();
        }
        if let Some(mut c) = p.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// runc's state root for this run (kept apart from the system's containers).
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// Starts `component` (`mesh-control`, `mesh-proxy`) on `h` with `args`: the released image
    /// under runc for container hosts, the released binary for VM hosts.
    fn start_component(
        &self,
        h: &HostRt,
        component: &str,
        args: &[String],
    ) -> Result<Proc, EnvError> {
        let line = self.line_of(&h.spec);
        let log = h.dir.join(format!("{component}.log"));
        if h.spec.kind == Kind::Container && self.inputs.containers {
            return crate::container::start(self, h, line, component, args, &log);
        }
        let bin = line.bin(component)?;
        self.spawn(
            &h.ns,
            &bin,
            args,
            &format!("{component} on {}", h.spec.name),
            &log,
        )
    }

    /// Records a runc container, for cleanup.
    pub(crate) fn record_container(&self, id: &str) -> Result<(), EnvError> {
        Ok(self.ledger.runc(&self.runc_root(), id)?)
    }

    /// Records a started process, for cleanup.
    pub(crate) fn record_pid(&self, pid: u32) -> Result<(), EnvError> {
        Ok(self.ledger.pid(pid)?)
    }

    pub(crate) fn proc_of(
        what: String,
        log: PathBuf,
        container: Option<String>,
        child: Child,
    ) -> Proc {
        Proc {
            what,
            log,
            container,
            child: Some(child),
        }
    }

    /// A `mesh-control` command on its state directory, as the user the control plane runs as
    /// (the image's user for a container), so the files it writes stay readable to it.
    pub fn state_cmd(&self, bin: &Path, why: &str) -> Cmd {
        let cp = self.control();
        if cp.spec.kind == Kind::Container && self.inputs.containers {
            let uid = crate::container::CONTAINER_UID;
            let mut c = Cmd::new("setpriv", why.to_string());
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".to_string(),
            ]);
            c.arg(bin);
            c
        } else {
            Cmd::new(bin, why.to_string())
        }
    }

    /// A one-time join token for `identity`, from the control plane's state directory.
    pub fn join_token(&self, identity: &str) -> Result<String, EnvError> {
        let cp = self.control();
        let bin = self.line_of(&cp.spec).bin("mesh-control")?;
        let out = self
            .state_cmd(&bin, &format!("create a join token for {identity}"))
            .args(["token", "create", "--state-dir"])
            .arg(&self.cp_state)
            .args(["--identity", identity, "--ttl", "30m"])
            .run()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn start_workloads(&mut self) -> Result<(), EnvError> {
        let cp = self.control();
        let bundle = self.cp_state.join("bundle.pem");
        for h in self.workloads() {
            let name = h.spec.name.clone();
            let app_log = h.dir.join("app.log");
            let app = self.spawn(
                &h.ns,
                &self.inputs.fixture_bin,
                &[
                    "conformance".into(),
                    "fixture".into(),
                    "app".into(),
                    "--listen".into(),
                    format!("127.0.0.1:{APP_PORT}"),
                    "--name".into(),
                    name.clone(),
                    "--app-version".into(),
                    h.spec.version.clone().unwrap_or_else(|| "v1".into()),
                    "--fail-file".into(),
                    h.fail_file().display().to_string(),
                ],
                &format!("application on {name}"),
                &app_log,
            )?;
            if let Ok(mut a) = h.app.lock() {
                *a = Some(app);
            }
            let id = h.spiffe_id.clone().unwrap_or_default();
            let token_file = h.dir.join("join.token");
            // A secret: the proxy's user alone reads it (a container's after its chown).
            write_atomic(&token_file, self.join_token(&id)?.as_bytes(), PRIVATE)?;
            let any = if h.v6.is_some() { "[::]" } else { "0.0.0.0" };
            let outbound: Vec<serde_json::Value> = self
                .services
                .iter()
                .filter(|s| Some(s.as_str()) != h.spec.service.as_deref())
                .filter_map(|s| {
                    self.outbound_port(s).map(
                        |p| serde_json::json!({"service": s, "listen": format!("127.0.0.1:{p}")}),
                    )
                })
                .collect();
            let cfg = serde_json::json!({
                "admin": format!("127.0.0.1:{ADMIN_PORT}"),
                "inbound": {"listen": format!("{any}:{INBOUND_PORT}"), "app": format!("127.0.0.1:{APP_PORT}"), "protocol": "http"},
                "outbound": outbound,
                "control_plane": {
                    "address": self.reach(cp, CP_PORT).to_string(),
                    "ca_bundle": bundle,
                    "token_file": token_file,
                    "backoff_max_ms": 500,
                },
            });
            let cfg_path = h.dir.join("proxy.json");
            write_atomic(
                &cfg_path,
                serde_json::to_string_pretty(&cfg)
                    .unwrap_or_default()
                    .as_bytes(),
                PUBLIC,
            )?;
            let args: Vec<String> = vec![
                "run".into(),
                "--config".into(),
                cfg_path.display().to_string(),
                "--threads".into(),
                "1".into(),
            ];
            let proc = self.start_component(h, "mesh-proxy", &args)?;
            if let Ok(mut m) = h.main.lock() {
                *m = Some(proc);
            }
        }
        for h in self.workloads() {
            self.wait_http_of(h, &h.app, APP_PORT, "/", "the application")?;
            self.wait_http(h, ADMIN_PORT, "/ready", "mesh-proxy")?;
        }
        Ok(())
    }

    /// GET `path` on `127.0.0.1:port` inside `h`'s namespace with curl: (status, body).
    pub fn http_local(&self, h: &HostRt, port: u16, path: &str) -> (u16, String) {
        let out = in_ns(&h.ns, "curl", format!("ask {} for {path}", h.spec.name))
            .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output();
        let Ok(out) = out else {
            return (0, String::new());
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// JSON from a proxy's admin endpoint.
    pub fn admin_json(&self, h: &HostRt, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.http_local(h, ADMIN_PORT, path).1).unwrap_or_default()
    }

    fn wait_http(&self, h: &HostRt, port: u16, path: &str, what: &str) -> Result<(), EnvError> {
        self.wait_http_of(h, &h.main, port, path, what)
    }

    fn wait_http_of(
        &self,
        h: &HostRt,
        slot: &Mutex<Option<Proc>>,
        port: u16,
        path: &str,
        what: &str,
    ) -> Result<(), EnvError> {
        let timeout = self.profile.thresholds.ready_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout);
        loop {
            if self.http_local(h, port, path).0 == 200 {
                return Ok(());
            }
            let dead = slot
                .lock()
                .map(|mut m| m.as_mut().is_some_and(|p| !p.alive()))
                .unwrap_or(false);
            if dead || Instant::now() > deadline {
                let log = slot
                    .lock()
                    .ok()
                    .and_then(|m| m.as_ref().map(|p| p.log_tail()))
                    .unwrap_or_default();
                return Err(EnvError::NotReady {
                    what: format!("{what} on {} ({})", h.spec.name, h.ns),
                    how: if dead {
                        "exited before it was ready".into()
                    } else {
                        format!("was not ready within {timeout} ms")
                    },
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every proxy runs configuration version `>= version`; returns the time it
    /// took or `None` after `limit`.
    pub fn wait_config_version(&self, version: u64, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let all = self.workloads().all(|h| {
                self.admin_json(h, "/config")["config_version"]
                    .as_u64()
                    .is_some_and(|v| v >= version)
            });
            if all {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Tears everything down through the ledger. Returns what could not be removed.
    pub fn teardown(self) -> Vec<String> {
        let mut procs = Vec::new();
        for h in &self.hosts {
            if let Ok(mut m) = h.main.lock() {
                procs.extend(m.take());
            }
            if let Ok(mut a) = h.app.lock() {
                procs.extend(a.take());
            }
        }
        if let Ok(mut o) = self.others.lock() {
            procs.append(&mut o);
        }
        for p in procs {
            self.stop_proc(p);
        }
        Vec::new()
    }
}

/// The gateway's address on the network of `a` (`.1` / `::1`).
fn gateway_addr(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(a) => {
            let o = a.octets();
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 1))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 1))
        }
    }
}

/// A short form of a profile name for namespace names (`version-skew-control-behind` → `vscb`).
pub fn short(name: &str) -> String {
    let parts: Vec<&str> = name.split('-').collect();
    if parts.len() == 1 {
        name.chars().take(8).collect()
    } else {
        parts.iter().filter_map(|p| p.chars().next()).collect()
    }
}
