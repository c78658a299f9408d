//! FIPS self-report (printed by a mesh binary) and FIPS evidence (written by `distro build`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a mesh binary reports about itself when run as `<binary> fips-check --format json`.
///
/// Every field comes from the running process: the crypto module is asked, not configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FipsSelfCheck {
    /// Component that produced the report (`mesh-proxy`, `mesh-control`).
    pub component: String,
    /// The component's own version.
    pub component_version: String,
    /// Whether the binary was compiled with the `fips` feature.
    pub fips_build: bool,
    /// Version string the linked crypto library reports at run time
    /// (`OpenSSL_version(OPENSSL_VERSION)`, e.g. `AWS-LC FIPS 3.6.0`).
    pub module_version_string: String,
    /// `aws_lc_rs::try_fips_mode()` succeeded.
    pub fips_mode: bool,
    /// The error `try_fips_mode()` returned, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fips_mode_error: Option<String>,
    /// The module's known-answer self-tests (`BORINGSSL_self_test()`) passed when run on demand.
    pub self_tests_passed: bool,
    /// rustls' `CryptoProvider::fips()` for the provider every configuration is built from.
    pub provider_fips: bool,
    /// Every TLS configuration the component uses, as built by the component's own code.
    pub tls_configs: Vec<TlsConfigReport>,
}

/// One TLS configuration of a component and what it will negotiate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsConfigReport {
    /// What the configuration is for (`inbound`, `outbound`, `control-server`, ...).
    pub name: String,
    /// `server` or `client`.
    pub role: String,
    /// `ServerConfig::fips()` / `ClientConfig::fips()`.
    pub fips: bool,
    /// Protocol versions it will negotiate (`TLSv1_3`, `TLSv1_2`).
    pub protocol_versions: Vec<String>,
    /// Cipher suites it will negotiate, in preference order (IANA names).
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups it will negotiate, in preference order.
    pub kx_groups: Vec<String>,
}

/// CMVP validation status of a cryptographic module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CmvpStatus {
    /// A CMVP certificate has been issued for this module version line.
    Validated,
    /// Submitted to CMVP and on the Modules In Process list; no certificate yet.
    InProcess,
    /// Not known to be submitted.
    NotValidated,
}

impl CmvpStatus {
    /// Stable lower-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CmvpStatus::Validated => "validated",
            CmvpStatus::InProcess => "in-process",
            CmvpStatus::NotValidated => "not-validated",
        }
    }
}

/// Which FIPS module a binary carries, from the lockfile and from the binary itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModuleIdentity {
    /// The crate that builds the module (`aws-lc-fips-sys`).
    pub crate_name: String,
    /// Its version as resolved by the source's Cargo.lock.
    pub crate_version: String,
    /// Module name as validated (`AWS-LC Cryptographic Module`).
    pub module_name: String,
    /// Module version line from the table (`3.x`).
    pub module_line: String,
    /// Version string found inside the binary (`AWS-LC FIPS 3.6.0`).
    pub version_in_binary: Option<String>,
    /// CMVP certificate number of that line for the way the binary links the module (static
    /// or dynamic, see `linkage`), when one exists.
    pub cmvp_certificate: Option<u32>,
    /// CMVP status of that line.
    pub cmvp_status: CmvpStatus,
    /// Where the table entry comes from.
    pub source: String,
    /// How the binary links the module, read from the binary: the module's symbols defined in
    /// the executable (static) or imported from a shared libcrypto it needs (dynamic).
    #[serde(default)]
    pub linkage: ModuleLinkage,
}

/// How a binary links the FIPS module; static and dynamic builds have separate CMVP
/// certificates (AWS-LC FIPS 3.x: #5314 static, #5298 dynamic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleLinkage {
    /// The module's code is in the executable (`aws_lc_fips_*` symbols defined in it).
    Static,
    /// The module is a shared library the executable needs (DT_NEEDED) and imports from.
    Dynamic,
    /// Not read from a binary yet (the lockfile alone cannot say).
    #[default]
    Unknown,
}

impl ModuleLinkage {
    /// Stable lower-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleLinkage::Static => "static",
            ModuleLinkage::Dynamic => "dynamic",
            ModuleLinkage::Unknown => "unknown",
        }
    }
}

/// A cryptographic implementation other than the FIPS module, found in the binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ForbiddenCrypto {
    /// Which implementation (`aws-lc (non-FIPS)`, `ring`, `OpenSSL`, ...).
    pub implementation: String,
    /// How many symbols matched.
    pub symbols: usize,
    /// A few of them, for the reader.
    pub examples: Vec<String>,
}

