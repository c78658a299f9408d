//! The audit report: one typed document, rendered as JSON as it is and as HTML and Markdown by
//! templates over the same value, so the three formats carry the same facts. Its JSON Schema is
//! snapshot-tested (`tests/schema.rs`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the report's schema; bumped on any incompatible change.
pub const REPORT_SCHEMA_VERSION: &str = "2";

/// in-toto test-result predicate (conformance results), when attached.
pub const PREDICATE_TEST_RESULT: &str = "https://in-toto.io/attestation/test-result/v0.1";

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditReport {
    /// Version of this document's schema.
    pub schema_version: String,
    /// The tool that wrote it (`distro-audit 0.1.0`).
    pub generated_by: String,
    /// What was audited, as given (an image reference, a layout or a release directory).
    pub subject: String,
    /// The key everything was checked against.
    pub key: KeyInfo,
    /// Every image verified (signature, attestations, policy) with the key.
    pub verified: bool,
    /// The report was made with `--unverified` although verification failed: its facts come
    /// from documents that did not all verify and must not be relied on.
    pub unverified_override: bool,
    /// Counts across all images, for the summary.
    pub summary: Summary,
    /// One section per image.
    pub images: Vec<ImageAudit>,
}

/// The public key used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyInfo {
    /// Where it was read from.
    pub path: String,
    /// Fingerprint: hex sha256 of the key's DER SubjectPublicKeyInfo (the key id `distro`
    /// prints, and the DSSE `keyid`).
    pub fingerprint: String,
    /// Algorithm (`ECDSA P-256 SHA-256`).
    pub algorithm: String,
}

/// Counts for the summary at the top.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Images audited.
    pub images: usize,
    /// Images whose every check held.
    pub images_verified: usize,
    /// Components listed in the SBOMs (summed over images).
    pub components: usize,
    /// Advisory statements in the VEX documents.
    pub advisories: usize,
    /// Of those, `affected` or `under_investigation`.
    pub advisories_open: usize,
    /// Images whose FIPS evidence says mode = true.
    pub fips_mode_images: usize,
    /// Conformance tests failed (over all attached results).
    pub conformance_failed: usize,
}

/// Everything about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageAudit {
    /// The image as named.
    pub image: String,
    /// Manifest digest, when it resolved.
    pub digest: Option<String>,
    /// Release line, from the provenance (`0.1`).
    pub line: Option<String>,
    /// Component, from the provenance or the SBOM (`mesh-proxy`).
    pub component: Option<String>,
    /// What verification found.
    pub verification: Verification,
    /// Every component of the SBOM attestation.
    pub components: Vec<Component>,
    /// The SBOM document itself (format, serial number).
    pub sbom: Option<SbomInfo>,
    /// The FIPS module and the binary's evidence.
    pub fips: Option<FipsFacts>,
    /// Every advisory statement of the VEX attestation.
    pub advisories: Vec<Advisory>,
    /// Where the binary came from.
    pub provenance: Option<ProvenanceFacts>,
    /// Conformance results, when a test-result attestation is attached.
    pub conformance: Option<Conformance>,
    /// Attestations that are attached but were not used because they did not verify.
    pub unverified_attestations: Vec<String>,
}

/// Which signatures and attestations were checked against which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Verification {
    /// Every check held.
    pub passed: bool,
    /// Fingerprint of the key checked against.
    pub key_fingerprint: String,
    /// Each check as `distro verify` makes it.
    pub checks: Vec<CheckResult>,
    /// Each attestation found, whether its DSSE signature verified with the key.
    pub attestations: Vec<AttestationCheck>,
}

/// One verification check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// Check name (`image`, `signature`, `attestation https://...`, `policy fips`).
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

/// One attestation found for the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttestationCheck {
    /// Its predicate type.
    pub predicate_type: String,
    /// The layer holding its DSSE envelope.
    pub layer_digest: String,
    /// The envelope verified with the key and its subject is this image.
    pub verified: bool,
    /// Why not, when it did not.
    pub problem: Option<String>,
}

