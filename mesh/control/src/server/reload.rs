//! The watcher: reloads the configuration files and the CA state, and publishes each change as
//! a new configuration version (recorded in the state before any proxy sees it).
//!
//! With a local state directory the CA state is checked on every tick of `--watch-interval`.
//! With etcd, the store's watch wakes the replica when any replica (or a `ca` command) changes
//! the CA state or records a new configuration version; the replica then reloads the CA and
//! adopts the newer version, so proxies connected to any replica receive it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::{build_tls, digest_str, Shared, Snapshot};
use crate::ca::{self, Ca};
use crate::config::{self, MeshConfig};
use crate::state::CONFIG;

/// `state/config.json`: the last good configuration and its version.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredConfig {
    pub(super) version: u64,
    digest: String,
    bundle_digest: String,
    pub(super) config: MeshConfig,
}

/// Digest of the raw configuration files (cheap change detection).
fn files_digest(shared: &Shared) -> String {
    let Some(path) = &shared.settings.config else {
        return String::new();
    };
    let mut ctx = distro_hostio::Sha256::new();
    let mut files = Vec::new();
    if path.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    files.push(p);
                }
            }
        }
        files.sort();
    } else {
        files.push(path.clone());
    }
    for f in files {
        ctx.update(f.display().to_string().as_bytes());
        ctx.update(&std::fs::read(&f).unwrap_or_default());
    }
    ctx.finish_hex()
}

/// Reloads configuration files and publishes a new version when something changed. Returns the
/// digest of the files it looked at.
pub(super) fn reload_config(shared: &Shared, previous_files: Option<&str>) -> String {
    let digest = files_digest(shared);
    if previous_files == Some(digest.as_str()) {
        return digest;
    }
    let current = shared.snapshot.borrow().clone();
    let mesh = match &shared.settings.config {
        None => current.mesh.clone(),
        Some(path) => match config::load(path, &shared.trust_domain) {
            Ok(c) => {
                shared
                    .metrics
                    .config_last_reload_ok
                    .store(1, Ordering::Relaxed);
                if let Ok(mut e) = shared.config_error.lock() {
                    *e = None;
                }
                shared.ever_good_config.store(true, Ordering::Relaxed);
                Arc::new(c)
            }
            Err(errors) => {
                shared
                    .metrics
                    .config_last_reload_ok
                    .store(0, Ordering::Relaxed);
                shared.metrics.reload("refused");
                let msg = errors.to_string();
                warn!(errors = %msg, kept_version = current.version, "configuration change refused; still serving the last good configuration");
                if let Ok(mut e) = shared.config_error.lock() {
                    *e = Some(msg);
                }
                return digest;
            }
        },
    };
    let bundle = shared
        .ca
        .read()
        .map(|c| c.bundle_pem().to_string())
        .unwrap_or_default();
    if publish(shared, mesh, bundle) {
        digest
    } else {
        // Not recorded (the store refused the write): try again on the next tick.
        String::new()
    }
}

/// Publishes `mesh` + `bundle` as a new version if either differs from the recorded one.
/// Returns false when the store could not record it (nothing is published then).
///
/// The version is recorded by a write conditioned on the revision that was read, so with
/// several replicas the version only moves forward and each number names one configuration: a
/// replica that loses the race adopts the winner's record when it carries the same content, and
/// otherwise publishes on top of it.
fn publish(shared: &Shared, mesh: Arc<MeshConfig>, bundle: String) -> bool {
    let bundle_digest = digest_str(&bundle);
    for _ in 0..5 {
        let current = shared.snapshot.borrow().clone();
        let (stored, rev) = match shared.state.read_json_rev::<StoredConfig>(CONFIG) {
            Ok(Some((s, rev))) => (Some(s), Some(rev)),
            Ok(None) => (None, None),
            Err(e) => {
                error!(error = %e, "cannot read the recorded configuration version; not publishing");
                return false;
            }
        };
        // A control plane without its own configuration source (`--config`) serves what the
        // state holds: with replicas, another one may have recorded a newer configuration.
        let mesh = match (&shared.settings.config, &stored) {
            (None, Some(s)) => Arc::new(s.config.clone()),
            _ => mesh.clone(),
        };
        let digest = mesh.digest();
        if let Some(s) = &stored {
            if s.digest == digest && s.bundle_digest == bundle_digest {
                if s.version > current.version {
                    // Another replica recorded this very configuration first.
                    adopt(shared, s.version, mesh, bundle);
                    return true;
                }
                if s.version == current.version {
                    shared
                        .metrics
                        .config_version
                        .store(current.version, Ordering::Relaxed);
                    return true;
                }
            }
        }
        let version = current
            .version
            .max(stored.as_ref().map(|s| s.version).unwrap_or(0))
            + 1;
        let rec = StoredConfig {
            version,
            digest: digest.clone(),
            bundle_digest: bundle_digest.clone(),
            config: (*mesh).clone(),
        };
        match shared.state.write_json_if(CONFIG, rev, &rec) {
            Ok(true) => {
                shared.metrics.reload("applied");
                info!(version, "configuration version published");
                adopt(shared, version, mesh, bundle);
                return true;
            }
            // Another replica recorded a version meanwhile: look again.
            Ok(false) => continue,
            Err(e) => {
                error!(error = %e, "cannot record the new configuration version; not publishing it");
                return false;
            }
        }
    }
    error!("the configuration version kept moving under this replica; not publishing now");
    false
}

