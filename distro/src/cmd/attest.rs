//! `distro attest`: attach signed in-toto attestations (SBOM, provenance, VEX, FIPS evidence,
//! conformance test-result).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use distro_images::cosign::{
    self, Predicate, PREDICATE_CYCLONEDX, PREDICATE_FIPS, PREDICATE_OPENVEX, PREDICATE_SLSA,
};
use distro_images::ImageRef;
use distro_schema::{Artifact, ComponentRelease, LineRelease};

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
    /// A line's output directory (`OUT/<line>`): the documents not given explicitly are the
    /// ones its release record (`release.json`) names for --component, each checked against the
    /// sha256 recorded there.
    #[arg(long, value_name = "DIR", requires = "component")]
    pub build_dir: Option<PathBuf>,
    /// Component whose recorded documents --build-dir attests.
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Largest document attested (an SBOM of a large graph is a few MiB).
const MAX_DOCUMENT: u64 = 256 << 20;

/// One document to attest: a file, and the sha256 the record that names it holds (none for a
/// file given on the command line).
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    /// The file.
    pub path: &'a Path,
    /// sha256 (hex) it must still have, and the record that says so.
    pub recorded: Option<(&'a str, &'a Path)>,
}

impl<'a> Document<'a> {
    /// A file named on the command line: attested as it is.
    pub fn given(path: &'a Path) -> Self {
        Document {
            path,
            recorded: None,
        }
    }

    /// An artifact of the release record at `record`: attested only with the recorded content.
    pub fn recorded(a: &'a Artifact, record: &'a Path) -> Self {
        Document {
            path: Path::new(&a.path),
            recorded: Some((&a.sha256, record)),
        }
    }
}

/// Reads a document once: checks its sha256 against the record (on the very bytes that are
/// then attested), then parses it.
fn read_json(doc: &Document<'_>) -> anyhow::Result<serde_json::Value> {
    let path = doc.path;
    // A regular file of bounded size: a FIFO or /dev/zero named by mistake fails at once.
    let text = distro_hostio::read_bounded(path, distro_hostio::Symlinks::Follow, MAX_DOCUMENT)
        .with_context(|| format!("reading {}", path.display()))?;
    if let Some((expected, record)) = doc.recorded {
        let actual = distro_images::digest::sha256_hex(&text);
        anyhow::ensure!(
            actual == expected,
            "{} has sha256 {actual}, but {} records {expected}: the file changed after it was recorded, so it is not attested\n  help: rerun `distro release` for the line (it redoes the stages whose output changed), or name the document explicitly if it is meant to differ",
            path.display(),
            record.display()
        );
    }
    serde_json::from_slice(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// The line's release record (`DIR/release.json`, which `distro release` writes after its local
/// stages and the stage commands keep when run by hand), read for `--build-dir`.
fn read_record(dir: &Path) -> anyhow::Result<(PathBuf, LineRelease)> {
    let path = dir.join("release.json");
    if !path.is_file() {
        let build = if dir.join("build.json").is_file() {
            " (its build.json names the evidence and provenance but holds no digest of them, nor the SBOM or VEX)"
        } else {
            ""
        };
        anyhow::bail!(
            "{} has no release record {}{build}: --build-dir takes each document and its sha256 from that record, which `distro release` writes after its local stages and `distro build`, `distro sbom` and `distro image` keep when run by hand\n  help: run `distro release` for the line (or `distro build`, `distro sbom`, `distro image`), or name the documents with --sbom, --vex, --evidence and --provenance",
            dir.display(),
            path.display()
        );
    }
    let bytes = distro_hostio::read_bounded(&path, distro_hostio::Symlinks::Follow, MAX_DOCUMENT)
        .with_context(|| format!("reading {}", path.display()))?;
    let record = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a release record this distro reads (`distro_schema::LineRelease`); rerun `distro release` for the line",
            path.display()
        )
    })?;
    Ok((path, record))
}

