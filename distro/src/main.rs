//! `distro`: build, patch, attest and release a FIPS-hardened service-mesh distribution.
//!
//! The binary is thin: it parses arguments, loads the distribution definition, calls one library
//! entry point per subcommand (`src/cmd/<subcommand>.rs`) and renders the result. Data goes to
//! stdout, logs and progress to stderr.
#![forbid(unsafe_code)]

mod cmd;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd::Context;
use crate::output::FormatArg;

/// Build, patch, attest and release a FIPS-hardened service-mesh distribution.
#[derive(Parser)]
#[command(name = "distro", version, propagate_version = true)]
struct Cli {
    /// Distribution definition to use (default: the built-in distro/distro.toml).
    //
    // "Built-in" is the checkout's own: ./distro.toml, else distro/distro.toml of the nearest
    // directory at or above the working directory (see `cmd::find_config`). The help text is
    // kept short: it appears in every subcommand's --help snapshot.
    #[arg(long, global = true, value_name = "PATH", env = "DISTRO_CONFIG")]
    config: Option<PathBuf>,
    /// Output format of reports on stdout.
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// Only print errors on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build every component of a release line in FIPS mode, with evidence and provenance.
    Build(cmd::build::Args),
    /// Show the support matrix: every line's dates, status and advisories.
    Matrix(cmd::matrix::Args),
    /// Show or refresh the RustSec advisory database snapshot the reports use.
    #[command(subcommand)]
    Advisories(cmd::advisories::Command),
    /// Manage security patch queues: backport, apply, remediate, VEX.
    #[command(subcommand)]
    Patches(cmd::patches::Command),
    /// Write CycloneDX and SPDX SBOMs of built binaries.
    Sbom(cmd::sbom::Args),
    /// Check licences, banned crates, sources and advisories with cargo-deny.
    Policy(cmd::policy::Args),
    /// Assemble OCI images of built components.
    Image(cmd::image::Args),
    /// Write an ECDSA P-256 signing key pair.
    Keygen(cmd::keygen::Args),
    /// Push an image to a registry.
    Push(cmd::push::Args),
    /// Pull an image from a registry, verifying it before anything is written.
    Pull(cmd::pull::Args),
    /// Sign an image the way cosign does.
    Sign(cmd::sign::Args),
    /// Attach signed attestations (SBOM, provenance, VEX, FIPS evidence) to an image.
    Attest(cmd::attest::Args),
    /// Verify an image's signature, attestations and policy before running it.
    Verify(cmd::verify::Args),
    /// The auditor's report of a released image, verified first: --format html, md or json.
    Audit(cmd::audit::Args),
    /// Release one line or every line: support check, build, SBOM, VEX, images, push by
    /// digest, sign, attest, verify, then tag.
    Release(cmd::release::Args),
    /// Run the conformance suite: emulated customer environments × scenarios against the
    /// released binaries and images (needs root).
    Conformance(cmd::conformance::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging(cli.quiet);
    let format = match (cli.format.common(), &cli.command) {
        (Some(f), _) => f,
        (None, Command::Audit(_)) => output::Format::Text,
        (None, _) => {
            return output::report_error(&anyhow::anyhow!(
            "--format html and --format md are only for `distro audit`; use --format text or json"
        ))
        }
    };
    let cx = Context::new(cli.config, format, cli.quiet);
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(a, &cx),
        Command::Matrix(a) => cmd::matrix::run(a, &cx),
        Command::Advisories(c) => cmd::advisories::run(c, &cx),
        Command::Patches(c) => cmd::patches::run(c, &cx),
        Command::Sbom(a) => cmd::sbom::run(a, &cx),
        Command::Policy(a) => cmd::policy::run(a, &cx),
        Command::Image(a) => cmd::image::run(a, &cx),
        Command::Keygen(a) => cmd::keygen::run(a, &cx),
        Command::Push(a) => cmd::push::run(a, &cx),
        Command::Pull(a) => cmd::pull::run(a, &cx),
        Command::Sign(a) => cmd::sign::run(a, &cx),
        Command::Attest(a) => cmd::attest::run(a, &cx),
        Command::Verify(a) => cmd::verify::run(a, &cx),
        Command::Release(a) => cmd::release::run(a, &cx),
        Command::Audit(a) => cmd::audit::run(a, &cx, cli.format),
        Command::Conformance(a) => cmd::conformance::run(a, &cx),
    };
    match result {
        Ok(code) => code,
        Err(e) => output::report_error(&e),
    }
}
