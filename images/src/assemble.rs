//! Assembles a component's OCI image without a container engine.
//!
//! Two layers by default: the base (the loader, glibc, libgcc and the CA bundle taken from the
//! exact Debian packages, their copyright files, `/etc/passwd` and `/etc/group` with the non-root
//! user 65532, `/tmp`, the user's home; see [`crate::base`]) shared by every component, and the
//! component's binary. No shell, no package manager. With `[image] base` another image's layers
//! come first instead, unchanged ([`crate::base_oci`]). Everything that could vary between runs
//! is fixed: tar entries are sorted, owners are 0 or 65532, modes are fixed, every mtime is
//! SOURCE_DATE_EPOCH, ustar headers carry no user or group names, and gzip has a zero mtime, no
//! file name and a fixed level. The same inputs therefore always give the same image digest.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use serde::Serialize;

use crate::digest;
use crate::error::{Error, Result};
use crate::oci::{Descriptor, Manifest, MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_MANIFEST};
use crate::store::{Layout, Store};

/// The non-root user and group every image runs as.
pub const NONROOT_ID: u64 = 65532;
/// Where the binary goes.
pub const BIN_DIR: &str = "usr/local/bin";
/// Where the CA bundle goes (Debian's path; `SSL_CERT_FILE` points at it).
pub const CA_BUNDLE_PATH: &str = crate::base::CA_BUNDLE;
/// gzip level used for every layer (part of the reproducibility contract).
pub const GZIP_LEVEL: u32 = 6;

/// The `org.opencontainers.image.*` labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Labels {
    /// `title`: the component name.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `licenses` (SPDX expression).
    pub licenses: String,
    /// `vendor`.
    pub vendor: String,
    /// `version`.
    pub version: String,
    /// `revision`: the source commit.
    pub revision: String,
    /// `source`: the source repository URL.
    pub source: String,
}

/// What goes into one image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Component name (the image's title).
    pub name: String,
    /// The built binary.
    pub binary: PathBuf,
    /// Its name inside the image (`/usr/local/bin/<binary_name>`).
    pub binary_name: String,
    /// Seconds since the epoch for every timestamp (SOURCE_DATE_EPOCH).
    pub source_date_epoch: i64,
    /// Labels.
    pub labels: Labels,
    /// Extra arguments after the entrypoint (the image's `Cmd`).
    pub cmd: Vec<String>,
    /// OCI architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// Tag in the layout.
    pub tag: String,
}

/// The OCI architecture of the machine running this code.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// RFC 3339 rendering of SOURCE_DATE_EPOCH.
pub fn rfc3339(epoch: i64) -> Result<String> {
    chrono::DateTime::from_timestamp(epoch, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .ok_or_else(|| Error::invalid("SOURCE_DATE_EPOCH", format!("{epoch} is out of range")))
}

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file with this content.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
}

/// One entry of a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Path inside the image, relative (`etc/passwd`), no trailing slash.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner and group (0 or [`NONROOT_ID`]).
    pub owner: u64,
    /// Directory, file or link.
    pub kind: EntryKind,
}

fn dir(path: &str, mode: u32, owner: u64) -> LayerEntry {
    LayerEntry {
        path: path.to_string(),
        mode,
        owner,
        kind: EntryKind::Dir,
    }
}

fn file(path: &str, mode: u32, data: Vec<u8>) -> LayerEntry {
    LayerEntry {
        path: path.to_string(),
        mode,
        owner: 0,
        kind: EntryKind::File(data),
    }
}

/// Adds every missing parent directory (root-owned, 0755), so unpackers never invent one.
fn with_parents(mut entries: Vec<LayerEntry>) -> Vec<LayerEntry> {
    let mut have: std::collections::BTreeSet<String> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| e.path.clone())
        .collect();
    let mut extra = Vec::new();
    for e in &entries {
        let mut p = e.path.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if have.insert(p.to_string()) {
                extra.push(dir(p, 0o755, 0));
            }
        }
    }
    entries.extend(extra);
    entries
}

