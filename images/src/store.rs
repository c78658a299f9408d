//! Where images live: an OCI layout directory, an OCI archive (a tar of a layout, read-only), or
//! a registry repository ([`crate::registry`]). Signing, attesting, copying and verifying work on
//! any [`Store`], so the same code serves the release pipeline (registry) and the air-gapped
//! operator (layout or archive).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use distro_hostio::{open_regular, read_bounded, Symlinks, PUBLIC};

use crate::digest;
use crate::error::{Error, Result};
use crate::oci::{Descriptor, Index, ANNOTATION_REF_NAME};

/// A manifest as fetched: its exact bytes, digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The bytes exactly as stored (the digest is over these).
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of `bytes` (checked).
    pub digest: String,
    /// Media type as stored.
    pub media_type: String,
}

/// Content-addressed storage of manifests and blobs with tags.
pub trait Store {
    /// Human-readable name for messages (`oci:out/images/mesh-proxy`, `127.0.0.1:5000/mesh-proxy`).
    fn describe(&self) -> String;
    /// The manifest under a tag or a `sha256:` digest, digest-checked; `None` when absent.
    fn manifest(&mut self, reference: &str) -> Result<Option<FetchedManifest>>;
    /// A blob, digest-checked, read up to [`MAX_BLOB_BYTES`]. Prefer [`Store::blob_sized`]
    /// wherever a descriptor gives the size.
    fn blob(&mut self, digest: &str) -> Result<Vec<u8>>;
    /// A blob whose size a descriptor gives: at most `size + 1` bytes are read, and content of
    /// any other size or digest is an error naming the blob.
    fn blob_sized(&mut self, digest: &str, size: u64) -> Result<Vec<u8>>;
    /// Whether a blob is present.
    fn has_blob(&mut self, digest: &str) -> Result<bool>;
    /// Stores a blob unless present; returns whether it was written.
    fn put_blob(&mut self, digest: &str, data: &[u8]) -> Result<bool>;
    /// Stores a blob the caller has just seen to be absent, without asking again; the default
    /// is [`Store::put_blob`]. A registry overrides it to save a round trip.
    fn upload_blob(&mut self, digest: &str, data: &[u8]) -> Result<()> {
        self.put_blob(digest, data).map(|_| ())
    }
    /// Stores a manifest and points `tag` (if any) at it; returns its digest.
    fn put_manifest(&mut self, tag: Option<&str>, bytes: &[u8], media_type: &str)
        -> Result<String>;
}

/// Largest blob read when no descriptor gives its size (4 GiB), and the largest a descriptor may
/// declare.
pub const MAX_BLOB_BYTES: u64 = 4 << 30;
/// Largest `index.json` or manifest read from a layout (16 MiB; registries cap manifests at 4).
pub const MAX_DOCUMENT_BYTES: u64 = 16 << 20;

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

enum Backend {
    Dir(PathBuf),
    Archive {
        path: PathBuf,
        files: HashMap<String, Vec<u8>>,
    },
}

/// An OCI image layout: a directory, or a tar archive of one (read-only).
pub struct Layout {
    backend: Backend,
    index: Index,
}

impl Layout {
    /// Opens a layout directory, creating an empty one when `create` and it does not exist.
    pub fn open_dir(path: &Path, create: bool) -> Result<Self> {
        let index_path = path.join("index.json");
        if !index_path.exists() {
            if !create {
                return Err(Error::NotFound {
                    what: "index.json".into(),
                    store: format!("{} (not an OCI image layout)", path.display()),
                });
            }
            std::fs::create_dir_all(path.join("blobs/sha256"))
                .map_err(|e| Error::io("creating layout", path, e))?;
            distro_hostio::write_atomic(&path.join("oci-layout"), OCI_LAYOUT, PUBLIC)?;
            let layout = Layout {
                backend: Backend::Dir(path.to_path_buf()),
                index: Index::default(),
            };
            layout.write_index()?;
            return Ok(layout);
        }
        let bytes = read_bounded(&index_path, Symlinks::Follow, MAX_DOCUMENT_BYTES)
            .map_err(|e| Error::io("reading", &index_path, e))?;
        let index = parse_index(&index_path.display().to_string(), &bytes)?;
        Ok(Layout {
            backend: Backend::Dir(path.to_path_buf()),
            index,
        })
    }

