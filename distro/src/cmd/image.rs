//! `distro image`: assemble an OCI image per built component, with its Iron Bank hardening
//! manifest, from `OUT/<line>/build.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::assemble::{self, ImageSpec, Labels};
use distro_images::hardening::{HardeningManifest, Maintainer, Resource};
use distro_schema::BuildRecord;

use super::Context;
use crate::output::{self, Format};

/// Arguments of `distro image`.
#[derive(clap::Args)]
pub struct Args {
    /// Release line to package (default: the newest in distro.toml).
    #[arg(long, value_name = "VERSION")]
    pub line: Option<String>,
    /// Build output directory (holds `<line>/build.json`); default: `out/` beside the repository.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only these components (default: every component in build.json).
    #[arg(long = "component", value_name = "NAME")]
    pub components: Vec<String>,
    /// CA bundle to ship in the base layer.
    #[arg(
        long,
        value_name = "PEM",
        default_value = "/etc/ssl/certs/ca-certificates.crt"
    )]
    pub ca_bundle: PathBuf,
    /// SPDX licence expression for the `licenses` label.
    #[arg(long, default_value = "Apache-2.0")]
    pub licenses: String,
    /// Image version (tag and `version` label); default: the line's `latest` from distro.toml.
    #[arg(long, value_name = "VERSION")]
    pub image_version: Option<String>,
    /// Repository namespace for the hardening manifest name (`<namespace>/<component>`);
    /// default: the distribution name.
    #[arg(long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// URL under which the release publishes binaries (hardening manifest resources);
    /// default: `<source repository>/releases/download/v<version>`.
    #[arg(long, value_name = "URL")]
    pub resource_url: Option<String>,
    /// Maintainer for the hardening manifest as `NAME,USERNAME,EMAIL`.
    #[arg(long, value_name = "NAME,USERNAME,EMAIL")]
    pub maintainer: Option<String>,
}

/// One image written.
#[derive(serde::Serialize)]
struct Written {
    #[serde(flatten)]
    image: assemble::AssembledImage,
    reference: String,
    hardening_manifest: PathBuf,
}

fn resolve_path(line_dir: &Path, p: &str, fallback_dir: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        return path;
    }
    for c in [line_dir.join(&path), PathBuf::from(p)] {
        if c.exists() {
            return c;
        }
    }
    let name = path.file_name().map(PathBuf::from).unwrap_or(path);
    line_dir.join(fallback_dir).join(name)
}

