//! [`SpoolingStore`]: a [`Store`] that sends appends to the inner store while it is healthy and
//! to the spool while it is not (or while the spool still holds anything), and the forwarder
//! thread that replays the spool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use audrey_model::{
    GeoCircle, ImportRow, Location, LocationId, MessageId, Millis, Reading, ReadingId, Sensor,
    SensorId,
};
use audrey_store::{
    AggregateQuery, AppendBatch, AppendOutcome, Bucket, Degraded, LocationFilter, NearLocation,
    Page, QuarantineEntry, QuarantineFilter, ReadingQuery, SensorCounters, SensorFilter,
    StagedChange, StagedStatus, StatsGroup, StatsQuery, Store, StoreError, StoredToken,
    UpsertOutcome,
};

use super::cursor::{CursorFile, CursorState, ReplayCursor};
use super::record;
use super::segment::{HEADER_BYTES, Position, SegmentLog};

#[derive(Clone, Debug)]
pub struct SpoolOptions {
    pub directory: PathBuf,
    /// Most bytes the segment files may take; beyond it appends answer "unavailable, retry".
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// Most readings one replayed inner append carries.
    pub replay_max_readings: usize,
    /// Consecutive records merged into one replayed append when their receive times lie within
    /// this span; they are stored with the first one's receive time.
    pub replay_window: Duration,
    /// First wait after the inner store failed; doubles up to `max_retry_interval`.
    pub retry_interval: Duration,
    pub max_retry_interval: Duration,
}

impl SpoolOptions {
    pub fn new(directory: impl Into<PathBuf>) -> SpoolOptions {
        SpoolOptions {
            directory: directory.into(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            replay_max_readings: 50_000,
            replay_window: Duration::from_secs(1),
            retry_interval: Duration::from_millis(100),
            max_retry_interval: Duration::from_secs(2),
        }
    }
}

/// What the spool holds right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolStatus {
    pub bytes: u64,
    /// Records (acknowledged batches) not yet committed to the inner store.
    pub records: u64,
    pub oldest_received_at: Option<Millis>,
    /// False since the inner store last failed, until it next committed.
    pub inner_available: bool,
    /// The last append was refused because the spool is full.
    pub full: bool,
}

type DedupKey = (SensorId, MessageId);

struct State {
    log: SegmentLog,
    cursor: CursorFile,
    committed: Position,
    /// Frames before this (from `committed` on) may have been committed by a replay that a
    /// crash cut short; a damaged cursor pushes it to the end of the log.
    uncertain_until: Position,
    pending_records: u64,
    oldest_pending: Option<Millis>,
    /// Dedup keys of spooled readings not yet in a deleted segment: key → (first id, segment).
    keys: HashMap<DedupKey, (ReadingId, u64)>,
    /// The last append was refused for want of room (cleared by the next that fits).
    full: bool,
    buffer: Vec<u8>,
}

struct Shared {
    inner: Arc<dyn Store>,
    options: SpoolOptions,
    state: Mutex<State>,
    /// Appends sent straight to the inner store hold it shared (several committers may be
    /// inside the inner store at once); writing to the spool holds it exclusively. So when a
    /// batch is spooled no direct append is in flight: everything acknowledged before it was
    /// committed, and every append after it sees the spool non-empty (invariant 7).
    gate: RwLock<()>,
    /// The figures of `state` as of its last change, so `/metrics` and `/readyz` never wait
    /// behind an append that waits for the database.
    figures: Mutex<SpoolStatus>,
    inner_available: AtomicBool,
    stop: AtomicBool,
}

