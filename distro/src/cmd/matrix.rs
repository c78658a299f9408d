//! `distro matrix` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro matrix`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro matrix`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro matrix` is not implemented yet")
}
