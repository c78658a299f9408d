//! `distro attest`: attach signed in-toto attestations (SBOM, provenance, VEX, FIPS evidence,
//! conformance test-result).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::cosign::{
    self, Predicate, PREDICATE_CYCLONEDX, PREDICATE_FIPS, PREDICATE_OPENVEX, PREDICATE_SLSA,
};
use distro_images::ImageRef;

use super::push::RegistryArgs;
use super::Context;
use crate::output::{self, Format};

/// Arguments of `distro attest`.
#[derive(clap::Args)]
pub struct Args {
    /// Image: REGISTRY/REPO:TAG, REGISTRY/REPO@sha256:..., or oci:DIR:TAG.
    pub image: String,
    /// Private key: PKCS#8 PEM from `distro keygen`, or cosign.key (password in COSIGN_PASSWORD).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Subject name in the statements; default: REGISTRY/REPO (required for a layout).
    #[arg(long, value_name = "REPO")]
    pub identity: Option<String>,
    /// CycloneDX JSON SBOM.
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// OpenVEX document.
    #[arg(long, value_name = "FILE")]
    pub vex: Option<PathBuf>,
    /// FIPS evidence (`OUT/<line>/evidence/<component>.fips.json`).
    #[arg(long, value_name = "FILE")]
    pub evidence: Option<PathBuf>,
    /// SLSA provenance: an in-toto statement (its predicate is re-attested for the image) or a
    /// bare predicate.
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Conformance summary (`summary.json` of `distro conformance`, or its report directory),
    /// attested as an in-toto test-result (`https://in-toto.io/attestation/test-result/v0.1`).
    #[arg(long, value_name = "FILE")]
    pub test_result: Option<PathBuf>,
    /// A build output directory (`OUT/<line>`) to find the documents not given explicitly.
    #[arg(long, value_name = "DIR", requires = "component")]
    pub build_dir: Option<PathBuf>,
    /// Component whose documents to find in --build-dir.
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Largest document attested (an SBOM of a large graph is a few MiB).
const MAX_DOCUMENT: u64 = 256 << 20;

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    // A regular file of bounded size: a FIFO or /dev/zero named by mistake fails at once.
    let text = distro_images::store::read_regular(
        path,
        distro_images::store::Symlinks::Follow,
        MAX_DOCUMENT,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// The first existing file among `candidates`, or one in `dir` containing `name` and ending
/// with one of `suffixes`.
fn discover(dir: &Path, candidates: &[PathBuf], name: &str, suffixes: &[&str]) -> Option<PathBuf> {
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Some(p.clone());
    }
    let mut found = Vec::new();
    for sub in ["", "sbom", "vex"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.contains(name) && suffixes.iter().any(|s| f.ends_with(s)) {
                found.push(e.path());
            }
        }
    }
    found.sort();
    found.into_iter().next()
}

/// Builds the predicate list from explicit files and discovered ones, checking each document's
/// kind so a mixed-up file is refused before anything is signed.
pub fn predicates(args: &Args) -> anyhow::Result<Vec<Predicate>> {
    let mut sbom = args.sbom.clone();
    let mut vex = args.vex.clone();
    let mut evidence = args.evidence.clone();
    let mut provenance = args.provenance.clone();
    if let (Some(dir), Some(c)) = (&args.build_dir, &args.component) {
        evidence = evidence.or_else(|| {
            discover(
                dir,
                &[dir.join("evidence").join(format!("{c}.fips.json"))],
                c,
                &[".fips.json"],
            )
        });
        provenance = provenance.or_else(|| {
            discover(
                dir,
                &[dir.join("provenance").join(format!("{c}.intoto.json"))],
                c,
                &[".intoto.json"],
            )
        });
        sbom = sbom.or_else(|| {
            discover(
                dir,
                &[
                    dir.join("sbom").join(format!("{c}.cdx.json")),
                    dir.join("sbom").join(format!("{c}.cyclonedx.json")),
                ],
                c,
                &[".cdx.json", ".cyclonedx.json", ".bom.json"],
            )
        });
        vex = vex.or_else(|| {
            discover(
                dir,
                &[
                    dir.join("vex").join(format!("{c}.openvex.json")),
                    dir.join("sbom").join(format!("{c}.openvex.json")),
                    dir.join("vex.openvex.json"),
                ],
                c,
                &[".openvex.json", ".vex.json"],
            )
        });
    }
    documents(&Documents {
        sbom: sbom.as_deref(),
        provenance: provenance.as_deref(),
        vex: vex.as_deref(),
        evidence: evidence.as_deref(),
        test_result: args.test_result.as_deref(),
    })
}

