//! Ingest events: each notable event is logged and counted in one place, and rendered in the
//! Prometheus text format for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed upper bounds, lock-free.
struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        if let Some(index) = self.bounds.iter().position(|bound| value <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((value * 1_000_000.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0,
];

pub struct IngestMetrics {
    accepted: AtomicU64,
    duplicate: AtomicU64,
    rejected: AtomicU64,
    overloaded: AtomicU64,
    commit_failures: AtomicU64,
    queued_readings: AtomicU64,
    commit_latency: Histogram,
    commit_batch: Histogram,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics {
            accepted: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            queued_readings: AtomicU64::new(0),
            commit_latency: Histogram::new(LATENCY_BOUNDS),
            commit_batch: Histogram::new(BATCH_BOUNDS),
        }
    }
}

impl IngestMetrics {
    pub(crate) fn committed(&self, readings: usize, accepted: u64, duplicate: u64, took: Duration) {
        self.accepted.fetch_add(accepted, Ordering::Relaxed);
        self.duplicate.fetch_add(duplicate, Ordering::Relaxed);
        self.commit_latency.observe(took.as_secs_f64());
        self.commit_batch.observe(readings as f64);
        tracing::trace!(
            readings,
            accepted,
            duplicate,
            micros = took.as_micros() as u64,
            "group commit"
        );
    }

    pub(crate) fn rejected(&self, count: u64) {
        self.rejected.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn overloaded(&self, readings: usize) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(readings, "ingest queue full; answered overloaded");
    }

    pub(crate) fn commit_failed(&self, error: &dyn std::fmt::Display) {
        self.commit_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%error, "group commit failed; nothing in it was acknowledged");
    }

    pub(crate) fn queue_changed(&self, delta: i64) {
        if delta >= 0 {
            self.queued_readings
                .fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.queued_readings
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every ingest metric.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP audrey_ingest_readings_total Readings by outcome.\n# TYPE audrey_ingest_readings_total counter"
        );
        for (outcome, counter) in [
            ("accepted", &self.accepted),
            ("duplicate", &self.duplicate),
            ("rejected", &self.rejected),
        ] {
            let _ = writeln!(
                out,
                "audrey_ingest_readings_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        for (name, help, counter) in [
            (
                "audrey_ingest_overloaded_total",
                "Requests answered overloaded.",
                &self.overloaded,
            ),
            (
                "audrey_ingest_commit_failures_total",
                "Group commits that failed.",
                &self.commit_failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP audrey_ingest_queue_readings Readings waiting for or in a commit.\n# TYPE audrey_ingest_queue_readings gauge\naudrey_ingest_queue_readings {}",
            self.queued_readings.load(Ordering::Relaxed)
        );
        self.commit_latency.render(
            out,
            "audrey_ingest_commit_seconds",
            "Time one group commit took.",
        );
        self.commit_batch.render(
            out,
            "audrey_ingest_commit_batch_readings",
            "Readings per group commit.",
        );
    }
}
