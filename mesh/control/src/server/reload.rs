//! The watcher: reloads the configuration files and the CA state, and publishes each change as
//! a new configuration version (recorded in the state before any proxy sees it).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::{build_tls, digest_str, Shared, Snapshot};
use crate::ca::{self, Ca};
use crate::config::{self, MeshConfig};
use crate::state::{read_json, write_json};

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
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
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
    hex::encode(ctx.finish())
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
    publish(shared, mesh, bundle);
    digest
}

/// Publishes `mesh` + `bundle` as a new version if either differs from the current one.
fn publish(shared: &Shared, mesh: Arc<MeshConfig>, bundle: String) {
    let current = shared.snapshot.borrow().clone();
    let stored: Option<StoredConfig> = read_json(&shared.state.config()).ok().flatten();
    let (digest, bundle_digest) = (mesh.digest(), digest_str(&bundle));
    let unchanged = stored.as_ref().is_some_and(|s| {
        s.digest == digest && s.bundle_digest == bundle_digest && s.version == current.version
    });
    if unchanged {
        shared
            .metrics
            .config_version
            .store(current.version, Ordering::Relaxed);
        return;
    }
    let version = current
        .version
        .max(stored.as_ref().map(|s| s.version).unwrap_or(0))
        + 1;
    let rec = StoredConfig {
        version,
        digest,
        bundle_digest,
        config: (*mesh).clone(),
    };
    if let Err(e) = write_json(&shared.state.config(), &rec) {
        error!(error = %e, "cannot record the new configuration version; not publishing it");
        return;
    }
    shared.metrics.reload("applied");
    shared
        .metrics
        .config_version
        .store(version, Ordering::Relaxed);
    info!(version, "configuration version published");
    shared.snapshot.send_replace(Arc::new(Snapshot {
        version,
        mesh,
        bundle,
        changed_at: Instant::now(),
    }));
}

pub(super) async fn watch_loop(shared: Arc<Shared>, mut files: String) {
    let mut tick = tokio::time::interval(shared.settings.watch_interval);
    loop {
        tick.tick().await;
        files = reload_config(&shared, Some(&files));
        // A CA rotation by `mesh-control ca rotate`, or the end of an overlap period.
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
        if ca::state_digest(&shared.state) != digest || expired || renew_tls {
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
                    publish(&shared, mesh, bundle);
                }
                Err(e) => {
                    error!(error = %e, "CA state changed but cannot be loaded; keeping the current CA")
                }
            }
        }
    }
}