/// The documents to attest on one image, by path.
#[derive(Debug, Default, Clone, Copy)]
pub struct Documents<'a> {
    /// CycloneDX SBOM.
    pub sbom: Option<&'a Path>,
    /// SLSA provenance statement (or bare predicate).
    pub provenance: Option<&'a Path>,
    /// OpenVEX document.
    pub vex: Option<&'a Path>,
    /// FIPS evidence.
    pub evidence: Option<&'a Path>,
    /// A conformance summary (`summary.json` or its report directory), as a test-result.
    pub test_result: Option<&'a Path>,
}

/// The predicates of the attest stage, one per document, each document's kind checked so a
/// mixed-up file is refused before anything is signed. `distro release` passes the documents
/// its records name; `distro attest` the files given or found in `--build-dir`.
pub fn documents(d: &Documents<'_>) -> anyhow::Result<Vec<Predicate>> {
    let mut out = Vec::new();
    if let Some(p) = d.sbom {
        let v = read_json(p)?;
        anyhow::ensure!(
            v.get("bomFormat").and_then(|f| f.as_str()) == Some("CycloneDX"),
            "{} is not a CycloneDX SBOM (bomFormat is not \"CycloneDX\")",
            p.display()
        );
        out.push(Predicate {
            predicate_type: PREDICATE_CYCLONEDX.into(),
            body: v,
        });
    }
    if let Some(p) = d.provenance {
        let v = read_json(p)?;
        let body = match (v.get("_type"), v.get("predicate")) {
            (Some(_), Some(pred)) => {
                anyhow::ensure!(
                    v.get("predicateType").and_then(|t| t.as_str()) == Some(PREDICATE_SLSA),
                    "{}: the statement's predicateType is not {PREDICATE_SLSA}",
                    p.display()
                );
                pred.clone()
            }
            _ => v,
        };
        anyhow::ensure!(
            body.get("buildDefinition").is_some(),
            "{} is not SLSA provenance v1 (no buildDefinition)",
            p.display()
        );
        out.push(Predicate {
            predicate_type: PREDICATE_SLSA.into(),
            body,
        });
    }
    if let Some(p) = d.vex {
        let v = read_json(p)?;
        anyhow::ensure!(
            v.get("@context")
                .and_then(|c| c.as_str())
                .is_some_and(|c| c.starts_with("https://openvex.dev/ns")),
            "{} is not an OpenVEX document (@context is not https://openvex.dev/ns/...)",
            p.display()
        );
        out.push(Predicate {
            predicate_type: PREDICATE_OPENVEX.into(),
            body: v,
        });
    }
    if let Some(p) = d.evidence {
        let v = read_json(p)?;
        serde_json::from_value::<distro_schema::FipsEvidence>(v.clone()).with_context(|| {
            format!(
                "{} is not FIPS evidence written by `distro build`",
                p.display()
            )
        })?;
        out.push(Predicate {
            predicate_type: PREDICATE_FIPS.into(),
            body: v,
        });
    }
    if let Some(p) = d.test_result {
        let summary = distro_images::testresult::read_summary(p)?;
        out.push(distro_images::testresult::predicate(&summary)?);
    }
    anyhow::ensure!(!out.is_empty(), "nothing to attest: pass --sbom, --vex, --evidence, --provenance, --test-result or --build-dir with --component");
    Ok(out)
}

/// Runs `distro attest`.
pub fn run(args: Args, cx: &Context) -> anyhow::Result<ExitCode> {
    let key = super::sign::load_key(&args.key)?;
    let r = ImageRef::parse(&args.image)?;
    let subject = super::sign::identity(&r, args.identity.clone())?;
    let preds = predicates(&args)?;
    let mut store = r
        .open(&args.registry.options()?, false)
        .with_context(|| format!("opening {r}"))?;
    let (digest, outs) = cosign::attest(
        store.as_mut(),
        r.selector().as_deref(),
        &subject,
        &key,
        &preds,
    )
    .with_context(|| format!("attesting {r}"))?;
    match cx.format {
        Format::Json => output::json(
            &serde_json::json!({ "image": r.to_string(), "digest": digest, "attestations": outs }),
        )?,
        Format::Text => {
            let mut s = format!("{r}@{digest}\n");
            for o in &outs {
                s.push_str(&format!(
                    "  {} {} ({}: {})\n",
                    if o.added {
                        "attested"
                    } else {
                        "already attested, nothing added:"
                    },
                    o.predicate_type,
                    o.layer_digest,
                    o.note
                ));
            }
            output::data(&s);
        }
    }
    Ok(ExitCode::SUCCESS)
}
