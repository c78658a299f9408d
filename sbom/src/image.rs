//! Image SBOMs: the binary's SBOM plus every other file the image holds.
//!
//! [`for_image`] writes the SBOM of a whole image (its base's Debian packages, generated files,
//! another base image and its SBOM, the binary's graph), so every regular file of every layer is
//! a component with its hash; [`extend`] adds loose files to a binary's BOM.

use serde_json::{json, Value};

use crate::cyclonedx::{Bom, Component, Hash, Property};
use crate::SbomError;

/// Property naming what an image file is (`ca-bundle`, `passwd`, `group`, ...).
pub const FILE_KIND: &str = "distro:image:file-kind";

/// Adds the image's other files (`(path in image, hex sha256, kind)`) to a binary's BOM as `file`
/// components with their hashes, re-derives the serial number and validates the result.
///
/// Paths must be absolute inside the image; a path already present is replaced, so calling this
/// twice with the same files gives the same document.
pub fn extend<P, H, K>(bom: &mut Bom, files: &[(P, H, K)]) -> Result<(), SbomError>
where
    P: AsRef<str>,
    H: AsRef<str>,
    K: AsRef<str>,
{
    for (path, sha, kind) in files {
        let (path, sha, kind) = (path.as_ref(), sha.as_ref(), kind.as_ref());
        if !path.starts_with('/') {
            return Err(SbomError::Parse {
                what: "image file path",
                origin: path.to_string(),
                detail:
                    "must be absolute inside the image (e.g. /etc/ssl/certs/ca-certificates.crt)"
                        .into(),
            });
        }
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(SbomError::Parse {
                what: "image file sha256",
                origin: path.to_string(),
                detail: format!("`{sha}` is not 64 lower-case hex digits"),
            });
        }
        let bom_ref = format!("file:{path}");
        bom.components
            .retain(|c| c.bom_ref.as_deref() != Some(bom_ref.as_str()));
        bom.components.push(Component {
            component_type: "file".into(),
            bom_ref: Some(bom_ref),
            name: path.to_string(),
            hashes: vec![Hash {
                alg: "SHA-256".into(),
                content: sha.to_string(),
            }],
            properties: vec![Property::new(FILE_KIND, kind)],
            ..Component::default()
        });
    }
    // Files after everything else, in path order, so the output does not depend on call order.
    bom.components.sort_by(|a, b| {
        let fa = a.component_type == "file";
        let fb = b.component_type == "file";
        fa.cmp(&fb).then_with(|| {
            if fa && fb {
                a.name.cmp(&b.name)
            } else {
                std::cmp::Ordering::Equal
            }
        })
    });
    bom.reseal();
    bom.to_json().map(|_| ())
}

/// Property naming the package a file of the image comes from (its `bom-ref`).
pub const FILE_OF: &str = "distro:image:from";
/// Property on the image: the manifest digest the SBOM describes.
pub const MANIFEST_DIGEST: &str = "distro:image:manifest-digest";
/// Property on a derived file: how it was made from its package's files.
pub const DERIVED: &str = "distro:image:derived";

/// A regular file of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Absolute path inside the image.
    pub path: String,
    /// Hex sha256 of its content.
    pub sha256: String,
    /// What it is: `library`, `copyright`, `ca-bundle`, `generated`, `binary`, `base-layer`.
    pub kind: String,
    /// How it was made, when it is not a package's file verbatim.
    pub derived: Option<String>,
}

/// A Debian package of the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12`.
    pub purl: String,
    /// SPDX licence expression.
    pub licenses: String,
    /// Hex sha256 of the `.deb`.
    pub deb_sha256: String,
    /// Where the `.deb` is downloaded from.
    pub url: String,
    /// The files the image takes from it.
    pub files: Vec<ImageFile>,
    /// The binary loads it at run time (a shared library it links).
    pub linked_by_binary: bool,
}

/// Another image the image is built on.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBaseInput {
    /// Its reference.
    pub reference: String,
    /// Its manifest digest.
    pub manifest_digest: String,
    /// Every regular file of its layers.
    pub files: Vec<ImageFile>,
    /// Its own CycloneDX SBOM, merged under it: (where it was found, document).
    pub sbom: Option<(String, Value)>,
}

