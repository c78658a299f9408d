//! sha256 against known vectors (FIPS 180-2), streamed and whole, hex and OCI notation.
#![allow(clippy::unwrap_used)]

use distro_hostio::digest::{oci, OCI_PREFIX};
use distro_hostio::{sha256_file, sha256_hex, sha256_oci, sha256_reader, Sha256};

const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// sha256 of one million `a` (FIPS 180-2, appendix B.3).
const MILLION_A: &str = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

/// Bytes, hex and OCI notation match the published vectors.
#[test]
fn known_vectors() {
    assert_eq!(sha256_hex(b"abc"), ABC);
    assert_eq!(sha256_hex(b""), EMPTY);
    assert_eq!(sha256_oci(b"abc"), format!("sha256:{ABC}"));
    assert_eq!(oci(ABC), format!("{OCI_PREFIX}{ABC}"));
}

/// Streaming over a reader longer than the buffer gives the same digest and the byte count;
/// a limit cuts the stream there.
#[test]
fn reader_is_streamed_and_limited() {
    let data = vec![b'a'; 1_000_000];
    let (hex, n) = sha256_reader(&data[..], u64::MAX).unwrap();
    assert_eq!((hex.as_str(), n), (MILLION_A, 1_000_000));
    let (hex, n) = sha256_reader(&data[..], 3).unwrap();
    assert_eq!(n, 3);
    assert_eq!(hex, sha256_hex(b"aaa"));
    let mut h = Sha256::new();
    for chunk in data.chunks(7777) {
        h.update(chunk);
    }
    assert_eq!(h.finish_oci(), format!("sha256:{MILLION_A}"));
}

/// A file is hashed by content; a missing one is an I/O error.
#[test]
fn file_digest() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(sha256_file(&p).unwrap(), ABC);
    assert!(sha256_file(&d.path().join("missing")).is_err());
}
