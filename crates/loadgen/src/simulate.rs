//! `audrey simulate`: a fleet of climate sensors reporting at a steady overall rate.
//!
//! The schedule is fixed in advance: reading `k` of the run is due `k / rate` seconds after the
//! start and belongs to sensor `k % sensors`, so every sensor reports at the same interval and
//! `read_at` is the scheduled moment, not the moment a request happened to leave. Readings are
//! cut into batches of `batch_size`, or sooner when the oldest waiting reading is a second old,
//! as a gateway would. A few batches may be in flight at once; when all of them are waiting on
//! a slow server the generator waits too and later catches up, sending the backlog with its
//! original timestamps, instead of silently lowering the rate.

mod climate;
mod places;
mod sending;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::api_client::ApiClient;
use crate::clock::wall_clock_ms;
use crate::delivery::stop_pair;
use crate::progress::{self, PlainStatus};
use crate::registration::{Registration, register_all};
use crate::wire::{LocationBody, SensorBody};
use climate::{CLIMATE_METRICS, ClimateFleet, SENSOR_KIND, SimulatedReading};
use places::simulated_locations;
use sending::{BatchSender, RateWindow, SimulationCounters};

/// Enough to keep a loopback server busy while one batch waits on a commit, few enough that a
/// struggling server is not buried.
const BATCHES_IN_FLIGHT: usize = 4;
const TICK: Duration = Duration::from_millis(20);
/// A reading waits at most this long for its batch to fill.
const LONGEST_BATCH_WAIT_MS: i64 = 1000;
/// How long the end of a run waits for batches still in flight before abandoning them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct SimulateOptions {
    pub base_url: String,
    pub token: String,
    pub sensors: usize,
    pub locations: usize,
    /// Readings per second over the whole fleet.
    pub rate_per_second: f64,
    /// Run until this has passed, or (when `None`) until the shutdown future resolves.
    pub duration: Option<Duration>,
    pub batch_size: usize,
    pub seed: u64,
    pub quiet: bool,
}

/// Totals of one run. `sent` counts readings posted at least once; the answered ones are split
/// into accepted, duplicate and rejected, so `sent` minus those is what never got an answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimulateReport {
    pub sent: u64,
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    /// HTTP requests that failed (connection errors, 5xx other than 503, refusals); each was
    /// retried, except refusals a resend cannot fix.
    pub failed_requests: u64,
    #[serde(rename = "elapsed_seconds", serialize_with = "crate::bench::seconds")]
    pub elapsed: Duration,
}

