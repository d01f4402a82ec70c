//! One cell of the matrix over one transport: connect, start every worker together, time them,
//! add up their tallies.
//!
//! Batched requests are built before the clock when the scenario is small enough
//! ([`ScenarioLoad::prepare`]). Every transport but the gRPC stream works the same way: each worker sends its requests one
//! after another and waits for each answer, so one loop ([`send_one_at_a_time`]) serves them all
//! and only "how to send request `r`" differs. Connections are opened before the clock starts;
//! workers wait at a barrier so the clock starts when the last of them is ready.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use audrey_proto::v1::reading_result::Status as ResultStatus;
use audrey_proto::v1::{Ack, BatchAck};
use indicatif::ProgressBar;
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinSet;

use crate::api_client::ApiClient;
use crate::bench::matrix::Transport;
use crate::bench::matrix::load::{PreparedRequests, ScenarioLoad};
use crate::bench::matrix::pace::{Pace, paced_latency, wait_until};
use crate::bench::matrix::stream::stream_worker;
use crate::bench::report::Tally;
use crate::delivery::{Delivery, RetryPolicy, StopSignal, StopSwitch, deliver, stop_pair};
use crate::grpc_client::{GrpcConnections, call_until_answered};
use crate::wire::IngestSummary;

/// HTTP/1.1 has no multiplexing: every request in flight needs its own connection. Past this many
/// the workers take turns, so a 10 000-worker cell does not open 10 000 sockets.
pub const HTTP_CONNECTIONS_AT_MOST: usize = 500;
/// Same policy as the HTTP ingest benchmark: a request that fails this often is given up.
const HTTP_RETRY_POLICY: RetryPolicy = RetryPolicy {
    failed_attempts_allowed: Some(3),
};
/// After this many requests in a row are lost the server is taken to be gone and the scenario
/// stops, rather than spending minutes timing failures.
const LOST_REQUESTS_BEFORE_ABORT: u32 = 3;

/// What one scenario needs to know, shared by all of its workers.
#[derive(Clone, Debug)]
pub struct ScenarioPlan {
    pub transport: Transport,
    pub workers: usize,
    pub requests_per_worker: u64,
    pub load: ScenarioLoad,
    /// An open-loop schedule (`--rate`); `None` sends each request when the last is answered.
    pub pace: Option<Pace>,
}

/// What each worker holds: the plan, the bar, and the switch that stops everyone.
#[derive(Clone, Debug)]
pub struct WorkerContext {
    pub plan: Arc<ScenarioPlan>,
    pub bar: ProgressBar,
    pub stop_switch: Arc<StopSwitch>,
    pub stop_signal: StopSignal,
}

/// Connections for one scenario, opened before its clock starts.
enum Connections {
    Grpc(GrpcConnections),
    Http {
        client: ApiClient,
        connections: Arc<Semaphore>,
    },
}

/// Runs the scenario and returns the merged tally and how long the timed part took.
pub async fn run_scenario(
    plan: ScenarioPlan,
    http_url: &str,
    grpc_url: &str,
    token: &str,
    bar: &ProgressBar,
) -> anyhow::Result<(Tally, Duration)> {
    let connections = if plan.transport.is_grpc() {
        Connections::Grpc(GrpcConnections::connect(grpc_url, token, plan.workers).await?)
    } else {
        let connection_count = plan.workers.min(HTTP_CONNECTIONS_AT_MOST);
        Connections::Http {
            client: ApiClient::new(http_url, token, connection_count)?,
            connections: Arc::new(Semaphore::new(connection_count)),
        }
    };
    let (stop_switch, stop_signal) = stop_pair();
    let context = WorkerContext {
        plan: Arc::new(plan),
        bar: bar.clone(),
        stop_switch: Arc::new(stop_switch),
        stop_signal,
    };
    let workers = context.plan.workers;
    let ready = Arc::new(Barrier::new(workers + 1));
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let context = context.clone();
        let ready = Arc::clone(&ready);
        match &connections {
            Connections::Grpc(grpc) => {
                let grpc = grpc.clone();
                tasks.spawn(async move {
                    // Built before the barrier, so before the clock; an error is reported only
                    // after it, so no worker leaves the others waiting.
                    let prepared = context.plan.load.prepare(worker, workers, true);
                    ready.wait().await;
                    grpc_worker(&grpc, worker, context, prepared?).await
                });
            }
            Connections::Http {
                client,
                connections,
            } => {
                let client = client.clone();
                let connections = Arc::clone(connections);
                tasks.spawn(async move {
                    let prepared = context.plan.load.prepare(worker, workers, false);
                    ready.wait().await;
                    http_worker(&client, &connections, worker, context, prepared?).await
                });
            }
        }
    }
    ready.wait().await;
    let started = Instant::now();
    let mut total = Tally::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a bench worker panicked")??);
    }
    Ok((total, started.elapsed()))
}

