//! mesh-control over etcd spoken to with TLS (`--state etcds://...`, rustls on the FIPS
//! provider): a one-member Debian `etcd` the test starts on a 127.0.0.1 port with a P-256 CA
//! and certificates the test makes (`distro_testsupport::pki`, rcgen), with and without etcd's client-certificate
//! authentication.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use distro_testsupport::etcd::have_etcd;

/// The test's PKI in files: a CA, etcd's server certificate (IP SAN 127.0.0.1 only), a client
/// certificate, and an unrelated CA.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    /// The etcd CA (server and client certificates) and an unrelated CA, from
    /// `distro_testsupport::pki` (keys 0600).
    fn make(dir: &Path) -> Pki {
        let ca = distro_testsupport::pki::Pki::new(dir, "etcd");
        let other = distro_testsupport::pki::Pki::new(dir, "some-other");
        let (server_cert, server_key) = ca.server("server");
        let (client_cert, client_key) = ca.client("client");
        Pki {
            ca: ca.bundle.clone(),
            other_ca: other.bundle.clone(),
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

/// One etcd member serving clients over TLS on 127.0.0.1; stopped when dropped.
struct TlsEtcd {
    child: Child,
    port: u16,
    log: PathBuf,
    /// etcdctl's TLS flags.
    ctl: Vec<String>,
}

impl TlsEtcd {
    fn start(dir: &Path, pki: &Pki, client_cert_auth: bool) -> TlsEtcd {
        let (port, peer) = (free_port(), free_port());
        let log = dir.join("etcd.log");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "m0"])
            .arg("--data-dir")
            .arg(dir.join("etcd-data"))
            .args([
                "--listen-client-urls",
                &format!("https://127.0.0.1:{port}"),
                "--advertise-client-urls",
                &format!("https://127.0.0.1:{port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("m0=http://127.0.0.1:{peer}"),
                "--logger",
                "zap",
            ])
            .arg("--cert-file")
            .arg(&pki.server_cert)
            .arg("--key-file")
            .arg(&pki.server_key);
        let mut ctl = vec!["--cacert".to_string(), pki.ca.display().to_string()];
        if client_cert_auth {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&pki.ca);
            ctl.extend([
                "--cert".to_string(),
                pki.client_cert.display().to_string(),
                "--key".to_string(),
                pki.client_key.display().to_string(),
            ]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start etcd");
        let e = TlsEtcd {
            child,
            port,
            log,
            ctl,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out) = e.etcdctl(&["endpoint", "health"]);
            if ok && out.contains("is healthy") {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "etcd over TLS did not become healthy: {out}\n{}",
                std::fs::read_to_string(&e.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn etcdctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--command-timeout", "3s"])
            .args(&self.ctl)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let (ok, out) = self.etcdctl(&["get", "--prefix", "--keys-only", prefix]);
        assert!(ok, "{out}");
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flags(pairs: &[(&str, &Path)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(f, p)| [f.to_string(), p.display().to_string()])
        .collect()
}

/// A replica over `etcds://127.0.0.1:PORT/<prefix>` with the state TLS flags `tls`, started.
fn replica(dir: &Path, etcd: &TlsEtcd, prefix: &str, tls: Vec<String>) -> ControlPlane {
    let url = format!("etcds://127.0.0.1:{}/{prefix}", etcd.port);
    let mut cp = ControlPlane::replica(dir, &url, &tls);
    cp.etcd = Some((etcd.endpoint(), prefix.to_string()));
    cp.etcdctl_flags = etcd.ctl.clone();
    cp.start_prepared();
    cp
}

/// `mesh-control ca status` against the state `url` with `tls` flags: (success, stderr).
fn ca_status(dir: &Path, url: &str, tls: &[String]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["ca", "status", "--state", url])
        .arg("--state-key-file")
        .arg(dir.join("state.key"))
        .args(tls)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A replica over `etcds://` bootstraps a workload and its state (CA, join token, issued
/// certificate) is in etcd; its `/fips` and `fips-check` list the etcd client configuration
/// as FIPS. An etcd certificate from another CA, or one not valid for the host the URL names,
/// is refused with an error naming the endpoint; TLS files for a plain `etcd://` state, and
/// `etcds://` without `--state-ca`, are refused before anything is dialled.
#[test]
fn replica_over_etcds_verifies_etcd_and_keeps_its_state_there() {
    if !have_etcd("replica_over_etcds_verifies_etcd_and_keeps_its_state_there") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let etcd = TlsEtcd::start(dir.path(), &pki, false);
    let tls = flags(&[("--state-ca", &pki.ca)]);
    let cp = replica(dir.path(), &etcd, "tls", tls.clone());

    let id = "spiffe://example.org/ns/vm/sa/db";
    let token = cp.join_token(id, "10m");
    let w = bootstrap(&cp, &token, id);
    assert_eq!(w.id, id);
    let keys = etcd.keys("/tls/");
    for want in ["/tls/ca/state.json", "/tls/bundle.pem"] {
        assert!(keys.iter().any(|k| k == want), "{want} not in {keys:?}");
    }
    for sub in ["/tls/issued/", "/tls/used/", "/tls/tokens/"] {
        assert!(
            keys.iter().any(|k| k.starts_with(sub)),
            "nothing under {sub}: {keys:?}"
        );
    }

    // The FIPS evidence lists the etcd client's configuration, on the admin endpoint ...
    let (status, body) = cp.ops_get("/fips");
    assert_eq!(status, 200, "{body}");
    let fips: serde_json::Value = serde_json::from_str(&body).unwrap();
    let etcd_cfg = fips["tls_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "etcd-state-client")
        .unwrap_or_else(|| panic!("no etcd client in {body}"))
        .clone();
    assert_eq!(etcd_cfg["role"], "client", "{etcd_cfg}");
    assert_eq!(etcd_cfg["fips"], true, "{etcd_cfg}");
    // ... and in `fips-check`, which connects nothing.
    let url = format!("etcds://127.0.0.1:{}/tls", etcd.port);
    let out = Command::new(BIN)
        .args(["fips-check", "--format", "json", "--state", &url])
        .args(&tls)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["tls_configs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "etcd-state-client" && c["fips"] == true),
        "{report}"
    );

    // The same store reached with the wrong CA: refused, naming the endpoint.
    let (ok, err) = ca_status(dir.path(), &url, &flags(&[("--state-ca", &pki.other_ca)]));
    assert!(!ok, "a server certificate from another CA was accepted");
    assert!(
        err.contains(&etcd.endpoint()) && err.contains("does not chain to a CA in --state-ca"),
        "{err}"
    );
    // By a name its certificate does not carry (it names 127.0.0.1 only): refused.
    let by_name = format!("etcds://localhost:{}/tls", etcd.port);
    let (ok, err) = ca_status(dir.path(), &by_name, &tls);
    assert!(!ok, "a server certificate for another name was accepted");
    assert!(
        err.contains(&format!("https://localhost:{}", etcd.port))
            && err.contains("not valid for localhost"),
        "{err}"
    );
    // With the right CA the same command works (the refusals above are about the certificate),
    // also with a member that is down listed first: requests go to the one that answers.
    let (ok, err) = ca_status(dir.path(), &url, &tls);
    assert!(ok, "{err}");
    let with_dead = format!(
        "etcds://127.0.0.1:{},127.0.0.1:{}/tls",
        free_port(),
        etcd.port
    );
    for _ in 0..3 {
        let (ok, err) = ca_status(dir.path(), &with_dead, &tls);
        assert!(ok, "{err}");
    }

    // Ambiguous or incomplete TLS settings are refused before anything is dialled.
    let plain = format!("etcd://127.0.0.1:{}/tls", etcd.port);
    let (ok, err) = ca_status(dir.path(), &plain, &tls);
    assert!(!ok && err.contains("does not speak TLS"), "{err}");
    let (ok, err) = ca_status(dir.path(), &url, &[]);
    assert!(!ok && err.contains("needs --state-ca"), "{err}");
    let mixed = format!(
        "etcds://127.0.0.1:{},http://127.0.0.1:{}/tls",
        etcd.port, etcd.port
    );
    let (ok, err) = ca_status(dir.path(), &mixed, &tls);
    assert!(!ok && err.contains("cannot be mixed"), "{err}");
}

/// etcd requiring client certificates (`--client-cert-auth`): a replica with `--state-cert` /
/// `--state-key` works; without them it cannot connect and is told to pass them; a client key
/// other users can read is refused.
#[test]
fn etcd_client_cert_auth_needs_the_client_certificate() {
    if !have_etcd("etcd_client_cert_auth_needs_the_client_certificate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let etcd = TlsEtcd::start(dir.path(), &pki, true);
    let with_cert = flags(&[
        ("--state-ca", &pki.ca),
        ("--state-cert", &pki.client_cert),
        ("--state-key", &pki.client_key),
    ]);
    let cp = replica(dir.path(), &etcd, "mtls", with_cert.clone());
    let id = "spiffe://example.org/ns/vm/sa/web";
    let token = cp.join_token(id, "10m");
    bootstrap(&cp, &token, id);
    assert!(
        etcd.keys("/mtls/issued/").len() == 1,
        "{:?}",
        etcd.keys("/mtls/")
    );

    let url = format!("etcds://127.0.0.1:{}/mtls", etcd.port);
    let (ok, err) = ca_status(dir.path(), &url, &flags(&[("--state-ca", &pki.ca)]));
    assert!(
        !ok,
        "connected to etcd --client-cert-auth without a client certificate"
    );
    assert!(
        err.contains(&format!(
            "etcd member {}: TLS handshake failed",
            etcd.endpoint()
        )) && err.contains("--state-cert"),
        "{err}"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let loose = dir.path().join("loose.key");
        std::fs::copy(&pki.client_key, &loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ok, err) = ca_status(
            dir.path(),
            &url,
            &flags(&[
                ("--state-ca", &pki.ca),
                ("--state-cert", &pki.client_cert),
                ("--state-key", &loose),
            ]),
        );
        assert!(!ok, "a client key readable by others was used");
        assert!(
            err.contains("loose.key") && err.contains("chmod 600"),
            "{err}"
        );
        let key_text = std::fs::read_to_string(&pki.client_key).unwrap();
        assert!(!err.contains(key_text.lines().nth(1).unwrap()), "{err}");
    }
    let (ok, err) = ca_status(dir.path(), &url, &with_cert);
    assert!(ok, "{err}");
}
