//! `audrey bench matrix`: ingest over every transport at many shapes of concurrency, one report
//! per (cell, transport).
//!
//! A cell is `workers x requests per worker`: `1x10000` is one client sending as fast as it is
//! answered, `10000x1` is ten thousand clients arriving at once. Each request carries one
//! reading (gRPC unary, HTTP single) or `batch_size` readings (gRPC batch and stream, HTTP
//! batch). Scenarios run one after another, cells outer and transports inner, so the transports
//! of one cell sit side by side in the table. The bench fleet is registered once, over HTTP,
//! before the first scenario; connections are opened before each scenario's clock starts.
//!
//! Scenarios run back to back: the server may still be flushing what the previous one wrote,
//! which is part of what a sustained load costs and is why the server's CPU time is reported
//! per scenario.

mod load;
mod pace;
mod scenario;
mod stream;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};

use crate::api_client::ApiClient;
use crate::bench::report::BenchReport;
use crate::bench::server_cpu::{cpu_used, optional_cpu_seconds};
use crate::bench::{bench_sensor_id, register_bench_fleet};
use crate::clock::wall_clock_ms;
use crate::progress;

use load::ScenarioLoad;
use pace::Pace;
use scenario::{HTTP_CONNECTIONS_AT_MOST, ScenarioPlan, run_scenario};

pub use stream::UNACKNOWLEDGED_BATCHES_AT_MOST;

/// `1x10, 10x10, 10x100, 50x200, 100x100, 200x50, 1x10000, 10000x1`.
pub const DEFAULT_MATRIX_CELLS: [(usize, u64); 8] = [
    (1, 10),
    (10, 10),
    (10, 100),
    (50, 200),
    (100, 100),
    (200, 50),
    (1, 10_000),
    (10_000, 1),
];
pub const DEFAULT_MATRIX_BATCH_SIZE: usize = 1000;
pub const DEFAULT_MATRIX_SENSORS: usize = 10_000;

