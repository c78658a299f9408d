//! The mesh configuration the end-to-end tests push to a control plane: workload A may call
//! service `b`, whose one endpoint is proxy B's inbound listener.

use std::fmt::Display;

/// A `mesh.toml` (TLS 1.2 at least) with service `b` (HTTP, one endpoint at `b_in` with identity
/// `b` and label `version = "v1"`) that only identity `a` may call, and an authorization rule on
/// `b` that lets `a` make GET requests: to the paths `paths`, or to any path when it is empty.
pub fn a_calls_b(a: &str, b: &str, b_in: impl Display, paths: &[&str]) -> String {
    let paths = if paths.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
        format!("paths = [{}]\n", quoted.join(", "))
    };
    format!(
        r#"
[tls]
min_version = "TLSv1_2"

[[services]]
name = "b"
protocol = "http"
allowed_clients = ["{a}"]
[[services.endpoints]]
address = "{b_in}"
identity = "{b}"
labels = {{ version = "v1" }}

[[authorization]]
workload = "{b}"
name = "a-reads"
action = "ALLOW"
sources = ["{a}"]
methods = ["GET"]
{paths}"#
    )
}
