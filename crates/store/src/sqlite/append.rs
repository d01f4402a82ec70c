//! The acknowledgement path (append into `landing.db`) and the flush into `audrey.db`.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use audrey_model::{MessageId, Millis, Reading, ReadingId, SensorId};

use super::readings::{READING_COLUMNS, reading_at_column, truncate};
use super::{SqliteStore, poisoned};
use crate::{AppendBatch, AppendOutcome, StoreError};

const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct CounterDelta {
    accepted: i64,
    duplicate: i64,
    rejected: i64,
}

impl SqliteStore {
    pub(super) fn append_batch(
        &self,
        batch: AppendBatch,
        received_at: Millis,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        if self.landed_rows() >= self.options.memtable_max_rows {
            // Backpressure: the background flush has fallen behind; catch up first.
            self.flush(self.options.flush_max_rows)?;
        }
        let mut landing = self.landing()?;
        let transaction = landing.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.readings.len());
        let mut staged = Vec::with_capacity(batch.readings.len());
        let mut counters: HashMap<SensorId, CounterDelta> = HashMap::new();
        {
            let memtable = self.memtable.read().map_err(poisoned)?;
            let keys = self.keys.read().map_err(poisoned)?;
            let mut insert = transaction.prepare_cached(
                "INSERT INTO landing (id, sensor_id, location_id, read_at, received_at, message_id, vals)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut in_batch: HashMap<(SensorId, MessageId), ReadingId> = HashMap::new();
            let mut values_json = String::with_capacity(128);
            if let Some(ids) = &batch.assigned_ids
                && ids.len() != batch.readings.len()
            {
                return Err(StoreError::Internal(format!(
                    "{} assigned ids for {} readings",
                    ids.len(),
                    batch.readings.len()
                )));
            }
            let assigned: Vec<ReadingId> = (0..batch.readings.len())
                .map(|index| batch.id_for(index))
                .collect();
            let replay = batch.assigned_ids.is_some();
            let mut ids_in_batch: std::collections::HashSet<ReadingId> = Default::default();
            for (reading, id) in batch.readings.into_iter().zip(assigned) {
                let counter = counters.entry(reading.sensor_id.clone()).or_default();
                // A replayed id that is already stored (with or without a message id) is the
                // same reading again, never a second copy.
                if replay
                    && (!ids_in_batch.insert(id)
                        || memtable.contains(id)
                        || self.flushed_id_exists(id)?)
                {
                    counter.duplicate += 1;
                    outcomes.push(AppendOutcome::Duplicate(id));
                    continue;
                }
                if let Some(message) = &reading.message_id {
                    let key = (reading.sensor_id.clone(), message.clone());
                    let earlier = match in_batch.get(&key).copied() {
                        Some(id) => Some(id),
                        None => match memtable.duplicate_of(&key.0, &key.1) {
                            Some(id) => Some(id),
                            // Most fresh keys stop here without touching the index.
                            None if keys.may_contain(key.0.as_str(), key.1.as_str()) => {
                                self.flushed_duplicate_of(&key.0, &key.1)?
                            }
                            None => None,
                        },
                    };
                    if let Some(earlier) = earlier {
                        counter.duplicate += 1;
                        outcomes.push(AppendOutcome::Duplicate(earlier));
                        continue;
                    }
                    in_batch.insert(key, id);
                    staged.push((id, reading));
                } else {
                    staged.push((id, reading));
                }
                counter.accepted += 1;
                let (id, reading) = staged.last().expect("just pushed");
                values_json.clear();
                reading.values.write_json(&mut values_json);
                insert.execute(params![
                    id.as_bytes(),
                    reading.sensor_id.as_str(),
                    reading.location_id.as_str(),
                    reading.read_at.0,
                    received_at.0,
                    reading.message_id.as_ref().map(|message| message.as_str()),
                    values_json,
                ])?;
                outcomes.push(AppendOutcome::Accepted(*id));
            }
        }
        let first_seq = transaction.last_insert_rowid() - staged.len() as i64 + 1;
        if !batch.quarantine.is_empty() {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO quarantine (received_at, sensor_id, reason, path, message, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for entry in &batch.quarantine {
                let payload = truncate(&entry.payload, MAX_PAYLOAD_BYTES);
                insert.execute(params![
                    received_at.0,
                    entry.sensor_id,
                    entry.reason,
                    entry.path,
                    entry.message,
                    payload
                ])?;
                if let Some(sensor) = entry.sensor_id.as_deref().and_then(|id| self.cached(id)) {
                    counters.entry(sensor.id.clone()).or_default().rejected += 1;
                }
            }
        }
        {
            let mut upsert = transaction.prepare_cached(
                "INSERT INTO sensor_counters (sensor_id, accepted, duplicate, rejected)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(sensor_id) DO UPDATE SET accepted = accepted + ?2,
                    duplicate = duplicate + ?3, rejected = rejected + ?4",
            )?;
            for (sensor, delta) in &counters {
                upsert.execute(params![
                    sensor.as_str(),
                    delta.accepted,
                    delta.duplicate,
                    delta.rejected
                ])?;
            }
        }
        transaction.commit()?;
        // Committed and fsynced; now make the rows visible to queries and dedup. The landing
        // connection stays locked until they are: a concurrent append must not check its
        // dedup keys before this batch's keys are visible, nor land rows ahead of these.
        {
            let mut keys = self.keys.write().map_err(poisoned)?;
            for (_, reading) in &staged {
                if let Some(message) = &reading.message_id {
                    keys.insert(reading.sensor_id.as_str(), message.as_str());
                }
            }
        }
        let mut memtable = self.memtable.write().map_err(poisoned)?;
        for (offset, (id, reading)) in staged.into_iter().enumerate() {
            memtable.insert(
                first_seq + offset as i64,
                reading.into_reading(id, received_at),
            );
        }
        drop(memtable);
        drop(landing);
        Ok(outcomes)
    }

    /// The id stored under a dedup key in the indexed table, if any.
    fn flushed_duplicate_of(
        &self,
        sensor: &SensorId,
        message: &MessageId,
    ) -> Result<Option<ReadingId>, StoreError> {
        let reader = self.reader()?;
        let mut lookup = reader
            .prepare_cached("SELECT id FROM readings WHERE sensor_id = ?1 AND message_id = ?2")?;
        let found = lookup
            .query_row(params![sensor.as_str(), message.as_str()], |row| {
                row.get::<_, Vec<u8>>(0)
            })
            .optional()?;
        Ok(found
            .and_then(|bytes| uuid::Uuid::from_slice(&bytes).ok())
            .map(ReadingId))
    }

    fn flushed_id_exists(&self, id: ReadingId) -> Result<bool, StoreError> {
        let reader = self.reader()?;
        let mut lookup = reader.prepare_cached("SELECT 1 FROM readings WHERE id = ?1")?;
        Ok(lookup
            .query_row([id.as_bytes()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Retention: flushes landed rows older than the cutoff (so one delete reaches both
    /// layouts), then deletes at most `max_rows` of the oldest readings before it.
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
        let writer = self.writer()?;
        let removed = writer.execute(
            "DELETE FROM readings WHERE seq IN (
                SELECT seq FROM readings WHERE read_at < ?1 ORDER BY read_at LIMIT ?2)",
            params![older_than.0, max_rows.max(1) as i64],
        )?;
        if removed > 0 {
            tracing::info!(rows = removed, "retention deleted old readings");
        }
        Ok(removed as u64)
    }

    /// Moves up to `max_rows` of the oldest landed rows into the indexed table. The rows come
    /// from memory; `landing` is only truncated afterwards.
    pub(super) fn flush(&self, max_rows: usize) -> Result<usize, StoreError> {
        let _one_at_a_time = self.flushing.lock().map_err(poisoned)?;
        let (up_to, mut rows): (i64, Vec<Arc<Reading>>) = {
            let memtable = self.memtable.read().map_err(poisoned)?;
            match memtable.oldest(max_rows) {
                Some(oldest) => oldest,
                None => return Ok(0),
            }
        };
        // Sorted by sensor, each index page is touched once per flush, not once per row.
        rows.sort_by(|left, right| {
            (&left.sensor_id, left.read_at).cmp(&(&right.sensor_id, right.read_at))
        });
        {
            let mut writer = self.writer()?;
            let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                // OR IGNORE: after a crash between this commit and the landing delete, the same
                // rows are flushed again; their unique ids make that a no-op.
                let mut insert = transaction.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO readings ({READING_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?;
                let mut values_json = String::with_capacity(128);
                for reading in &rows {
                    values_json.clear();
                    reading.values.write_json(&mut values_json);
                    insert.execute(params![
                        reading.id.as_bytes(),
                        reading.sensor_id.as_str(),
                        reading.location_id.as_str(),
                        reading.read_at.0,
                        reading.received_at.0,
                        reading.message_id.as_ref().map(|message| message.as_str()),
                        values_json,
                    ])?;
                }
            }
            transaction.commit()?;
        }
        self.memtable
            .write()
            .map_err(poisoned)?
            .remove_through(up_to);
        self.landing()?
            .execute("DELETE FROM landing WHERE seq <= ?1", [up_to])?;
        tracing::debug!(
            rows = rows.len(),
            "flushed landed readings into the indexed layout"
        );
        Ok(rows.len())
    }

    pub(super) fn flush_if_due(&self, now: Millis) -> Result<usize, StoreError> {
        let due = {
            let memtable = self.memtable.read().map_err(poisoned)?;
            memtable.len() >= self.options.flush_rows
                || memtable.oldest_received().is_some_and(|oldest| {
                    now.0 - oldest.0 >= self.options.flush_age.as_millis() as i64
                })
        };
        if due {
            self.flush(self.options.flush_max_rows)
        } else {
            Ok(0)
        }
    }

    /// Moves every landed row into the indexed table (used by tests and tools).
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

    pub(super) fn reload_memtable(&self) -> Result<(), StoreError> {
        let reader = self.landing_reader()?;
        let mut statement = reader.prepare(&format!(
            "SELECT seq, {READING_COLUMNS} FROM landing ORDER BY seq"
        ))?;
        let mut rows = statement.query([])?;
        let mut memtable = self.memtable.write().map_err(poisoned)?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            memtable.insert(seq, reading_at_column(row, 1)?);
        }
        if memtable.len() > 0 {
            tracing::info!(
                rows = memtable.len(),
                "reloaded landed readings after restart"
            );
        }
        Ok(())
    }

    /// Fills the key filter with every dedup key stored, flushed or landed.
    pub(super) fn reload_key_filter(&self) -> Result<(), StoreError> {
        let mut keys = self.keys.write().map_err(poisoned)?;
        let mut count = 0usize;
        let mut scan = |connection: &Connection, table: &str| -> Result<(), StoreError> {
            let mut statement = connection.prepare(&format!(
                "SELECT sensor_id, message_id FROM {table} WHERE message_id IS NOT NULL"
            ))?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let sensor: String = row.get(0)?;
                let message: String = row.get(1)?;
                keys.insert(&sensor, &message);
                count += 1;
            }
            Ok(())
        };
        scan(&*self.reader()?, "readings")?;
        scan(&*self.landing_reader()?, "landing")?;
        tracing::info!(keys = count, "loaded dedup keys");
        Ok(())
    }
}