/// A layer: (uncompressed tar, gzip).
pub fn layer(entries: Vec<LayerEntry>, mtime: i64) -> Result<(Vec<u8>, Vec<u8>)> {
    let tar = layer_tar(entries, mtime)?;
    let gz = gzip(&tar)?;
    Ok((tar, gz))
}

/// The uncompressed tar of a layer: sorted entries, parents added, fixed headers.
fn layer_tar(entries: Vec<LayerEntry>, mtime: i64) -> Result<Vec<u8>> {
    let mut entries = with_parents(entries);
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    let mut b = tar::Builder::new(Vec::new());
    let mtime = u64::try_from(mtime)
        .map_err(|_| Error::invalid("SOURCE_DATE_EPOCH", "must not be negative"))?;
    for e in &entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        h.set_uid(e.owner);
        h.set_gid(e.owner);
        h.set_mtime(mtime);
        let err = |source| Error::io("building layer entry", PathBuf::from(&e.path), source);
        match &e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", e.path), std::io::empty())
                    .map_err(err)?;
            }
            EntryKind::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, &e.path, d.as_slice()).map_err(err)?;
            }
            EntryKind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &e.path, target).map_err(err)?;
            }
        }
    }
    b.into_inner()
        .map_err(|e| Error::io("finishing layer", PathBuf::from("-"), e))
}

/// The accounts file of the image: root and the non-root user everything runs as.
pub const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
/// The groups file of the image.
pub const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";

/// Where a regular file of the image comes from, for the image SBOM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FileOrigin {
    /// A file of the Debian base (package, derived from a package, or generated).
    Debian(crate::base::Origin),
    /// A file of a layer of another base image (`[image] base`).
    BaseImage {
        /// Index of the layer in the image (0 = bottom).
        layer: usize,
    },
    /// The component's binary.
    Binary,
}

/// A regular file of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFile {
    /// Absolute path inside the image.
    pub path: String,
    /// Hex sha256 of its content.
    pub sha256: String,
    /// Index of the layer holding it (0 = bottom).
    pub layer: usize,
    /// Where it comes from.
    pub origin: FileOrigin,
}

/// What the image is built on.
#[derive(Debug, Clone)]
pub enum Base {
    /// The Debian packages the binaries need, unpacked into one layer ([`crate::base`]).
    Debian(crate::base::DebianBase),
    /// Another image's layers, as they are ([`crate::base_oci`]).
    Image(crate::base_oci::ImageBase),
}

/// What [`assemble`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssembledImage {
    /// Component name.
    pub name: String,
    /// Layout directory.
    pub layout: PathBuf,
    /// Tag in the layout.
    pub tag: String,
    /// Manifest digest (the image's identity).
    pub manifest_digest: String,
    /// Config digest.
    pub config_digest: String,
    /// Layer digests, base first.
    pub layers: Vec<String>,
    /// Total compressed size of the layers.
    pub size: u64,
    /// sha256 of the binary inside.
    pub binary_sha256: String,
    /// sha256 of the CA bundle inside, when the image has one at [`CA_BUNDLE_PATH`].
    pub ca_bundle_sha256: Option<String>,
    /// Every regular file of every layer (for the image SBOM; not printed).
    #[serde(skip)]
    pub files: Vec<ImageFile>,
}

fn regular_files(
    entries: &[LayerEntry],
    layer: usize,
    origin: impl Fn(&str) -> FileOrigin,
) -> Vec<ImageFile> {
    entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File(d) => Some(ImageFile {
                path: format!("/{}", e.path),
                sha256: digest::sha256_hex(d),
                layer,
                origin: origin(&e.path),
            }),
            _ => None,
        })
        .collect()
}

/// A base made into layers once, shared by every component's image.
#[derive(Debug, Clone)]
pub struct PreparedBase {
    /// (history text, diff_id, compressed blob, media type), bottom first.
    layers: Vec<(String, String, Vec<u8>, String)>,
    /// Regular files of those layers.
    files: Vec<ImageFile>,
    /// History of a base image's own layers.
    history: Vec<serde_json::Value>,
    /// The environment images on it start with.
    env: Vec<String>,
    /// A base image's layers do not carry the non-root user's home.
    needs_home: bool,
}

