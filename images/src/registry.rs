//! A registry repository as a [`Store`], through the `oci-client` crate.
//!
//! TLS is rustls on the mesh's FIPS provider (aws-lc-rs); a private CA can be added. Plain HTTP
//! is refused unless asked for and the registry is on a loopback address. Each request is retried
//! on transient failures (connection refused or reset, timeouts, 429 and 5xx) with exponential
//! backoff. Blobs already in the repository are not uploaded again, and every blob and manifest
//! fetched is checked against its digest.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::digest;
use crate::error::{Error, Result};
use crate::oci::{MEDIA_DOCKER_MANIFEST, MEDIA_INDEX, MEDIA_MANIFEST};
use crate::store::{media_type_of, FetchedManifest, Store, MAX_BLOB_BYTES};

/// Credentials for a registry. Never printed.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic (also used to obtain a bearer token when the registry asks for one).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token used as is.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => write!(f, "Anonymous"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Credentials.
    pub auth: Auth,
    /// Extra CA certificates (PEM) to trust, for a registry with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Use plain HTTP; refused unless the registry is on a loopback address.
    pub plain_http: bool,
    /// Attempts per request (1 = no retry).
    pub attempts: u32,
    /// First backoff delay; doubled after each failed attempt.
    pub backoff: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            auth: Auth::Anonymous,
            ca_file: None,
            plain_http: false,
            attempts: 5,
            backoff: Duration::from_millis(250),
        }
    }
}

/// Counters of what a session with a registry did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransferStats {
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Blobs skipped because the registry already had them.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository of the same registry instead of uploaded.
    pub blobs_mounted: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Requests retried after a transient failure.
    pub retries: u64,
}

/// One repository in a registry.
pub struct Registry {
    client: Client,
    rt: Arc<tokio::runtime::Runtime>,
    /// Blobs this session uploaded, digest → repository, shared by [`Registry::sibling`]s so a
    /// layer shared by several images is mounted rather than uploaded again.
    uploaded: Arc<Mutex<HashMap<String, String>>>,
    registry: String,
    repository: String,
    auth: RegistryAuth,
    opts: RegistryOptions,
    /// What this session did.
    pub stats: TransferStats,
}

/// Whether `host[:port]` names a loopback address.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Installs the FIPS crypto provider as the process default for rustls (reqwest uses it).
fn install_fips_provider() {
    // Another caller may have installed it already; either way the provider is the mesh's.
    let _ =
        rustls::crypto::CryptoProvider::install_default((*mesh_core::crypto::provider()).clone());
}

impl Registry {
    /// Prepares a client for `registry`/`repository` (no request is made yet).
    pub fn connect(registry: &str, repository: &str, opts: &RegistryOptions) -> Result<Self> {
        if opts.plain_http && !is_loopback(registry) {
            return Err(Error::Refused(format!(
                "plain HTTP to {registry} refused: it is only allowed for a registry on a loopback address; \
                 give the registry a TLS certificate and pass its CA with --ca-file"
            )));
        }
        install_fips_provider();
        let mut config = ClientConfig {
            protocol: if opts.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            // One PUT per blob (after the POST that opens the session) rather than a PATCH per
            // chunk: fewer round trips, and what the CNCF registry handles best.
            use_monolithic_push: true,
            ..ClientConfig::default()
        };
        if let Some(ca) = &opts.ca_file {
            let data = distro_hostio::read_bounded(ca, distro_hostio::Symlinks::Follow, 16 << 20)
                .map_err(|e| Error::io("reading CA certificates", ca, e))?;
            if !String::from_utf8_lossy(&data).contains("-----BEGIN CERTIFICATE-----") {
                return Err(Error::invalid(
                    ca.display().to_string(),
                    "no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
                ));
            }
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the I/O runtime", PathBuf::from("-"), e))?;
        let auth = match &opts.auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        };
        let client = Client::new(config);
        let this = Registry {
            client,
            rt: Arc::new(rt),
            uploaded: Arc::default(),
            registry: registry.to_string(),
            repository: repository.to_string(),
            auth,
            opts: opts.clone(),
            stats: TransferStats::default(),
        };
        this.rt
            .block_on(this.client.store_auth_if_needed(registry, &this.auth));
        Ok(this)
    }

    /// Another repository of the same registry, sharing this one's connections, credentials and
    /// knowledge of uploaded blobs.
    pub fn sibling(&self, repository: &str) -> Registry {
        Registry {
            client: self.client.clone(),
            rt: self.rt.clone(),
            uploaded: self.uploaded.clone(),
            registry: self.registry.clone(),
            repository: repository.to_string(),
            auth: self.auth.clone(),
            opts: self.opts.clone(),
            stats: TransferStats::default(),
        }
    }

