//! The one sha256 helper, computed by AWS-LC (the FIPS module in every release build).
//!
//! Hex is lower case; OCI notation is `sha256:<hex>`. Readers and files are streamed in 64 KiB
//! chunks, never held in memory.

use std::io::Read;
use std::path::Path;

use aws_lc_rs::digest::{Context, SHA256};

/// Prefix of a sha256 digest in OCI notation.
pub const OCI_PREFIX: &str = "sha256:";

/// An incremental sha256.
pub struct Sha256(Context);

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    /// An empty hash.
    pub fn new() -> Self {
        Sha256(Context::new(&SHA256))
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The lower-case hex digest.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish().as_ref())
    }

    /// The digest in OCI notation (`sha256:<hex>`).
    pub fn finish_oci(self) -> String {
        oci(&self.finish_hex())
    }
}

impl std::io::Write for Sha256 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&SHA256, bytes).as_ref())
}

/// sha256 of `bytes` in OCI notation (`sha256:<hex>`).
pub fn sha256_oci(bytes: &[u8]) -> String {
    oci(&sha256_hex(bytes))
}

/// `hex` in OCI notation (`sha256:<hex>`).
pub fn oci(hex: &str) -> String {
    format!("{OCI_PREFIX}{hex}")
}

/// Hex sha256 of what `reader` yields, and how many bytes that was, reading at most `limit`
/// bytes: a longer stream is cut there, so a caller that passes `size + 1` sees a count that
/// does not match and can refuse the content.
pub fn sha256_reader(reader: impl Read, limit: u64) -> std::io::Result<(String, u64)> {
    let mut hash = Sha256::new();
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
        hash.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hash.finish_hex(), n))
}

/// Hex sha256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let f = std::fs::File::open(path)?;
    sha256_reader(f, u64::MAX).map(|(hex, _)| hex)
}
