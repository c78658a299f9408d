//! `distro image`: assemble an OCI image per built component on its runnable base, with its
//! Iron Bank hardening manifest and its image SBOM (`sbom.cdx.json`, every file of every layer),
//! from `OUT/<line>/build.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::assemble::{self, Base, FileOrigin, ImageSpec, Labels};
use distro_images::base::{DebianBase, Origin};
use distro_images::base_oci::ImageBase;
use distro_images::hardening::{HardeningManifest, Maintainer, Resource};
use distro_sbom::image::{ImageBaseInput, ImageFile, ImageInput, ImagePackage};
use distro_schema::{BuildRecord, FipsEvidence};

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
    /// Where the Debian base's verified `.deb`s are kept between runs (default:
    /// `OUT/base/debian`); a second image build downloads nothing.
    #[arg(long, value_name = "DIR")]
    pub base_cache: Option<PathBuf>,
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
    /// How to reach the registry of a `[image] base` pinned by digest.
    #[command(flatten)]
    pub registry: super::push::RegistryArgs,
}

/// One image written.
#[derive(serde::Serialize)]
pub struct Written {
    /// What was assembled.
    #[serde(flatten)]
    pub image: assemble::AssembledImage,
    /// Component.
    #[serde(skip)]
    pub component: String,
    /// `oci:LAYOUT:TAG`.
    pub reference: String,
    /// The layout directory.
    #[serde(skip)]
    pub layout: PathBuf,
    /// The image's tag in the layout.
    #[serde(skip)]
    pub tag: String,
    /// Hardening manifest.
    pub hardening_manifest: PathBuf,
    /// Its sha256.
    #[serde(skip)]
    pub hardening_manifest_sha256: String,
    /// Image SBOM.
    pub sbom: PathBuf,
    /// Its sha256.
    #[serde(skip)]
    pub sbom_sha256: String,
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
    let line = super::select_line(&dist, args.line.as_deref())?;
    let out = args.out.clone().unwrap_or_else(|| cx.default_out());
    let out = std::fs::canonicalize(&out).unwrap_or(out);
    let line_dir = out.join(&line.version);
    let record_path = line_dir.join("build.json");
    if !record_path.is_file() {
        anyhow::bail!(
            "no {} (run `distro build --line {}` first)",
            record_path.display(),
            line.version
        );
    }
    let record = super::sbom::read_build_record(&record_path)?;
    // The SBOM stage's documents, as the line's release record names them (checked against
    // their recorded sha256); a component without one gets the SBOM recovered from its binary's
    // embedded dependency list.
    let release_path = line_dir.join("release.json");
    let recorded = super::record::of_build(cx, &line_dir);
    let mut sboms = BTreeMap::new();
    for c in &record.components {
        let sbom = recorded
            .as_ref()
            .and_then(|r| r.components.iter().find(|k| k.name == c.name))
            .and_then(|k| k.sbom.as_ref());
        match sbom {
            Some(a) => {
                sboms.insert(c.name.clone(), a.clone());
            }
            None => cx.status(&format!(
                "[image] {}: {} records no SBOM of it, so it is recovered from the binary's dependency list (run `distro sbom --line {}` first for the SBOM stage's document)",
                c.name,
                release_path.display(),
                line.version
            )),
        }
    }
    let written = image(cx, &dist, line, &record, &line_dir, &args, &sboms)?;
    super::record::update_by_hand(
        cx,
        line.latest.as_deref(),
        &line_dir,
        &record,
        recorded,
        |r| super::record::set_images(r, &written),
    )?;
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

/// The image stage: an OCI image per component of `record` in `OUT/<line>/images/<component>/oci`,
/// with its hardening manifest and image SBOM. `binary_sboms` are the SBOM stage's documents by
/// component (a component without one gets the SBOM recovered from its binary).
pub fn image(
    cx: &Context,
    dist: &distro_config::Distribution,
    line: &distro_config::Line,
    record: &BuildRecord,
    line_dir: &Path,
    args: &Args,
    binary_sboms: &BTreeMap<String, distro_schema::Artifact>,
) -> anyhow::Result<Vec<Written>> {
    let out = line_dir.parent().unwrap_or(Path::new(".")).to_path_buf();
    let line_dir = line_dir.to_path_buf();
    let record_path = line_dir.join("build.json");
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

    let config_dir = cx
        .config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let cache = args
        .base_cache
        .clone()
        .unwrap_or_else(|| out.join("base").join("debian"));
    let base = match &dist.image.base {
        None => {
            cx.status(&format!(
                "preparing the Debian base (verified .debs cached in {})",
                cache.display()
            ));
            Base::Debian(
                DebianBase::prepare(&cache).context("preparing the Debian base of the images")?,
            )
        }
        Some(reference) => {
            cx.status(&format!("reading the base image {reference}"));
            Base::Image(
                ImageBase::open(
                    reference,
                    &config_dir,
                    dist.image.base_sbom.as_deref(),
                    &args.registry.options()?,
                )
                .with_context(|| {
                    format!(
                        "reading the base image `{reference}` named by [image] base in {}",
                        cx.config_path.display()
                    )
                })?,
            )
        }
    };

    let prepared =
        assemble::PreparedBase::new(&base, sde, Some(&cache)).context("making the base layer")?;

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
        let evidence_path = resolve_path(&line_dir, &c.evidence, "evidence");
        let evidence = if evidence_path.is_file() {
            Some(read_evidence(&evidence_path)?)
        } else {
            None
        };
        cx.status(&format!("assembling {} from {}", c.name, binary.display()));
        let layout = image_dir.join("oci");
        let image = assemble::assemble(&spec, &prepared, &layout)
            .with_context(|| format!("assembling the image of {}", c.name))?;
        if image.binary_sha256 != c.sha256 {
            anyhow::bail!(
                "{} has sha256 {} but build.json records {}: the binary changed after the build; rebuild",
                binary.display(),
                image.binary_sha256,
                c.sha256
            );
        }
        if let Some(ev) = &evidence {
            check_libraries(&c.name, ev, &image.files)?;
        }
        let hm = hardening_manifest(
            &base,
            &image,
            HardeningInput {
                name: format!("{namespace}/{}", c.name),
                version: &version,
                description: if desc.is_empty() { &c.name } else { &desc },
                component: &c.name,
                licenses: &args.licenses,
                source_url: &source_url,
                vendor: &dist.vendor,
                product: &dist.name,
                binary_name: &binary_name,
                resource_base: &resource_base,
                maintainer: &maintainer,
            },
        );
        let problems = hm.problems();
        anyhow::ensure!(
            problems.is_empty(),
            "hardening manifest of {} is invalid: {}",
            c.name,
            problems.join("; ")
        );
        let hm_path = image_dir.join("hardening_manifest.yaml");
        distro_hostio::write_atomic(&hm_path, hm.to_yaml().as_bytes(), distro_hostio::PUBLIC)?;

        let binary_bom = binary_sbom(
            binary_sboms.get(&c.name),
            &binary,
            sde,
            evidence.as_ref(),
            &c.name,
        )?;
        let sbom_input = sbom_input(
            &c.name,
            &version,
            sde,
            &binary_bom,
            &base,
            &image,
            evidence.as_ref(),
        )?;
        let (_, sbom_bytes) = distro_sbom::image::for_image(&sbom_input)
            .with_context(|| format!("writing the image SBOM of {}", c.name))?;
        let sbom_path = image_dir.join("sbom.cdx.json");
        distro_hostio::write_atomic(&sbom_path, &sbom_bytes, distro_hostio::PUBLIC)?;
        written.push(Written {
            reference: format!("oci:{}:{}", layout.display(), version),
            component: c.name.clone(),
            layout,
            tag: version.clone(),
            hardening_manifest_sha256: distro_images::digest::sha256_hex(hm.to_yaml().as_bytes()),
            sbom_sha256: distro_images::digest::sha256_hex(&sbom_bytes),
            image,
            hardening_manifest: hm_path,
            sbom: sbom_path,
        });
    }
    anyhow::ensure!(
        !written.is_empty(),
        "no component matched {:?} in {}",
        args.components,
        record_path.display()
    );
    Ok(written)
}

