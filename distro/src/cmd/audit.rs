//! `distro audit`: the compliance auditor's report of a released image, verified first.

use std::path::PathBuf;
use std::process::ExitCode;

use distro_audit::{ReportFormat, Target};
use distro_images::keys::VerifyingKey;

use super::push::RegistryArgs;
use super::Context;
use crate::output::{self, FormatArg};

/// Arguments of `distro audit`. The report format is the global `--format`: `html` (one
/// self-contained file), `md` (also for `text`, the default) or `json` (the typed report).
#[derive(clap::Args)]
pub struct Args {
    /// What to audit: REGISTRY/REPO:TAG, REGISTRY/REPO@sha256:..., oci:DIR[:TAG],
    /// oci-archive:FILE[:TAG], an OCI layout directory, or a release directory (OUT/<line>).
    pub image: String,
    /// Public key signatures and attestations must verify with (SPKI PEM, or cosign.pub).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Verification policy file (TOML), as for `distro verify`; default: every requirement on.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Identity the signature must name (default: REGISTRY/REPO online, any offline).
    #[arg(long, value_name = "REPO")]
    pub identity: Option<String>,
    /// Report even if verification fails; the report then says UNVERIFIED at the top.
    #[arg(long)]
    pub unverified: bool,
    /// Write the report to FILE (atomically, mode 0644) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `distro audit`.
pub fn run(args: Args, cx: &Context, format: FormatArg) -> anyhow::Result<ExitCode> {
    let key = VerifyingKey::load(&args.key)?;
    let policy = super::verify::policy(args.policy.as_ref(), args.identity)?;
    let target = Target::parse(&args.image)?;
    let registry = args.registry.options()?;
    let report = distro_audit::audit(
        &args.image,
        &target,
        &distro_audit::Options {
            key: &key,
            key_path: args.key.display().to_string(),
            policy: &policy,
            unverified: args.unverified,
            registry: &registry,
        },
    )?;
    if report.unverified_override {
        let warning = "UNVERIFIED: verification failed; reporting anyway because of --unverified";
        use std::io::IsTerminal as _;
        if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            cx.status(&format!("\x1b[1;31m{warning}\x1b[0m"));
        } else {
            cx.status(warning);
        }
    }
    let format = match format {
        FormatArg::Html => ReportFormat::Html,
        FormatArg::Json => ReportFormat::Json,
        FormatArg::Md | FormatArg::Text => ReportFormat::Markdown,
    };
    let text = distro_audit::render(&report, format)?;
    match &args.output {
        Some(path) => {
            distro_hostio::write_output(path, text.as_bytes(), distro_hostio::PUBLIC)?;
            cx.status(&format!(
                "audit report of {} ({} images, {}) written to {}",
                args.image,
                report.summary.images,
                if report.verified {
                    "verified"
                } else {
                    "UNVERIFIED"
                },
                path.display()
            ));
        }
        None => output::data(&text),
    }
    Ok(ExitCode::SUCCESS)
}