    /// Opens an OCI archive (a tar file holding a layout) for reading.
    pub fn open_archive(path: &Path) -> Result<Self> {
        let (f, _) = open_regular(path, Symlinks::Follow)
            .map_err(|e| Error::io("opening archive", path, e))?;
        let mut files = HashMap::new();
        let mut ar = tar::Archive::new(f);
        let entries = ar
            .entries()
            .map_err(|e| Error::io("reading archive", path, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::io("reading archive entry", path, e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(|e| Error::io("reading archive entry name", path, e))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| Error::io("reading archive entry", path, e))?;
            files.insert(name, data);
        }
        let what = format!("{}!index.json", path.display());
        let bytes = files.get("index.json").ok_or_else(|| Error::NotFound {
            what: "index.json".into(),
            store: format!("{} (not an OCI archive)", path.display()),
        })?;
        let index = parse_index(&what, bytes)?;
        Ok(Layout {
            backend: Backend::Archive {
                path: path.to_path_buf(),
                files,
            },
            index,
        })
    }

    /// The layout's index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Tags in this layout (`org.opencontainers.image.ref.name`), in index order.
    pub fn tags(&self) -> Vec<String> {
        self.index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME).cloned())
            .collect()
    }

    fn blob_path(digest: &str) -> Result<String> {
        Ok(format!("blobs/sha256/{}", digest::hex_part(digest)?))
    }

    /// A blob's bytes, or `None` when absent. With `size` (from a descriptor) at most
    /// `size + 1` bytes are read and any other length is an error; without it, at most `limit`.
    fn read_blob_raw(
        &self,
        digest: &str,
        size: Option<u64>,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        let rel = Self::blob_path(digest)?;
        if let Some(s) = size.filter(|s| *s > limit) {
            return Err(Error::invalid(
                format!("blob {digest} in {}", self.describe()),
                format!("its descriptor declares {s} bytes, more than the limit of {limit}; refusing to read it"),
            ));
        }
        let data = match &self.backend {
            Backend::Dir(root) => {
                let p = root.join(&rel);
                let (f, len) = match open_regular(&p, Symlinks::Refuse) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(Error::io("reading blob", p, e)),
                };
                if let Some(s) = size.filter(|s| *s != len) {
                    return Err(Error::invalid(
                        format!("blob {digest} in {}", self.describe()),
                        format!("{} is {len} bytes but its descriptor says {s}; the store was modified or corrupted (pull it again)", p.display()),
                    ));
                }
                if len > limit {
                    return Err(Error::invalid(
                        format!("blob {digest} in {}", self.describe()),
                        format!(
                            "{} is {len} bytes, more than the limit of {limit}",
                            p.display()
                        ),
                    ));
                }
                // One byte more than expected, so a file that grows meanwhile is seen to.
                let cap = size.unwrap_or(limit).saturating_add(1);
                let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                f.take(cap)
                    .read_to_end(&mut data)
                    .map_err(|e| Error::io("reading blob", &p, e))?;
                data
            }
            Backend::Archive { files, .. } => match files.get(&rel) {
                Some(b) => b.clone(),
                None => return Ok(None),
            },
        };
        if let Some(s) = size {
            if data.len() as u64 != s {
                return Err(Error::invalid(
                    format!("blob {digest} in {}", self.describe()),
                    format!(
                        "it is {} bytes but its descriptor says {s}; the store was modified or corrupted (pull it again)",
                        data.len()
                    ),
                ));
            }
        }
        Ok(Some(data))
    }

    /// Whether the blob file in a layout directory is present and holds exactly the content its
    /// digest names (streamed, not read into memory). A missing, corrupted or special file is
    /// `false`; only an I/O failure is an error.
    fn blob_intact(&self, root: &Path, digest: &str) -> Result<bool> {
        let p = root.join(Self::blob_path(digest)?);
        let (f, _) = match open_regular(&p, Symlinks::Refuse) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                tracing::warn!("{}: {e}; it will be replaced", p.display());
                return Ok(false);
            }
            Err(e) => return Err(Error::io("reading blob", p, e)),
        };
        let (actual, _) = digest::sha256_stream(f, MAX_BLOB_BYTES.saturating_add(1))
            .map_err(|e| Error::io("reading blob", &p, e))?;
        if actual != digest {
            tracing::warn!(
                "{}: content has digest {actual}, not {digest}; it will be replaced",
                p.display()
            );
        }
        Ok(actual == digest)
    }

    fn write_index(&self) -> Result<()> {
        match &self.backend {
            Backend::Dir(root) => {
                let bytes =
                    serde_json::to_vec(&self.index).map_err(|e| Error::json("index.json", e))?;
                Ok(distro_hostio::write_atomic(
                    &root.join("index.json"),
                    &bytes,
                    PUBLIC,
                )?)
            }
            Backend::Archive { path, .. } => Err(read_only(path)),
        }
    }

    /// Writes this layout as a deterministic tar archive (an `oci-archive`).
    pub fn write_archive(&self, out: &Path) -> Result<()> {
        let Backend::Dir(root) = &self.backend else {
            return Err(Error::Refused(
                "only a layout directory can be archived".into(),
            ));
        };
        let mut names: Vec<String> = vec!["oci-layout".into(), "index.json".into()];
        let blobs = root.join("blobs/sha256");
        let mut hexes: Vec<String> = std::fs::read_dir(&blobs)
            .map_err(|e| Error::io("listing", &blobs, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| !n.starts_with('.'))
            .collect();
        hexes.sort();
        names.extend(hexes.into_iter().map(|h| format!("blobs/sha256/{h}")));
        let mut builder = tar::Builder::new(Vec::new());
        for name in names {
            let p = root.join(&name);
            let data = read_bounded(&p, Symlinks::Refuse, MAX_BLOB_BYTES)
                .map_err(|e| Error::io("reading", &p, e))?;
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut h, &name, data.as_slice())
                .map_err(|e| Error::io("archiving", &p, e))?;
        }
        let bytes = builder
            .into_inner()
            .map_err(|e| Error::io("finishing archive", out, e))?;
        Ok(distro_hostio::write_atomic(out, &bytes, PUBLIC)?)
    }
}

