//! The small programs the suite runs *inside* the environment's namespaces: the application
//! behind each sidecar, the latency relay of impaired links and the load client. They are not
//! part of the mesh (the mesh under test is always the released binaries and images); the
//! `distro` binary runs them as `distro conformance fixture …` under `ip netns exec`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The application: HTTP/1.1 with keep-alive. Answers `name=… version=… path=… xfcc=…`, or
/// `n` bytes for `/bytes/n`, or 503 while `fail_file` exists (a failing endpoint).
pub fn app(
    listen: SocketAddr,
    name: String,
    version: String,
    fail_file: PathBuf,
) -> std::io::Result<()> {
    let l = TcpListener::bind(listen)?;
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        let (name, version, fail_file) = (name.clone(), version.clone(), fail_file.clone());
        std::thread::spawn(move || app_conn(s, &name, &version, &fail_file));
    }
    Ok(())
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn app_conn(mut s: TcpStream, name: &str, version: &str, fail_file: &std::path::Path) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let clen: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + clen {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..head_end + clen);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let xfcc = header(&head, "x-forwarded-client-cert").unwrap_or("");
        let (status, body) = if fail_file.exists() {
            ("503 Service Unavailable", format!("name={name} failing\n"))
        } else if let Some(n) = path
            .strip_prefix("/api/bytes/")
            .and_then(|n| n.parse::<usize>().ok())
        {
            let n = n.min(16 * 1024 * 1024);
            ("200 OK", "x".repeat(n))
        } else {
            (
                "200 OK",
                format!("name={name} version={version} path={path} xfcc={xfcc}\n"),
            )
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A TCP relay adding `delay` to every byte in each direction (the latency of an impaired link;
/// this kernel has no netem).
pub fn relay(listen: SocketAddr, to: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let l = TcpListener::bind(listen)?;
    for s in l.incoming() {
        let Ok(client) = s else { continue };
        std::thread::spawn(move || {
            let Ok(upstream) = TcpStream::connect_timeout(&to, Duration::from_secs(10)) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                return;
            };
            std::thread::spawn(move || delayed_copy(c2, u2, delay));
            delayed_copy(upstream, client, delay);
        });
    }
    Ok(())
}

/// Copies `from` → `to`, each chunk written `delay` after it was read.
fn delayed_copy(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let Ok(mut to2) = to.try_clone() else { return };
        std::thread::spawn(move || {
            for (due, chunk) in rx {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if to2.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = to2.shutdown(std::net::Shutdown::Write);
        })
    };
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = to.flush();
}

/// What the load client saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    /// Requests attempted.
    pub sent: u32,
    /// Responses with status 200.
    pub ok: u32,
    /// Every status seen (0: no HTTP response), with counts.
    pub statuses: BTreeMap<u16, u32>,
    /// `name=` of the answering application, with counts.
    pub names: BTreeMap<String, u32>,
    /// The first few failures, as text.
    pub errors: Vec<String>,
    /// Slowest request, in milliseconds.
    pub max_ms: u64,
    /// Median request, in milliseconds.
    pub p50_ms: u64,
    /// Bytes of response bodies received.
    pub body_bytes: u64,
    /// The first response body.
    pub first_body: String,
}

impl LoadReport {
    /// Requests that did not get a 200.
    pub fn failed(&self) -> u32 {
        self.sent - self.ok
    }

    fn add(&mut self, r: Result<(u16, String), String>, ms: u64, lat: &mut Vec<u64>) {
        self.sent += 1;
        lat.push(ms);
        self.max_ms = self.max_ms.max(ms);
        match r {
            Ok((status, body)) => {
                *self.statuses.entry(status).or_default() += 1;
                if self.first_body.is_empty() {
                    self.first_body = body.chars().take(400).collect();
                }
                self.body_bytes += body.len() as u64;
                if status == 200 {
                    self.ok += 1;
                    if let Some(n) = body
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("name="))
                    {
                        *self.names.entry(n.to_string()).or_default() += 1;
                    }
                } else if self.errors.len() < 5 {
                    self.errors.push(format!(
                        "HTTP {status}: {}",
                        body.chars().take(200).collect::<String>()
                    ));
                }
            }
            Err(e) => {
                *self.statuses.entry(0).or_default() += 1;
                if self.errors.len() < 5 {
                    self.errors.push(e);
                }
            }
        }
    }
}