/// The documents a release record names for one component, each with its recorded sha256:
/// the image's SBOM (every file of every layer) once the image stage ran, else the binary's;
/// the provenance; the line's VEX, when it has one; the FIPS evidence. `distro release` and
/// `distro attest --build-dir` attest exactly these.
pub fn recorded<'a>(
    c: &'a ComponentRelease,
    vex: Option<&'a Artifact>,
    record: &'a Path,
) -> Documents<'a> {
    let sbom = c.image.as_ref().map(|i| &i.sbom).or(c.sbom.as_ref());
    Documents {
        sbom: sbom.map(|a| Document::recorded(a, record)),
        provenance: Some(Document::recorded(&c.provenance, record)),
        vex: vex.map(|a| Document::recorded(a, record)),
        evidence: Some(Document::recorded(&c.evidence, record)),
        test_result: None,
    }
}

/// Builds the predicate list from the files given and, for the others, the documents the
/// release record in `--build-dir` names for `--component` (checked against its sha256s), each
/// document's kind checked so a mixed-up file is refused before anything is signed.
pub fn predicates(args: &Args) -> anyhow::Result<Vec<Predicate>> {
    fn given(p: &Option<PathBuf>) -> Option<Document<'_>> {
        p.as_deref().map(Document::given)
    }
    let mut docs = Documents {
        sbom: given(&args.sbom),
        provenance: given(&args.provenance),
        vex: given(&args.vex),
        evidence: given(&args.evidence),
        test_result: args.test_result.as_deref(),
    };
    let Some(dir) = &args.build_dir else {
        return documents(&docs);
    };
    let (record_path, record) = read_record(dir)?;
    let component = args
        .component
        .as_deref()
        .context("--build-dir needs --component NAME")?;
    let c = record
        .components
        .iter()
        .find(|c| c.name == component)
        .with_context(|| {
            let known: Vec<&str> = record.components.iter().map(|c| c.name.as_str()).collect();
            format!(
                "{} has no component `{component}`; its components are: {}",
                record_path.display(),
                known.join(", ")
            )
        })?;
    let found = recorded(c, record.vex.as_ref(), &record_path);
    docs.sbom = docs.sbom.or(found.sbom);
    docs.provenance = docs.provenance.or(found.provenance);
    docs.vex = docs.vex.or(found.vex);
    docs.evidence = docs.evidence.or(found.evidence);
    documents(&docs)
}

/// The documents to attest on one image.
#[derive(Debug, Default, Clone, Copy)]
pub struct Documents<'a> {
    /// CycloneDX SBOM.
    pub sbom: Option<Document<'a>>,
    /// SLSA provenance statement (or bare predicate).
    pub provenance: Option<Document<'a>>,
    /// OpenVEX document.
    pub vex: Option<Document<'a>>,
    /// FIPS evidence.
    pub evidence: Option<Document<'a>>,
    /// A conformance summary (`summary.json` or its report directory), as a test-result.
    pub test_result: Option<&'a Path>,
}

/// The predicates of the attest stage, one per document, each document's kind checked so a
/// mixed-up file is refused before anything is signed, and a recorded one's sha256 checked so
/// a file changed since it was recorded is refused. `distro release` passes the documents its
/// record names ([`recorded`]); `distro attest` the files given or named by `--build-dir`'s
/// record.
pub fn documents(d: &Documents<'_>) -> anyhow::Result<Vec<Predicate>> {
    let mut out = Vec::new();
    if let Some(doc) = &d.sbom {
        let p = doc.path;
        let v = read_json(doc)?;
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
    if let Some(doc) = &d.provenance {
        let p = doc.path;
        let v = read_json(doc)?;
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
    if let Some(doc) = &d.vex {
        let p = doc.path;
        let v = read_json(doc)?;
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
    if let Some(doc) = &d.evidence {
        let p = doc.path;
        let v = read_json(doc)?;
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
