//! Image SBOMs: the binary's SBOM plus every other file the image holds.

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
