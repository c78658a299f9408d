//! Assembles a component's OCI image without a container engine.
//!
//! Two layers: a minimal base (CA bundle, `/etc/passwd` and `/etc/group` with the non-root user
//! 65532, `/tmp`, the user's home) shared by every component, and the component's binary. No
//! shell, no package manager. Everything that could vary between runs is fixed: tar entries are
//! sorted, owners are 0 or 65532, modes are fixed, every mtime is SOURCE_DATE_EPOCH, ustar headers
//! carry no user or group names, and gzip has a zero mtime, no file name and a fixed level. The
//! same inputs therefore always give the same image digest.

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
pub const CA_BUNDLE_PATH: &str = "etc/ssl/certs/ca-certificates.crt";
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
    /// CA bundle to ship (e.g. Debian's `/etc/ssl/certs/ca-certificates.crt`).
    pub ca_bundle: PathBuf,
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
    /// sha256 of the CA bundle inside.
    pub ca_bundle_sha256: String,
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

struct Entry {
    path: String,
    mode: u32,
    owner: u64,
    data: Option<Vec<u8>>,
}

fn dir(path: &str, mode: u32, owner: u64) -> Entry {
    Entry {
        path: format!("{path}/"),
        mode,
        owner,
        data: None,
    }
}

fn file(path: &str, mode: u32, data: Vec<u8>) -> Entry {
    Entry {
        path: path.to_string(),
        mode,
        owner: 0,
        data: Some(data),
    }
}

/// A layer: (uncompressed tar, gzip).
fn layer(mut entries: Vec<Entry>, mtime: i64) -> Result<(Vec<u8>, Vec<u8>)> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
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
        match &e.data {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, &e.path, std::io::empty())
                    .map_err(err)?;
            }
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, &e.path, d.as_slice()).map_err(err)?;
            }
        }
    }
    let tar = b
        .into_inner()
        .map_err(|e| Error::io("finishing layer", PathBuf::from("-"), e))?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    gz.write_all(&tar)
        .map_err(|e| Error::io("compressing layer", PathBuf::from("-"), e))?;
    let gz = gz
        .finish()
        .map_err(|e| Error::io("compressing layer", PathBuf::from("-"), e))?;
    Ok((tar, gz))
}

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";

/// Builds the image described by `spec` into the layout at `layout_dir` (created if missing) and
/// tags it `spec.tag`.
pub fn assemble(spec: &ImageSpec, layout_dir: &Path) -> Result<AssembledImage> {
    let binary =
        std::fs::read(&spec.binary).map_err(|e| Error::io("reading binary", &spec.binary, e))?;
    let ca = std::fs::read(&spec.ca_bundle)
        .map_err(|e| Error::io("reading CA bundle", &spec.ca_bundle, e))?;
    if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::invalid(
            spec.ca_bundle.display().to_string(),
            "not a PEM CA bundle (install Debian's ca-certificates or pass --ca-bundle)",
        ));
    }
    if spec.binary_name.is_empty() || spec.binary_name.contains('/') {
        return Err(Error::invalid(
            "binary name",
            format!("`{}` must be a plain file name", spec.binary_name),
        ));
    }
    let created = rfc3339(spec.source_date_epoch)?;

    let base = vec![
        dir("etc", 0o755, 0),
        dir("etc/ssl", 0o755, 0),
        dir("etc/ssl/certs", 0o755, 0),
        file(CA_BUNDLE_PATH, 0o644, ca.clone()),
        file("etc/passwd", 0o644, PASSWD.as_bytes().to_vec()),
        file("etc/group", 0o644, GROUP.as_bytes().to_vec()),
        dir("home", 0o755, 0),
        dir("home/nonroot", 0o700, NONROOT_ID),
        dir("tmp", 0o1777, 0),
    ];
    let app = vec![
        dir("usr", 0o755, 0),
        dir("usr/local", 0o755, 0),
        dir(BIN_DIR, 0o755, 0),
        file(
            &format!("{BIN_DIR}/{}", spec.binary_name),
            0o755,
            binary.clone(),
        ),
    ];
    let layers = [
        (
            "base: CA bundle, passwd, group, /tmp",
            layer(base, spec.source_date_epoch)?,
        ),
        ("component binary", layer(app, spec.source_date_epoch)?),
    ];

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
            "Env": [
                "PATH=/usr/local/bin",
                format!("SSL_CERT_FILE=/{CA_BUNDLE_PATH}"),
            ],
            "WorkingDir": "/home/nonroot",
            "Labels": labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(_, (tar, _))| digest::sha256(tar)).collect::<Vec<_>>(),
        },
        "history": layers.iter().map(|(what, _)| serde_json::json!({
            "created": created,
            "created_by": format!("distro image: {what}"),
        })).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|e| Error::json("image config", e))?;

    let mut store = Layout::open_dir(layout_dir, true)?;
    let mut layer_descs = Vec::new();
    for (_, (_, gz)) in &layers {
        let d = Descriptor::of(MEDIA_LAYER_GZIP, gz);
        store.put_blob(&d.digest, gz)?;
        layer_descs.push(d);
    }
    let config_desc = Descriptor::of(MEDIA_CONFIG, &config_bytes);
    store.put_blob(&config_desc.digest, &config_bytes)?;
    let manifest = Manifest::new(config_desc.clone(), layer_descs.clone());
    let manifest_bytes = manifest.to_bytes();
    let manifest_digest = store.put_manifest(Some(&spec.tag), &manifest_bytes, MEDIA_MANIFEST)?;
    Ok(AssembledImage {
        name: spec.name.clone(),
        layout: layout_dir.to_path_buf(),
        tag: spec.tag.clone(),
        manifest_digest,
        config_digest: config_desc.digest,
        size: layer_descs.iter().map(|d| d.size).sum(),
        layers: layer_descs.into_iter().map(|d| d.digest).collect(),
        binary_sha256: digest::sha256_hex(&binary),
        ca_bundle_sha256: digest::sha256_hex(&ca),
    })
}
