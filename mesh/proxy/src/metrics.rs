//! Prometheus metrics, rendered in the text exposition format 0.0.4.
//!
//! A small registry of counters, gauges and histograms keyed by label values; no global state,
//! one [`Metrics`] per proxy, shared by `Arc`.
//!
//! Some label values come from outside (a peer's SPIFFE ID, an upstream's status code), so the
//! number of series per metric is capped at [`MAX_SERIES`]: past it, new label sets are counted
//! in one series whose labels all read `_overflow`, and in
//! `mesh_proxy_metrics_series_overflow_total{metric}`. Memory stays bounded whatever peers send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
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

/// The metrics of one proxy.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
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
        self.with(|i| {
            let (g, overflowed) = i
                .gauges
                .entry(name)
                .or_insert_with(|| Family::new(help))
                .series_mut(l);
            *g = v;
            if overflowed {
                i.overflowed(name);
            }
        });
    }

    /// Adds `d` to a gauge.
    pub fn add(&self, name: &'static str, help: &'static str, l: &[(&'static str, &str)], d: f64) {
        self.with(|i| {
            let (g, overflowed) = i
                .gauges
                .entry(name)
                .or_insert_with(|| Family::new(help))
                .series_mut(l);
            *g += d;
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
        self.with(|i| {
            let mut s = String::new();
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
}
