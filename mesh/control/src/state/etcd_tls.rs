//! TLS to etcd (`--state etcds://...`) on the FIPS provider, without etcd-client's own TLS
//! features (each of them brings a second TLS stack, ring or OpenSSL, beside the FIPS module).
//!
//! The client configuration is [`mesh_core::tls::webpki_client_config`]: etcd's server
//! certificate must chain to the operator's CA bundle (`--state-ca FILE`) and name the host the
//! endpoint gives (DNS name or IP address SAN); TLS 1.2/1.3 with FIPS suites and groups only;
//! optionally a client certificate for etcd's `--client-cert-auth` (`--state-cert`,
//! `--state-key`, the key file 0600). [`Connector`] dials TCP and runs the handshake with
//! tokio-rustls, offering ALPN `h2`; tonic runs HTTP/2 over it. The very configuration object
//! the connector uses is the one [`EtcdTls::report`] describes in the FIPS self-report.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Name of the etcd client configuration in the FIPS self-report.
pub const REPORT_NAME: &str = "etcd-state-client";

/// How long a new connection waits for etcd's first bytes (see [`Connector`]'s call).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Marks every error of [`Connector`]: a request that failed this way was never sent.
pub const CONNECT_ERROR_MARK: &str = "etcd member";

/// The files the TLS configuration is made from.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA bundle (PEM) that etcd's server certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for etcd's client-certificate authentication.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM, mode 0600).
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is given.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// Why the TLS configuration could not be made; names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A flag is missing, or given where it has no use.
    #[error("{0}")]
    Usage(String),
    /// A file does not hold what it should.
    #[error("{path}: {why}")]
    Bad {
        /// The file.
        path: String,
        /// What is wrong and what to do.
        why: String,
    },
}

/// The TLS configuration of the etcd client, and where it came from.
#[derive(Clone)]
pub struct EtcdTls {
    /// The configuration every connection to etcd is made with.
    pub config: Arc<ClientConfig>,
    /// The CA bundle file.
    pub ca: PathBuf,
    /// The client certificate file, when one is presented.
    pub client_cert: Option<PathBuf>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}

/// Reads a TLS file: a regular file of at most 1 MiB; the client key (`private`) only when other
/// users have no access to it (the message then says `chmod 600 FILE`).
fn read(path: &Path, what: &'static str, private: bool) -> Result<String, TlsSetupError> {
    let access = if private {
        distro_hostio::Access::OwnerOnly
    } else {
        distro_hostio::Access::Any
    };
    let bad = |why: String| TlsSetupError::Bad {
        path: path.display().to_string(),
        why: format!("the {what}: {why}"),
    };
    let bytes = distro_hostio::read_regular(path, 1 << 20, access).map_err(|e| bad(e.why))?;
    String::from_utf8(bytes).map_err(|_| bad("not text (expected PEM)".into()))
}

impl EtcdTls {
    /// Makes the configuration from `files` for the state URL `url`: `Ok(None)` for a plain
    /// `etcd://` state with no TLS file given; an error when TLS files are given for a state
    /// that does not speak TLS, when `etcds://` lacks `--state-ca`, or when only one of
    /// `--state-cert` / `--state-key` is given.
    pub fn for_url(url: Option<&str>, files: &TlsFiles) -> Result<Option<Self>, TlsSetupError> {
        let tls = url.is_some_and(|u| u.starts_with(super::etcd::TLS_SCHEME));
        if !tls {
            if files.any() {
                return Err(TlsSetupError::Usage(format!(
                    "--state-ca, --state-cert and --state-key are for a state on etcd over TLS \
                     (--state {}HOST:PORT[,HOST:PORT...]/PREFIX); {}",
                    super::etcd::TLS_SCHEME,
                    match url {
                        Some(u) => format!("--state {u} does not speak TLS"),
                        None => "no --state is given".into(),
                    }
                )));
            }
            return Ok(None);
        }
        Self::load(files).map(Some)
    }

