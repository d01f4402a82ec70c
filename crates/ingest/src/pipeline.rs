//! The group-commit pipeline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};

use audrey_model::{
    ErrorCode, FieldError, Millis, RawReading, ReadingId, Reason, SensorId, sensor_id_hint,
    validate_reading,
};
use audrey_store::{AppendBatch, AppendOutcome, QuarantineEntry, Store, StoreError};

use crate::IngestMetrics;
use crate::observer::{CommitObserver, CommittedBatch, RejectedReading};

#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Most readings one transaction takes.
    pub max_commit_readings: usize,
    /// Most readings queued or committing at once; beyond it callers wait.
    pub queue_readings: usize,
    /// How long a caller waits for room before it is told to retry.
    pub enqueue_timeout: Duration,
    /// How often background store maintenance (flush, trimming) runs.
    pub maintenance_interval: Duration,
    /// Readings older than this are removed by the maintenance thread; `None` keeps all.
    pub retention: Option<Duration>,
    /// Committer threads; `None` starts as many as the store can use
    /// ([`Store::concurrent_appends`]: 1 on SQLite, several on PostgreSQL).
    pub committers: Option<usize>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_commit_readings: 50_000,
            queue_readings: 200_000,
            enqueue_timeout: Duration::from_secs(2),
            maintenance_interval: Duration::from_millis(100),
            retention: None,
            committers: None,
        }
    }
}

/// How often the maintenance thread applies retention.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Rows one retention step removes: small enough that no step holds the store for long.
const RETENTION_BATCH_ROWS: usize = 10_000;

/// Removes readings older than `keep`, one bounded step at a time, until nothing is left or
/// the pipeline stops.
fn apply_retention(store: &dyn Store, keep: Duration, stop: &std::sync::atomic::AtomicBool) {
    let cutoff = Millis(Millis::now().0.saturating_sub(keep.as_millis() as i64));
    let mut removed = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match store.retain(cutoff, RETENTION_BATCH_ROWS) {
            Ok(0) => break,
            Ok(rows) => removed += rows,
            Err(error) => {
                tracing::error!(%error, "retention failed; will retry");
                break;
            }
        }
    }
    if removed > 0 {
        tracing::info!(rows = removed, cutoff = %cutoff, "retention removed old readings");
    }
}

/// One item of a request as the transport parsed it.
#[derive(Debug)]
pub struct IncomingItem {
    /// The reading, or why it could not even be parsed.
    pub parsed: Result<RawReading, FieldError>,
    /// The item's raw text, kept in quarantine if it is rejected.
    pub payload: Payload,
}

/// The text quarantine keeps for an item if it is rejected. Either a slice of a request body
/// shared by all its items (a batch costs one copy of the body, not one per reading, and only
/// a rejected item's text is ever copied out), or, for a transport whose items have no text
/// form (gRPC), a function that writes the text from the parsed reading, called only for a
/// rejected item instead of for every reading.
#[derive(Clone, Debug)]
pub struct Payload(PayloadText);

#[derive(Clone, Debug)]
enum PayloadText {
    Part {
        body: Arc<str>,
        range: std::ops::Range<usize>,
    },
    WrittenFromReading(fn(&RawReading) -> String),
}

impl Payload {
    pub fn whole(text: impl Into<Arc<str>>) -> Payload {
        let body: Arc<str> = text.into();
        let range = 0..body.len();
        Payload(PayloadText::Part { body, range })
    }

    /// `part` must be a sub-slice of `body` (as serde's raw values and `str::lines` give).
    pub fn part_of(body: &Arc<str>, part: &str) -> Payload {
        let start = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        let inside = start <= body.len() && start + part.len() <= body.len();
        debug_assert!(inside, "a payload must be a slice of its body");
        if inside {
            Payload(PayloadText::Part {
                body: body.clone(),
                range: start..start + part.len(),
            })
        } else {
            Payload::whole(part)
        }
    }

    /// Text written by `write` from the parsed reading, only if the item is rejected. An item
    /// whose reading did not parse must carry its text ([`Payload::whole`]) instead: without
    /// a reading this payload's text is empty.
    pub fn written_from_reading(write: fn(&RawReading) -> String) -> Payload {
        Payload(PayloadText::WrittenFromReading(write))
    }