impl Layout {
    fn blob_checked(&mut self, digest: &str, size: Option<u64>) -> Result<Vec<u8>> {
        let bytes = self
            .read_blob_raw(digest, size, MAX_BLOB_BYTES)?
            .ok_or_else(|| Error::NotFound {
                what: format!("blob {digest}"),
                store: self.describe(),
            })?;
        digest::check(
            &format!("blob {digest} in {}", self.describe()),
            digest,
            &bytes,
        )?;
        Ok(bytes)
    }
}

fn read_only(path: &Path) -> Error {
    Error::Refused(format!(
        "{} is an OCI archive and is read-only; write to a layout directory (oci:DIR) instead",
        path.display()
    ))
}

/// Parses an OCI image index (a layout's `index.json`); `what` names it in errors.
pub fn parse_index(what: &str, bytes: &[u8]) -> Result<Index> {
    let index: Index = serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))?;
    if index.schema_version != 2 {
        return Err(Error::invalid(
            what,
            format!("schemaVersion {} is not 2", index.schema_version),
        ));
    }
    Ok(index)
}

impl Store for Layout {
    fn describe(&self) -> String {
        match &self.backend {
            Backend::Dir(p) => format!("oci:{}", p.display()),
            Backend::Archive { path, .. } => format!("oci-archive:{}", path.display()),
        }
    }