/// Wraps a store whose database can become unreachable; see the module header for the rules.
pub struct SpoolingStore {
    shared: Arc<Shared>,
    forwarder: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn io_error(error: std::io::Error) -> StoreError {
    StoreError::Internal(format!("spool I/O: {error}"))
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Internal("the spool lock was poisoned".into())
}

impl SpoolingStore {
    /// Opens (recovering) the spool in `options.directory`, rebuilds the dedup keys of what it
    /// holds and starts the forwarder.
    pub fn open(inner: Arc<dyn Store>, options: SpoolOptions) -> Result<SpoolingStore, StoreError> {
        std::fs::create_dir_all(&options.directory).map_err(io_error)?;
        let (cursor, cursor_state) =
            CursorFile::open(&options.directory.join("replay.cursor")).map_err(io_error)?;
        let first_sequence = match cursor_state {
            CursorState::Intact(cursor) => cursor.committed.segment,
            _ => 1,
        };
        let (log, recovery) =
            SegmentLog::open(&options.directory, options.segment_bytes, first_sequence)
                .map_err(io_error)?;
        let start = log.start();
        let end = log.end();
        let clamp = |position: Position| position.max(start).min(end);
        let (committed, uncertain_until) = match cursor_state {
            CursorState::Fresh => (start, start),
            CursorState::Intact(cursor) => (
                clamp(cursor.committed),
                clamp(cursor.in_flight_until.max(cursor.committed)),
            ),
            CursorState::Damaged => {
                tracing::warn!(
                    "the spool's replay cursor is damaged; every record is checked before replay"
                );
                (start, end)
            }
        };
        let mut state = State {
            log,
            cursor,
            committed,
            uncertain_until,
            pending_records: 0,
            oldest_pending: None,
            keys: HashMap::new(),
            full: false,
            buffer: Vec::new(),
        };
        // Rebuild what memory holds about the records still to replay.
        let snapshot = state.log.snapshot();
        let mut from = committed;
        loop {
            let frames = snapshot.read(from, 16 << 20).map_err(io_error)?;
            let Some(last) = frames.last() else { break };
            from = last.end;
            for frame in frames {
                let batch = record::decode(&frame.payload)
                    .map_err(|error| StoreError::Internal(error.to_string()))?;
                state.pending_records += 1;
                state.oldest_pending.get_or_insert(batch.received_at);
                for (reading, id) in batch.readings.into_iter().zip(batch.ids) {
                    if let Some(message) = reading.message_id {
                        state
                            .keys
                            .entry((reading.sensor_id, message))
                            .or_insert((id, frame.start.segment));
                    }
                }
            }
        }
        if recovery.frames > 0 || recovery.truncated_bytes > 0 {
            tracing::info!(
                segments = recovery.segments,
                records = state.pending_records,
                cut_bytes = recovery.truncated_bytes,
                "opened the outage spool with records to forward"
            );
        }
        if state.pending_records == 0 {
            state.drained().map_err(io_error)?;
        }
        let figures = Mutex::new(state.figures());
        let shared = Arc::new(Shared {
            inner,
            options,
            figures,
            state: Mutex::new(state),
            gate: RwLock::new(()),
            inner_available: AtomicBool::new(true),
            stop: AtomicBool::new(false),
        });
        let forwarder = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("audrey-spool-forwarder".into())
                .spawn(move || shared.forward_until_stopped())
                .map_err(|error| StoreError::Internal(format!("spawning the forwarder: {error}")))?
        };
        Ok(SpoolingStore {
            shared,
            forwarder: Mutex::new(Some(forwarder)),
        })
    }

    pub fn status(&self) -> SpoolStatus {
        self.shared.status()
    }

    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.shared.inner
    }

    /// Stops the forwarder (what it was sending is committed or left in the spool).
    pub fn stop_forwarder(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let handle = self.forwarder.lock().ok().and_then(|mut slot| slot.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Maps the inner store's outage to a message a client can act on.
    fn read<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Err(StoreError::Unavailable(detail)) => {
                tracing::debug!(%detail, "read during a database outage");
                self.shared.inner_available.store(false, Ordering::Relaxed);
                let records = self.shared.status().records;
                Err(StoreError::Outage(format!(
                    "the database is unreachable; readings are being spooled ({records} batches waiting) and will be forwarded when it is back; reads and registry changes are unavailable until then, retry later"
                )))
            }
            other => other,
        }
    }
}

