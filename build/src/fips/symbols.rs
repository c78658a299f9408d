//! What the final binary's symbol table and bytes say about the crypto it carries.

use std::collections::BTreeMap;
use std::path::Path;

use distro_schema::{ForbiddenCrypto, SymbolScan};
use object::{Object, ObjectSymbol};

use crate::BuildError;

/// Prefix of the AWS-LC FIPS module's symbols (`aws_lc_fips_0_13_17_...`).
const FIPS_PREFIX: &str = "aws_lc_fips_";

/// Unprefixed OpenSSL/BoringSSL entry points: AWS-LC (FIPS or not) prefixes all of its symbols,
/// so any of these unprefixed means another libcrypto/libssl is linked.
const UNPREFIXED_LIBCRYPTO: &[&str] = &[
    "SSL_CTX_new",
    "SSL_new",
    "SSL_connect",
    "EVP_EncryptInit_ex",
    "EVP_DigestInit_ex",
    "EVP_PKEY_new",
    "OPENSSL_init_crypto",
    "OPENSSL_init_ssl",
    "RAND_bytes",
];

/// Rust crates (as they appear in demangled paths) that implement cryptography outside the
/// FIPS module, with the name reported for them.
const RUST_CRYPTO_CRATES: &[(&str, &str)] = &[
    ("ring::", "ring"),
    ("boring::", "BoringSSL (boring)"),
    ("boring_sys::", "BoringSSL (boring)"),
    ("openssl::", "OpenSSL (openssl crate)"),
    ("openssl_sys::", "OpenSSL (openssl crate)"),
    ("sha2::", "RustCrypto sha2"),
    ("sha1::", "RustCrypto sha1"),
    ("sha1_smol::", "sha1_smol"),
    ("md5::", "md5"),
    ("aes::", "RustCrypto aes"),
    ("aes_gcm::", "RustCrypto aes-gcm"),
    ("chacha20::", "RustCrypto chacha20"),
    ("chacha20poly1305::", "RustCrypto chacha20poly1305"),
    ("p256::", "RustCrypto p256"),
    ("p384::", "RustCrypto p384"),
    ("ecdsa::", "RustCrypto ecdsa"),
    ("x25519_dalek::", "x25519-dalek"),
    ("ed25519_dalek::", "ed25519-dalek"),
    ("curve25519_dalek::", "curve25519-dalek"),
    ("rand_chacha::", "rand_chacha (non-approved DRBG)"),
];

fn classify(name: &str) -> Option<&'static str> {
    if let Some(rest) = name.strip_prefix("aws_lc_") {
        // aws_lc_0_45_0_... is the non-FIPS aws-lc-sys build.
        if rest.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return Some("AWS-LC (non-FIPS aws-lc-sys)");
        }
    }
    if name.starts_with("ring_core_") {
        return Some("ring");
    }
    if UNPREFIXED_LIBCRYPTO.contains(&name) {
        return Some("OpenSSL/BoringSSL libcrypto (unprefixed)");
    }
    if name == "BORINGSSL_self_test" {
        return Some("BoringSSL (unprefixed)");
    }
    if name.starts_with("_ZN") || name.starts_with("_R") {
        let demangled = format!("{:#}", rustc_demangle::demangle(name));
        let path = demangled.trim_start_matches('<');
        for (needle, label) in RUST_CRYPTO_CRATES {
            if path.starts_with(needle) || demangled.contains(&format!("<{needle}")) {
                return Some(label);
            }
        }
    }
    None
}