    fn manifest(&mut self, reference: &str) -> Result<Option<FetchedManifest>> {
        let desc = if reference.starts_with("sha256:") {
            match self.index.manifests.iter().find(|d| d.digest == reference) {
                Some(d) => d.clone(),
                None => {
                    // Not in the index, but a manifest blob may still be present (e.g. a
                    // manifest only referenced by digest).
                    let Some(bytes) = self.read_blob_raw(reference, None, MAX_DOCUMENT_BYTES)?
                    else {
                        return Ok(None);
                    };
                    digest::check(
                        &format!("manifest {reference} in {}", self.describe()),
                        reference,
                        &bytes,
                    )?;
                    let media_type = media_type_of(&bytes);
                    return Ok(Some(FetchedManifest {
                        bytes,
                        digest: reference.to_string(),
                        media_type,
                    }));
                }
            }
        } else {
            match self.index.manifests.iter().find(|d| {
                d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(reference)
            }) {
                Some(d) => d.clone(),
                None => return Ok(None),
            }
        };
        let bytes = self
            .read_blob_raw(&desc.digest, Some(desc.size), MAX_DOCUMENT_BYTES)?
            .ok_or_else(|| Error::NotFound {
                what: format!("manifest blob {} (tag `{reference}`)", desc.digest),
                store: self.describe(),
            })?;
        digest::check(
            &format!("manifest `{reference}` in {}", self.describe()),
            &desc.digest,
            &bytes,
        )?;
        Ok(Some(FetchedManifest {
            bytes,
            digest: desc.digest,
            media_type: desc.media_type,
        }))
    }

    fn blob(&mut self, digest: &str) -> Result<Vec<u8>> {
        self.blob_checked(digest, None)
    }

    fn blob_sized(&mut self, digest: &str, size: u64) -> Result<Vec<u8>> {
        self.blob_checked(digest, Some(size))
    }

    /// A layout directory's blob counts as present only when its content matches its digest,
    /// so a corrupted or substituted file is sent again rather than trusted.
    fn has_blob(&mut self, digest: &str) -> Result<bool> {
        let rel = Self::blob_path(digest)?;
        match &self.backend {
            Backend::Dir(root) => self.blob_intact(root, digest),
            Backend::Archive { files, .. } => Ok(files.contains_key(&rel)),
        }
    }

    /// Writes the blob unless an intact copy is there; a copy that does not match its digest
    /// (corrupted in place, truncated, a link or a special file) is replaced, atomically.
    fn put_blob(&mut self, digest: &str, data: &[u8]) -> Result<bool> {
        digest::check(&format!("blob {digest} being written"), digest, data)?;
        let rel = Self::blob_path(digest)?;
        match &self.backend {
            Backend::Dir(root) => {
                let p = root.join(rel);
                let present = p.symlink_metadata().is_ok();
                if present && self.blob_intact(root, digest)? {
                    return Ok(false);
                }
                distro_hostio::write_atomic(&p, data, PUBLIC)?;
                if present {
                    tracing::warn!(
                        "repaired blob {digest} in {}: the copy there did not match its digest",
                        self.describe()
                    );
                }
                Ok(true)
            }
            Backend::Archive { path, .. } => Err(read_only(path)),
        }
    }

    fn put_manifest(
        &mut self,
        tag: Option<&str>,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        let d = digest::sha256(bytes);
        self.put_blob(&d, bytes)?;
        let mut desc = Descriptor::of(media_type, bytes);
        match tag {
            Some(t) => {
                desc.annotations
                    .insert(ANNOTATION_REF_NAME.to_string(), t.to_string());
                // The tag moves: drop the old entry, keep the others in order.
                self.index.manifests.retain(|m| {
                    m.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(t)
                });
                self.index.manifests.push(desc);
            }
            None => {
                if !self.index.manifests.iter().any(|m| m.digest == d) {
                    self.index.manifests.push(desc);
                }
            }
        }
        self.write_index()?;
        Ok(d)
    }
}