/// A gzipped layer from `cache` (keyed by the uncompressed digest, checked on reading), or
/// compressed now and kept there for the next run.
fn cached_gzip(cache: Option<&Path>, tar: &[u8], diff_id: &str) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let path = cache.map(|c| {
        c.join(format!(
            "layer-{}.tar.gz",
            diff_id.trim_start_matches("sha256:")
        ))
    });
    if let Some(p) = &path {
        if let Ok(gz) = std::fs::read(p) {
            let mut t = Vec::new();
            let ok = flate2::read::GzDecoder::new(gz.as_slice())
                .read_to_end(&mut t)
                .is_ok()
                && digest::sha256(&t) == diff_id;
            if ok {
                return Ok(gz);
            }
        }
    }
    let gz = gzip(tar)?;
    if let Some(p) = &path {
        distro_hostio::write_atomic(p, &gz, distro_hostio::PUBLIC)?;
    }
    Ok(gz)
}

fn gzip(tar: &[u8]) -> Result<Vec<u8>> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    gz.write_all(tar)
        .map_err(|e| Error::io("compressing layer", PathBuf::from("-"), e))?;
    gz.finish()
        .map_err(|e| Error::io("compressing layer", PathBuf::from("-"), e))
}

impl PreparedBase {
    /// Makes the base's layers (the Debian base's one layer is compressed once and kept in
    /// `cache`, keyed by its content).
    pub fn new(base: &Base, source_date_epoch: i64, cache: Option<&Path>) -> Result<Self> {
        match base {
            Base::Debian(deb) => {
                let mut entries: Vec<LayerEntry> = Vec::new();
                let mut origins = BTreeMap::new();
                for e in &deb.entries {
                    origins.insert(e.entry.path.clone(), e.origin.clone());
                    entries.push(e.entry.clone());
                }
                for (path, data) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
                    origins.insert(path.to_string(), crate::base::Origin::Generated);
                    entries.push(file(path, 0o644, data.as_bytes().to_vec()));
                }
                entries.push(dir("home/nonroot", 0o700, NONROOT_ID));
                entries.push(dir("tmp", 0o1777, 0));
                let files = regular_files(&entries, 0, |p| {
                    FileOrigin::Debian(
                        origins
                            .get(p)
                            .cloned()
                            .unwrap_or(crate::base::Origin::Generated),
                    )
                });
                let tar = layer_tar(entries, source_date_epoch)?;
                let diff_id = digest::sha256(&tar);
                let gz = cached_gzip(cache, &tar, &diff_id)?;
                let names: Vec<String> = deb
                    .packages
                    .iter()
                    .map(|p| format!("{} {}", p.name, p.version))
                    .collect();
                Ok(PreparedBase {
                    layers: vec![(
                        format!(
                            "base: {} ({}), passwd, group, /tmp",
                            deb.distro,
                            names.join(", ")
                        ),
                        diff_id,
                        gz,
                        MEDIA_LAYER_GZIP.to_string(),
                    )],
                    files,
                    history: Vec::new(),
                    env: vec![
                        "PATH=/usr/local/bin".to_string(),
                        format!("SSL_CERT_FILE=/{CA_BUNDLE_PATH}"),
                    ],
                    needs_home: false,
                })
            }
            Base::Image(img) => {
                let mut layers = Vec::new();
                let mut files = Vec::new();
                for (i, l) in img.layers.iter().enumerate() {
                    for (path, sha) in &l.files {
                        files.push(ImageFile {
                            path: path.clone(),
                            sha256: sha.clone(),
                            layer: i,
                            origin: FileOrigin::BaseImage { layer: i },
                        });
                    }
                    layers.push((
                        String::new(),
                        l.diff_id.clone(),
                        l.blob.clone(),
                        l.descriptor.media_type.clone(),
                    ));
                }
                let mut env = img.env.clone();
                if !env.iter().any(|e| e.starts_with("PATH=")) {
                    env.push("PATH=/usr/local/bin:/usr/bin:/bin".into());
                }
                Ok(PreparedBase {
                    layers,
                    files,
                    history: img.history.clone(),
                    env,
                    needs_home: true,
                })
            }
        }
    }
}