/// Reads the symbol table and the dynamic dependencies of an ELF binary.
pub fn scan(path: &Path) -> Result<SymbolScan, BuildError> {
    let data = std::fs::read(path).map_err(|e| BuildError::Binary {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    scan_bytes(path, &data)
}

/// As [`scan`], on bytes already read.
pub fn scan_bytes(path: &Path, data: &[u8]) -> Result<SymbolScan, BuildError> {
    let bin_err = |message: String| BuildError::Binary {
        path: path.to_path_buf(),
        message,
    };
    let file =
        object::File::parse(data).map_err(|e| bin_err(format!("not an object file: {e}")))?;
    let mut total = 0usize;
    let mut fips = 0usize;
    let mut fips_prefix: Option<String> = None;
    let mut forbidden: BTreeMap<&'static str, (usize, Vec<String>)> = BTreeMap::new();
    let symbols = file.symbols().chain(file.dynamic_symbols());
    for sym in symbols {
        let Ok(name) = sym.name() else { continue };
        if name.is_empty() {
            continue;
        }
        total += 1;
        if let Some(rest) = name.strip_prefix(FIPS_PREFIX) {
            fips += 1;
            if fips_prefix.is_none() {
                // aws_lc_fips_0_13_17_<function>: the prefix ends after the third number.
                let mut end = FIPS_PREFIX.len();
                let mut numbers = 0;
                for part in rest.split('_') {
                    if numbers < 3 && !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                        end += part.len() + 1;
                        numbers += 1;
                    } else {
                        break;
                    }
                }
                if numbers == 3 {
                    fips_prefix = Some(name[..end].to_string());
                }
            }
            continue;
        }
        if let Some(label) = classify(name) {
            let entry = forbidden.entry(label).or_default();
            entry.0 += 1;
            if entry.1.len() < 5 {
                entry
                    .1
                    .push(format!("{:#}", rustc_demangle::demangle(name)));
            }
        }
    }
    if total == 0 {
        return Err(bin_err(
            "the binary has no symbol table, so its crypto cannot be checked; do not strip symbols from FIPS builds (profile.release.strip must not be \"symbols\")".into(),
        ));
    }
    let needed_libraries = needed_libraries(data);
    for lib in &needed_libraries {
        if lib.starts_with("libssl.") || lib.starts_with("libcrypto.") {
            let entry = forbidden.entry("OpenSSL (dynamically linked)").or_default();
            entry.0 += 1;
            entry.1.push(lib.clone());
        }
    }
    Ok(SymbolScan {
        total_symbols: total,
        fips_module_symbols: fips,
        fips_module_prefix: fips_prefix,
        needed_libraries,
        forbidden: forbidden
            .into_iter()
            .map(|(implementation, (symbols, examples))| ForbiddenCrypto {
                implementation: implementation.to_string(),
                symbols,
                examples,
            })
            .collect(),
    })
}

/// How the binary links the FIPS module, from its own tables: static when the module's
/// `aws_lc_fips_*` symbols are defined in the executable and no shared libcrypto is needed;
/// dynamic when they are undefined imports and a libcrypto (AWS-LC's shared FIPS build is
/// `libcrypto.so`) is among its DT_NEEDED libraries.
pub fn module_linkage(data: &[u8], needed_libraries: &[String]) -> distro_schema::ModuleLinkage {
    use distro_schema::ModuleLinkage;
    let Ok(file) = object::File::parse(data) else {
        return ModuleLinkage::Unknown;
    };
    let (mut defined, mut imported) = (0usize, 0usize);
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.name().is_ok_and(|n| n.starts_with(FIPS_PREFIX)) {
            if sym.is_undefined() {
                imported += 1;
            } else {
                defined += 1;
            }
        }
    }
    let shared_crypto = needed_libraries
        .iter()
        .any(|l| l.starts_with("libcrypto") || l.contains("aws-lc") || l.contains("aws_lc"));
    match (defined > 0, imported > 0 || shared_crypto) {
        (true, false) => ModuleLinkage::Static,
        (false, true) if shared_crypto => ModuleLinkage::Dynamic,
        _ => ModuleLinkage::Unknown,
    }
}

