//! sha256 digests in OCI notation (`sha256:<hex>`), computed by aws-lc-rs.

use aws_lc_rs::digest;

use crate::error::{Error, Result};

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

/// sha256 of what `reader` yields, streamed (never held in memory), and the number of bytes.
/// Reads at most `limit` bytes: a stream longer than that is cut there, so a caller that
/// passes `size + 1` sees a length that does not match and refuses the content.
pub fn sha256_stream(reader: impl std::io::Read, limit: u64) -> std::io::Result<(String, u64)> {
    use std::io::Read as _;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut r = reader.take(limit);
    let mut buf = vec![0u8; 64 * 1024];
    let mut n: u64 = 0;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ctx.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex::encode(ctx.finish().as_ref())), n))
}

/// The hex part of a `sha256:<hex>` digest, checked for shape.
pub fn hex_part(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(h)
        }
        _ => Err(Error::invalid(
            format!("digest `{digest}`"),
            "expected sha256:<64 lower-case hex digits>",
        )),
    }
}

/// Checks that `data` hashes to `expected`.
pub fn check(what: &str, expected: &str, data: &[u8]) -> Result<()> {
    let actual = sha256(data);
    if actual == expected {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// The cosign tag of an image digest with a suffix (`sha256-<hex>.sig`, `sha256-<hex>.att`).
pub fn cosign_tag(digest: &str, suffix: &str) -> Result<String> {
    Ok(format!("sha256-{}.{suffix}", hex_part(digest)?))
}