/// One SBOM component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Component {
    /// Name.
    pub name: String,
    /// Version.
    pub version: Option<String>,
    /// Licences (SPDX ids or expressions, or names), as the SBOM gives them.
    pub licenses: Vec<String>,
    /// Package URL.
    pub purl: Option<String>,
    /// CycloneDX component type (`library`, `cryptographic-asset`, ...).
    pub kind: Option<String>,
}

/// The SBOM document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SbomInfo {
    /// `CycloneDX 1.6`.
    pub format: String,
    /// Its serial number.
    pub serial_number: Option<String>,
    /// The component it describes (`mesh-proxy 0.1.0`).
    pub describes: Option<String>,
}

/// The FIPS module and the binary's evidence, from the FIPS evidence attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FipsFacts {
    /// Overall verdict of the evidence.
    pub mode: bool,
    /// Module version: the string in the binary, else the module line.
    pub module_version: String,
    /// Crate that builds it, with version (`aws-lc-fips-sys 0.13.17`).
    pub module_crate: String,
    /// The module's validation as the evidence attests it (name, standard, CMVP status,
    /// certificate and its page, security policy, sunset date — `null` when unconfirmed —,
    /// tested operational environment, scope, and where each fact comes from); for evidence
    /// that predates the validation section, the facts its module identity gives, marked
    /// "not attested".
    pub validation: distro_schema::ModuleValidation,
    /// Whether the validation above was attested in the evidence (`true`) or derived from the
    /// module identity because the evidence predates it (`false`).
    pub validation_attested: bool,
    /// Binary file name the evidence is about.
    pub binary: String,
    /// Its sha256.
    pub binary_sha256: String,
    /// FIPS module symbols found in the binary.
    pub fips_module_symbols: usize,
    /// The prefix they carry.
    pub fips_module_prefix: Option<String>,
    /// Total symbols read.
    pub total_symbols: usize,
    /// Other crypto implementations found (must be none).
    pub forbidden_crypto: Vec<String>,
    /// Whether the module's self-tests passed when the binary ran; `None`: not run.
    pub self_tests_passed: Option<bool>,
    /// How approved mode is enforced.
    pub enforcement: Vec<String>,
    /// Every TLS configuration and what it negotiates.
    pub tls_configs: Vec<distro_schema::TlsConfigReport>,
    /// Why the evidence says mode = false.
    pub failures: Vec<String>,
}

/// One VEX statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Advisory {
    /// Release line it applies to.
    pub line: Option<String>,
    /// Advisory id (`RUSTSEC-2024-0336`, `CVE-...`).
    pub id: String,
    /// Other ids of the same advisory.
    pub aliases: Vec<String>,
    /// OpenVEX status.
    pub status: String,
    /// Justification (`not_affected`).
    pub justification: Option<String>,
    /// Impact or action statement.
    pub statement: Option<String>,
    /// Products named.
    pub products: Vec<String>,
}

/// The provenance of the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProvenanceFacts {
    /// SLSA build type.
    pub build_type: String,
    /// Builder id.
    pub builder: String,
    /// Source repository.
    pub source_repository: Option<String>,
    /// Source ref.
    pub source_ref: Option<String>,
    /// Source commit.
    pub source_commit: Option<String>,
    /// Cargo.lock sha256.
    pub cargo_lock_sha256: Option<String>,
    /// Cargo features built with.
    pub features: Vec<String>,
    /// Patches applied, in order.
    pub patches: Vec<PatchFacts>,
    /// Tool versions (rustc, cargo, cmake, go, cc).
    pub toolchain: BTreeMap<String, String>,
    /// Build host.
    pub host: Option<String>,
}

/// One patch applied to the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PatchFacts {
    /// Patch name.
    pub name: String,
    /// sha256 of the patch file.
    pub sha256: Option<String>,
    /// DEP-3 origin.
    pub origin: Option<String>,
    /// Advisories it fixes.
    pub advisories: Vec<String>,
}

/// Conformance results from an in-toto test-result attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Conformance {
    /// `PASSED`, `WARNED` or `FAILED`.
    pub result: String,
    /// Where the full results are.
    pub url: Option<String>,
    /// Configuration the tests ran with (environments, profiles).
    pub configuration: Vec<String>,
    /// Passed tests.
    pub passed: Vec<String>,
    /// Warned tests.
    pub warned: Vec<String>,
    /// Failed tests.
    pub failed: Vec<String>,
}