/// Builds the image described by `spec` on `base` into the layout at `layout_dir` (created if
/// missing) and tags it `spec.tag`.
pub fn assemble(
    spec: &ImageSpec,
    base: &PreparedBase,
    layout_dir: &Path,
) -> Result<AssembledImage> {
    let binary =
        std::fs::read(&spec.binary).map_err(|e| Error::io("reading binary", &spec.binary, e))?;
    if spec.binary_name.is_empty() || spec.binary_name.contains('/') {
        return Err(Error::invalid(
            "binary name",
            format!("`{}` must be a plain file name", spec.binary_name),
        ));
    }
    let created = rfc3339(spec.source_date_epoch)?;

    let mut layers = base.layers.clone();
    let mut files = base.files.clone();
    let mut history = base.history.clone();
    let env = base.env.clone();
    let mut app = vec![
        dir(BIN_DIR, 0o755, 0),
        file(
            &format!("{BIN_DIR}/{}", spec.binary_name),
            0o755,
            binary.clone(),
        ),
    ];
    if base.needs_home {
        // The home directory the image's WorkingDir names, owned by the user it runs as.
        app.push(dir("home/nonroot", 0o700, NONROOT_ID));
    }
    let app_index = layers.len();
    files.extend(regular_files(&app, app_index, |_| FileOrigin::Binary));
    let (tar, gz) = layer(app, spec.source_date_epoch)?;
    layers.push((
        "component binary".into(),
        digest::sha256(&tar),
        gz,
        MEDIA_LAYER_GZIP.to_string(),
    ));
    for (what, ..) in layers.iter().filter(|(what, ..)| !what.is_empty()) {
        history.push(serde_json::json!({
            "created": created,
            "created_by": format!("distro image: {what}"),
        }));
    }

    let mut labels = BTreeMap::new();
    let l = &spec.labels;
    for (k, v) in [
        ("title", &l.title),
        ("description", &l.description),
        ("licenses", &l.licenses),
        ("vendor", &l.vendor),
        ("version", &l.version),
        ("revision", &l.revision),
        ("source", &l.source),
        ("created", &created),
    ] {
        labels.insert(format!("org.opencontainers.image.{k}"), v.clone());
    }
    let entrypoint = format!("/{BIN_DIR}/{}", spec.binary_name);
    let config = serde_json::json!({
        "created": created,
        "architecture": spec.architecture,
        "os": "linux",
        "config": {
            "User": format!("{NONROOT_ID}:{NONROOT_ID}"),
            "Entrypoint": [entrypoint],
            "Cmd": spec.cmd,
            "Env": env,
            "WorkingDir": "/home/nonroot",
            "Labels": labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(_, diff_id, ..)| diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": history,
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|e| Error::json("image config", e))?;

    let mut store = Layout::open_dir(layout_dir, true)?;
    let mut layer_descs = Vec::new();
    for (_, _, gz, media_type) in &layers {
        let d = Descriptor::of(media_type, gz);
        store.put_blob(&d.digest, gz)?;
        layer_descs.push(d);
    }
    let config_desc = Descriptor::of(MEDIA_CONFIG, &config_bytes);
    store.put_blob(&config_desc.digest, &config_bytes)?;
    let manifest = Manifest::new(config_desc.clone(), layer_descs.clone());
    let manifest_bytes = manifest.to_bytes();
    let manifest_digest = store.put_manifest(Some(&spec.tag), &manifest_bytes, MEDIA_MANIFEST)?;
    let ca_path = format!("/{CA_BUNDLE_PATH}");
    Ok(AssembledImage {
        name: spec.name.clone(),
        layout: layout_dir.to_path_buf(),
        tag: spec.tag.clone(),
        manifest_digest,
        config_digest: config_desc.digest,
        size: layer_descs.iter().map(|d| d.size).sum(),
        layers: layer_descs.into_iter().map(|d| d.digest).collect(),
        binary_sha256: digest::sha256_hex(&binary),
        ca_bundle_sha256: files
            .iter()
            .rev()
            .find(|f| f.path == ca_path)
            .map(|f| f.sha256.clone()),
        files,
    })
}
