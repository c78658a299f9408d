//! Container hosts: the released OCI image (`<line>/images/<component>/oci`) unpacked with
//! `umoci unpack` into a runtime bundle and run under `runc` inside the host's network
//! namespace. The environment's directory is bind-mounted at the same path, so the
//! configuration, token and state paths mean the same inside and outside.

use std::path::Path;

use distro_hostio::{write_atomic, Cmd, PUBLIC};

use crate::env::{Env, EnvError, HostRt, LineArtifacts, Proc};

/// The user the released images run as (their `User`).
pub const CONTAINER_UID: u32 = 65532;

/// The tag of the image in an OCI layout (its `org.opencontainers.image.ref.name`).
pub fn layout_tag(oci: &Path) -> Result<String, EnvError> {
    let index = oci.join("index.json");
    let text = std::fs::read_to_string(&index).map_err(|source| EnvError::Io {
        path: index.clone(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EnvError::Artifact(format!("{}: not JSON: {e}", index.display())))?;
    // The image's own tag, not a cosign-style signature or attestation tag beside it.
    v["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .find(|t| !t.starts_with("sha256-"))
        .map(str::to_string)
        .ok_or_else(|| {
            EnvError::Artifact(format!(
                "{}: no manifest with a ref.name annotation (rebuild with `distro image`)",
                index.display()
            ))
        })
}

/// Starts `component` from `line`'s image on `h` with `args` (after the image's entrypoint).
pub fn start(
    env: &Env,
    h: &HostRt,
    line: &LineArtifacts,
    component: &str,
    args: &[String],
    log: &Path,
) -> Result<Proc, EnvError> {
    // Air-gapped: the image pulled (and verified) from the environment's mirror.
    let pulled = env
        .pulled
        .iter()
        .find(|(host, c, _)| *host == h.spec.name && c == component)
        .map(|(_, _, p)| p.clone());
    let oci = match pulled {
        Some(p) => p,
        None => line.image(component)?,
    };
    let tag = layout_tag(&oci)?;
    let id = format!(
        "{}-{}-{}",
        env.run_id,
        crate::env::short(&env.profile.name),
        h.spec.name
    );
    let bundle = env
        .dir
        .join("bundles")
        .join(format!("{}-{component}", h.spec.name));
    if bundle.exists() {
        // A restart (control-plane outage): the container was deleted, reuse the bundle.
    } else {
        if let Some(parent) = bundle.parent() {
            std::fs::create_dir_all(parent).map_err(|source| EnvError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        Cmd::new(
            "umoci",
            format!("unpack the released {component} image for {}", h.spec.name),
        )
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", oci.display()))
        .arg(&bundle)
        .run()?;
    }
    let cfg_path = bundle.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| EnvError::Io {
        path: cfg_path.clone(),
        source,
    })?;
    let mut cfg: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EnvError::Artifact(format!("{}: not JSON: {e}", cfg_path.display())))?;
    let entry = cfg["process"]["args"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            EnvError::Artifact(format!(
                "{}: the image of {component} has no entrypoint",
                cfg_path.display()
            ))
        })?;
    let mut argv = vec![serde_json::Value::String(entry)];
    argv.extend(args.iter().cloned().map(serde_json::Value::String));
    cfg["process"]["args"] = serde_json::Value::Array(argv);
    cfg["process"]["terminal"] = serde_json::Value::Bool(false);
    // As operators run it: the image's non-root user, no capabilities, no new privileges, a
    // read-only root with a small tmpfs /tmp.
    cfg["process"]["user"] = serde_json::json!({"uid": CONTAINER_UID, "gid": CONTAINER_UID});
    cfg["process"]["noNewPrivileges"] = serde_json::Value::Bool(true);
    cfg["process"]["capabilities"] = serde_json::json!({
        "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
    });
    cfg["root"] = serde_json::json!({"path": bundle.join("rootfs"), "readonly": true});
    // The host's network namespace instead of a new one.
    if let Some(nss) = cfg["linux"]["namespaces"].as_array_mut() {
        nss.retain(|n| n["type"] != "network" && n["type"] != "user");
        nss.push(serde_json::json!({"type": "network", "path": format!("/run/netns/{}", h.ns)}));
    }
    let dir = env.dir.display().to_string();
    if let Some(m) = cfg["mounts"].as_array_mut() {
        m.retain(|m| m["destination"] != "/tmp");
        m.push(serde_json::json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=16m"]
        }));
        m.push(serde_json::json!({
            "destination": dir, "type": "bind", "source": dir,
            "options": ["rbind", "rw", "nosuid", "nodev"]
        }));
    }
    // The container user must read its configuration and token and own the control plane's
    // state; everything else in the environment's directory is readable anyway.
    Cmd::new("chown", "let the container user read its files")
        .args(["-R", &format!("{CONTAINER_UID}:{CONTAINER_UID}")])
        .arg(&h.dir)
        .arg(&env.cp_state)
        .run()?;
    write_atomic(
        &cfg_path,
        serde_json::to_string_pretty(&cfg)
            .unwrap_or_default()
            .as_bytes(),
        PUBLIC,
    )?;
    let root = env.runc_root();
    env.record_container(&id)?;
    let child = Cmd::new(
        "runc",
        format!("run the {component} container on {}", h.spec.name),
    )
    .arg("--root")
    .arg(&root)
    .args(["run", "--bundle"])
    .arg(&bundle)
    .arg(&id)
    .spawn_logged(log)?;
    if let Err(e) = env.record_pid(child.id()) {
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(Env::proc_of(
        format!("{component} container on {}", h.spec.name),
        log.to_path_buf(),
        Some(id),
        child,
    ))
}
