//! Debian's `docker-registry` (CNCF distribution) on 127.0.0.1 for tests: plain, with TLS from
//! a CA made by openssl at test time, with htpasswd basic auth, or with bearer tokens from a
//! small Python token server ([`TokenServer`]). Everything is killed when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::net::free_port;
use crate::pki::{openssl_ca, sh};

/// A token server for the registry's bearer-token auth: a small Python HTTP server that checks
/// basic credentials and issues ES256 JWTs (with an `x5c` certificate the registry trusts)
/// granting the requested repository scopes.
pub struct TokenServer {
    child: Child,
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// Certificate the registry must trust for the tokens.
    pub cert: PathBuf,
}

const TOKEN_SERVER: &str = r#"
import base64, http.server, json, os, sys, time, urllib.parse
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
port, user, password, key_path, cert_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
key = serialization.load_pem_private_key(open(key_path, "rb").read(), None)
cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def jwt(claims):
    header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]}
    signing_input = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.headers.get("Authorization") != want:
            self.send_response(401); self.end_headers(); return
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        access = []
        for scope in q.get("scope", []):
            for one in scope.split(" "):
                kind, name, actions = one.split(":", 2) if one.count(":") >= 2 else (one, "", "")
                access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        tok = jwt({"iss": "distro-test-issuer", "sub": user, "aud": q.get("service", [""])[0], "exp": now + 600,
                   "nbf": now - 60, "iat": now, "jti": os.urandom(8).hex(), "access": access})
        body = json.dumps({"token": tok, "access_token": tok, "expires_in": 600}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

impl TokenServer {
    /// Starts the server in `dir` for `user`/`password`.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        sh(
            dir,
            "openssl ecparam -name prime256v1 -genkey -noout -out token.key
             openssl req -x509 -new -key token.key -subj /CN=distro-test-token -days 2 -out token.crt",
        );
        let port = free_port();
        let child = Command::new("python3")
            .arg("-c")
            .arg(TOKEN_SERVER)
            .arg(port.to_string())
            .args([user, password])
            .arg(dir.join("token.key"))
            .arg(dir.join("token.crt"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting the token server (python3): {e}"));
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "token server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TokenServer {
            child,
            realm: format!("http://127.0.0.1:{port}/token"),
            cert: dir.join("token.crt"),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test registry needs.
#[derive(Default)]
pub struct RegistryConfig {
    /// Bearer-token auth through this token server's realm and certificate.
    pub token: Option<(String, PathBuf)>,
    /// Serve TLS with a CA made for the test.
    pub tls: bool,
    /// htpasswd basic auth with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
    /// Do not wait for the registry to accept connections.
    pub no_wait: bool,
}

/// Debian's `docker-registry` (CNCF distribution) on 127.0.0.1 with a temporary storage
/// directory; killed when dropped.
pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The CA to trust, with TLS.
    pub ca: Option<PathBuf>,
    /// Storage, config and certificates.
    pub dir: tempfile::TempDir,
}

impl TestRegistry {
    /// A plain registry (no TLS, no auth) on a free port: [`TestRegistry::start`] with the
    /// default [`RegistryConfig`].
    pub fn plain(test: &str) -> Option<Self> {
        Self::start(RegistryConfig::default(), test)
    }

    /// Starts a registry. `docker-registry` is required with [`crate::require_tool`]: when it is
    /// missing this fails under CI and returns `None` after a SKIP line elsewhere.
    pub fn start(cfg: RegistryConfig, test: &str) -> Option<Self> {
        if !crate::require_tool(test, "docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
        let port = cfg.port.unwrap_or_else(free_port);
        let addr = format!("127.0.0.1:{port}");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        let mut ca = None;
        if cfg.tls {
            let c = openssl_ca(dir.path());
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.server_cert.display(),
                c.server_key.display()
            ));
            ca = Some(c.cert);
        }
        if let Some((user, pass)) = &cfg.basic_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .unwrap_or_else(|e| panic!("starting htpasswd (apache2-utils): {e}"));
            assert!(
                out.status.success(),
                "htpasswd (apache2-utils) is needed for the auth tests"
            );
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout)
                .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: distro-test\n    path: {}\n",
                file.display()
            ));
        }
        if let Some((realm, cert)) = &cfg.token {
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: distro-test\n    issuer: distro-test-issuer\n    rootcertbundle: {}\n",
                cert.display()
            ));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(
                log.try_clone()
                    .unwrap_or_else(|e| panic!("{}: {e}", log_path.display())),
            )
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting docker-registry: {e}"));
        let reg = TestRegistry {
            child,
            addr,
            ca,
            dir,
        };
        if !cfg.no_wait {
            reg.wait_ready();
        }
        Some(reg)
    }

    /// Waits until the registry accepts connections.
    pub fn wait_ready(&self) {
        let start = Instant::now();
        while TcpStream::connect(&self.addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "docker-registry did not start on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Files under the registry's storage whose path contains `needle`.
    pub fn storage_files(&self, needle: &str) -> Vec<PathBuf> {
        fn walk(p: &Path, needle: &str, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path, needle, out);
                    } else if path.to_string_lossy().contains(needle) {
                        out.push(path);
                    }
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.dir.path().join("data"), needle, &mut v);
        v
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
