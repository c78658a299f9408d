//! Shared harness of the image tests: run the real `distro` binary, write a fixture build output,
//! start Debian's `docker-registry` on 127.0.0.1 (optionally with TLS from a CA made at test time
//! and htpasswd basic auth), and find the independent tools the checks use.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// SOURCE_DATE_EPOCH of the fixture build (2025-11-28T00:00:00Z).
pub const SDE: i64 = 1_764_288_000;

/// A `distro` command with a clean environment for the image subcommands.
pub fn distro() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_distro"));
    c.env_remove("SOURCE_DATE_EPOCH")
        .env_remove("COSIGN_PASSWORD")
        .env_remove("DISTRO_REGISTRY_PASSWORD")
        .env_remove("DISTRO_REGISTRY_TOKEN")
        .env_remove("DISTRO_REGISTRY_USERNAME")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    c
}

/// Runs a command and returns its output (never panics on a non-zero exit).
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("running command")
}

/// Runs `distro ARGS`, asserting success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(distro().args(args));
    assert!(
        out.status.success(),
        "distro {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `distro ARGS`, asserting failure; returns stdout + stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run(distro().args(args));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "distro {} should have failed:\n{text}",
        args.join(" ")
    );
    text
}

/// Requires `tool` on PATH: a failure naming the install step under CI, a loud SKIP elsewhere.
pub fn have(tool: &str, test: &str) -> bool {
    distro_testsupport::require_tool(test, tool)
}

/// Requires a Python module: a failure naming the pip step under CI, a loud SKIP elsewhere.
pub fn have_python(module: &str, test: &str) -> bool {
    distro_testsupport::require_python(
        test,
        module,
        &distro_testsupport::python_install_step(module),
    )
}

/// A fixture build output: `OUT/0.1/{build.json,bin,evidence,provenance,sbom,vex}` for one or
/// two components with fake binaries, FIPS evidence about them, provenance, an SBOM each and
/// the line's VEX, and the line's release record `release.json` naming every document by path
/// and sha256 (what `distro attest --build-dir` reads).
pub struct Fixture {
    /// The output directory (`OUT`).
    pub out: PathBuf,
    /// `OUT/0.1`.
    pub line_dir: PathBuf,
    /// The components, in order.
    pub components: Vec<String>,
}

