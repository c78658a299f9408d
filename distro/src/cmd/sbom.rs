//! `distro sbom`: CycloneDX 1.6 (and SPDX 2.3) SBOMs of built binaries.
//!
//! Three ways in:
//! - default: every component of a build output (`OUT/<line>/build.json`), written to
//!   `OUT/<line>/sbom/<component>.cdx.json` (and `.spdx.json` with `--spdx`) by [`sbom`], the
//!   SBOM stage `distro release` runs, with the features the build record names;
//! - `--binary FILE --manifest-dir DIR --package P`: one binary built from a source tree;
//! - `--from-binary FILE`: recover the SBOM from the binary's embedded `.dep-v0` list alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use distro_sbom::{auditable, graph, BinaryInput};
use distro_schema::{BuildRecord, FipsEvidence};
use serde::Serialize;

use super::Context;
use crate::output::{self, Format};

/// Arguments of `distro sbom`.
#[derive(clap::Args)]
pub struct Args {
    /// Build output directory (default: `out/` beside the repository).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Release line to document (default: every line present in the output directory).
    #[arg(long, value_name = "VERSION")]
    line: Option<String>,
    /// Only these components (repeatable).
    #[arg(long = "component", value_name = "NAME")]
    components: Vec<String>,
    /// Document one binary built from the source tree at `--manifest-dir`.
    #[arg(long, value_name = "FILE", conflicts_with = "from_binary", requires_all = ["manifest_dir", "package"])]
    binary: Option<PathBuf>,
    /// Workspace (or package) directory the binary was built from.
    #[arg(long, value_name = "DIR")]
    manifest_dir: Option<PathBuf>,
    /// Cargo package of `--binary`.
    #[arg(long, value_name = "NAME")]
    package: Option<String>,
    /// Binary target name (default: the file name of `--binary`).
    #[arg(long = "bin", value_name = "NAME")]
    bin_name: Option<String>,
    /// Features the binary was built with (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "FEATURES")]
    features: Vec<String>,
    /// The binary was built with `--no-default-features`.
    #[arg(long)]
    no_default_features: bool,
    /// Also embed the dependency list into `--binary` (`.dep-v0`), before hashing it.
    #[arg(long, requires = "binary")]
    embed: bool,
    /// Recover the SBOM of any binary from its embedded `.dep-v0` section, with no side files.
    #[arg(long, value_name = "FILE")]
    from_binary: Option<PathBuf>,
    /// FIPS evidence of the binary (`distro build`'s `<component>.fips.json`): adds the FIPS module.
    #[arg(long, value_name = "FILE")]
    evidence: Option<PathBuf>,
    /// Where to write the CycloneDX JSON of a single binary (default: stdout).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also write SPDX 2.3 JSON (beside each CycloneDX file in build-output mode).
    #[arg(long)]
    spdx: bool,
    /// Where to write the SPDX 2.3 JSON of a single binary.
    #[arg(long, value_name = "FILE")]
    spdx_out: Option<PathBuf>,
    /// Document timestamp (default: the build's; for a single binary 0 unless set).
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,
}

/// What was written, for the report on stdout (and the release record).
#[derive(Serialize)]
pub struct Written {
    /// Component.
    pub component: String,
    binary: String,
    binary_sha256: String,
    components: usize,
    runtime_crates: usize,
    build_crates: usize,
    crypto_assets: usize,
    fips_module: Option<String>,
    /// The CycloneDX document written.
    pub cyclonedx: Option<String>,
    /// Its sha256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cyclonedx_sha256: Option<String>,
    /// The SPDX document written.
    pub spdx: Option<String>,
    /// Its sha256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spdx_sha256: Option<String>,
    /// Features the graph was resolved with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// Runs `distro sbom`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    if let Some(bin) = args.from_binary.clone() {
        return single(&args, cx, &bin, None);
    }
    if let Some(bin) = args.binary.clone() {
        let dir = args
            .manifest_dir
            .clone()
            .context("--manifest-dir is required with --binary")?;
        let package = args
            .package
            .clone()
            .context("--package is required with --binary")?;
        let bin_name = match &args.bin_name {
            Some(b) => b.clone(),
            None => file_name(&bin),
        };
        let g = graph::resolve(
            &dir,
            &package,
            &bin_name,
            &args.features,
            args.no_default_features,
        )?;
        if args.embed {
            auditable::embed(&bin, &distro_sbom::DepList::from_graph(&g))?;
            cx.status(&format!(
                "embedded {} packages into {}",
                g.packages.len(),
                bin.display()
            ));
        }
        return single(&args, cx, &bin, Some(g));
    }
    build_output(&args, cx)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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