/// How readings reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `IngestService.Send`: one reading per call.
    GrpcUnary,
    /// `IngestService.SendBatch`: `batch_size` readings per call.
    GrpcBatch,
    /// `IngestService.Stream`: one call per worker, `batch_size` readings per batch.
    GrpcStream,
    /// `POST /api/v1/readings` with one JSON object.
    HttpSingle,
    /// `POST /api/v1/readings` with a JSON array of `batch_size` readings.
    HttpBatch,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::GrpcUnary,
        Transport::GrpcBatch,
        Transport::GrpcStream,
        Transport::HttpSingle,
        Transport::HttpBatch,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::GrpcUnary => "grpc-unary",
            Transport::GrpcBatch => "grpc-batch",
            Transport::GrpcStream => "grpc-stream",
            Transport::HttpSingle => "http-single",
            Transport::HttpBatch => "http-batch",
        }
    }

    pub fn is_grpc(self) -> bool {
        matches!(
            self,
            Transport::GrpcUnary | Transport::GrpcBatch | Transport::GrpcStream
        )
    }

    pub fn readings_per_request(self, batch_size: usize) -> usize {
        match self {
            Transport::GrpcUnary | Transport::HttpSingle => 1,
            Transport::GrpcBatch | Transport::GrpcStream | Transport::HttpBatch => batch_size,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Transport> {
        let text = text.trim();
        Transport::ALL
            .into_iter()
            .find(|transport| transport.name().eq_ignore_ascii_case(text))
            .with_context(|| {
                let names: Vec<&str> = Transport::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "{text:?} is not a transport; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// `"grpc-unary,http-batch"` or `"all"`.
pub fn parse_transports(text: &str) -> anyhow::Result<Vec<Transport>> {
    if text.trim().eq_ignore_ascii_case("all") {
        return Ok(Transport::ALL.to_vec());
    }
    let transports = text
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(Transport::from_str)
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!transports.is_empty(), "name at least one transport");
    Ok(transports)
}

/// `"10x100"`: 10 workers, 100 requests each. `×` and `X` are accepted for `x`.
pub fn parse_cell(text: &str) -> anyhow::Result<(usize, u64)> {
    let text = text.trim();
    let Some((workers, requests)) = text.split_once(['x', 'X', '×']) else {
        bail!("{text:?} is not a cell; write WORKERSxREQUESTS, e.g. 10x100");
    };
    let workers: usize = workers
        .trim()
        .replace('_', "")
        .parse()
        .with_context(|| format!("{text:?}: the worker count is not a whole number"))?;
    let requests: u64 = requests
        .trim()
        .replace('_', "")
        .parse()
        .with_context(|| format!("{text:?}: the request count is not a whole number"))?;
    ensure!(workers > 0, "{text:?}: at least one worker is needed");
    ensure!(
        requests > 0,
        "{text:?}: each worker needs at least one request"
    );
    Ok((workers, requests))
}

/// `"1x10,10x100,10000x1"`.
pub fn parse_cells(text: &str) -> anyhow::Result<Vec<(usize, u64)>> {
    let cells = text
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(parse_cell)
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!cells.is_empty(), "name at least one cell, e.g. 10x100");
    Ok(cells)
}

#[derive(Clone, Debug)]
pub struct MatrixOptions {
    /// The HTTP API, e.g. `http://127.0.0.1:8080`; also used to register the bench fleet.
    pub http_url: String,
    /// The gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub grpc_url: String,
    pub token: String,
    /// `(workers, requests per worker)`; see [`DEFAULT_MATRIX_CELLS`].
    pub cells: Vec<(usize, u64)>,
    pub transports: Vec<Transport>,
    /// Readings per request for the batch and stream transports.
    pub batch_size: usize,
    /// Bench sensors the readings are spread over.
    pub sensors: usize,
    /// The server's process id, to report the CPU time each scenario cost it.
    pub server_pid: Option<u32>,
    /// Requests a second over all of a scenario's workers, on a fixed schedule with latency
    /// timed from each request's due time (see [`pace`]); `None` sends as fast as answered.
    pub rate: Option<f64>,
}

impl MatrixOptions {
    /// Every default cell over every transport, batches of 1000 over 10 000 sensors.
    pub fn new(http_url: &str, grpc_url: &str, token: &str) -> MatrixOptions {
        MatrixOptions {
            http_url: http_url.to_string(),
            grpc_url: grpc_url.to_string(),
            token: token.to_string(),
            cells: DEFAULT_MATRIX_CELLS.to_vec(),
            transports: Transport::ALL.to_vec(),
            batch_size: DEFAULT_MATRIX_BATCH_SIZE,
            sensors: DEFAULT_MATRIX_SENSORS,
            server_pid: None,
            rate: None,
        }
    }
}

/// What a scenario is called in the table: `grpc-stream 10x100`, with a note when HTTP workers
/// had to take turns on a bounded number of connections.
pub fn scenario_label(
    transport: Transport,
    workers: usize,
    requests_per_worker: u64,
    pace: Option<Pace>,
) -> String {
    let mut label = format!("{transport} {workers}x{requests_per_worker}");
    if let Some(pace) = pace {
        label.push_str(&format!(" @{}/s", pace.requests_per_second()));
    }
    if !transport.is_grpc() && workers > HTTP_CONNECTIONS_AT_MOST {
        label.push_str(&format!(" ({HTTP_CONNECTIONS_AT_MOST} connections)"));
    }
    label
}

/// Registers the bench fleet, then runs every cell over every transport and reports each.
pub async fn bench_matrix(options: MatrixOptions) -> anyhow::Result<Vec<BenchReport>> {
    ensure!(!options.cells.is_empty(), "name at least one cell");
    ensure!(
        !options.transports.is_empty(),
        "name at least one transport"
    );
    ensure!(options.batch_size > 0, "the batch size must be at least 1");
    ensure!(options.sensors > 0, "at least one bench sensor is needed");
    for &(workers, requests) in &options.cells {
        ensure!(
            workers > 0 && requests > 0,
            "cell {workers}x{requests} sends nothing"
        );
    }
    let pace = options.rate.map(Pace::new).transpose()?;
    // Read once up front so a wrong pid fails now, not silently in every report.
    optional_cpu_seconds(options.server_pid)?;
    let registrar = ApiClient::new(&options.http_url, &options.token, 16)?;
    register_bench_fleet(&registrar, options.sensors).await?;

    let sensor_ids = Arc::new((0..options.sensors).map(bench_sensor_id).collect());
    let run_prefix = format!("m{:x}-{:x}", wall_clock_ms(), std::process::id());
    let scenarios: Vec<(usize, u64, Transport)> = options
        .cells
        .iter()
        .flat_map(|&(workers, requests)| {
            options
                .transports
                .iter()
                .map(move |&transport| (workers, requests, transport))
        })
        .collect();
    let mut reports = Vec::with_capacity(scenarios.len());
    for (index, &(workers, requests_per_worker, transport)) in scenarios.iter().enumerate() {
        let label = scenario_label(transport, workers, requests_per_worker, pace);
        let plan = ScenarioPlan {
            transport,
            workers,
            requests_per_worker,
            load: ScenarioLoad::new(
                Arc::clone(&sensor_ids),
                workers,
                requests_per_worker,
                transport.readings_per_request(options.batch_size),
                wall_clock_ms(),
                format!("{run_prefix}-{index}"),
            ),
            pace,
        };
        let bar = progress::bar(
            workers as u64 * requests_per_worker,
            &format!("[{}/{}] {label}", index + 1, scenarios.len()),
            false,
        );
        let cpu_before = optional_cpu_seconds(options.server_pid).ok().flatten();
        let outcome = run_scenario(
            plan,
            &options.http_url,
            &options.grpc_url,
            &options.token,
            &bar,
        )
        .await;
        let cpu_after = optional_cpu_seconds(options.server_pid).ok().flatten();
        bar.finish_and_clear();
        let mut report = match outcome {
            Ok((tally, elapsed)) => {
                tally.into_report(&label, workers, elapsed, cpu_used(cpu_before, cpu_after))
            }
            // A transport that cannot even connect is reported, and the matrix goes on: the
            // other transports' figures are still worth having.
            Err(error) => BenchReport::failed(&label, workers, format!("{error:#}"))?,
        };
        report.requests_per_worker = Some(requests_per_worker);
        report.target_requests_per_second = pace.map(Pace::requests_per_second);
        progress::note_when_unseen(|| report.one_line_summary());
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_workers_times_requests() {
        assert_eq!(parse_cell("10x100").unwrap(), (10, 100));
        assert_eq!(parse_cell(" 10000 X 1 ").unwrap(), (10_000, 1));
        assert_eq!(parse_cell("1×10_000").unwrap(), (1, 10_000));
    }

    #[test]
    fn a_cell_without_workers_or_requests_is_refused() {
        for text in [
            "10", "x100", "10x", "0x10", "10x0", "-1x10", "ten x 10", "10x10x10",
        ] {
            assert!(parse_cell(text).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn cells_are_separated_by_commas() {
        assert_eq!(
            parse_cells("1x10, 10x100,").unwrap(),
            vec![(1, 10), (10, 100)]
        );
        assert!(parse_cells(" , ").is_err());
    }

    #[test]
    fn transports_parse_by_name_and_all_means_every_one() {
        assert_eq!(
            parse_transports("grpc-stream,HTTP-single").unwrap(),
            vec![Transport::GrpcStream, Transport::HttpSingle]
        );
        assert_eq!(parse_transports("all").unwrap(), Transport::ALL.to_vec());
        let error = parse_transports("grpc-unary,carrier-pigeon").unwrap_err();
        assert!(error.to_string().contains("grpc-batch"), "{error}");
        for transport in Transport::ALL {
            assert_eq!(transport.name().parse::<Transport>().unwrap(), transport);
        }
    }

    #[test]
    fn only_batch_and_stream_requests_carry_a_batch() {
        assert_eq!(Transport::GrpcUnary.readings_per_request(1000), 1);
        assert_eq!(Transport::HttpSingle.readings_per_request(1000), 1);
        assert_eq!(Transport::GrpcStream.readings_per_request(1000), 1000);
        assert_eq!(Transport::HttpBatch.readings_per_request(500), 500);
    }

    #[test]
    fn labels_say_when_http_workers_shared_connections() {
        assert_eq!(
            scenario_label(Transport::GrpcUnary, 10, 100, None),
            "grpc-unary 10x100"
        );
        assert_eq!(
            scenario_label(Transport::HttpSingle, 10_000, 1, None),
            format!("http-single 10000x1 ({HTTP_CONNECTIONS_AT_MOST} connections)")
        );
        assert_eq!(
            scenario_label(Transport::GrpcStream, 10_000, 1, None),
            "grpc-stream 10000x1"
        );
        assert_eq!(
            scenario_label(Transport::GrpcUnary, 100, 800, Pace::new(20_000.0).ok()),
            "grpc-unary 100x800 @20000/s"
        );
    }

    #[test]
    fn the_default_matrix_is_the_one_in_the_issue() {
        let options = MatrixOptions::new("http://a", "http://b", "token");
        assert_eq!(options.cells.len(), 8);
        assert!(options.cells.contains(&(10_000, 1)));
        assert_eq!(options.transports.len(), 5);
        assert_eq!(options.batch_size, 1000);
    }
}
