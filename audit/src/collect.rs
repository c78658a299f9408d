//! Building the report: verify each image first with `distro_images::verify` (signature,
//! attestations, policy), then read the facts from the attestations whose DSSE signature
//! verifies with the same key and whose subject is the image. Nothing is read from outside the
//! image's store: the registry (or layout, or archive) is the only source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use distro_images::cosign::{
    self, Envelope, INTOTO_PAYLOAD_TYPE, PREDICATE_CYCLONEDX, PREDICATE_FIPS, PREDICATE_OPENVEX,
    PREDICATE_SLSA,
};
use distro_images::keys::VerifyingKey;
use distro_images::registry::RegistryOptions;
use distro_images::store::{Layout, Store};
use distro_images::verify::{self, Policy};
use distro_images::ImageRef;
use distro_schema::{
    cmvp_certificate_url, cmvp_security_policy_url, FactSource, FipsEvidence, ModuleValidation,
};
use serde_json::Value;

use crate::error::AuditError;
use crate::report::*;

/// What to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One image: a registry reference, an OCI layout or an OCI archive.
    Image(ImageRef),
    /// A release line's output directory (`OUT/<line>`): every `images/<component>/oci` layout.
    Release {
        /// The directory.
        dir: PathBuf,
        /// (component, layout directory), sorted by component.
        layouts: Vec<(String, PathBuf)>,
    },
}

impl Target {
    /// Reads what `input` names: an existing directory is an OCI layout (it has `oci-layout`)
    /// or a release directory (it has `images/*/oci`); an existing `.tar` file is an OCI
    /// archive; anything else is an image reference (`REGISTRY/REPO:TAG`, `oci:DIR:TAG`, ...).
    pub fn parse(input: &str) -> Result<Self, AuditError> {
        let path = Path::new(input);
        if path.is_dir() {
            if path.join("oci-layout").is_file() {
                return Ok(Target::Image(ImageRef::Layout {
                    path: path.to_path_buf(),
                    tag: None,
                }));
            }
            let images = path.join("images");
            let mut layouts = Vec::new();
            if let Ok(rd) = std::fs::read_dir(&images) {
                for e in rd.flatten() {
                    let oci = e.path().join("oci");
                    if oci.join("oci-layout").is_file() {
                        layouts.push((e.file_name().to_string_lossy().into_owned(), oci));
                    }
                }
            }
            if layouts.is_empty() {
                return Err(AuditError::Input {
                    input: input.to_string(),
                    reason: "the directory is neither an OCI layout (no `oci-layout` file) nor a release directory (no `images/<component>/oci` layouts); pass OUT/<line> of a release, an OCI layout, or an image reference".into(),
                });
            }
            layouts.sort();
            return Ok(Target::Release {
                dir: path.to_path_buf(),
                layouts,
            });
        }
        if path.is_file() && input.ends_with(".tar") {
            return Ok(Target::Image(ImageRef::Archive {
                path: path.to_path_buf(),
                tag: None,
            }));
        }
        Ok(Target::Image(ImageRef::parse(input)?))
    }
}

/// A layout or archive named without a tag, with its only image tag filled in; an error naming
/// the tags when there are several (or none).
fn with_only_tag(r: &ImageRef) -> Result<ImageRef, AuditError> {
    let (layout, path) = match r {
        ImageRef::Layout { path, tag: None } => (Layout::open_dir(path, false)?, path),
        ImageRef::Archive { path, tag: None } => (Layout::open_archive(path)?, path),
        _ => return Ok(r.clone()),
    };
    let tags = cosign::image_tags(&layout);
    match tags.as_slice() {
        [one] => Ok(r.with_tag(one)),
        _ => Err(AuditError::Input {
            input: path.display().to_string(),
            reason: format!(
                "the layout holds {} image tags ({}); name one as oci:DIR:TAG",
                tags.len(),
                tags.join(", ")
            ),
        }),
    }
}

/// How to audit.
pub struct Options<'a> {
    /// The key signatures and attestations must verify with.
    pub key: &'a VerifyingKey,
    /// Where the key was read from, for the report.
    pub key_path: String,
    /// The verification policy (`distro verify`'s).
    pub policy: &'a Policy,
    /// Report even when verification fails (the report then says so at the top).
    pub unverified: bool,
    /// Registry connection options.
    pub registry: &'a RegistryOptions,
}

