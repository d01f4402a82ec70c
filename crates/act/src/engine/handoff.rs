//! How committed batches reach the act thread: a queue bounded in readings, and steps paced
//! under load.
//!
//! Each evaluation step is an act.db transaction (an fsync) and a wake-up of the act thread.
//! One step per group commit made ~500 steps a second under 25,000 unary readings a second:
//! ~16,000 wake-ups and 3,000+ fsyncs per 160,000 readings beside the ingest path's own, on
//! the same two cores and disk (docs/benchmarks.md, session 8). So while batches keep coming,
//! a step starts at most every [`STEP_INTERVAL_UNDER_LOAD`], taking everything committed
//! meanwhile; a batch after a quiet spell is evaluated at once. The committer is held back
//! only when the readings waiting exceed the bound, never by the pacing: the bound is in
//! readings, not batches, so many small commits cannot fill it while a step waits.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use audrey_ingest::{CommitObserver, CommittedBatch};

/// The shortest time between two evaluation steps while batches keep coming. An alert
/// raised under load waits at most this much longer.
pub(crate) const STEP_INTERVAL_UNDER_LOAD: Duration = Duration::from_millis(20);

/// Readings merged into one evaluation step at most; more waiting starts the next step at
/// once.
pub(crate) const MERGED_READINGS: usize = 20_000;

#[derive(Default)]
struct Waiting {
    batches: Vec<CommittedBatch>,
    readings: usize,
    /// The act thread is waiting for a first batch (not pacing): a push must wake it.
    idle: bool,
    /// The pipeline dropped the observer: evaluate what is left, then stop.
    closed: bool,
}

#[derive(Default)]
pub(crate) struct Handoff {
    waiting: Mutex<Waiting>,
    /// The act thread waits here, for work or for its next step to be due.
    work: Condvar,
    /// The committer waits here while too many readings are waiting.
    room: Condvar,
    bound: usize,
    pacing: Duration,
}