    /// Reads the CA bundle and, when given, the client certificate and key.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsSetupError> {
        let ca = files.ca.clone().ok_or_else(|| {
            TlsSetupError::Usage(format!(
                "{}... needs --state-ca FILE: the CA bundle (PEM) that etcd's server certificate \
                 must chain to (etcd's --trusted-ca-file is usually the same CA)",
                super::etcd::TLS_SCHEME
            ))
        })?;
        let bad = |path: &Path, why: String| TlsSetupError::Bad {
            path: path.display().to_string(),
            why,
        };
        let roots =
            mesh_core::tls::roots_from_pem(&read(&ca, "etcd CA bundle", false)?).map_err(|e| {
                bad(
                    &ca,
                    format!(
                        "{e} (expected the PEM CA certificate(s) of etcd's server certificate)"
                    ),
                )
            })?;
        let client = match (&files.cert, &files.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let chain = mesh_core::identity::certs_from_pem(&read(
                    cert,
                    "etcd client certificate",
                    false,
                )?)
                .map_err(|e| bad(cert, e.to_string()))?;
                if chain.is_empty() {
                    return Err(bad(
                        cert,
                        "no CERTIFICATE block (expected the PEM client certificate etcd trusts)"
                            .into(),
                    ));
                }
                // The key's text is never part of a message.
                let der = mesh_core::identity::key_from_pem(&read(key, "etcd client key", true)?)
                    .map_err(|_| {
                    bad(
                        key,
                        "no PEM private key (PKCS#8, SEC1 or PKCS#1) here".into(),
                    )
                })?;
                Some((chain, der))
            }
            _ => {
                return Err(TlsSetupError::Usage(
                    "--state-cert and --state-key go together: the client certificate for etcd's \
                     --client-cert-auth and its private key"
                        .into(),
                ))
            }
        };
        let config = mesh_core::tls::webpki_client_config(roots, client, &[b"h2"]).map_err(
            |e| match &files.cert {
                Some(cert) => bad(
                    cert,
                    format!("{e} (does --state-key hold this certificate's key?)"),
                ),
                None => bad(&ca, e.to_string()),
            },
        )?;
        Ok(EtcdTls {
            config: Arc::new(config),
            ca,
            client_cert: files.cert.clone(),
        })
    }

    /// This configuration in the FIPS self-report.
    pub fn report(&self) -> distro_schema::TlsConfigReport {
        mesh_core::tls::describe_client(REPORT_NAME, &self.config)
    }
}

/// The last TLS failure seen after a handshake (etcd refusing a missing client certificate
/// comes as an alert once TLS 1.3's handshake has finished on the client's side, and reaches
/// the request only as "connection closed"): when, and what it means.
pub type TlsNote = Arc<Mutex<Option<(Instant, String)>>>;

/// Dials an etcd member and runs the TLS handshake; what tonic's channel connects with.
#[derive(Clone)]
pub struct Connector {
    tls: EtcdTls,
    note: TlsNote,
}

impl Connector {
    /// A connector using `tls`, recording post-handshake TLS failures in `note`.
    pub fn new(tls: EtcdTls, note: TlsNote) -> Self {
        Connector { tls, note }
    }
}

/// A TLS stream that records a TLS error on read (an alert from etcd) in the [`TlsNote`].
pub struct Watched {
    inner: TlsStream<TcpStream>,
    /// What the probe after the handshake read, handed out first.
    pending: Vec<u8>,
    endpoint: String,
    host: String,
    tls: EtcdTls,
    note: TlsNote,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            let n = buf.remaining().min(self.pending.len());
            buf.put_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &r {
            let is_tls = e
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some());
            if is_tls {
                let why = format!(
                    "{CONNECT_ERROR_MARK} {}: {}",
                    self.endpoint,
                    explain(e, &self.host, &self.tls)
                );
                tracing::warn!(error = %why, "etcd closed the TLS connection");
                if let Ok(mut n) = self.note.lock() {
                    *n = Some((Instant::now(), why));
                }
            }
        }
        r
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A connection to etcd that could not be made; names the member and says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{CONNECT_ERROR_MARK} {endpoint}: {why}")]
pub struct ConnectError {
    /// `https://HOST:PORT`.
    pub endpoint: String,
    /// What failed.
    pub why: String,
}

