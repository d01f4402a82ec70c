//! The background half of the SQLite store: packing landed readings into chunks in
//! `audrey.db`, retention over chunks, and upkeep of `landing.db`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{Transaction, TransactionBehavior, params};

use audrey_model::{LocationId, Millis, Reading, ReadingId, SensorId};

use super::counters::{FastMap, count_accepted, fold, trim};
use super::dedup::key_of;
use super::encoding::{chunk_keys, decode_chunk, encode_chunk};
use super::summary::{ChunkOwner, forget_summaries, write_summaries};
use super::{SqliteStore, id_index, poisoned};
use crate::StoreError;

/// A chunk never holds readings from two of these spans of `read_at` (aligned to the epoch).
/// So a chunk overlapping `[from, to)` has `min_read_at >= span_start(from)`, which bounds
/// every time-range scan of the chunk indexes from below, even though chunks of a sensor
/// overlap in time when data arrives out of order.
pub(crate) const CHUNK_SPAN_MS: i64 = 3_600_000;

pub(crate) fn span_start(read_at: i64) -> i64 {
    read_at.div_euclid(CHUNK_SPAN_MS) * CHUNK_SPAN_MS
}

/// Packs `readings` into chunks (one per sensor, location and span), in one transaction the
/// caller commits. A reading whose id is already stored is skipped, so packing the same rows
/// twice stores them once. Answers how many readings were stored.
pub(crate) fn write_chunks<R: std::ops::Deref<Target = Reading>>(
    transaction: &Transaction<'_>,
    readings: &[R],
    flushed_through: i64,
) -> Result<usize, StoreError> {
    let mut groups: FastMap<(&SensorId, &LocationId, i64), Vec<&Reading>> = FastMap::default();
    for reading in readings {
        groups
            .entry((
                &reading.sensor_id,
                &reading.location_id,
                span_start(reading.read_at.0),
            ))
            .or_default()
            .push(reading);
    }
    // Sensor order: the dedup index is clustered by sensor, so its pages are touched once.
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_unstable_by(|left, right| left.0.cmp(&right.0));
    let mut insert_chunk = transaction.prepare_cached(
        "INSERT INTO chunks (chunk, sensor_id, location_id, min_read_at, max_read_at, count,
            flushed_through, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    // This transaction is the only writer: numbering the chunks here lets the id index point
    // at a chunk before its row is written.
    let first_chunk: i64 = transaction.query_row(
        "SELECT COALESCE(MAX(chunk), 0) + 1 FROM chunks",
        [],
        |row| row.get(0),
    )?;
    let mut insert_key = transaction
        .prepare_cached("INSERT OR IGNORE INTO dedup_keys (key, chunk) VALUES (?1, ?2)")?;
    // Number the chunks, then write the per-reading index entries in their own key order
    // (ids ascending, keys by sensor and message): each B-tree page is touched once.
    let mut numbered = Vec::with_capacity(groups.len());
    // The id is copied beside its reading: sorting by it then reads this array only, not
    // every reading it points at.
    let mut entries: Vec<(ReadingId, &Reading, i64)> = Vec::with_capacity(readings.len());
    for (chunk, ((sensor, location, _), mut group)) in (first_chunk..).zip(groups) {
        group.sort_unstable_by_key(|reading| (reading.read_at, reading.id));
        group.dedup_by_key(|reading| reading.id);
        entries.extend(group.iter().map(|reading| (reading.id, *reading, chunk)));
        numbered.push((chunk, sensor, location, group));
    }
    entries.sort_unstable_by_key(|(id, _, _)| *id);
    // An id already stored (packing the same readings twice) stays where it is.
    let ids: Vec<(ReadingId, i64)> = entries.iter().map(|(id, _, chunk)| (*id, *chunk)).collect();
    let already_stored = id_index::insert(transaction, &ids)?;
    // Hashed dedup keys (dedup.rs), in key order: a sensor's keys are neighbours.
    let mut keys: Vec<(i64, i64)> = entries
        .iter()
        .filter(|(id, _, _)| !already_stored.contains_key(id))
        .filter_map(|(_, reading, chunk)| {
            let message = reading.message_id.as_ref()?;
            Some((key_of(reading.sensor_id.as_str(), message.as_str()), *chunk))
        })
        .collect();
    keys.sort_unstable();
    for (key, chunk) in keys {
        insert_key.execute([key, chunk])?;
    }
    let mut stored = 0;
    for (chunk, sensor, location, mut group) in numbered {
        if !already_stored.is_empty() {
            group.retain(|reading| !already_stored.contains_key(&reading.id));
        }
        if group.is_empty() {
            continue;
        }
        insert_chunk.execute(params![
            chunk,
            sensor.as_str(),
            location.as_str(),
            group[0].read_at.0,
            group[group.len() - 1].read_at.0,
            group.len() as i64,
            flushed_through,
            encode_chunk(&group),
        ])?;
        write_summaries(
            transaction,
            &ChunkOwner {
                chunk,
                sensor_id: sensor.as_str(),
                location_id: location.as_str(),
                flushed_through,
            },
            &group,
        )?;
        stored += group.len();
    }
    Ok(stored)
}

/// Sensor series one write lock of the memtable clears after a flush: ~1,000 took about
/// 0.7 ms when 10,000 sensors shared a 2 s flush (docs/benchmarks.md, session 8); an 8 s
/// flush leaves each series about four times as long.
const PURGE_SENSORS_PER_LOCK: usize = 250;

/// The pause between two slices, so the ack path takes the lock in between. std's RwLock
/// lets the thread that just released it take it straight back before a woken waiter runs:
/// back-to-back slices held every acknowledgement for the whole purge, 60-85 ms after an
/// 8 s flush (session 10).
const PAUSE_BETWEEN_SLICES: Duration = Duration::from_millis(1);

impl SqliteStore {
    /// Moves the oldest landed batches (about `max_rows` readings) into chunks. The rows come
    /// from memory; `landing_batches` is only trimmed after the chunks committed, and the
    /// same transaction records how far the flush got, so a crash in between is repaired at
    /// open by deleting those batches instead of flushing them twice.
    pub(super) fn flush(&self, max_rows: usize) -> Result<usize, StoreError> {
        let one_at_a_time = self.flushing.lock().map_err(poisoned)?;
        self.flush_locked(max_rows, one_at_a_time)
    }

    /// Backpressure for `append` once more than `memtable_max_rows` have landed: waits for
    /// a flush in progress (usually the maintenance thread's, which frees up to
    /// `flush_max_rows`), and only if that was not enough flushes a small step
    /// (`inline_flush_rows`) itself. A commit waits for one flush, never for two in a row, and
    /// an inline flush is an eighth of a background one: ingest slows to the flush's pace in
    /// short steps instead of stopping for seconds.
    pub(super) fn relieve_memtable(&self) -> Result<usize, StoreError> {
        let one_at_a_time = self.flushing.lock().map_err(poisoned)?;
        if self.landed_rows() < self.options.memtable_max_rows {
            return Ok(0);
        }
        self.flush_locked(self.options.inline_flush_rows, one_at_a_time)
    }

    fn flush_locked(
        &self,
        max_rows: usize,
        _one_at_a_time: std::sync::MutexGuard<'_, ()>,
    ) -> Result<usize, StoreError> {
        let (up_to, rows): (i64, Vec<Arc<Reading>>) = {
            let memtable = self.memtable.read().map_err(poisoned)?;
            match memtable.oldest(max_rows) {
                Some(oldest) => oldest,
                None => return Ok(0),
            }
        };
        // The counts of what this flush packs: accepted from its readings, duplicates and
        // rejections from its batches' counters (counters.rs).
        let mut deltas = FastMap::default();
        count_accepted(rows.iter().map(|reading| &**reading), &mut deltas);
        self.counters
            .lock()
            .map_err(poisoned)?
            .unfolded_through(up_to, &mut deltas);
        {
            let mut writer = self.writer()?;
            let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
            write_chunks(&transaction, &rows, up_to)?;
            transaction.execute(
                "UPDATE flush_state SET landed_through = ?1 WHERE singleton = 1",
                [up_to],
            )?;
            fold(&transaction, &deltas)?;
            transaction.commit()?;
        }
        self.layout_generation.fetch_add(1, Ordering::AcqRel);
        // Only then do the rows leave landing.db and the memtable. The trim holds the landing
        // connection that acknowledgements wait for, so it only deletes. The rows are packed
        // and counted whether it succeeds or not, so they leave memory either way: a failed
        // trim leaves them in landing.db for the next trim (it deletes every seq up to its
        // own) or the next open to delete.
        if let Err(error) = self.landing().and_then(|landing| trim(&landing, up_to)) {
            tracing::warn!(%error, "could not delete flushed batches from landing.db; will retry");
        }
        self.counters
            .lock()
            .map_err(poisoned)?
            .forget_through(up_to);
        self.memtable
            .write()
            .map_err(poisoned)?
            .remove_through(up_to);
        // The sensors' series are cleared a slice per write lock: a commit waits for one
        // slice (about a millisecond), not for every sensor the flush touched.
        while self
            .memtable
            .write()
            .map_err(poisoned)?
            .purge_step(PURGE_SENSORS_PER_LOCK)
        {
            std::thread::sleep(PAUSE_BETWEEN_SLICES);
        }
        tracing::debug!(rows = rows.len(), "flushed landed readings into chunks");
        Ok(rows.len())
    }

    pub(super) fn flush_if_due(&self, now: Millis) -> Result<usize, StoreError> {
        let due = {
            let memtable = self.memtable.read().map_err(poisoned)?;
            let older_than = |at: Option<Millis>, age: Duration| {
                at.is_some_and(|at| now.0 - at.0 >= age.as_millis() as i64)
            };
            memtable.len() >= self.options.flush_rows
                || older_than(memtable.oldest_received(), self.options.flush_age)
                || (memtable.len() >= self.options.idle_flush_rows
                    && older_than(memtable.newest_received(), self.options.idle_flush_after))
        };
        if due {
            self.flush(self.options.flush_max_rows)
        } else {
            Ok(0)
        }
    }

    /// Moves every landed row into chunks (used by tests and tools).
    pub fn flush_all(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let moved = self.flush(self.options.flush_max_rows)?;
            if moved == 0 {
                return Ok(total);
            }
            total += moved;
        }
    }

    /// Retention: flushes landed rows older than the cutoff (so one pass reaches both
    /// layouts), then removes readings before it from the oldest chunks, about `max_rows`
    /// per call: a chunk entirely before the cutoff goes whole, one straddling it is rewritten
    /// with the readings it keeps. Their ids and dedup keys go with them.
    pub(super) fn delete_read_before(
        &self,
        older_than: Millis,
        max_rows: usize,
    ) -> Result<u64, StoreError> {
        let landed_old = self
            .memtable
            .read()
            .map_err(poisoned)?
            .has_read_before(older_than);
        if landed_old {
            self.flush_all()?;
        }
        let mut writer = self.writer()?;
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let max_rows = max_rows.max(1);
        // Read the oldest chunks first, then change them: the scan's own index moves as
        // straddling chunks are rewritten.
        let mut oldest: Vec<(i64, String, String, i64, Vec<u8>, i64)> = Vec::new();
        {
            let mut select = transaction.prepare_cached(
                "SELECT chunk, sensor_id, location_id, max_read_at, count, body, flushed_through
                 FROM chunks WHERE min_read_at < ?1 ORDER BY min_read_at",
            )?;
            let mut rows = select.query([older_than.0])?;
            let mut rows_seen = 0usize;
            while rows_seen < max_rows {
                let Some(row) = rows.next()? else { break };
                rows_seen += row.get::<_, i64>(4)? as usize;
                oldest.push((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(5)?,
                    row.get(6)?,
                ));
            }
        }
        let mut removed = 0usize;
        {
            let mut removed_ids = Vec::new();
            let mut delete_key = transaction
                .prepare_cached("DELETE FROM dedup_keys WHERE key = ?1 AND chunk = ?2")?;
            for (chunk, sensor, location, max_read_at, body, flushed_through) in oldest {
                let keys = chunk_keys(&body)?;
                // Two readings of a chunk may share a hashed key's entry: it stays while one
                // of them is kept.
                let kept_keys: std::collections::HashSet<i64> = keys
                    .iter()
                    .filter(|(read_at, _, _)| *read_at >= older_than.0)
                    .filter_map(|(_, _, message)| Some(key_of(&sensor, message.as_deref()?)))
                    .collect();
                for (read_at, id, message) in keys {
                    if read_at >= older_than.0 {
                        continue;
                    }
                    removed_ids.push(id);
                    if let Some(message) = message {
                        let key = key_of(&sensor, &message);
                        if !kept_keys.contains(&key) {
                            delete_key.execute([key, chunk])?;
                        }
                    }
                    removed += 1;
                }
                forget_summaries(&transaction, chunk)?;
                if max_read_at < older_than.0 {
                    transaction.execute("DELETE FROM chunks WHERE chunk = ?1", [chunk])?;
                    continue;
                }
                let sensor_id = SensorId::parse(&sensor)
                    .map_err(|_| StoreError::Internal("a chunk's sensor id is corrupt".into()))?;
                let location_id = LocationId::parse(&location)
                    .map_err(|_| StoreError::Internal("a chunk's location id is corrupt".into()))?;
                let kept: Vec<Reading> = decode_chunk(&body, &sensor_id, &location_id)?
                    .into_iter()
                    .filter(|reading| reading.read_at >= older_than)
                    .collect();
                let kept: Vec<&Reading> = kept.iter().collect();
                transaction.execute(
                    "UPDATE chunks SET min_read_at = ?2, count = ?3, body = ?4 WHERE chunk = ?1",
                    params![
                        chunk,
                        kept[0].read_at.0,
                        kept.len() as i64,
                        encode_chunk(&kept)
                    ],
                )?;
                write_summaries(
                    &transaction,
                    &ChunkOwner {
                        chunk,
                        sensor_id: &sensor,
                        location_id: &location,
                        flushed_through,
                    },
                    &kept,
                )?;
            }
            id_index::remove(&transaction, &mut removed_ids)?;
        }
        transaction.commit()?;
        if removed > 0 {
            self.layout_generation.fetch_add(1, Ordering::AcqRel);
            tracing::info!(rows = removed, "retention deleted old readings");
        }
        Ok(removed as u64)
    }

    /// Copies `landing.db`'s WAL into the database without blocking the ack path, so the WAL
    /// restarts from its beginning instead of growing.
    pub(super) fn checkpoint_landing(&self) -> Result<(), StoreError> {
        self.landing_reader()?
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    pub(super) fn trim_quarantine(&self, now: Millis) -> Result<(), StoreError> {
        let landing = self.landing()?;
        let oldest_kept = now.0 - self.options.quarantine_max_age.as_millis() as i64;
        landing.execute(
            "DELETE FROM quarantine WHERE received_at < ?1",
            [oldest_kept],
        )?;
        landing.execute(
            "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?1",
            [self.options.quarantine_max_rows as i64],
        )?;
        Ok(())
    }
}
