//! `distro push`: copy an image with its signatures and attestations to a registry (or any store).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::keys::VerifyingKey;
use distro_images::registry::{Auth, RegistryOptions};
use distro_images::store::Store;
use distro_images::{cosign, transfer, verify, ImageRef};

use super::Context;
use crate::output::{self, Format, Refusal};

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
    /// by digest to `<--to>/<component>`, with the signatures and attestations its layout holds,
    /// in one session (shared layers are mounted, not re-sent); the tag moves only for an image
    /// that then verifies in the registry (exit 3 naming the others).
    #[arg(long, value_name = "OUT/LINE", conflicts_with_all = ["source", "destination"], requires_all = ["to", "key"])]
    pub release: Option<PathBuf>,
    /// Where --release pushes: REGISTRY/NAMESPACE.
    #[arg(long, value_name = "REGISTRY/NAMESPACE")]
    pub to: Option<String>,
    /// Public key a pushed image's signature and attestations must verify with, in the
    /// destination, before its tag moves (the check `distro release` makes before tagging); an
    /// image that does not verify stays there by digest only, untagged (exit 3). Needed with
    /// --release; without it, a single image's tag moves once its signatures and attestations
    /// are copied, unverified.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// With --key, for a single image: the policy it must meet (TOML, as `distro verify
    /// --policy`); default: every requirement on. --release uses the line's record instead.
    #[arg(
        long,
        value_name = "FILE",
        requires = "key",
        conflicts_with = "release"
    )]
    pub policy: Option<PathBuf>,
    /// With --key, for a single image: the identity its signature must name, matched as
    /// containers-policy does (as `distro verify --identity`); default: the destination
    /// REGISTRY/REPO:TAG.
    #[arg(
        long,
        value_name = "REPO[:TAG]",
        requires = "key",
        conflicts_with = "release"
    )]
    pub identity: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `--release`: every image of the line by digest, then the tag for each one that verifies, as
/// `distro release` publishes; an image that does not verify stays untagged and is refused
/// (exit 3) with what to run.
fn push_release(args: &Args, line_dir: &Path, cx: &Context) -> anyhow::Result<ExitCode> {
    let opts = args.registry.options()?;
    let to = args
        .to
        .as_deref()
        .context("--release needs --to REGISTRY/NAMESPACE")?;
    let key_path = args
        .key
        .as_deref()
        .context("--release needs --key PATH (the public key the images must verify with)")?;
    let key = VerifyingKey::load(key_path)?;
    let record_path = line_dir.join("release.json");
    let record = read_record(&record_path)?;
    let policy = record
        .as_ref()
        .map(super::release::tag_policy)
        .unwrap_or_default();
    // The images the line's record names (each checked against its recorded digest); without
    // a record, every layout under images/.
    let images = match &record {
        Some(r) => super::record::image_layouts(r, &record_path)?,
        None => {
            cx.warn(&format!(
                "{} has no release record: pushing every image layout under {} under the default policy",
                line_dir.display(),
                line_dir.join("images").display()
            ));
            transfer::image_layouts(&line_dir.join("images"))?
        }
    };
    let (registry, namespace) = to.split_once('/').unwrap_or((to, ""));
    cx.status(&format!(
        "pushing the images of {} to {to} by digest; each tag moves only once its image verifies",
        line_dir.display()
    ));
    let pushed = transfer::push_release(
        &images,
        registry,
        namespace,
        &opts,
        &transfer::TagGate {
            key: &key,
            policy: &policy,
        },
    )
    .with_context(|| format!("pushing the images of {} to {to}", line_dir.display()))?;
    match cx.format {
        Format::Json => output::json(&pushed)?,
        Format::Text => {
            let mut s = String::new();
            for p in &pushed {
                s.push_str(&verified_text(&p.copy));
            }
            output::data(&s);
        }
    }
    let untagged: Vec<String> = pushed
        .iter()
        .filter(|p| !p.copy.tagged)
        .map(|p| {
            let c = &p.copy;
            format!(
                "{}: {} is pushed by digest but not tagged {}: {}\n    help: sign it with `distro sign {} --key KEY` and attest it with `distro attest {} --key KEY --build-dir {} --component {}`, then run this push again",
                p.component,
                c.by_digest,
                c.tag,
                c.verification.failures(),
                c.by_digest,
                c.by_digest,
                line_dir.display(),
                p.component
            )
        })
        .collect();
    if !untagged.is_empty() {
        return Err(anyhow::Error::new(Refusal(format!(
            "{} of {} image(s) do not verify with {}, so their tags were not moved:\n  {}",
            untagged.len(),
            pushed.len(),
            key_path.display(),
            untagged.join("\n  ")
        ))));
    }
    Ok(ExitCode::SUCCESS)
}

