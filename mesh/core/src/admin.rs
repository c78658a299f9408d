//! A minimal admin endpoint (`/ready`, `/healthz`, `/fips`) on plain HTTP/1.1 over loopback.
//!
//! It serves the FIPS self-report so an operator can read what the running process links and
//! negotiates. Requests are bounded (8 KiB of headers, 5 s to send them).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use distro_schema::FipsSelfCheck;

/// Serves the admin endpoint on `listener` until the process exits.
pub fn serve(listener: TcpListener, report: FipsSelfCheck) -> std::io::Result<()> {
    let body = serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let body = body.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &body);
        });
    }
    Ok(())
}

fn handle(mut stream: TcpStream, fips_body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut total = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        total += n;
        if n == 0 || line == "\r\n" || line == "\n" || total > 8192 {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/ready" | "/healthz" | "/readyz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/fips" => ("200 OK", "application/json", fips_body.to_string()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}
