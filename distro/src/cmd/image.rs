//! `distro image` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro image`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro image`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro image` is not implemented yet")
}