/// Everything [`for_image`] needs.
#[derive(Debug, Clone)]
pub struct ImageInput<'a> {
    /// Image (component) name.
    pub name: &'a str,
    /// Image version (tag).
    pub version: &'a str,
    /// The image's manifest digest.
    pub manifest_digest: &'a str,
    /// SOURCE_DATE_EPOCH: the document's timestamp.
    pub source_date_epoch: i64,
    /// The binary's CycloneDX SBOM (`distro sbom`, or recovered from the binary).
    pub binary_bom: &'a Value,
    /// The binary's file in the image.
    pub binary_file: ImageFile,
    /// Debian packages of the base.
    pub packages: Vec<ImagePackage>,
    /// Files written by `distro image` itself (`/etc/passwd`, `/etc/group`).
    pub generated: Vec<ImageFile>,
    /// Another base image, if the image is built on one.
    pub base: Option<ImageBaseInput>,
}

fn file_component(f: &ImageFile, owner: Option<&str>) -> Value {
    let mut props = vec![json!({"name": FILE_KIND, "value": f.kind})];
    if let Some(o) = owner {
        props.push(json!({"name": FILE_OF, "value": o}));
    }
    if let Some(d) = &f.derived {
        props.push(json!({"name": DERIVED, "value": d}));
    }
    json!({
        "type": "file",
        "bom-ref": format!("file:{}", f.path),
        "name": f.path,
        "hashes": [{"alg": "SHA-256", "content": f.sha256}],
        "properties": props,
    })
}

/// Prefixes every `bom-ref` (nested too) of a merged document, so its refs cannot collide with
/// the image's own.
fn prefix_refs(c: &mut Value, prefix: &str) {
    if let Some(r) = c.get("bom-ref").and_then(Value::as_str) {
        let r = format!("{prefix}{r}");
        c["bom-ref"] = Value::String(r);
    }
    if let Some(children) = c.get_mut("components").and_then(Value::as_array_mut) {
        for ch in children {
            prefix_refs(ch, prefix);
        }
    }
}

fn refs_of(v: &Value, out: &mut std::collections::BTreeSet<String>) {
    if let Some(r) = v.get("bom-ref").and_then(Value::as_str) {
        out.insert(r.to_string());
    }
    if let Some(children) = v.get("components").and_then(Value::as_array) {
        for ch in children {
            refs_of(ch, out);
        }
    }
}