/// Audits `target`: verifies every image, and refuses (with every failed check) unless it
/// verified or `unverified` is set.
pub fn audit(
    subject: &str,
    target: &Target,
    opts: &Options<'_>,
) -> Result<AuditReport, AuditError> {
    let mut images = Vec::new();
    match target {
        Target::Image(r) => {
            let r = with_only_tag(r)?;
            let mut store = r.open(opts.registry, false)?;
            images.push(audit_image(
                store.as_mut(),
                &r.to_string(),
                r.selector().as_deref(),
                r.docker_reference().as_deref(),
                opts,
            ));
        }
        Target::Release { layouts, .. } => {
            for (component, dir) in layouts {
                let r = with_only_tag(&ImageRef::Layout {
                    path: dir.clone(),
                    tag: None,
                })?;
                let mut store = r.open(opts.registry, false)?;
                let mut one = audit_image(
                    store.as_mut(),
                    &r.to_string(),
                    r.selector().as_deref(),
                    None,
                    opts,
                );
                one.component.get_or_insert_with(|| component.clone());
                images.push(one);
            }
        }
    }
    let verified = images.iter().all(|i| i.verification.passed);
    if !verified && !opts.unverified {
        let failures = images
            .iter()
            .flat_map(|i| {
                i.verification
                    .checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(move |c| format!("{}: {}: {}", i.image, c.name, c.detail))
            })
            .collect();
        return Err(AuditError::Unverified {
            subject: subject.to_string(),
            keyid: opts.key.keyid(),
            failures,
        });
    }
    let summary = Summary {
        images: images.len(),
        images_verified: images.iter().filter(|i| i.verification.passed).count(),
        components: images.iter().map(|i| i.components.len()).sum(),
        advisories: images.iter().map(|i| i.advisories.len()).sum(),
        advisories_open: images
            .iter()
            .flat_map(|i| &i.advisories)
            .filter(|a| a.status == "affected" || a.status == "under_investigation")
            .count(),
        fips_mode_images: images
            .iter()
            .filter(|i| i.fips.as_ref().is_some_and(|f| f.mode))
            .count(),
        conformance_failed: images
            .iter()
            .filter_map(|i| i.conformance.as_ref())
            .map(|c| c.failed.len())
            .sum(),
    };
    Ok(AuditReport {
        schema_version: REPORT_SCHEMA_VERSION.into(),
        generated_by: format!("distro-audit {}", env!("CARGO_PKG_VERSION")),
        subject: subject.to_string(),
        key: KeyInfo {
            path: opts.key_path.clone(),
            fingerprint: opts.key.keyid(),
            algorithm: "ECDSA P-256 SHA-256".into(),
        },
        verified,
        unverified_override: !verified,
        summary,
        images,
    })
}

/// One attestation, opened.
struct Opened {
    predicate_type: String,
    predicate: Value,
    verified: bool,
}