    /// The text quarantine keeps; `parsed` is the item's reading when it parsed.
    pub fn text(&self, parsed: Option<&RawReading>) -> std::borrow::Cow<'_, str> {
        match &self.0 {
            PayloadText::Part { body, range } => std::borrow::Cow::Borrowed(&body[range.clone()]),
            PayloadText::WrittenFromReading(write) => {
                std::borrow::Cow::Owned(parsed.map(write).unwrap_or_default())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemOutcome {
    Accepted(ReadingId),
    Duplicate(ReadingId),
    Rejected(Vec<FieldError>),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the ingest queue is full; retry after {retry_after:?}")]
    Overloaded { retry_after: Duration },
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("this token may only write readings of sensor {0}")]
    WrongSensor(String),
    /// `atomic` was asked and some items are invalid; nothing was stored.
    #[error("{} of the readings are invalid; none was stored", .0.len())]
    AtomicRejected(Vec<(usize, Vec<FieldError>)>),
}

impl IngestError {
    pub fn code(&self) -> ErrorCode {
        match self {
            IngestError::Overloaded { .. } => ErrorCode::Overloaded,
            IngestError::Unavailable(_) | IngestError::ShuttingDown => ErrorCode::Unavailable,
            IngestError::WrongSensor(_) => ErrorCode::PermissionDenied,
            IngestError::AtomicRejected(_) => ErrorCode::Invalid,
        }
    }
}

struct Job {
    batch: AppendBatch,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, StoreError>>,
    _room: Option<OwnedSemaphorePermit>,
}

pub struct Pipeline {
    store: Arc<dyn Store>,
    options: IngestOptions,
    metrics: Arc<IngestMetrics>,
    room: Arc<Semaphore>,
    jobs: std::sync::Mutex<Option<mpsc::UnboundedSender<Job>>>,
    workers: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    stop_maintenance: Arc<std::sync::atomic::AtomicBool>,
}

impl Pipeline {
    /// Starts the committer threads (see [`IngestOptions::committers`]) and the maintenance
    /// thread.
    pub fn start(
        store: Arc<dyn Store>,
        options: IngestOptions,
        metrics: Arc<IngestMetrics>,
    ) -> Arc<Pipeline> {
        Pipeline::start_observed(store, options, metrics, None)
    }

    /// Like [`Pipeline::start`], and after each durable commit (once its requests are
    /// answered) hands what was stored to `observer` on that committer's thread.
    pub fn start_observed(
        store: Arc<dyn Store>,
        options: IngestOptions,
        metrics: Arc<IngestMetrics>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Arc<Pipeline> {
        // The channel itself is unbounded but every job holds permits of `room`, so what is
        // queued is bounded by `queue_readings`.
        let (sender, receiver) = mpsc::unbounded_channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let count = options
            .committers
            .unwrap_or_else(|| store.concurrent_appends())
            .max(1);
        let shared = Arc::new(Committers {
            jobs: std::sync::Mutex::new(receiver),
            store: store.clone(),
            metrics: metrics.clone(),
            max: options.max_commit_readings,
            observer: observer.map(std::sync::Mutex::new),
        });
        let mut workers: Vec<std::thread::JoinHandle<()>> = (0..count)
            .map(|index| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("audrey-committer-{index}"))
                    .spawn(move || shared.run())
                    .expect("spawning a committer thread")
            })
            .collect();
        let maintenance = {
            let store = store.clone();
            let stop = stop.clone();
            let interval = options.maintenance_interval;
            let retention = options.retention;
            std::thread::Builder::new()
                .name("audrey-maintenance".into())
                .spawn(move || {
                    let mut last_retention: Option<Instant> = None;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Err(error) = store.maintain() {
                            tracing::error!(%error, "store maintenance failed; will retry");
                        }
                        if let Some(keep) = retention
                            && last_retention.is_none_or(|at| at.elapsed() >= RETENTION_INTERVAL)
                        {
                            last_retention = Some(Instant::now());
                            apply_retention(&*store, keep, &stop);
                        }
                        std::thread::sleep(interval);
                    }
                })
                .expect("spawning the maintenance thread")
        };
        Arc::new(Pipeline {
            store,
            room: Arc::new(Semaphore::new(options.queue_readings)),
            options,
            metrics,
            jobs: std::sync::Mutex::new(Some(sender)),
            workers: std::sync::Mutex::new({
                workers.push(maintenance);
                workers
            }),
            stop_maintenance: stop,
        })
    }

    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Validates, stores and acknowledges. `only_sensor` restricts a sensor-bound caller;
    /// `atomic` stores all items or none. Returns one outcome per item, in order.
    pub async fn submit(
        &self,
        items: Vec<IncomingItem>,
        atomic: bool,
        only_sensor: Option<&SensorId>,
    ) -> Result<Vec<ItemOutcome>, IngestError> {
        if let Some(allowed) = only_sensor {
            let foreign = items.iter().find_map(|item| match &item.parsed {
                Ok(raw) if raw.sensor_id != allowed.as_str() => Some(raw.sensor_id.clone()),
                _ => None,
            });
            if foreign.is_some() {
                return Err(IngestError::WrongSensor(allowed.to_string()));
            }
        }
        let now = Millis::now();
        // Every parsed reading checked against the registry in one look at its cache.
        let sensor_ids: Vec<&str> = items
            .iter()
            .map(|item| {
                item.parsed
                    .as_ref()
                    .map_or("", |raw| raw.sensor_id.as_str())
            })
            .collect();
        let mut validated = Vec::with_capacity(items.len());
        self.store
            .visit_cached_sensors(&sensor_ids, &mut |index, sensor| {
                if let Ok(raw) = &items[index].parsed {
                    validated.push(
                        validate_reading(raw, sensor, now)
                            .map_err(|errors| (Some(raw.sensor_id.clone()), errors)),
                    );
                }
            });
        let mut validated = validated.into_iter();
        let mut outcomes: Vec<Option<ItemOutcome>> = Vec::with_capacity(items.len());
        let mut batch = AppendBatch {
            readings: Vec::with_capacity(items.len()),
            ..AppendBatch::default()
        };
        let mut accepted_slots = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let checked = match &item.parsed {
                Ok(_) => validated.next().expect("one validation per parsed reading"),
                Err(error) => Err((
                    sensor_id_hint(&item.payload.text(None)),
                    vec![error.clone()],
                )),
            };
            match checked {
                Ok(valid) => {
                    accepted_slots.push(index);
                    batch.readings.push(valid);
                    outcomes.push(None);
                }
                Err((sensor_id, errors)) => {
                    let payload = item.payload.text(item.parsed.as_ref().ok());
                    batch
                        .quarantine
                        .push(quarantine_entry(sensor_id, &errors, &payload));
                    outcomes.push(Some(ItemOutcome::Rejected(errors)));
                }
            }
        }
        self.metrics.rejected(batch.quarantine.len() as u64);
        let rejected: Vec<(usize, Vec<FieldError>)> = outcomes
            .iter()
            .enumerate()
            .filter_map(|(index, outcome)| match outcome {
                Some(ItemOutcome::Rejected(errors)) => Some((index, errors.clone())),
                _ => None,
            })
            .collect();
        if atomic && !rejected.is_empty() {
            // Nothing is stored, but the bad readings are still kept in quarantine.
            batch.readings.clear();
            self.commit(batch).await?;
            return Err(IngestError::AtomicRejected(rejected));
        }
        if batch.readings.is_empty() && batch.quarantine.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.commit(batch).await?;
        for (slot, outcome) in accepted_slots.into_iter().zip(stored) {
            outcomes[slot] = Some(match outcome {
                AppendOutcome::Accepted(id) => ItemOutcome::Accepted(id),
                AppendOutcome::Duplicate(id) => ItemOutcome::Duplicate(id),
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every slot is filled"))
            .collect())
    }

    async fn commit(&self, batch: AppendBatch) -> Result<Vec<AppendOutcome>, IngestError> {
        let size = (batch.readings.len() + batch.quarantine.len()).max(1);
        let wanted = size.min(self.options.queue_readings) as u32;
        // Room is usually free: take it without arming a timer (a timer per single-reading
        // request is a measurable share of its cost); only a full queue waits, with a limit.
        let room = match self.room.clone().try_acquire_many_owned(wanted) {
            Ok(room) => room,
            Err(TryAcquireError::Closed) => return Err(IngestError::ShuttingDown),
            Err(TryAcquireError::NoPermits) => tokio::time::timeout(
                self.options.enqueue_timeout,
                self.room.clone().acquire_many_owned(wanted),
            )
            .await
            .map_err(|_| {
                self.metrics.overloaded(size);
                IngestError::Overloaded {
                    retry_after: Duration::from_secs(1),
                }
            })?
            .map_err(|_| IngestError::ShuttingDown)?,
        };
        let (reply, answer) = oneshot::channel();
        {
            let jobs = self.jobs.lock().map_err(|_| IngestError::ShuttingDown)?;
            let sender = jobs.as_ref().ok_or(IngestError::ShuttingDown)?;
            self.metrics.queue_changed(size as i64);
            sender
                .send(Job {
                    batch,
                    reply,
                    _room: Some(room),
                })
                .map_err(|_| IngestError::ShuttingDown)?;
        }
        let result = answer.await.map_err(|_| IngestError::ShuttingDown)?;
        self.metrics.queue_changed(-(size as i64));
        result.map_err(|error| IngestError::Unavailable(error.to_string()))
    }

    /// Stops taking work, lets the committers finish every queued job, stops maintenance.
    pub fn shutdown(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        self.room.close();
        self.stop_maintenance
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let workers = self
            .workers
            .lock()
            .map(|mut workers| std::mem::take(&mut *workers))
            .unwrap_or_default();
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn quarantine_entry(
    sensor_id: Option<String>,
    errors: &[FieldError],
    payload: &str,
) -> QuarantineEntry {
    let first = errors.first();
    QuarantineEntry {
        id: 0,
        received_at: Millis::now(),
        sensor_id,
        reason: first
            .map_or(Reason::Malformed, |error| error.reason)
            .as_str()
            .to_string(),
        path: first.map(|error| error.path.clone()).unwrap_or_default(),
        message: errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        payload: payload.to_string(),
    }
}

/// What the committer threads share. Each takes a job, then everything queued behind it up
/// to `max` readings, and commits them as one transaction; with several committers the next
/// group is taken while earlier ones are still committing. They run until every sender is
/// gone and the queue is empty.
struct Committers {
    jobs: std::sync::Mutex<mpsc::UnboundedReceiver<Job>>,
    store: Arc<dyn Store>,
    metrics: Arc<IngestMetrics>,
    max: usize,
    /// Behind a lock so the observer sees one batch at a time, each exactly once.
    observer: Option<std::sync::Mutex<Arc<dyn CommitObserver>>>,
}

impl Committers {
    /// Takes the next group of jobs; `None` once the queue is closed and empty.
    fn next_group(&self) -> Option<Vec<Job>> {
        // Only one committer gathers at a time, so a group holds consecutive jobs.
        let mut jobs = self.jobs.lock().ok()?;
        let first = jobs.blocking_recv()?;
        let mut readings = first.batch.readings.len();
        let mut group = vec![first];
        while readings < self.max {
            match jobs.try_recv() {
                Ok(job) => {
                    readings += job.batch.readings.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        Some(group)
    }

    fn run(&self) {
        while let Some(group) = self.next_group() {
            self.commit(group);
        }
    }

    fn commit(&self, mut group: Vec<Job>) {
        let (store, metrics) = (&self.store, &self.metrics);
        let readings: usize = group.iter().map(|job| job.batch.readings.len()).sum();
        let mut merged = AppendBatch {
            readings: Vec::with_capacity(readings),
            ..AppendBatch::default()
        };
        let mut sizes = Vec::with_capacity(group.len());
        for job in &mut group {
            sizes.push(job.batch.readings.len());
            merged.readings.append(&mut job.batch.readings);
            merged.quarantine.append(&mut job.batch.quarantine);
        }
        // Only with an observer is the batch copied: the store consumes it.
        let observed = self.observer.as_ref().map(|_| {
            let now = Millis::now();
            let rejections = merged
                .quarantine
                .iter()
                .map(|entry| RejectedReading {
                    sensor_id: entry.sensor_id.clone(),
                    reason: entry.reason.clone(),
                    received_at: now,
                })
                .collect::<Vec<_>>();
            (merged.readings.clone(), rejections)
        });
        let started = Instant::now();
        let received_at = Millis::now();
        match store.append(merged, received_at) {
            Ok(outcomes) => {
                let duplicates = outcomes
                    .iter()
                    .filter(|outcome| matches!(outcome, AppendOutcome::Duplicate(_)))
                    .count();
                metrics.committed(
                    readings,
                    (outcomes.len() - duplicates) as u64,
                    duplicates as u64,
                    started.elapsed(),
                );
                let accepted: Vec<Option<ReadingId>> = match observed {
                    Some(_) => outcomes
                        .iter()
                        .map(|outcome| match outcome {
                            AppendOutcome::Accepted(id) => Some(*id),
                            AppendOutcome::Duplicate(_) => None,
                        })
                        .collect(),
                    None => Vec::new(),
                };
                let mut outcomes = outcomes.into_iter();
                for (job, size) in group.into_iter().zip(sizes) {
                    let _ = job.reply.send(Ok(outcomes.by_ref().take(size).collect()));
                }
                // Every request is answered: only now may the observer take its time.
                if let (Some(observer), Some((readings, rejections))) = (&self.observer, observed) {
                    let readings = readings
                        .into_iter()
                        .zip(accepted)
                        .filter_map(|(reading, id)| {
                            id.map(|id| reading.into_reading(id, received_at))
                        })
                        .collect();
                    let batch = CommittedBatch {
                        readings,
                        rejections,
                    };
                    // A panicking observer poisons the lock; later batches still reach it.
                    let observer = observer
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    observer.committed(batch);
                }
            }
            Err(error) => {
                metrics.commit_failed(&error);
                for job in group {
                    let _ = job
                        .reply
                        .send(Err(StoreError::Unavailable(error.to_string())));
                }
            }
        }
    }
}
