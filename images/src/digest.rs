//! sha256 digests in OCI notation (`sha256:<hex>`): the hashing is [`distro_hostio::digest`]'s
//! (AWS-LC); this module adds the OCI rules (shape of a digest, cosign tags, checks).

use crate::error::{Error, Result};

pub use distro_hostio::digest::sha256_oci as sha256;
pub use distro_hostio::sha256_hex;

/// `sha256:<hex>` of what `reader` yields, streamed (never held in memory), and the number of
/// bytes. Reads at most `limit` bytes: a stream longer than that is cut there, so a caller that
/// passes `size + 1` sees a length that does not match and refuses the content.
pub fn sha256_stream(reader: impl std::io::Read, limit: u64) -> std::io::Result<(String, u64)> {
    let (hex, n) = distro_hostio::sha256_reader(reader, limit)?;
    Ok((distro_hostio::digest::oci(&hex), n))
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
