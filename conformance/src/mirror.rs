//! The air-gapped case: a mirror registry (Debian `docker-registry`) on the environment's
//! `registry` host, the released images pushed into it and signed with a key made for the run,
//! and every container host pulling its image from the mirror with `distro pull`, which runs
//! `distro verify` (signature and policy) before anything is written. Containers then run what
//! was pulled, not the build output.
//!
//! `distro` allows plain HTTP only to a loopback registry, so each puller reaches the mirror
//! through a relay on its own loopback (the bytes still cross the environment's network).

use std::path::PathBuf;

use distro_hostio::{write_atomic, Cmd, PUBLIC};

use crate::env::{Env, EnvError, HostRt};
use crate::exec::in_ns;
use crate::profile::{Kind, Role};

/// The mirror's port.
pub const MIRROR_PORT: u16 = 5000;

/// The policy images are verified against: the signature only. The release's SBOM, provenance,
/// VEX and FIPS attestations are attached by `distro release`, not by the build output this
/// suite runs from; the summary says so.
const POLICY: &str = "require_fips = false\nrequire_validated_module = false\nrequire_sbom = false\nrequire_provenance = false\nrequire_vex = false\n";

/// What the mirror step did: (host, component, pulled layout).
pub type Pulled = Vec<(String, String, PathBuf)>;

fn repo(component: &str) -> String {
    format!("127.0.0.1:{MIRROR_PORT}/mesh/{component}")
}

/// Starts the mirror, fills it, and pulls every container host's image through it.
pub fn prepare(env: &Env) -> Result<Pulled, EnvError> {
    let Some(mirror) = env.hosts.iter().find(|h| h.spec.role == Role::Registry) else {
        return Ok(Vec::new());
    };
    let dir = mirror.dir.clone();
    let cfg = dir.join("registry.yml");
    write_atomic(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: \"{}\"\n",
            dir.join("storage").display(),
            if mirror.v6.is_some() { format!("[::]:{MIRROR_PORT}") } else { format!("0.0.0.0:{MIRROR_PORT}") }
        )
        .as_bytes(),
        PUBLIC,
    )?;
    let p = env.spawn_in(
        mirror,
        std::path::Path::new("docker-registry"),
        &["serve".into(), cfg.display().to_string()],
        "mirror registry",
        &dir.join("registry.log"),
    )?;
    if let Ok(mut m) = mirror.main.lock() {
        *m = Some(p);
    }
    env.wait_ready(mirror, MIRROR_PORT, "/v2/", "the mirror registry")?;
    let (key, public) = (dir.join("mirror.key"), dir.join("mirror.pub"));
    let policy = dir.join("policy.toml");
    write_atomic(&policy, POLICY.as_bytes(), PUBLIC)?;
    Cmd::new(&env.inputs.fixture_bin, "make the mirror's signing key")
        .arg("keygen")
        .arg("--private")
        .arg(&key)
        .arg("--public")
        .arg(&public)
        .run()?;
    let distro = env.inputs.fixture_bin.clone();
    let mut pushed = std::collections::BTreeSet::new();
    let mut pulled = Vec::new();
    for h in env.hosts.iter().filter(|h| h.spec.kind == Kind::Container) {
        let component = match h.spec.role {
            Role::Control => "mesh-control",
            Role::Workload => "mesh-proxy",
            _ => continue,
        };
        let line = env.line_of(&h.spec);
        let oci = line.image(component)?;
        let tag = crate::container::layout_tag(&oci)?;
        let repo = repo(&format!("{}-{component}", line.name));
        let reference = format!("{repo}:{tag}");
        if pushed.insert(reference.clone()) {
            in_ns(
                &mirror.ns,
                &distro,
                format!("push {component} into the mirror"),
            )
            .args([
                "push",
                &format!("oci:{}:{tag}", oci.display()),
                &reference,
                "--plain-http",
            ])
            .run()?;
            in_ns(
                &mirror.ns,
                &distro,
                format!("sign {component} in the mirror"),
            )
            .args(["sign", &reference, "--plain-http", "--key"])
            .arg(&key)
            .run()?;
        }
        relay_to_mirror(env, h, mirror)?;
        let dest = h.dir.join(format!("{component}-pulled"));
        in_ns(
            &h.ns,
            &distro,
            format!(
                "pull and verify {component} from the mirror on {}",
                h.spec.name
            ),
        )
        .args([
            "pull",
            &reference,
            "--plain-http",
            "--out",
            &format!("oci:{}:{tag}", dest.display()),
            "--key",
        ])
        .arg(&public)
        .arg("--policy")
        .arg(&policy)
        .run()?;
        pulled.push((h.spec.name.clone(), component.to_string(), dest));
    }
    Ok(pulled)
}

fn relay_to_mirror(env: &Env, h: &HostRt, mirror: &HostRt) -> Result<(), EnvError> {
    let to = std::net::SocketAddr::new(mirror.addr(), MIRROR_PORT);
    let p = env.spawn_in(
        h,
        &env.inputs.fixture_bin,
        &[
            "conformance".into(),
            "fixture".into(),
            "relay".into(),
            "--listen".into(),
            format!("127.0.0.1:{MIRROR_PORT}"),
            "--to".into(),
            to.to_string(),
            "--delay-ms".into(),
            "0".into(),
        ],
        &format!("relay to the mirror on {}", h.spec.name),
        &h.dir.join("mirror-relay.log"),
    )?;
    env.keep(p);
    Ok(())
}