/// Media type named inside a manifest's JSON, defaulting to the OCI manifest type.
pub fn media_type_of(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.media_type)
        .unwrap_or_else(|| crate::oci::MEDIA_MANIFEST.to_string())
}

/// Wraps a store and remembers everything read through it, so that what was verified can later
/// be written out byte for byte (`distro pull` verifies first, writes after).
pub struct Recording<S> {
    inner: S,
    /// Manifests read, by digest.
    pub manifests: BTreeMap<String, FetchedManifest>,
    /// Tags resolved, tag → digest, in the order first read.
    pub tags: Vec<(String, String)>,
    /// Blobs read, by digest.
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl<S: Store> Recording<S> {
    /// Starts recording reads of `inner`.
    pub fn new(inner: S) -> Self {
        Recording {
            inner,
            manifests: BTreeMap::new(),
            tags: Vec::new(),
            blobs: BTreeMap::new(),
        }
    }

    /// Writes every recorded blob, then every manifest, then the tags `keep_tag` accepts into
    /// `dest`.
    pub fn write_to(&self, dest: &mut dyn Store, keep_tag: impl Fn(&str) -> bool) -> Result<()> {
        for (d, data) in &self.blobs {
            dest.put_blob(d, data)?;
        }
        for m in self.manifests.values() {
            dest.put_manifest(None, &m.bytes, &m.media_type)?;
        }
        for (tag, d) in self.tags.iter().filter(|(t, _)| keep_tag(t)) {
            if let Some(m) = self.manifests.get(d) {
                dest.put_manifest(Some(tag), &m.bytes, &m.media_type)?;
            }
        }
        Ok(())
    }
}

impl<S: Store> Store for Recording<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn manifest(&mut self, reference: &str) -> Result<Option<FetchedManifest>> {
        let m = self.inner.manifest(reference)?;
        if let Some(m) = &m {
            if !reference.starts_with("sha256:") && !self.tags.iter().any(|(t, _)| t == reference) {
                self.tags.push((reference.to_string(), m.digest.clone()));
            }
            self.manifests.insert(m.digest.clone(), m.clone());
        }
        Ok(m)
    }
    fn blob(&mut self, digest: &str) -> Result<Vec<u8>> {
        if let Some(b) = self.blobs.get(digest) {
            return Ok(b.clone());
        }
        let b = self.inner.blob(digest)?;
        self.blobs.insert(digest.to_string(), b.clone());
        Ok(b)
    }
    fn blob_sized(&mut self, digest: &str, size: u64) -> Result<Vec<u8>> {
        if let Some(b) = self.blobs.get(digest) {
            if b.len() as u64 != size {
                return Err(Error::invalid(
                    format!("blob {digest} in {}", self.inner.describe()),
                    format!("it is {} bytes but a descriptor says {size}", b.len()),
                ));
            }
            return Ok(b.clone());
        }
        let b = self.inner.blob_sized(digest, size)?;
        self.blobs.insert(digest.to_string(), b.clone());
        Ok(b)
    }
    fn has_blob(&mut self, digest: &str) -> Result<bool> {
        self.inner.has_blob(digest)
    }
    fn put_blob(&mut self, _digest: &str, _data: &[u8]) -> Result<bool> {
        Err(Error::Refused("a recording store is read-only".into()))
    }
    fn put_manifest(
        &mut self,
        _tag: Option<&str>,
        _bytes: &[u8],
        _media_type: &str,
    ) -> Result<String> {
        Err(Error::Refused("a recording store is read-only".into()))
    }
}
