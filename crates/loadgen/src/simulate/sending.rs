//! Turning simulated readings into request bodies, sending them, and keeping the running totals
//! the progress line and the final report are made of.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::api_client::ApiClient;
use crate::delivery::{Delivery, RetryPolicy, StopSignal, deliver};
use crate::simulate::SimulateReport;
use crate::simulate::climate::{ClimateFleet, ClimateValues, SimulatedReading};
use crate::wire::{ReadAt, ReadingBody};

/// A simulated gateway keeps a batch until the server answers, like one with a disk buffer;
/// only the end of the run makes it give up.
const KEEP_TRYING: RetryPolicy = RetryPolicy {
    failed_attempts_allowed: None,
};

/// Running totals shared by every sending task.
#[derive(Debug, Default)]
pub struct SimulationCounters {
    sent: AtomicU64,
    accepted: AtomicU64,
    duplicate: AtomicU64,
    rejected: AtomicU64,
    failed_requests: AtomicU64,
    overloaded_retries: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

impl SimulationCounters {
    fn count_sent(&self, readings: usize) {
        self.sent.fetch_add(readings as u64, Ordering::Relaxed);
    }

    fn record(&self, delivery: Delivery) {
        if let Some(summary) = delivery.summary {
            self.accepted.fetch_add(summary.accepted, Ordering::Relaxed);
            self.duplicate
                .fetch_add(summary.duplicates, Ordering::Relaxed);
            self.rejected.fetch_add(summary.rejected, Ordering::Relaxed);
        }
        self.failed_requests
            .fetch_add(delivery.failed_attempts, Ordering::Relaxed);
        self.overloaded_retries
            .fetch_add(delivery.overloaded_retries, Ordering::Relaxed);
        if let Some(failure) = delivery.last_failure
            && let Ok(mut last_failure) = self.last_failure.lock()
        {
            *last_failure = Some(failure);
        }
    }

    pub fn report(&self, elapsed: Duration) -> SimulateReport {
        SimulateReport {
            sent: self.sent.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicate: self.duplicate.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
            elapsed,
        }
    }

    fn answered(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
            + self.duplicate.load(Ordering::Relaxed)
            + self.rejected.load(Ordering::Relaxed)
    }

    fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().ok().and_then(|last| last.clone())
    }
}

/// Sends batches in the background, a bounded number at a time.
#[derive(Debug)]
pub struct BatchSender {
    client: ApiClient,
    counters: Arc<SimulationCounters>,
    permits: Arc<Semaphore>,
    stop: StopSignal,
    in_flight: JoinSet<()>,
}

impl BatchSender {
    pub fn new(
        client: ApiClient,
        counters: Arc<SimulationCounters>,
        batches_in_flight: usize,
        stop: StopSignal,
    ) -> BatchSender {
        BatchSender {
            client,
            counters,
            permits: Arc::new(Semaphore::new(batches_in_flight)),
            stop,
            in_flight: JoinSet::new(),
        }
    }

    /// Waits until fewer than the allowed number of batches are in flight. Separate from
    /// [`BatchSender::send`] so the caller can give up waiting when asked to shut down.
    pub async fn slot(&self) -> anyhow::Result<OwnedSemaphorePermit> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .context("the in-flight limit was closed")
    }

    /// Encodes and sends `readings` (leaving the vector empty for the next batch).
    pub fn send(
        &mut self,
        slot: OwnedSemaphorePermit,
        fleet: &ClimateFleet,
        readings: &mut Vec<SimulatedReading>,
    ) -> anyhow::Result<()> {
        let body = encode_batch(fleet, readings)?;
        self.counters.count_sent(readings.len());
        readings.clear();
        let client = self.client.clone();
        let counters = Arc::clone(&self.counters);
        let mut stop = self.stop.clone();
        self.in_flight.spawn(async move {
            let delivery = deliver(&client, body, KEEP_TRYING, &mut stop).await;
            counters.record(delivery);
            // Held until the answer is in, so the in-flight limit counts unanswered batches.
            drop(slot);
        });
        Ok(())
    }

    /// Forgets the tasks that have finished, so a long run does not accumulate them.
    pub fn forget_finished(&mut self) {
        while self.in_flight.try_join_next().is_some() {}
    }

    /// Waits for every batch in flight to be answered or given up.
    pub async fn wait_for_all(&mut self) {
        while self.in_flight.join_next().await.is_some() {}
    }
}

