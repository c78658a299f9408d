//! `distro policy` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro policy`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro policy`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro policy` is not implemented yet")
}
