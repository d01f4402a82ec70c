//! `audrey bench grpc-queries`: how fast the gRPC `QueryService` answers the questions clients
//! ask most: the oldest and the newest N readings of one sensor, one reading by id, and a scan of
//! everything in a long time range.
//!
//! The bench fleet must hold readings first (`audrey bench preload`, or a matrix run). Each
//! answer is checked (see [`checks`]). The scenarios run one after another:
//!
//! * `grpc-oldest-N` / `grpc-newest-N`: `ListReadings` for one sensor with `limit N`; request `i`
//!   asks for sensor `i % sensors`. Latency runs until the answer stream ends.
//! * `grpc-get-by-id`: `GetReading` from [`BY_ID_WORKERS`] workers, for ids collected before the
//!   clock starts by two list calls (the oldest and the newest readings of the whole store).
//! * `grpc-range-scan`: one `ListReadings` over the whole window with `limit 0`, counting the
//!   rows streamed to the client: its readings/s is rows/s. Its latencies are per page (how long
//!   the client waited for each page, the first one included), which shows stalls mid-stream.

mod checks;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use audrey_proto::v1::{GetReadingRequest, ListReadingsRequest, Order, Reading};
use indicatif::ProgressBar;

use crate::bench::bench_sensor_id;
use crate::bench::report::{BenchReport, Tally};
use crate::bench::server_cpu::{cpu_used, optional_cpu_seconds};
use crate::clock::wall_clock_ms;
use crate::grpc_client::{CALL_TIMEOUT, GrpcConnections, QueryClient, describe_status};
use crate::progress;

use checks::{ListQuestion, check_in_range, check_order, check_reading_by_id, check_sensor_list};

/// The issue asks for a hundred concurrent clients fetching single readings.
pub const BY_ID_WORKERS: usize = 100;
const BY_ID_SCENARIO: &str = "grpc-get-by-id";
/// Ids collected from each end of the store for the by-id scenario.
const IDS_FROM_EACH_END: u64 = 5_000;
/// 2000-01-01T00:00:00Z: the server refuses anything older, so this is "since the beginning".
const EARLIEST_READ_AT_MS: i64 = 946_684_800_000;

#[derive(Clone, Debug)]
pub struct GrpcQueryOptions {
    /// The gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub grpc_url: String,
    pub token: String,
    /// Bench sensors that hold readings: use the count that was preloaded.
    pub sensors: usize,
    /// N of "the oldest / newest N readings".
    pub limit: u64,
    /// Concurrent workers for the oldest and newest scenarios.
    pub workers: usize,
    /// Calls in each of the oldest and newest scenarios, spread over the workers.
    pub requests: u64,
    /// `GetReading` calls, spread over [`BY_ID_WORKERS`] workers.
    pub by_id_requests: u64,
    /// The range scan reads every reading of the last `window`; `None` reads every reading.
    pub range_scan_window: Option<Duration>,
    /// The server's process id, to report the CPU time each scenario cost it.
    pub server_pid: Option<u32>,
}

impl GrpcQueryOptions {
    /// 10 000 sensors, N = 100, 8 workers, 10 000 calls per scenario, a scan of everything.
    pub fn new(grpc_url: &str, token: &str) -> GrpcQueryOptions {
        GrpcQueryOptions {
            grpc_url: grpc_url.to_string(),
            token: token.to_string(),
            sensors: 10_000,
            limit: 100,
            workers: 8,
            requests: 10_000,
            by_id_requests: 10_000,
            range_scan_window: None,
            server_pid: None,
        }
    }
}