/// Runs `distro image`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let dist = cx.distribution()?;
    let line = match &args.line {
        Some(v) => dist
            .line(v)
            .with_context(|| format!("line {v} is not in {}", cx.config_path.display()))?,
        None => dist.newest_line().context("distro.toml defines no line")?,
    };
    let out = args.out.clone().unwrap_or_else(|| cx.default_out());
    let line_dir = out.join(&line.version);
    let record_path = line_dir.join("build.json");
    let text = std::fs::read(&record_path).with_context(|| {
        format!(
            "reading {} (run `distro build --line {}` first)",
            record_path.display(),
            line.version
        )
    })?;
    let record: BuildRecord = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a build record", record_path.display()))?;
    let version = args
        .image_version
        .clone()
        .or_else(|| line.latest.clone())
        .unwrap_or_else(|| format!("{}.0", line.version));
    let sde = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH `{v}` is not an integer"))?,
        Err(_) => record.source.source_date_epoch,
    };
    let namespace = args.namespace.clone().unwrap_or_else(|| dist.name.clone());
    let source_url = if record.source.repository.contains("://") {
        record.source.repository.clone()
    } else {
        // A local path is not a URL an outsider can use; fall back to the project's URL.
        distro_images::PROJECT_URL.to_string()
    };
    let maintainer = match &args.maintainer {
        Some(m) => {
            let parts: Vec<&str> = m.splitn(3, ',').map(str::trim).collect();
            anyhow::ensure!(parts.len() == 3, "--maintainer must be NAME,USERNAME,EMAIL");
            Maintainer {
                name: parts[0].into(),
                username: parts[1].into(),
                email: parts[2].into(),
            }
        }
        None => Maintainer {
            name: dist.vendor.clone(),
            username: dist.name.clone(),
            email: format!("security@{}.invalid", dist.name),
        },
    };
    let resource_base = args.resource_url.clone().unwrap_or_else(|| {
        format!(
            "{}/releases/download/v{version}",
            source_url.trim_end_matches('/')
        )
    });

    let mut written = Vec::new();
    for c in &record.components {
        if !args.components.is_empty() && !args.components.contains(&c.name) {
            continue;
        }
        let desc = dist
            .component(&c.name)
            .map(|d| d.description.clone())
            .unwrap_or_default();
        let binary = resolve_path(&line_dir, &c.binary, "bin");
        let binary_name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| c.name.clone());
        let image_dir = line_dir.join("images").join(&c.name);
        let spec = ImageSpec {
            name: c.name.clone(),
            binary: binary.clone(),
            binary_name: binary_name.clone(),
            ca_bundle: args.ca_bundle.clone(),
            source_date_epoch: sde,
            labels: Labels {
                title: c.name.clone(),
                description: desc.clone(),
                licenses: args.licenses.clone(),
                vendor: dist.vendor.clone(),
                version: version.clone(),
                revision: record.source.commit.clone(),
                source: source_url.clone(),
            },
            cmd: Vec::new(),
            architecture: assemble::host_architecture().to_string(),
            tag: version.clone(),
        };
        cx.status(&format!("assembling {} from {}", c.name, binary.display()));
        let layout = image_dir.join("oci");
        let image = assemble::assemble(&spec, &layout)
            .with_context(|| format!("assembling the image of {}", c.name))?;
        if image.binary_sha256 != c.sha256 {
            anyhow::bail!(
                "{} has sha256 {} but build.json records {}: the binary changed after the build; rebuild",
                binary.display(),
                image.binary_sha256,
                c.sha256
            );
        }
        let hm = HardeningManifest {
            api_version: "v1".into(),
            name: format!("{namespace}/{}", c.name),
            tags: vec![version.clone(), "latest".into()],
            args: BTreeMap::from([
                ("BASE_IMAGE".into(), "scratch".into()),
                ("BASE_TAG".into(), "scratch".into()),
            ]),
            labels: BTreeMap::from([
                ("org.opencontainers.image.title".into(), c.name.clone()),
                (
                    "org.opencontainers.image.description".into(),
                    if desc.is_empty() {
                        c.name.clone()
                    } else {
                        desc.clone()
                    },
                ),
                (
                    "org.opencontainers.image.licenses".into(),
                    args.licenses.clone(),
                ),
                ("org.opencontainers.image.url".into(), source_url.clone()),
                (
                    "org.opencontainers.image.vendor".into(),
                    dist.vendor.clone(),
                ),
                ("org.opencontainers.image.version".into(), version.clone()),
                (
                    "mil.dso.ironbank.image.keywords".into(),
                    "service mesh,fips,mtls,spiffe".into(),
                ),
                ("mil.dso.ironbank.image.type".into(), "opensource".into()),
                ("mil.dso.ironbank.product.name".into(), dist.name.clone()),
            ]),
            resources: vec![
                Resource {
                    filename: binary_name.clone(),
                    url: format!("{resource_base}/{binary_name}"),
                    sha256: image.binary_sha256.clone(),
                },
                Resource {
                    filename: "ca-certificates.crt".into(),
                    url: format!("{resource_base}/ca-certificates.crt"),
                    sha256: image.ca_bundle_sha256.clone(),
                },
            ],
            maintainers: vec![maintainer.clone()],
        };
        let problems = hm.problems();
        anyhow::ensure!(
            problems.is_empty(),
            "hardening manifest of {} is invalid: {}",
            c.name,
            problems.join("; ")
        );
        let hm_path = image_dir.join("hardening_manifest.yaml");
        distro_images::store::write_atomic(&hm_path, hm.to_yaml().as_bytes())?;
        written.push(Written {
            reference: format!("oci:{}:{}", layout.display(), version),
            image,
            hardening_manifest: hm_path,
        });
    }
    anyhow::ensure!(
        !written.is_empty(),
        "no component matched {:?} in {}",
        args.components,
        record_path.display()
    );
    match cx.format {
        Format::Json => output::json(&written)?,
        Format::Text => {
            let mut s = String::new();
            for w in &written {
                s.push_str(&format!(
                    "{}  {}  {} bytes\n  {}\n",
                    w.image.name, w.image.manifest_digest, w.image.size, w.reference
                ));
            }
            output::data(&s);
        }
    }
    Ok(ExitCode::SUCCESS)
}
