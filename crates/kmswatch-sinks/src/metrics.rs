//! Per-sink metrics: counters kept with atomics, read as a [`SinkMetricsSnapshot`] that the
//! runtime turns into Prometheus series (`kmswatch_sink_sent_total{sink="splunk"}`...).

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the acked-latency histogram buckets, seconds.
pub const LATENCY_BUCKETS_SECS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
];

/// Live counters of one sink.
#[derive(Debug, Default)]
pub(crate) struct SinkMetrics {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub spooled: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_SECS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl SinkMetrics {
    pub fn observe_latency_ms(&self, ms: i64) {
        let secs = ms.max(0) as f64 / 1000.0;
        for (i, le) in LATENCY_BUCKETS_SECS.iter().enumerate() {
            if secs <= *le {
                if let Some(b) = self.buckets.get(i) {
                    b.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((ms.max(0) as u64).saturating_mul(1000), Ordering::Relaxed);
    }

    pub fn histogram(&self) -> LatencyHistogram {
        let mut cum = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_SECS.len());
        for (i, le) in LATENCY_BUCKETS_SECS.iter().enumerate() {
            cum += self
                .buckets
                .get(i)
                .map(|b| b.load(Ordering::Relaxed))
                .unwrap_or(0);
            buckets.push((*le, cum));
        }
        LatencyHistogram {
            buckets,
            count: self.latency_count.load(Ordering::Relaxed),
            sum_secs: self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A Prometheus-style histogram: cumulative counts per upper bound.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// `(le seconds, cumulative count)`; observations above the last bound count only in
    /// `count` (the `+Inf` bucket).
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of observations, seconds.
    pub sum_secs: f64,
}

/// One sink's metrics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkMetricsSnapshot {
    /// Sink name.
    pub sink: String,
    /// Sink type (`splunk_hec`).
    pub sink_type: &'static str,
    /// Items the destination acknowledged (counter; a redelivery counts again).
    pub sent: u64,
    /// Failed attempts that were retried (counter, per batch attempt).
    pub retried: u64,
    /// Items the destination rejected and that went to the dead-letter file (counter).
    pub failed: u64,
    /// Items written to the spool (counter).
    pub spooled: u64,
    /// Bytes waiting in the spool (gauge).
    pub spooled_bytes: u64,
    /// Items waiting in the spool (gauge).
    pub spooled_items: u64,
    /// Age of the oldest spooled item, seconds (gauge; 0 when the spool is empty).
    pub oldest_spooled_age_secs: f64,
    /// Time from `deliver` to the destination's acknowledgement.
    pub acked_latency: LatencyHistogram,
}
