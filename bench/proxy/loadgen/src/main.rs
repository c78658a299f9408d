//! Benchmark helpers for `bench/proxy/run.sh`, with no dependencies:
//!
//! - `loadgen rate ADDR PATH RATE SECONDS CONNECTIONS [--h2] [--body BYTES]`: an open-loop,
//!   constant-rate client (the idea of wrk2). Each connection sends on a fixed schedule; latency
//!   is measured from the *intended* send time, so a stalled server cannot hide its queueing
//!   delay (coordinated omission). HTTP/1.1 keep-alive by default; `--h2` speaks HTTP/2 with
//!   prior knowledge (cleartext, one stream at a time per connection, flow control honoured);
//!   `--body N` sends `POST` with an N-byte body instead of `GET`. Prints one JSON object with
//!   percentiles in microseconds.
//! - `loadgen serve ADDR`: a tiny keep-alive HTTP/1.1 server answering `200 ok` (it reads and
//!   discards request bodies).
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn content_length(head: &[u8]) -> usize {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Reads one response (or request) whose body length is given by content-length.
fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let mut tmp = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let status = String::from_utf8_lossy(&buf[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let total = head_end + content_length(&buf[..head_end]);
    while buf.len() < total {
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed mid-body"));
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    buf.drain(..total);
    Ok(status)
}

fn serve(addr: &str) -> ExitCode {
    let l = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("loadgen serve: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut buf = Vec::new();
            while read_message(&mut s, &mut buf).is_ok() {
                if s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n",
                )
                .is_err()
                {
                    return;
                }
            }
        });
    }
    ExitCode::SUCCESS
}

struct Worker {
    latencies_us: Vec<u64>,
    errors: u64,
}

/// What one connection sends.
#[derive(Clone)]
struct Load {
    path: String,
    body: usize,
    h2: bool,
}

/// One client connection, HTTP/1.1 or HTTP/2.
enum Conn {
    H1(TcpStream, Vec<u8>),
    H2(H2),
}

impl Conn {
    fn open(addr: SocketAddr, load: &Load) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        if load.h2 {
            Ok(Conn::H2(H2::handshake(s)?))
        } else {
            Ok(Conn::H1(s, Vec::new()))
        }
    }

    /// Sends one request and waits for the whole response; true on a 200.
    fn exchange(&mut self, load: &Load, req: &[u8], body: &[u8]) -> bool {
        match self {
            Conn::H1(s, buf) => {
                s.write_all(req).is_ok()
                    && s.write_all(body).is_ok()
                    && matches!(read_message(s, buf), Ok(200))
            }
            Conn::H2(h) => matches!(h.request(&load.path, body), Ok(200)),
        }
    }
}

/// A minimal HTTP/2 client connection (RFC 9113): prior knowledge, one stream at a time.
struct H2 {
    s: TcpStream,
    next_stream: u32,
    /// What the server lets us send, connection-wide and on a new stream.
    conn_window: i64,
    stream_window_init: i64,
    max_frame: usize,
    rbuf: Vec<u8>,
}

const H2_MAX_WINDOW: u32 = (1 << 31) - 1;

impl H2 {
    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> std::io::Result<()> {
        let len = payload.len();
        let mut f = Vec::with_capacity(9 + len);
        f.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.s.write_all(&f)
    }

    fn handshake(s: TcpStream) -> std::io::Result<H2> {
        let mut h = H2 {
            s,
            next_stream: 1,
            conn_window: 65_535,
            stream_window_init: 65_535,
            max_frame: 16_384,
            rbuf: Vec::new(),
        };
        h.s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
        // ENABLE_PUSH = 0, INITIAL_WINDOW_SIZE = max: responses never wait for us.
        let mut settings = Vec::new();
        settings.extend_from_slice(&[0, 2, 0, 0, 0, 0]);
        settings.extend_from_slice(&[0, 4]);
        settings.extend_from_slice(&H2_MAX_WINDOW.to_be_bytes());
        h.frame(4, 0, 0, &settings)?;
        h.frame(8, 0, 0, &(H2_MAX_WINDOW - 65_535).to_be_bytes())?;
        Ok(h)
    }

