//! `distro sign` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro sign`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro sign`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro sign` is not implemented yet")
}