    /// Mounts `d` from a repository this session uploaded it to; false when there is none or
    /// the registry declines (then the caller uploads).
    fn try_mount(&mut self, d: &str) -> bool {
        let source = match self.uploaded.lock() {
            Ok(m) => m.get(d).filter(|r| **r != self.repository).cloned(),
            Err(_) => None,
        };
        let Some(source) = source else { return false };
        let target = self.reference("latest");
        let from = Reference::with_tag(self.registry.clone(), source.clone(), "latest".to_string());
        match self.rt.block_on(self.client.mount_blob(&target, &from, d)) {
            Ok(()) => {
                tracing::debug!("mounted {d} from {source}");
                self.stats.blobs_mounted += 1;
                true
            }
            Err(e) => {
                tracing::debug!("mounting {d} from {source} declined ({e}); uploading");
                false
            }
        }
    }

    fn reference(&self, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_string(),
            )
        } else {
            Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_string(),
            )
        }
    }

    fn run<T, F, Fut>(&mut self, operation: &str, f: F) -> Result<T>
    where
        F: Fn(Client, Reference) -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        self.run_on(operation, None, f)
    }

    fn run_on<T, F, Fut>(&mut self, operation: &str, reference: Option<&str>, f: F) -> Result<T>
    where
        F: Fn(Client, Reference) -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let r = self.reference(reference.unwrap_or("latest"));
        let mut delay = self.opts.backoff;
        let attempts = self.opts.attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.rt.block_on(f(self.client.clone(), r.clone())) {
                Ok(v) => return Ok(v),
                Err(e) if attempt < attempts && is_transient(&e) => {
                    tracing::warn!("{}: {operation}: {e}; retrying in {delay:?} (attempt {attempt}/{attempts})", self.registry);
                    self.stats.retries += 1;
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Registry {
                        registry: self.registry.clone(),
                        operation: format!("{operation} ({}/{})", self.registry, self.repository),
                        message: describe_error(&e),
                    })
                }
            }
        }
    }
}

fn describe_error(e: &OciDistributionError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    if is_tls_failure(e) {
        s.push_str(" (TLS failed: pass the registry's CA with --ca-file; for a plain-HTTP registry on loopback pass --plain-http)");
    }
    let denied = match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::RequestError(r) => r
            .status()
            .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        _ => false,
    };
    if denied {
        s.push_str(" (check --username and DISTRO_REGISTRY_PASSWORD or DISTRO_REGISTRY_TOKEN)");
    }
    s
}