/// Runs the four query scenarios and reports each.
pub async fn bench_grpc_queries(options: GrpcQueryOptions) -> anyhow::Result<Vec<BenchReport>> {
    ensure!(options.sensors > 0, "at least one bench sensor is needed");
    ensure!(options.limit > 0, "N must be at least 1");
    ensure!(options.workers > 0, "at least one worker is needed");
    optional_cpu_seconds(options.server_pid)?;
    let grpc = GrpcConnections::connect(
        &options.grpc_url,
        &options.token,
        options.workers.max(BY_ID_WORKERS),
    )
    .await?;
    let options = Arc::new(options);
    let mut reports = Vec::with_capacity(4);
    for order in [Order::Oldest, Order::Newest] {
        let scenario = format!(
            "grpc-{}-{}",
            if order == Order::Oldest {
                "oldest"
            } else {
                "newest"
            },
            options.limit
        );
        let options_for_calls = Arc::clone(&options);
        let report = run_workers(
            &grpc,
            &scenario,
            options.workers,
            options.requests,
            options.server_pid,
            move |mut client, request| {
                let options = Arc::clone(&options_for_calls);
                async move {
                    let sensor_id = bench_sensor_id((request % options.sensors as u64) as usize);
                    let question = ListQuestion {
                        sensor_id: &sensor_id,
                        order,
                        limit: options.limit,
                    };
                    let readings = list_all(&mut client, list_request(question)).await?;
                    check_sensor_list(question, &readings)
                }
            },
        )
        .await?;
        reports.push(report);
    }
    let by_id = match collect_ids(&mut grpc.query(0)).await {
        Ok(ids) => bench_by_id(&grpc, Arc::new(ids), &options).await?,
        Err(error) => BenchReport::failed(BY_ID_SCENARIO, BY_ID_WORKERS, format!("{error:#}"))?,
    };
    reports.push(by_id);
    reports.push(range_scan(&grpc, &options).await?);
    Ok(reports)
}

/// `GetReading` for the collected ids from [`BY_ID_WORKERS`] workers; call `i` asks for id
/// `i % ids`.
async fn bench_by_id(
    grpc: &GrpcConnections,
    ids: Arc<Vec<String>>,
    options: &GrpcQueryOptions,
) -> anyhow::Result<BenchReport> {
    run_workers(
        grpc,
        BY_ID_SCENARIO,
        BY_ID_WORKERS,
        options.by_id_requests,
        options.server_pid,
        move |mut client, request| {
            let ids = Arc::clone(&ids);
            async move {
                let id = &ids[(request % ids.len() as u64) as usize];
                let answer = tokio::time::timeout(
                    CALL_TIMEOUT,
                    client.get_reading(GetReadingRequest { id: id.clone() }),
                )
                .await
                .map_err(|_| format!("no answer within {} s", CALL_TIMEOUT.as_secs()))?
                .map_err(|status| describe_status(&status))?;
                check_reading_by_id(id, answer.get_ref())?;
                Ok(1)
            }
        },
    )
    .await
}

fn list_request(question: ListQuestion<'_>) -> ListReadingsRequest {
    ListReadingsRequest {
        sensor_id: question.sensor_id.to_string(),
        order: question.order as i32,
        limit: question.limit,
        ..ListReadingsRequest::default()
    }
}

/// Every reading of a streamed list answer, pages joined.
async fn list_all(
    client: &mut QueryClient,
    request: ListReadingsRequest,
) -> Result<Vec<Reading>, String> {
    let mut pages = tokio::time::timeout(CALL_TIMEOUT, client.list_readings(request))
        .await
        .map_err(|_| format!("no answer within {} s", CALL_TIMEOUT.as_secs()))?
        .map_err(|status| describe_status(&status))?
        .into_inner();
    let mut readings = Vec::new();
    loop {
        match tokio::time::timeout(CALL_TIMEOUT, pages.message()).await {
            Ok(Ok(Some(page))) => readings.extend(page.readings),
            Ok(Ok(None)) => return Ok(readings),
            Ok(Err(status)) => return Err(describe_status(&status)),
            Err(_) => return Err(format!("no page within {} s", CALL_TIMEOUT.as_secs())),
        }
    }
}

/// Ids of the oldest and the newest readings in the store, so lookups touch both ends.
async fn collect_ids(client: &mut QueryClient) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for order in [Order::Oldest, Order::Newest] {
        let request = ListReadingsRequest {
            order: order as i32,
            limit: IDS_FROM_EACH_END,
            ..ListReadingsRequest::default()
        };
        let readings = list_all(client, request)
            .await
            .map_err(anyhow::Error::msg)
            .context("collecting reading ids for the by-id benchmark")?;
        ids.extend(readings.into_iter().map(|reading| reading.id));
    }
    ensure!(
        !ids.is_empty(),
        "the store holds no readings; preload the bench fleet before the query benchmark"
    );
    Ok(ids)
}

