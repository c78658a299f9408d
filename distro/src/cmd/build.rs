//! `distro build` (being written).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro build`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro build`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro build` is not implemented yet")
}
