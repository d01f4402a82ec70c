//! `audrey bench`: how fast the server ingests and answers, and how fast the store could go.
//!
//! Performance is measured only here, against a running server, never in unit tests. Every
//! scenario follows the same discipline: prepare everything first (fleet registered, request
//! bodies encoded), start the clock, do only the measured work, stop the clock, then add up the
//! per-worker tallies. The scenarios share one fleet of bench sensors (`bench-00000`, …), so the
//! query benchmark can read what `preload` wrote.

mod act;
mod analytics;
mod grpc_queries;
mod http_ingest;
mod matrix;
mod query;
mod raw_postgres;
mod raw_sqlite;
mod report;
mod server_cpu;
mod spool_outage;

use std::time::Duration;

use anyhow::Context;

use crate::api_client::ApiClient;
use crate::progress;
use crate::registration::{Registration, register_all};
use crate::wire::{LocationBody, SensorBody};

pub use act::{
    WebhookLatencyOptions, WebhookLatencyReport, bench_webhook_latency, install_bench_rules,
};
pub use analytics::{bench_analytics, bench_import, generated_locations_csv};
pub use grpc_queries::{BY_ID_WORKERS, GrpcQueryOptions, bench_grpc_queries};
pub use http_ingest::{IngestBenchOptions, bench_http_ingest, preload};
pub use matrix::{
    DEFAULT_MATRIX_BATCH_SIZE, DEFAULT_MATRIX_CELLS, DEFAULT_MATRIX_SENSORS, MatrixOptions,
    Transport, UNACKNOWLEDGED_BATCHES_AT_MOST, bench_matrix, parse_cell, parse_cells,
    parse_transports, scenario_label,
};
pub use query::{QueryBenchOptions, bench_query_newest};
pub use raw_postgres::{ScratchDatabase, bench_raw_postgres_copy, preload_postgres_copy};
pub use raw_sqlite::{RawLayout, bench_raw_sqlite};
pub use report::BenchReport;
pub use spool_outage::{OutageBenchOptions, OutageBenchResult, bench_spool_outage};

/// Bench sensors are spread over locations in groups of this size, like sensors in a building.
const SENSORS_PER_LOCATION: usize = 100;
const BENCH_SENSOR_KIND: &str = "bench";

/// `bench-00000`, counting from 0 so that reading `i` goes to `bench_sensor_id(i % sensors)`.
pub fn bench_sensor_id(index: usize) -> String {
    format!("bench-{index:05}")
}

pub fn bench_location_id(sensor_index: usize) -> String {
    format!("bench-loc-{:04}", sensor_index / SENSORS_PER_LOCATION)
}

/// Registers one location per hundred sensors, then the sensors, with no declared metrics so any
/// metric is accepted and validation costs the server as little as it can.
async fn register_bench_fleet(client: &ApiClient, sensors: usize) -> anyhow::Result<()> {
    let location_count = sensors.div_ceil(SENSORS_PER_LOCATION);
    let locations = (0..location_count)
        .map(|index| {
            let name = format!("Bench location {index}");
            let body = LocationBody {
                name: &name,
                city: None,
                country: None,
                // A grid near Null Island: recognisably synthetic on any map.
                latitude: (index / 100) as f64 * 0.01,
                longitude: (index % 100) as f64 * 0.01,
                altitude: None,
                timezone: Some("UTC"),
            };
            Registration::location(&bench_location_id(index * SENSORS_PER_LOCATION), &body)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sensor_registrations = (0..sensors)
        .map(|index| {
            let id = bench_sensor_id(index);
            let location_id = bench_location_id(index);
            let body = SensorBody {
                name: &id,
                kind: BENCH_SENSOR_KIND,
                location_id: &location_id,
                metrics: &[],
                expected_interval_seconds: None,
            };
            Registration::sensor(&id, &body)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bar = progress::bar((location_count + sensors) as u64, "registering", false);
    register_all(client, locations, &bar)
        .await
        .context("registering the bench locations")?;
    register_all(client, sensor_registrations, &bar)
        .await
        .context("registering the bench sensors")?;
    bar.finish_and_clear();
    Ok(())
}

/// Serializes a duration as fractional seconds, for `--json` output a script can read.
pub(crate) fn seconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensors_are_grouped_a_hundred_to_a_location() {
        assert_eq!(bench_sensor_id(0), "bench-00000");
        assert_eq!(bench_sensor_id(9_999), "bench-09999");
        assert_eq!(bench_location_id(99), "bench-loc-0000");
        assert_eq!(bench_location_id(100), "bench-loc-0001");
    }
}
