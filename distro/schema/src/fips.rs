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
}
