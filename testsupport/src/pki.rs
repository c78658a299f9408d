//! Throw-away PKI for tests.
//!
//! - [`Pki`] (feature `rcgen`): one ECDSA P-256 CA made in process with rcgen that issues
//!   SPIFFE X.509-SVIDs ([`Pki::issue`]), a server certificate for 127.0.0.1 ([`Pki::server`])
//!   and a plain client certificate ([`Pki::client`]) into files; private keys are written 0600.
//! - [`openssl_ca`]: a CA and a 127.0.0.1 server certificate made by the `openssl` command, for
//!   tests that deliberately use material from a tool independent of the code under test (the
//!   caller checks for `openssl` with [`crate::require_tool`]).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes a private key (or anything secret) readable by its owner only.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod 600 {}: {e}", path.display()));
}

#[cfg(feature = "rcgen")]
pub use self::rcgen_pki::Pki;

#[cfg(feature = "rcgen")]
mod rcgen_pki {
    use std::path::{Path, PathBuf};

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType, PKCS_ECDSA_P256_SHA256,
    };

    use super::write_private;

    /// An ECDSA P-256 CA that issues certificates into files in `dir`.
    pub struct Pki {
        /// Where the certificates and keys are written.
        pub dir: PathBuf,
        /// The CA certificate (PEM): the trust bundle of whoever trusts this CA.
        pub bundle: PathBuf,
        issuer: Issuer<'static, KeyPair>,
    }

    fn key() -> KeyPair {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .unwrap_or_else(|e| panic!("generating a P-256 key: {e}"))
    }

    impl Pki {
        /// A new CA `"{name} test CA"`; its certificate is written to `dir/{name}-bundle.pem`.
        pub fn new(dir: &Path, name: &str) -> Pki {
            let key = key();
            let mut params = CertificateParams::default();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} test CA"));
            let cert = params
                .self_signed(&key)
                .unwrap_or_else(|e| panic!("self-signing the {name} test CA: {e}"));
            let bundle = dir.join(format!("{name}-bundle.pem"));
            std::fs::write(&bundle, cert.pem())
                .unwrap_or_else(|e| panic!("writing {}: {e}", bundle.display()));
            Pki {
                dir: dir.to_path_buf(),
                bundle,
                issuer: Issuer::new(params, key),
            }
        }

        /// Issues a leaf with `sans`, `usages` and (when given) the common name `cn`, into
        /// `dir/{stem}.crt` and `dir/{stem}.key` (0600); returns (certificate path, key path).
        pub fn leaf(
            &self,
            stem: &str,
            cn: Option<&str>,
            sans: Vec<SanType>,
            usages: Vec<ExtendedKeyUsagePurpose>,
        ) -> (PathBuf, PathBuf) {
            let key = key();
            let mut params = CertificateParams::default();
            params.subject_alt_names = sans;
            if let Some(cn) = cn {
                params.distinguished_name.push(DnType::CommonName, cn);
            }
            params.extended_key_usages = usages;
            let cert = params
                .signed_by(&key, &self.issuer)
                .unwrap_or_else(|e| panic!("issuing {stem}: {e}"));
            let c = self.dir.join(format!("{stem}.crt"));
            let k = self.dir.join(format!("{stem}.key"));
            std::fs::write(&c, cert.pem())
                .unwrap_or_else(|e| panic!("writing {}: {e}", c.display()));
            write_private(&k, &key.serialize_pem());
            (c, k)
        }

        /// An X.509-SVID for `spiffe_id` (URI SAN, server and client auth) as `stem`.
        pub fn issue(&self, spiffe_id: &str, stem: &str) -> (PathBuf, PathBuf) {
            let uri = spiffe_id
                .to_string()
                .try_into()
                .unwrap_or_else(|e| panic!("{spiffe_id} as a URI SAN: {e}"));
            self.leaf(
                stem,
                None,
                vec![SanType::URI(uri)],
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            )
        }

        /// A server certificate for the IP address 127.0.0.1 only (server auth) as `stem`.
        pub fn server(&self, stem: &str) -> (PathBuf, PathBuf) {
            let ip = SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]));
            self.leaf(
                stem,
                Some(stem),
                vec![ip],
                vec![ExtendedKeyUsagePurpose::ServerAuth],
            )
        }

        /// A client certificate without SANs (client auth) as `stem`.
        pub fn client(&self, stem: &str) -> (PathBuf, PathBuf) {
            self.leaf(
                stem,
                Some(stem),
                vec![],
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            )
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 (and `localhost`), ECDSA P-256, made by openssl.
pub struct OpensslCa {
    /// CA certificate (PEM).
    pub cert: PathBuf,
    /// Server certificate (PEM).
    pub server_cert: PathBuf,
    /// Server key (PEM).
    pub server_key: PathBuf,
}

/// Runs `script` with `sh -ec` in `dir`, panicking with the script and its stderr on failure.
pub fn sh(dir: &Path, script: &str) {
    crate::bin::ok(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
}

/// Makes `ca.{key,crt}` and `server.{key,crt}` (valid for two days) in `dir` with openssl.
pub fn openssl_ca(dir: &Path) -> OpensslCa {
    sh(dir, "openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -subj /CN=distro-test-ca -days 2 -out ca.crt \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl ecparam -name prime256v1 -genkey -noout -out server.key
        openssl req -new -key server.key -subj /CN=127.0.0.1 -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\nbasicConstraints=CA:FALSE\\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt 2>/dev/null");
    OpensslCa {
        cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    }
}
