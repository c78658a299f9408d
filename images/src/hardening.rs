//! Iron Bank `hardening_manifest.yaml`: the file DoD's Iron Bank pipeline reads beside each
//! image (repository name, tags, build args, labels, resources with sha256 validation,
//! maintainers). Written from typed data, checked against the documented field rules before it
//! is written, and rendered as plain block YAML with every string single-quoted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Labels Iron Bank requires on every image.
pub const REQUIRED_LABELS: &[&str] = &[
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.url",
    "org.opencontainers.image.vendor",
    "org.opencontainers.image.version",
    "mil.dso.ironbank.image.keywords",
    "mil.dso.ironbank.image.type",
    "mil.dso.ironbank.product.name",
];

/// A resource the Iron Bank build downloads and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    /// File name it is saved as.
    pub filename: String,
    /// Where it is downloaded from.
    pub url: String,
    /// sha256 (hex) it must have.
    pub sha256: String,
}

/// A maintainer contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Maintainer {
    /// Full name.
    pub name: String,
    /// repo1 user name.
    pub username: String,
    /// E-mail address.
    pub email: String,
}

/// The hardening manifest of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HardeningManifest {
    /// Always `v1`.
    pub api_version: String,
    /// Repository name in registry1 without `ironbank/` (`fips-mesh/mesh-proxy`).
    pub name: String,
    /// Tags, most specific first (never `latest` first).
    pub tags: Vec<String>,
    /// Build args; must include `BASE_IMAGE` and `BASE_TAG`.
    pub args: BTreeMap<String, String>,
    /// Labels (the required ones and any optional `org.opencontainers.image.*`).
    pub labels: BTreeMap<String, String>,
    /// Resources with sha256 validation.
    pub resources: Vec<Resource>,
    /// Maintainers.
    pub maintainers: Vec<Maintainer>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
        })
}

fn printable(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().all(|c| (' '..='~').contains(&c))
}

impl HardeningManifest {
    /// Every way this manifest breaks the documented rules; empty when valid.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.api_version != "v1" {
            p.push(format!(
                "apiVersion is `{}`, must be `v1`",
                self.api_version
            ));
        }
        if !valid_name(&self.name) {
            p.push(format!(
                "name `{}` is not a repository name (lower-case path components)",
                self.name
            ));
        }
        match self.tags.first() {
            None => p.push("tags is empty; list the version first".into()),
            Some(t) if t == "latest" => p.push(
                "the first tag is `latest`; the most specific version must come first".into(),
            ),
            _ => {}
        }
        for t in &self.tags {
            if !crate::reference::is_tag(t) {
                p.push(format!("tag `{t}` is not a valid tag"));
            }
        }
        for a in ["BASE_IMAGE", "BASE_TAG"] {
            if !self.args.contains_key(a) {
                p.push(format!("args.{a} is missing"));
            }
        }
        for l in REQUIRED_LABELS {
            match self.labels.get(*l) {
                None => p.push(format!("label {l} is missing")),
                Some(v) if !printable(v) => {
                    p.push(format!("label {l} must be printable text on one line"))
                }
                _ => {}
            }
        }
        if let Some(t) = self.labels.get("mil.dso.ironbank.image.type") {
            if t != "opensource" && t != "commercial" {
                p.push(format!(
                    "label mil.dso.ironbank.image.type is `{t}`, must be opensource or commercial"
                ));
            }
        }
        for r in &self.resources {
            if r.filename.is_empty() || r.filename.contains('/') {
                p.push(format!(
                    "resource filename `{}` must be a plain file name",
                    r.filename
                ));
            }
            if !["https://", "http://", "s3://", "docker://", "github://"]
                .iter()
                .any(|s| r.url.starts_with(s))
            {
                p.push(format!(
                    "resource {} url `{}` must be https://, http://, s3://, docker:// or github://",
                    r.filename, r.url
                ));
            }
            if r.sha256.len() != 64
                || !r
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                p.push(format!(
                    "resource {} sha256 `{}` is not 64 lower-case hex digits",
                    r.filename, r.sha256
                ));
            }
        }
        if self.maintainers.is_empty() {
            p.push("maintainers is empty; Iron Bank requires a named contact".into());
        }
        for m in &self.maintainers {
            if !printable(&m.name) || !printable(&m.username) {
                p.push(format!(
                    "maintainer `{}` needs a name and a username",
                    m.name
                ));
            }
            if !m.email.contains('@') || m.email.contains(' ') {
                p.push(format!(
                    "maintainer {} email `{}` is not an e-mail address",
                    m.name, m.email
                ));
            }
        }
        p
    }

    /// The YAML text.
    pub fn to_yaml(&self) -> String {
        fn q(s: &str) -> String {
            format!("'{}'", s.replace('\'', "''"))
        }
        let mut y = String::from("---\n");
        // Writing to a String cannot fail.
        let _ = writeln!(y, "apiVersion: {}", q(&self.api_version));
        let _ = writeln!(
            y,
            "# The repository name in registry1, excluding /ironbank/\nname: {}",
            q(&self.name)
        );
        y.push_str("# The most specific version first\ntags:\n");
        for t in &self.tags {
            let _ = writeln!(y, "  - {}", q(t));
        }
        y.push_str("# Build args passed to Dockerfile ARGs\nargs:\n");
        for (k, v) in &self.args {
            let _ = writeln!(y, "  {k}: {}", q(v));
        }
        y.push_str("labels:\n");
        for (k, v) in &self.labels {
            let _ = writeln!(y, "  {k}: {}", q(v));
        }
        y.push_str("resources:\n");
        for r in &self.resources {
            let _ = writeln!(y, "  - filename: {}\n    url: {}\n    validation:\n      type: sha256\n      value: {}", q(&r.filename), q(&r.url), q(&r.sha256));
        }
        y.push_str("maintainers:\n");
        for m in &self.maintainers {
            let _ = writeln!(
                y,
                "  - name: {}\n    username: {}\n    email: {}",
                q(&m.name),
                q(&m.username),
                q(&m.email)
            );
        }
        y
    }
}
