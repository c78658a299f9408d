//! ECDSA P-256 signing keys: generated and used by aws-lc-rs in FIPS mode, stored as PKCS#8 PEM
//! (mode 0600) with an SPKI PEM public key. cosign's encrypted `cosign.key` is read too: its
//! scrypt + NaCl secretbox wrapping is undone with small RustCrypto crates (used only for that
//! file format), and the PKCS#8 key inside is then handed to aws-lc-rs like any other.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use base64::Engine as _;
use distro_hostio::StagedFile;
use zeroize::Zeroizing;

use crate::digest;
use crate::error::{Error, Result};

/// PEM label of cosign's encrypted key (current).
pub const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label of cosign's encrypted key (older releases).
pub const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// Largest key file read (a PEM key is a few hundred bytes).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Fails unless the AWS-LC module is in FIPS mode.
pub fn require_fips() -> Result<()> {
    aws_lc_rs::try_fips_mode().map_err(|e| Error::NotFips(e.to_string()))
}

/// A private key able to sign.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(keyid {})", self.keyid())
    }
}

impl SigningKey {
    /// A fresh key from the FIPS module's DRBG.
    pub fn generate() -> Result<Self> {
        require_fips()?;
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|_| Error::Key {
                what: "generation".into(),
                reason: "the module could not generate a P-256 key".into(),
            })?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self> {
        let spki_der = pair
            .public_key()
            .as_der()
            .map_err(|_| Error::Key {
                what: "public key".into(),
                reason: "could not encode SPKI".into(),
            })?
            .as_ref()
            .to_vec();
        Ok(SigningKey { pair, spki_der })
    }

    /// A key from PKCS#8 DER.
    pub fn from_pkcs8(what: &str, der: &[u8]) -> Result<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).map_err(|e| {
            Error::Key {
                what: what.into(),
                reason: format!("not an ECDSA P-256 PKCS#8 key: {e}"),
            }
        })?;
        Self::from_pair(pair)
    }

    /// Reads a private key file: PKCS#8 PEM (`PRIVATE KEY`) as written by `distro keygen`, or a
    /// cosign encrypted key (needs `password`). A file that group or others may read or write
    /// is refused, naming `chmod 600 FILE`.
    pub fn load(path: &Path, password: Option<&[u8]>) -> Result<Self> {
        let what = path.display().to_string();
        // A private key others may read is refused (as ssh does), before it is read.
        let text = Zeroizing::new(
            distro_hostio::read_regular(path, MAX_KEY_FILE, distro_hostio::Access::OwnerOnly)
                .map_err(|e| Error::Key {
                    what: what.clone(),
                    reason: e.why,
                })?,
        );
        Self::from_pem(&what, &text, password)
    }

    /// Parses the content of a private key file (see [`SigningKey::load`]); `what` names it in
    /// errors.
    pub fn from_pem(what: &str, text: &[u8], password: Option<&[u8]>) -> Result<Self> {
        let what = what.to_string();
        let block = pem::parse(text).map_err(|e| Error::Key {
            what: what.clone(),
            reason: format!("not PEM: {e}"),
        })?;
        match block.tag() {
            "PRIVATE KEY" => Self::from_pkcs8(&what, block.contents()),
            SIGSTORE_LABEL | COSIGN_LABEL => {
                let password = password.ok_or_else(|| Error::Key {
                    what: what.clone(),
                    reason: "a cosign encrypted key needs its password in the COSIGN_PASSWORD environment variable".into(),
                })?;
                let der = decrypt_cosign(&what, block.contents(), password)?;
                Self::from_pkcs8(&what, &der)
            }
            other => Err(Error::Key {
                what,
                reason: format!(
                    "PEM label `{other}` is not supported; expected PRIVATE KEY (PKCS#8), {SIGSTORE_LABEL} or {COSIGN_LABEL}"
                ),
            }),
        }
    }

    /// ASN.1 DER ECDSA-P256-SHA256 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        self.pair
            .sign(&SystemRandom::new(), msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::Key {
                what: "signing".into(),
                reason: "the module refused to sign".into(),
            })
    }

    /// The public key.
    pub fn public(&self) -> VerifyingKey {
        VerifyingKey {
            spki_der: self.spki_der.clone(),
        }
    }

    /// Key id: hex sha256 of the SPKI DER.
    pub fn keyid(&self) -> String {
        digest::sha256_hex(&self.spki_der)
    }

    /// PKCS#8 PEM of the private key.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let doc = self.pair.to_pkcs8v1().map_err(|_| Error::Key {
            what: "export".into(),
            reason: "could not encode PKCS#8".into(),
        })?;
        Ok(Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            doc.as_ref().to_vec(),
        ))))
    }
}