async fn grpc_worker(
    grpc: &GrpcConnections,
    worker: usize,
    context: WorkerContext,
    mut prepared: PreparedRequests,
) -> anyhow::Result<Tally> {
    let load = &context.plan.load;
    match context.plan.transport {
        Transport::GrpcUnary => {
            let client = grpc.ingest(worker);
            send_one_at_a_time(&context, worker, |request| {
                let client = client.clone();
                call_until_answered(
                    move || {
                        let mut client = client.clone();
                        let reading = load.proto_reading(worker, request);
                        async move { client.send(reading).await }
                    },
                    judge_ack,
                )
            })
            .await
        }
        Transport::GrpcBatch => {
            let client = grpc.ingest(worker);
            send_one_at_a_time(&context, worker, |request| {
                let client = client.clone();
                let mut prepared = prepared.take_batch(request);
                call_until_answered(
                    move || {
                        let mut client = client.clone();
                        let batch = prepared
                            .take()
                            .unwrap_or_else(|| load.proto_batch(worker, request, request));
                        async move { client.send_batch(batch).await }
                    },
                    move |ack| judge_batch_ack(ack, request),
                )
            })
            .await
        }
        Transport::GrpcStream => {
            stream_worker(grpc.ingest(worker), worker, &context, prepared).await
        }
        Transport::HttpSingle | Transport::HttpBatch => {
            anyhow::bail!("an HTTP transport was given gRPC connections")
        }
    }
}

async fn http_worker(
    client: &ApiClient,
    connections: &Semaphore,
    worker: usize,
    context: WorkerContext,
    prepared: PreparedRequests,
) -> anyhow::Result<Tally> {
    let single = context.plan.transport == Transport::HttpSingle;
    let load = &context.plan.load;
    let stop_signal = context.stop_signal.clone();
    send_one_at_a_time(&context, worker, |request| {
        let mut stop_signal = stop_signal.clone();
        let prepared = prepared.body(request);
        async move {
            let body = match prepared.map_or_else(|| load.json_body(worker, request, single), Ok) {
                Ok(body) => body,
                Err(error) => return lost(format!("{error:#}")),
            };
            // Waiting for a free connection is the client's queue, not the server's latency:
            // `deliver` starts its clock only once the request goes out.
            let Ok(_permit) = connections.acquire().await else {
                return lost("the connection limit was closed".to_string());
            };
            deliver(client, body, HTTP_RETRY_POLICY, &mut stop_signal).await
        }
    })
    .await
}

fn lost(why: String) -> Delivery {
    Delivery {
        failed_attempts: 1,
        last_failure: Some(why),
        ..Delivery::default()
    }
}

/// Sends a worker's requests one after another, recording each; stops early, and stops every
/// other worker, when the server appears to be gone. With a pace each request waits for its due
/// time and its latency runs from then (see [`Pace`]).
async fn send_one_at_a_time<Pending>(
    context: &WorkerContext,
    worker: usize,
    mut send: impl FnMut(u64) -> Pending,
) -> anyhow::Result<Tally>
where
    Pending: Future<Output = Delivery>,
{
    let mut tally = Tally::new()?;
    let plan = &context.plan;
    let readings_per_request = plan.load.readings_per_request();
    // Called right after the start barrier, so every worker's schedule starts together.
    let start = Instant::now();
    let mut lost_in_a_row = 0;
    for request in 0..plan.requests_per_worker {
        if context.stop_signal.is_raised() {
            break;
        }
        let mut paced = None;
        if let Some(pace) = plan.pace {
            let due = pace.due(start, plan.workers, worker, request);
            paced = Some((due, wait_until(due).await));
        }
        let mut delivery = send(request).await;
        if let (Some((due, departure)), Some(answered_in)) = (paced, delivery.answered_in) {
            delivery.answered_in = Some(paced_latency(due, departure, answered_in));
        }
        let answered = delivery.summary.is_some();
        tally.record_delivery(delivery, readings_per_request);
        context.bar.inc(1);
        lost_in_a_row = if answered { 0 } else { lost_in_a_row + 1 };
        if lost_in_a_row >= LOST_REQUESTS_BEFORE_ABORT {
            context.stop_switch.raise();
            break;
        }
    }
    Ok(tally)
}

