//! Prometheus metrics, rendered in the text exposition format by `/metrics`.
//!
//! A small registry (no external crate): counters, gauges and histograms keyed by metric name
//! and a label set. Stages aggregate per batch and update the registry once per batch, so the
//! lock is taken a few times per batch, never per event.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

/// Latency buckets, seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Event-time lag buckets, seconds (CloudTrail delivers within minutes; replays lag days).
pub const LAG_BUCKETS: &[f64] = &[
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 21_600.0, 86_400.0, 604_800.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }
    fn observe(&mut self, v: f64, n: u64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += n;
            }
        }
        self.sum += v * n as f64;
        self.count += n;
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (name, labels) -> value
    counters: BTreeMap<(String, String), f64>,
    gauges: BTreeMap<(String, String), f64>,
    histograms: BTreeMap<(String, String), Histogram>,
    help: BTreeMap<String, (&'static str, &'static str)>,
}

/// A function that refreshes metrics kept elsewhere (the sinks' counters) before rendering.
type Collector = Arc<dyn Fn(&Metrics) + Send + Sync>;

#[derive(Clone, Default)]
struct Collectors(Arc<Mutex<Vec<Collector>>>);

impl std::fmt::Debug for Collectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collectors")
    }
}

/// The registry; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    collectors: Collectors,
}