/// DT_NEEDED entries of an ELF file (empty for other formats or static binaries).
fn needed_libraries(data: &[u8]) -> Vec<String> {
    use object::read::elf::{Dyn, FileHeader, SectionHeader};
    let Ok(kind) = object::FileKind::parse(data) else {
        return Vec::new();
    };
    if kind != object::FileKind::Elf64 {
        return Vec::new();
    }
    let Ok(header) = object::elf::FileHeader64::<object::Endianness>::parse(data) else {
        return Vec::new();
    };
    let Ok(endian) = header.endian() else {
        return Vec::new();
    };
    let Ok(sections) = header.sections(endian, data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for section in sections.iter() {
        let Ok(Some((entries, link))) = section.dynamic(endian, data) else {
            continue;
        };
        let Ok(strings) = sections.strings(endian, data, link) else {
            continue;
        };
        for entry in entries {
            if entry.tag(endian) == object::elf::DT_NEEDED {
                if let Ok(name) = entry.string(endian, strings) {
                    out.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }
    out
}

/// The AWS-LC FIPS version string compiled into the binary (`AWS-LC FIPS 3.6.0`), if any.
pub fn module_version_string(data: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"AWS-LC FIPS ";
    let mut start = 0;
    while let Some(pos) = find(&data[start..], NEEDLE) {
        let at = start + pos + NEEDLE.len();
        let version: Vec<u8> = data[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .copied()
            .collect();
        if version.first().is_some_and(u8::is_ascii_digit) {
            return Some(format!(
                "AWS-LC FIPS {}",
                String::from_utf8_lossy(&version).trim_end_matches('.')
            ));
        }
        start = at;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Symbols of other crypto implementations are recognised; FIPS-prefixed ones are not.
    #[test]
    fn classifies_foreign_crypto() {
        assert_eq!(
            classify("aws_lc_0_45_0_EVP_EncryptInit_ex"),
            Some("AWS-LC (non-FIPS aws-lc-sys)")
        );
        assert_eq!(
            classify("ring_core_0_17_14__x25519_ge_scalarmult_base"),
            Some("ring")
        );
        assert_eq!(
            classify("SSL_CTX_new"),
            Some("OpenSSL/BoringSSL libcrypto (unprefixed)")
        );
        assert_eq!(
            classify("_ZN4sha26sha2566Sha2568compress17h0123456789abcdefE"),
            Some("RustCrypto sha2")
        );
        assert_eq!(classify("aws_lc_fips_0_13_17_EVP_EncryptInit_ex"), None);
        assert_eq!(
            classify("_ZN6rustls6client4conn3new17h0123456789abcdefE"),
            None
        );
    }

    /// This test executable links aws-lc-rs' FIPS module the way the shipped binaries do
    /// (statically, symbols defined in the executable, no shared libcrypto): read as `static`.
    /// Bytes that are no object file say `unknown`, so no certificate is claimed for them.
    #[test]
    fn module_linkage_is_read_from_the_binary() {
        // Make sure the module is referenced (and so linked) by this executable.
        assert_eq!(distro_hostio::sha256_hex(b"x").len(), 64);
        let exe = std::env::current_exe().unwrap_or_default();
        let data = std::fs::read(&exe).unwrap_or_default();
        let needed = needed_libraries(&data);
        assert_eq!(
            module_linkage(&data, &needed),
            distro_schema::ModuleLinkage::Static,
            "{} (needs {needed:?})",
            exe.display()
        );
        assert_eq!(
            module_linkage(b"not an ELF file", &[]),
            distro_schema::ModuleLinkage::Unknown
        );
    }

    /// The version string is found among other bytes.
    #[test]
    fn finds_version_string() {
        let data = b"\0\0AWS-LC FIPS \0junk AWS-LC FIPS 3.6.0\0more";
        assert_eq!(
            module_version_string(data).as_deref(),
            Some("AWS-LC FIPS 3.6.0")
        );
        assert_eq!(module_version_string(b"AWS-LC 1.2.3"), None);
    }
}