/// A public key able to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    spki_der: Vec<u8>,
}

impl VerifyingKey {
    /// Reads an SPKI PEM (`PUBLIC KEY`) file such as `distro keygen`'s or `cosign.pub`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = distro_hostio::read_bounded(path, distro_hostio::Symlinks::Follow, MAX_KEY_FILE)
            .map_err(|e| Error::io("reading public key", path, e))?;
        Self::from_pem(&path.display().to_string(), &text)
    }

    /// Parses an SPKI PEM.
    pub fn from_pem(what: &str, text: &[u8]) -> Result<Self> {
        let block = pem::parse(text).map_err(|e| Error::Key {
            what: what.into(),
            reason: format!("not PEM: {e}"),
        })?;
        if block.tag() != "PUBLIC KEY" {
            return Err(Error::Key {
                what: what.into(),
                reason: format!("PEM label `{}` is not PUBLIC KEY", block.tag()),
            });
        }
        let key = VerifyingKey {
            spki_der: block.contents().to_vec(),
        };
        // Reject keys that are not P-256 now rather than at the first verification.
        if aws_lc_rs::signature::ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.spki_der)
            .is_err()
        {
            return Err(Error::Key {
                what: what.into(),
                reason: "not an ECDSA P-256 public key".into(),
            });
        }
        Ok(key)
    }

    /// Whether `sig` (ASN.1 DER) is a valid ECDSA-P256-SHA256 signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.spki_der)
            .verify(msg, sig)
            .is_ok()
    }

    /// SPKI PEM.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.spki_der.clone()))
    }

    /// Key id: hex sha256 of the SPKI DER.
    pub fn keyid(&self) -> String {
        digest::sha256_hex(&self.spki_der)
    }
}

/// Writes a key pair: the private key with mode 0600 (created that way, never widened), the
/// public key 0644. Refuses to overwrite unless `force`, and refuses one path for both (the same
/// file after resolving `.`/`..` and symbolic links, or two hard links to one file).
///
/// Both keys are first written in full to temporary files beside their targets, then renamed
/// into place; if the second rename fails the first is undone, so the pair on disk is either the
/// old one or the new one, never half of each. On any failure no temporary file is left.
pub fn write_key_pair(key: &SigningKey, private: &Path, public: &Path, force: bool) -> Result<()> {
    if same_file(private, public) {
        return Err(Error::Refused(format!(
            "--private {} and --public {} are the same file; the public key would overwrite the private one. Give two different paths",
            private.display(),
            public.display()
        )));
    }
    for p in [private, public] {
        if p.is_dir() {
            return Err(Error::Refused(format!(
                "{} is a directory; give a file path for the key",
                p.display()
            )));
        }
        if p.symlink_metadata().is_ok() && !force {
            return Err(Error::Refused(format!(
                "{} exists; pass --force to replace it",
                p.display()
            )));
        }
    }
    let pem = key.to_pkcs8_pem()?;
    let mut private_tmp = StagedFile::create(private, distro_hostio::PRIVATE)?;
    private_tmp.write_all(pem.as_bytes())?;
    let mut public_tmp = StagedFile::create(public, distro_hostio::PUBLIC)?;
    public_tmp.write_all(key.public().to_pem().as_bytes())?;
    commit_pair(private_tmp, private, public_tmp)
}

