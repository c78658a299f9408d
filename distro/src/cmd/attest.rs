//! `distro attest` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Arguments of `distro attest`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `distro attest`.
pub fn run(_args: Args, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro attest` is not implemented yet")
}
