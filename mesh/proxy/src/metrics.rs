//! Prometheus metrics, rendered in the text exposition format 0.0.4.
//!
//! Two kinds of series, one registry per proxy (no global state, shared by `Arc`):
//! - **Hot-path series** are plain atomics, so a request or connection never takes a lock or
//!   builds a label string: TLS handshakes, open and rejected connections (fixed label sets,
//!   arrays indexed by enum), and request counts and latency histograms through
//!   [`RequestStats`] handles. A handle is registered once per label set — when a
//!   configuration is applied (outbound routes × endpoint identities) or when an inbound
//!   connection's peer identity is known — and then only incremented.
//! - **Other series** (ejections, retries, denials, configuration state, ...) are rare events
//!   and go through a small map behind a mutex ([`Metrics::inc`], [`Metrics::set`], ...).
//!
//! Some label values come from outside (a peer's SPIFFE ID, an upstream's status code), so the
//! number of label sets per metric is capped at [`MAX_SERIES`]: past it, new label sets are
//! counted in one series whose labels all read `_overflow`, and in
//! `mesh_proxy_metrics_series_overflow_total{metric}`. Memory stays bounded whatever peers send.
//! Series that never counted anything are not rendered.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency buckets (seconds).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Series per metric family before new label sets are folded into the `_overflow` series.
pub const MAX_SERIES: usize = 2048;

/// The label value of the series that collects label sets past [`MAX_SERIES`].
const OVERFLOW: &str = "_overflow";

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

struct Family<T> {
    help: &'static str,
    series: BTreeMap<Labels, T>,
}

impl<T: Default> Family<T> {
    fn new(help: &'static str) -> Self {
        Family {
            help,
            series: BTreeMap::new(),
        }
    }