/// A JSON array of readings as a gateway would post it: RFC 3339 times and the location id.
fn encode_batch(fleet: &ClimateFleet, readings: &[SimulatedReading]) -> anyhow::Result<Bytes> {
    let bodies: Vec<ReadingBody<'_, ClimateValues>> = readings
        .iter()
        .map(|reading| {
            let sensor = &fleet.sensors[reading.sensor_index];
            ReadingBody {
                sensor_id: &sensor.id,
                read_at: ReadAt::Rfc3339(rfc3339(reading.read_at_ms)),
                values: reading.values,
                message_id: Some(&reading.message_id),
                location_id: Some(&fleet.locations[sensor.location_index].id),
            }
        })
        .collect();
    let body = serde_json::to_vec(&bodies).context("encoding a batch of readings")?;
    Ok(Bytes::from(body))
}

fn rfc3339(epoch_millis: i64) -> String {
    match jiff::Timestamp::from_millisecond(epoch_millis) {
        Ok(instant) => format!("{instant:.3}"),
        Err(_) => epoch_millis.to_string(),
    }
}

/// The live line: totals plus the answer rate over the last few seconds.
#[derive(Debug)]
pub struct RateWindow {
    since: Instant,
    answered_then: u64,
    rate: f64,
}

/// How long the readings/s figure averages over; short enough to show a stall quickly.
const RATE_WINDOW: Duration = Duration::from_secs(2);

impl RateWindow {
    pub fn new() -> RateWindow {
        RateWindow {
            since: Instant::now(),
            answered_then: 0,
            rate: 0.0,
        }
    }

    pub fn status(&mut self, counters: &SimulationCounters) -> String {
        let answered = counters.answered();
        let window = self.since.elapsed();
        if window >= RATE_WINDOW {
            self.rate = (answered - self.answered_then) as f64 / window.as_secs_f64();
            self.since = Instant::now();
            self.answered_then = answered;
        }
        let report = counters.report(Duration::ZERO);
        let mut line = format!(
            "sent {} | accepted {} | duplicate {} | rejected {} | failed requests {} | overloaded {} | {:.0} readings/s",
            report.sent,
            report.accepted,
            report.duplicate,
            report.rejected,
            report.failed_requests,
            counters.overloaded_retries.load(Ordering::Relaxed),
            self.rate,
        );
        if report.failed_requests > 0
            && let Some(failure) = counters.last_failure()
        {
            line.push_str(&format!(" | last failure: {failure}"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::simulate::places::simulated_locations;

    #[test]
    fn a_batch_is_a_json_array_of_readings_the_server_accepts_field_for_field() {
        let mut random = StdRng::seed_from_u64(1);
        let locations = simulated_locations(2, &mut random).unwrap();
        let mut fleet = ClimateFleet::new(locations, 3, "run".to_string(), random);
        let readings: Vec<_> = (0..3)
            .map(|index| fleet.next_reading(index, 1_721_001_600_000, 1_721_001_600_000))
            .collect();
        let body = encode_batch(&fleet, &readings).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let items = parsed.as_array().unwrap();
        assert_eq!(items.len(), 3);
        let mut keys: Vec<&str> = items[1]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "location_id",
                "message_id",
                "read_at",
                "sensor_id",
                "values"
            ]
        );
        assert_eq!(items[1]["sensor_id"], "sim-climate-00002");
        assert_eq!(items[1]["location_id"], "sim-loc-0002");
        assert_eq!(items[0]["read_at"], "2024-07-15T00:00:00.000Z");
    }

    #[test]
    fn the_status_line_names_every_total() {
        let counters = SimulationCounters::default();
        counters.count_sent(10);
        let line = RateWindow::new().status(&counters);
        for word in [
            "sent 10",
            "accepted",
            "duplicate",
            "rejected",
            "failed requests",
        ] {
            assert!(line.contains(word), "{line}");
        }
    }
}