/// Registers the fleet, then sends readings until `options.duration` has passed or `shutdown`
/// resolves, whichever comes first, and returns the totals.
pub async fn simulate(
    options: SimulateOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<SimulateReport> {
    ensure!(options.sensors > 0, "simulate needs at least one sensor");
    ensure!(
        options.locations > 0,
        "simulate needs at least one location"
    );
    ensure!(options.batch_size > 0, "the batch size must be at least 1");
    ensure!(
        options.rate_per_second.is_finite() && options.rate_per_second > 0.0,
        "the rate must be a positive number of readings per second"
    );
    let client = ApiClient::new(&options.base_url, &options.token, BATCHES_IN_FLIGHT)?;
    let mut random = StdRng::seed_from_u64(options.seed);
    let locations = simulated_locations(options.locations, &mut random)?;
    let run_tag = format!("{:x}", wall_clock_ms());
    let mut fleet = ClimateFleet::new(locations, options.sensors, run_tag, random);

    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        registered = register_fleet(&client, &fleet, &options) => registered?,
        () = &mut shutdown => return Ok(SimulateReport::default()),
    }

    let counters = Arc::new(SimulationCounters::default());
    let (stop_switch, stop_signal) = stop_pair();
    let mut sender = BatchSender::new(
        client,
        Arc::clone(&counters),
        BATCHES_IN_FLIGHT,
        stop_signal,
    );
    let mut pending: Vec<SimulatedReading> = Vec::with_capacity(options.batch_size);
    let status_line = progress::status_line(options.quiet);
    let mut plain_status = PlainStatus::new(options.quiet);
    let mut rate_window = RateWindow::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let rate = options.rate_per_second;
    let started = Instant::now();
    let started_ms = wall_clock_ms();
    let deadline = options.duration.map(|duration| started + duration);
    let mut generated: u64 = 0;
    let mut shutdown_requested = false;

    'generate: loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut shutdown => {
                shutdown_requested = true;
                break 'generate;
            }
        }
        let now = Instant::now();
        let last_round = deadline.is_some_and(|deadline| now >= deadline);
        let until = deadline.map_or(now, |deadline| now.min(deadline));
        let due = (until.duration_since(started).as_secs_f64() * rate) as u64;
        let now_ms = wall_clock_ms();
        // Generate everything that has fallen due, cutting a batch whenever one is full, and
        // once caught up, also when the oldest waiting reading has waited long enough.
        loop {
            let full = pending.len() >= options.batch_size;
            let caught_up = generated >= due;
            let stale = caught_up
                && pending
                    .first()
                    .is_some_and(|oldest| now_ms - oldest.read_at_ms >= LONGEST_BATCH_WAIT_MS);
            if full || stale {
                let slot = tokio::select! {
                    slot = sender.slot() => slot?,
                    () = &mut shutdown => {
                        shutdown_requested = true;
                        break 'generate;
                    }
                };
                sender.send(slot, &fleet, &mut pending)?;
            }
            if caught_up {
                break;
            }
            let read_at_ms = started_ms + (generated as f64 * 1000.0 / rate) as i64;
            let sensor_index = (generated % options.sensors as u64) as usize;
            pending.push(fleet.next_reading(sensor_index, read_at_ms, now_ms));
            generated += 1;
        }
        sender.forget_finished();
        let line = rate_window.status(&counters);
        plain_status.maybe_write(|| line.clone());
        status_line.set_message(line);
        if last_round {
            break;
        }
    }

    // Whoever asked for the shutdown (Ctrl-C, or a server stopping its demo) wants out now and
    // the server may already be gone: what is in flight and left over gets one attempt each.
    if shutdown_requested {
        stop_switch.raise();
    }
    // Send what is left, give the server a moment to answer, then give up on the stragglers.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        if !pending.is_empty() {
            let slot = sender.slot().await?;
            sender.send(slot, &fleet, &mut pending)?;
        }
        sender.wait_for_all().await;
        anyhow::Ok(())
    })
    .await;
    stop_switch.raise();
    sender.wait_for_all().await;
    if let Ok(result) = drained {
        result?;
    }
    let elapsed = started.elapsed();
    // The caller prints the final totals; a frozen copy of the live line would only repeat them.
    status_line.finish_and_clear();
    Ok(counters.report(elapsed))
}

/// Creates or replaces every location, then every sensor; `PUT` makes a re-run harmless.
async fn register_fleet(
    client: &ApiClient,
    fleet: &ClimateFleet,
    options: &SimulateOptions,
) -> anyhow::Result<()> {
    let expected_interval_seconds = (options.sensors as f64 / options.rate_per_second)
        .ceil()
        .clamp(1.0, f64::from(u32::MAX));
    let locations = fleet
        .locations
        .iter()
        .map(|location| {
            let body = LocationBody {
                name: &location.name,
                city: Some(location.place.city),
                country: Some(location.place.country),
                latitude: location.latitude,
                longitude: location.longitude,
                altitude: Some(location.place.altitude_metres),
                timezone: Some(location.place.timezone),
            };
            Registration::location(&location.id, &body)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sensors = fleet
        .sensors
        .iter()
        .enumerate()
        .map(|(index, sensor)| {
            let location = &fleet.locations[sensor.location_index];
            let name = format!("Climate sensor {} at {}", index + 1, location.name);
            let body = SensorBody {
                name: &name,
                kind: SENSOR_KIND,
                location_id: &location.id,
                metrics: &CLIMATE_METRICS,
                expected_interval_seconds: Some(expected_interval_seconds as u32),
            };
            Registration::sensor(&sensor.id, &body)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let bar = progress::bar(
        (locations.len() + sensors.len()) as u64,
        "registering",
        options.quiet,
    );
    register_all(client, locations, &bar)
        .await
        .context("registering the simulated locations")?;
    register_all(client, sensors, &bar)
        .await
        .context("registering the simulated sensors")?;
    bar.finish_and_clear();
    Ok(())
}
