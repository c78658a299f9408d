//! The FIPS module a lockfile resolves, and its CMVP status.
//!
//! The table maps the `aws-lc-fips-sys` crate line to the AWS-LC FIPS module line it builds and
//! to that line's CMVP certificate. Rust binaries link the module statically, so the static
//! certificate is the one that applies. Sources:
//! - aws-lc-rs FIPS documentation, <https://github.com/aws/aws-lc-rs/blob/main/aws-lc-rs/README.md>
//!   (which crate versions build which module);
//! - NIST CMVP certificates #4816 (AWS-LC FIPS 2.0, static),
//!   <https://csrc.nist.gov/projects/cryptographic-module-validation-program/certificate/4816>;
//!   #5298 (AWS-LC FIPS 3.0, dynamic) and #5314 (AWS-LC FIPS 3.0, static),
//!   <https://csrc.nist.gov/projects/cryptographic-module-validation-program/certificate/5314>;
//! - NIST CMVP Modules In Process list for AWS-LC FIPS 4.0,
//!   <https://csrc.nist.gov/Projects/cryptographic-module-validation-program/modules-in-process/modules-in-process-list>.
//!
//! Review this table when a new module line is certified; the snapshot test in
//! `tests/module_table.rs` pins it so a change is deliberate.

use std::path::Path;

use distro_config::FipsPolicy;
use distro_schema::{CmvpStatus, ModuleIdentity, ModuleLinkage};

use crate::lockfile::Lockfile;
use crate::BuildError;

/// The crate that builds the AWS-LC FIPS module.
pub const FIPS_SYS_CRATE: &str = "aws-lc-fips-sys";

/// One row of the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleLine {
    /// Crate versions this row covers (`0.13`), matched on major.minor.
    pub crate_line: (u64, u64),
    /// Module version line (`3.x`); the binary's version string must have this major.
    pub module_major: u64,
    /// CMVP certificate of the static build, if issued.
    pub static_certificate: Option<u32>,
    /// CMVP certificate of the dynamic build, if issued (for reference).
    pub dynamic_certificate: Option<u32>,
    /// Status.
    pub status: CmvpStatus,
}

/// The table. Order: oldest first.
pub const MODULE_TABLE: &[ModuleLine] = &[
    ModuleLine {
        crate_line: (0, 12),
        module_major: 2,
        static_certificate: Some(4816),
        dynamic_certificate: None,
        status: CmvpStatus::Validated,
    },
    ModuleLine {
        crate_line: (0, 13),
        module_major: 3,
        static_certificate: Some(5314),
        dynamic_certificate: Some(5298),
        status: CmvpStatus::Validated,
    },
    ModuleLine {
        crate_line: (0, 14),
        module_major: 4,
        static_certificate: None,
        dynamic_certificate: None,
        status: CmvpStatus::InProcess,
    },
];

/// Where the table comes from, recorded in every evidence file.
pub const TABLE_SOURCE: &str = "distro-build module table (aws-lc-rs FIPS docs; NIST CMVP certificates #4816, #5298, #5314; CMVP Modules In Process list)";

/// The table row for a crate version.
pub fn lookup(crate_version: &semver::Version) -> Option<&'static ModuleLine> {
    MODULE_TABLE
        .iter()
        .find(|m| m.crate_line == (crate_version.major, crate_version.minor))
}

