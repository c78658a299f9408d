//! Which client certificates the mTLS endpoints honour. With a shared organisation root, the
//! mesh CA is an intermediate under it and a sibling intermediate issues for another trust
//! domain (all made by openssl): certificates from the sibling chain to the trusted root, but
//! `/v1/renew` and `/v1/config` must refuse them, with a reason code, counted, serving nothing.
//! A certificate this CA issued stops being honoured when its record is removed (revocation).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mesh_core::api::{self, reason};
use mesh_core::identity::{self, generate_csr, SpiffeId};

/// The organisation's PKI: a root, the mesh intermediate (imported into the state directory)
/// and a sibling intermediate under the same root.
struct OrgPki {
    dir: std::path::PathBuf,
}

impl OrgPki {
    fn p(&self, n: &str) -> String {
        self.dir.join(n).to_str().unwrap().to_string()
    }

    fn run(&self, args: Vec<String>) {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, text) = openssl(&a);
        assert!(ok, "openssl {args:?}: {text}");
    }

    fn new(dir: &Path) -> OrgPki {
        let pki = OrgPki {
            dir: dir.to_path_buf(),
        };
        std::fs::write(
            pki.p("ca.ext"),
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let mut root = words("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /O=Org/CN=Org-Root -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
        root.extend([
            "-keyout".into(),
            pki.p("root.key"),
            "-out".into(),
            pki.p("root.pem"),
        ]);
        pki.run(root);
        for (name, cn, serial) in [
            ("mesh", "Mesh-Intermediate", "7"),
            ("sibling", "Other-Team-Intermediate", "8"),
        ] {
            let mut req = words("req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes");
            req.extend([
                "-subj".into(),
                format!("/O=Org/CN={cn}"),
                "-keyout".into(),
                pki.p(&format!("{name}.key")),
                "-out".into(),
                pki.p(&format!("{name}.csr")),
            ]);
            pki.run(req);
            let mut sign = words("x509 -req -days 30 -set_serial");
            sign.extend([
                serial.into(),
                "-in".into(),
                pki.p(&format!("{name}.csr")),
                "-CA".into(),
                pki.p("root.pem"),
                "-CAkey".into(),
                pki.p("root.key"),
                "-extfile".into(),
                pki.p("ca.ext"),
                "-out".into(),
                pki.p(&format!("{name}.pem")),
            ]);
            pki.run(sign);
        }
        pki
    }

    /// An X.509-SVID for `id` issued by the sibling intermediate (key and chain).
    fn sibling_svid(&self, name: &str, id: &str) -> Workload {
        std::fs::write(
            self.p(&format!("{name}.ext")),
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:{id}\n"),
        )
        .unwrap();
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let mut req =
            words("req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /O=Org");
        req.extend([
            "-keyout".into(),
            self.p(&format!("{name}.key")),
            "-out".into(),
            self.p(&format!("{name}.csr")),
        ]);
        self.run(req);
        let mut sign = words("x509 -req -days 1 -set_serial 99");
        sign.extend([
            "-in".into(),
            self.p(&format!("{name}.csr")),
            "-CA".into(),
            self.p("sibling.pem"),
            "-CAkey".into(),
            self.p("sibling.key"),
            "-extfile".into(),
            self.p(&format!("{name}.ext")),
            "-out".into(),
            self.p(&format!("{name}.pem")),
        ]);
        self.run(sign);
        let leaf = std::fs::read_to_string(self.p(&format!("{name}.pem"))).unwrap();
        let sibling = std::fs::read_to_string(self.p("sibling.pem")).unwrap();
        let chain_pem = format!("{leaf}{sibling}");
        let key_pem = std::fs::read_to_string(self.p(&format!("{name}.key"))).unwrap();
        Workload {
            id: id.to_string(),
            chain: identity::certs_from_pem(&chain_pem).unwrap(),
            chain_pem,
            key: Arc::new(identity::key_from_pem(&key_pem).unwrap()),
            bundle_pem: std::fs::read_to_string(self.p("root.pem")).unwrap(),
        }
    }
}

fn renew_as(cp: &ControlPlane, w: &Workload, csr_id: &str) -> Result<Reply, String> {
    let csr = generate_csr(&SpiffeId::parse(csr_id).unwrap()).unwrap();
    let body = serde_json::to_vec(&api::RenewRequest {
        csr_pem: csr.csr_pem,
    })
    .unwrap();
    request(
        cp.api,
        &cp.bundle(),
        Some(w),
        "POST",
        api::PATH_RENEW,
        body,
        Duration::from_secs(10),
    )
}

fn start_under_org_root(dir: &Path) -> (OrgPki, ControlPlane) {
    let pki = OrgPki::new(dir);
    let out = std::process::Command::new(BIN)
        .args(["ca", "import", "--trust-domain", TD, "--state-dir"])
        .arg(dir.join("state"))
        .args([
            "--cert",
            &pki.p("mesh.pem"),
            "--key",
            &pki.p("mesh.key"),
            "--roots",
            &pki.p("root.pem"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ca import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cp = ControlPlane::start(dir, &[]);
    (pki, cp)
}

/// A certificate for `spiffe://other.test/...` from a sibling intermediate under the shared
/// root is refused on /v1/renew and /v1/config with `foreign_trust_domain`, counted, and
/// nothing is issued or served; the mesh's own workload keeps renewing.
#[test]
fn renew_refuses_a_foreign_trust_domain_under_a_shared_root() {
    if !distro_testsupport::require(
        "renew_refuses_a_foreign_trust_domain_under_a_shared_root",
        "openssl",
        "apt-get install openssl",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pki, cp) = start_under_org_root(dir.path());
    let foreign_id = "spiffe://other.test/ns/shop/sa/frontend";
    let foreign = pki.sibling_svid("foreign", foreign_id);

    let r = renew_as(&cp, &foreign, foreign_id).unwrap_or_else(|e| {
        panic!(
            "the TLS layer should accept the chain to the shared root, and the API refuse it: {e}"
        )
    });
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, reason::FOREIGN_TRUST_DOMAIN),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.json()["svid_chain_pem"].is_null());
    // Asking for an identity in the mesh's trust domain does not help.
    let r = renew_as(&cp, &foreign, "spiffe://example.org/ns/shop/sa/frontend").unwrap();
    assert_eq!(r.reason(), reason::FOREIGN_TRUST_DOMAIN);
    let r = poll_config(&cp, &foreign, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, reason::FOREIGN_TRUST_DOMAIN),
        "no configuration may be served: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(cp.issued_on_record(), 0, "nothing may be issued");
    assert_eq!(
        cp.metric("mesh_control_refusals_total{reason=\"foreign_trust_domain\"}"),
        3.0
    );

    // The mesh's own workload, bootstrapped here, renews.
    let id = "spiffe://example.org/ns/shop/sa/frontend";
    let w = bootstrap(&cp, &cp.join_token(id, "5m"), id);
    let r = renew_as(&cp, &w, id).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// A certificate naming the mesh's own trust domain but issued by the sibling intermediate (not
/// by this CA) is refused with `svid_not_honoured` on renew and config.
#[test]
fn renew_refuses_an_svid_this_ca_did_not_issue() {
    if !distro_testsupport::require(
        "renew_refuses_an_svid_this_ca_did_not_issue",
        "openssl",
        "apt-get install openssl",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pki, cp) = start_under_org_root(dir.path());
    let id = "spiffe://example.org/ns/shop/sa/admin";
    let impostor = pki.sibling_svid("impostor", id);
    let r = renew_as(&cp, &impostor, id).unwrap();
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, reason::SVID_NOT_HONOURED),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not issued by this control plane"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = poll_config(&cp, &impostor, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(r.reason(), reason::SVID_NOT_HONOURED);
    assert_eq!(cp.issued_on_record(), 0);
    assert_eq!(
        cp.metric("mesh_control_refusals_total{reason=\"svid_not_honoured\"}"),
        2.0
    );
}

/// An SVID this CA issued is no longer honoured once its record in `issued/` is removed (the
/// revocation mechanism): renew and config refuse it with `svid_not_honoured`.
#[test]
fn removed_issuance_record_revokes_the_svid() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let id = "spiffe://example.org/ns/vm/sa/revoked";
    let w = bootstrap(&cp, &cp.join_token(id, "5m"), id);
    let r = poll_config(&cp, &w, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    cp.revoke_all();
    let r = poll_config(&cp, &w, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, reason::SVID_NOT_HONOURED)
    );
    let r = renew_as(&cp, &w, id).unwrap();
    assert_eq!(r.reason(), reason::SVID_NOT_HONOURED);
    assert_eq!(cp.issued_on_record(), 0);
}

/// A revocation applies to a connection that is already open: the control plane keeps what it
/// verified of the certificate for the connection's life, but asks the record on every request.
#[test]
fn revocation_applies_to_an_open_keep_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let id = "spiffe://example.org/ns/vm/sa/kept-open";
    let w = bootstrap(&cp, &cp.join_token(id, "5m"), id);
    let mut s = Session::open(&cp, &cp.bundle(), &w);
    for _ in 0..2 {
        let r = s.poll_now().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    cp.revoke_all();
    let r = s.poll_now().unwrap();
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, reason::SVID_NOT_HONOURED),
        "the same connection after the revocation"
    );
}
