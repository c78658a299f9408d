//! `distro verify`: the operator's check before an image runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::keys::VerifyingKey;
use distro_images::verify::{self, Policy, Report};
use distro_images::ImageRef;

use super::push::RegistryArgs;
use super::Context;
use crate::output::{self, Format};

/// Arguments of `distro verify`.
#[derive(clap::Args)]
pub struct Args {
    /// Image: REGISTRY/REPO:TAG, REGISTRY/REPO@sha256:..., oci:DIR:TAG or oci-archive:FILE:TAG.
    pub image: String,
    /// Public key (SPKI PEM from `distro keygen`, or cosign.pub).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Policy file (TOML); default: every requirement on.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Identity the signature must name, matched as containers-policy does: REPO accepts a
    /// signature for any tag of it, REPO:TAG only one for that tag (or for the bare REPO).
    /// Overrides the policy's; default: the reference verified (REGISTRY/REPO[:TAG]).
    #[arg(long, value_name = "REPO[:TAG]")]
    pub identity: Option<String>,
    /// Also require a conformance test-result attestation signed by the key whose result is
    /// not FAILED (the newest one decides); the policy's `require_test_result = true` does the same.
    #[arg(long)]
    pub require_test_result: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Loads the policy and applies `--identity`.
pub fn policy(path: Option<&PathBuf>, identity: Option<String>) -> anyhow::Result<Policy> {
    let mut p = match path {
        Some(p) => Policy::load(p)?,
        None => Policy::default(),
    };
    if identity.is_some() {
        p.identity = identity;
    }
    Ok(p)
}

/// Renders a report: one line per check.
pub fn render(report: &Report, cx: &Context) -> anyhow::Result<()> {
    match cx.format {
        Format::Json => output::json(report),
        Format::Text => {
            let mut s = String::new();
            for c in &report.checks {
                s.push_str(&format!(
                    "{} {}: {}\n",
                    if c.ok { "ok  " } else { "FAIL" },
                    c.name,
                    c.detail
                ));
            }
            s.push_str(&format!(
                "{}: {}{}\n",
                if report.passed {
                    "verified"
                } else {
                    "NOT verified"
                },
                report.image,
                report
                    .digest
                    .as_ref()
                    .map(|d| format!("@{d}"))
                    .unwrap_or_default()
            ));
            output::data(&s);
            Ok(())
        }
    }
}

/// Runs `distro verify`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let key = VerifyingKey::load(&args.key)?;
    let mut policy = policy(args.policy.as_ref(), args.identity)?;
    policy.require_test_result |= args.require_test_result;
    let r = ImageRef::parse(&args.image)?;
    let mut store = r
        .open(&args.registry.options()?, false)
        .with_context(|| format!("opening {r}"))?;
    let report = verify::verify(
        store.as_mut(),
        &r.to_string(),
        r.selector().as_deref(),
        &key,
        &policy,
        verify::default_identity(&r).as_deref(),
    );
    render(&report, cx)?;
    // An image that does not verify is refused by the policy (exit 3), not an error: the
    // check itself ran (an unreachable registry or unreadable key is an error, exit 1).
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::output::EXIT_REFUSED)
    })
}