    /// Reads one frame: (type, flags, stream, payload).
    fn read_frame(&mut self) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
        let mut tmp = [0u8; 16384];
        loop {
            if self.rbuf.len() >= 9 {
                let len = (usize::from(self.rbuf[0]) << 16)
                    | (usize::from(self.rbuf[1]) << 8)
                    | usize::from(self.rbuf[2]);
                if self.rbuf.len() >= 9 + len {
                    let kind = self.rbuf[3];
                    let flags = self.rbuf[4];
                    let stream = u32::from_be_bytes([
                        self.rbuf[5] & 0x7f,
                        self.rbuf[6],
                        self.rbuf[7],
                        self.rbuf[8],
                    ]);
                    let payload = self.rbuf[9..9 + len].to_vec();
                    self.rbuf.drain(..9 + len);
                    return Ok((kind, flags, stream, payload));
                }
            }
            let n = self.s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            self.rbuf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Handles a connection-level frame; returns an error for GOAWAY.
    fn control(&mut self, kind: u8, flags: u8, stream: u32, p: &[u8], sw: &mut i64) -> std::io::Result<()> {
        match kind {
            4 if flags & 1 == 0 => {
                for c in p.chunks_exact(6) {
                    let v = u32::from_be_bytes([c[2], c[3], c[4], c[5]]);
                    match u16::from_be_bytes([c[0], c[1]]) {
                        4 => {
                            *sw += i64::from(v) - self.stream_window_init;
                            self.stream_window_init = i64::from(v);
                        }
                        5 => self.max_frame = v as usize,
                        _ => {}
                    }
                }
                self.frame(4, 1, 0, &[])?;
            }
            6 if flags & 1 == 0 => self.frame(6, 1, 0, p)?,
            8 if p.len() == 4 => {
                let inc = i64::from(u32::from_be_bytes([p[0] & 0x7f, p[1], p[2], p[3]]));
                if stream == 0 {
                    self.conn_window += inc;
                } else if stream == self.next_stream - 2 {
                    *sw += inc;
                }
            }
            7 => return Err(std::io::Error::other("GOAWAY")),
            _ => {}
        }
        Ok(())
    }

    fn request(&mut self, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let id = self.next_stream;
        self.next_stream += 2;
        // HPACK, no Huffman, nothing indexed: :method GET (2) / POST (3), :scheme http (6),
        // :path and :authority as literals with indexed names (4, 1), content-length (28).
        let mut hb = vec![if body.is_empty() { 0x82 } else { 0x83 }, 0x86, 0x04];
        hb.push(path.len() as u8);
        hb.extend_from_slice(path.as_bytes());
        hb.extend_from_slice(&[0x01, 5]);
        hb.extend_from_slice(b"bench");
        if !body.is_empty() {
            let v = body.len().to_string();
            hb.extend_from_slice(&[0x0f, 0x0d, v.len() as u8]);
            hb.extend_from_slice(v.as_bytes());
        }
        let end_stream = if body.is_empty() { 1 } else { 0 };
        self.frame(1, 4 | end_stream, id, &hb)?;
        let mut sw = self.stream_window_init;
        let mut sent = 0;
        while sent < body.len() {
            let room = sw.min(self.conn_window).min(self.max_frame as i64);
            if room <= 0 {
                let (k, f, st, p) = self.read_frame()?;
                self.control(k, f, st, &p, &mut sw)?;
                continue;
            }
            let n = (body.len() - sent).min(room as usize);
            let last = sent + n == body.len();
            self.frame(0, if last { 1 } else { 0 }, id, &body[sent..sent + n])?;
            sent += n;
            sw -= n as i64;
            self.conn_window -= n as i64;
        }
        let mut status = 0;
        loop {
            let (k, f, st, p) = self.read_frame()?;
            if st == id {
                match k {
                    1 => {
                        let mut i = 0;
                        if f & 0x8 != 0 {
                            i += 1;
                        }
                        if f & 0x20 != 0 {
                            i += 5;
                        }
                        // :status from the static table (8..14), as servers send it.
                        status = match p.get(i) {
                            Some(0x88) => 200,
                            Some(0x89) => 204,
                            Some(0x8a) => 206,
                            Some(0x8b) => 304,
                            Some(0x8c) => 400,
                            Some(0x8d) => 404,
                            Some(0x8e) => 500,
                            _ => 0,
                        };
                    }
                    3 => return Err(std::io::Error::other("RST_STREAM")),
                    _ => {}
                }
                if f & 1 != 0 && (k == 0 || k == 1) {
                    return Ok(status);
                }
            } else {
                self.control(k, f, st, &p, &mut sw)?;
            }
        }
    }
}

fn worker(
    addr: SocketAddr,
    load: Load,
    interval: Duration,
    start: Instant,
    end: Instant,
) -> Worker {
    let mut w = Worker {
        latencies_us: Vec::new(),
        errors: 0,
    };
    let req = if load.body == 0 {
        format!("GET {} HTTP/1.1\r\nhost: bench\r\n\r\n", load.path)
    } else {
        format!(
            "POST {} HTTP/1.1\r\nhost: bench\r\ncontent-length: {}\r\n\r\n",
            load.path, load.body
        )
    };
    let body = vec![b'x'; load.body];
    let mut conn: Option<Conn> = None;
    let mut i: u32 = 0;
    loop {
        let intended = start + interval * i;
        if intended >= end {
            break;
        }
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        i += 1;
        if conn.is_none() {
            match Conn::open(addr, &load) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    w.errors += 1;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let ok = c.exchange(&load, req.as_bytes(), &body);
        if ok {
            w.latencies_us.push(intended.elapsed().as_micros() as u64);
        } else {
            w.errors += 1;
            conn = None;
        }
    }
    w
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rate(args: &[String]) -> ExitCode {
    let (fixed, opts) = args.split_at(args.len().min(5));
    let [addr, path, rate, secs, conns] = fixed else {
        eprintln!("usage: loadgen rate ADDR PATH RATE SECONDS CONNECTIONS [--h2] [--body BYTES]");
        return ExitCode::from(2);
    };
    let mut load = Load {
        path: path.clone(),
        body: 0,
        h2: false,
    };
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        match (o.as_str(), it.clone().next()) {
            ("--h2", _) => load.h2 = true,
            ("--body", Some(n)) if n.parse::<usize>().is_ok() => {
                load.body = n.parse().unwrap_or(0);
                it.next();
            }
            _ => {
                eprintln!("loadgen rate: unknown option {o:?}");
                return ExitCode::from(2);
            }
        }
    }
    let (Ok(addr), Ok(rate), Ok(secs), Ok(conns)) = (
        addr.parse::<SocketAddr>(),
        rate.parse::<f64>(),
        secs.parse::<f64>(),
        conns.parse::<u32>(),
    ) else {
        eprintln!("loadgen rate: bad arguments {args:?}");
        return ExitCode::from(2);
    };
    let conns = conns.max(1);
    let interval = Duration::from_secs_f64(f64::from(conns) / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..conns)
        .map(|k| {
            let load = load.clone();
            // Stagger the connections evenly over one interval.
            let offset = interval.mul_f64(f64::from(k) / f64::from(conns));
            std::thread::spawn(move || worker(addr, load, interval, start + offset, end))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        if let Ok(w) = h.join() {
            all.extend(w.latencies_us);
            errors += w.errors;
        }
    }
    all.sort_unstable();
    let achieved = all.len() as f64 / secs;
    println!(
        "{{\"target_rps\":{rate},\"achieved_rps\":{achieved:.1},\"ok\":{},\"errors\":{errors},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        all.len(),
        pct(&all, 0.50),
        pct(&all, 0.90),
        pct(&all, 0.99),
        pct(&all, 0.999),
        all.last().copied().unwrap_or(0)
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() == 2 => serve(&args[1]),
        Some("rate") => rate(&args[1..]),
        _ => {
            eprintln!(
                "usage: loadgen serve ADDR | loadgen rate ADDR PATH RATE SECONDS CONNECTIONS [--h2] [--body BYTES]"
            );
            ExitCode::from(2)
        }
    }
}
