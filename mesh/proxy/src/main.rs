//! `mesh-proxy`: the sidecar of the mesh.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use distro_schema::FipsSelfCheck;
use mesh_core::fips;
use mesh_proxy::config::LocalConfig;
use mesh_proxy::tls::TlsState;
use mesh_proxy::{admin, control, inbound, outbound, Proxy};
use tokio::net::TcpListener;

const COMPONENT: &str = "mesh-proxy";

/// mimalloc rather than glibc's malloc: after a flood of connections glibc kept the freed
/// buffers resident, fragmented, and RSS crept up round after round (bench/proxy/soak.sh);
/// mimalloc returns freed pages to the system. It allocates Rust's memory only; AWS-LC's own
/// allocations go through its OPENSSL_malloc to the C library's malloc as before.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The FIPS sidecar proxy of the mesh.
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
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Start the proxy (refuses to start unless in FIPS mode).
    Run {
        /// Local configuration file (JSON): listeners, identity or control plane, limits, and
        /// optionally a static mesh configuration.
        #[arg(long)]
        config: PathBuf,
        /// Override the admin address of the file.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        log_format: Format,
        /// Worker threads (default: one per CPU the process may use; 1 runs everything on a
        /// single thread).
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// The proxy's real TLS configurations (inbound server, outbound client, control-plane
/// client), built by the same code `run` uses, on a throw-away identity.
fn report() -> anyhow::Result<FipsSelfCheck> {
    let id = mesh_core::tls::EphemeralIdentity::new(
        "spiffe://fips-check.invalid/ns/default/sa/fips-check",
    )?;
    let state = TlsState::new();
    let mut bundle = String::new();
    // The ephemeral CA is not exported as PEM; trust the leaf itself for the self-check.
    for c in &id.chain {
        bundle.push_str(&pem("CERTIFICATE", c.as_ref()));
    }
    state.set_trust_bundle(&bundle)?;
    state.set_identity(id.chain.clone(), id.key())?;
    let server = state.server_config()?;
    let client = state.client_config(
        "spiffe://fips-check.invalid/ns/default/sa/fips-check",
        mesh_proxy::tls::Alpn::Http,
    )?;
    let control = state.control_client_config(true)?;
    let configs = vec![
        mesh_core::tls::describe_server("inbound", &server),
        mesh_core::tls::describe_client("outbound", &client),
        mesh_core::tls::describe_client("control-plane-client", &control),
    ];
    Ok(fips::self_check(
        COMPONENT,
        env!("CARGO_PKG_VERSION"),
        configs,
    ))
}

fn pem(label: &str, der: &[u8]) -> String {
    mesh_core::identity::pem_encode(label, der)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::FipsCheck { format } => report().map(|r| {
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default())
                }
                Format::Text => print!("{}", mesh_core::fips::render_text(&r)),
            }
            if fips::ensure_fips(&r).is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }),
        Command::Run {
            config,
            admin,
            log_format,
            threads,
        } => run(config, admin, log_format, threads),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{COMPONENT}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr)]
fn run(
    path: PathBuf,
    admin: Option<std::net::SocketAddr>,
    log_format: Format,
    threads: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let r = report()?;
    if let Err(e) = fips::ensure_fips(&r) {
        // Only a binary compiled without the FIPS module (feature `non-fips`, which `distro
        // build` refuses as a release) can be told to run anyway, so `bench/proxy/run.sh` can
        // measure what FIPS mode costs. A FIPS build ignores the variable.
        let bench = !mesh_core::crypto::FIPS_BUILD
            && std::env::var("MESH_PROXY_NON_FIPS_BENCHMARK").as_deref() == Ok("1");
        if !bench {
            eprintln!("{COMPONENT}: refusing to start: {e}");
            return Ok(ExitCode::from(3));
        }
        eprintln!("{COMPONENT}: WARNING: not FIPS ({e}); running only because this is a non-fips build and MESH_PROXY_NON_FIPS_BENCHMARK=1");
    }
    let mut local = LocalConfig::load(&path)?;
    if let Some(a) = admin {
        local.admin = a;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESH_PROXY_LOG")
        .unwrap_or_else(|_| "info".into());
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log_format {
        Format::Json => sub.json().init(),
        Format::Text => sub.init(),
    }
    // By default one worker per CPU the process may use (a container's CPU quota included).
    // One worker: a single-threaded runtime, so accepting, the connections and the timers
    // share one thread and nothing is handed from one thread to another.
    let workers = threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let mut rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    rt.enable_all();
    let rt = rt.build().context("cannot start the async runtime")?;
    rt.block_on(serve(local, r))
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what}); is another process using it?"))
}

async fn serve(local: LocalConfig, report: FipsSelfCheck) -> anyhow::Result<ExitCode> {
    let module = report.module_version_string.clone();
    let proxy = Proxy::new(local, report);
    let l = proxy.local.clone();
    if let Some(files) = &l.identity {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        proxy
            .tls
            .set_trust_bundle(&read(&files.trust_bundle)?)
            .with_context(|| files.trust_bundle.display().to_string())?;
        let chain = mesh_core::identity::certs_from_pem(&read(&files.cert_chain)?)
            .with_context(|| files.cert_chain.display().to_string())?;
        let key = mesh_core::identity::key_from_pem(&read(&files.key)?).with_context(|| {
            format!(
                "{} (expected a PKCS#8 or SEC1 private key)",
                files.key.display()
            )
        })?;
        let info = proxy
            .tls
            .set_identity(chain, key)
            .with_context(|| files.cert_chain.display().to_string())?;
        tracing::info!(spiffe_id = %info.spiffe_id, "loaded workload certificate from files");
    }
    if let Some(mesh) = l.mesh.clone() {
        proxy
            .apply_config(0, "static", mesh)
            .map_err(|e| anyhow::anyhow!("static mesh configuration: {e}"))?;
    }
    let admin_l = bind(l.admin, "admin").await?;
    tokio::spawn(admin::serve(proxy.clone(), admin_l));
    if let Some(inb) = &l.inbound {
        let listener = bind(inb.listen, "inbound").await?;
        tokio::spawn(inbound::Inbound::new(proxy.clone(), inb.clone()).serve(listener));
    }
    let out = outbound::Outbound::new(proxy.clone());
    for o in &l.outbound {
        let listener = bind(o.listen, "outbound").await?;
        tokio::spawn(out.clone().serve_explicit(listener, o.service.clone()));
    }
    if let Some(t) = &l.transparent {
        let listener = bind(t.listen, "transparent").await?;
        tokio::spawn(out.clone().serve_transparent(listener));
    }
    tracing::info!(module = %module, admin = %l.admin, "FIPS mode on; listeners up");
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    if let Some(cp) = l.control_plane.clone() {
        let p = proxy.clone();
        tokio::spawn(async move {
            if let Err(e) = control::start(p, cp).await {
                let _ = fatal_tx.send(e.to_string());
            }
        });
    } else {
        drop(fatal_tx);
    }
    let fatal = async {
        match fatal_rx.await {
            Ok(e) => e,
            // No control plane, or bootstrap succeeded: nothing fatal can come.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(ExitCode::SUCCESS)
        }
        e = fatal => {
            tracing::error!(error = %e, "bootstrap impossible: get a new token (mesh-control token create) and restart");
            Ok(ExitCode::from(4))
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
