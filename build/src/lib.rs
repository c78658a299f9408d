//! Reproducible FIPS builds of a distribution's components, with evidence an auditor can check.
//!
//! [`build_line`] takes one release line of a [`distro_config::Distribution`] through the build
//! stage: export the source at the line's ref ([`source`]), check the FIPS module the lockfile
//! resolves against the distribution's policy before spending time on a build ([`lockfile`],
//! [`fips::module`]), build each component with cargo in release mode, `--locked`, with the
//! FIPS feature set and reproducibility settings ([`cargo`]), then collect evidence from the
//! final binary itself ([`fips::symbols`], [`fips::evidence`]) and write SLSA provenance
//! ([`provenance`]). Everything lands under one output directory:
//!
//! ```text
//! OUT/sources/<hash>.git              bare mirrors of remote sources (shared with `distro patches`)
//! OUT/<line>/src/                     the exported (and patched) source
//! OUT/<line>/target/                  cargo's target directory ([`target`]: why per line; kept, so
//!                                     a second run does no work)
//! OUT/<line>/bin/<binary>             the binaries
//! OUT/<line>/evidence/<c>.fips.json   FIPS evidence per component
//! OUT/<line>/provenance/<c>.intoto.json  in-toto Statement v1 + SLSA provenance v1
//! OUT/<line>/build.json               the build record
//! ```
#![forbid(unsafe_code)]

pub mod cargo;
mod error;
pub mod fips;
mod fsutil;
pub mod lockfile;
pub mod provenance;
pub mod source;
pub mod target;

pub use error::BuildError;

use std::path::{Path, PathBuf};

use distro_config::{Distribution, Line};
use distro_schema::{BuildRecord, ComponentRecord, FipsSummary, SourceRecord, SCHEMA_VERSION};

/// Options of one build.
pub struct BuildOptions<'a> {
    /// Output directory; the line's outputs go under `<out>/<line>/`.
    pub out_dir: PathBuf,
    /// Show cargo's own progress on stderr.
    pub show_cargo_output: bool,
    /// Called with a short status line at each step.
    pub progress: &'a dyn Fn(&str),
}

/// Builds every component of `line` and returns the build record (also written as
/// `OUT/<line>/build.json`). Fails, naming the component and the reason, when a component that
/// requires FIPS does not carry the evidence.
pub fn build_line(
    dist: &Distribution,
    line: &Line,
    opts: &BuildOptions<'_>,
) -> Result<BuildRecord, BuildError> {
    let line_dir = opts.out_dir.join(&line.version);
    fsutil::create_dir(&line_dir)?;
    let line_dir = fsutil::canonical(&line_dir)?;

    (opts.progress)(&format!(
        "line {}: resolving {} at {}",
        line.version, line.source.git, line.source.git_ref
    ));
    let src = source::export(line, &line_dir.join("src"), &opts.out_dir.join("sources"))?;
    if let Some(m) = &src.fetched {
        (opts.progress)(&format!(
            "line {}: source {} {} ({})",
            line.version,
            m.url,
            m.action,
            m.mirror.display()
        ));
    }
    if !src.patches.is_empty() {
        (opts.progress)(&format!(
            "line {}: applied {} patch(es): {}",
            line.version,
            src.patches.len(),
            src.patches
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    (opts.progress)(&format!(
        "line {}: source {} (SOURCE_DATE_EPOCH={})",
        line.version,
        &src.commit[..12.min(src.commit.len())],
        src.source_date_epoch
    ));

    let lock_path = src.tree.join("Cargo.lock");
    let lock = lockfile::Lockfile::read(&lock_path)?;
    let module = fips::module::identify(&lock, &lock_path)?;
    if dist.components.iter().any(|c| c.fips_required) {
        fips::module::check_policy(&module, &dist.fips, &lock_path)?;
    }

    let toolchain = cargo::Toolchain::detect()?;
    let target = target::Target::prepare(&line_dir, &src)?;
    let mut components = Vec::new();
    let mut statements = Vec::new();
    for component in &dist.components {
        (opts.progress)(&format!(
            "line {}: building {} (package {}, features [{}])",
            line.version,
            component.name,
            component.package,
            component.features.join(", ")
        ));
        let built =
            cargo::build_component(&src, component, &line_dir, &target, opts.show_cargo_output)?;
        (opts.progress)(&format!(
            "line {}: collecting FIPS evidence for {}",
            line.version, component.name
        ));
        let evidence = fips::evidence::collect(component, &built.binary, &module)?;
        let evidence_path = line_dir
            .join("evidence")
            .join(format!("{}.fips.json", component.name));
        fsutil::write_json(&evidence_path, &evidence)?;
        if component.fips_required && !evidence.mode {
            return Err(BuildError::NotFips {
                component: component.name.clone(),
                evidence: evidence_path,
                reasons: evidence.failures.clone(),
            });
        }
        let module_version = module
            .version_in_binary
            .clone()
            .or_else(|| evidence.module.version_in_binary.clone())
            .unwrap_or_else(|| format!("AWS-LC FIPS {}", module.module_line));
        components.push((
            component,
            built,
            evidence_path,
            FipsSummary {
                mode: evidence.mode,
                module_version: evidence
                    .module
                    .version_in_binary
                    .clone()
                    .unwrap_or(module_version),
                cmvp_certificate: evidence.module.cmvp_certificate,
                cmvp_status: evidence.module.cmvp_status,
            },
        ));
    }

    // Every component built from the tree as it is: the next build of it can reuse the objects.
    target.finish()?;

    let cargo_lock_sha256 =
        distro_hostio::sha256_file(&lock_path).map_err(fsutil::io("hashing", &lock_path))?;
    let mut records = Vec::new();
    for (component, built, evidence_path, fips) in components {
        let prov_path = line_dir
            .join("provenance")
            .join(format!("{}.intoto.json", component.name));
        let statement = provenance::statement(&provenance::Inputs {
            dist,
            line,
            source: &src,
            component,
            toolchain: &toolchain,
            cargo_lock_sha256: &cargo_lock_sha256,
            command: &built.command,
            outputs: &[
                (component.binary.clone(), built.sha256.clone()),
                (
                    file_name(&evidence_path),
                    distro_hostio::sha256_file(&evidence_path)
                        .map_err(fsutil::io("hashing", &evidence_path))?,
                ),
            ],
            patches: &src.patches,
        });
        fsutil::write_json(&prov_path, &statement)?;
        statements.push(prov_path.clone());
        records.push(ComponentRecord {
            name: component.name.clone(),
            package: component.package.clone(),
            binary: built.binary.display().to_string(),
            sha256: built.sha256,
            fips,
            evidence: evidence_path.display().to_string(),
            provenance: prov_path.display().to_string(),
            features: Some(component.features.clone()),
        });
    }

    let record = BuildRecord {
        schema_version: SCHEMA_VERSION.to_string(),
        distribution: dist.name.clone(),
        line: line.version.clone(),
        source: SourceRecord {
            repository: line.source.git.clone(),
            git_ref: line.source.git_ref.clone(),
            commit: src.commit.clone(),
            source_date_epoch: src.source_date_epoch,
        },
        cargo_lock_sha256,
        patches: src.patches.iter().map(|p| p.name.clone()).collect(),
        components: records,
    };
    fsutil::write_json(&line_dir.join("build.json"), &record)?;
    Ok(record)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