/// What a failed handshake means for the operator.
fn explain(e: &std::io::Error, host: &str, tls: &EtcdTls) -> String {
    use rustls::{AlertDescription, CertificateError, Error as TlsErr};
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<TlsErr>());
    let ca = tls.ca.display();
    let help = match inner {
        Some(TlsErr::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
            "etcd's server certificate does not chain to a CA in --state-ca {ca}; refusing to \
             talk to it (give the CA that issued etcd's --cert-file)"
        ),
        Some(TlsErr::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => format!(
            "etcd's server certificate is not valid for {host}; refusing to talk to it (its \
             subject alternative names must include the host given in --state)"
        ),
        Some(TlsErr::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "etcd's server certificate has expired; refusing to talk to it".into(),
        Some(TlsErr::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::HandshakeFailure,
        )) => match &tls.client_cert {
            None => "etcd refused the handshake: it requires a client certificate \
                     (--client-cert-auth); pass --state-cert FILE and --state-key FILE"
                .into(),
            Some(c) => format!(
                "etcd refused the handshake: it does not accept the client certificate {} \
                 (is it issued by etcd's --trusted-ca-file?)",
                c.display()
            ),
        },
        Some(TlsErr::NoApplicationProtocol) => {
            "etcd did not agree to HTTP/2 (ALPN h2); is this an etcd client port?".into()
        }
        _ => "is this an etcd client port speaking TLS (etcd --listen-client-urls https://...)?"
            .into(),
    };
    format!("TLS handshake failed: {e}: {help}")
}

type IoStream = TokioIo<Watched>;

impl tower::Service<http::Uri> for Connector {
    type Response = IoStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<IoStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        let note = self.note.clone();
        Box::pin(async move {
            let endpoint = uri.to_string().trim_end_matches('/').to_string();
            let fail = |why: String| ConnectError {
                endpoint: endpoint.clone(),
                why,
            };
            let host = uri.host().unwrap_or_default();
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().ok_or_else(|| fail("no port".into()))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| fail(format!("{host:?} is not a DNS name or IP address: {e}")))?;
            // The retry in the backend looks for "tcp connect error": nothing was sent yet.
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| fail(format!("tcp connect error: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| fail(explain(&e, &host, &tls)))?;
            // In TLS 1.3 the client's side of the handshake ends before etcd has checked the
            // client certificate; a refusal comes as an alert after it. etcd (an HTTP/2 server)
            // speaks first, so wait briefly for its first bytes: an alert or a close here is
            // this connection's failure, named, instead of "connection closed" on a request.
            let mut stream = stream;
            let mut first = vec![0u8; 4096];
            let pending = match tokio::time::timeout(PROBE_TIMEOUT, stream.read(&mut first)).await {
                Ok(Ok(0)) => {
                    return Err(fail(format!(
                        "TLS handshake failed: etcd closed the connection right after it{}",
                        if tls.client_cert.is_none() {
                            "; if etcd runs with --client-cert-auth, pass --state-cert FILE and \
                             --state-key FILE"
                        } else {
                            ""
                        }
                    )))
                }
                Ok(Ok(n)) => {
                    first.truncate(n);
                    first
                }
                Ok(Err(e)) => return Err(fail(explain(&e, &host, &tls))),
                Err(_) => Vec::new(),
            };
            Ok(TokioIo::new(Watched {
                inner: stream,
                pending,
                endpoint,
                host,
                tls,
                note,
            }))
        })
    }
}