/// Audits the image `selector` names in `store`.
pub fn audit_image(
    store: &mut dyn Store,
    name: &str,
    selector: Option<&str>,
    default_identity: Option<&str>,
    opts: &Options<'_>,
) -> ImageAudit {
    let report = verify::verify(
        store,
        name,
        selector,
        opts.key,
        opts.policy,
        default_identity,
    );
    let mut out = ImageAudit {
        image: name.to_string(),
        digest: report.digest.clone(),
        line: None,
        component: None,
        verification: Verification {
            passed: report.passed,
            key_fingerprint: report.keyid.clone(),
            checks: report
                .checks
                .iter()
                .map(|c| CheckResult {
                    name: c.name.clone(),
                    ok: c.ok,
                    detail: c.detail.clone(),
                })
                .collect(),
            attestations: Vec::new(),
        },
        components: Vec::new(),
        sbom: None,
        fips: None,
        advisories: Vec::new(),
        provenance: None,
        conformance: None,
        unverified_attestations: Vec::new(),
    };
    let Some(digest) = report.digest.clone() else {
        return out;
    };
    let stored = match cosign::attestations(store, &digest) {
        Ok(a) => a,
        Err(e) => {
            out.verification.checks.push(CheckResult {
                name: "audit attestations".into(),
                ok: false,
                detail: e.to_string(),
            });
            return out;
        }
    };
    let mut opened: Vec<Opened> = Vec::new();
    for a in &stored {
        let label = a
            .predicate_type
            .clone()
            .unwrap_or_else(|| "(no predicateType)".into());
        match open_attestation(&a.envelope, &digest, opts.key) {
            Ok((predicate_type, predicate, verified, problem)) => {
                out.verification.attestations.push(AttestationCheck {
                    predicate_type: predicate_type.clone(),
                    layer_digest: a.layer_digest.clone(),
                    verified,
                    problem,
                });
                if !verified {
                    out.unverified_attestations.push(predicate_type.clone());
                }
                opened.push(Opened {
                    predicate_type,
                    predicate,
                    verified,
                });
            }
            Err(problem) => {
                out.verification.attestations.push(AttestationCheck {
                    predicate_type: label.clone(),
                    layer_digest: a.layer_digest.clone(),
                    verified: false,
                    problem: Some(problem),
                });
                out.unverified_attestations.push(label);
            }
        }
    }
    // Verified attestations first; unverified ones only fill gaps, and only with --unverified.
    let pick = |t: &str| {
        opened
            .iter()
            .find(|o| o.predicate_type == t && o.verified)
            .or_else(|| {
                opened
                    .iter()
                    .find(|o| o.predicate_type == t && opts.unverified)
            })
            .map(|o| &o.predicate)
    };
    if let Some(p) = pick(PREDICATE_SLSA) {
        let (prov, line, component) = provenance(p);
        out.provenance = Some(prov);
        out.line = line;
        out.component = component;
    }
    if let Some(p) = pick(PREDICATE_CYCLONEDX) {
        let (info, comps) = sbom(p);
        if out.component.is_none() {
            out.component = p
                .pointer("/metadata/component/name")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        out.sbom = Some(info);
        out.components = comps;
    }
    if let Some(p) = pick(PREDICATE_FIPS) {
        out.fips = Some(fips(p));
    }
    if let Some(p) = pick(PREDICATE_OPENVEX) {
        out.advisories = vex(p, out.line.as_deref());
    }
    if let Some(p) = pick(PREDICATE_TEST_RESULT) {
        out.conformance = Some(conformance(p));
    }
    out
}

/// Opens a DSSE envelope: (predicateType, predicate, verified, why not). `Err` when it cannot
/// even be read.
fn open_attestation(
    envelope: &[u8],
    image_digest: &str,
    key: &VerifyingKey,
) -> Result<(String, Value, bool, Option<String>), String> {
    let env = Envelope::parse("attestation envelope", envelope).map_err(|e| e.to_string())?;
    let payload = env
        .payload_bytes("attestation envelope")
        .map_err(|e| e.to_string())?;
    let st: Value =
        serde_json::from_slice(&payload).map_err(|e| format!("statement is not JSON: {e}"))?;
    let predicate_type = st
        .get("predicateType")
        .and_then(Value::as_str)
        .unwrap_or("(no predicateType)")
        .to_string();
    let predicate = st.get("predicate").cloned().unwrap_or(Value::Null);
    let mut problem = None;
    if env.payload_type != INTOTO_PAYLOAD_TYPE {
        problem = Some(format!("payloadType is `{}`", env.payload_type));
    } else if !env
        .verify("attestation envelope", key)
        .map_err(|e| e.to_string())?
    {
        problem = Some(format!(
            "DSSE signature does not verify with key {}",
            key.keyid()
        ));
    } else {
        let hex = image_digest.strip_prefix("sha256:").unwrap_or(image_digest);
        let names_image = st
            .get("subject")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter()
                    .any(|s| s.pointer("/digest/sha256").and_then(Value::as_str) == Some(hex))
            });
        if !names_image {
            problem = Some(format!(
                "statement subject does not name the image digest {image_digest}"
            ));
        }
    }
    Ok((predicate_type, predicate, problem.is_none(), problem))
}