/// What the final binary's symbol table says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SymbolScan {
    /// Total symbols read.
    pub total_symbols: usize,
    /// Symbols of the AWS-LC FIPS module (`aws_lc_fips_*`).
    pub fips_module_symbols: usize,
    /// The prefix those symbols carry (`aws_lc_fips_0_13_17_`).
    pub fips_module_prefix: Option<String>,
    /// Shared libraries the binary needs at run time (DT_NEEDED).
    pub needed_libraries: Vec<String>,
    /// Other crypto implementations found; must be empty for a FIPS release.
    pub forbidden: Vec<ForbiddenCrypto>,
}

/// The evidence `distro build` writes per component and refuses to release without.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FipsEvidence {
    /// Version of this document's schema.
    pub schema_version: String,
    /// Component name from distro.toml.
    pub component: String,
    /// Binary file name.
    pub binary: String,
    /// sha256 of the binary the evidence is about.
    pub binary_sha256: String,
    /// Overall verdict: every check below held.
    pub mode: bool,
    /// Module identity.
    pub module: ModuleIdentity,
    /// Symbol scan of the final binary.
    pub symbols: SymbolScan,
    /// The binary's own report.
    pub self_check: Option<FipsSelfCheck>,
    /// Why `mode` is false; empty when it is true.
    pub failures: Vec<String>,
    /// The module's CMVP validation as an auditor checks it (certificate, standard, status,
    /// sunset, security policy), with where each fact comes from. Absent in evidence written
    /// before schema 1 grew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ModuleValidation>,
    /// How approved mode is enforced in this binary, and what it showed when run. Absent in
    /// evidence written before schema 1 grew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<ApprovedModeEnforcement>,
}

/// The standard every module line in the table is validated (or in process) against.
pub const FIPS_140_3: &str = "FIPS 140-3";

/// The plain statement auditors expect: what is validated is the module, not the product.
pub const MODULE_NOT_PRODUCT: &str = "The FIPS 140-3 validation belongs to the cryptographic module (the AWS-LC Cryptographic Module named above), not to this product. The product links that module and uses it only in its approved mode; the product itself is not FIPS 140-3 validated.";

/// A CMVP certificate page, e.g. `https://csrc.nist.gov/projects/cryptographic-module-validation-program/certificate/5314`.
pub fn cmvp_certificate_url(certificate: u32) -> String {
    format!("https://csrc.nist.gov/projects/cryptographic-module-validation-program/certificate/{certificate}")
}

/// A CMVP security policy document, e.g. `.../security-policies/140sp5314.pdf`.
pub fn cmvp_security_policy_url(certificate: u32) -> String {
    format!("https://csrc.nist.gov/CSRC/media/projects/cryptographic-module-validation-program/documents/security-policies/140sp{certificate}.pdf")
}

/// One fact of the validation and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FactSource {
    /// Which fact (`certificate`, `sunset_date`, ...).
    pub fact: String,
    /// Where it comes from (a URL and what it says), or `unconfirmed: ...`.
    pub source: String,
}

/// The CMVP validation of a module line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModuleValidation {
    /// Module name as on the certificate (`AWS-LC Cryptographic Module (static)`).
    pub module_name: String,
    /// Module version line (`AWS-LC FIPS 3.x`); the exact version is in the binary's evidence.
    pub module_version: String,
    /// The standard (`FIPS 140-3`).
    pub standard: String,
    /// CMVP status of the line.
    pub status: CmvpStatus,
    /// Certificate number of the build this product links (static), when issued.
    pub certificate: Option<u32>,
    /// The certificate's page at NIST.
    pub certificate_url: Option<String>,
    /// The module's security policy (the document that says how to use it in approved mode).
    pub security_policy_url: Option<String>,
    /// Sunset date of the certificate (`YYYY-MM-DD`); `None` when it could not be confirmed.
    pub sunset_date: Option<String>,
    /// The operational environments the module was tested on, as the certificate lists them, or
    /// `unconfirmed: ...` with where to look.
    pub tested_operational_environment: String,
    /// That the module is validated, not the product ([`MODULE_NOT_PRODUCT`]).
    pub scope: String,
    /// Where each fact above comes from.
    pub sources: Vec<FactSource>,
}

/// How the binary keeps to the module's approved mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovedModeEnforcement {
    /// The mechanisms, in words (`refuses to start unless aws_lc_rs::try_fips_mode() succeeds`, ...).
    pub mechanisms: Vec<String>,
    /// Whether the module's self-tests passed when the binary was run; `None` if it was not run.
    pub self_tests_passed: Option<bool>,
    /// `fips()` of every TLS configuration the binary reported.
    pub tls_configurations: Vec<TlsConfigFips>,
}

/// One TLS configuration's `fips()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsConfigFips {
    /// Configuration name (`inbound`, ...).
    pub name: String,
    /// `ServerConfig::fips()` / `ClientConfig::fips()`.
    pub fips: bool,
}
