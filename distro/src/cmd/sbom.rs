//! `distro sbom` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro sbom`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro sbom`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro sbom` is not implemented yet")
}
