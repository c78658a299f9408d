//! A plain HTTP/1.1 keep-alive client: many GETs on one connection, for load through a proxy
//! while something fails over or reloads.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A keep-alive HTTP/1.1 client (responses must carry `content-length`).
///
/// [`KeepAlive::get`] makes one attempt: an error drops the connection (the next GET opens a
/// new one) and is returned, so a caller counting failures sees every one.
/// [`KeepAlive::get_or_reconnect`] retries once on a new connection, for callers that only
/// count [`KeepAlive::reconnects`]. A response saying `connection: close` ends the connection
/// as HTTP says it must.
pub struct KeepAlive {
    addr: SocketAddr,
    s: Option<TcpStream>,
    buf: Vec<u8>,
    connects: usize,
}

/// One GET on a new connection: (status, body); an ops or admin endpoint probe.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    KeepAlive::new(addr).get(path)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

impl KeepAlive {
    /// A client for `addr`; it connects on the first GET (5 s connect timeout, 10 s read
    /// timeout, TCP_NODELAY).
    pub fn new(addr: SocketAddr) -> Self {
        KeepAlive {
            addr,
            s: None,
            buf: Vec::new(),
            connects: 0,
        }
    }

    /// Connections opened after the first one.
    pub fn reconnects(&self) -> usize {
        self.connects.saturating_sub(1)
    }

    /// One GET on the current connection (a new one if there is none): (status, body).
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        let r = self.try_get(path);
        if r.is_err() {
            self.s = None;
            self.buf.clear();
        }
        r
    }

    /// [`KeepAlive::get`], retried once on a new connection if the first attempt failed.
    pub fn get_or_reconnect(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        match self.get(path) {
            Ok(r) => Ok(r),
            Err(_) => self.get(path),
        }
    }

    fn try_get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        if self.s.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_nodelay(true)?;
            self.s = Some(s);
            self.buf.clear();
            self.connects += 1;
        }
        let Some(s) = self.s.as_mut() else {
            return Err(std::io::Error::other("not connected"));
        };
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())?;
        let mut tmp = [0u8; 16384];
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        let clen: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no content-length: {head}")))?;
        while self.buf.len() < head_end + clen {
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed mid-body"));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + clen]).to_string();
        self.buf.drain(..head_end + clen);
        if head.contains("connection: close") {
            self.s = None;
        }
        Ok((status, body))
    }
}