impl Handoff {
    /// A handoff holding back the committer past `queued_readings`, with steps at most every
    /// `pacing` under load ([`STEP_INTERVAL_UNDER_LOAD`] in the engine).
    pub(crate) fn new(queued_readings: usize, pacing: Duration) -> Handoff {
        Handoff {
            bound: queued_readings.max(1),
            pacing,
            ..Handoff::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // A panic inside the act thread's evaluation never holds this lock.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a committed batch; blocks while the readings waiting exceed the bound (the
    /// backpressure), unless nothing is waiting.
    pub(crate) fn push(&self, batch: CommittedBatch) {
        let mut waiting = self.lock();
        while waiting.readings >= self.bound && !waiting.batches.is_empty() && !waiting.closed {
            waiting = self
                .room
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner);
        }
        waiting.readings += batch.readings.len();
        waiting.batches.push(batch);
        if waiting.idle || waiting.readings >= MERGED_READINGS {
            self.work.notify_one();
        }
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
        self.room.notify_all();
    }

    /// The next step's batches, merged: waits for a first batch, then, if the last step
    /// started less than the pacing interval ago, until that much has passed or
    /// [`MERGED_READINGS`] are waiting. `None` once closed and empty.
    pub(crate) fn next_step(&self, last_step: Option<Instant>) -> Option<CommittedBatch> {
        let mut waiting = self.lock();
        while waiting.batches.is_empty() {
            if waiting.closed {
                return None;
            }
            waiting.idle = true;
            waiting = self
                .work
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner);
            waiting.idle = false;
        }
        if let Some(due) = last_step.map(|at| at + self.pacing) {
            loop {
                let now = Instant::now();
                if now >= due || waiting.readings >= MERGED_READINGS || waiting.closed {
                    break;
                }
                waiting = self
                    .work
                    .wait_timeout(waiting, due - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        let mut taken = 0;
        let mut readings = 0;
        for batch in &waiting.batches {
            if taken > 0 && readings >= MERGED_READINGS {
                break;
            }
            readings += batch.readings.len();
            taken += 1;
        }
        let mut batches = waiting.batches.drain(..taken);
        let mut merged = batches.next().expect("at least one batch waits");
        for batch in batches {
            merged.readings.extend(batch.readings);
            merged.rejections.extend(batch.rejections);
        }
        waiting.readings -= readings;
        drop(waiting);
        self.room.notify_all();
        Some(merged)
    }
}

/// The pipeline's end of the handoff.
pub(crate) struct HandoffObserver(pub(crate) std::sync::Arc<Handoff>);

impl CommitObserver for HandoffObserver {
    fn committed(&self, batch: CommittedBatch) {
        self.0.push(batch);
    }
}

impl Drop for HandoffObserver {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use audrey_model::{LocationId, Millis, Reading, ReadingId, ReadingValues, SensorId};

    use super::*;

    /// A pacing interval no test waits out: a step that returns well before it did not wait.
    const LONG: Duration = Duration::from_secs(10);

    fn batch(readings: usize) -> CommittedBatch {
        let reading = Reading {
            id: ReadingId(uuid::Uuid::now_v7()),
            sensor_id: SensorId::parse("s-1").unwrap(),
            location_id: LocationId::parse("loc-1").unwrap(),
            read_at: Millis(0),
            received_at: Millis(0),
            values: ReadingValues::default(),
            message_id: None,
        };
        CommittedBatch {
            readings: vec![reading; readings],
            rejections: Vec::new(),
        }
    }

    #[test]
    fn a_batch_after_a_quiet_spell_is_evaluated_at_once_and_later_ones_join_one_paced_step() {
        let pacing = Duration::from_millis(200);
        let handoff = Handoff::new(1_000, pacing);
        handoff.push(batch(1));
        let long_ago = Instant::now() - LONG;
        let started = Instant::now();
        assert_eq!(handoff.next_step(Some(long_ago)).unwrap().readings.len(), 1);
        assert!(started.elapsed() < pacing, "no pacing after a quiet spell");
        let last_step = Instant::now();
        for _ in 0..5 {
            handoff.push(batch(2));
        }
        let step = handoff.next_step(Some(last_step)).unwrap();
        assert_eq!(step.readings.len(), 10, "the five batches make one step");
        assert!(last_step.elapsed() >= pacing, "and it waited its turn");
    }

    #[test]
    fn enough_readings_start_a_step_without_waiting_and_a_step_takes_at_most_its_share() {
        let handoff = Handoff::new(10 * MERGED_READINGS, LONG);
        for _ in 0..3 {
            handoff.push(batch(MERGED_READINGS / 2 + 1));
        }
        let recent = Instant::now();
        let step = handoff.next_step(Some(recent)).unwrap();
        assert_eq!(step.readings.len(), 2 * (MERGED_READINGS / 2 + 1));
        assert!(recent.elapsed() < LONG / 2);
        assert_eq!(handoff.lock().readings, MERGED_READINGS / 2 + 1);
    }

    #[test]
    fn the_committer_waits_only_while_the_readings_waiting_exceed_the_bound() {
        let handoff = Arc::new(Handoff::new(10, LONG));
        // One batch over the bound still goes in when nothing waits.
        handoff.push(batch(15));
        let pusher = {
            let handoff = handoff.clone();
            std::thread::spawn(move || handoff.push(batch(1)))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!pusher.is_finished(), "held back while 15 readings wait");
        assert_eq!(handoff.next_step(None).unwrap().readings.len(), 15);
        pusher.join().unwrap();
        assert_eq!(handoff.lock().readings, 1);
    }

    #[test]
    fn a_closed_handoff_hands_out_what_is_left_then_ends() {
        let handoff = Arc::new(Handoff::new(100, LONG));
        let observer = HandoffObserver(handoff.clone());
        observer.committed(batch(3));
        drop(observer);
        assert_eq!(
            handoff
                .next_step(Some(Instant::now()))
                .unwrap()
                .readings
                .len(),
            3
        );
        assert!(handoff.next_step(None).is_none());
    }
}
