//! The line's release record, `OUT/<line>/release.json` ([`LineRelease`]), as the local stages
//! fill it: `distro release` builds it in process from the stages' typed outputs, and the stage
//! commands run by hand (`distro build`, `distro sbom`, `distro image`) keep the same record, so
//! the stages after them (`distro image`'s SBOMs, `distro attest --build-dir`, `distro push
//! --release`'s policy) read each document by the path and sha256 recorded there instead of
//! guessing a file name.
//!
//! A stage run by hand replaces what it produced and drops what came after it (a new SBOM makes
//! the image's SBOM stale), clears the fingerprint (so `distro release` redoes its local stages
//! rather than trusting a hand-made record) and leaves the record `built`: nothing of it is
//! published until `distro release` or `distro push --release` says so.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use distro_schema::{
    self as schema, Artifact, BuildRecord, ComponentRelease, FipsFacts, ImageArtifacts,
    LineRelease, ReleaseState,
};

use super::image::Written as ImageWritten;
use super::sbom::Written as SbomWritten;
use super::Context;

/// A path of a build record: absolute as `distro build` writes them, else relative to the
/// line's directory.
pub fn at(line_dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        line_dir.join(path)
    }
}

/// A file as an [`Artifact`].
pub fn artifact(path: &Path) -> anyhow::Result<Artifact> {
    Ok(Artifact {
        path: path.display().to_string(),
        sha256: super::sha256_of(path)?,
    })
}

/// Whether a file still has the recorded content.
pub fn intact(a: &Artifact) -> bool {
    super::sha256_of(Path::new(&a.path)).is_ok_and(|s| s == a.sha256)
}

/// The manifest digest (hex) of `tag` in the layout at `dir`.
pub fn layout_digest(dir: &Path, tag: &str) -> anyhow::Result<String> {
    let mut layout = distro_images::store::Layout::open_dir(dir, false)?;
    let (_, m) = distro_images::cosign::resolve(&mut layout, Some(tag))?;
    Ok(m.digest.trim_start_matches("sha256:").to_string())
}

/// The image layouts the record names, by component, each checked to still hold the recorded
/// manifest under its tag; a component without a recorded image is an error naming what to run.
pub fn image_layouts(record: &LineRelease, path: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for c in &record.components {
        let img = c.image.as_ref().with_context(|| {
            format!(
                "{} records no image of {}: run `distro image --line {}` first",
                path.display(),
                c.name,
                record.line
            )
        })?;
        let dir = PathBuf::from(&img.layout.path);
        let digest = layout_digest(&dir, &img.tag)
            .with_context(|| format!("reading the image of {} at {}", c.name, dir.display()))?;
        anyhow::ensure!(
            digest == img.layout.sha256,
            "the image of {} at {} is sha256:{digest}, but {} records sha256:{}: it changed after it was recorded\n  help: rerun `distro image --line {}`",
            c.name,
            dir.display(),
            path.display(),
            img.layout.sha256,
            record.line
        );
        out.push((c.name.clone(), dir));
    }
    Ok(out)
}

/// Writes the record atomically (temp + rename), 0644: it is public.
pub fn write(path: &Path, record: &LineRelease) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(record)?;
    text.push(b'\n');
    distro_hostio::write_atomic(path, &text, distro_hostio::PUBLIC)
        .with_context(|| format!("writing the release record {}", path.display()))
}

/// The record right after the build stage: every component's binary, FIPS facts, evidence and
/// provenance by path and sha256; no SBOM, VEX or image yet.
/// `latest` is the line's newest release version in distro.toml (default `<line>.0`).
pub fn after_build(
    latest: Option<&str>,
    build: &BuildRecord,
    line_dir: &Path,
    fingerprint: String,
    checks: Vec<schema::Check>,
) -> anyhow::Result<LineRelease> {
    let mut components = Vec::new();
    for c in &build.components {
        components.push(ComponentRelease {
            name: c.name.clone(),
            package: c.package.clone(),
            features: c.features.clone().unwrap_or_default(),
            binary: Artifact {
                path: at(line_dir, &c.binary).display().to_string(),
                sha256: c.sha256.clone(),
            },
            fips: FipsFacts {
                mode: c.fips.mode,
                module_version: c.fips.module_version.clone(),
                cmvp_certificate: c.fips.cmvp_certificate,
                cmvp_status: c.fips.cmvp_status,
            },
            evidence: artifact(&at(line_dir, &c.evidence))?,
            provenance: artifact(&at(line_dir, &c.provenance))?,
            sbom: None,
            spdx: None,
            image: None,
            pushed: None,
        });
    }
    Ok(LineRelease {
        schema_version: schema::SCHEMA_VERSION.into(),
        distribution: build.distribution.clone(),
        line: build.line.clone(),
        version: latest.map_or_else(|| format!("{}.0", build.line), str::to_string),
        state: ReleaseState::Built,
        fingerprint,
        source: build.source.clone(),
        build_record: artifact(&line_dir.join("build.json"))?,
        patches: build.patches.clone(),
        components,
        vex: None,
        vex_note: None,
        registry: None,
        public_key: None,
        conformance: None,
        checks,
        stages: Vec::new(),
    })
}

