//! Audrey's load generator: a fleet simulator and the benchmarks behind `audrey simulate` and
//! `audrey bench`.
//!
//! It owns everything a test client needs to put realistic or heavy load on a running server:
//! registering a simulated fleet, generating plausible climate readings (with a small share of
//! deliberate faults), sending them at a steady rate or as fast as the server takes them, and
//! measuring what happened (HDR latency histograms, throughput, the server's CPU time).
//!
//! It talks to the server only through its public HTTP and gRPC APIs (the gRPC messages come from
//! `audrey-proto`, the published protocol), exactly as a device or gateway would, so it must never
//! depend on the server, ingest or store crates: a benchmark that reaches around the API measures
//! something no user sees. The one exception is [`bench_raw_sqlite`],
//! which measures the storage engine's ceiling directly: it declares its own copy of the
//! landing table and borrows only the store's encoder of a landing row
//! (`SqliteStore::encode_landing_row`), so the bytes it writes are the server's. Nothing here asserts on timing; numbers are
//! reported, never tested.

mod api_client;
mod bench;
mod clock;
mod delivery;
mod grpc_client;
mod location_upload;
mod progress;
mod registration;
mod simulate;
mod wire;

pub use bench::{
    BY_ID_WORKERS, BenchReport, DEFAULT_MATRIX_BATCH_SIZE, DEFAULT_MATRIX_CELLS,
    DEFAULT_MATRIX_SENSORS, GrpcQueryOptions, IngestBenchOptions, MatrixOptions,
    OutageBenchOptions, OutageBenchResult, QueryBenchOptions, RawLayout, ScratchDatabase,
    Transport, UNACKNOWLEDGED_BATCHES_AT_MOST, bench_analytics, bench_grpc_queries,
    bench_http_ingest, bench_import, bench_matrix, bench_query_newest, bench_raw_postgres_copy,
    bench_raw_sqlite, bench_spool_outage, generated_locations_csv, parse_cell, parse_cells,
    parse_transports, preload, preload_postgres_copy, scenario_label,
};
pub use bench::{
    WebhookLatencyOptions, WebhookLatencyReport, bench_webhook_latency, install_bench_rules,
};
pub use location_upload::upload_locations_csv;
pub use simulate::{SimulateOptions, SimulateReport, simulate};