    /// The series for `l`, or the overflow series when the family is full (the bool says so).
    fn series_mut(&mut self, l: &[(&'static str, &str)]) -> (&mut T, bool) {
        let key = labels(l);
        if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
            let over: Labels = l.iter().map(|(k, _)| (*k, OVERFLOW.to_string())).collect();
            return (self.series.entry(over).or_default(), true);
        }
        (self.series.entry(key).or_default(), false)
    }
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<&'static str, Family<u64>>,
    gauges: BTreeMap<&'static str, Family<f64>>,
    histograms: BTreeMap<&'static str, Family<Histogram>>,
}

/// Direction of a connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a peer into this workload.
    Inbound,
    /// From this workload to a peer.
    Outbound,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Outcome of a TLS handshake (label `result` of `mesh_proxy_tls_handshakes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeResult {
    /// Completed.
    Ok,
    /// Refused or failed.
    Error,
    /// Not finished within the handshake timeout.
    Timeout,
    /// A plaintext connection on a STRICT inbound listener.
    PlaintextRefused,
    /// The server's certificate is valid but carries another SPIFFE ID than expected.
    IdentityMismatch,
}

impl HandshakeResult {
    const ALL: [HandshakeResult; 5] = [
        HandshakeResult::Ok,
        HandshakeResult::Error,
        HandshakeResult::Timeout,
        HandshakeResult::PlaintextRefused,
        HandshakeResult::IdentityMismatch,
    ];
    fn as_str(self) -> &'static str {
        match self {
            HandshakeResult::Ok => "ok",
            HandshakeResult::Error => "error",
            HandshakeResult::Timeout => "timeout",
            HandshakeResult::PlaintextRefused => "plaintext_refused",
            HandshakeResult::IdentityMismatch => "identity_mismatch",
        }
    }
}

/// A listener (label `listener`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The inbound (mTLS) listener.
    Inbound,
    /// An explicit outbound listener.
    Outbound,
    /// The transparent outbound listener.
    Transparent,
}

impl Listener {
    const ALL: [Listener; 3] = [Listener::Inbound, Listener::Outbound, Listener::Transparent];
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Inbound => "inbound",
            Listener::Outbound => "outbound",
            Listener::Transparent => "transparent",
        }
    }
}

/// Status codes counted in an array slot each; others go to a small map.
const COMMON_CODES: [u16; 20] = [
    200, 201, 204, 206, 301, 302, 304, 307, 400, 401, 403, 404, 405, 408, 413, 429, 431, 500, 502,
    503,
];

/// Counts and latency of the requests of one label set (direction, route, peer identity),
/// updated with atomics only.
pub struct RequestStats {
    direction: Direction,
    route: String,
    peer_identity: String,
    common: [AtomicU64; COMMON_CODES.len()],
    other: Mutex<BTreeMap<u16, u64>>,
    /// Per bucket, not cumulative (one increment per observation); rendered cumulative.
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl std::fmt::Debug for RequestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStats")
            .field("route", &self.route)
            .field("peer_identity", &self.peer_identity)
            .finish_non_exhaustive()
    }
}

impl RequestStats {
    fn new(direction: Direction, route: &str, peer_identity: &str) -> Self {
        RequestStats {
            direction,
            route: route.to_string(),
            peer_identity: peer_identity.to_string(),
            common: Default::default(),
            other: Mutex::new(BTreeMap::new()),
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one request answered with `status` after `elapsed` (to response headers).
    pub fn record(&self, status: u16, elapsed: Duration) {
        match COMMON_CODES.iter().position(|c| *c == status) {
            Some(i) => {
                self.common[i].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                *self
                    .other
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(status)
                    .or_default() += 1;
            }
        }
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn codes(&self) -> BTreeMap<u16, u64> {
        let mut out = self.other.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (c, n) in COMMON_CODES.iter().zip(&self.common) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                out.insert(*c, n);
            }
        }
        out
    }
}

type StatsKey = (Direction, String, String);

#[derive(Default)]
struct StatsRegistry {
    by_key: HashMap<StatsKey, Arc<RequestStats>>,
    /// Registration order, for rendering.
    order: Vec<Arc<RequestStats>>,
    /// Per direction.
    overflow: [Option<Arc<RequestStats>>; 2],
}

/// The metrics of one proxy.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    handshakes: [[AtomicU64; HandshakeResult::ALL.len()]; Direction::ALL.len()],
    active: [AtomicI64; Listener::ALL.len()],
    active_seen: [AtomicBool; Listener::ALL.len()],
    rejected: [AtomicU64; Listener::ALL.len()],
    requests: Mutex<StatsRegistry>,
}

/// Keeps `mesh_proxy_connections_active` up to date for one connection: +1 now, −1 on drop.
#[derive(Debug)]
pub struct ActiveConnection {
    metrics: Arc<Metrics>,
    listener: Listener,
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.metrics.active[self.listener as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_labels(l: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

impl Inner {
    /// Counts a label set folded into the overflow series of `metric`.
    fn overflowed(&mut self, metric: &'static str) {
        let fam = self
            .counters
            .entry("mesh_proxy_metrics_series_overflow_total")
            .or_insert_with(|| {
                Family::new("Label sets folded into a metric's `_overflow` series because it reached its series cap.")
            });
        // One series per metric name: names are compile-time constants, so this stays small.
        *fam.series
            .entry(vec![("metric", metric.to_string())])
            .or_default() += 1;
    }
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            // A panic while holding the lock leaves plain numbers behind; keep counting.
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Counts a TLS handshake.
    pub fn handshake(&self, direction: Direction, result: HandshakeResult) {
        self.handshakes[direction as usize][result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed at once because the connection limit was reached.
    pub fn connection_rejected(&self, listener: Listener) {
        self.rejected[listener as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an open connection until the returned guard is dropped.
    pub fn connection_opened(self: &Arc<Self>, listener: Listener) -> ActiveConnection {
        self.active[listener as usize].fetch_add(1, Ordering::Relaxed);
        self.active_seen[listener as usize].store(true, Ordering::Relaxed);
        ActiveConnection {
            metrics: self.clone(),
            listener,
        }
    }

    /// The handle counting requests of one label set, registered on first use (off the request
    /// path: at configuration or connection time). Past [`MAX_SERIES`] label sets, the shared
    /// `_overflow` handle.
    pub fn request_stats(
        &self,
        direction: Direction,
        route: &str,
        peer_identity: &str,
    ) -> Arc<RequestStats> {
        let mut reg = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let key = (direction, route.to_string(), peer_identity.to_string());
        if let Some(s) = reg.by_key.get(&key) {
            return s.clone();
        }
        if reg.by_key.len() >= MAX_SERIES {
            drop(reg);
            self.with(|i| i.overflowed("mesh_proxy_requests_total"));
            let mut reg = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            let over = reg.overflow[direction as usize]
                .get_or_insert_with(|| Arc::new(RequestStats::new(direction, OVERFLOW, OVERFLOW)))
                .clone();
            return over;
        }
        let s = Arc::new(RequestStats::new(direction, route, peer_identity));
        reg.by_key.insert(key, s.clone());
        reg.order.push(s.clone());
        s
    }

    /// Adds `n` to a counter.
    pub fn inc_by(
        &self,
        name: &'static str,
        help: &'static str,
        l: &[(&'static str, &str)],
        n: u64,
    ) {
        self.with(|i| {
            let (v, overflowed) = i
                .counters
                .entry(name)
                .or_insert_with(|| Family::new(help))
                .series_mut(l);
            *v += n;
            if overflowed {
                i.overflowed(name);
            }
        });
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, help: &'static str, l: &[(&'static str, &str)]) {
        self.inc_by(name, help, l, 1);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, l: &[(&'static str, &str)], v: f64) {
        self.gauge(name, help, l, |g| *g = v);
    }

    /// Adds `d` to a gauge.
    pub fn add(&self, name: &'static str, help: &'static str, l: &[(&'static str, &str)], d: f64) {
        self.gauge(name, help, l, |g| *g += d);
    }

    /// Applies `f` to one series of a gauge (made on first use), counting an overflow.
    fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        l: &[(&'static str, &str)],
        f: impl FnOnce(&mut f64),
    ) {
        self.with(|i| {
            let (g, overflowed) = i
                .gauges
                .entry(name)
                .or_insert_with(|| Family::new(help))
                .series_mut(l);
            f(g);
            if overflowed {
                i.overflowed(name);
            }
        });
    }

    /// Records a duration in a histogram.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        l: &[(&'static str, &str)],
        d: Duration,
    ) {
        let secs = d.as_secs_f64();
        self.with(|i| {
            let (h, overflowed) = i
                .histograms
                .entry(name)
                .or_insert_with(|| Family::new(help))
                .series_mut(l);
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            for (b, c) in BUCKETS.iter().zip(h.counts.iter_mut()) {
                if secs <= *b {
                    *c += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
            if overflowed {
                i.overflowed(name);
            }
        });
    }

    fn render_hot(&self, s: &mut String) {
        // A family is rendered only once it has a sample, like the map-based ones.
        fn family(s: &mut String, name: &str, kind: &str, help: &str, body: &str) {
            if !body.is_empty() {
                let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
                s.push_str(body);
            }
        }
        let mut body = String::new();
        for d in Direction::ALL {
            for r in HandshakeResult::ALL {
                let n = self.handshakes[d as usize][r as usize].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        body,
                        "mesh_proxy_tls_handshakes_total{{direction=\"{}\",result=\"{}\"}} {n}",
                        d.as_str(),
                        r.as_str()
                    );
                }
            }
        }
        family(
            s,
            "mesh_proxy_tls_handshakes_total",
            "counter",
            "TLS handshakes by direction and result.",
            &body,
        );
        body.clear();
        for l in Listener::ALL {
            let n = self.rejected[l as usize].load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    body,
                    "mesh_proxy_connections_rejected_total{{listener=\"{}\"}} {n}",
                    l.as_str()
                );
            }
        }
        family(
            s,
            "mesh_proxy_connections_rejected_total",
            "counter",
            "Connections closed at once because the connection limit was reached.",
            &body,
        );
        body.clear();
        for l in Listener::ALL {
            if self.active_seen[l as usize].load(Ordering::Relaxed) {
                let n = self.active[l as usize].load(Ordering::Relaxed);
                let _ = writeln!(
                    body,
                    "mesh_proxy_connections_active{{listener=\"{}\"}} {n}",
                    l.as_str()
                );
            }
        }
        family(
            s,
            "mesh_proxy_connections_active",
            "gauge",
            "Open connections.",
            &body,
        );
        let stats: Vec<Arc<RequestStats>> = {
            let reg = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            reg.order
                .iter()
                .chain(reg.overflow.iter().flatten())
                .filter(|r| r.count.load(Ordering::Relaxed) > 0)
                .cloned()
                .collect()
        };
        let labels = |r: &RequestStats| {
            format!(
                "direction=\"{}\",route=\"{}\",peer_identity=\"{}\"",
                r.direction.as_str(),
                escape(&r.route),
                escape(&r.peer_identity)
            )
        };
        body.clear();
        for r in &stats {
            let l = labels(r);
            for (code, n) in r.codes() {
                let _ = writeln!(body, "mesh_proxy_requests_total{{{l},code=\"{code}\"}} {n}");
            }
        }
        family(
            s,
            "mesh_proxy_requests_total",
            "counter",
            "HTTP requests by direction, route, peer identity and status.",
            &body,
        );
        body.clear();
        let name = "mesh_proxy_request_duration_seconds";
        for r in &stats {
            let l = labels(r);
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(&r.buckets) {
                cumulative += c.load(Ordering::Relaxed);
                let _ = writeln!(body, "{name}_bucket{{{l},le=\"{b}\"}} {cumulative}");
            }
            let count = r.count.load(Ordering::Relaxed);
            let _ = writeln!(body, "{name}_bucket{{{l},le=\"+Inf\"}} {count}");
            let sum = r.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(body, "{name}_sum{{{l}}} {sum}");
            let _ = writeln!(body, "{name}_count{{{l}}} {count}");
        }
        family(
            s,
            name,
            "histogram",
            "HTTP request latency (to response headers) by direction, route and peer identity.",
            &body,
        );
    }

    /// Reads a counter (tests and health).
    pub fn counter(&self, name: &str, l: &[(&'static str, &str)]) -> u64 {
        let key = labels(l);
        self.with(|i| {
            i.counters
                .get(name)
                .and_then(|f| f.series.get(&key).copied())
                .unwrap_or(0)
        })
    }

    /// Renders everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut hot = String::new();
        self.render_hot(&mut hot);
        self.with(|i| {
            let mut s = hot;
            for (name, fam) in &i.counters {
                let _ = writeln!(s, "# HELP {name} {}\n# TYPE {name} counter", fam.help);
                for (l, v) in &fam.series {
                    let _ = writeln!(s, "{name}{} {v}", render_labels(l, None));
                }
            }
            for (name, fam) in &i.gauges {
                let _ = writeln!(s, "# HELP {name} {}\n# TYPE {name} gauge", fam.help);
                for (l, v) in &fam.series {
                    let _ = writeln!(s, "{name}{} {v}", render_labels(l, None));
                }
            }
            for (name, fam) in &i.histograms {
                let _ = writeln!(s, "# HELP {name} {}\n# TYPE {name} histogram", fam.help);
                for (l, h) in &fam.series {
                    for (b, c) in BUCKETS.iter().zip(&h.counts) {
                        let _ = writeln!(
                            s,
                            "{name}_bucket{} {c}",
                            render_labels(l, Some(("le", b.to_string())))
                        );
                    }
                    let _ = writeln!(
                        s,
                        "{name}_bucket{} {}",
                        render_labels(l, Some(("le", "+Inf".into()))),
                        h.count
                    );
                    let _ = writeln!(s, "{name}_sum{} {}", render_labels(l, None), h.sum);
                    let _ = writeln!(s, "{name}_count{} {}", render_labels(l, None), h.count);
                }
            }
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Histograms are cumulative and label values are escaped.
    #[test]
    fn renders_cumulative_buckets_and_escapes() {
        let m = Metrics::default();
        m.observe("lat", "h", &[("route", "a\"b")], Duration::from_millis(3));
        m.inc("req", "c", &[("code", "200")]);
        let out = m.render();
        assert!(
            out.contains("lat_bucket{route=\"a\\\"b\",le=\"0.005\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("lat_bucket{route=\"a\\\"b\",le=\"0.001\"} 0"),
            "{out}"
        );
        assert!(out.contains("req{code=\"200\"} 1"), "{out}");
    }

    /// Label values from peers (identities, status codes) cannot grow a metric past
    /// MAX_SERIES: extra label sets land in the `_overflow` series and are counted.
    #[test]
    fn series_per_metric_are_capped() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 500 {
            let id = format!("spiffe://other.test/attacker/{i}");
            m.inc("req", "c", &[("peer_identity", &id), ("code", "200")]);
            m.observe(
                "lat",
                "h",
                &[("peer_identity", &id)],
                Duration::from_millis(1),
            );
        }
        m.inc(
            "req",
            "c",
            &[
                ("peer_identity", "spiffe://other.test/attacker/0"),
                ("code", "200"),
            ],
        );
        let out = m.render();
        let req_series = out.lines().filter(|l| l.starts_with("req{")).count();
        assert_eq!(req_series, MAX_SERIES + 1, "cap plus the overflow series");
        assert_eq!(
            m.counter(
                "req",
                &[("peer_identity", "_overflow"), ("code", "_overflow")]
            ),
            500
        );
        assert_eq!(
            m.counter(
                "req",
                &[
                    ("peer_identity", "spiffe://other.test/attacker/0"),
                    ("code", "200")
                ]
            ),
            2,
            "existing series keep counting"
        );
        assert_eq!(
            m.counter(
                "mesh_proxy_metrics_series_overflow_total",
                &[("metric", "lat")]
            ),
            500
        );
        assert!(
            out.contains("lat_count{peer_identity=\"_overflow\"} 500"),
            "{out}"
        );
    }

    /// Hot-path series: request handles count by status and render cumulative buckets with
    /// the contract's label order; handshake and connection series appear once counted; a
    /// dropped connection guard decrements the gauge; handles past MAX_SERIES share the
    /// `_overflow` handle of their direction.
    #[test]
    fn hot_path_series() {
        let m = Arc::new(Metrics::default());
        let out = m.render();
        assert!(!out.contains("mesh_proxy_tls_handshakes_total"), "{out}");
        assert!(!out.contains("mesh_proxy_requests_total"), "{out}");
        let h = m.request_stats(Direction::Inbound, "inbound", "spiffe://td/a");
        assert!(Arc::ptr_eq(
            &h,
            &m.request_stats(Direction::Inbound, "inbound", "spiffe://td/a")
        ));
        h.record(200, Duration::from_micros(700));
        h.record(200, Duration::from_millis(30));
        h.record(599, Duration::from_secs(20));
        m.handshake(Direction::Outbound, HandshakeResult::IdentityMismatch);
        m.connection_rejected(Listener::Inbound);
        let guard = m.connection_opened(Listener::Outbound);
        let out = m.render();
        let l = "direction=\"inbound\",route=\"inbound\",peer_identity=\"spiffe://td/a\"";
        for want in [
            format!("mesh_proxy_requests_total{{{l},code=\"200\"}} 2"),
            format!("mesh_proxy_requests_total{{{l},code=\"599\"}} 1"),
            format!("mesh_proxy_request_duration_seconds_bucket{{{l},le=\"0.0005\"}} 0"),
            format!("mesh_proxy_request_duration_seconds_bucket{{{l},le=\"0.001\"}} 1"),
            format!("mesh_proxy_request_duration_seconds_bucket{{{l},le=\"0.05\"}} 2"),
            format!("mesh_proxy_request_duration_seconds_bucket{{{l},le=\"10\"}} 2"),
            format!("mesh_proxy_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 3"),
            format!("mesh_proxy_request_duration_seconds_count{{{l}}} 3"),
            "mesh_proxy_tls_handshakes_total{direction=\"outbound\",result=\"identity_mismatch\"} 1".into(),
            "mesh_proxy_connections_rejected_total{listener=\"inbound\"} 1".into(),
            "mesh_proxy_connections_active{listener=\"outbound\"} 1".into(),
        ] {
            assert!(out.contains(&want), "missing {want}:\n{out}");
        }
        assert!(!out.contains("result=\"ok\""), "{out}");
        drop(guard);
        assert!(m
            .render()
            .contains("mesh_proxy_connections_active{listener=\"outbound\"} 0"));
        for i in 0..MAX_SERIES + 10 {
            m.request_stats(Direction::Inbound, "inbound", &format!("spiffe://x/{i}"))
                .record(200, Duration::from_millis(1));
        }
        let out = m.render();
        let series = out
            .lines()
            .filter(|l| l.starts_with("mesh_proxy_requests_total{"))
            .count();
        // MAX_SERIES label sets (the first counted two codes) plus the overflow series.
        assert_eq!(series, MAX_SERIES + 2, "cap plus the overflow series");
        assert!(out.contains(
            "mesh_proxy_requests_total{direction=\"inbound\",route=\"_overflow\",peer_identity=\"_overflow\",code=\"200\"} 11"
        ), "{out}");
    }
}
