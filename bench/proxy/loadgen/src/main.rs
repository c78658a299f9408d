//! Benchmark helpers for `bench/proxy/run.sh`, with no dependencies:
//!
//! - `loadgen rate ADDR PATH RATE SECONDS CONNECTIONS`: an open-loop, constant-rate HTTP/1.1
//!   client (the idea of wrk2). Each connection sends on a fixed schedule; latency is measured
//!   from the *intended* send time, so a stalled server cannot hide its queueing delay
//!   (coordinated omission). Prints one JSON object with percentiles in microseconds.
//! - `loadgen serve ADDR`: a tiny keep-alive HTTP/1.1 server answering `200 ok`.
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

fn worker(
    addr: SocketAddr,
    path: String,
    interval: Duration,
    start: Instant,
    end: Instant,
) -> Worker {
    let mut w = Worker {
        latencies_us: Vec::new(),
        errors: 0,
    };
    let req = format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n");
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::new();
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
            match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    buf.clear();
                    conn = Some(s);
                }
                Err(_) => {
                    w.errors += 1;
                    continue;
                }
            }
        }
        let Some(s) = conn.as_mut() else { continue };
        let ok =
            s.write_all(req.as_bytes()).is_ok() && matches!(read_message(s, &mut buf), Ok(200));
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
    let [addr, path, rate, secs, conns] = args else {
        eprintln!("usage: loadgen rate ADDR PATH RATE SECONDS CONNECTIONS");
        return ExitCode::from(2);
    };
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
            let path = path.clone();
            // Stagger the connections evenly over one interval.
            let offset = interval.mul_f64(f64::from(k) / f64::from(conns));
            std::thread::spawn(move || worker(addr, path, interval, start + offset, end))
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
                "usage: loadgen serve ADDR | loadgen rate ADDR PATH RATE SECONDS CONNECTIONS"
            );
            ExitCode::from(2)
        }
    }
}
