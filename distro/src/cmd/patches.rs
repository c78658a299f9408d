//! `distro patches` (not yet implemented: see the open issue that covers it).

use std::process::ExitCode;

use super::Context;

/// Subcommands of `distro patches`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Apply a line's patch series to its source.
    Apply {},
}

/// Runs `distro patches`.
pub fn run(_command: Command, _cx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`distro patches` is not implemented yet")
}