fn s(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("name")
                        .or_else(|| other.get("uri"))
                        .and_then(Value::as_str)
                        .map_or_else(|| other.to_string(), str::to_string),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sbom(doc: &Value) -> (SbomInfo, Vec<Component>) {
    fn walk(list: Option<&Value>, out: &mut Vec<Component>) {
        for c in list.and_then(Value::as_array).into_iter().flatten() {
            let licenses = c
                .get("licenses")
                .and_then(Value::as_array)
                .map(|ls| {
                    ls.iter()
                        .filter_map(|l| {
                            l.pointer("/license/id")
                                .or_else(|| l.pointer("/license/name"))
                                .or_else(|| l.get("expression"))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Component {
                name: s(c.get("name")).unwrap_or_else(|| "(unnamed)".into()),
                version: s(c.get("version")),
                licenses,
                purl: s(c.get("purl")),
                kind: s(c.get("type")),
            });
            walk(c.get("components"), out);
        }
    }
    let mut comps = Vec::new();
    walk(doc.get("components"), &mut comps);
    let info = SbomInfo {
        format: format!(
            "{} {}",
            s(doc.get("bomFormat")).unwrap_or_else(|| "unknown".into()),
            s(doc.get("specVersion")).unwrap_or_default()
        ),
        serial_number: s(doc.get("serialNumber")),
        describes: doc.pointer("/metadata/component").map(|c| {
            format!(
                "{} {}",
                s(c.get("name")).unwrap_or_default(),
                s(c.get("version")).unwrap_or_default()
            )
            .trim()
            .to_string()
        }),
    };
    (info, comps)
}

fn fips(p: &Value) -> FipsFacts {
    let ev: FipsEvidence = match serde_json::from_value(p.clone()) {
        Ok(e) => e,
        Err(e) => {
            return FipsFacts {
                mode: false,
                module_version: "unknown".into(),
                module_crate: "unknown".into(),
                validation: not_attested_validation(None, "the evidence does not parse"),
                validation_attested: false,
                binary: String::new(),
                binary_sha256: String::new(),
                fips_module_symbols: 0,
                fips_module_prefix: None,
                total_symbols: 0,
                forbidden_crypto: Vec::new(),
                self_tests_passed: None,
                enforcement: Vec::new(),
                tls_configs: Vec::new(),
                failures: vec![format!("the FIPS evidence attestation does not parse: {e}")],
            }
        }
    };
    let m = &ev.module;
    let enforcement = ev.enforcement.as_ref();
    FipsFacts {
        mode: ev.mode,
        module_version: m
            .version_in_binary
            .clone()
            .unwrap_or_else(|| format!("AWS-LC FIPS {}", m.module_line)),
        module_crate: format!("{} {}", m.crate_name, m.crate_version),
        validation: ev.validation.clone().unwrap_or_else(|| {
            not_attested_validation(
                Some(m),
                &format!(
                    "the evidence's module identity ({}); the evidence carries no validation section",
                    m.source
                ),
            )
        }),
        validation_attested: ev.validation.is_some(),
        binary: ev.binary.clone(),
        binary_sha256: ev.binary_sha256.clone(),
        fips_module_symbols: ev.symbols.fips_module_symbols,
        fips_module_prefix: ev.symbols.fips_module_prefix.clone(),
        total_symbols: ev.symbols.total_symbols,
        forbidden_crypto: ev
            .symbols
            .forbidden
            .iter()
            .map(|f| format!("{} ({} symbols)", f.implementation, f.symbols))
            .collect(),
        self_tests_passed: ev
            .self_check
            .as_ref()
            .map(|c| c.self_tests_passed)
            .or_else(|| enforcement.and_then(|e| e.self_tests_passed)),
        enforcement: enforcement
            .map(|e| e.mechanisms.clone())
            .unwrap_or_default(),
        tls_configs: ev
            .self_check
            .as_ref()
            .map(|c| c.tls_configs.clone())
            .unwrap_or_default(),
        failures: ev.failures.clone(),
    }
}

/// The validation facts of evidence that carries no validation section (it predates it, or
/// does not parse): what the module identity says, everything else "not attested"; the
/// certificate's pages follow from its number.
fn not_attested_validation(
    m: Option<&distro_schema::ModuleIdentity>,
    source: &str,
) -> ModuleValidation {
    let certificate = m.and_then(|m| m.cmvp_certificate);
    ModuleValidation {
        module_name: m.map_or_else(|| "unknown".into(), |m| m.module_name.clone()),
        module_version: m.map_or_else(
            || "unknown".into(),
            |m| format!("AWS-LC FIPS {}", m.module_line),
        ),
        standard: "FIPS 140-3 (not attested)".into(),
        status: m.map_or(distro_schema::CmvpStatus::NotValidated, |m| m.cmvp_status),
        certificate,
        certificate_url: certificate.map(cmvp_certificate_url),
        security_policy_url: certificate.map(cmvp_security_policy_url),
        sunset_date: None,
        tested_operational_environment: "not attested".into(),
        scope: distro_schema::MODULE_NOT_PRODUCT.into(),
        sources: vec![FactSource {
            fact: "certificate and status".into(),
            source: source.into(),
        }],
    }
}

fn vex(doc: &Value, line: Option<&str>) -> Vec<Advisory> {
    doc.get("statements")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|st| {
            let vuln = st.get("vulnerability");
            let id = vuln
                .and_then(|v| v.get("name").or(Some(v)))
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
                .to_string();
            Advisory {
                line: line.map(str::to_string),
                id,
                aliases: strings(vuln.and_then(|v| v.get("aliases"))),
                status: s(st.get("status")).unwrap_or_else(|| "(no status)".into()),
                justification: s(st.get("justification")),
                statement: s(st.get("impact_statement"))
                    .or_else(|| s(st.get("action_statement")))
                    .or_else(|| s(st.get("status_notes"))),
                products: st
                    .get("products")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|p| {
                                p.get("@id").and_then(Value::as_str).map(str::to_string)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn provenance(p: &Value) -> (ProvenanceFacts, Option<String>, Option<String>) {
    let bd = p.get("buildDefinition");
    let ext = bd.and_then(|b| b.get("externalParameters"));
    let int = bd.and_then(|b| b.get("internalParameters"));
    let deps = bd
        .and_then(|b| b.get("resolvedDependencies"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let dep = |name: &str| {
        deps.iter()
            .find(|d| d.get("name").and_then(Value::as_str) == Some(name))
    };
    let patches = deps
        .iter()
        .filter_map(|d| {
            let name = d.get("name")?.as_str()?.strip_prefix("patch:")?;
            Some(PatchFacts {
                name: name.to_string(),
                sha256: s(d.pointer("/digest/sha256")),
                origin: s(d.pointer("/annotations/origin")),
                advisories: strings(d.pointer("/annotations/advisories")),
            })
        })
        .collect();
    let toolchain: BTreeMap<String, String> = p
        .pointer("/runDetails/builder/version")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let facts = ProvenanceFacts {
        build_type: s(bd.and_then(|b| b.get("buildType"))).unwrap_or_default(),
        builder: s(p.pointer("/runDetails/builder/id")).unwrap_or_default(),
        source_repository: s(ext.and_then(|e| e.pointer("/source/repository"))),
        source_ref: s(ext.and_then(|e| e.pointer("/source/ref"))),
        source_commit: s(dep("source").and_then(|d| d.pointer("/digest/gitCommit"))),
        cargo_lock_sha256: s(dep("Cargo.lock").and_then(|d| d.pointer("/digest/sha256"))),
        features: strings(ext.and_then(|e| e.get("features"))),
        patches,
        toolchain,
        host: s(int.and_then(|i| i.get("host"))),
    };
    let line = s(ext.and_then(|e| e.get("line")));
    let component = s(ext.and_then(|e| e.get("component")));
    (facts, line, component)
}

fn conformance(p: &Value) -> Conformance {
    Conformance {
        result: s(p.get("result")).unwrap_or_else(|| "(no result)".into()),
        url: s(p.get("url")),
        configuration: strings(p.get("configuration")),
        passed: strings(p.get("passedTests")),
        warned: strings(p.get("warnedTests")),
        failed: strings(p.get("failedTests")),
    }
}
