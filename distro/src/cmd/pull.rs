//! `distro pull`: fetch an image, verify it, and only then write it (layout or archive).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::keys::VerifyingKey;
use distro_images::store::{Layout, Store};
use distro_images::{transfer, ImageRef};

use super::push::RegistryArgs;
use super::Context;

/// Arguments of `distro pull`.
#[derive(clap::Args)]
pub struct Args {
    /// Image: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...
    pub image: String,
    /// Where to write it once verified: oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    #[arg(long, value_name = "DEST")]
    pub out: String,
    /// Public key (SPKI PEM).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Policy file (TOML); default: every requirement on.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Identity the signature must name, matched as containers-policy does (see `distro verify
    /// --help`); default: the reference pulled.
    #[arg(long, value_name = "REPO[:TAG]")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `distro pull`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let key = VerifyingKey::load(&args.key)?;
    let policy = super::verify::policy(args.policy.as_ref(), args.identity)?;
    let r = ImageRef::parse(&args.image)?;
    let dest = ImageRef::parse(&args.out)?;
    let tag = dest.tag().or(r.tag()).unwrap_or("latest").to_string();
    let src = r
        .open(&args.registry.options()?, false)
        .with_context(|| format!("opening {r}"))?;
    let sel = r.selector();
    let name = r.to_string();
    let identity = distro_images::verify::default_identity(&r);
    let expect = transfer::Expectation {
        image_name: &name,
        selector: sel.as_deref(),
        key: &key,
        policy: &policy,
        default_identity: identity.as_deref(),
    };
    let report;
    match &dest {
        ImageRef::Layout { path, .. } => {
            // Verification happens before the layout is even created.
            let mut staged: Option<Layout> = None;
            let mut lazy = LazyLayout {
                path: path.clone(),
                inner: &mut staged,
            };
            let (rep, _) = transfer::pull_verified(src, &expect, &mut lazy, &tag)?;
            report = rep;
        }
        ImageRef::Archive { path, .. } => {
            // Staged beside the archive, written only if verification passes, then removed.
            let staging = path.with_extension(format!("staging.{}", std::process::id()));
            let result = (|| -> anyhow::Result<_> {
                let mut layout = Layout::open_dir(&staging, true)?;
                let (rep, written) = transfer::pull_verified(src, &expect, &mut layout, &tag)?;
                if written {
                    layout.write_archive(path)?;
                }
                Ok(rep)
            })();
            let _ = std::fs::remove_dir_all(&staging);
            report = result?;
        }
        ImageRef::Registry { .. } => {
            anyhow::bail!("--out must be oci:DIR[:TAG] or oci-archive:FILE[:TAG]")
        }
    }
    super::verify::render(&report, cx)?;
    if report.passed {
        cx.status(&format!("wrote {dest} ({tag})"));
        Ok(ExitCode::SUCCESS)
    } else {
        cx.status("verification failed: nothing was written");
        Ok(ExitCode::FAILURE)
    }
}

/// A layout directory that is created on the first write, so a failed verification leaves no
/// trace on disk.
struct LazyLayout<'a> {
    path: PathBuf,
    inner: &'a mut Option<Layout>,
}

impl LazyLayout<'_> {
    fn get(&mut self) -> distro_images::Result<&mut Layout> {
        if self.inner.is_none() {
            *self.inner = Some(Layout::open_dir(&self.path, true)?);
        }
        // Invariant: set just above.
        self.inner
            .as_mut()
            .ok_or_else(|| distro_images::Error::Refused("layout not open".into()))
    }
}

impl Store for LazyLayout<'_> {
    fn describe(&self) -> String {
        format!("oci:{}", self.path.display())
    }
    fn manifest(
        &mut self,
        reference: &str,
    ) -> distro_images::Result<Option<distro_images::store::FetchedManifest>> {
        self.get()?.manifest(reference)
    }
    fn blob(&mut self, digest: &str) -> distro_images::Result<Vec<u8>> {
        self.get()?.blob(digest)
    }
    fn blob_sized(&mut self, digest: &str, size: u64) -> distro_images::Result<Vec<u8>> {
        self.get()?.blob_sized(digest, size)
    }
    fn has_blob(&mut self, digest: &str) -> distro_images::Result<bool> {
        self.get()?.has_blob(digest)
    }
    fn put_blob(&mut self, digest: &str, data: &[u8]) -> distro_images::Result<bool> {
        self.get()?.put_blob(digest, data)
    }
    fn put_manifest(
        &mut self,
        tag: Option<&str>,
        bytes: &[u8],
        media_type: &str,
    ) -> distro_images::Result<String> {
        self.get()?.put_manifest(tag, bytes, media_type)
    }
}
