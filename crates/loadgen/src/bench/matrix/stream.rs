//! The gRPC `Stream` worker: all of a worker's batches on one call, a bounded window of them
//! unacknowledged at a time.
//!
//! A request counts as complete when its `BatchAck` arrives; its latency runs from the moment the
//! batch was handed to the call to that ack. Acks come in order (the protocol promises it), so
//! each ack must answer the oldest unacknowledged batch; one that does not is a server bug and is
//! counted as an error. Keeping [`UNACKNOWLEDGED_BATCHES_AT_MOST`] batches in flight hides the
//! round trip the way a real gateway would, without letting the client run arbitrarily far ahead
//! of what the server has made durable.
//!
//! With a pace (`--rate`) a batch is sent at its due time, or as soon as the window has room
//! when it is late. A batch the window held past its due time is timed from the due time, one
//! that only waited for its time from its send (see [`Pace`]).
//!
//! When the server ends the call because it is overloaded, the worker does what the unary and
//! HTTP workers do with an overloaded answer: it waits as asked, opens a new call and resends
//! every batch still unacknowledged, message ids and all, so a batch that did land is answered as
//! duplicates rather than stored twice. Each reopening is counted as a retry.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use audrey_proto::v1::{BatchAck, ReadingBatch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codec::Streaming;

use crate::bench::matrix::load::PreparedRequests;
use crate::bench::matrix::pace::{Departure, Pace, wait_until};
use crate::bench::matrix::scenario::{WorkerContext, judge_batch_ack};
use crate::bench::report::Tally;
use crate::delivery::Delivery;
use crate::grpc_client::{CALL_TIMEOUT, IngestClient, describe_status, overload_pause};

/// At most this many batches are sent and not yet acknowledged on one stream.
pub const UNACKNOWLEDGED_BATCHES_AT_MOST: usize = 8;

/// One worker's progress, kept across calls: batches sent and not yet acknowledged (request
/// number and when its latency started: when it was last sent, or with a pace its due time),
/// oldest first, and the next request to send.
struct Window<'a> {
    worker: usize,
    context: &'a WorkerContext,
    /// When the scenario's clock started, for the pace's schedule.
    start: Instant,
    unacknowledged: VecDeque<(u64, Instant)>,
    next_request: u64,
    /// Batches built before the clock, each handed to the call once.
    prepared: PreparedRequests,
}

/// How one call ended.
enum CallEnd {
    /// Every batch was sent and acknowledged and the server closed the call cleanly.
    Finished,
    /// The server shed load; wait this long, then open a new call.
    Overloaded(Duration, String),
    Failed(String),
}

