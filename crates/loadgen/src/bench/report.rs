//! What a benchmark measured and how workers add up their share of it; [`table`] prints it.

mod table;

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::delivery::Delivery;

/// Latencies are recorded in microseconds; an hour is far beyond any request we would wait for.
const LONGEST_RECORDABLE_MICROS: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// The outcome of one benchmark scenario. Serialized for `--json` with durations as numbers
/// (`elapsed_seconds`, `p50_ms`, …) so the output can be compared by a script.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    pub scenario: String,
    pub workers: usize,
    /// Requests each worker was given, for scenarios that fix it (the matrix); total planned
    /// requests are `workers * requests_per_worker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_worker: Option<u64>,
    /// The rate requests were scheduled at (`bench matrix --rate`); latencies then run from
    /// each request's due time. Absent when workers sent as fast as they were answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_requests_per_second: Option<f64>,
    /// Requests the server answered (for the raw store: transactions committed).
    pub requests: u64,
    /// Readings the server stored or recognised as duplicates (query: readings returned).
    pub readings: u64,
    /// Requests that failed or whose answer was wrong; a run with errors measures the wrong thing.
    pub errors: u64,
    /// 503 (or 429) answers that were waited out and resent; not errors, but a sign of overload.
    pub retries: u64,
    /// Readings the server refused one by one inside answered requests.
    pub rejected_readings: u64,
    #[serde(rename = "elapsed_seconds", serialize_with = "super::seconds")]
    pub elapsed: Duration,
    pub requests_per_second: f64,
    pub readings_per_second: f64,
    #[serde(rename = "p50_ms", serialize_with = "milliseconds")]
    pub p50: Duration,
    #[serde(rename = "p90_ms", serialize_with = "milliseconds")]
    pub p90: Duration,
    #[serde(rename = "p99_ms", serialize_with = "milliseconds")]
    pub p99: Duration,
    #[serde(rename = "max_ms", serialize_with = "milliseconds")]
    pub max: Duration,
    /// The server process's user + system CPU time during the timed part, when its pid was given.
    pub server_cpu_seconds: Option<f64>,
    /// Readings (for queries: rows) per second of server CPU: what the work cost, whatever the
    /// wall clock said. Absent without a server pid.
    pub readings_per_server_cpu_second: Option<f64>,
    /// What the first error was, so a failed run says why and not only how often.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl BenchReport {
    /// The report of a scenario that could not run at all (no connection, nothing to query), so
    /// a run of several scenarios still shows the others and says why this one is empty.
    pub fn failed(scenario: &str, workers: usize, why: String) -> anyhow::Result<BenchReport> {
        let mut tally = Tally::new()?;
        tally.record_error(|| why);
        Ok(tally.into_report(scenario, workers, Duration::ZERO, None))
    }
}

fn milliseconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

/// One worker's share of a run; workers merge theirs at the end, so nothing is shared while timing.
#[derive(Clone, Debug)]
pub struct Tally {
    latencies: Histogram<u64>,
    pub requests: u64,
    pub readings: u64,
    pub errors: u64,
    pub retries: u64,
    pub rejected_readings: u64,
    pub first_error: Option<String>,
}