/// The line's release record at `path`, when there is one. The policy a pushed image must meet
/// before its tag moves is the record's (as `distro release` decides it), else every
/// requirement.
fn read_record(path: &Path) -> anyhow::Result<Option<distro_schema::LineRelease>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let record = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a release record this distro reads; rerun `distro release` for the line, or move it away to push under the default policy",
            path.display()
        )
    })?;
    Ok(Some(record))
}

/// A single image with `--key`: pushed by digest with its signatures and attestations,
/// verified in the destination, and only then tagged; one that does not verify is refused
/// (exit 3) with the checks that failed, its tag unmoved.
fn push_verified(
    args: &Args,
    key_path: &Path,
    (src_ref, src): (&ImageRef, &mut dyn Store),
    (dest_ref, dest): (&ImageRef, &mut dyn Store),
    tag: &str,
    cx: &Context,
) -> anyhow::Result<ExitCode> {
    let key = VerifyingKey::load(key_path)?;
    let policy = super::verify::policy(args.policy.as_ref(), args.identity.clone())?;
    let tagged_ref = dest_ref.with_tag(tag);
    // A registry repository, or the layout or archive (`oci:DIR`) without its tag.
    let repository = dest_ref
        .docker_reference()
        .unwrap_or_else(|| dest.describe());
    cx.status(&format!(
        "pushing {src_ref} to {dest_ref} by digest; the tag moves only once it verifies with {}",
        key_path.display()
    ));
    let copied = transfer::copy_verified(
        src,
        src_ref.selector().as_deref(),
        dest,
        tag,
        &repository,
        &transfer::TagGate {
            key: &key,
            policy: &policy,
        },
        verify::default_identity(&tagged_ref).as_deref(),
    )
    .with_context(|| format!("pushing {src_ref} to {dest_ref}"))?;
    match cx.format {
        Format::Json => output::json(&copied)?,
        Format::Text => output::data(&verified_text(&copied)),
    }
    if copied.tagged {
        return Ok(ExitCode::SUCCESS);
    }
    // In a registry the image can be signed where it now is, by digest; a layout or archive
    // holds no reference by digest, so the source is signed for the repository instead.
    let to_sign = if dest_ref.docker_reference().is_some() {
        copied.by_digest.clone()
    } else {
        format!("{src_ref} --identity REPOSITORY")
    };
    Err(anyhow::Error::new(Refusal(format!(
        "{} is pushed by digest but does not verify with {}, so {tagged_ref} was not moved: {}\n    help: sign it with `distro sign {to_sign} --key KEY` and attest it with `distro attest {to_sign} --key KEY ...`, then push again",
        copied.by_digest,
        key_path.display(),
        copied.verification.failures(),
    ))))
}

/// The text report of one image pushed by digest and verified before its tag moved.
fn verified_text(c: &transfer::VerifiedCopy) -> String {
    format!(
        "{}\n  {}\n  blobs uploaded: {} (mounted: {}), already present: {}\n",
        c.by_digest,
        if c.tagged {
            format!("verified, tagged {}", c.reference)
        } else {
            format!("NOT tagged {} (it does not verify)", c.reference)
        },
        c.outcome.blobs_copied,
        c.outcome.blobs_mounted,
        c.outcome.blobs_present
    )
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
    if let Some(key_path) = &args.key {
        return push_verified(
            &args,
            key_path,
            (&src_ref, src.as_mut()),
            (&dest_ref, dest.as_mut()),
            &tag,
            cx,
        );
    }
    cx.status(&format!(
        "pushing {src_ref} to {dest_ref} by digest, its signatures and attestations, then the tag (unverified: no --key)"
    ));
    let out = transfer::copy(
        src.as_mut(),
        src_ref.selector().as_deref(),
        dest.as_mut(),
        &tag,
    )
    .with_context(|| format!("pushing {src_ref} to {dest_ref}"))?;
    if cosign::signatures(dest.as_mut(), &out.digest)?.is_empty() {
        cx.warn(&format!(
            "{} now names an image with no signature there; pass --key PUB to move a tag only for an image that verifies",
            dest_ref.with_tag(&tag)
        ));
    }
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
