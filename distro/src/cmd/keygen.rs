//! `distro keygen` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro keygen`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro keygen`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro keygen` is not implemented yet")
}