/// Whether two paths name one file: equal after canonicalisation (of the file when it exists,
/// else of its directory), or the same device and inode.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    fn resolved(p: &Path) -> std::path::PathBuf {
        if let Ok(c) = p.canonicalize() {
            return c;
        }
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match (dir.canonicalize(), p.file_name()) {
            (Ok(d), Some(n)) => d.join(n),
            _ => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
        }
    }
    if resolved(a) == resolved(b) {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Renames both temporary files into place, or neither: the private key's old file is kept
/// under a hard link until the public key is in place, and restored if that fails.
fn commit_pair(private_tmp: StagedFile, private: &Path, public_tmp: StagedFile) -> Result<()> {
    let backup = private_tmp.temp_path().with_extension("old");
    let _ = std::fs::remove_file(&backup);
    let had_old = match std::fs::hard_link(private, &backup) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io("keeping the old key while replacing", private, e)),
    };
    let undo = |why: Error| -> Error {
        let restored = if had_old {
            std::fs::rename(&backup, private)
        } else {
            std::fs::remove_file(private)
        };
        match restored {
            Ok(()) => why,
            Err(e) => Error::Key {
                what: private.display().to_string(),
                reason: format!(
                    "{why}; and restoring the old private key failed ({e}): it is kept as {}",
                    backup.display()
                ),
            },
        }
    };
    if let Err(e) = private_tmp.commit() {
        if had_old {
            let _ = std::fs::remove_file(&backup);
        }
        return Err(e.into());
    }
    if let Err(e) = public_tmp.commit() {
        return Err(undo(e.into()));
    }
    if had_old {
        let _ = std::fs::remove_file(&backup);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An encrypted key whose scrypt parameters would take gigabytes or hours is refused at
    /// once, naming the parameters and how to encrypt it again; cosign's own get as far as the
    /// password check.
    #[test]
    fn scrypt_parameters_beyond_the_bounds_are_refused_before_any_work() {
        let key = |n: u64, r: u32, p: u32| {
            let b = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
            format!(
                r#"{{"kdf": {{"name": "scrypt", "params": {{"N": {n}, "r": {r}, "p": {p}}}, "salt": "{}"}},
                    "cipher": {{"name": "nacl/secretbox", "nonce": "{}"}}, "ciphertext": "{}"}}"#,
                b(&[1; 32]),
                b(&[2; 24]),
                b(&[3; 48])
            )
        };
        let refused = |n, r, p| {
            let t = std::time::Instant::now();
            let e = decrypt_cosign("k.key", key(n, r, p).as_bytes(), b"pw")
                .unwrap_err()
                .to_string();
            assert!(t.elapsed() < std::time::Duration::from_secs(1), "{e}");
            e
        };
        for (n, r, p) in [
            (32768, 1 << 20, 1),
            (1 << 22, 8, 1),
            (32768, 8, 1 << 20),
            (1 << 40, u32::MAX, u32::MAX),
        ] {
            let e = refused(n, r, p);
            assert!(
                e.contains(&format!("N={n}, r={r}, p={p}"))
                    && e.contains("cosign generate-key-pair"),
                "{e}"
            );
        }
        for (n, r, p) in [(3, 8, 1), (32768, 0, 1), (32768, 8, 0)] {
            let e = refused(n, r, p);
            assert!(e.contains("must be a power of two"), "{e}");
        }
        // cosign's parameters are spent (slowly in a debug build), and the wrong password is
        // what fails.
        let e = decrypt_cosign("k.key", key(32768, 8, 1).as_bytes(), b"pw")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrong COSIGN_PASSWORD"), "{e}");
    }

    /// When the public key cannot be renamed into place after the private key was, the old
    /// private key is put back and no temporary or backup file is left.
    #[test]
    fn failed_public_rename_restores_the_old_private_key() {
        let d = tempfile::tempdir().unwrap();
        let (private, public) = (d.path().join("k"), d.path().join("p"));
        std::fs::write(&private, b"old private").unwrap();
        let mut private_tmp = StagedFile::create(&private, distro_hostio::PRIVATE).unwrap();
        private_tmp.write_all(b"new private").unwrap();
        let mut public_tmp = StagedFile::create(&public, distro_hostio::PUBLIC).unwrap();
        public_tmp.write_all(b"new public").unwrap();
        // A directory appears where the public key should go after it was staged: its commit
        // is refused.
        std::fs::create_dir_all(public.join("x")).unwrap();
        let err = commit_pair(private_tmp, &private, public_tmp).unwrap_err();
        assert!(err.to_string().contains("it is a directory"), "{err}");
        assert_eq!(std::fs::read(&private).unwrap(), b"old private");
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, ["k", "p"], "no temp or backup file left");
    }

    /// A private key that group or others may read is refused naming `chmod 600`; once it is
    /// 0600 it loads.
    #[test]
    fn private_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let (private, public) = (d.path().join("k"), d.path().join("k.pub"));
        write_key_pair(&SigningKey::generate().unwrap(), &private, &public, false).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = SigningKey::load(&private, None).err().unwrap().to_string();
            assert!(
                err.contains(&format!("chmod 600 {}", private.display())),
                "{mode:o}: {err}"
            );
        }
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SigningKey::load(&private, None).is_ok());
    }

    /// Two hard links to one file, and `./x` vs `x`, are the same file.
    #[test]
    fn same_file_sees_hard_links_and_dot_segments() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        std::fs::hard_link(&a, d.path().join("b")).unwrap();
        assert!(same_file(&a, &d.path().join("b")));
        assert!(same_file(&a, &d.path().join(".").join("a")));
        assert!(!same_file(&a, &d.path().join("c")));
    }
}

