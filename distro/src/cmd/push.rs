//! `distro push` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro push`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro push`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro push` is not implemented yet")
}
