//! `mesh-proxy`: the sidecar of the mesh.
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use distro_schema::FipsSelfCheck;
use mesh_core::{fips, tls};

const COMPONENT: &str = "mesh-proxy";

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
        /// Address of the admin endpoint.
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn report() -> anyhow::Result<FipsSelfCheck> {
    let configs = tls::self_check_configs()?;
    Ok(fips::self_check(COMPONENT, env!("CARGO_PKG_VERSION"), configs))
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::FipsCheck { format } => report().map(|r| {
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
                Format::Text => print!("{}", mesh_core::fips::render_text(&r)),
            }
            if fips::ensure_fips(&r).is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }),
        Command::Run { admin } => run(&admin),
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
fn run(admin: &str) -> anyhow::Result<ExitCode> {
    let r = report()?;
    if let Err(e) = fips::ensure_fips(&r) {
        eprintln!("{COMPONENT}: refusing to start: {e}");
        return Ok(ExitCode::from(3));
    }
    let listener = TcpListener::bind(admin)
        .map_err(|e| anyhow::anyhow!("cannot listen on admin address {admin}: {e}"))?;
    eprintln!(
        "{COMPONENT}: FIPS mode on ({}), admin on {}",
        r.module_version_string,
        listener.local_addr()?
    );
    mesh_core::admin::serve(listener, r)?;
    Ok(ExitCode::SUCCESS)
}
