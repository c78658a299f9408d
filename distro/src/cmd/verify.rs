//! `distro verify` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro verify`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro verify`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro verify` is not implemented yet")
}
