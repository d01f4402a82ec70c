//! Ingest over HTTP: how many readings per second the server acknowledges, and how long each
//! batch waits for its acknowledgement.
//!
//! The load is shaped to be fair and repeatable: reading `i` goes to sensor `i % sensors`, so
//! every batch touches many sensors as a busy gateway's would; `read_at` is spaced one
//! millisecond apart ending a minute before the run, so every reading is valid; each of
//! `clients` tasks sends its share of batches one after another over a keep-alive connection.
//! For the timed benchmark all bodies are encoded before the clock starts, so the generator
//! spends its CPU on sockets, not on JSON.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use bytes::Bytes;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::api_client::ApiClient;
use crate::bench::report::{BenchReport, Tally};
use crate::bench::server_cpu::{cpu_used, optional_cpu_seconds};
use crate::bench::{bench_sensor_id, register_bench_fleet};
use crate::clock::wall_clock_ms;
use crate::delivery::{RetryPolicy, StopSignal, StopSwitch, deliver, stop_pair};
use crate::progress;
use crate::wire::{ReadAt, ReadingBody};

/// A batch that fails this often (connection errors, 5xx) is given up and counted.
const BENCH_RETRY_POLICY: RetryPolicy = RetryPolicy {
    failed_attempts_allowed: Some(3),
};
/// After this many batches in a row are given up the server is taken to be gone and the whole
/// run stops, rather than spending minutes timing failures.
const LOST_BATCHES_BEFORE_ABORT: u32 = 3;
/// Readings end this long before the run starts, comfortably inside the accepted window.
const READ_AT_MARGIN_MS: i64 = 60_000;

#[derive(Clone, Debug)]
pub struct IngestBenchOptions {
    pub base_url: String,
    pub token: String,
    /// Concurrent client tasks, each with one request in flight (8 is a good start).
    pub clients: usize,
    /// Readings per request (1000 is a good start).
    pub batch_size: usize,
    /// Bench sensors the readings are spread over (10 000 is a good start).
    pub sensors: usize,
    pub total_readings: u64,
    /// Idempotency keys cost the server a dedupe lookup; measure with and without.
    pub with_message_ids: bool,
    /// The server's process id, to report the CPU time it spent.
    pub server_pid: Option<u32>,
}

/// Registers the bench fleet, encodes every body, then times sending them.
pub async fn bench_http_ingest(options: IngestBenchOptions) -> anyhow::Result<BenchReport> {
    let scenario = if options.with_message_ids {
        "http-ingest (message ids)"
    } else {
        "http-ingest"
    };
    timed_http_ingest(options, true, scenario).await
}