/// Makes `version` current here and wakes the long-polls.
fn adopt(shared: &Shared, version: u64, mesh: Arc<MeshConfig>, bundle: String) {
    shared
        .metrics
        .config_version
        .store(version, Ordering::Relaxed);
    shared.ever_good_config.store(true, Ordering::Relaxed);
    shared.snapshot.send_replace(Arc::new(Snapshot {
        version,
        mesh,
        bundle,
        changed_at: Instant::now(),
    }));
}

/// Adopts a version another replica recorded, if it is newer than the one served here.
fn adopt_recorded(shared: &Shared) {
    let current = shared.snapshot.borrow().version;
    match shared.state.read_json::<StoredConfig>(CONFIG) {
        Ok(Some(s)) if s.version > current => {
            let bundle = shared
                .ca
                .read()
                .map(|c| c.bundle_pem().to_string())
                .unwrap_or_default();
            if digest_str(&bundle) != s.bundle_digest {
                // Recorded with a CA state this replica has not loaded yet; the CA reload
                // that follows the same change publishes (adopts) it.
                return;
            }
            info!(
                version = s.version,
                "configuration version recorded by another replica adopted"
            );
            adopt(shared, s.version, Arc::new(s.config), bundle);
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read the recorded configuration version"),
    }
}

/// Reloads the CA state and republishes with its bundle.
fn reload_ca(shared: &Shared) {
    match Ca::load(&shared.state, &shared.trust_domain) {
        Ok(ca) => {
            let ca = Arc::new(ca);
            match build_tls(&ca, &shared.trust_domain) {
                Ok(tls) => {
                    if let Ok(mut t) = shared.tls.write() {
                        *t = Arc::new(tls);
                    }
                    if let Ok(mut t) = shared.tls_issued_at.lock() {
                        *t = Instant::now();
                    }
                }
                Err(e) => error!(error = %e, "cannot rebuild the API TLS configuration"),
            }
            info!(generation = ca.active_gen, "CA state loaded");
            shared
                .metrics
                .ca_generation
                .store(ca.active_gen.into(), Ordering::Relaxed);
            let bundle = ca.bundle_pem().to_string();
            if let Ok(mut c) = shared.ca.write() {
                *c = ca;
            }
            let mesh = shared.snapshot.borrow().mesh.clone();
            publish(shared, mesh, bundle);
        }
        Err(e) => {
            error!(error = %e, "CA state changed but cannot be loaded; keeping the current CA")
        }
    }
}

pub(super) async fn watch_loop(shared: Arc<Shared>, mut files: String) {
    let mut tick = tokio::time::interval(shared.settings.watch_interval);
    let mut changes = shared.state.changes();
    loop {
        let mut watch_ended = false;
        let store_changed = match changes.as_mut() {
            Some(rx) => tokio::select! {
                _ = tick.tick() => false,
                r = rx.changed() => {
                    watch_ended = r.is_err();
                    r.is_ok()
                }
            },
            None => {
                tick.tick().await;
                false
            }
        };
        if watch_ended {
            // The store stopped reporting changes: check it on every tick instead.
            changes = None;
        }
        files = reload_config(&shared, Some(&files));
        // A CA rotation by `mesh-control ca rotate` or another replica, or the end of an
        // overlap period. A store that reports changes is read only when it reports one.
        let (digest, expiry) = match shared.ca.read() {
            Ok(c) => (c.state_digest.clone(), c.next_expiry),
            Err(_) => continue,
        };
        let expired = expiry.is_some_and(|t| t <= time::OffsetDateTime::now_utc());
        let renew_tls = shared
            .tls_issued_at
            .lock()
            .map(|t| t.elapsed() > Duration::from_secs(12 * 3600))
            .unwrap_or(false);
        let look = store_changed || changes.is_none();
        if (look && ca::state_digest(&shared.state) != digest) || expired || renew_tls {
            reload_ca(&shared);
        }
        if store_changed {
            adopt_recorded(&shared);
        }
    }
}
