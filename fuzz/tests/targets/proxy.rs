//! mesh-proxy: its local configuration file, and the mesh configuration the control plane
//! pushes to it.

use std::path::Path;
use std::sync::Arc;

use distro_fuzz::{fuzz, Options};
use mesh_core::api::ConfigResponse;
use mesh_proxy::config::LocalConfig;
use mesh_proxy::Proxy;

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "-0",
    "1e400",
    "\\u0000",
    "\"127.0.0.1:0\"",
    "\"[::1]:8080\"",
    "\"address\":",
    "\"addresses\":",
    "[\"127.0.0.1:1\",\"[::1]:2\"]",
    "\"admin\":",
    "\"inbound\":",
    "\"listen\":",
    "\"app\":",
    "\"protocol\":",
    "\"detect\"",
    "\"http\"",
    "\"tcp\"",
    "\"outbound\":",
    "\"service\":",
    "\"transparent\":",
    "\"identity\":",
    "\"cert_chain\":",
    "\"key\":",
    "\"trust_bundle\":",
    "\"control_plane\":",
    "\"address\":",
    "\"ca_bundle\":",
    "\"token_file\":",
    "\"mesh\":",
    "\"limits\":",
    "\"max_connections\":",
    "\"max_header_bytes\":",
    "\"access_log\":",
    "\"http_paths\":",
    "\"trust_bundle_pem\":",
    "\"mtls_mode\":",
    "\"STRICT\"",
    "\"PERMISSIVE\"",
    "\"tls\":",
    "\"min_version\":",
    "\"TLSv1_3\"",
    "\"cipher_suites\":",
    "\"kx_groups\":",
    "\"X25519\"",
    "\"TLS13_CHACHA20_POLY1305_SHA256\"",
    "\"authorization\":",
    "\"sources\":",
    "\"paths\":",
    "\"/a/../b\"",
    "\"%2e\"",
    "\"methods\":",
    "\"services\":",
    "\"endpoints\":",
    "\"labels\":",
    "\"routes\":",
    "\"destinations\":",
    "\"weight\":",
    "\"retries\":",
    "\"timeout_ms\":",
    "\"version\":",
    "\"config\":",
    "\"spiffe://example.org/ns/default/sa/x\"",
    "-----BEGIN CERTIFICATE-----\\n",
];

fn fips() -> distro_schema::FipsSelfCheck {
    mesh_core::fips::self_check("mesh-proxy", "fuzz", Vec::new())
}

/// The local file (`mesh-proxy run --config FILE`): never a panic, from parsing through
/// setting the proxy up with it (its limits, its static mesh section) as `run` does; errors
/// name the file.
#[test]
fn proxy_local_config() {
    let opts = Options::new("proxy-local-config").dictionary(TOKENS);
    fuzz(opts, |input| {
        let text = String::from_utf8_lossy(input);
        match LocalConfig::parse(Path::new("proxy.json"), &text) {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("proxy.json"), "error names no file: {msg}");
                msg
            }
            Ok(local) => {
                let mesh = local.mesh.clone();
                let proxy = Proxy::new(local, fips());
                match mesh.map(|m| proxy.apply_config(0, "local", m)) {
                    Some(Err(e)) => e,
                    _ => "ok".into(),
                }
            }
        }
    });
}

/// The configuration the control plane pushes (`GET /v1/config` body): never a panic; a
/// refused one leaves the configuration in force untouched, an accepted one is in force.
#[test]
fn proxy_pushed_config() {
    let local = LocalConfig::parse(
        Path::new("local.json"),
        r#"{"control_plane":{"address":"127.0.0.1:1","ca_bundle":"ca.pem","token_file":"t"}}"#,
    )
    .expect("the fixed local config parses");
    let proxy: Arc<Proxy> = Proxy::new(local, fips());
    let opts = Options::new("proxy-pushed-config").dictionary(TOKENS);
    fuzz(opts, move |input| {
        let resp: ConfigResponse = match serde_json::from_slice(input) {
            Err(e) => return e.to_string(),
            Ok(r) => r,
        };
        let before = proxy.mesh().map(|m| m.version);
        let version = resp.version;
        match proxy.apply_config(version, "control-plane", resp.config) {
            Err(e) => {
                assert_eq!(
                    proxy.mesh().map(|m| m.version),
                    before,
                    "a refused config changed the state"
                );
                e
            }
            Ok(()) => {
                assert_eq!(proxy.mesh().map(|m| m.version), Some(version));
                "ok".into()
            }
        }
    });
}
