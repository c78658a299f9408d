//! Evidence from the built binary: its symbols, its bytes, and its own `fips-check`.

use std::path::Path;
use std::time::Duration;

use distro_config::Component;
use distro_schema::{
    ApprovedModeEnforcement, FipsEvidence, FipsSelfCheck, ModuleIdentity, ModuleLinkage,
    TlsConfigFips, SCHEMA_VERSION,
};

use crate::fips::{module, symbols};
use crate::fsutil;
use crate::BuildError;
use distro_hostio::Cmd;

/// TLS 1.3 and 1.2 suites the FIPS policy allows (AES-GCM with ECDHE).
pub const APPROVED_SUITES: &[&str] = &[
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
];

/// Key-exchange groups the FIPS policy allows.
pub const APPROVED_GROUPS: &[&str] = &["secp256r1", "secp384r1"];

/// Runs `<binary> fips-check --format json` and parses its report.
pub fn run_self_check(
    binary: &Path,
) -> Result<(Option<FipsSelfCheck>, Option<String>), BuildError> {
    let out = Cmd::new(binary, "ask the built binary for its FIPS self-report")
        .args(["fips-check", "--format", "json"])
        .output_with_timeout(Duration::from_secs(120))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<FipsSelfCheck>(&stdout) {
        Ok(report) => Ok((Some(report), None)),
        Err(e) => Ok((
            None,
            Some(format!(
                "`{} fips-check --format json` did not print a FIPS self-report ({e}); exit {}; stderr: {}",
                binary.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        )),
    }
}

/// Collects the evidence for one component's binary against the module the lockfile resolved.
pub fn collect(
    component: &Component,
    binary: &Path,
    module: &ModuleIdentity,
) -> Result<FipsEvidence, BuildError> {
    let data = std::fs::read(binary).map_err(fsutil::io("reading", binary))?;
    let scan = symbols::scan_bytes(binary, &data)?;
    let mut module = module.clone();
    module.version_in_binary = symbols::module_version_string(&data);
    let mut failures = Vec::new();
    // Static and dynamic builds of a module line have different CMVP certificates: name the one
    // that matches how this binary links the module.
    module.linkage = symbols::module_linkage(&data, &scan.needed_libraries);
    if module.linkage == ModuleLinkage::Unknown {
        failures.push(
            "cannot tell from the binary whether it links the FIPS module statically or dynamically, so no CMVP certificate applies".to_string(),
        );
        module.cmvp_certificate = None;
    } else if module.module_line != "unknown" {
        module.cmvp_certificate = module::certificate_for(&module.crate_version, module.linkage);
    }

    if scan.fips_module_symbols == 0 {
        failures
            .push("the binary contains no AWS-LC FIPS module symbols (aws_lc_fips_*)".to_string());
    }
    if let Some(prefix) = &scan.fips_module_prefix {
        let expected = format!("aws_lc_fips_{}_", module.crate_version.replace('.', "_"));
        if prefix != &expected {
            failures.push(format!(
                "the binary's FIPS module symbols carry prefix {prefix} but the lockfile resolves {} {} (expected {expected})",
                module.crate_name, module.crate_version
            ));
        }
    }
    for f in &scan.forbidden {
        failures.push(format!(
            "the binary contains another crypto implementation: {} ({} symbols, e.g. {})",
            f.implementation,
            f.symbols,
            f.examples.first().map(String::as_str).unwrap_or("-")
        ));
    }
    match &module.version_in_binary {
        None => failures.push("no `AWS-LC FIPS <version>` string in the binary".to_string()),
        Some(v) => {
            let major = v
                .trim_start_matches("AWS-LC FIPS ")
                .split('.')
                .next()
                .and_then(|m| m.parse::<u64>().ok());
            let expected = semver::Version::parse(&module.crate_version)
                .ok()
                .and_then(|cv| module::lookup(&cv))
                .map(|row| row.module_major);
            if expected.is_some() && major != expected {
                failures.push(format!(
                    "the binary carries {v} but {} {} builds module line {}",
                    module.crate_name, module.crate_version, module.module_line
                ));
            }
        }
    }

    let (self_check, self_check_error) = run_self_check(binary)?;
    if let Some(e) = self_check_error {
        failures.push(e);
    }
    if let Some(r) = &self_check {
        if r.component != component.package && r.component != component.name {
            failures.push(format!(
                "the binary reports itself as `{}`, not `{}`",
                r.component, component.name
            ));
        }
        if !r.fips_build {
            failures.push("the binary reports it was built without the `fips` feature".into());
        }
        if !r.fips_mode {
            failures.push(format!(
                "aws_lc_rs::try_fips_mode() failed in the binary: {}",
                r.fips_mode_error.as_deref().unwrap_or("no reason given")
            ));
        }
        if !r.self_tests_passed {
            failures.push("the module's self-tests did not pass".into());
        }
        if !r.provider_fips {
            failures.push("the rustls crypto provider reports fips() == false".into());
        }
        if !r.module_version_string.starts_with("AWS-LC FIPS ") {
            failures.push(format!(
                "the module reports `{}` at run time, not an AWS-LC FIPS version",
                r.module_version_string
            ));
        }
        if r.tls_configs.is_empty() {
            failures.push("the binary reports no TLS configurations".into());
        }
        for c in &r.tls_configs {
            if !c.fips {
                failures.push(format!(
                    "TLS configuration `{}` reports fips() == false",
                    c.name
                ));
            }
            for s in &c.cipher_suites {
                if !APPROVED_SUITES.contains(&s.as_str()) {
                    failures.push(format!(
                        "TLS configuration `{}` offers non-approved suite {s}",
                        c.name
                    ));
                }
            }
            for g in &c.kx_groups {
                if !APPROVED_GROUPS.contains(&g.as_str()) {
                    failures.push(format!(
                        "TLS configuration `{}` offers non-approved group {g}",
                        c.name
                    ));
                }
            }
        }
    }

    let enforcement = enforcement(self_check.as_ref());
    let validation = Some(module::validation(&module));
    Ok(FipsEvidence {
        schema_version: SCHEMA_VERSION.to_string(),
        component: component.name.clone(),
        binary: binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        binary_sha256: distro_hostio::sha256_hex(&data),
        mode: failures.is_empty(),
        module,
        symbols: scan,
        self_check,
        failures,
        validation,
        enforcement: Some(enforcement),
    })
}

/// How the mesh binaries hold to approved mode (see mesh-core's crypto provider), with what this
/// binary's own report showed.
pub fn enforcement(self_check: Option<&FipsSelfCheck>) -> ApprovedModeEnforcement {
    ApprovedModeEnforcement {
        mechanisms: vec![
            "built with the `fips` feature: rustls uses aws-lc-rs over aws-lc-fips-sys, and the release build links only the FIPS module (checked in the symbol table)".into(),
            "refuses to start unless aws_lc_rs::try_fips_mode() succeeds (the module's power-on self-tests passed and it is in approved mode)".into(),
            "every TLS configuration is built from rustls' FIPS provider with FIPS-approved suites (AES-GCM) and groups (P-256, P-384) only, and the binary checks ServerConfig::fips() / ClientConfig::fips() of each".into(),
            "`distro build` runs the binary's `fips-check` and refuses to release when any of the above does not hold".into(),
        ],
        self_tests_passed: self_check.map(|r| r.self_tests_passed),
        tls_configurations: self_check
            .map(|r| {
                r.tls_configs
                    .iter()
                    .map(|c| TlsConfigFips {
                        name: c.name.clone(),
                        fips: c.fips,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
