//! Sealing of private values (CA keys) before they leave the process for a shared store:
//! AES-256-GCM in the FIPS module (aws-lc-rs `RandomizedNonceKey`, the nonce drawn by the
//! module), with the key's name as associated data so a sealed value cannot be moved to another
//! key. The operator supplies the 32-byte key as 64 hex digits, in a file (`--state-key-file`)
//! or in the environment (`MESH_CONTROL_STATE_KEY`); it is never written anywhere.
//!
//! A sealed value is `mcseal1:` followed by base64 of `nonce (12 bytes) || ciphertext || tag`.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::StateError;

/// The prefix of a sealed value.
pub const MAGIC: &[u8] = b"mcseal1:";

/// The environment variable that may hold the key (64 hex digits).
pub const ENV: &str = "MESH_CONTROL_STATE_KEY";

/// The operator's key for sealing values at rest.
pub struct SealKey {
    key: RandomizedNonceKey,
    /// Where it came from, for messages (never the key itself).
    pub source: String,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.source)
    }
}

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {why}")]
pub struct KeyError {
    /// The file or variable.
    pub source_name: String,
    /// What is wrong and what to do.
    pub why: String,
}

impl SealKey {
    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str, source: &str) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError {
            source_name: source.to_string(),
            why: why.to_string(),
        };
        let raw = hex::decode(text.trim()).map_err(|_| {
            bad("not hex; expected 64 hex digits (make one with `openssl rand -hex 32`)")
        })?;
        if raw.len() != 32 {
            return Err(bad(
                "expected 32 bytes (64 hex digits) for AES-256-GCM (make one with `openssl rand -hex 32`)",
            ));
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, &raw)
            .map_err(|_| bad("the FIPS module refused the key"))?;
        Ok(SealKey {
            key,
            source: source.to_string(),
        })
    }

    /// The key from `file` if given, else from [`ENV`] if set, else `None`.
    pub fn load(file: Option<&std::path::Path>) -> Result<Option<Self>, KeyError> {
        if let Some(f) = file {
            let name = f.display().to_string();
            // A sealing key other users may read is no secret: refused, as is anything but a
            // regular file (64 hex digits need no more than a few hundred bytes).
            let bytes = distro_hostio::read_regular(f, 4096, distro_hostio::Access::OwnerOnly)
                .map_err(|e| KeyError {
                    source_name: name.clone(),
                    why: format!("the state key: {}", e.why),
                })?;
            let text = String::from_utf8(bytes).map_err(|_| KeyError {
                source_name: name.clone(),
                why: "the state key is not text (expected 64 hex digits)".into(),
            })?;
            return Self::from_hex(&text, &name).map(Some);
        }
        match std::env::var(ENV) {
            Ok(v) => Self::from_hex(&v, &format!("environment variable {ENV}")).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Seals `plain` for storage under `key_name`.
    pub fn seal(&self, key_name: &str, plain: &[u8]) -> Result<Vec<u8>, StateError> {
        let mut buf = plain.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(key_name.as_bytes()), &mut buf)
            .map_err(|_| StateError::Sealed {
                path: key_name.to_string(),
                why: "AES-256-GCM sealing failed in the FIPS module".into(),
            })?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(STANDARD.encode(out).as_bytes());
        Ok(v)
    }

    /// Opens a value [`seal`](Self::seal)ed for `key_name`.
    pub fn open(&self, key_name: &str, sealed: &[u8]) -> Result<Vec<u8>, StateError> {
        let bad = |why: &str| StateError::Sealed {
            path: key_name.to_string(),
            why: why.to_string(),
        };
        let b64 = sealed
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a sealed value"))?;
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| bad("sealed value is not base64"))?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(bad("sealed value is too short"));
        }
        let (n, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| bad("bad nonce"))?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(key_name.as_bytes()), &mut buf)
            .map_err(|_| {
                bad(&format!(
                    "cannot open the sealed value with the state key from {}: wrong key, or the value was altered",
                    self.source
                ))
            })?;
        Ok(plain.to_vec())
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// A sealed value opens with the same key and name, and not with another name or key; the
    /// plaintext does not appear in it.
    #[test]
    fn seal_round_trip_and_refusals() {
        let k = SealKey::from_hex(K, "test").unwrap_or_else(|e| panic!("{e}"));
        let plain = b"-----BEGIN PRIVATE KEY-----secret";
        let s = k
            .seal("ca/1.key.pem", plain)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(is_sealed(&s));
        assert!(!s.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open("ca/1.key.pem", &s).ok().as_deref(), Some(&plain[..]));
        assert!(k.open("ca/2.key.pem", &s).is_err(), "bound to its key name");
        let other =
            SealKey::from_hex(&K.replace("00", "ff"), "other").unwrap_or_else(|e| panic!("{e}"));
        assert!(other.open("ca/1.key.pem", &s).is_err());
        let mut flipped = s.clone();
        if let Some(b) = flipped.last_mut() {
            *b = if *b == b'A' { b'B' } else { b'A' };
        }
        assert!(k.open("ca/1.key.pem", &flipped).is_err());
    }

    /// Keys of the wrong length or not hex are refused with a message that says what to do.
    #[test]
    fn bad_keys_are_refused() {
        let e = SealKey::from_hex("abcd", "f").err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("64 hex digits")));
        assert!(SealKey::from_hex("zz", "f").is_err());
    }
}