/// The timed part of [`bench_http_ingest`]; `register` false when the fleet is registered
/// already (and the registry may be unreachable, as during a database outage).
pub(crate) async fn timed_http_ingest(
    options: IngestBenchOptions,
    register: bool,
    scenario: &str,
) -> anyhow::Result<BenchReport> {
    check(&options, options.total_readings)?;
    let client = ApiClient::new(&options.base_url, &options.token, options.clients)?;
    if register {
        register_bench_fleet(&client, options.sensors).await?;
    }

    let plan = Arc::new(IngestPlan::new(
        &options,
        options.total_readings,
        wall_clock_ms(),
    ));
    let clients = options.clients;
    let encoding_plan = Arc::clone(&plan);
    // Encoding millions of readings is seconds of CPU; keep it off the async workers.
    let bodies_per_client = tokio::task::spawn_blocking(move || {
        (0..clients)
            .map(|client_index| {
                encoding_plan
                    .batches_of_client(client_index, clients)
                    .map(|batch| encoding_plan.batch_body(batch))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .context("the body encoder panicked")??;

    let (stop_switch, stop_signal) = stop_pair();
    let stop_switch = Arc::new(stop_switch);
    let cpu_before = optional_cpu_seconds(options.server_pid)?;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for bodies in bodies_per_client {
        let client = client.clone();
        let stop = (Arc::clone(&stop_switch), stop_signal.clone());
        workers.spawn(async move {
            let mut tally = Tally::new()?;
            send_batches(&client, bodies.into_iter().map(Ok), stop, &mut tally, None).await?;
            anyhow::Ok(tally)
        });
    }
    let tally = join_tallies(workers).await?;
    let elapsed = started.elapsed();
    let cpu_after = optional_cpu_seconds(options.server_pid).ok().flatten();
    Ok(tally.into_report(scenario, clients, elapsed, cpu_used(cpu_before, cpu_after)))
}

/// Loads `readings` readings into the bench fleet the same way, encoding each body just before it
/// is sent (millions of pre-encoded bodies would not fit comfortably in memory), with a progress
/// bar. Used to fill the store before the query benchmark; the report says how the load went.
pub async fn preload(options: IngestBenchOptions, readings: u64) -> anyhow::Result<BenchReport> {
    check(&options, readings)?;
    let client = ApiClient::new(&options.base_url, &options.token, options.clients)?;
    register_bench_fleet(&client, options.sensors).await?;

    let plan = Arc::new(IngestPlan::new(&options, readings, wall_clock_ms()));
    let bar = progress::bar(readings, "preloading", false);
    let (stop_switch, stop_signal) = stop_pair();
    let stop_switch = Arc::new(stop_switch);
    let cpu_before = optional_cpu_seconds(options.server_pid)?;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for client_index in 0..options.clients {
        let client = client.clone();
        let plan = Arc::clone(&plan);
        let bar = bar.clone();
        let stop = (Arc::clone(&stop_switch), stop_signal.clone());
        let clients = options.clients;
        workers.spawn(async move {
            let mut tally = Tally::new()?;
            let bodies = plan
                .batches_of_client(client_index, clients)
                .map(|batch| plan.batch_body(batch));
            send_batches(&client, bodies, stop, &mut tally, Some(&bar)).await?;
            anyhow::Ok(tally)
        });
    }
    let tally = join_tallies(workers).await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let cpu_after = optional_cpu_seconds(options.server_pid).ok().flatten();
    Ok(tally.into_report(
        "preload",
        options.clients,
        elapsed,
        cpu_used(cpu_before, cpu_after),
    ))
}

fn check(options: &IngestBenchOptions, readings: u64) -> anyhow::Result<()> {
    ensure!(options.clients > 0, "at least one client is needed");
    ensure!(options.batch_size > 0, "the batch size must be at least 1");
    ensure!(options.sensors > 0, "at least one bench sensor is needed");
    ensure!(readings > 0, "there must be at least one reading to send");
    Ok(())
}

/// Sends batches one after another, recording each into `tally`. Stops early, and stops every
/// other worker, when the server appears to be gone.
async fn send_batches(
    client: &ApiClient,
    bodies: impl Iterator<Item = anyhow::Result<(Bytes, usize)>>,
    (stop_switch, mut stop_signal): (Arc<StopSwitch>, StopSignal),
    tally: &mut Tally,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<()> {
    let mut lost_in_a_row = 0;
    for body in bodies {
        if stop_signal.is_raised() {
            break;
        }
        let (body, readings) = body?;
        let delivery = deliver(client, body, BENCH_RETRY_POLICY, &mut stop_signal).await;
        let answered = delivery.summary.is_some();
        tally.record_delivery(delivery, readings);
        if let Some(bar) = bar {
            bar.inc(readings as u64);
        }
        lost_in_a_row = if answered { 0 } else { lost_in_a_row + 1 };
        if lost_in_a_row >= LOST_BATCHES_BEFORE_ABORT {
            stop_switch.raise();
            break;
        }
    }
    Ok(())
}

async fn join_tallies(
    mut workers: tokio::task::JoinSet<anyhow::Result<Tally>>,
) -> anyhow::Result<Tally> {
    let mut total = Tally::new()?;
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a bench worker panicked")??);
    }
    Ok(total)
}

/// Which readings go in which batch, and how each batch is encoded.
#[derive(Debug)]
pub struct IngestPlan {
    sensor_ids: Vec<String>,
    batch_size: usize,
    total_readings: u64,
    first_read_at_ms: i64,
    /// Unique per run, so re-running the benchmark stores new readings instead of duplicates.
    message_id_prefix: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize)]
struct BenchValues {
    temperature: f64,
    humidity: f64,
}

impl IngestPlan {
    pub fn new(options: &IngestBenchOptions, total_readings: u64, now_ms: i64) -> IngestPlan {
        IngestPlan {
            sensor_ids: (0..options.sensors).map(bench_sensor_id).collect(),
            batch_size: options.batch_size,
            total_readings,
            first_read_at_ms: now_ms - READ_AT_MARGIN_MS - total_readings as i64,
            message_id_prefix: options
                .with_message_ids
                .then(|| format!("bench-{now_ms:x}")),
        }
    }

    pub fn batch_count(&self) -> u64 {
        self.total_readings.div_ceil(self.batch_size as u64)
    }

    /// Client `c` of `n` sends batches `c`, `c + n`, `c + 2n`, …, so all clients finish together.
    pub fn batches_of_client(&self, client: usize, clients: usize) -> impl Iterator<Item = u64> {
        (client as u64..self.batch_count()).step_by(clients.max(1))
    }

    /// The encoded JSON array for one batch, and how many readings it holds.
    pub fn batch_body(&self, batch: u64) -> anyhow::Result<(Bytes, usize)> {
        let first = batch * self.batch_size as u64;
        let end = (first + self.batch_size as u64).min(self.total_readings);
        let message_ids: Vec<String> = match &self.message_id_prefix {
            Some(prefix) => (first..end)
                .map(|index| format!("{prefix}-{index}"))
                .collect(),
            None => Vec::new(),
        };
        let readings: Vec<ReadingBody<'_, BenchValues>> = (first..end)
            .map(|index| {
                // Cheap, deterministic and varied enough that values do not compress to nothing.
                let values = BenchValues {
                    temperature: 15.0 + (index * 37 % 2000) as f64 / 100.0,
                    humidity: 30.0 + (index * 53 % 4000) as f64 / 100.0,
                };
                ReadingBody {
                    sensor_id: &self.sensor_ids[(index % self.sensor_ids.len() as u64) as usize],
                    read_at: ReadAt::EpochMillis(self.first_read_at_ms + index as i64),
                    values,
                    message_id: message_ids
                        .get((index - first) as usize)
                        .map(String::as_str),
                    location_id: None,
                }
            })
            .collect();
        let body = serde_json::to_vec(&readings).context("encoding a bench batch")?;
        Ok((Bytes::from(body), readings.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sensors: usize, batch_size: usize, with_message_ids: bool) -> IngestBenchOptions {
        IngestBenchOptions {
            base_url: "http://127.0.0.1:1".to_string(),
            token: "token".to_string(),
            clients: 3,
            batch_size,
            sensors,
            total_readings: 0,
            with_message_ids,
            server_pid: None,
        }
    }

    #[test]
    fn every_batch_is_sent_by_exactly_one_client() {
        let plan = IngestPlan::new(&options(10, 7, false), 100, 1_800_000_000_000);
        assert_eq!(plan.batch_count(), 15);
        let mut batches: Vec<u64> = (0..3)
            .flat_map(|client| plan.batches_of_client(client, 3))
            .collect();
        batches.sort();
        assert_eq!(batches, (0..15).collect::<Vec<_>>());
    }

    #[test]
    fn readings_go_round_robin_to_sensors_and_the_last_batch_is_short() {
        let plan = IngestPlan::new(&options(4, 7, true), 100, 1_800_000_000_000);
        let (body, count) = plan.batch_body(14).unwrap();
        assert_eq!(count, 2);
        let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(items[0]["sensor_id"], bench_sensor_id(98 % 4));
        assert_eq!(items[1]["sensor_id"], bench_sensor_id(99 % 4));
        assert!(items[1]["message_id"].as_str().unwrap().ends_with("-99"));
        let (first_body, _) = plan.batch_body(0).unwrap();
        let first: Vec<serde_json::Value> = serde_json::from_slice(&first_body).unwrap();
        assert_eq!(first[5]["values"].as_object().unwrap().len(), 2);
    }

    #[test]
    fn every_read_at_lies_in_the_past_and_readings_are_in_time_order() {
        let now = 1_800_000_000_000;
        let plan = IngestPlan::new(&options(3, 50, false), 1_000, now);
        let mut previous = i64::MIN;
        for batch in 0..plan.batch_count() {
            let (body, _) = plan.batch_body(batch).unwrap();
            let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            for item in items {
                assert!(item.get("message_id").is_none());
                let read_at = item["read_at"].as_i64().unwrap();
                assert!(read_at > previous && read_at < now);
                previous = read_at;
            }
        }
    }
}
