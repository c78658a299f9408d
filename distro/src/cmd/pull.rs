//! `distro pull` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro pull`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro pull`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro pull` is not implemented yet")
}