fn labels(l: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declare a metric's help text and type (`counter`, `gauge`, `histogram`).
    pub fn describe(&self, name: &str, kind: &'static str, help: &'static str) {
        self.lock().help.insert(name.to_string(), (kind, help));
    }

    /// Add `v` to a counter.
    pub fn add(&self, name: &str, l: &[(&str, &str)], v: f64) {
        *self
            .lock()
            .counters
            .entry((name.to_string(), labels(l)))
            .or_default() += v;
    }

    /// Set a gauge.
    pub fn set(&self, name: &str, l: &[(&str, &str)], v: f64) {
        self.lock().gauges.insert((name.to_string(), labels(l)), v);
    }

    /// Observe `v` `n` times in a histogram with `bounds`.
    pub fn observe(&self, name: &str, l: &[(&str, &str)], bounds: &'static [f64], v: f64, n: u64) {
        self.lock()
            .histograms
            .entry((name.to_string(), labels(l)))
            .or_insert_with(|| Histogram::new(bounds))
            .observe(v, n);
    }

    /// Set a counter kept elsewhere (a monotonic total read from another component).
    pub fn set_counter(&self, name: &str, l: &[(&str, &str)], v: f64) {
        self.lock()
            .counters
            .insert((name.to_string(), labels(l)), v);
    }

    /// Set a histogram kept elsewhere: `cumulative[i]` observations `<= bounds[i]`, `count` in
    /// all (the `+Inf` bucket), `sum` of the observations.
    pub fn set_histogram(
        &self,
        name: &str,
        l: &[(&str, &str)],
        bounds: &'static [f64],
        cumulative: &[u64],
        count: u64,
        sum: f64,
    ) {
        let mut h = Histogram::new(bounds);
        for (c, v) in h.counts.iter_mut().zip(cumulative) {
            *c = *v;
        }
        h.count = count;
        h.sum = sum;
        self.lock()
            .histograms
            .insert((name.to_string(), labels(l)), h);
    }

    /// Call `f` before every render (to copy in metrics another component keeps).
    pub fn add_collector(&self, f: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.collectors
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    /// A counter's value (tests, summaries).
    #[allow(dead_code)] // used by tests and the scale-out mode
    pub fn counter(&self, name: &str, l: &[(&str, &str)]) -> f64 {
        self.lock()
            .counters
            .get(&(name.to_string(), labels(l)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let collectors: Vec<Collector> = self
            .collectors
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for c in collectors {
            c(self);
        }
        let g = self.lock();
        let mut out = String::new();
        let header = |out: &mut String, name: &str, default_kind: &str| {
            let (kind, help) = g.help.get(name).copied().unwrap_or((default_kind, ""));
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let mut last = String::new();
        for ((name, l), v) in &g.counters {
            if *name != last {
                header(&mut out, name, "counter");
                last.clone_from(name);
            }
            let _ = writeln!(out, "{name}{{{l}}} {v}");
        }
        for ((name, l), v) in &g.gauges {
            if *name != last {
                header(&mut out, name, "gauge");
                last.clone_from(name);
            }
            let _ = writeln!(out, "{name}{{{l}}} {v}");
        }
        for ((name, l), h) in &g.histograms {
            if *name != last {
                header(&mut out, name, "histogram");
                last.clone_from(name);
            }
            let sep = if l.is_empty() { "" } else { "," };
            for (b, c) in h.bounds.iter().zip(&h.counts) {
                let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{b}\"}} {c}");
            }
            let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
        }
        out
    }
}

/// Export a sink set's metrics (copied at every scrape).
pub fn export_sink_metrics(m: &Metrics, set: std::sync::Arc<kmswatch_sinks::SinkSet>) {
    m.add_collector(move |m| {
        for s in set.metrics() {
            let l = [("sink", s.sink.as_str()), ("type", s.sink_type)];
            for ((name, kind, _), v) in kmswatch_sinks::metrics::SERIES.iter().zip(s.values()) {
                match kind {
                    kmswatch_sinks::metrics::SeriesKind::Counter => m.set_counter(name, &l, v),
                    kmswatch_sinks::metrics::SeriesKind::Gauge => m.set(name, &l, v),
                }
            }
            let cum: Vec<u64> = s.acked_latency.buckets.iter().map(|(_, c)| *c).collect();
            m.set_histogram(
                "kmswatch_sink_acked_latency_seconds",
                &l,
                &kmswatch_sinks::metrics::LATENCY_BUCKETS_SECS,
                &cum,
                s.acked_latency.count,
                s.acked_latency.sum_secs,
            );
        }
    });
}

/// Declare every metric the runtime emits (one place to read them all).
pub fn describe_all(m: &Metrics) {
    for (name, kind, help) in [
        (
            "kmswatch_source_batches_total",
            "counter",
            "Batches read, by source.",
        ),
        (
            "kmswatch_source_bytes_total",
            "counter",
            "Bytes read, by source.",
        ),
        (
            "kmswatch_source_skipped_total",
            "counter",
            "What a source passed over on purpose because it is not data (s3_test_event, cloudtrail_digest), by source and reason.",
        ),
        (
            "kmswatch_source_errors_total",
            "counter",
            "Source errors, by source.",
        ),
        (
            "kmswatch_source_acked_total",
            "counter",
            "Batches acknowledged upstream, by source and outcome (ack, reject, retry).",
        ),
        (
            "kmswatch_records_total",
            "counter",
            "Records normalized, by source, format and outcome (event, skipped, rejected).",
        ),
        (
            "kmswatch_dead_letters_total",
            "counter",
            "Objects or records written to the dead-letter file, by source and reason.",
        ),
        (
            "kmswatch_events_duplicate_total",
            "counter",
            "Events dropped as already seen (metadata.uid within the dedup TTL), by source.",
        ),
        (
            "kmswatch_events_late_total",
            "counter",
            "Events older than their stream's watermark.",
        ),
        (
            "kmswatch_rule_findings_total",
            "counter",
            "Findings emitted, by rule.",
        ),
        (
            "kmswatch_sink_delivered_total",
            "counter",
            "Findings handed to the sinks (accepted by every routed sink at the next checkpoint).",
        ),
        (
            "kmswatch_sink_errors_total",
            "counter",
            "Items a sink refused: kind=retryable (spool not writable, retried), rejected (dead-lettered by the sink), encode.",
        ),
        (
            "kmswatch_sink_latency_seconds",
            "histogram",
            "Time to hand a batch of findings to the sinks (waits while a spool is full).",
        ),
        (
            "kmswatch_sink_acked_latency_seconds",
            "histogram",
            "From delivery to the destination's acknowledgement, by sink.",
        ),
        (
            "kmswatch_respond_steps_total",
            "counter",
            "Response audit records, by phase and outcome.",
        ),
        (
            "kmswatch_respond_findings_total",
            "counter",
            "Findings raised by the responder (failed action, blast-radius halt), by rule.",
        ),
        (
            "kmswatch_respond_timeouts_total",
            "counter",
            "Playbook runs abandoned after the response timeout.",
        ),
        (
            "kmswatch_respond_queue",
            "gauge",
            "Findings waiting for the responder.",
        ),
        (
            "kmswatch_end_to_end_seconds",
            "histogram",
            "From batch received to its findings delivered and checkpointed, by source.",
        ),
        (
            "kmswatch_event_lag_seconds",
            "histogram",
            "Event-time lag: now - event time, by source.",
        ),
        (
            "kmswatch_watermark_ms",
            "gauge",
            "Event-time watermark (epoch ms), by stream.",
        ),
        (
            "kmswatch_checkpoints_total",
            "counter",
            "Checkpoints written.",
        ),
        (
            "kmswatch_checkpoint_seconds",
            "histogram",
            "Checkpoint write time.",
        ),
        (
            "kmswatch_engine_state_bytes",
            "gauge",
            "Approximate size of the engine's windows and baselines.",
        ),
        (
            "kmswatch_dedup_entries",
            "gauge",
            "Event ids remembered for de-duplication.",
        ),
        (
            "kmswatch_ready",
            "gauge",
            "1 once state is restored and sources are open.",
        ),
        (
            "kmswatch_server_accept_errors_total",
            "counter",
            "Connections the metrics listener failed to accept (out of file descriptors?); it backs off.",
        ),
        (
            "kmswatch_server_auth_failures_total",
            "counter",
            "Requests for /metrics refused for a missing or wrong bearer token.",
        ),
    ] {
        m.describe(name, kind, help);
    }
    // The sinks' own series, with their kinds and help, from the one list the sinks keep.
    for (name, kind, help) in kmswatch_sinks::metrics::SERIES {
        let kind = match kind {
            kmswatch_sinks::metrics::SeriesKind::Counter => "counter",
            kmswatch_sinks::metrics::SeriesKind::Gauge => "gauge",
        };
        m.describe(name, kind, help);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_histograms() {
        let m = Metrics::default();
        describe_all(&m);
        m.add("kmswatch_source_batches_total", &[("source", "ct")], 2.0);
        m.add("kmswatch_source_batches_total", &[("source", "ct")], 1.0);
        m.set("kmswatch_watermark_ms", &[("stream", "k/t/0")], 42.0);
        m.observe(
            "kmswatch_event_lag_seconds",
            &[("source", "ct")],
            LAG_BUCKETS,
            5.0,
            3,
        );
        let t = m.render();
        assert!(
            t.contains("kmswatch_source_batches_total{source=\"ct\"} 3"),
            "{t}"
        );
        assert!(t.contains("# TYPE kmswatch_watermark_ms gauge"), "{t}");
        assert!(
            t.contains("kmswatch_watermark_ms{stream=\"k/t/0\"} 42"),
            "{t}"
        );
        assert!(
            t.contains("kmswatch_event_lag_seconds_bucket{source=\"ct\",le=\"1\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("kmswatch_event_lag_seconds_bucket{source=\"ct\",le=\"10\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("kmswatch_event_lag_seconds_count{source=\"ct\"} 3"),
            "{t}"
        );
        assert_eq!(
            m.counter("kmswatch_source_batches_total", &[("source", "ct")]),
            3.0
        );
    }
}