impl Drop for SpoolingStore {
    fn drop(&mut self) {
        self.stop_forwarder();
    }
}

impl State {
    fn figures(&self) -> SpoolStatus {
        SpoolStatus {
            bytes: self.log.bytes(),
            records: self.pending_records,
            oldest_received_at: self.oldest_pending,
            inner_available: true,
            full: self.full,
        }
    }

    /// Everything was forwarded: forget the segments. The cursor moves past them first, so a
    /// crash between the two steps leaves segments the cursor already counts as committed.
    fn drained(&mut self) -> std::io::Result<()> {
        let fresh = Position {
            segment: self.log.next_sequence(),
            offset: HEADER_BYTES,
        };
        if self.log.frames() > 0 || self.log.bytes() > 0 {
            self.cursor.write(ReplayCursor {
                committed: fresh,
                in_flight_until: fresh,
            })?;
            self.log.delete_before(fresh)?;
        }
        self.committed = self.log.start();
        self.uncertain_until = self.committed;
        self.pending_records = 0;
        self.oldest_pending = None;
        self.keys.clear();
        self.full = false;
        Ok(())
    }

    /// Writes one acknowledged batch to the spool. Answers one outcome per reading.
    fn spool(
        &mut self,
        batch: &AppendBatch,
        ids: &[ReadingId],
        received_at: Millis,
        uncertain: bool,
        max_bytes: u64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.readings.len());
        let mut fresh_keys: HashMap<DedupKey, ReadingId> = HashMap::new();
        for (reading, id) in batch.readings.iter().zip(ids) {
            let Some(message) = &reading.message_id else {
                outcomes.push(AppendOutcome::Accepted(*id));
                continue;
            };
            let key = (reading.sensor_id.clone(), message.clone());
            if let Some((first, _)) = self.keys.get(&key) {
                outcomes.push(AppendOutcome::Duplicate(*first));
            } else if let Some(first) = fresh_keys.get(&key) {
                outcomes.push(AppendOutcome::Duplicate(*first));
            } else {
                fresh_keys.insert(key, *id);
                outcomes.push(AppendOutcome::Accepted(*id));
            }
        }
        self.buffer.clear();
        // Duplicates travel too: the inner store answers them as duplicates on replay, which
        // keeps its per-sensor counters right.
        record::encode(
            received_at,
            uncertain,
            &batch.readings,
            ids,
            &batch.quarantine,
            &mut self.buffer,
        );
        let needed = SegmentLog::frame_bytes(self.buffer.len());
        let used = self.log.bytes();
        if used + needed + HEADER_BYTES > max_bytes {
            self.full = true;
            return Err(StoreError::Unavailable(format!(
                "spool full: {used} of {max_bytes} bytes used while the database is unreachable; nothing was stored, retry later"
            )));
        }
        let (start, _) = self.log.append(&self.buffer).map_err(io_error)?;
        self.full = false;
        self.pending_records += 1;
        self.oldest_pending.get_or_insert(received_at);
        for (key, id) in fresh_keys {
            self.keys.insert(key, (id, start.segment));
        }
        Ok(outcomes)
    }
}

