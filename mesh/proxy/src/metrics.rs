//! Prometheus metrics, rendered in the text exposition format 0.0.4.
//!
//! A small registry of counters, gauges and histograms keyed by label values; no global state,
//! one [`Metrics`] per proxy, shared by `Arc`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency buckets (seconds).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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
            let fam = i.counters.entry(name).or_insert_with(|| Family {
                help,
                series: BTreeMap::new(),
            });
            *fam.series.entry(labels(l)).or_default() += n;
        });
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, help: &'static str, l: &[(&'static str, &str)]) {
        self.inc_by(name, help, l, 1);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, l: &[(&'static str, &str)], v: f64) {
        self.with(|i| {
            let fam = i.gauges.entry(name).or_insert_with(|| Family {
                help,
                series: BTreeMap::new(),
            });
            fam.series.insert(labels(l), v);
        });
    }

    /// Adds `d` to a gauge.
    pub fn add(&self, name: &'static str, help: &'static str, l: &[(&'static str, &str)], d: f64) {
        self.with(|i| {
            let fam = i.gauges.entry(name).or_insert_with(|| Family {
                help,
                series: BTreeMap::new(),
            });
            *fam.series.entry(labels(l)).or_default() += d;
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
            let fam = i.histograms.entry(name).or_insert_with(|| Family {
                help,
                series: BTreeMap::new(),
            });
            let h = fam.series.entry(labels(l)).or_default();
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
}
