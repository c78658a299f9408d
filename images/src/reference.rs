//! Image references: a registry reference (`REGISTRY/REPO[:TAG][@DIGEST]`), an OCI layout
//! directory (`oci:DIR[:TAG]`) or an OCI archive (`oci-archive:FILE[:TAG]`), the same spelling
//! skopeo uses.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::registry::{Registry, RegistryOptions};
use crate::store::{Layout, Store};

/// Where an image is and which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An OCI layout directory.
    Layout {
        /// The directory.
        path: PathBuf,
        /// Tag in its index.json (`org.opencontainers.image.ref.name`).
        tag: Option<String>,
    },
    /// A tar archive of an OCI layout (read-only).
    Archive {
        /// The file.
        path: PathBuf,
        /// Tag in its index.json.
        tag: Option<String>,
    },
    /// A repository in a registry.
    Registry {
        /// Registry host and port (`127.0.0.1:5000`).
        registry: String,
        /// Repository (`fips-mesh/mesh-proxy`).
        repository: String,
        /// Tag.
        tag: Option<String>,
        /// Digest (`sha256:...`), preferred over the tag.
        digest: Option<String>,
    },
}

/// Splits `DIR[:TAG]`. A tag follows the last ':' only when that ':' comes after the last '/';
/// what follows it must then be a tag (OCI's `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`), so that every
/// accepted reference prints as itself: `oci:DIR:` or `oci:DIR:not a tag` would otherwise be read
/// as a directory named `DIR:` that prints back as `DIR` with a tag.
fn split_tag(whole: &str, rest: &str) -> Result<(PathBuf, Option<String>)> {
    match rest.rfind(':') {
        Some(i) if rest[i..].find('/').is_none() && i > 0 => {
            let tag = &rest[i + 1..];
            if !is_tag(tag) {
                return Err(Error::Reference {
                    reference: whole.to_string(),
                    reason: format!(
                        "`{tag}` after the last ':' is not a tag (letters, digits, '_', '.', '-', \
                         at most 128, not starting with '.' or '-'); name the directory without \
                         a ':' in its last component, or add the tag: DIR:TAG"
                    ),
                });
            }
            Ok((PathBuf::from(&rest[..i]), Some(tag.to_string())))
        }
        _ => Ok((PathBuf::from(rest), None)),
    }
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (references and the hardening manifest's
/// tags).
pub(crate) fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl ImageRef {
    /// Parses a reference.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, tag) = split_tag(s, rest)?;
            return Ok(ImageRef::Layout { path, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, tag) = split_tag(s, rest)?;
            return Ok(ImageRef::Archive { path, tag });
        }
        let r: oci_client::Reference = s.parse().map_err(|e| Error::Reference {
            reference: s.to_string(),
            reason: format!("{e}"),
        })?;
        if !s.contains('/')
            || !s
                .split('/')
                .next()
                .is_some_and(|h| h.contains('.') || h.contains(':') || h == "localhost")
        {
            return Err(Error::Reference {
                reference: s.to_string(),
                reason: "name the registry host explicitly (e.g. 127.0.0.1:5000/fips-mesh/mesh-proxy:0.1.0)".into(),
            });
        }
        let has_tag = s
            .rsplit('/')
            .next()
            .is_some_and(|last| last.split('@').next().is_some_and(|n| n.contains(':')));
        Ok(ImageRef::Registry {
            registry: r.registry().to_string(),
            repository: r.repository().to_string(),
            tag: if has_tag {
                r.tag().map(str::to_string)
            } else {
                None
            },
            digest: r.digest().map(str::to_string),
        })
    }

    /// The tag or digest to look up inside the store, if the reference names one.
    pub fn selector(&self) -> Option<String> {
        match self {
            ImageRef::Layout { tag, .. } | ImageRef::Archive { tag, .. } => tag.clone(),
            ImageRef::Registry { tag, digest, .. } => digest.clone().or_else(|| tag.clone()),
        }
    }

    /// The tag the reference names, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            ImageRef::Layout { tag, .. }
            | ImageRef::Archive { tag, .. }
            | ImageRef::Registry { tag, .. } => tag.as_deref(),
        }
    }

    /// The identity cosign signs for a registry image (`REGISTRY/REPO`); `None` for local files.
    pub fn docker_reference(&self) -> Option<String> {
        match self {
            ImageRef::Registry {
                registry,
                repository,
                ..
            } => Some(format!("{registry}/{repository}")),
            _ => None,
        }
    }

    /// The same location with another tag.
    pub fn with_tag(&self, new_tag: &str) -> Self {
        let mut r = self.clone();
        match &mut r {
            ImageRef::Layout { tag, .. } | ImageRef::Archive { tag, .. } => {
                *tag = Some(new_tag.to_string())
            }
            ImageRef::Registry { tag, digest, .. } => {
                *tag = Some(new_tag.to_string());
                *digest = None;
            }
        }
        r
    }

    /// Opens the store the reference points into. `create` makes a missing layout directory.
    pub fn open(&self, opts: &RegistryOptions, create: bool) -> Result<Box<dyn Store>> {
        Ok(match self {
            ImageRef::Layout { path, .. } => Box::new(Layout::open_dir(path, create)?),
            ImageRef::Archive { path, .. } => Box::new(Layout::open_archive(path)?),
            ImageRef::Registry {
                registry,
                repository,
                ..
            } => Box::new(Registry::connect(registry, repository, opts)?),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Layout { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
            ImageRef::Archive { path, tag } => {
                write!(f, "oci-archive:{}", path.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
            ImageRef::Registry {
                registry,
                repository,
                tag,
                digest,
            } => {
                write!(f, "{registry}/{repository}")?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(path: &str, tag: Option<&str>) -> ImageRef {
        ImageRef::Layout {
            path: PathBuf::from(path),
            tag: tag.map(str::to_string),
        }
    }

    /// `DIR:TAG` splits at the last ':' after the last '/'; what follows must be a tag, so every
    /// accepted reference prints as itself (found by the `image-reference` fuzz target).
    #[test]
    fn layout_tags_are_tags_and_print_back() {
        for (text, want) in [
            ("oci:/tmp/a/b:1.0", layout("/tmp/a/b", Some("1.0"))),
            ("oci:/tmp/a:b/c", layout("/tmp/a:b/c", None)),
            ("oci::x", layout(":x", None)),
            ("oci:dir:_v1.2-rc", layout("dir", Some("_v1.2-rc"))),
        ] {
            let r = ImageRef::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r, want, "{text}");
            assert_eq!(r.to_string(), text);
        }
        let long = format!("oci:d:{}", "t".repeat(129));
        for text in [
            "oci:/tmp/a:",
            "oci-archive:/tmp/a.tar:",
            "oci:/tmp/a:b c",
            "oci:/tmp/a:.x",
            "oci:/tmp/a:-x",
            "oci:x:\r",
            long.as_str(),
        ] {
            let err = ImageRef::parse(text).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("is not a tag")),
                "{text:?}: {err:?}"
            );
        }
        assert!(ImageRef::parse(&format!("oci:d:{}", "t".repeat(128))).is_ok());
    }
}