impl Window<'_> {
    fn batch(&mut self, request: u64) -> ReadingBatch {
        // The batch id is the request number: unique on this stream and easy to check. A
        // batch sent again on a new call is built again, identical.
        self.prepared.take_batch(request).unwrap_or_else(|| {
            self.context
                .plan
                .load
                .proto_batch(self.worker, request, request)
        })
    }

    fn pace(&self) -> Option<Pace> {
        self.context.plan.pace
    }

    /// Whether another batch may go out now, given the window and what is left to send; with a
    /// pace it may also have to wait for its due time ([`Window::next_due`]).
    fn has_room(&self) -> bool {
        self.unacknowledged.len() < UNACKNOWLEDGED_BATCHES_AT_MOST
            && self.next_request < self.context.plan.requests_per_worker
            && !self.context.stop_signal.is_raised()
    }

    /// With a pace, when the next batch is due, if the window has room for it.
    fn next_due(&self) -> Option<Instant> {
        let plan = &self.context.plan;
        let pace = self.pace()?;
        self.has_room()
            .then(|| pace.due(self.start, plan.workers, self.worker, self.next_request))
    }

    /// Sends batches until the window is full, the worker has none left or, with a pace, the
    /// next one is not due yet. `departure` says why batches are going now: `Early` when the
    /// pace's timer woke us (the window had room at their due time), `Late` otherwise (an ack
    /// made room for batches already due). Returns `false` when the call has already ended and
    /// nothing more can be sent.
    async fn fill(&mut self, sender: &mpsc::Sender<ReadingBatch>, departure: Departure) -> bool {
        while self.has_room() {
            let now = Instant::now();
            let sent_at = match (self.next_due(), departure) {
                (Some(due), _) if due > now => break,
                (Some(due), Departure::Late) => due,
                (Some(_), Departure::Early) | (None, _) => now,
            };
            let request = self.next_request;
            if sender.send(self.batch(request)).await.is_err() {
                return false;
            }
            self.unacknowledged.push_back((request, sent_at));
            self.next_request += 1;
        }
        true
    }

    /// [`Window::fill`] on a call that is open: the call ending under it ends the call.
    async fn fill_during_call(
        &mut self,
        sender: &mpsc::Sender<ReadingBatch>,
        departure: Departure,
    ) -> Result<(), CallEnd> {
        if self.fill(sender, departure).await {
            Ok(())
        } else {
            Err(CallEnd::Failed(
                "the call ended before every batch was sent".to_string(),
            ))
        }
    }

    /// Sends again, on a new call, what the previous call left unacknowledged. With a pace a
    /// batch's latency still runs from its due time.
    async fn resend(&mut self, sender: &mpsc::Sender<ReadingBatch>) -> bool {
        for index in 0..self.unacknowledged.len() {
            let request = self.unacknowledged[index].0;
            if self.pace().is_none() {
                self.unacknowledged[index].1 = Instant::now();
            }
            if sender.send(self.batch(request)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Every batch still waiting will never be answered: count each as lost, saying why.
    fn give_up(&mut self, tally: &mut Tally, why: &str) {
        let readings_per_request = self.context.plan.load.readings_per_request();
        for (batch_id, _) in self.unacknowledged.drain(..) {
            tally.record_delivery(
                lost(format!("batch {batch_id} was never acknowledged: {why}")),
                readings_per_request,
            );
            self.context.bar.inc(1);
        }
    }
}

fn lost(why: String) -> Delivery {
    Delivery {
        failed_attempts: 1,
        last_failure: Some(why),
        ..Delivery::default()
    }
}

pub async fn stream_worker(
    mut client: IngestClient,
    worker: usize,
    context: &WorkerContext,
    prepared: PreparedRequests,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut window = Window {
        worker,
        context,
        start: Instant::now(),
        unacknowledged: VecDeque::with_capacity(UNACKNOWLEDGED_BATCHES_AT_MOST),
        next_request: 0,
        prepared,
    };
    loop {
        match one_call(&mut client, &mut window, &mut tally).await {
            CallEnd::Finished => break,
            CallEnd::Overloaded(pause, _) if !context.stop_signal.is_raised() => {
                tally.retries += 1;
                tokio::time::sleep(pause).await;
            }
            CallEnd::Overloaded(_, why) | CallEnd::Failed(why) => {
                window.give_up(&mut tally, &why);
                break;
            }
        }
    }
    Ok(tally)
}

/// What to do after the call ended with `status`; the worker's retries so far are its reopenings.
fn after(status: &Status, tally: &Tally) -> CallEnd {
    match overload_pause(status, tally.retries) {
        Some(pause) => CallEnd::Overloaded(pause, describe_status(status)),
        None => CallEnd::Failed(describe_status(status)),
    }
}

async fn one_call(
    client: &mut IngestClient,
    window: &mut Window<'_>,
    tally: &mut Tally,
) -> CallEnd {
    let (sender, receiver) = mpsc::channel(UNACKNOWLEDGED_BATCHES_AT_MOST);
    // Batches go in before the call is opened: a server may wait for the first batch before it
    // sends its response headers, and the call's future resolves only with those headers. So
    // with a pace, a call with nothing to resend opens once its first batch is due.
    let departure = match window.next_due() {
        Some(due) if window.unacknowledged.is_empty() => wait_until(due).await,
        _ => Departure::Late,
    };
    if !(window.resend(&sender).await && window.fill(&sender, departure).await) {
        return CallEnd::Failed("the request stream closed before it opened".to_string());
    }
    let opened =
        tokio::time::timeout(CALL_TIMEOUT, client.stream(ReceiverStream::new(receiver))).await;
    let mut acks = match opened {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return after(&status, tally),
        Err(_) => return CallEnd::Failed("the stream did not open in time".to_string()),
    };
    if let Err(end) = receive_acks(window, &sender, &mut acks, tally).await {
        return end;
    }
    // Closing our side tells the server we are done; it should then end the call cleanly.
    drop(sender);
    match tokio::time::timeout(CALL_TIMEOUT, acks.message()).await {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(ack))) => tally.record_error(|| {
            format!(
                "an ack for batch {} arrived after every batch was acknowledged",
                ack.batch_id
            )
        }),
        Ok(Err(status)) => tally.record_error(|| {
            format!(
                "the stream ended with an error after every ack: {}",
                describe_status(&status)
            )
        }),
        Err(_) => tally.record_error(|| "the server did not end the stream".to_string()),
    }
    CallEnd::Finished
}

/// Takes acks until every batch is sent and acknowledged, or says how the call ended before.
/// With a pace, batches that fall due meanwhile are sent between acks.
async fn receive_acks(
    window: &mut Window<'_>,
    sender: &mpsc::Sender<ReadingBatch>,
    acks: &mut Streaming<BatchAck>,
    tally: &mut Tally,
) -> Result<(), CallEnd> {
    let readings_per_request = window.context.plan.load.readings_per_request();
    loop {
        let next_due = window.next_due();
        let Some(&(batch_id, sent_at)) = window.unacknowledged.front() else {
            // Nothing in flight: done, unless a paced batch is still to come.
            let Some(due) = next_due else {
                return Ok(());
            };
            let departure = wait_until(due).await;
            window.fill_during_call(sender, departure).await?;
            continue;
        };
        let answer = tokio::select! {
            answer = tokio::time::timeout(CALL_TIMEOUT, acks.message()) => answer,
            // `message` keeps its state in the stream, so dropping it here loses nothing.
            departure = wait_until(next_due.unwrap_or(sent_at)), if next_due.is_some() => {
                window.fill_during_call(sender, departure).await?;
                continue;
            }
        };
        let ack = match answer {
            Ok(Ok(Some(ack))) => ack,
            Ok(Ok(None)) => {
                return Err(CallEnd::Failed(
                    "the server ended the stream early".to_string(),
                ));
            }
            Ok(Err(status)) => return Err(after(&status, tally)),
            Err(_) => {
                return Err(CallEnd::Failed(format!(
                    "no ack within {} s",
                    CALL_TIMEOUT.as_secs()
                )));
            }
        };
        let answered_in = sent_at.elapsed();
        window.unacknowledged.pop_front();
        let delivery = match judge_batch_ack(ack, batch_id) {
            Ok(summary) => Delivery {
                summary: Some(summary),
                answered_in: Some(answered_in),
                ..Delivery::default()
            },
            Err(problem) => lost(problem),
        };
        tally.record_delivery(delivery, readings_per_request);
        window.context.bar.inc(1);
        window.fill_during_call(sender, Departure::Late).await?;
    }
}
