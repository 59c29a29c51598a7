//! Per-sink metrics: counters kept with atomics, read as a [`SinkMetricsSnapshot`] that the
//! runtime turns into Prometheus series (`kmswatch_sink_sent_total{sink="splunk"}`...):
//! [`SERIES`] names every scalar series with its kind and help text, and
//! [`SinkMetricsSnapshot::values`] gives their values in the same order, so an exporter
//! loops over them instead of naming each field. Labels are the sink's name and type only:
//! never a URL or any other configured value.

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
    pub ack_timeouts: AtomicU64,
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
    /// Requests the destination took but did not acknowledge in time: HEC `ackId`s not
    /// reported within `ack_timeout_secs`, Kafka delivery reports that timed out (counter).
    pub ack_timeouts: u64,
    /// Items in requests taken and awaiting their acknowledgement (gauge; HEC with
    /// `indexer_ack`: at most `max_pending_acks × batch.max_events`; Kafka: messages in
    /// the producer).
    pub unacked_items: u64,
    /// Age of the oldest request awaiting its acknowledgement, seconds (gauge; 0: none, or
    /// not known for this sink type).
    pub oldest_unacked_age_secs: f64,
    /// The destination did not take or acknowledge a batch within its attempts: new items go
    /// to the spool until it acknowledges one again (gauge, 0 or 1).
    pub degraded: bool,
    /// Time from `deliver` to the destination's acknowledgement.
    pub acked_latency: LatencyHistogram,
}

/// A Prometheus series kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Every scalar per-sink series: (Prometheus name, kind, help). The exporter labels each
/// with `sink` and `type`; [`SinkMetricsSnapshot::values`] gives the values in this order.
/// The acked-latency histogram is `kmswatch_sink_acked_latency_seconds`
/// ([`LATENCY_BUCKETS_SECS`]).
pub const SERIES: [(&str, SeriesKind, &str); 11] = [
    ("kmswatch_sink_sent_total", SeriesKind::Counter, "Items the destination acknowledged, by sink and type."),
    ("kmswatch_sink_retried_total", SeriesKind::Counter, "Failed send attempts that were retried, by sink."),
    ("kmswatch_sink_failed_total", SeriesKind::Counter, "Items the destination rejected (sink dead-letter file), by sink."),
    ("kmswatch_sink_spooled_total", SeriesKind::Counter, "Items written to the sink's disk spool, by sink."),
    ("kmswatch_sink_spooled_bytes", SeriesKind::Gauge, "Bytes waiting in the sink's disk spool."),
    ("kmswatch_sink_spooled_items", SeriesKind::Gauge, "Items waiting in the sink's disk spool."),
    ("kmswatch_sink_oldest_spooled_age_seconds", SeriesKind::Gauge, "Age of the oldest spooled item (0: spool empty)."),
    ("kmswatch_sink_ack_timeouts_total", SeriesKind::Counter, "Requests the destination took but did not acknowledge in time (HEC ackId, Kafka delivery report), by sink."),
    ("kmswatch_sink_unacked_items", SeriesKind::Gauge, "Items in requests taken and awaiting the destination's acknowledgement."),
    ("kmswatch_sink_oldest_unacked_age_seconds", SeriesKind::Gauge, "Age of the oldest request awaiting its acknowledgement (0: none)."),
    ("kmswatch_sink_degraded", SeriesKind::Gauge, "1 while the destination does not take or acknowledge batches and new items go to the spool."),
];

impl SinkMetricsSnapshot {
    /// The values of [`SERIES`], in its order (same length by type).
    pub fn values(&self) -> [f64; SERIES.len()] {
        [
            self.sent as f64,
            self.retried as f64,
            self.failed as f64,
            self.spooled as f64,
            self.spooled_bytes as f64,
            self.spooled_items as f64,
            self.oldest_spooled_age_secs,
            self.ack_timeouts as f64,
            self.unacked_items as f64,
            self.oldest_unacked_age_secs,
            if self.degraded { 1.0 } else { 0.0 },
        ]
    }
}