impl Shared {
    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(poisoned)
    }

    fn status(&self) -> SpoolStatus {
        let inner_available = self.inner_available.load(Ordering::Relaxed);
        match self.figures.lock() {
            Ok(figures) => SpoolStatus {
                inner_available,
                ..figures.clone()
            },
            Err(_) => SpoolStatus {
                bytes: 0,
                records: 0,
                oldest_received_at: None,
                inner_available,
                full: false,
            },
        }
    }

    fn publish(&self, state: &State) {
        if let Ok(mut figures) = self.figures.lock() {
            *figures = state.figures();
        }
    }

    fn append(
        &self,
        mut batch: AppendBatch,
        received_at: Millis,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        // Ids are given here, before anything is tried, so a batch that reaches both the inner
        // store (an ambiguous failure) and the spool is the same rows both times.
        let ids: Vec<ReadingId> = match batch.assigned_ids.take() {
            Some(ids) if ids.len() == batch.readings.len() => ids,
            Some(ids) => {
                return Err(StoreError::Internal(format!(
                    "{} assigned ids for {} readings",
                    ids.len(),
                    batch.readings.len()
                )));
            }
            None => (0..batch.readings.len())
                .map(|_| ReadingId(uuid::Uuid::now_v7()))
                .collect(),
        };
        {
            let direct = self.gate.read().map_err(poisoned)?;
            // The state lock is not held while the inner store works: other committers'
            // direct appends run beside this one.
            if self.lock()?.pending_records == 0 {
                let attempt = AppendBatch {
                    readings: batch.readings.clone(),
                    quarantine: batch.quarantine.clone(),
                    assigned_ids: Some(ids.clone()),
                };
                match self.inner.append(attempt, received_at) {
                    Err(StoreError::Unavailable(detail)) => {
                        if self.inner_available.swap(false, Ordering::Relaxed) {
                            tracing::warn!(%detail, "the database is unreachable; spooling readings");
                        }
                        drop(direct);
                        let _exclusive = self.gate.write().map_err(poisoned)?;
                        let mut state = self.lock()?;
                        let outcomes =
                            state.spool(&batch, &ids, received_at, true, self.options.max_bytes);
                        self.publish(&state);
                        return outcomes;
                    }
                    other => return other,
                }
            }
        }
        let _exclusive = self.gate.write().map_err(poisoned)?;
        let mut state = self.lock()?;
        let outcomes = state.spool(&batch, &ids, received_at, false, self.options.max_bytes);
        self.publish(&state);
        outcomes
    }

    /// Sleeps in short steps; answers false when asked to stop meanwhile.
    fn pause(&self, duration: Duration) -> bool {
        let step = Duration::from_millis(20);
        let mut left = duration;
        while !left.is_zero() {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let now = left.min(step);
            std::thread::sleep(now);
            left -= now;
        }
        !self.stop.load(Ordering::Relaxed)
    }

    fn forward_until_stopped(&self) {
        let mut backoff = self.options.retry_interval;
        while !self.stop.load(Ordering::Relaxed) {
            match self.forward_some() {
                Ok(true) => backoff = self.options.retry_interval,
                Ok(false) => {
                    if !self.pause(Duration::from_millis(20)) {
                        return;
                    }
                }
                Err(error) => {
                    if matches!(error, StoreError::Unavailable(_)) {
                        tracing::debug!(%error, "the database is still unreachable; replay waits");
                    } else {
                        tracing::error!(%error, "spool replay failed; will retry");
                    }
                    self.inner_available.store(false, Ordering::Relaxed);
                    if !self.pause(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(self.options.max_retry_interval);
                }
            }
        }
    }

    /// Replays the next run of records. Answers whether it forwarded anything.
    fn forward_some(&self) -> Result<bool, StoreError> {
        let (snapshot, from, uncertain_until) = {
            let state = self.lock()?;
            if state.pending_records == 0 {
                return Ok(false);
            }
            (state.log.snapshot(), state.committed, state.uncertain_until)
        };
        let frames = snapshot.read(from, 32 << 20).map_err(io_error)?;
        let Some(first) = frames.first() else {
            return Ok(false);
        };
        // `from` may be the end of a segment whose successor holds the next frame.
        debug_assert!(
            first.start >= from && (first.start == from || first.start.segment > from.segment),
            "replay continues where it committed"
        );
        let window = self.options.replay_window.as_millis() as i64;
        let mut merged = AppendBatch {
            assigned_ids: Some(Vec::new()),
            ..AppendBatch::default()
        };
        let mut merged_received_at = None;
        let mut end = from;
        let mut records = 0u64;
        let mut next_received_at = None;
        for frame in &frames {
            let batch = record::decode(&frame.payload)
                .map_err(|error| StoreError::Internal(error.to_string()))?;
            let first_received = *merged_received_at.get_or_insert(batch.received_at);
            let too_many = !merged.readings.is_empty()
                && merged.readings.len() + batch.readings.len() > self.options.replay_max_readings;
            if records > 0 && (too_many || batch.received_at.0 - first_received.0 > window) {
                next_received_at = Some(batch.received_at);
                break;
            }
            records += 1;
            end = frame.end;
            if (batch.uncertain || frame.start < uncertain_until)
                && self.already_committed(&batch)?
            {
                tracing::info!(position = ?frame.start, "a spooled record was committed before a restart; not sending it again");
                continue;
            }
            merged.readings.extend(batch.readings);
            if let Some(ids) = merged.assigned_ids.as_mut() {
                ids.extend(batch.ids);
            }
            merged.quarantine.extend(batch.quarantine);
        }
        {
            let mut state = self.lock()?;
            state
                .cursor
                .write(ReplayCursor {
                    committed: from,
                    in_flight_until: end,
                })
                .map_err(io_error)?;
        }
        let readings = merged.readings.len();
        if readings > 0 || !merged.quarantine.is_empty() {
            let received_at = merged_received_at.unwrap_or_else(Millis::now);
            if let Err(error) = self.inner.append(merged, received_at) {
                // The inner store may have committed before it failed: check before resending.
                let mut state = self.lock()?;
                state.uncertain_until = state.uncertain_until.max(end);
                return Err(error);
            }
        }
        if !self.inner_available.swap(true, Ordering::Relaxed) {
            tracing::info!("the database is back; forwarding the spool");
        }
        let mut state = self.lock()?;
        state.committed = end;
        state.pending_records -= records;
        if state.pending_records == 0 {
            state.drained().map_err(io_error)?;
            tracing::info!("the spool is empty; appends go straight to the database again");
        } else {
            state
                .cursor
                .write(ReplayCursor {
                    committed: end,
                    in_flight_until: end,
                })
                .map_err(io_error)?;
            state.log.delete_before(end).map_err(io_error)?;
            let oldest_segment = state.log.start().segment;
            state
                .keys
                .retain(|_, (_, segment)| *segment >= oldest_segment);
            state.oldest_pending = match next_received_at {
                Some(received_at) => Some(received_at),
                None => {
                    let snapshot = state.log.snapshot();
                    snapshot
                        .read(end, 1)
                        .map_err(io_error)?
                        .first()
                        .and_then(|frame| record::received_at_of(&frame.payload))
                }
            };
        }
        debug_assert!(
            state.committed <= state.log.end() || state.pending_records == 0,
            "the committed position never passes the end of the log"
        );
        self.publish(&state);
        tracing::debug!(records, readings, "forwarded spooled records");
        Ok(true)
    }

    /// Whether the inner store committed this record before. A record commits whole, so one
    /// reading decides: the first without a message id (the store never drops it as a
    /// duplicate, so it is stored if and only if the record was). A record whose readings all
    /// carry message ids is probed by its first; if that one was a duplicate all along the
    /// record is sent again, which the store's dedup makes harmless for its readings.
    fn already_committed(&self, batch: &record::SpooledBatch) -> Result<bool, StoreError> {
        let probe = batch
            .readings
            .iter()
            .position(|reading| reading.message_id.is_none())
            .or_else(|| (!batch.readings.is_empty()).then_some(0));
        match probe.and_then(|index| batch.ids.get(index)) {
            Some(id) => Ok(self.inner.reading(*id)?.is_some()),
            None => Ok(false),
        }
    }
}