#[derive(serde::Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(serde::Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(serde::Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(serde::Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// The most memory (128 × N × r bytes) scrypt may use for an encrypted key: 16 × what cosign's
/// own parameters (N=32768, r=8, p=1) take.
const SCRYPT_MAX_MEMORY: u128 = 512 << 20;
/// The most work (N × r × p) scrypt may do for an encrypted key: 64 × cosign's.
const SCRYPT_MAX_WORK: u128 = 32768 * 8 * 64;

/// Decrypts cosign's key format (go-securesystemslib `encrypted`): scrypt(password, salt, N, r,
/// p) → 32-byte key; NaCl secretbox (XSalsa20-Poly1305) open → PKCS#8 DER.
fn decrypt_cosign(what: &str, json: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    use crypto_secretbox::XSalsa20Poly1305;
    let bad = |reason: String| Error::Key {
        what: what.to_string(),
        reason,
    };
    let enc: EncryptedKey =
        serde_json::from_slice(json).map_err(|e| bad(format!("encrypted key JSON: {e}")))?;
    if enc.kdf.name != "scrypt" || enc.cipher.name != "nacl/secretbox" {
        return Err(bad(format!(
            "unsupported kdf `{}` / cipher `{}`",
            enc.kdf.name, enc.cipher.name
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64
        .decode(&enc.kdf.salt)
        .map_err(|e| bad(format!("salt: {e}")))?;
    let nonce = b64
        .decode(&enc.cipher.nonce)
        .map_err(|e| bad(format!("nonce: {e}")))?;
    let ciphertext = b64
        .decode(&enc.ciphertext)
        .map_err(|e| bad(format!("ciphertext: {e}")))?;
    let (n, r, p) = (enc.kdf.params.n, enc.kdf.params.r, enc.kdf.params.p);
    if !n.is_power_of_two() || n < 2 || r == 0 || p == 0 {
        return Err(bad(format!(
            "scrypt N={n}, r={r}, p={p}: N must be a power of two from 2, r and p at least 1"
        )));
    }
    // Refused before any is spent: a key file is outside input, and asking scrypt for
    // gigabytes or hours would exhaust memory or hang the command.
    let memory = 128 * u128::from(n) * u128::from(r);
    let work = u128::from(n) * u128::from(r) * u128::from(p);
    if memory > SCRYPT_MAX_MEMORY || work > SCRYPT_MAX_WORK {
        return Err(bad(format!(
            "scrypt N={n}, r={r}, p={p} asks for {} MiB and {work} block mixes, above the {} MiB and {SCRYPT_MAX_WORK} this tool spends on a key file; encrypt the key again with cosign's parameters (N=32768, r=8, p=1: `cosign generate-key-pair`, or `cosign import-key-pair` for an existing key)",
            memory >> 20,
            SCRYPT_MAX_MEMORY >> 20
        )));
    }
    let params = scrypt::Params::new(
        n.trailing_zeros() as u8,
        enc.kdf.params.r,
        enc.kdf.params.p,
        32,
    )
    .map_err(|e| bad(format!("scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, &salt, &params, key.as_mut())
        .map_err(|e| bad(format!("scrypt: {e}")))?;
    if nonce.len() != 24 {
        return Err(bad(format!("nonce is {} bytes, expected 24", nonce.len())));
    }
    let cipher =
        XSalsa20Poly1305::new_from_slice(key.as_ref()).map_err(|_| bad("secretbox key".into()))?;
    let plain = cipher
        .decrypt(
            crypto_secretbox::Nonce::from_slice(&nonce),
            ciphertext.as_slice(),
        )
        .map_err(|_| {
            bad("decryption failed: wrong COSIGN_PASSWORD or a corrupted key file".into())
        })?;
    Ok(Zeroizing::new(plain))
}