/// The CycloneDX 1.6 SBOM of an image: the image (`container`) as the subject; the binary with
/// its Rust dependency graph and FIPS module; each Debian package of the base with its licence,
/// its `.deb`'s hash and, nested in it, the files the image takes from it; the generated files;
/// another base image with its files and its own SBOM. Every regular file of every layer is a
/// `file` component with its hash. Returns the document and its bytes, validated against the
/// official schema.
pub fn for_image(input: &ImageInput<'_>) -> Result<(Value, Vec<u8>), SbomError> {
    let bin = input.binary_bom;
    let image_ref = format!("image:{}", input.name);
    let mut app = bin["metadata"]["component"].clone();
    if !app.is_object() {
        return Err(SbomError::Parse {
            what: "binary SBOM",
            origin: input.name.to_string(),
            detail: "has no metadata.component (the binary)".into(),
        });
    }
    let app_ref = match app.get("bom-ref").and_then(Value::as_str) {
        Some(r) => r.to_string(),
        None => {
            let r = format!("binary:{}", input.binary_file.path);
            app["bom-ref"] = Value::String(r.clone());
            r
        }
    };
    app["components"] = json!([file_component(&input.binary_file, Some(&app_ref))]);

    let mut components = vec![app];
    components.extend(bin["components"].as_array().cloned().unwrap_or_default());
    let mut dependencies: Vec<Value> = bin["dependencies"].as_array().cloned().unwrap_or_default();
    let mut image_deps = vec![app_ref.clone()];
    let mut app_links = Vec::new();
    for p in &input.packages {
        let files: Vec<Value> = p
            .files
            .iter()
            .map(|f| file_component(f, Some(&p.purl)))
            .collect();
        components.push(json!({
            "type": "library",
            "bom-ref": p.purl,
            "publisher": "Debian",
            "name": p.name,
            "version": p.version,
            "hashes": [{"alg": "SHA-256", "content": p.deb_sha256}],
            "licenses": [{"expression": p.licenses}],
            "purl": p.purl,
            "externalReferences": [{"type": "distribution", "url": p.url, "comment": "the .deb, as apt downloads it"}],
            "components": files,
        }));
        dependencies.push(json!({"ref": p.purl, "dependsOn": []}));
        image_deps.push(p.purl.clone());
        if p.linked_by_binary {
            app_links.push(p.purl.clone());
        }
    }
    for f in &input.generated {
        components.push(file_component(f, None));
        image_deps.push(format!("file:{}", f.path));
        dependencies.push(json!({"ref": format!("file:{}", f.path), "dependsOn": []}));
    }
    if let Some(b) = &input.base {
        let base_ref = format!("base-image:{}", b.manifest_digest);
        let mut nested: Vec<Value> = b
            .files
            .iter()
            .map(|f| file_component(f, Some(&base_ref)))
            .collect();
        let mut props = vec![json!({"name": MANIFEST_DIGEST, "value": b.manifest_digest})];
        if let Some((origin, sbom)) = &b.sbom {
            props.push(json!({"name": "distro:image:base-sbom", "value": origin}));
            let prefix = "base:";
            for c in sbom["components"].as_array().into_iter().flatten() {
                let mut c = c.clone();
                prefix_refs(&mut c, prefix);
                nested.push(c);
            }
            if let Some(m) = sbom["metadata"]["component"].as_object() {
                let mut m = Value::Object(m.clone());
                prefix_refs(&mut m, prefix);
                nested.push(m);
            }
            let mut known = std::collections::BTreeSet::new();
            for c in &nested {
                refs_of(c, &mut known);
            }
            for d in sbom["dependencies"].as_array().into_iter().flatten() {
                let Some(r) = d["ref"].as_str() else { continue };
                let r = format!("{prefix}{r}");
                if !known.contains(&r) {
                    continue;
                }
                let on: Vec<String> = d["dependsOn"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|x| format!("{prefix}{x}"))
                    .filter(|x| known.contains(x))
                    .collect();
                dependencies.push(json!({"ref": r, "dependsOn": on}));
            }
        }
        components.push(json!({
            "type": "container",
            "bom-ref": base_ref,
            "name": b.reference,
            "version": b.manifest_digest,
            "properties": props,
            "components": nested,
        }));
        image_deps.push(base_ref.clone());
        dependencies.push(json!({"ref": base_ref, "dependsOn": []}));
    }
    // The binary loads the base's shared libraries at run time.
    for d in &mut dependencies {
        if d["ref"] == app_ref.as_str() {
            let mut on: Vec<String> = d["dependsOn"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .chain(app_links.iter().cloned())
                .collect();
            on.sort();
            on.dedup();
            d["dependsOn"] = json!(on);
        }
    }
    if !dependencies.iter().any(|d| d["ref"] == app_ref.as_str()) {
        dependencies.push(json!({"ref": app_ref, "dependsOn": app_links}));
    }
    image_deps.sort();
    dependencies.push(json!({"ref": image_ref, "dependsOn": image_deps}));

    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": crate::cyclonedx::SPEC_VERSION,
        "serialNumber": "",
        "version": 1,
        "metadata": {
            "timestamp": crate::cyclonedx::timestamp(input.source_date_epoch)?,
            "tools": {"components": [{
                "type": "application",
                "name": crate::cyclonedx::TOOL_NAME,
                "version": crate::cyclonedx::TOOL_VERSION,
                "description": "FIPS service-mesh distribution toolkit (distro-sbom)",
            }]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": input.name,
                "version": input.version,
                "properties": [{"name": MANIFEST_DIGEST, "value": input.manifest_digest}],
            },
        },
        "components": components,
        "dependencies": dependencies,
    });
    let bytes = serde_json::to_vec(&bom).unwrap_or_default();
    bom["serialNumber"] = Value::String(crate::uuid_from(&bytes));
    crate::validate::cyclonedx(&bom, input.name)?;
    let mut out = serde_json::to_vec_pretty(&bom).unwrap_or_default();
    out.push(b'\n');
    Ok((bom, out))
}