/// A unary `Send` answers for exactly one reading; a missing or unspecified result is wrong.
fn judge_ack(ack: Ack) -> Result<IngestSummary, String> {
    let status = ack
        .result
        .map(|result| ResultStatus::try_from(result.status).unwrap_or(ResultStatus::Unspecified))
        .unwrap_or(ResultStatus::Unspecified);
    let mut summary = IngestSummary::default();
    match status {
        ResultStatus::Accepted => summary.accepted = 1,
        ResultStatus::Duplicate => summary.duplicates = 1,
        ResultStatus::Rejected => summary.rejected = 1,
        ResultStatus::Unspecified => {
            return Err("an Ack without a reading status".to_string());
        }
    }
    Ok(summary)
}

/// The totals of a `BatchAck`, which must echo the batch it answers; that it answers for every
/// reading is checked by [`Tally::record_delivery`].
pub fn judge_batch_ack(ack: BatchAck, batch_id: u64) -> Result<IngestSummary, String> {
    if ack.batch_id != batch_id {
        return Err(format!(
            "a BatchAck for batch {} answered batch {batch_id}",
            ack.batch_id
        ));
    }
    if !ack.results.is_empty()
        && ack.results.len() as u64
            != u64::from(ack.accepted) + u64::from(ack.duplicates) + u64::from(ack.rejected)
    {
        return Err(format!(
            "a BatchAck with {} results totals {} accepted, {} duplicates, {} rejected",
            ack.results.len(),
            ack.accepted,
            ack.duplicates,
            ack.rejected
        ));
    }
    Ok(IngestSummary {
        accepted: u64::from(ack.accepted),
        duplicates: u64::from(ack.duplicates),
        rejected: u64::from(ack.rejected),
    })
}

#[cfg(test)]
mod tests {
    use audrey_proto::v1::ReadingResult;

    use super::*;

    fn result(status: ResultStatus) -> ReadingResult {
        ReadingResult {
            status: status as i32,
            id: "0190f0c4-0000-7000-8000-000000000000".to_string(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_unary_ack_counts_its_one_reading_by_status() {
        let accepted = Ack {
            result: Some(result(ResultStatus::Accepted)),
        };
        assert_eq!(judge_ack(accepted).unwrap().accepted, 1);
        let duplicate = Ack {
            result: Some(result(ResultStatus::Duplicate)),
        };
        assert_eq!(judge_ack(duplicate).unwrap().duplicates, 1);
        assert!(judge_ack(Ack { result: None }).is_err());
        let unknown = Ack {
            result: Some(ReadingResult {
                status: 42,
                ..result(ResultStatus::Accepted)
            }),
        };
        assert!(judge_ack(unknown).is_err());
    }

    #[test]
    fn a_batch_ack_must_echo_its_batch_and_add_up() {
        let ack = BatchAck {
            batch_id: 7,
            results: vec![
                result(ResultStatus::Accepted),
                result(ResultStatus::Rejected),
            ],
            accepted: 1,
            duplicates: 0,
            rejected: 1,
        };
        let summary = judge_batch_ack(ack.clone(), 7).unwrap();
        assert_eq!(summary.answered(), 2);
        assert!(judge_batch_ack(ack.clone(), 8).is_err());
        let miscounted = BatchAck { accepted: 2, ..ack };
        assert!(judge_batch_ack(miscounted, 7).is_err());
    }
}
