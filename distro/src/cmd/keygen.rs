//! `distro keygen`: an ECDSA P-256 signing key pair from the FIPS module.

use std::path::PathBuf;
use std::process::ExitCode;

use distro_images::keys::{self, SigningKey};

use super::Context;
use crate::output::{self, Format};

/// Arguments of `distro keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// Where the private key goes (PKCS#8 PEM, mode 0600).
    #[arg(long, default_value = "distro.key", value_name = "PATH")]
    pub private: PathBuf,
    /// Where the public key goes (SPKI PEM).
    #[arg(long, default_value = "distro.pub", value_name = "PATH")]
    pub public: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Runs `distro keygen`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let key = SigningKey::generate()?;
    keys::write_key_pair(&key, &args.private, &args.public, args.force)?;
    let info = serde_json::json!({
        "private_key": args.private,
        "public_key": args.public,
        "algorithm": "ECDSA P-256 SHA-256",
        "keyid": key.keyid(),
        "fips_mode": true,
    });
    match cx.format {
        Format::Json => output::json(&info)?,
        Format::Text => output::data(&format!(
            "private key {} (mode 0600)\npublic key  {}\nkeyid       {}",
            args.private.display(),
            args.public.display(),
            key.keyid()
        )),
    }
    Ok(ExitCode::SUCCESS)
}
