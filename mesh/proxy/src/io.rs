//! Byte-stream plumbing: a stream that replays bytes already read (protocol sniffing), the boxed
//! stream type the listeners share, and mesh connections (mTLS with the server's SPIFFE ID
//! checked before any byte of the request is sent).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::metrics::{Direction, HandshakeResult};
use crate::state::Proxy;
use crate::tls::Alpn;

/// Any bidirectional byte stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed stream.
pub type BoxIo = Box<dyn Io>;

/// A stream whose first bytes were already read; they are returned again first.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Wraps `inner`, replaying `prefix` first.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // `advance` keeps the allocation (up to a request line's worth, read while
                // sniffing); a keep-alive connection would hold it for its whole life.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a mesh connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed or timed out.
    #[error("connect to {addr}: {message}")]
    Connect {
        /// Endpoint.
        addr: String,
        /// What happened.
        message: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr}: {message}")]
    Handshake {
        /// Endpoint.
        addr: String,
        /// What happened.
        message: String,
    },
    /// The server presented a different SPIFFE ID than the one the configuration expects.
    #[error("{addr} presented {got}, expected {expected}: refusing to send the request")]
    WrongIdentity {
        /// Endpoint.
        addr: String,
        /// What it presented.
        got: String,
        /// What the configuration says.
        expected: String,
    },
}

impl ConnectError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectError::Connect { .. } => "connect",
            ConnectError::Handshake { .. } => "handshake",
            ConnectError::WrongIdentity { .. } => "identity_mismatch",
        }
    }
}

/// Opens an mTLS connection to a mesh endpoint that must present `expected` (a SPIFFE ID). The
/// identity is checked by the verifier during the handshake ([`mesh_core::tls`]), so a wrong
/// server never sees a byte of the request; that refusal is reported as
/// [`ConnectError::WrongIdentity`].
pub async fn connect_mesh(
    proxy: &Arc<Proxy>,
    addr: &str,
    expected: &str,
    alpn: Alpn,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let timeout = Duration::from_millis(proxy.local.limits.connect_timeout_ms);
    let err = |message: String| ConnectError::Connect {
        addr: addr.to_string(),
        message,
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| err(format!("timed out after {timeout:?}")))?
        .map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let cfg = proxy
        .tls
        .client_config(expected, alpn)
        .map_err(|e| ConnectError::Handshake {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    // The name is not verified (the SPIFFE ID is); it is only sent as SNI.
    let name = ServerName::try_from("mesh-endpoint").map_err(|e| err(e.to_string()))?;
    let result = tokio::time::timeout(timeout, connector.connect(name, tcp)).await;
    match result {
        Ok(Ok(tls)) => {
            proxy
                .metrics
                .handshake(Direction::Outbound, HandshakeResult::Ok);
            Ok(tls)
        }
        Ok(Err(e)) => {
            if let Some(m) = mesh_core::tls::identity_mismatch(&e) {
                proxy
                    .metrics
                    .handshake(Direction::Outbound, HandshakeResult::IdentityMismatch);
                return Err(ConnectError::WrongIdentity {
                    addr: addr.to_string(),
                    got: m.presented.clone(),
                    expected: expected.to_string(),
                });
            }
            proxy
                .metrics
                .handshake(Direction::Outbound, HandshakeResult::Error);
            Err(ConnectError::Handshake {
                addr: addr.to_string(),
                message: e.to_string(),
            })
        }
        Err(_) => Err(ConnectError::Handshake {
            addr: addr.to_string(),
            message: format!("timed out after {timeout:?}"),
        }),
    }
}