/// Runs `requests` calls over `workers` workers (worker `w` makes calls `w`, `w + workers`, …),
/// each on its own client, and reports them. A call returns how many readings it got back.
async fn run_workers<Call, Pending>(
    grpc: &GrpcConnections,
    scenario: &str,
    workers: usize,
    requests: u64,
    server_pid: Option<u32>,
    call: Call,
) -> anyhow::Result<BenchReport>
where
    Call: Fn(QueryClient, u64) -> Pending + Clone + Send + 'static,
    Pending: Future<Output = Result<u64, String>> + Send,
{
    let bar = progress::bar(requests, scenario, false);
    let cpu_before = optional_cpu_seconds(server_pid).ok().flatten();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let client = grpc.query(worker);
        let call = call.clone();
        let bar = bar.clone();
        tasks.spawn(async move {
            let mut tally = Tally::new()?;
            for request in (worker as u64..requests).step_by(workers) {
                let sent = Instant::now();
                match call(client.clone(), request).await {
                    Ok(readings) => {
                        tally.record_latency(sent.elapsed());
                        tally.requests += 1;
                        tally.readings += readings;
                    }
                    Err(problem) => tally.record_error(|| problem),
                }
                bar.inc(1);
            }
            anyhow::Ok(tally)
        });
    }
    let mut total = Tally::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a query worker panicked")??);
    }
    let elapsed = started.elapsed();
    let cpu_after = optional_cpu_seconds(server_pid).ok().flatten();
    bar.finish_and_clear();
    let report = total.into_report(scenario, workers, elapsed, cpu_used(cpu_before, cpu_after));
    progress::note_when_unseen(|| report.one_line_summary());
    Ok(report)
}

/// One call streaming every reading of the window, oldest first; nothing is kept but counts.
async fn range_scan(
    grpc: &GrpcConnections,
    options: &GrpcQueryOptions,
) -> anyhow::Result<BenchReport> {
    const SCENARIO: &str = "grpc-range-scan (latency per page)";
    let now_ms = wall_clock_ms();
    let from_ms = options
        .range_scan_window
        .map_or(EARLIEST_READ_AT_MS, |window| {
            now_ms - i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
        });
    // A little past now: a reading's clock may run slightly ahead of ours.
    let to_ms = now_ms + 60_000;
    let request = ListReadingsRequest {
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        order: Order::Oldest as i32,
        limit: 0,
        ..ListReadingsRequest::default()
    };
    let status = progress::status_line(false);
    let mut client = grpc.query(0);
    let mut tally = Tally::new()?;
    let cpu_before = optional_cpu_seconds(options.server_pid).ok().flatten();
    let started = Instant::now();
    if let Err(problem) = scan(&mut client, request, (from_ms, to_ms), &mut tally, &status).await {
        tally.record_error(|| problem);
    } else {
        tally.requests = 1;
    }
    let elapsed = started.elapsed();
    let cpu_after = optional_cpu_seconds(options.server_pid).ok().flatten();
    status.finish_and_clear();
    let report = tally.into_report(SCENARIO, 1, elapsed, cpu_used(cpu_before, cpu_after));
    progress::note_when_unseen(|| report.one_line_summary());
    Ok(report)
}

async fn scan(
    client: &mut QueryClient,
    request: ListReadingsRequest,
    (from_ms, to_ms): (i64, i64),
    tally: &mut Tally,
    status: &ProgressBar,
) -> Result<(), String> {
    let mut waiting_since = Instant::now();
    let mut pages = tokio::time::timeout(CALL_TIMEOUT, client.list_readings(request))
        .await
        .map_err(|_| format!("no answer within {} s", CALL_TIMEOUT.as_secs()))?
        .map_err(|status| describe_status(&status))?
        .into_inner();
    let mut last_read_at = i64::MIN;
    loop {
        let page = match tokio::time::timeout(CALL_TIMEOUT, pages.message()).await {
            Ok(Ok(Some(page))) => page,
            Ok(Ok(None)) => break,
            Ok(Err(status)) => return Err(describe_status(&status)),
            Err(_) => return Err(format!("no page within {} s", CALL_TIMEOUT.as_secs())),
        };
        tally.record_latency(waiting_since.elapsed());
        check_in_range(from_ms, to_ms, &page.readings)?;
        check_order(Order::Oldest, &page.readings)?;
        if let Some(first) = page.readings.first()
            && first.read_at_ms < last_read_at
        {
            return Err("a page starts before the previous page ended".to_string());
        }
        if let Some(last) = page.readings.last() {
            last_read_at = last.read_at_ms;
        }
        tally.readings += page.readings.len() as u64;
        status.set_message(format!("range scan: {} rows", tally.readings));
        waiting_since = Instant::now();
    }
    if tally.readings == 0 {
        return Err("the range scan found no readings; preload the bench fleet first".to_string());
    }
    Ok(())
}