fn read_evidence(path: &Path) -> anyhow::Result<FipsEvidence> {
    let text =
        std::fs::read(path).with_context(|| format!("reading FIPS evidence {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not FIPS evidence written by `distro build`",
            path.display()
        )
    })
}

/// Every shared library the binary needs (DT_NEEDED, from its FIPS evidence) must be a file of
/// the image, or the entrypoint cannot start.
fn check_libraries(
    component: &str,
    ev: &FipsEvidence,
    files: &[assemble::ImageFile],
) -> anyhow::Result<()> {
    for lib in &ev.symbols.needed_libraries {
        let present = files
            .iter()
            .any(|f| f.path.rsplit('/').next() == Some(lib.as_str()));
        anyhow::ensure!(
            present,
            "{component} needs {lib} at run time (DT_NEEDED) but its image has no such file; the base does not fit this binary"
        );
    }
    Ok(())
}

struct HardeningInput<'a> {
    name: String,
    version: &'a str,
    description: &'a str,
    component: &'a str,
    licenses: &'a str,
    source_url: &'a str,
    vendor: &'a str,
    product: &'a str,
    binary_name: &'a str,
    resource_base: &'a str,
    maintainer: &'a Maintainer,
}

/// The hardening manifest: `BASE_IMAGE`/`BASE_TAG` and `resources` name what the image is
/// really made of (the Debian packages with their apt URLs and sha256, or the base image by
/// digest) besides the binary.
fn hardening_manifest(
    base: &Base,
    image: &assemble::AssembledImage,
    h: HardeningInput<'_>,
) -> HardeningManifest {
    let mut resources = vec![Resource {
        filename: h.binary_name.to_string(),
        url: format!("{}/{}", h.resource_base, h.binary_name),
        sha256: image.binary_sha256.clone(),
    }];
    let mut args = BTreeMap::new();
    match base {
        Base::Debian(deb) => {
            // The image is built FROM scratch plus these packages: name the distribution they
            // come from and the exact set, and list every .deb as a resource.
            args.insert("BASE_IMAGE".to_string(), format!("{}-debs", deb.distro));
            args.insert(
                "BASE_TAG".to_string(),
                image.layers.first().cloned().unwrap_or_default(),
            );
            args.insert(
                "BASE_PACKAGES".to_string(),
                deb.packages
                    .iter()
                    .map(|p| format!("{}={}", p.name, p.version))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            for p in &deb.packages {
                resources.push(Resource {
                    filename: p.filename.clone(),
                    url: p.url.clone(),
                    sha256: p.sha256.clone(),
                });
            }
        }
        Base::Image(img) => {
            let (name, tag) = img.base_image_and_tag();
            args.insert("BASE_IMAGE".to_string(), name);
            args.insert("BASE_TAG".to_string(), tag);
            resources.extend(img.resource());
        }
    }
    HardeningManifest {
        api_version: "v1".into(),
        name: h.name,
        tags: vec![h.version.to_string(), "latest".into()],
        args,
        labels: BTreeMap::from([
            (
                "org.opencontainers.image.title".into(),
                h.component.to_string(),
            ),
            (
                "org.opencontainers.image.description".into(),
                h.description.to_string(),
            ),
            (
                "org.opencontainers.image.licenses".into(),
                h.licenses.to_string(),
            ),
            (
                "org.opencontainers.image.url".into(),
                h.source_url.to_string(),
            ),
            (
                "org.opencontainers.image.vendor".into(),
                h.vendor.to_string(),
            ),
            (
                "org.opencontainers.image.version".into(),
                h.version.to_string(),
            ),
            (
                "mil.dso.ironbank.image.keywords".into(),
                "service mesh,fips,mtls,spiffe".into(),
            ),
            ("mil.dso.ironbank.image.type".into(), "opensource".into()),
            (
                "mil.dso.ironbank.product.name".into(),
                h.product.to_string(),
            ),
        ]),
        resources,
        maintainers: vec![h.maintainer.clone()],
    }
}

/// The binary's SBOM: the SBOM stage's document when there is one, else recovered from the
/// dependency list embedded in the binary.
fn binary_sbom(
    given: Option<&distro_schema::Artifact>,
    binary: &Path,
    sde: i64,
    evidence: Option<&FipsEvidence>,
    component: &str,
) -> anyhow::Result<serde_json::Value> {
    if let Some(a) = given {
        let path = Path::new(&a.path);
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        // Checked on the very bytes the image's SBOM is built from.
        let actual = distro_images::digest::sha256_hex(&text);
        anyhow::ensure!(
            actual == a.sha256,
            "{} changed after it was recorded (sha256 {actual}, recorded {}): the image would carry another SBOM than the one recorded\n  help: rerun `distro sbom` for the line",
            path.display(),
            a.sha256
        );
        let v: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        anyhow::ensure!(
            v["bomFormat"] == "CycloneDX",
            "{} is not a CycloneDX SBOM",
            path.display()
        );
        return Ok(v);
    }
    let list = distro_sbom::auditable::extract(binary).with_context(|| {
        format!(
            "no SBOM of {component} and no dependency list in {}: run `distro sbom` first",
            binary.display()
        )
    })?;
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| component.to_string());
    let graph = list.to_graph(&name);
    let sha = super::sha256_of(binary)?;
    let bom = distro_sbom::cyclonedx::for_binary(&distro_sbom::BinaryInput {
        graph: &graph,
        binary_sha256: &sha,
        source_date_epoch: sde,
        evidence,
        recovered_from_binary: true,
    })?;
    Ok(serde_json::to_value(&bom)?)
}