/// One binary: `--binary` (graph given) or `--from-binary` (graph recovered).
fn single(
    args: &Args,
    cx: &Context,
    bin: &Path,
    resolved: Option<graph::Graph>,
) -> anyhow::Result<ExitCode> {
    let recovered = resolved.is_none();
    let g = match resolved {
        Some(g) => g,
        None => {
            let list = auditable::extract(bin)?;
            list.to_graph(args.bin_name.as_deref().unwrap_or(&file_name(bin)))
        }
    };
    let evidence = args.evidence.as_deref().map(read_evidence).transpose()?;
    let sha = super::sha256_of(bin)?;
    if let Some(ev) = &evidence {
        if ev.binary_sha256 != sha {
            cx.status(&format!(
                "warning: evidence {} is about a binary with sha256 {}, not {} ({sha})",
                args.evidence.as_deref().unwrap_or(Path::new("")).display(),
                ev.binary_sha256,
                bin.display()
            ));
        }
    }
    let epoch = args.source_date_epoch.unwrap_or_else(|| {
        cx.status(
            "warning: no SOURCE_DATE_EPOCH given; the SBOM timestamp is 1970-01-01T00:00:00Z",
        );
        0
    });
    let docs = distro_sbom::documents(&BinaryInput {
        graph: &g,
        binary_sha256: &sha,
        source_date_epoch: epoch,
        evidence: evidence.as_ref(),
        recovered_from_binary: recovered,
    })?;
    let mut w = summary(&g, &docs.bom, bin, &sha, &g.binary);
    match &args.output {
        Some(p) => {
            distro_hostio::write_output(p, &docs.cyclonedx_json, distro_hostio::PUBLIC)?;
            w.cyclonedx = Some(p.display().to_string());
        }
        None => output::data(&String::from_utf8_lossy(&docs.cyclonedx_json)),
    }
    let spdx_path = match (&args.spdx_out, args.spdx, &args.output) {
        (Some(p), _, _) => Some(p.clone()),
        (None, true, Some(o)) => Some(spdx_beside(o)),
        (None, true, None) => bail!("--spdx with the CycloneDX document on stdout: say where the SPDX goes with --spdx-out FILE"),
        (None, false, _) => None,
    };
    if let Some(p) = spdx_path {
        distro_hostio::write_output(&p, &docs.spdx_json, distro_hostio::PUBLIC)?;
        w.spdx = Some(p.display().to_string());
    }
    if args.output.is_some() {
        report(cx, &[w])?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `x.cdx.json` → `x.spdx.json`; anything else gets `.spdx.json` appended.
fn spdx_beside(cdx: &Path) -> PathBuf {
    let name = file_name(cdx);
    let stem = name
        .strip_suffix(".cdx.json")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(&name);
    cdx.with_file_name(format!("{stem}.spdx.json"))
}

fn summary(
    g: &graph::Graph,
    bom: &distro_sbom::Bom,
    bin: &Path,
    sha: &str,
    component: &str,
) -> Written {
    let runtime = g
        .packages
        .iter()
        .filter(|p| p.kind == graph::DepKind::Runtime)
        .count();
    Written {
        component: component.to_string(),
        binary: bin.display().to_string(),
        binary_sha256: sha.to_string(),
        components: bom.components.len(),
        runtime_crates: runtime.saturating_sub(1),
        build_crates: g.packages.len() - runtime,
        crypto_assets: bom
            .components
            .iter()
            .filter(|c| c.component_type == "cryptographic-asset")
            .count(),
        fips_module: bom
            .components
            .iter()
            .find(|c| c.bom_ref.as_deref() == Some(distro_sbom::crypto::MODULE_REF))
            .map(|c| {
                let cert = c
                    .properties
                    .iter()
                    .find(|p| p.name == "distro:fips:cmvp-certificate")
                    .map(|p| format!(", CMVP #{}", p.value))
                    .unwrap_or_default();
                format!("{} {}{cert}", c.name, c.version.clone().unwrap_or_default())
            }),
        cyclonedx: None,
        cyclonedx_sha256: None,
        spdx: None,
        spdx_sha256: None,
        features: Vec::new(),
    }
}

fn report(cx: &Context, written: &[Written]) -> anyhow::Result<()> {
    if cx.format == Format::Json {
        return output::json(&written);
    }
    let mut s = String::new();
    for w in written {
        s.push_str(&format!(
            "{}: {} components ({} runtime crates, {} build-only, {} crypto assets){}\n",
            w.component,
            w.components,
            w.runtime_crates,
            w.build_crates,
            w.crypto_assets,
            w.fips_module
                .as_ref()
                .map(|m| format!("; {m}"))
                .unwrap_or_default()
        ));
        for p in [&w.cyclonedx, &w.spdx].into_iter().flatten() {
            s.push_str(&format!("  {p}\n"));
        }
    }
    output::data(&s);
    Ok(())
}

/// Every component of the build output (`distro sbom` without `--binary`): each line's
/// `build.json` is read and documented by [`sbom`], the stage `distro release` runs.
fn build_output(args: &Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| cx.default_out());
    // Absolute, so the paths recorded in release.json hold from any working directory.
    let out = std::fs::canonicalize(&out).unwrap_or(out);
    let lines: Vec<PathBuf> = match &args.line {
        Some(l) => vec![out.join(l)],
        None => {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&out)
                .with_context(|| {
                    format!(
                        "reading build output {} (run `distro build` first, or pass --out)",
                        out.display()
                    )
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("build.json").is_file())
                .collect();
            v.sort();
            v
        }
    };
    if lines.is_empty() {
        bail!(
            "no build output under {}: run `distro build` first, or pass --out DIR",
            out.display()
        );
    }
    let mut written = Vec::new();
    for line_dir in lines {
        let record_path = line_dir.join("build.json");
        let record = read_build_record(&record_path)?;
        // A record written before features were recorded needs the definition; one that cannot
        // be read is an error naming it, never default features (an SBOM of the wrong graph).
        let needs_config = record.components.iter().any(|c| c.features.is_none());
        let dist = if needs_config {
            Some(cx.distribution().with_context(|| {
                format!(
                    "{} does not record the components' features (written by an older `distro build`), so they come from the distribution definition, which cannot be read; fix it or pass --config, or rebuild the line",
                    record_path.display()
                )
            })?)
        } else {
            None
        };
        let docs = sbom(
            cx,
            &record,
            &record_path,
            dist.as_ref(),
            &SbomOptions {
                components: &args.components,
                spdx: args.spdx || args.spdx_out.is_some(),
                source_date_epoch: args.source_date_epoch,
            },
        )?;
        // The documents go into the line's release record, where `distro image` and `distro
        // attest --build-dir` read them.
        let latest = dist
            .as_ref()
            .and_then(|d| d.lines.iter().find(|l| l.version == record.line))
            .and_then(|l| l.latest.as_deref());
        let found = super::record::of_build(cx, &line_dir);
        if let Some(path) =
            super::record::update_by_hand(cx, latest, &line_dir, &record, found, |r| {
                super::record::set_sboms(r, &docs)
            })?
        {
            cx.status(&format!("release record: {}", path.display()));
        }
        written.extend(docs);
    }
    report(cx, &written)?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a build record written by `distro build`.
pub fn read_build_record(path: &Path) -> anyhow::Result<BuildRecord> {
    let text = std::fs::read(path).with_context(|| {
        format!(
            "reading {} (run `distro build` for this line first)",
            path.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a build record written by `distro build`",
            path.display()
        )
    })
}

/// What the SBOM stage does besides the defaults.
pub struct SbomOptions<'a> {
    /// Only these components (empty: all).
    pub components: &'a [String],
    /// Also write SPDX 2.3.
    pub spdx: bool,
    /// Document timestamp (default: the build's SOURCE_DATE_EPOCH).
    pub source_date_epoch: Option<i64>,
}

/// The SBOM stage: CycloneDX (and SPDX) documents of every component of a build, written to
/// `OUT/<line>/sbom/<component>.cdx.json` beside `record_path`. The dependency graph is resolved
/// from the exported source with the features the build record names; `dist` is only consulted
/// for a record that does not name them (written by an older `distro build`), and a component it
/// does not know either is an error.
pub fn sbom(
    cx: &Context,
    record: &BuildRecord,
    record_path: &Path,
    dist: Option<&distro_config::Distribution>,
    opts: &SbomOptions<'_>,
) -> anyhow::Result<Vec<Written>> {
    let line_dir = record_path.parent().unwrap_or(Path::new("."));
    let src = line_dir.join("src");
    let epoch = opts
        .source_date_epoch
        .unwrap_or(record.source.source_date_epoch);
    let mut written = Vec::new();
    for c in &record.components {
        if !opts.components.is_empty() && !opts.components.contains(&c.name) {
            continue;
        }
        let bin = PathBuf::from(&c.binary);
        let bin = if bin.is_absolute() {
            bin
        } else {
            line_dir.join(bin)
        };
        let features = match &c.features {
            Some(f) => f.clone(),
            None => dist
                .and_then(|d| d.component(&c.name))
                .map(|k| k.features.clone())
                .with_context(|| {
                    format!(
                        "component {} of {} does not record its features and the distribution definition has no such component; rebuild the line",
                        c.name,
                        record_path.display()
                    )
                })?,
        };
        // The build copies the binary target to bin/<binary>: its file name is the target.
        let bin_name = file_name(&bin);
        cx.status(&format!(
            "{}: resolving the dependency graph of {} (features [{}])",
            c.name,
            bin_name,
            features.join(", ")
        ));
        let g = graph::resolve(&src, &c.package, &bin_name, &features, true)
            .with_context(|| format!("component {} of line {}", c.name, record.line))?;
        match auditable::extract(&bin) {
            Ok(list) if list == distro_sbom::DepList::from_graph(&g) => {}
            Ok(_) => cx.warn(&format!(
                "{}: the list embedded in {} differs from the resolved graph",
                c.name,
                bin.display()
            )),
            Err(e) => cx.warn(&format!("{}: {e}", c.name)),
        }
        let evidence_path = PathBuf::from(&c.evidence);
        let evidence_path = if evidence_path.is_absolute() {
            evidence_path
        } else {
            line_dir.join(evidence_path)
        };
        let evidence = read_evidence(&evidence_path)
            .with_context(|| format!("component {} of {}", c.name, record_path.display()))?;
        let sha = super::sha256_of(&bin)?;
        let docs = distro_sbom::documents(&BinaryInput {
            graph: &g,
            binary_sha256: &sha,
            source_date_epoch: epoch,
            evidence: Some(&evidence),
            recovered_from_binary: false,
        })
        .with_context(|| format!("component {} of line {}", c.name, record.line))?;
        let dir = line_dir.join("sbom");
        let cdx = dir.join(format!("{}.cdx.json", c.name));
        distro_hostio::write_atomic(&cdx, &docs.cyclonedx_json, distro_hostio::PUBLIC)?;
        let mut w = summary(&g, &docs.bom, &bin, &sha, &c.name);
        w.cyclonedx = Some(cdx.display().to_string());
        w.cyclonedx_sha256 = Some(super::sha256_of(&cdx)?);
        if opts.spdx {
            let p = dir.join(format!("{}.spdx.json", c.name));
            distro_hostio::write_atomic(&p, &docs.spdx_json, distro_hostio::PUBLIC)?;
            w.spdx = Some(p.display().to_string());
            w.spdx_sha256 = Some(super::sha256_of(&p)?);
        }
        w.features = features;
        written.push(w);
    }
    Ok(written)
}