/// sha256 hex via sha256sum (independent of the code under test).
pub fn sha256sum(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

impl Fixture {
    /// Writes the fixture under `root`; `binary_size` bytes of deterministic content per binary.
    pub fn write(root: &Path, components: &[&str], binary_size: usize) -> Fixture {
        let out = root.join("out");
        let line_dir = out.join("0.1");
        for d in ["bin", "evidence", "provenance", "sbom"] {
            std::fs::create_dir_all(line_dir.join(d)).unwrap();
        }
        let mut records = Vec::new();
        for (i, c) in components.iter().enumerate() {
            // Deterministic pseudo-random content (an LCG), so compression has real work to do.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1);
            let data: Vec<u8> = (0..binary_size)
                .map(|_| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    (x >> 56) as u8
                })
                .collect();
            let bin = line_dir.join("bin").join(c);
            std::fs::write(&bin, &data).unwrap();
            let sha = sha256sum(&bin);
            write_json(
                &line_dir.join("evidence").join(format!("{c}.fips.json")),
                &evidence(c, &sha, true, "validated"),
            );
            write_json(
                &line_dir.join("provenance").join(format!("{c}.intoto.json")),
                &json!({
                    "_type": "https://in-toto.io/Statement/v1",
                    "subject": [{"name": c, "digest": {"sha256": sha}}],
                    "predicateType": "https://slsa.dev/provenance/v1",
                    "predicate": {
                        "buildDefinition": {"buildType": "https://fips-mesh.invalid/build/v1", "externalParameters": {"line": "0.1"}, "internalParameters": {}, "resolvedDependencies": []},
                        "runDetails": {"builder": {"id": "https://fips-mesh.invalid/builder"}, "metadata": {"invocationId": "fixture"}}
                    }
                }),
            );
            write_json(
                &line_dir.join("sbom").join(format!("{c}.cdx.json")),
                &sbom(c),
            );
            records.push(json!({
                "name": c, "package": c, "binary": format!("bin/{c}"), "sha256": sha,
                "fips": {"mode": true, "module_version": "AWS-LC FIPS 3.0.0", "cmvp_certificate": 5314, "cmvp_status": "validated"},
                "evidence": format!("evidence/{c}.fips.json"), "provenance": format!("provenance/{c}.intoto.json")
            }));
        }
        write_json(
            &line_dir.join("build.json"),
            &json!({
                "schema_version": "1", "distribution": "fips-mesh", "line": "0.1",
                "source": {"repository": "https://example.invalid/fips-mesh-distro", "ref": "HEAD", "commit": "0123456789abcdef0123456789abcdef01234567", "source_date_epoch": SDE},
                "cargo_lock_sha256": "00", "patches": [], "components": records
            }),
        );
        let fx = Fixture {
            out,
            line_dir,
            components: components.iter().map(|c| c.to_string()).collect(),
        };
        write_json(&fx.vex_path(), &line_vex(components, "fixed"));
        fx.record();
        fx
    }

    /// The line's OpenVEX document (`OUT/0.1/vex/fips-mesh-0.1.openvex.json`, where `distro
    /// release` writes it), about every component.
    pub fn vex_path(&self) -> PathBuf {
        self.line_dir.join("vex").join("fips-mesh-0.1.openvex.json")
    }

    /// (Re)writes `OUT/0.1/release.json` with the current sha256 of every document, as the
    /// release's local stages do: call it after changing a document on purpose.
    pub fn record(&self) {
        use distro_schema::{Artifact, CmvpStatus, ComponentRelease, FipsFacts, LineRelease};
        let artifact = |p: PathBuf| Artifact {
            sha256: sha256sum(&p),
            path: p.display().to_string(),
        };
        let build: distro_schema::BuildRecord =
            serde_json::from_slice(&std::fs::read(self.line_dir.join("build.json")).unwrap())
                .unwrap();
        let record = LineRelease {
            schema_version: distro_schema::SCHEMA_VERSION.into(),
            distribution: "fips-mesh".into(),
            line: "0.1".into(),
            version: "0.1.0".into(),
            state: distro_schema::ReleaseState::Built,
            fingerprint: "fixture".into(),
            source: build.source.clone(),
            build_record: artifact(self.line_dir.join("build.json")),
            patches: Vec::new(),
            components: self
                .components
                .iter()
                .map(|c| ComponentRelease {
                    name: c.clone(),
                    package: c.clone(),
                    features: Vec::new(),
                    binary: artifact(self.line_dir.join("bin").join(c)),
                    fips: FipsFacts {
                        mode: true,
                        module_version: "AWS-LC FIPS 3.0.0".into(),
                        cmvp_certificate: Some(5314),
                        cmvp_status: CmvpStatus::Validated,
                    },
                    evidence: artifact(
                        self.line_dir
                            .join("evidence")
                            .join(format!("{c}.fips.json")),
                    ),
                    provenance: artifact(
                        self.line_dir
                            .join("provenance")
                            .join(format!("{c}.intoto.json")),
                    ),
                    sbom: Some(artifact(
                        self.line_dir.join("sbom").join(format!("{c}.cdx.json")),
                    )),
                    spdx: None,
                    image: None,
                    pushed: None,
                })
                .collect(),
            vex: Some(artifact(self.vex_path())),
            vex_note: None,
            registry: None,
            public_key: None,
            conformance: None,
            checks: Vec::new(),
            stages: Vec::new(),
        };
        std::fs::write(
            self.line_dir.join("release.json"),
            serde_json::to_vec_pretty(&record).unwrap(),
        )
        .unwrap();
    }

    /// `oci:` reference of a component's assembled image.
    pub fn image_ref(&self, component: &str) -> String {
        format!("oci:{}:0.1.0", self.layout(component).display())
    }

    /// Layout directory of a component's image.
    pub fn layout(&self, component: &str) -> PathBuf {
        self.line_dir.join("images").join(component).join("oci")
    }

    /// Runs `distro image` for the fixture.
    pub fn assemble(&self) -> String {
        ok(&[
            "image",
            "--out",
            self.out.to_str().unwrap(),
            "--line",
            "0.1",
            "--base-cache",
            &deb_cache().to_string_lossy(),
            "--format",
            "json",
        ])
    }
}

