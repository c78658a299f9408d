//! `mesh-control`: the control plane of the mesh.
//!
//! It is a certificate authority issuing SPIFFE X.509-SVIDs from CSRs ([`ca`]), bootstraps
//! workloads with join tokens or service-account JWTs ([`tokens`]), loads the declarative mesh
//! configuration ([`config`]) and pushes each proxy its part over mTLS ([`server`], protocol in
//! `mesh_core::api`). Everything that must survive a restart lives in the state ([`state`]): a
//! local directory for one process, or etcd shared by several replicas.
#![forbid(unsafe_code)]

mod ca;
mod config;
mod durations;
#[cfg(test)]
mod fuzz_targets;
mod limits;
mod metrics;
mod server;
mod state;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use distro_schema::FipsSelfCheck;
use mesh_core::fips;
use mesh_core::identity::SpiffeId;

const COMPONENT: &str = "mesh-control";

/// mimalloc rather than glibc's malloc, as in mesh-proxy: what thousands of connected proxies'
/// connections free is returned to the system rather than kept fragmented. Rust's memory only;
/// AWS-LC allocates through the C library's malloc. Not in this binary's own unit tests: they
/// link distro-fuzz, whose metering allocator is the global one there.
#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The FIPS control plane of the mesh.
#[derive(Parser)]
#[command(name = COMPONENT, version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report what crypto module this binary links, whether it is in FIPS mode, and what every
    /// TLS configuration will negotiate. Exits non-zero when any of it is not FIPS.
    FipsCheck {
        /// The state the control plane will run with; for etcds://... the etcd client's TLS
        /// configuration is built from the files below and checked too (nothing is connected).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        tls: StateTlsArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Start the control plane (refuses to start unless in FIPS mode).
    Run(RunArgs),
    /// Join tokens for hosts outside a cluster.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The certificate authority: create, import (bring your own CA), rotate, show.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Copy a local state directory into etcd, for moving one control plane to replicas.
    MigrateState {
        /// The state directory of the single control plane (stop it first).
        #[arg(long)]
        from: PathBuf,
        /// The etcd state the replicas will use: etcd://HOST:PORT[,HOST:PORT...]/PREFIX, or
        /// etcds://... over TLS (the prefix must be empty).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        tls: StateTlsArgs,
        /// File with the key (64 hex digits) that seals the CA private keys in etcd; without
        /// it, the MESH_CONTROL_STATE_KEY environment variable.
        #[arg(long)]
        state_key_file: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check mesh configuration files without starting anything (exit 1 with every error).
    CheckConfig {
        /// Configuration directory (every *.toml) or file.
        config: PathBuf,
        /// Trust domain the identities must belong to.
        #[arg(long)]
        trust_domain: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Where the state is: a local directory (one process) or etcd (several replicas).
#[derive(Args, Clone)]
struct StateArgs {
    /// State directory (CA key, issued serials, config version, used tokens), for one process.
    #[arg(long, conflicts_with = "state", required_unless_present = "state")]
    state_dir: Option<PathBuf>,
    /// Shared state for several replicas: etcd://HOST:PORT[,HOST:PORT...]/PREFIX, or
    /// etcds://HOST:PORT[,HOST:PORT...]/PREFIX to reach every member over TLS (FIPS provider).
    #[arg(long)]
    state: Option<String>,
    /// File with the key (64 hex digits) that seals CA private keys in etcd; without it, the
    /// MESH_CONTROL_STATE_KEY environment variable. Not used for a state directory.
    #[arg(long)]
    state_key_file: Option<PathBuf>,
    #[command(flatten)]
    tls: StateTlsArgs,
}

/// TLS to etcd, for `--state etcds://...`.
#[derive(Args, Clone, Default)]
struct StateTlsArgs {
    /// CA bundle (PEM) that etcd's server certificate must chain to; needed for etcds://.
    #[arg(long)]
    state_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth; with --state-key.
    #[arg(long)]
    state_cert: Option<PathBuf>,
    /// Private key (PEM, mode 0600) of --state-cert. Not the key that seals CA keys, which is
    /// --state-key-file.
    #[arg(long)]
    state_key: Option<PathBuf>,
}

impl StateTlsArgs {
    /// The TLS configuration for the state `url` (`None` for a state that is not etcds://).
    fn load(&self, url: Option<&str>) -> anyhow::Result<Option<state::etcd_tls::EtcdTls>> {
        let files = state::etcd_tls::TlsFiles {
            ca: self.state_ca.clone(),
            cert: self.state_cert.clone(),
            key: self.state_key.clone(),
        };
        Ok(state::etcd_tls::EtcdTls::for_url(url, &files)?)
    }
}

impl StateArgs {
    fn etcd_tls(&self) -> anyhow::Result<Option<state::etcd_tls::EtcdTls>> {
        self.tls.load(self.state.as_deref())
    }

    fn open(&self) -> anyhow::Result<state::State> {
        self.open_with(self.etcd_tls()?)
    }

    /// Opens the state with `tls`, the configuration [`Self::etcd_tls`] made (so the FIPS
    /// report describes the object the connections use).
    fn open_with(&self, tls: Option<state::etcd_tls::EtcdTls>) -> anyhow::Result<state::State> {
        let key = if self.state.is_some() {
            state::seal::SealKey::load(self.state_key_file.as_deref())?
        } else {
            None
        };
        Ok(state::open(
            self.state_dir.as_deref(),
            self.state.as_deref(),
            key,
            tls,
        )?)
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Mesh configuration: a directory of *.toml files, or one file. Watched for changes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Trust domain; needed on the first start, when a new CA is created.
    #[arg(long)]
    trust_domain: Option<String>,
    /// Address of the TLS API (bootstrap, renew, config).
    #[arg(long, default_value = mesh_core::api::DEFAULT_CONTROL_ADDR)]
    listen: String,
    /// Address of the plain-HTTP ops endpoint (/healthz, /readyz, /metrics, /fips).
    #[arg(long, alias = "admin", default_value = mesh_core::api::DEFAULT_OPS_ADDR)]
    ops: String,
    /// Lifetime of issued SVIDs (e.g. 24h, 30m, 90s); 10s to 7d.
    #[arg(long, default_value = "24h", value_parser = |s: &str| durations::SVID_TTL.parse(s))]
    svid_ttl: Duration,
    /// Public key (SPKI PEM, P-256) of a trusted service-account token issuer; repeatable.
    #[arg(long)]
    sa_issuer_key: Vec<String>,
    /// The `iss` claim service-account tokens must carry (checked when given).
    #[arg(long)]
    sa_issuer: Option<String>,
    /// How often configuration files and CA state are checked for changes; 50ms to 1h.
    #[arg(long, default_value = "500ms", value_parser = |s: &str| durations::WATCH_INTERVAL.parse(s))]
    watch_interval: Duration,
    /// How long a configuration long-poll is held before answering 304; 1s to 10m.
    #[arg(long, default_value = "25s", value_parser = |s: &str| durations::LONG_POLL.parse(s))]
    long_poll: Duration,
    /// Time a client has to finish the TLS handshake on the API; 100ms to 5m.
    #[arg(long, default_value = "10s", value_parser = |s: &str| durations::io_timeout("--handshake-timeout").parse(s))]
    handshake_timeout: Duration,
    /// Time a client has to send its request headers (and the longest idle keep-alive); 100ms
    /// to 5m.
    #[arg(long, default_value = "10s", value_parser = |s: &str| durations::io_timeout("--header-read-timeout").parse(s))]
    header_read_timeout: Duration,
    /// Time a client has to send the request body it declared; 100ms to 5m.
    #[arg(long, default_value = "10s", value_parser = |s: &str| durations::io_timeout("--body-read-timeout").parse(s))]
    body_read_timeout: Duration,
    /// Open API connections in all; more are closed at once (keep it below the process's
    /// open-file limit, `ulimit -n`). Every connected proxy holds one.
    #[arg(long, default_value_t = 768, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Open API connections from one IP address; more are closed at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections_per_peer: u32,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a one-time join token bound to one identity; prints the token.
    Create {
        #[command(flatten)]
        state: StateArgs,
        /// The SPIFFE ID the token entitles.
        #[arg(long)]
        identity: String,
        /// How long the token is valid (e.g. 10m); 1m to 30d.
        #[arg(long, default_value = "10m", value_parser = |s: &str| durations::TOKEN_TTL.parse(s))]
        ttl: Duration,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum CaCmd {
    /// Create a self-signed signing CA (no-op when one exists).
    Init {
        #[command(flatten)]
        state: StateArgs,
        /// Trust domain.
        #[arg(long)]
        trust_domain: String,
    },
    /// Use an intermediate CA issued by your organisation's root.
    Import {
        #[command(flatten)]
        state: StateArgs,
        /// Trust domain (needed when the state directory is new).
        #[arg(long)]
        trust_domain: Option<String>,
        /// The intermediate CA certificate (PEM), optionally followed by its chain up to the root.
        #[arg(long)]
        cert: String,
        /// Its private key (PKCS#8 PEM).
        #[arg(long)]
        key: String,
        /// The organisation root(s) workloads must trust (PEM).
        #[arg(long)]
        roots: String,
        /// How long the previous CA stays trusted; 1s to 365d.
        #[arg(long, default_value = "1h", value_parser = |s: &str| durations::CA_OVERLAP.parse(s))]
        overlap: Duration,
    },
    /// Switch to a new self-signed CA; the old one stays trusted for the overlap period.
    Rotate {
        #[command(flatten)]
        state: StateArgs,
        /// How long the previous CA stays trusted; 1s to 365d.
        #[arg(long, default_value = "1h", value_parser = |s: &str| durations::CA_OVERLAP.parse(s))]
        overlap: Duration,
    },
    /// Show the CA generations and the trust bundle path.
    Status {
        #[command(flatten)]
        state: StateArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn report(etcd_tls: Option<&state::etcd_tls::EtcdTls>) -> anyhow::Result<FipsSelfCheck> {
    // The configuration mesh-control serves with, and the one it reaches etcd with (etcds://);
    // it originates no other TLS.
    let mut configs = vec![server::self_check_config()?];
    configs.extend(etcd_tls.map(state::etcd_tls::EtcdTls::report));
    Ok(fips::self_check(
        COMPONENT,
        env!("CARGO_PKG_VERSION"),
        configs,
    ))
}

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::FipsCheck { state, tls, format } => fips_check(state.as_deref(), &tls, format),
        Command::Run(args) => run(args),
        Command::Token(TokenCmd::Create {
            state,
            identity,
            ttl,
            format,
        }) => token_create(&state, &identity, ttl, format),
        Command::MigrateState {
            from,
            to,
            tls,
            state_key_file,
            format,
        } => migrate_state(&from, &to, &tls, state_key_file.as_deref(), format),
        Command::Ca(cmd) => ca_cmd(cmd),
        Command::CheckConfig {
            config,
            trust_domain,
            format,
        } => check_config(&config, &trust_domain, format),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{COMPONENT}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn fips_check(
    state_url: Option<&str>,
    tls: &StateTlsArgs,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let etcd_tls = tls.load(state_url)?;
    let r = report(etcd_tls.as_ref())?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Text => print!("{}", mesh_core::fips::render_text(&r)),
    }
    Ok(if fips::ensure_fips(&r).is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[allow(clippy::print_stderr)]
fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let etcd_tls = args.state.etcd_tls()?;
    let r = report(etcd_tls.as_ref())?;
    if let Err(e) = fips::ensure_fips(&r) {
        eprintln!("{COMPONENT}: refusing to start: {e}");
        return Ok(ExitCode::from(3));
    }
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut sa_issuers = Vec::new();
    for f in &args.sa_issuer_key {
        sa_issuers.push(tokens::load_sa_issuer(f, args.sa_issuer.clone())?);
    }
    let settings = server::Settings {
        state: args.state.open_with(etcd_tls)?,
        config: args.config,
        listen: args.listen,
        ops: args.ops,
        svid_ttl: args.svid_ttl,
        handshake_timeout: args.handshake_timeout,
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        max_connections: args.max_connections as usize,
        max_connections_per_peer: args.max_connections_per_peer as usize,
        sa_issuers,
        watch_interval: args.watch_interval,
        long_poll: args.long_poll,
        fips_report: r,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(server::run(settings, args.trust_domain))?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn token_create(
    state_args: &StateArgs,
    identity: &str,
    ttl: Duration,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let state = state_args.open()?;
    let td = ca::trust_domain(&state)?;
    if td.is_empty() {
        anyhow::bail!("{} holds no CA yet: start `mesh-control run --trust-domain ...` or run `mesh-control ca init` first", state.describe());
    }
    let id = SpiffeId::parse(identity)?;
    if id.trust_domain() != td {
        anyhow::bail!("identity {id} is outside this control plane's trust domain {td}");
    }
    let token = tokens::create_join_token(&state, &id, ttl)?;
    match format {
        Format::Text => println!("{token}"),
        Format::Json => println!(
            "{}",
            serde_json::json!({ "token": token, "identity": id.to_string(), "ttl_seconds": ttl.as_secs() })
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn ca_cmd(cmd: CaCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCmd::Init {
            state,
            trust_domain,
        } => {
            SpiffeId::parse(&format!("spiffe://{trust_domain}"))?;
            let state = state.open()?;
            let gen = ca::init(&state, &trust_domain)?;
            ca::Ca::load(&state, &trust_domain)?;
            eprintln!(
                "{COMPONENT}: CA generation {gen} active; trust bundle at {}",
                state.locate(state::BUNDLE)
            );
        }
        CaCmd::Import {
            state,
            trust_domain,
            cert,
            key,
            roots,
            overlap,
        } => {
            let state = state.open()?;
            let td = match (ca::trust_domain(&state)?, trust_domain) {
                (existing, _) if !existing.is_empty() => existing,
                (_, Some(td)) => td,
                (_, None) => anyhow::bail!("{} is new: pass --trust-domain", state.describe()),
            };
            let gen = ca::import(&state, &td, &cert, &key, &roots, overlap)?;
            ca::Ca::load(&state, &td)?;
            eprintln!(
                "{COMPONENT}: imported CA is generation {gen}; trust bundle at {}",
                state.locate(state::BUNDLE)
            );
        }
        CaCmd::Rotate { state, overlap } => {
            let state = state.open()?;
            let td = ca::trust_domain(&state)?;
            let gen = ca::rotate(&state, &td, overlap)?;
            ca::Ca::load(&state, &td)?;
            eprintln!(
                "{COMPONENT}: CA generation {gen} active; previous CAs trusted for {} more; a running control plane picks this up within its watch interval",
                durations::fmt(overlap)
            );
        }
        CaCmd::Status { state, format } => {
            let state = state.open()?;
            let st = ca::status(&state)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                Format::Text => {
                    println!("trust domain: {}", st.trust_domain);
                    println!("active:       {}", st.active);
                    for g in &st.generations {
                        println!(
                            "generation {}: created {}{}{}",
                            g.gen,
                            g.created,
                            if g.imported { ", imported" } else { "" },
                            g.trusted_until
                                .as_deref()
                                .map(|u| format!(", trusted until {u}"))
                                .unwrap_or_default()
                        );
                    }
                    println!("bundle:       {}", state.locate(state::BUNDLE));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn check_config(
    path: &std::path::Path,
    trust_domain: &str,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let result = config::load(path, trust_domain);
    match (format, &result) {
        (Format::Json, Ok(cfg)) => println!(
            "{}",
            serde_json::json!({ "valid": true, "errors": [], "digest": cfg.digest() })
        ),
        (Format::Json, Err(e)) => {
            println!("{}", serde_json::json!({ "valid": false, "errors": e.0 }))
        }
        (Format::Text, Ok(cfg)) => println!(
            "valid: {} services, {} routes, {} authorization rules",
            cfg.services.len(),
            cfg.routes.len(),
            cfg.authorization.len()
        ),
        (Format::Text, Err(e)) => {
            for err in &e.0 {
                println!("{err}");
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Copies every key of a local state directory into an empty etcd prefix. CA keys are sealed
/// with the operator's key on the way; a prefix that already holds a CA is refused, so a
/// running replicated control plane is never overwritten.
#[allow(clippy::print_stdout)]
fn migrate_state(
    from: &std::path::Path,
    to: &str,
    tls: &StateTlsArgs,
    key_file: Option<&std::path::Path>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    if !(to.starts_with(state::etcd::PLAIN_SCHEME) || to.starts_with(state::etcd::TLS_SCHEME)) {
        anyhow::bail!(
            "--to {to}: expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX (etcds:// for TLS)"
        );
    }
    let etcd_tls = tls.load(Some(to))?;
    if !from.join(state::CA_STATE).is_file() {
        anyhow::bail!(
            "{}: no {} here; this is not a mesh-control state directory",
            from.display(),
            state::CA_STATE
        );
    }
    let src = state::State::open_dir(from)?;
    let key = state::seal::SealKey::load(key_file)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the CA private keys are sealed in etcd with an operator key: pass --state-key-file FILE or set {} (64 hex digits, e.g. from `openssl rand -hex 32`)",
            state::seal::ENV
        )
    })?;
    let dst = state::open(None, Some(to), Some(key), etcd_tls)?;
    if dst.get(state::CA_STATE)?.is_some() {
        anyhow::bail!(
            "{} already holds a control plane's state; choose an empty prefix",
            dst.describe()
        );
    }
    let mut keys = Vec::new();
    for prefix in ["ca/", "tokens/", "used/", "issued/"] {
        keys.extend(src.backend().list(prefix)?);
    }
    for k in [state::BUNDLE, state::CONFIG] {
        if src.get(k)?.is_some() {
            keys.push(k.to_string());
        }
    }
    // ca/state.json last: replicas started early see no CA until every file it names is there.
    keys.sort_by_key(|k| k == state::CA_STATE);
    let mut copied = 0usize;
    for k in &keys {
        let Some(e) = src.get(k)? else { continue };
        let private = k.starts_with("ca/") && k.ends_with(".key.pem");
        if !dst.put_if(k, None, &e.data, private)? {
            anyhow::bail!(
                "{} appeared while copying; another migration or replica is writing this prefix",
                dst.locate(k)
            );
        }
        copied += 1;
    }
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({ "from": from.display().to_string(), "to": dst.describe(), "keys_copied": copied })
        ),
        Format::Text => println!(
            "copied {copied} keys from {} to {}; start the replicas with --state {to}",
            from.display(),
            dst.describe()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
