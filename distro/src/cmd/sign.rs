//! `distro sign`: sign an image the way cosign does (`sha256-<hex>.sig`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::keys::SigningKey;
use distro_images::{cosign, ImageRef};

use super::push::RegistryArgs;
use super::Context;
use crate::output::{self, Format};

/// Arguments of `distro sign`.
#[derive(clap::Args)]
pub struct Args {
    /// Image: REGISTRY/REPO:TAG, REGISTRY/REPO@sha256:..., or oci:DIR:TAG.
    pub image: String,
    /// Private key: PKCS#8 PEM from `distro keygen`, or cosign.key (password in COSIGN_PASSWORD).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Identity to sign (`critical.identity.docker-reference`); default: REGISTRY/REPO. Needed
    /// for a layout, where it is the repository the image will be pushed to.
    #[arg(long, value_name = "REPO")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Loads a signing key, taking a cosign key's password from COSIGN_PASSWORD.
pub fn load_key(path: &Path) -> anyhow::Result<SigningKey> {
    let password = std::env::var("COSIGN_PASSWORD").ok();
    Ok(SigningKey::load(
        path,
        password.as_deref().map(str::as_bytes),
    )?)
}

/// The identity to sign or attest for.
pub fn identity(r: &ImageRef, given: Option<String>) -> anyhow::Result<String> {
    given.or_else(|| r.docker_reference()).with_context(|| {
        format!("{r} is a local layout: pass --identity REGISTRY/REPO (where it will be pushed)")
    })
}

/// Runs `distro sign`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let key = load_key(&args.key)?;
    let r = ImageRef::parse(&args.image)?;
    let id = identity(&r, args.identity)?;
    let mut store = r
        .open(&args.registry.options()?, false)
        .with_context(|| format!("opening {r}"))?;
    let out = cosign::sign(store.as_mut(), r.selector().as_deref(), &id, &key)
        .with_context(|| format!("signing {r}"))?;
    match cx.format {
        Format::Json => output::json(&out)?,
        Format::Text => output::data(&format!(
            "{} {}@{} as {} ({} signature{} under {})",
            if out.added {
                "signed"
            } else {
                "already signed by this key:"
            },
            r,
            out.image_digest,
            out.identity,
            out.signatures,
            if out.signatures == 1 { "" } else { "s" },
            out.tag
        )),
    }
    Ok(ExitCode::SUCCESS)
}