/// The Debian base's `.deb` cache shared by every test (the packages are downloaded once per
/// target directory, checked against apt's index each time they are used).
pub fn deb_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb-cache")
}

/// A CA bundle for the base layer: Debian's when present, else a generated one.
pub fn ca_bundle() -> PathBuf {
    let debian = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    if debian.exists() {
        return debian;
    }
    let dir = std::env::temp_dir().join("distro-image-test-ca");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = make_ca(&dir);
    ca.cert
}

/// FIPS evidence for a binary.
pub fn evidence(component: &str, sha: &str, mode: bool, status: &str) -> serde_json::Value {
    json!({
        "schema_version": "1", "component": component, "binary": component, "binary_sha256": sha, "mode": mode,
        "module": {"crate_name": "aws-lc-fips-sys", "crate_version": "0.13.17", "module_name": "AWS-LC Cryptographic Module",
                   "module_line": "3.x", "version_in_binary": "AWS-LC FIPS 3.0.0", "cmvp_certificate": 5314, "cmvp_status": status,
                   "source": "fixture"},
        "symbols": {"total_symbols": 10, "fips_module_symbols": 5, "fips_module_prefix": "aws_lc_fips_0_13_17_", "needed_libraries": [], "forbidden": []},
        "self_check": null,
        "failures": if mode { json!([]) } else { json!(["aws_lc_0_ symbols found: non-FIPS AWS-LC linked"]) }
    })
}

/// A small CycloneDX 1.6 SBOM.
pub fn sbom(component: &str) -> serde_json::Value {
    json!({
        "bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79", "version": 1,
        "metadata": {"component": {"type": "application", "name": component, "version": "0.1.0"}},
        "components": [{"type": "library", "name": "rustls", "version": "0.23.43", "purl": "pkg:cargo/rustls@0.23.43"}]
    })
}

/// A small OpenVEX 0.2.0 document with one statement of `status`.
pub fn vex(component: &str, status: &str) -> serde_json::Value {
    let mut st = json!({
        "vulnerability": {"name": "RUSTSEC-2024-0336"},
        "products": [{"@id": format!("pkg:cargo/{component}@0.1.0")}],
        "status": status
    });
    if status == "not_affected" {
        st["justification"] = json!("vulnerable_code_not_in_execute_path");
    }
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://fips-mesh.invalid/vex/fixture",
        "author": "fips-mesh", "timestamp": "2025-11-28T00:00:00Z", "version": 1, "statements": [st]
    })
}

/// The line's OpenVEX 0.2.0 document: one statement of `status` about every component.
pub fn line_vex(components: &[&str], status: &str) -> serde_json::Value {
    let mut v = vex(components[0], status);
    v["statements"][0]["products"] = components
        .iter()
        .map(|c| json!({"@id": format!("pkg:cargo/{c}@0.1.0")}))
        .collect();
    v
}

/// Writes pretty JSON (creating its directory).
pub fn write_json(path: &Path, v: &serde_json::Value) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// A CA and a server certificate for 127.0.0.1, ECDSA P-256, made with openssl.
pub struct Ca {
    /// CA certificate (PEM).
    pub cert: PathBuf,
    /// Server certificate (PEM).
    pub server_cert: PathBuf,
    /// Server key (PEM).
    pub server_key: PathBuf,
}