impl Store for SpoolingStore {
    fn append(
        &self,
        batch: AppendBatch,
        received_at: Millis,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.shared.append(batch, received_at)
    }

    fn concurrent_appends(&self) -> usize {
        self.shared.inner.concurrent_appends()
    }

    fn maintain(&self) -> Result<(), StoreError> {
        match self.shared.inner.maintain() {
            // The forwarder reports the outage; maintenance waits for the database quietly.
            Err(StoreError::Unavailable(detail)) => {
                tracing::debug!(%detail, "maintenance skipped during a database outage");
                Ok(())
            }
            other => other,
        }
    }

    fn retain(&self, older_than: Millis, max_rows: usize) -> Result<u64, StoreError> {
        match self.shared.inner.retain(older_than, max_rows) {
            // Retention waits for the database like maintenance does; nothing is removed.
            Err(StoreError::Unavailable(detail)) => {
                tracing::debug!(%detail, "retention skipped during a database outage");
                Ok(0)
            }
            other => other,
        }
    }

    fn ready(&self) -> Result<(), StoreError> {
        match self.shared.inner.ready() {
            Err(StoreError::Unavailable(detail)) => {
                let status = self.status();
                if status.full {
                    Err(StoreError::Unavailable(format!(
                        "the database is unreachable and the spool is full ({} bytes): {detail}",
                        status.bytes
                    )))
                } else {
                    Ok(())
                }
            }
            other => other,
        }
    }

