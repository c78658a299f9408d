//! Run-time FIPS proof: what the linked module says about itself.
//!
//! Nothing here reads configuration. The module is asked for its version string and FIPS state,
//! its known-answer self-tests are run on demand, and every TLS configuration the component uses
//! is built by the component's own code and asked for `fips()`.

use std::ffi::CStr;

use distro_schema::{FipsSelfCheck, TlsConfigReport};

use crate::crypto;

/// Why a component refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum FipsError {
    /// The binary was built without the FIPS module.
    #[error("this binary was built without the FIPS module (feature `fips` off); it cannot run in FIPS mode")]
    NotFipsBuild,
    /// The module is present but not in FIPS mode.
    #[error("the crypto module is not in FIPS mode: {0}")]
    NotFipsMode(String),
    /// The module's self-tests failed.
    #[error("the crypto module's power-on self-tests failed")]
    SelfTestsFailed,
    /// A TLS configuration would negotiate something that is not FIPS-approved.
    #[error("TLS configuration `{0}` is not FIPS-compliant (rustls fips() is false)")]
    ConfigNotFips(String),
}

/// The version string the linked AWS-LC reports, e.g. `AWS-LC FIPS 3.6.0`.
pub fn module_version_string() -> String {
    // SAFETY: `OpenSSL_version(OPENSSL_VERSION)` returns a pointer to a static,
    // NUL-terminated string compiled into the library; it is never null and never freed.
    #[allow(unsafe_code)]
    let ptr = unsafe { sys::OpenSSL_version(sys::OPENSSL_VERSION) };
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: non-null, static and NUL-terminated as stated above.
    #[allow(unsafe_code)]
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_string_lossy().into_owned()
}

/// Runs the module's known-answer self-tests now and says whether they passed.
pub fn run_self_tests() -> bool {
    // SAFETY: `BORINGSSL_self_test` takes no arguments, touches only the module's own state
    // and returns 1 on success; it is safe to call at any time after the library is loaded.
    #[allow(unsafe_code)]
    let rc = unsafe { sys::BORINGSSL_self_test() };
    rc == 1
}

/// Builds the self-report of a component from its TLS configuration reports.
pub fn self_check(
    component: &str,
    version: &str,
    tls_configs: Vec<TlsConfigReport>,
) -> FipsSelfCheck {
    let (fips_mode, fips_mode_error) = match aws_lc_rs::try_fips_mode() {
        Ok(()) => (true, None),
        Err(e) => (false, Some(e.to_string())),
    };
    FipsSelfCheck {
        component: component.to_string(),
        component_version: version.to_string(),
        fips_build: crypto::FIPS_BUILD,
        module_version_string: module_version_string(),
        fips_mode,
        fips_mode_error,
        self_tests_passed: run_self_tests(),
        provider_fips: crypto::provider().fips(),
        tls_configs,
    }
}

/// The gate every component passes before it serves anything.
pub fn ensure_fips(report: &FipsSelfCheck) -> Result<(), FipsError> {
    if !report.fips_build {
        return Err(FipsError::NotFipsBuild);
    }
    if !report.fips_mode {
        return Err(FipsError::NotFipsMode(
            report.fips_mode_error.clone().unwrap_or_default(),
        ));
    }
    if !report.self_tests_passed {
        return Err(FipsError::SelfTestsFailed);
    }
    if let Some(c) = report.tls_configs.iter().find(|c| !c.fips) {
        return Err(FipsError::ConfigNotFips(c.name.clone()));
    }
    Ok(())
}

#[cfg(feature = "fips")]
use aws_lc_fips_sys as sys;
#[cfg(not(feature = "fips"))]
use aws_lc_sys as sys;

/// Renders a self-report for a person.
pub fn render_text(r: &FipsSelfCheck) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let yes = |b: bool| if b { "yes" } else { "NO" };
    let _ = writeln!(
        s,
        "component:        {} {}",
        r.component, r.component_version
    );
    let _ = writeln!(s, "crypto module:    {}", r.module_version_string);
    let _ = writeln!(s, "FIPS build:       {}", yes(r.fips_build));
    let _ = writeln!(
        s,
        "FIPS mode:        {}{}",
        yes(r.fips_mode),
        r.fips_mode_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "self-tests:       {}",
        if r.self_tests_passed {
            "passed"
        } else {
            "FAILED"
        }
    );
    let _ = writeln!(s, "provider fips():  {}", yes(r.provider_fips));
    for c in &r.tls_configs {
        let _ = writeln!(s, "tls {} ({}): fips()={}", c.name, c.role, yes(c.fips));
        let _ = writeln!(s, "  versions: {}", c.protocol_versions.join(", "));
        let _ = writeln!(s, "  suites:   {}", c.cipher_suites.join(", "));
        let _ = writeln!(s, "  groups:   {}", c.kx_groups.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module answers with its version and passes its self-tests.
    #[test]
    fn module_reports_itself() {
        let v = module_version_string();
        assert!(v.starts_with("AWS-LC"), "{v}");
        assert_eq!(v.contains("FIPS"), crypto::FIPS_BUILD, "{v}");
        assert!(run_self_tests());
    }

    /// In a FIPS build the gate passes; in a non-FIPS build it refuses.
    #[test]
    fn gate_matches_build() {
        use crate::tls::{self, ClientAuth, EphemeralIdentity, ExpectedPeer};
        let id = EphemeralIdentity::new("spiffe://fips-check.invalid/ns/default/sa/test").unwrap();
        let server = tls::spiffe_server_config(
            id.roots.clone(),
            id.chain.clone(),
            id.key(),
            ClientAuth::Required,
        )
        .unwrap();
        let client = tls::spiffe_client_config(
            id.roots.clone(),
            id.chain.clone(),
            id.key(),
            ExpectedPeer::TrustDomain("fips-check.invalid".into()),
        )
        .unwrap();
        let configs = vec![
            tls::describe_server("server", &server),
            tls::describe_client("client", &client),
        ];
        let report = self_check("test", "0", configs);
        assert_eq!(
            ensure_fips(&report).is_ok(),
            crypto::FIPS_BUILD,
            "{report:?}"
        );
    }
}