/// How much load.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where (an outbound listener of the local sidecar).
    pub target: SocketAddr,
    /// Request path.
    pub path: String,
    /// Stop after this many requests (per worker) …
    pub count: Option<u32>,
    /// … or after this long.
    pub duration: Option<Duration>,
    /// Workers: even ones keep one connection alive, odd ones connect per request.
    pub concurrency: u32,
    /// Pause between a worker's requests.
    pub pause: Duration,
}

/// Runs the load and reports what it saw.
pub fn load(spec: &LoadSpec) -> LoadReport {
    let start = Instant::now();
    let workers: Vec<_> = (0..spec.concurrency.max(1))
        .map(|w| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                let mut rep = LoadReport::default();
                let mut lat = Vec::new();
                let mut conn: Option<Conn> = None;
                let mut i = 0;
                loop {
                    if spec.count.is_some_and(|c| i >= c)
                        || spec.duration.is_some_and(|d| start.elapsed() >= d)
                    {
                        break;
                    }
                    i += 1;
                    let t = Instant::now();
                    let r = if w % 2 == 0 {
                        keepalive_get(&mut conn, spec.target, &spec.path)
                    } else {
                        let mut fresh = None;
                        keepalive_get(&mut fresh, spec.target, &spec.path)
                    };
                    rep.add(r, t.elapsed().as_millis() as u64, &mut lat);
                    if !spec.pause.is_zero() {
                        std::thread::sleep(spec.pause);
                    }
                }
                (rep, lat)
            })
        })
        .collect();
    let mut total = LoadReport::default();
    let mut lat = Vec::new();
    for w in workers {
        let Ok((r, l)) = w.join() else { continue };
        total.sent += r.sent;
        total.ok += r.ok;
        total.max_ms = total.max_ms.max(r.max_ms);
        total.body_bytes += r.body_bytes;
        if total.first_body.is_empty() {
            total.first_body = r.first_body;
        }
        for (k, v) in r.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
        for (k, v) in r.names {
            *total.names.entry(k).or_default() += v;
        }
        for e in r.errors {
            if total.errors.len() < 5 {
                total.errors.push(e);
            }
        }
        lat.extend(l);
    }
    lat.sort_unstable();
    total.p50_ms = lat.get(lat.len() / 2).copied().unwrap_or(0);
    total
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

fn keepalive_get(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, String), String> {
    let reused = conn.is_some();
    match try_get(conn, addr, path) {
        Ok(r) => Ok(r),
        Err(first) if reused => {
            // A kept-alive connection the proxy closed: one fresh attempt, as any client would.
            *conn = None;
            try_get(conn, addr, path).map_err(|e| format!("{e} (after: {first})"))
        }
        Err(e) => Err(e),
    }
}

fn try_get(conn: &mut Option<Conn>, addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    if conn.is_none() {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        *conn = Some(Conn { s, buf: Vec::new() });
    }
    let c = conn.as_mut().ok_or("no connection")?;
    let result = (|| {
        c.s.write_all(format!("GET {path} HTTP/1.1\r\nhost: conformance\r\n\r\n").as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut tmp = [0u8; 16384];
        let head_end = loop {
            if let Some(i) = find(&c.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = c.s.read(&mut tmp).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed before a response".to_string());
            }
            c.buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&c.buf[..head_end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
        let clen: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("response without content-length: {head:?}"))?;
        while c.buf.len() < head_end + clen {
            let n = c.s.read(&mut tmp).map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                return Err("connection closed mid-body".to_string());
            }
            c.buf.extend_from_slice(&tmp[..n]);
        }
        let body = String::from_utf8_lossy(&c.buf[head_end..head_end + clen]).into_owned();
        c.buf.drain(..head_end + clen);
        let close = header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        Ok((status, body, close))
    })();
    match result {
        Ok((status, body, close)) => {
            if close {
                *conn = None;
            }
            Ok((status, body))
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}
