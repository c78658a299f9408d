//! CycloneDX and SPDX SBOMs, embedded dependency lists, and cargo-deny policy.
//!
//! Part of the `distro-sbom` crate; see the repository README for how it fits the release flow.
//! The flow for one binary:
//!
//! 1. [`graph::resolve`] computes the exact dependency graph of the binary (its package, features
//!    and target) from `cargo tree`, `cargo metadata` and `Cargo.lock`;
//! 2. [`auditable::embed`] writes it into the binary as a cargo-auditable `.dep-v0` section;
//! 3. [`cyclonedx::for_binary`] turns graph, binary hash and FIPS evidence into a CycloneDX 1.6
//!    BOM (validated against the official schema), [`spdx::from_bom`] into SPDX 2.3;
//! 4. [`image::extend`] adds an image's other files; [`policy::check`] runs cargo-deny.
//!
//! [`auditable::extract`] reverses step 2: any shipped binary yields its BOM with no side files.
#![forbid(unsafe_code)]

pub mod auditable;
pub mod crypto;
pub mod cyclonedx;
mod error;
pub mod graph;
pub mod image;
pub mod licence;
pub mod policy;
pub mod spdx;
pub mod validate;

pub use auditable::DepList;
pub use cyclonedx::{BinaryInput, Bom};
pub use error::SbomError;
pub use graph::Graph;

/// An RFC 4122-shaped UUID (version 5 layout, RFC variant) from the SHA-256 of `content`.
pub(crate) fn uuid_from(content: &[u8]) -> String {
    let d = distro_hostio::sha256_hex(content);
    let mut b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&d[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(&b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What `distro build` does after linking a component: resolve the binary's exact graph from the
/// source tree it was built from, and embed it into the binary (`.dep-v0`). Hash the binary
/// afterwards; the returned graph feeds [`documents`].
pub fn resolve_and_embed(
    manifest_dir: &std::path::Path,
    package: &str,
    bin_name: &str,
    features: &[String],
    no_default_features: bool,
    binary: &std::path::Path,
) -> Result<Graph, SbomError> {
    let graph = graph::resolve(
        manifest_dir,
        package,
        bin_name,
        features,
        no_default_features,
    )?;
    auditable::embed(binary, &DepList::from_graph(&graph))?;
    Ok(graph)
}

/// Everything `distro sbom` produces for one binary, in one call.
#[derive(Debug, Clone)]
pub struct BinarySbom {
    /// The CycloneDX document.
    pub bom: Bom,
    /// Its JSON bytes (validated).
    pub cyclonedx_json: Vec<u8>,
    /// The SPDX 2.3 JSON bytes.
    pub spdx_json: Vec<u8>,
}

/// Builds both documents for a binary from its graph (resolved or recovered).
pub fn documents(input: &BinaryInput<'_>) -> Result<BinarySbom, SbomError> {
    let bom = cyclonedx::for_binary(input)?;
    let cyclonedx_json = bom.to_json()?;
    let spdx_json = spdx::from_bom(&bom).to_json()?;
    Ok(BinarySbom {
        bom,
        cyclonedx_json,
        spdx_json,
    })
}

#[cfg(test)]
mod tests {
    /// The serial number is a well-formed RFC 4122 UUID that depends only on the content.
    #[test]
    fn uuid_is_deterministic_and_well_formed() {
        let a = super::uuid_from(b"abc");
        assert_eq!(a, super::uuid_from(b"abc"));
        assert_ne!(a, super::uuid_from(b"abd"));
        let u = a.trim_start_matches("urn:uuid:");
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('5'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
    }
}
