//! The released images run: from the real `distro build` + `distro image` output (the shared
//! release of the heavy tests), each image is unpacked with `umoci` and started with `runc`, as
//! user 65532, on a read-only root filesystem with only a tmpfs `/tmp`, with no capabilities,
//! inside a network namespace this test creates.
//!
//! Checked: `fips-check --format json` of both binaries exits 0 in its container and reports
//! FIPS mode with the module the build's evidence names; `mesh-control run` answers `/healthz`
//! and issues SVIDs by join token to two `mesh-proxy` containers, which carry one mTLS request
//! (the backend sees the client's SPIFFE ID). Containers, their state and the namespace are
//! removed by drop guards whatever happens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod image_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distro_testsupport::bin::{ok, run};
use serde_json::{json, Value};

const TEST: &str = "image_run";
const TD: &str = "image.test";

fn id(ns: &str, sa: &str) -> String {
    format!("spiffe://{TD}/ns/{ns}/sa/{sa}")
}

/// Every tool the test needs, under CI a failure naming the install step.
fn requirements() -> bool {
    distro_testsupport::require_root(TEST, "runc containers and network namespaces")
        && distro_testsupport::require_tools(TEST, &["runc", "umoci", "ip", "curl", "python3"])
}

/// A network namespace with loopback up, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("img-{tag}-{}", std::process::id());
        let _ = run(Command::new("ip").args(["netns", "del", &name]));
        ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ok(&mut ns.exec(&["ip", "link", "set", "lo", "up"]));
        ns
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// `GET http://127.0.0.1:PORT/PATH` from inside the namespace: (status, body).
    fn get(&self, port: u16, path: &str) -> (u16, String) {
        let out = run(&mut self.exec(&[
            "curl",
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{port}{path}"),
        ]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn wait_for(&self, port: u16, path: &str, what: &str, logs: &dyn Fn() -> String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.get(port, path).0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: GET {path} on port {port} never answered 200 within 60 s\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// A process started in the namespace (the test's HTTP backend), killed on drop.
struct NsProcess(Child);

impl Drop for NsProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A runc container, force-deleted on drop.
struct Container {
    id: String,
    runc_root: PathBuf,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Container {
    fn runc(runc_root: &Path) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(runc_root);
        c
    }

    /// Starts `runc run` in the background (long-running processes).
    fn start(id: &str, bundle: &Path, runc_root: &Path) -> Container {
        let stdout = bundle.join("stdout.log");
        let stderr = bundle.join("stderr.log");
        let child = Self::runc(runc_root)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Container {
            id: id.into(),
            runc_root: runc_root.into(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    fn logs(&self) -> String {
        format!(
            "container {} stdout:\n{}\nstderr:\n{}",
            self.id,
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// The host pid of the container's process.
    fn pid(&self) -> u32 {
        let out = ok(Self::runc(&self.runc_root).args(["state", &self.id]));
        let state: Value = serde_json::from_slice(&out.stdout).unwrap();
        state["pid"].as_u64().unwrap() as u32
    }

    /// Runs a command in the running container as the non-root user; returns stdout.
    fn exec(&self, args: &[&str]) -> String {
        let out = ok(Self::runc(&self.runc_root)
            .args(["exec", "--user", "65532:65532", &self.id])
            .args(args));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(Self::runc(&self.runc_root).args(["delete", "--force", &self.id]));
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Unpacks `oci:LAYOUT:TAG` with umoci into `dir` (root: a plain unpack, owners kept); returns
/// the bundle's config.json as umoci wrote it (from the image config).
fn unpack(layout: &Path, tag: &str, dir: &Path) -> Value {
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dir));
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

/// A bundle for one container: the unpacked image's config hardened as operators run it (user
/// 65532, read-only root, no capabilities, no new privileges, tmpfs /tmp, the test's network
/// namespace), with `args` and read-only/read-write bind mounts.
fn bundle(
    dir: &Path,
    unpacked: &Path,
    base_config: &Value,
    args: &[&str],
    netns: &Netns,
    binds: &[(&Path, &str, bool)],
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut c = base_config.clone();
    let entrypoint = c["process"]["args"][0].as_str().unwrap().to_string();
    let mut argv = vec![entrypoint];
    argv.extend(args.iter().map(|s| s.to_string()));
    c["process"]["args"] = json!(argv);
    c["process"]["terminal"] = json!(false);
    c["process"]["user"] = json!({"uid": 65532, "gid": 65532});
    c["process"]["noNewPrivileges"] = json!(true);
    c["process"]["capabilities"] = json!({
        "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
    });
    c["root"] = json!({"path": unpacked.join("rootfs"), "readonly": true});
    let mut namespaces: Vec<Value> = c["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n["type"] != "network" && n["type"] != "user")
        .collect();
    namespaces.push(json!({"type": "network", "path": netns.path()}));
    c["linux"]["namespaces"] = json!(namespaces);
    let mounts = c["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/tmp");
    mounts.push(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=16m"]
    }));
    for (src, dest, rw) in binds {
        mounts.push(json!({
            "destination": dest, "type": "bind", "source": src,
            "options": ["rbind", if *rw { "rw" } else { "ro" }, "nosuid", "nodev"]
        }));
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&c).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

fn chown_nonroot(path: &Path) {
    ok(Command::new("chown").args(["-R", "65532:65532"]).arg(path));
}

/// The built line's directory (the one holding build.json and images/).
fn line_dir(out: &Path) -> PathBuf {
    std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("build.json").is_file() && p.join("images").is_dir())
        .unwrap_or_else(|| panic!("no <line>/build.json with images/ under {}", out.display()))
}

/// The tag of a component's image in its layout (the only one).
fn tag_of(layout: &Path) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A backend answering every request with the `x-forwarded-client-cert` it received.
const ECHO_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("path=%s xfcc=%s\n" % (self.path, self.headers.get("x-forwarded-client-cert", ""))).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// The released line: its directory, a scratch directory and a runc root of the test's own.
struct Released {
    line: PathBuf,
    t: tempfile::TempDir,
    runc_root: PathBuf,
}

impl Released {
    /// `None` (a loud skip outside CI) when a requirement is missing.
    fn new() -> Option<Released> {
        if !requirements() {
            return None;
        }
        let out = distro_testsupport::release_out(Path::new(env!("CARGO_BIN_EXE_distro")), true);
        let t = tempfile::tempdir().unwrap();
        let runc_root = t.path().join("runc");
        std::fs::create_dir_all(&runc_root).unwrap();
        Some(Released {
            line: line_dir(&out),
            t,
            runc_root,
        })
    }

    fn layout(&self, c: &str) -> PathBuf {
        self.line.join("images").join(c).join("oci")
    }

    /// The component's image unpacked by umoci into the test's directory: (bundle dir, config).
    fn unpack(&self, c: &str) -> (PathBuf, Value) {
        let layout = self.layout(c);
        let dir = self.t.path().join(format!("unpacked-{c}"));
        let config = unpack(&layout, &tag_of(&layout), &dir);
        (dir, config)
    }
}

/// Each released image's SBOM names every file its container will see, and its config runs as
/// user 65532 with the system CA bundle in `SSL_CERT_FILE`.
#[test]
fn released_images_are_unprivileged_and_their_sboms_cover_every_file() {
    let Some(r) = Released::new() else { return };
    for c in ["mesh-proxy", "mesh-control"] {
        let layout = r.layout(c);
        image_support::assert_sbom_covers_every_file(&layout, &tag_of(&layout), TEST);
        let (_, config) = r.unpack(c);
        assert_eq!(config["process"]["user"]["uid"], 65532, "{c}: image user");
        let env = config["process"]["env"].to_string();
        assert!(
            env.contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
            "{c}: SSL_CERT_FILE is not set in the image: {env}"
        );
    }
}

/// `fips-check --format json` in the component's own container exits 0 and reports FIPS mode,
/// the provider's FIPS flag and passed self-tests, with the module version the build's evidence
/// names; the evidence says the module is linked statically (certificate #5314).
fn fips_check_in_container(c: &str) {
    let Some(r) = Released::new() else { return };
    let netns = Netns::new(&format!("fips-{}", &c[5..]));
    let (dir, config) = r.unpack(c);
    let b = bundle(
        &r.t.path().join(format!("fips-{c}")),
        &dir,
        &config,
        &["fips-check", "--format", "json"],
        &netns,
        &[],
    );
    let id = format!("fips-{c}-{}", std::process::id());
    let mut ctr = Container::start(&id, &b, &r.runc_root);
    let status = ctr.child.take().unwrap().wait().unwrap();
    assert!(
        status.success(),
        "{c} fips-check in the container exited {status}\n{}",
        ctr.logs()
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&ctr.stdout).unwrap())
        .unwrap_or_else(|e| panic!("{c} fips-check printed no JSON ({e})\n{}", ctr.logs()));
    assert_eq!(report["fips_mode"], true, "{c}: {report}");
    assert_eq!(report["provider_fips"], true, "{c}: {report}");
    assert_eq!(report["self_tests_passed"], true, "{c}: {report}");
    let ev: Value = serde_json::from_slice(
        &std::fs::read(r.line.join("evidence").join(format!("{c}.fips.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        report["module_version_string"], ev["module"]["version_in_binary"],
        "{c}: the container's module is not the one the evidence names"
    );
    // The evidence says how the shipped binary links the module, read from the binary, and
    // names the certificate for that linkage (AWS-LC FIPS 3.x static: #5314).
    assert_eq!(ev["module"]["linkage"], "static", "{c}: {}", ev["module"]);
    assert_eq!(
        ev["module"]["cmvp_certificate"], 5314,
        "{c}: {}",
        ev["module"]
    );
}

/// The proxy image reports FIPS mode with the evidence's module from inside its container.
#[test]
fn proxy_image_reports_fips_mode_in_its_container() {
    fips_check_in_container("mesh-proxy");
}

/// The control-plane image reports FIPS mode with the evidence's module from inside its
/// container.
#[test]
fn control_image_reports_fips_mode_in_its_container() {
    fips_check_in_container("mesh-control");
}

/// Ports inside a test's network namespace.
const API: u16 = 7443;
const OPS: u16 = 7444;
const B_IN: u16 = 8443;
const APP: u16 = 8080;
const A_OUT: u16 = 8081;
const A_ADMIN: u16 = 9901;
const B_ADMIN: u16 = 9902;

/// The mesh configuration: service b (at B_IN, identity b) reachable by a, a may GET /api.
fn mesh_toml() -> String {
    distro_testsupport::mesh::a_calls_b(
        &id("a", "a"),
        &id("b", "b"),
        format!("127.0.0.1:{B_IN}"),
        &["/api"],
    )
}

/// The control-plane image running `mesh-control run` in its container (state and
/// configuration bind-mounted, owned by 65532), answering /healthz in `netns`.
struct ControlPlane {
    ctr: Container,
    state: PathBuf,
}

impl ControlPlane {
    fn start(r: &Released, netns: &Netns) -> ControlPlane {
        let state = r.t.path().join("cp-state");
        let cfg = r.t.path().join("cp-config");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("mesh.toml"), mesh_toml()).unwrap();
        chown_nonroot(&state);
        chown_nonroot(&cfg);
        let (cp_dir, cp_config) = r.unpack("mesh-control");
        let cp_bundle = bundle(
            &r.t.path().join("control"),
            &cp_dir,
            &cp_config,
            &[
                "run",
                "--state-dir",
                "/var/lib/mesh-control",
                "--config",
                "/etc/mesh",
                "--trust-domain",
                TD,
                "--listen",
                &format!("127.0.0.1:{API}"),
                "--ops",
                &format!("127.0.0.1:{OPS}"),
                "--watch-interval",
                "200ms",
            ],
            netns,
            &[
                (&state, "/var/lib/mesh-control", true),
                (&cfg, "/etc/mesh", false),
            ],
        );
        let ctr = Container::start(
            &format!("cp-{}-{}", netns.name, std::process::id()),
            &cp_bundle,
            &r.runc_root,
        );
        netns.wait_for(OPS, "/healthz", "mesh-control in its container", &|| {
            ctr.logs()
        });
        ControlPlane { ctr, state }
    }
}

/// The control-plane container's process really runs as uid 65532 with no effective or
/// permitted capabilities, on a root filesystem mounted read-only (read from /proc, not from
/// the bundle).
#[test]
fn control_plane_container_runs_unprivileged_on_a_read_only_root() {
    let Some(r) = Released::new() else { return };
    let netns = Netns::new("priv");
    let cp = ControlPlane::start(&r, &netns);
    let pid = cp.ctr.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert!(field("Uid:").starts_with("65532"), "Uid: {}", field("Uid:"));
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap_or_default();
    assert!(
        root.split_whitespace()
            .nth(5)
            .is_some_and(|o| o.split(',').any(|x| x == "ro")),
        "the container's root is not mounted read-only: {root}"
    );
}

/// Writes each workload's join token (made by the control plane's own binary inside its
/// container), the CA bundle and each proxy's configuration into `creds`, owned by 65532.
fn write_proxy_credentials(cp: &ControlPlane, creds: &Path) {
    std::fs::create_dir_all(creds).unwrap();
    for w in ["a", "b"] {
        let token = cp.ctr.exec(&[
            "/usr/local/bin/mesh-control",
            "token",
            "create",
            "--state-dir",
            "/var/lib/mesh-control",
            "--identity",
            &id(w, w),
            "--ttl",
            "10m",
        ]);
        assert!(!token.is_empty(), "empty join token for {w}");
        std::fs::write(creds.join(format!("{w}.token")), token).unwrap();
    }
    std::fs::copy(cp.state.join("bundle.pem"), creds.join("bundle.pem")).unwrap();
    let cp_section = |w: &str| {
        json!({
            "address": format!("127.0.0.1:{API}"),
            "ca_bundle": "/etc/mesh-proxy/bundle.pem",
            "token_file": format!("/etc/mesh-proxy/{w}.token"),
            "backoff_max_ms": 1000,
        })
    };
    std::fs::write(
        creds.join("b.json"),
        json!({
            "admin": format!("127.0.0.1:{B_ADMIN}"),
            "inbound": {"listen": format!("127.0.0.1:{B_IN}"), "app": format!("127.0.0.1:{APP}"), "protocol": "http"},
            "control_plane": cp_section("b"),
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        creds.join("a.json"),
        json!({
            "admin": format!("127.0.0.1:{A_ADMIN}"),
            "outbound": [{"service": "b", "listen": format!("127.0.0.1:{A_OUT}")}],
            "control_plane": cp_section("a"),
        })
        .to_string(),
    )
    .unwrap();
    chown_nonroot(creds);
}

/// Two proxy containers bootstrap by join token from the control-plane container (proxy a holds
/// the SVID of its identity) and carry one request a → mTLS → b → backend, where the backend
/// sees the client's verified SPIFFE ID.
#[test]
fn proxy_containers_bootstrap_by_token_and_carry_one_mtls_request() {
    let Some(r) = Released::new() else { return };
    let netns = Netns::new("mtls");
    let cp = ControlPlane::start(&r, &netns);
    let creds = r.t.path().join("creds");
    write_proxy_credentials(&cp, &creds);

    let backend = NsProcess(
        netns
            .exec(&["python3", "-c", ECHO_SERVER, &APP.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    netns.wait_for(APP, "/", "the test backend", &|| String::new());

    let (px_dir, px_config) = r.unpack("mesh-proxy");
    let mut proxies = Vec::new();
    for (w, admin) in [("b", B_ADMIN), ("a", A_ADMIN)] {
        let b = bundle(
            &r.t.path().join(format!("proxy-{w}")),
            &px_dir,
            &px_config,
            &[
                "run",
                "--config",
                &format!("/etc/mesh-proxy/{w}.json"),
                "--threads",
                "2",
            ],
            &netns,
            &[(&creds, "/etc/mesh-proxy", false)],
        );
        let p = Container::start(
            &format!("proxy-{w}-{}", std::process::id()),
            &b,
            &r.runc_root,
        );
        netns.wait_for(
            admin,
            "/ready",
            &format!("mesh-proxy {w} in its container"),
            &|| format!("{}\n{}", p.logs(), cp.ctr.logs()),
        );
        proxies.push(p);
    }

    let (code, certs) = netns.get(A_ADMIN, "/certs");
    assert_eq!(code, 200, "{certs}");
    let certs: Value = serde_json::from_str(&certs).unwrap();
    assert_eq!(certs["spiffe_id"], id("a", "a"), "{certs}");
    let (code, body) = netns.get(A_OUT, "/api/x");
    assert_eq!(
        code,
        200,
        "{body}\n{}\n{}",
        proxies[0].logs(),
        proxies[1].logs()
    );
    assert!(
        body.contains(&format!("xfcc=URI={}", id("a", "a"))),
        "the backend did not see the client's verified identity: {body}"
    );
    drop(proxies);
    drop(backend);
    drop(cp);
}