/// Identifies the FIPS module a lockfile resolves.
pub fn identify(lock: &Lockfile, lock_path: &Path) -> Result<ModuleIdentity, BuildError> {
    let found = lock.versions_of(FIPS_SYS_CRATE);
    let pkg = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(BuildError::Lockfile {
                path: lock_path.to_path_buf(),
                message: format!("no `{FIPS_SYS_CRATE}` in the lockfile: nothing here builds the AWS-LC FIPS module"),
                help: "enable the components' `fips` feature (rustls/fips, aws-lc-rs/fips) and regenerate Cargo.lock".into(),
            })
        }
        many => {
            let versions: Vec<&str> = many.iter().map(|p| p.version.as_str()).collect();
            return Err(BuildError::Lockfile {
                path: lock_path.to_path_buf(),
                message: format!(
                    "the lockfile resolves {} versions of `{FIPS_SYS_CRATE}` ({}): a binary must carry exactly one FIPS module",
                    many.len(),
                    versions.join(", ")
                ),
                help: "align the aws-lc-rs requirements of all crates so one module version is used".into(),
            });
        }
    };
    let version = semver::Version::parse(&pkg.version).map_err(|e| BuildError::Lockfile {
        path: lock_path.to_path_buf(),
        message: format!(
            "`{FIPS_SYS_CRATE}` version `{}` is not semver: {e}",
            pkg.version
        ),
        help: "regenerate Cargo.lock".into(),
    })?;
    Ok(match lookup(&version) {
        Some(row) => ModuleIdentity {
            crate_name: FIPS_SYS_CRATE.into(),
            crate_version: pkg.version.clone(),
            module_name: "AWS-LC Cryptographic Module".into(),
            module_line: format!("{}.x", row.module_major),
            version_in_binary: None,
            // Until the binary is read, the static certificate: Rust binaries link the module
            // statically; [`certificate_for`] settles it from the binary.
            cmvp_certificate: row.static_certificate,
            cmvp_status: row.status,
            source: TABLE_SOURCE.into(),
            linkage: ModuleLinkage::Unknown,
        },
        None => ModuleIdentity {
            crate_name: FIPS_SYS_CRATE.into(),
            crate_version: pkg.version.clone(),
            module_name: "AWS-LC Cryptographic Module".into(),
            module_line: "unknown".into(),
            version_in_binary: None,
            cmvp_certificate: None,
            cmvp_status: CmvpStatus::NotValidated,
            source: TABLE_SOURCE.into(),
            linkage: ModuleLinkage::Unknown,
        },
    })
}

/// The CMVP certificate of a crate version's module line for the way a binary links it: static
/// and dynamic builds are validated separately (AWS-LC FIPS 3.x: #5314 static, #5298 dynamic).
pub fn certificate_for(crate_version: &str, linkage: ModuleLinkage) -> Option<u32> {
    let row = semver::Version::parse(crate_version)
        .ok()
        .and_then(|v| lookup(&v))?;
    match linkage {
        ModuleLinkage::Static => row.static_certificate,
        ModuleLinkage::Dynamic => row.dynamic_certificate,
        ModuleLinkage::Unknown => None,
    }
}

/// The crate lines whose module is validated, for messages.
pub fn validated_lines() -> Vec<String> {
    MODULE_TABLE
        .iter()
        .filter(|m| m.status == CmvpStatus::Validated)
        .map(|m| {
            format!(
                "{FIPS_SYS_CRATE} {}.{}.x (AWS-LC FIPS {}.x, CMVP #{})",
                m.crate_line.0,
                m.crate_line.1,
                m.module_major,
                m.static_certificate.map_or("-".into(), |c| c.to_string())
            )
        })
        .collect()
}

/// Enforces the distribution's FIPS policy on the identified module.
pub fn check_policy(
    module: &ModuleIdentity,
    policy: &FipsPolicy,
    lock_path: &Path,
) -> Result<(), BuildError> {
    if policy.require_validated_module && module.cmvp_status != CmvpStatus::Validated {
        return Err(BuildError::FipsPolicy {
            lockfile: lock_path.to_path_buf(),
            message: format!(
                "the lockfile resolves {} {} (AWS-LC FIPS {}, CMVP status: {}), but this distribution requires a CMVP-validated module (fips.require_validated_module = true)",
                module.crate_name,
                module.crate_version,
                module.module_line,
                module.cmvp_status.as_str()
            ),
            help: format!(
                "resolve a validated module: {}. With rustls, that means rustls < 0.23.46 and aws-lc-rs < 1.18 (e.g. `cargo update -p aws-lc-rs --precise 1.17.4`); or set fips.require_validated_module = false in distro.toml to accept a module in process",
                validated_lines().join(" or ")
            ),
        });
    }
    Ok(())
}
