//! `distro push`: copy an image with its signatures and attestations to a registry (or any store).

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::registry::{Auth, RegistryOptions};
use distro_images::{transfer, ImageRef};

use super::Context;
use crate::output::{self, Format};

/// How to reach a registry; shared by every image subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Registry user name; the password comes from DISTRO_REGISTRY_PASSWORD or --password-stdin.
    #[arg(long, value_name = "USER", env = "DISTRO_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Read the registry password from stdin (one line).
    #[arg(long)]
    pub password_stdin: bool,
    /// Extra CA certificates (PEM) to trust for the registry's TLS certificate.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Talk plain HTTP; only allowed for a registry on a loopback address.
    #[arg(long)]
    pub plain_http: bool,
    /// Attempts per request on transient failures.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub attempts: u32,
}

impl RegistryArgs {
    /// Registry options, with credentials from the environment or stdin (never from argv).
    pub fn options(&self) -> anyhow::Result<RegistryOptions> {
        let auth = if let Ok(token) = std::env::var("DISTRO_REGISTRY_TOKEN") {
            Auth::Bearer(token)
        } else if let Some(username) = &self.username {
            let password = if self.password_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the registry password from stdin")?;
                s.trim_end_matches(['\r', '\n']).to_string()
            } else {
                std::env::var("DISTRO_REGISTRY_PASSWORD").map_err(|_| {
                    anyhow::anyhow!("--username {username} needs a password: set DISTRO_REGISTRY_PASSWORD or pass --password-stdin")
                })?
            };
            Auth::Basic {
                username: username.clone(),
                password,
            }
        } else {
            Auth::Anonymous
        };
        Ok(RegistryOptions {
            auth,
            ca_file: self.ca_file.clone(),
            plain_http: self.plain_http,
            attempts: self.attempts,
            ..RegistryOptions::default()
        })
    }
}

/// Arguments of `distro push`.
#[derive(clap::Args)]
pub struct Args {
    /// Image to push: oci:DIR:TAG, oci-archive:FILE:TAG or a registry reference.
    #[arg(required_unless_present = "release")]
    pub source: Option<String>,
    /// Destination with a tag: REGISTRY/REPO:TAG (or oci:DIR:TAG).
    #[arg(required_unless_present = "release")]
    pub destination: Option<String>,
    /// Push every image of a built release instead: each `OUT/<line>/images/<component>/oci`
    /// to `<--to>/<component>:<tag>`, in one session (shared layers are mounted, not re-sent).
    #[arg(long, value_name = "OUT/LINE", conflicts_with_all = ["source", "destination"], requires = "to")]
    pub release: Option<PathBuf>,
    /// Where --release pushes: REGISTRY/NAMESPACE.
    #[arg(long, value_name = "REGISTRY/NAMESPACE")]
    pub to: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn push_release(args: &Args, line_dir: &std::path::Path, cx: &Context) -> anyhow::Result<ExitCode> {
    let opts = args.registry.options()?;
    let to = args
        .to
        .as_deref()
        .context("--release needs --to REGISTRY/NAMESPACE")?;
    let (registry, namespace) = to.split_once('/').unwrap_or((to, ""));
    cx.status(&format!(
        "pushing the images of {} to {to}",
        line_dir.display()
    ));
    let pushed = transfer::push_release(&line_dir.join("images"), registry, namespace, &opts)
        .with_context(|| format!("pushing the images of {} to {to}", line_dir.display()))?;
    match cx.format {
        Format::Json => output::json(&pushed)?,
        Format::Text => {
            let mut s = String::new();
            for p in &pushed {
                s.push_str(&format!(
                    "{}@{}\n  blobs uploaded: {} (mounted: {}), already present: {}\n",
                    p.reference,
                    p.outcome.digest,
                    p.outcome.blobs_copied,
                    p.outcome.blobs_mounted,
                    p.outcome.blobs_present
                ));
            }
            output::data(&s);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `distro push`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    if let Some(line_dir) = &args.release {
        return push_release(&args, line_dir, cx);
    }
    let opts = args.registry.options()?;
    let (Some(source), Some(destination)) = (&args.source, &args.destination) else {
        anyhow::bail!("give SOURCE and DESTINATION, or --release OUT/LINE --to REGISTRY/NAMESPACE");
    };
    let src_ref = ImageRef::parse(source)?;
    let dest_ref = ImageRef::parse(destination)?;
    let tag = dest_ref
        .tag()
        .map(str::to_string)
        .or_else(|| src_ref.tag().map(str::to_string))
        .context("name the destination tag (REGISTRY/REPO:TAG)")?;
    let mut src = src_ref
        .open(&opts, false)
        .with_context(|| format!("opening {src_ref}"))?;
    let mut dest = dest_ref
        .open(&opts, true)
        .with_context(|| format!("opening {dest_ref}"))?;
    cx.status(&format!("pushing {src_ref} to {dest_ref}"));
    let out = transfer::copy(
        src.as_mut(),
        src_ref.selector().as_deref(),
        dest.as_mut(),
        &tag,
    )
    .with_context(|| format!("pushing {src_ref} to {dest_ref}"))?;
    match cx.format {
        Format::Json => output::json(&out)?,
        Format::Text => output::data(&format!(
            "{}@{}\n  blobs uploaded: {}, already present: {}\n  manifests: {}",
            dest_ref.with_tag(&tag),
            out.digest,
            out.blobs_copied,
            out.blobs_present,
            out.manifests.join(", ")
        )),
    }
    Ok(ExitCode::SUCCESS)
}
