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