    fn degraded(&self) -> Option<Degraded> {
        let status = self.status();
        if status.inner_available && status.records == 0 {
            return None;
        }
        let reason = if status.inner_available {
            "forwarding spooled readings to the database"
        } else {
            "the database is unreachable; readings are being spooled"
        };
        let mut details = serde_json::Map::new();
        details.insert("spool_bytes".into(), status.bytes.into());
        details.insert("spool_records".into(), status.records.into());
        details.insert(
            "spool_oldest_age_seconds".into(),
            oldest_age_seconds(&status).into(),
        );
        details.insert(
            "spool_max_bytes".into(),
            self.shared.options.max_bytes.into(),
        );
        Some(Degraded {
            reason: reason.into(),
            details,
        })
    }

    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let status = self.status();
        for (name, help, value) in [
            (
                "audrey_spool_bytes",
                "Bytes of the outage spool's segment files.",
                status.bytes as f64,
            ),
            (
                "audrey_spool_records",
                "Acknowledged batches in the spool not yet forwarded to the database.",
                status.records as f64,
            ),
            (
                "audrey_spool_oldest_age_seconds",
                "Age of the oldest batch waiting in the spool (0 when empty).",
                oldest_age_seconds(&status),
            ),
            (
                "audrey_spool_database_available",
                "1 while the database behind the spool answers, 0 during an outage.",
                if status.inner_available { 1.0 } else { 0.0 },
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        self.shared.inner.render_metrics(out);
    }

    fn reading(&self, id: ReadingId) -> Result<Option<Reading>, StoreError> {
        self.read(self.shared.inner.reading(id))
    }
    fn readings(&self, query: &ReadingQuery) -> Result<Page<Reading>, StoreError> {
        self.read(self.shared.inner.readings(query))
    }
    fn readings_after_id(
        &self,
        after: Option<ReadingId>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        self.read(self.shared.inner.readings_after_id(after, limit))
    }
    fn quarantine(&self, filter: &QuarantineFilter) -> Result<Page<QuarantineEntry>, StoreError> {
        self.read(self.shared.inner.quarantine(filter))
    }
    fn counters(&self, sensor: &SensorId) -> Result<SensorCounters, StoreError> {
        self.read(self.shared.inner.counters(sensor))
    }
    fn location(&self, id: &LocationId) -> Result<Option<Location>, StoreError> {
        self.read(self.shared.inner.location(id))
    }
    fn locations(&self, filter: &LocationFilter) -> Result<Page<Location>, StoreError> {
        self.read(self.shared.inner.locations(filter))
    }
    fn put_location(&self, location: &Location, must_be_new: bool) -> Result<bool, StoreError> {
        self.read(self.shared.inner.put_location(location, must_be_new))
    }
    fn delete_location(&self, id: &LocationId, at: Millis) -> Result<(), StoreError> {
        self.read(self.shared.inner.delete_location(id, at))
    }
    fn sensor(&self, id: &SensorId) -> Result<Option<Sensor>, StoreError> {
        self.read(self.shared.inner.sensor(id))
    }
    fn sensors(&self, filter: &SensorFilter) -> Result<Page<Sensor>, StoreError> {
        self.read(self.shared.inner.sensors(filter))
    }
    fn put_sensor(&self, sensor: &Sensor, must_be_new: bool) -> Result<bool, StoreError> {
        self.read(self.shared.inner.put_sensor(sensor, must_be_new))
    }
    fn delete_sensor(&self, id: &SensorId, at: Millis) -> Result<(), StoreError> {
        self.read(self.shared.inner.delete_sensor(id, at))
    }
    fn cached_sensor(&self, id: &str) -> Option<Arc<Sensor>> {
        self.shared.inner.cached_sensor(id)
    }
    fn visit_cached_sensors(&self, ids: &[&str], visit: &mut dyn FnMut(usize, Option<&Sensor>)) {
        self.shared.inner.visit_cached_sensors(ids, visit);
    }
    fn put_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.read(self.shared.inner.put_token(token))
    }
    fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        self.read(self.shared.inner.tokens())
    }
    fn token_by_hash(&self, hash: &str) -> Result<Option<StoredToken>, StoreError> {
        self.read(self.shared.inner.token_by_hash(hash))
    }
    fn revoke_token(&self, id: &str, at: Millis) -> Result<(), StoreError> {
        self.read(self.shared.inner.revoke_token(id, at))
    }
    fn reading_stats(&self, query: &StatsQuery) -> Result<Vec<StatsGroup>, StoreError> {
        self.read(self.shared.inner.reading_stats(query))
    }
    fn aggregate_readings(&self, query: &AggregateQuery) -> Result<Vec<Bucket>, StoreError> {
        self.read(self.shared.inner.aggregate_readings(query))
    }
    fn purge_location(&self, id: &LocationId) -> Result<(), StoreError> {
        self.read(self.shared.inner.purge_location(id))
    }
    fn upsert_locations(&self, rows: &[ImportRow]) -> Result<Vec<UpsertOutcome>, StoreError> {
        self.read(self.shared.inner.upsert_locations(rows))
    }
    fn locations_near(
        &self,
        circle: &GeoCircle,
        limit: usize,
    ) -> Result<Vec<NearLocation>, StoreError> {
        self.read(self.shared.inner.locations_near(circle, limit))
    }
    fn purge_sensor(&self, id: &SensorId) -> Result<(), StoreError> {
        self.read(self.shared.inner.purge_sensor(id))
    }
    fn replace_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.read(self.shared.inner.replace_token(token))
    }
    fn purge_token(&self, id: &str) -> Result<(), StoreError> {
        self.read(self.shared.inner.purge_token(id))
    }
    fn stage_change(&self, change: &StagedChange) -> Result<(), StoreError> {
        self.read(self.shared.inner.stage_change(change))
    }
    fn staged_changes(&self, status: StagedStatus) -> Result<Vec<StagedChange>, StoreError> {
        self.read(self.shared.inner.staged_changes(status))
    }
    fn staged_change_by_link(&self, link_hash: &str) -> Result<Option<StagedChange>, StoreError> {
        self.read(self.shared.inner.staged_change_by_link(link_hash))
    }
    fn finish_staged_change(
        &self,
        id: &str,
        status: StagedStatus,
        at: Millis,
    ) -> Result<bool, StoreError> {
        self.read(self.shared.inner.finish_staged_change(id, status, at))
    }
}

fn oldest_age_seconds(status: &SpoolStatus) -> f64 {
    status.oldest_received_at.map_or(0.0, |oldest| {
        ((Millis::now().0 - oldest.0).max(0) as f64) / 1000.0
    })
}
