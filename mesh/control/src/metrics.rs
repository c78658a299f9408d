//! Prometheus metrics of the control plane, rendered by hand in the text exposition format
//! (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// A latency histogram (cumulative buckets of [`BUCKETS`], sum and count), safe to share.
#[derive(Default)]
pub struct Histogram(Mutex<([u64; BUCKETS.len()], f64, u64)>);

impl Histogram {
    /// Records one observation of `secs` seconds.
    pub fn observe(&self, secs: f64) {
        if let Ok(mut h) = self.0.lock() {
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.0[i] += 1;
                }
            }
            h.1 += secs;
            h.2 += 1;
        }
    }

    /// Appends the histogram `name` (with its HELP line `help`) in the text exposition format.
    pub fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        if let Ok(h) = self.0.lock() {
            for (b, n) in BUCKETS.iter().zip(h.0) {
                let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {n}");
            }
            let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {}", h.2);
            let _ = writeln!(s, "{name}_sum {}", h.1);
            let _ = writeln!(s, "{name}_count {}", h.2);
        }
    }
}

/// All counters and gauges.
#[derive(Default)]
pub struct Metrics {
    /// Live mTLS connections presenting an SVID.
    pub connected_proxies: AtomicI64,
    /// Current configuration version.
    pub config_version: AtomicU64,
    /// Active CA generation.
    pub ca_generation: AtomicU64,
    /// Configuration responses sent (200 on /v1/config).
    pub pushes: AtomicU64,
    /// 1 when the last configuration reload was accepted.
    pub config_last_reload_ok: AtomicU64,
    issued: Mutex<BTreeMap<&'static str, u64>>,
    refusals: Mutex<BTreeMap<String, u64>>,
    reloads: Mutex<BTreeMap<&'static str, u64>>,
    acks: Mutex<BTreeMap<bool, u64>>,
    conn_refused: Mutex<BTreeMap<&'static str, u64>>,
    timeouts: Mutex<BTreeMap<&'static str, u64>>,
    latency: Histogram,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_insert(0) += 1;
    }
}

impl Metrics {
    /// Counts an issued certificate (`bootstrap` or `renew`).
    pub fn issued(&self, kind: &'static str) {
        bump(&self.issued, kind);
    }
    /// Counts a refused request by reason code.
    pub fn refused(&self, reason: &str) {
        bump(&self.refusals, reason.to_string());
    }
    /// Counts a configuration reload (`applied`, `refused`).
    pub fn reload(&self, result: &'static str) {
        bump(&self.reloads, result);
    }
    /// Counts an API connection closed at once by a limit (`global`, `per_peer`).
    pub fn connection_refused(&self, limit: &'static str) {
        bump(&self.conn_refused, limit);
    }
    /// Counts an API connection closed because the client was too slow (`handshake`,
    /// `header`, `body`).
    pub fn timed_out(&self, phase: &'static str) {
        bump(&self.timeouts, phase);
    }
    /// Counts a proxy's acknowledgement.
    pub fn ack(&self, accepted: bool) {
        bump(&self.acks, accepted);
    }
    /// Records how long a change took to reach a waiting proxy.
    pub fn push_latency(&self, secs: f64) {
        self.latency.observe(secs);
    }
    /// The text exposition; `open_connections` is the API listener's live connection count.
    pub fn render(&self, open_connections: usize) -> String {
        let mut s = String::new();
        let g = |s: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        g(
            &mut s,
            "mesh_control_connected_proxies",
            "Open mTLS connections on which a request was authenticated by an SVID this CA honours.",
            "gauge",
            self.connected_proxies.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut s,
            "mesh_control_config_version",
            "Current mesh configuration version.",
            "gauge",
            self.config_version.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut s,
            "mesh_control_ca_generation",
            "Active CA generation.",
            "gauge",
            self.ca_generation.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut s,
            "mesh_control_config_last_reload_ok",
            "1 if the last configuration change was accepted, 0 if it was refused.",
            "gauge",
            self.config_last_reload_ok
                .load(Ordering::Relaxed)
                .to_string(),
        );
        g(
            &mut s,
            "mesh_control_config_pushes_total",
            "Configuration snapshots sent to proxies.",
            "counter",
            self.pushes.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut s,
            "mesh_control_api_connections_open",
            "Open connections on the TLS API listener.",
            "gauge",
            open_connections.to_string(),
        );
        let _ = writeln!(s, "# HELP mesh_control_connections_refused_total API connections closed at once because a connection limit was reached.\n# TYPE mesh_control_connections_refused_total counter");
        if let Ok(m) = self.conn_refused.lock() {
            for limit in ["global", "per_peer"] {
                let _ = writeln!(
                    s,
                    "mesh_control_connections_refused_total{{limit=\"{limit}\"}} {}",
                    m.get(limit).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(s, "# HELP mesh_control_connection_timeouts_total API connections closed because the client was too slow, by phase.\n# TYPE mesh_control_connection_timeouts_total counter");
        if let Ok(m) = self.timeouts.lock() {
            for phase in ["handshake", "header", "body"] {
                let _ = writeln!(
                    s,
                    "mesh_control_connection_timeouts_total{{phase=\"{phase}\"}} {}",
                    m.get(phase).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(s, "# HELP mesh_control_certificates_issued_total X.509-SVIDs issued.\n# TYPE mesh_control_certificates_issued_total counter");
        if let Ok(m) = self.issued.lock() {
            for kind in ["bootstrap", "renew"] {
                let _ = writeln!(
                    s,
                    "mesh_control_certificates_issued_total{{kind=\"{kind}\"}} {}",
                    m.get(kind).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(s, "# HELP mesh_control_refusals_total Requests refused, by reason.\n# TYPE mesh_control_refusals_total counter");
        if let Ok(m) = self.refusals.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(s, "mesh_control_refusals_total{{reason=\"{k}\"}} {v}");
            }
        }
        let _ = writeln!(s, "# HELP mesh_control_config_reloads_total Configuration changes seen, by result.\n# TYPE mesh_control_config_reloads_total counter");
        if let Ok(m) = self.reloads.lock() {
            for r in ["applied", "refused"] {
                let _ = writeln!(
                    s,
                    "mesh_control_config_reloads_total{{result=\"{r}\"}} {}",
                    m.get(r).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(s, "# HELP mesh_control_config_acks_total Proxy acknowledgements, by outcome.\n# TYPE mesh_control_config_acks_total counter");
        if let Ok(m) = self.acks.lock() {
            for a in [true, false] {
                let _ = writeln!(
                    s,
                    "mesh_control_config_acks_total{{accepted=\"{a}\"}} {}",
                    m.get(&a).copied().unwrap_or(0)
                );
            }
        }
        self.latency.render(
            &mut s,
            "mesh_control_push_latency_seconds",
            "Time from a configuration change to its delivery to a waiting proxy.",
        );
        s
    }
}