fn file_kind(path: &str) -> &'static str {
    if path.ends_with("/copyright") {
        "copyright"
    } else if path.contains(".so") {
        "library"
    } else {
        "data"
    }
}

/// Maps the image's files to the SBOM's components.
fn sbom_input<'a>(
    name: &'a str,
    version: &'a str,
    sde: i64,
    binary_bom: &'a serde_json::Value,
    base: &Base,
    image: &'a assemble::AssembledImage,
    evidence: Option<&FipsEvidence>,
) -> anyhow::Result<ImageInput<'a>> {
    let needed: Vec<&str> = evidence
        .map(|e| {
            e.symbols
                .needed_libraries
                .iter()
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    let mut binary_file = None;
    let mut generated = Vec::new();
    let mut by_package: BTreeMap<String, Vec<ImageFile>> = BTreeMap::new();
    let mut base_files = Vec::new();
    for f in &image.files {
        let mut file = ImageFile {
            path: f.path.clone(),
            sha256: f.sha256.clone(),
            kind: file_kind(&f.path).to_string(),
            derived: None,
        };
        match &f.origin {
            FileOrigin::Binary => {
                file.kind = "binary".into();
                binary_file = Some(file);
            }
            FileOrigin::Debian(Origin::Generated) => {
                file.kind = "generated".into();
                file.derived = Some("written by distro image".into());
                generated.push(file);
            }
            FileOrigin::Debian(Origin::Package(p)) => {
                by_package.entry(p.clone()).or_default().push(file)
            }
            FileOrigin::Debian(Origin::DerivedFrom { package, how }) => {
                file.kind = "ca-bundle".into();
                file.derived = Some(how.clone());
                by_package.entry(package.clone()).or_default().push(file);
            }
            FileOrigin::BaseImage { .. } => {
                file.kind = "base-layer".into();
                base_files.push(file);
            }
        }
    }
    let binary_file =
        binary_file.context("the assembled image has no binary file (internal error)")?;
    let (packages, base_input) = match base {
        Base::Debian(deb) => {
            let packages = deb
                .packages
                .iter()
                .map(|p| {
                    let files = by_package.remove(&p.name).unwrap_or_default();
                    ImagePackage {
                        linked_by_binary: files.iter().any(|f| {
                            f.path
                                .rsplit('/')
                                .next()
                                .is_some_and(|n| needed.contains(&n))
                        }),
                        name: p.name.clone(),
                        version: p.version.clone(),
                        purl: p.purl(&deb.distro),
                        licenses: p.licenses.clone(),
                        deb_sha256: p.sha256.clone(),
                        url: p.url.clone(),
                        files,
                    }
                })
                .collect();
            (packages, None)
        }
        Base::Image(img) => {
            let sbom = match &img.sbom {
                Some((origin, bytes)) => {
                    let v: serde_json::Value = serde_json::from_slice(bytes)
                        .with_context(|| format!("the base image's SBOM {origin} is not JSON"))?;
                    anyhow::ensure!(
                        v["bomFormat"] == "CycloneDX",
                        "the base image's SBOM {origin} is not a CycloneDX document"
                    );
                    Some((origin.clone(), v))
                }
                None => None,
            };
            (
                Vec::new(),
                Some(ImageBaseInput {
                    reference: img.reference.clone(),
                    manifest_digest: img.manifest_digest.clone(),
                    files: base_files,
                    sbom,
                }),
            )
        }
    };
    anyhow::ensure!(
        by_package.is_empty(),
        "files of unknown packages {:?} (internal error)",
        by_package.keys().collect::<Vec<_>>()
    );
    Ok(ImageInput {
        name,
        version,
        manifest_digest: &image.manifest_digest,
        source_date_epoch: sde,
        binary_bom,
        binary_file,
        packages,
        generated,
        base: base_input,
    })
}