impl Tally {
    pub fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            latencies: Histogram::new_with_bounds(
                1,
                LONGEST_RECORDABLE_MICROS,
                SIGNIFICANT_DIGITS,
            )?,
            requests: 0,
            readings: 0,
            errors: 0,
            retries: 0,
            rejected_readings: 0,
            first_error: None,
        })
    }

    pub fn record_latency(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latencies.saturating_record(micros);
    }

    pub fn record_error(&mut self, error: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error());
        }
    }

    /// Adds one batch's delivery; `readings_sent` lets us notice an answer that lost readings.
    pub fn record_delivery(&mut self, delivery: Delivery, readings_sent: usize) {
        self.retries += delivery.overloaded_retries;
        self.errors += delivery.failed_attempts;
        if self.first_error.is_none() {
            self.first_error = delivery.last_failure;
        }
        let Some(summary) = delivery.summary else {
            return;
        };
        self.requests += 1;
        if let Some(latency) = delivery.answered_in {
            self.record_latency(latency);
        }
        self.readings += summary.accepted + summary.duplicates;
        self.rejected_readings += summary.rejected;
        if summary.answered() != readings_sent as u64 {
            self.record_error(|| {
                format!(
                    "the server answered for {} readings of a batch of {readings_sent}",
                    summary.answered()
                )
            });
        }
    }

    pub fn merge(&mut self, other: Tally) {
        // Both histograms share bounds, so adding cannot fail; keep counting if it somehow does.
        let _ = self.latencies.add(&other.latencies);
        self.requests += other.requests;
        self.readings += other.readings;
        self.errors += other.errors;
        self.retries += other.retries;
        self.rejected_readings += other.rejected_readings;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn into_report(
        self,
        scenario: &str,
        workers: usize,
        elapsed: Duration,
        server_cpu_seconds: Option<f64>,
    ) -> BenchReport {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let quantile = |quantile: f64| {
            if self.latencies.is_empty() {
                Duration::ZERO
            } else {
                Duration::from_micros(self.latencies.value_at_quantile(quantile))
            }
        };
        BenchReport {
            scenario: scenario.to_string(),
            workers,
            requests_per_worker: None,
            target_requests_per_second: None,
            requests: self.requests,
            readings: self.readings,
            errors: self.errors,
            retries: self.retries,
            rejected_readings: self.rejected_readings,
            elapsed,
            requests_per_second: self.requests as f64 / seconds,
            readings_per_second: self.readings as f64 / seconds,
            p50: quantile(0.50),
            p90: quantile(0.90),
            p99: quantile(0.99),
            max: if self.latencies.is_empty() {
                Duration::ZERO
            } else {
                Duration::from_micros(self.latencies.max())
            },
            server_cpu_seconds,
            readings_per_server_cpu_second: server_cpu_seconds
                .filter(|cpu_seconds| *cpu_seconds > 0.0)
                .map(|cpu_seconds| self.readings as f64 / cpu_seconds),
            first_error: self.first_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IngestSummary;

    fn sample_report() -> BenchReport {
        let mut tally = Tally::new().unwrap();
        for millis in 1..=100 {
            tally.record_latency(Duration::from_millis(millis));
        }
        tally.requests = 100;
        tally.readings = 100_000;
        tally.into_report("http-ingest", 8, Duration::from_secs(2), Some(1.5))
    }

    #[test]
    fn quantiles_and_rates_come_from_the_recorded_latencies() {
        let report = sample_report();
        assert_eq!(report.readings_per_second, 50_000.0);
        assert_eq!(report.requests_per_second, 50.0);
        let p50 = report.p50.as_secs_f64() * 1000.0;
        assert!((49.9..50.2).contains(&p50), "p50 {p50}");
        let max = report.max.as_secs_f64() * 1000.0;
        assert!((99.9..100.2).contains(&max), "max {max}");
    }

    #[test]
    fn readings_per_server_cpu_second_needs_the_cpu_time() {
        assert_eq!(
            sample_report().readings_per_server_cpu_second,
            Some(100_000.0 / 1.5)
        );
        let mut tally = Tally::new().unwrap();
        tally.readings = 10;
        let without_pid = tally
            .clone()
            .into_report("x", 1, Duration::from_secs(1), None);
        assert_eq!(without_pid.readings_per_server_cpu_second, None);
        let idle = tally.into_report("x", 1, Duration::from_secs(1), Some(0.0));
        assert_eq!(idle.readings_per_server_cpu_second, None);
    }

    #[test]
    fn an_answer_that_misses_readings_is_an_error() {
        let mut tally = Tally::new().unwrap();
        let delivery = Delivery {
            summary: Some(IngestSummary {
                accepted: 9,
                duplicates: 0,
                rejected: 0,
            }),
            answered_in: Some(Duration::from_millis(3)),
            ..Delivery::default()
        };
        tally.record_delivery(delivery, 10);
        assert_eq!((tally.requests, tally.readings, tally.errors), (1, 9, 1));
    }

    #[test]
    fn the_json_form_names_its_units() {
        let json = serde_json::to_value(sample_report()).unwrap();
        assert_eq!(json["elapsed_seconds"], 2.0);
        assert!(json["p99_ms"].as_f64().unwrap() > 90.0);
        assert!(json.get("first_error").is_none());
        assert!(json.get("requests_per_worker").is_none());
        assert!(json["readings_per_server_cpu_second"].as_f64().unwrap() > 66_000.0);
    }
}