/// Whether a TLS failure (bad certificate, protocol mismatch) is somewhere in the chain: those
/// never heal by retrying.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        // Error types along the chain are not always exposed (boxed by hyper-util), so rustls'
        // own messages are recognised too.
        let text = c.to_string();
        if [
            "invalid peer certificate",
            "received corrupt message",
            "peer is incompatible",
            "received fatal alert",
            "peer misbehaved",
        ]
        .iter()
        .any(|m| text.contains(m))
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Failures worth another attempt: the network or an overloaded registry, never a refusal.
fn is_transient(e: &OciDistributionError) -> bool {
    if is_tls_failure(e) {
        return false;
    }
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_connect()
                || r.is_timeout()
                || r.status()
                    .is_some_and(|s| s.is_server_error() || s.as_u16() == 429)
                || (r.is_request() && !r.is_builder())
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        // A blob longer than its descriptor (see `Capped`) is not worth another attempt.
        OciDistributionError::IoError(io) => io.kind() != std::io::ErrorKind::FileTooLarge,
        _ => false,
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

impl Store for Registry {
    fn describe(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn manifest(&mut self, reference: &str) -> Result<Option<FetchedManifest>> {
        let auth = self.auth.clone();
        let what = format!("manifest {}/{}:{reference}", self.registry, self.repository);
        let r = self.reference(reference);
        let mut delay = self.opts.backoff;
        let attempts = self.opts.attempts.max(1);
        let mut attempt = 1;
        let (bytes, _) = loop {
            let res = self.rt.block_on(self.client.pull_manifest_raw(
                &r,
                &auth,
                &[MEDIA_MANIFEST, MEDIA_INDEX, MEDIA_DOCKER_MANIFEST],
            ));
            match res {
                Ok(v) => break v,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) if attempt < attempts && is_transient(&e) => {
                    tracing::warn!("{what}: {e}; retrying in {delay:?}");
                    self.stats.retries += 1;
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Registry {
                        registry: self.registry.clone(),
                        operation: format!("fetching {what}"),
                        message: describe_error(&e),
                    })
                }
            }
        };
        let bytes = bytes.to_vec();
        let d = digest::sha256(&bytes);
        if reference.starts_with("sha256:") {
            digest::check(&what, reference, &bytes)?;
        }
        let media_type = media_type_of(&bytes);
        Ok(Some(FetchedManifest {
            bytes,
            digest: d,
            media_type,
        }))
    }

    fn blob(&mut self, d: &str) -> Result<Vec<u8>> {
        self.fetch_blob(d, None)
    }

    fn blob_sized(&mut self, d: &str, size: u64) -> Result<Vec<u8>> {
        self.fetch_blob(d, Some(size))
    }

    fn has_blob(&mut self, d: &str) -> Result<bool> {
        let d2 = d.to_string();
        self.run_on(&format!("checking blob {d}"), Some(d), move |c, r| {
            let d = d2.clone();
            async move { c.blob_exists(&r, &d).await }
        })
    }

    fn put_blob(&mut self, d: &str, data: &[u8]) -> Result<bool> {
        if self.has_blob(d)? {
            self.stats.blobs_skipped += 1;
            return Ok(false);
        }
        self.upload_blob(d, data)?;
        Ok(true)
    }

    fn upload_blob(&mut self, d: &str, data: &[u8]) -> Result<()> {
        digest::check(&format!("blob {d} being pushed"), d, data)?;
        if self.try_mount(d) {
            return Ok(());
        }
        let bytes = bytes_of(data);
        let d2 = d.to_string();
        self.run(&format!("uploading blob {d}"), move |c, r| {
            let bytes = bytes.clone();
            let d = d2.clone();
            async move { c.push_blob(&r, bytes, &d).await }
        })?;
        self.stats.blobs_uploaded += 1;
        self.stats.bytes_uploaded += data.len() as u64;
        if let Ok(mut m) = self.uploaded.lock() {
            m.insert(d.to_string(), self.repository.clone());
        }
        Ok(())
    }

    fn put_manifest(
        &mut self,
        tag: Option<&str>,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        let d = digest::sha256(bytes);
        let target = tag.map(str::to_string).unwrap_or_else(|| d.clone());
        let body = bytes_of(bytes);
        let ct: http::HeaderValue = media_type.parse().map_err(|_| {
            Error::invalid(
                "manifest media type",
                format!("`{media_type}` is not a valid header value"),
            )
        })?;
        self.run_on(
            &format!("pushing manifest {target}"),
            Some(&target),
            move |c, r| {
                let body = body.clone();
                let ct = ct.clone();
                async move { c.push_manifest_raw(&r, body, ct).await }
            },
        )?;
        Ok(d)
    }
}

impl Registry {
    /// Fetches a blob into memory, never more than `size + 1` bytes (or [`MAX_BLOB_BYTES`]
    /// without a size): the download stops as soon as the registry sends more than that.
    fn fetch_blob(&mut self, d: &str, size: Option<u64>) -> Result<Vec<u8>> {
        digest::hex_part(d)?;
        let what = format!("blob {d} from {}", self.describe());
        if let Some(s) = size.filter(|s| *s > MAX_BLOB_BYTES) {
            return Err(Error::invalid(
                what,
                format!("its descriptor declares {s} bytes, more than the limit of {MAX_BLOB_BYTES}; refusing to fetch it"),
            ));
        }
        let limit = size.map_or(MAX_BLOB_BYTES, |s| s.saturating_add(1));
        let desc = oci_client::manifest::OciDescriptor {
            digest: d.to_string(),
            ..Default::default()
        };
        let data = self.run_on(&format!("fetching blob {d}"), Some(d), |c, r| {
            let desc = desc.clone();
            async move {
                let mut out = Capped {
                    buf: Vec::new(),
                    limit,
                };
                c.pull_blob(&r, &desc, &mut out).await?;
                Ok(out.buf)
            }
        })?;
        if let Some(s) = size {
            if data.len() as u64 != s {
                return Err(Error::invalid(
                    what,
                    format!(
                        "the registry sent {} bytes but the descriptor says {s}",
                        data.len()
                    ),
                ));
            }
        }
        // oci-client checks the digest while streaming; check again so no path skips it.
        digest::check(&what, d, &data)?;
        Ok(data)
    }
}

/// An in-memory sink that fails once more than `limit` bytes are written to it.
struct Capped {
    buf: Vec<u8>,
    limit: u64,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() as u64 + data.len() as u64 > this.limit {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the registry sent more than {} bytes, the size its descriptor declares",
                    this.limit.saturating_sub(1)
                ),
            )));
        }
        this.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn bytes_of(data: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(data)
}