/// Makes a CA and a server certificate in `dir`.
pub fn make_ca(dir: &Path) -> Ca {
    let sh = |script: &str| {
        let out = run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh("openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -subj /CN=distro-test-ca -days 2 -out ca.crt \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl ecparam -name prime256v1 -genkey -noout -out server.key
        openssl req -new -key server.key -subj /CN=127.0.0.1 -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\nbasicConstraints=CA:FALSE\\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt 2>/dev/null");
    Ca {
        cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    }
}

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
        let out = run(Command::new("sh").arg("-ec").arg(
            "openssl ecparam -name prime256v1 -genkey -noout -out token.key
             openssl req -x509 -new -key token.key -subj /CN=distro-test-token -days 2 -out token.crt",
        ).current_dir(dir));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
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
            .expect("starting the token server");
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

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestRegistry {
    /// Starts a registry; `None` (with the reason printed) when `docker-registry` is absent.
    pub fn start(cfg: RegistryConfig, test: &str) -> Option<Self> {
        if !have("docker-registry", test) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = cfg.port.unwrap_or_else(free_port);
        let addr = format!("127.0.0.1:{port}");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        let mut ca = None;
        if cfg.tls {
            let c = make_ca(dir.path());
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.server_cert.display(),
                c.server_key.display()
            ));
            ca = Some(c.cert);
        }
        if let Some((user, pass)) = &cfg.basic_auth {
            let out = run(Command::new("htpasswd").args(["-Bbn", user, pass]));
            assert!(
                out.status.success(),
                "htpasswd (apache2-utils) is needed for the auth tests"
            );
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
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
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
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

/// Standard base64 with padding (a few lines here rather than a dev-dependency of `distro`).
pub mod b64 {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Encodes.
    pub fn encode(data: impl AsRef<[u8]>) -> String {
        let data = data.as_ref();
        let mut s = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    /// Decodes; `Err` on a character outside the alphabet.
    pub fn decode(s: impl AsRef<[u8]>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut buf = 0u32;
        let mut bits = 0;
        for &ch in s.as_ref() {
            if ch == b'=' {
                break;
            }
            let v = A
                .iter()
                .position(|&a| a == ch)
                .ok_or_else(|| format!("bad base64 byte {ch}"))? as u32;
            buf = (buf << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buf >> bits) as u8);
                buf &= (1 << bits) - 1;
            }
        }
        Ok(out)
    }
}

/// Validates a CycloneDX 1.6 file with cyclonedx-python-lib's strict validator (independent of
/// the code under test). Returns false (after a SKIP line) when the library is missing.
pub fn cyclonedx_python_valid(path: &Path, test: &str) -> bool {
    if !distro_testsupport::require_python(
        test,
        "cyclonedx.validation.json",
        "pip install 'cyclonedx-python-lib[json-validation]' (scripts/install-deps.sh)",
    ) {
        return false;
    }
    let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\ne = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nif e is not None:\n    print(e)\n    sys.exit(1)\n";
    let out = run(Command::new("python3").args(["-c", script]).arg(path));
    assert!(
        out.status.success(),
        "cyclonedx-python-lib rejects {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Every `file` component of an SBOM (nested ones too): path → (sha256, parent component's
/// bom-ref or purl, `distro:image:file-kind`).
pub fn sbom_files(
    sbom: &serde_json::Value,
) -> std::collections::BTreeMap<String, (String, String, String)> {
    fn walk(
        c: &serde_json::Value,
        parent: &str,
        out: &mut std::collections::BTreeMap<String, (String, String, String)>,
    ) {
        let me = c["bom-ref"].as_str().unwrap_or_default().to_string();
        if c["type"] == "file" {
            let sha = c["hashes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["alg"] == "SHA-256")
                .and_then(|h| h["content"].as_str())
                .unwrap_or_default()
                .to_string();
            let kind = c["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "distro:image:file-kind")
                .and_then(|p| p["value"].as_str())
                .unwrap_or_default()
                .to_string();
            out.insert(
                c["name"].as_str().unwrap_or_default().to_string(),
                (sha, parent.to_string(), kind),
            );
        }
        for ch in c["components"].as_array().into_iter().flatten() {
            walk(ch, &me, out);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for c in sbom["components"].as_array().into_iter().flatten() {
        walk(c, "", &mut out);
    }
    out
}

/// Every regular file of every layer of `layout:tag`, read from the layer tars themselves by
/// Python's tarfile (independent of the code under test): (layer index, absolute path, sha256).
pub fn layer_files(layout: &Path, tag: &str) -> Vec<(usize, String, String)> {
    let script = r#"
import hashlib, json, os, sys, tarfile
layout, tag = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(layout, "blobs", "sha256", d.split(":", 1)[1])
index = json.load(open(os.path.join(layout, "index.json")))
m = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]
manifest = json.load(open(blob(m["digest"])))
for i, l in enumerate(manifest["layers"]):
    with tarfile.open(blob(l["digest"]), "r:*") as t:
        for e in t:
            if e.isreg():
                print(i, hashlib.sha256(t.extractfile(e).read()).hexdigest(), "/" + (e.name[2:] if e.name.startswith("./") else e.name))
"#;
    let out = run(Command::new("python3")
        .args(["-c", script])
        .arg(layout)
        .arg(tag));
    assert!(
        out.status.success(),
        "reading the layers of {}: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            let i = f.next().unwrap().parse().unwrap();
            let sha = f.next().unwrap().to_string();
            (i, f.next().unwrap().to_string(), sha)
        })
        .collect()
}

/// The files of `layout:tag` that `sbom` does not account for (no `file` component with the
/// same path and sha256 under a component saying where it comes from).
pub fn unaccounted(layout: &Path, tag: &str, sbom: &serde_json::Value) -> Vec<String> {
    let in_sbom = sbom_files(sbom);
    let files = layer_files(layout, tag);
    assert!(!files.is_empty(), "no files in {}", layout.display());
    let mut out = Vec::new();
    for (layer, path, sha) in &files {
        match in_sbom.get(path) {
            Some((s, parent, kind)) if s == sha && (!parent.is_empty() || kind == "generated") => {}
            other => out.push(format!(
                "layer {layer}: {path} sha256 {sha} -> SBOM {other:?}"
            )),
        }
    }
    out
}

/// The image SBOM beside a layout accounts for every regular file of every layer, an `umoci
/// unpack` of the image holds exactly those files (the last layer's version of each), and
/// cyclonedx-python-lib accepts the SBOM. Returns the SBOM.
pub fn assert_sbom_covers_every_file(layout: &Path, tag: &str, test: &str) -> serde_json::Value {
    let sbom_path = layout.parent().unwrap().join("sbom.cdx.json");
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sbom_path).unwrap()).unwrap();
    let missing = unaccounted(layout, tag, &sbom);
    assert!(
        missing.is_empty(),
        "files of the image that its SBOM does not account for:\n{}",
        missing.join("\n")
    );
    let files = layer_files(layout, tag);
    if have("umoci", test) {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let out = run(Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle));
        assert!(
            out.status.success(),
            "umoci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rootfs = bundle.join("rootfs");
        let mut unpacked = std::collections::BTreeMap::new();
        let mut stack = vec![rootfs.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    stack.push(e.path());
                } else if ft.is_file() {
                    let rel = format!("/{}", e.path().strip_prefix(&rootfs).unwrap().display());
                    unpacked.insert(rel, sha256sum(&e.path()));
                }
            }
        }
        let mut last = std::collections::BTreeMap::new();
        for (_, p, s) in &files {
            last.insert(p.clone(), s.clone());
        }
        assert_eq!(
            unpacked, last,
            "umoci's unpacked files differ from the layers' files"
        );
    }
    // A missing validator already failed (CI) or printed SKIP.
    cyclonedx_python_valid(&sbom_path, test);
    sbom
}