/// Records the SBOM stage's documents (and the features they were resolved with, when the build
/// record had none); each component's image is dropped, as its SBOM derives from these.
pub fn set_sboms(record: &mut LineRelease, written: &[SbomWritten]) {
    for c in &mut record.components {
        let Some(w) = written.iter().find(|w| w.component == c.name) else {
            continue;
        };
        c.sbom = w
            .cyclonedx
            .clone()
            .zip(w.cyclonedx_sha256.clone())
            .map(|(path, sha256)| Artifact { path, sha256 });
        c.spdx = w
            .spdx
            .clone()
            .zip(w.spdx_sha256.clone())
            .map(|(path, sha256)| Artifact { path, sha256 });
        if c.features.is_empty() {
            c.features = w.features.clone();
        }
        c.image = None;
        c.pushed = None;
    }
    record.conformance = None;
}

/// Records the image stage's layouts, image SBOMs and hardening manifests; the record's version
/// is the images' tag.
pub fn set_images(record: &mut LineRelease, written: &[ImageWritten]) {
    for c in &mut record.components {
        let Some(w) = written.iter().find(|w| w.component == c.name) else {
            continue;
        };
        c.image = Some(ImageArtifacts {
            layout: Artifact {
                path: w.layout.display().to_string(),
                sha256: w
                    .image
                    .manifest_digest
                    .trim_start_matches("sha256:")
                    .to_string(),
            },
            tag: w.tag.clone(),
            sbom: Artifact {
                path: w.sbom.display().to_string(),
                sha256: w.sbom_sha256.clone(),
            },
            hardening_manifest: Artifact {
                path: w.hardening_manifest.display().to_string(),
                sha256: w.hardening_manifest_sha256.clone(),
            },
        });
        c.pushed = None;
    }
    record.conformance = None;
    if let Some(w) = written.first() {
        record.version = w.tag.clone();
    }
}

/// The line's record as a stage run by hand finds it: the one in `line_dir/release.json` when it
/// is of this very build (its `build.json` has the recorded sha256), else a new one from the
/// build record. `None` for the record means there is none of this build.
pub fn of_build(cx: &Context, line_dir: &Path) -> Option<LineRelease> {
    let path = line_dir.join("release.json");
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<LineRelease>(&bytes) {
        Ok(r) if intact(&r.build_record) => Some(r),
        Ok(_) => None,
        Err(e) => {
            cx.warn(&format!(
                "{} is not a release record this distro reads ({e}); a new one is written",
                path.display()
            ));
            None
        }
    }
}

/// Runs `change` on the line's record as a stage run by hand found it (`found`, from
/// [`of_build`]; else new from `build`) and writes it back: not published, no fingerprint (see
/// the module docs).
/// `None`, with a warning saying why, when there is no record and the build output lacks a
/// document a record must name (its evidence or provenance): the stage's own output is still
/// written, and `attest --build-dir` then says the record is missing.
pub fn update_by_hand(
    cx: &Context,
    latest: Option<&str>,
    line_dir: &Path,
    build: &BuildRecord,
    found: Option<LineRelease>,
    change: impl FnOnce(&mut LineRelease),
) -> anyhow::Result<Option<PathBuf>> {
    let mut record = match found {
        Some(r) => r,
        None => match after_build(latest, build, line_dir, String::new(), Vec::new()) {
            Ok(r) => r,
            Err(e) => {
                cx.warn(&format!(
                    "no release record written for {}: {e:#}",
                    line_dir.display()
                ));
                return Ok(None);
            }
        },
    };
    change(&mut record);
    record.fingerprint = String::new();
    record.state = ReleaseState::Built;
    record.registry = None;
    record.public_key = None;
    for c in &mut record.components {
        c.pushed = None;
    }
    let path = line_dir.join("release.json");
    write(&path, &record)?;
    Ok(Some(path))
}
