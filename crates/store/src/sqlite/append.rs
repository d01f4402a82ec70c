//! The acknowledgement path: one binary landing row per group commit in `landing.db`, and
//! the reload of landed batches at open.

use std::collections::hash_map::Entry;

use rusqlite::{TransactionBehavior, params};

use audrey_model::{MessageId, Millis, ReadingId, SensorId, ValidReading};

use super::counters::{self, CounterDelta, FastMap, encode_commit_deltas};
use super::dedup::{Lookup, key_of, reading_key};
use super::encoding::{decode_batch, encode_batch};
use super::readings::truncate;
use super::{SqliteStore, id_index, poisoned};
use crate::{AppendBatch, AppendOutcome, StoreError};

const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

impl SqliteStore {
    pub(super) fn append_batch(
        &self,
        batch: AppendBatch,
        received_at: Millis,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        if self.landed_rows() >= self.options.memtable_max_rows {
            // Backpressure: the background flush has fallen behind; catch up first.
            self.relieve_memtable()?;
        }
        let mut landing = self.landing()?;
        let transaction = landing.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.readings.len());
        let mut staged = Vec::with_capacity(batch.readings.len());
        // The hashed dedup key of each staged reading that has a message id.
        let mut staged_keys = Vec::with_capacity(batch.readings.len());
        // Sized up front: growing these maps reading by reading was a visible share of the
        // committer's time.
        let mut counters: FastMap<SensorId, CounterDelta> =
            FastMap::with_capacity_and_hasher(batch.readings.len(), Default::default());
        {
            let memtable = self.memtable.read().map_err(poisoned)?;
            let keys = self.keys.read().map_err(poisoned)?;
            // This batch's dedup keys by hash, each with its index in `staged`; a key whose
            // hash an earlier key of the batch already has goes to `in_batch_colliding`.
            let mut in_batch: FastMap<i64, usize> =
                FastMap::with_capacity_and_hasher(batch.readings.len(), Default::default());
            let mut in_batch_colliding: Vec<(SensorId, MessageId, ReadingId)> = Vec::new();
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
            let mut ids_in_batch: FastMap<ReadingId, ()> = FastMap::default();
            let mut packed = Lookup::default();
            for (reading, id) in batch.readings.into_iter().zip(assigned) {
                let counter = counters.entry(reading.sensor_id.clone()).or_default();
                // A replayed id that is already stored (with or without a message id) is the
                // same reading again, never a second copy.
                if replay
                    && (ids_in_batch.insert(id, ()).is_some()
                        || memtable.contains(id)
                        || self.flushed_id_exists(id)?)
                {
                    counter.duplicate += 1;
                    outcomes.push(AppendOutcome::Duplicate(id));
                    continue;
                }
                let mut hashed = None;
                if let Some(message_id) = &reading.message_id {
                    let (sensor, message) = (reading.sensor_id.as_str(), message_id.as_str());
                    // Hashed once: for the maps and the Bloom filter now and, if accepted,
                    // their inserts.
                    let key = key_of(sensor, message);
                    let same = |(earlier_id, earlier): &(ReadingId, ValidReading)| {
                        (earlier.sensor_id.as_str() == sensor
                            && earlier
                                .message_id
                                .as_ref()
                                .is_some_and(|earlier| earlier.as_str() == message))
                        .then_some(*earlier_id)
                    };
                    let landed = in_batch
                        .get(&key)
                        .and_then(|index| same(&staged[*index]))
                        .or_else(|| {
                            in_batch_colliding
                                .iter()
                                .find(|(left, right, _)| {
                                    left.as_str() == sensor && right.as_str() == message
                                })
                                .map(|(_, _, id)| *id)
                        })
                        .or_else(|| memtable.duplicate_of(key, sensor, message));
                    let earlier = match landed {
                        Some(id) => Some(id),
                        // Most fresh keys stop here without touching the index.
                        None if keys.may_contain(key) => {
                            self.flushed_duplicate_of(&mut packed, sensor, message)?
                        }
                        None => None,
                    };
                    if let Some(earlier) = earlier {
                        counter.duplicate += 1;
                        outcomes.push(AppendOutcome::Duplicate(earlier));
                        continue;
                    }
                    match in_batch.entry(key) {
                        Entry::Occupied(_) => in_batch_colliding.push((
                            reading.sensor_id.clone(),
                            message_id.clone(),
                            id,
                        )),
                        Entry::Vacant(vacant) => {
                            vacant.insert(staged.len());
                        }
                    }
                    hashed = Some(key);
                }
                staged.push((id, reading));
                staged_keys.push(hashed);
                counter.accepted += 1;
                outcomes.push(AppendOutcome::Accepted(id));
            }
        }
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
        // The whole group commit is one landing row: one B-tree insert however many readings
        // and sensors. Its counts live in the row (counters.rs): a commit of only duplicates
        // or rejections still writes one, with an empty body.
        let counted = counters
            .values()
            .any(|delta| delta.duplicate > 0 || delta.rejected > 0);
        let seq = if staged.is_empty() && !counted {
            0
        } else {
            transaction
                .prepare_cached(
                    "INSERT INTO landing_batches (received_at, body, counters)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![
                    received_at.0,
                    encode_batch(staged.iter().map(|(id, reading)| (id, reading))),
                    encode_commit_deltas(&counters),
                ])?;
            transaction.last_insert_rowid()
        };
        transaction.commit()?;
        // Committed and fsynced; now make the rows visible to queries and dedup. The landing
        // connection stays locked until they are: a concurrent append must not check its
        // dedup keys before this batch's keys are visible, nor land rows ahead of these.
        {
            let mut keys = self.keys.write().map_err(poisoned)?;
            for key in staged_keys.iter().flatten() {
                keys.insert(*key);
            }
        }
        if seq != 0 {
            self.counters
                .lock()
                .map_err(poisoned)?
                .add_commit(seq, counters);
        }
        let mut memtable = self.memtable.write().map_err(poisoned)?;
        memtable.insert_batch(
            seq,
            staged
                .into_iter()
                .zip(staged_keys)
                .map(|((id, reading), key)| (reading.into_reading(id, received_at), key))
                .collect(),
        );
        drop(memtable);
        drop(landing);
        Ok(outcomes)
    }

    /// The id stored under a dedup key among packed readings, if any.
    fn flushed_duplicate_of(
        &self,
        packed: &mut Lookup,
        sensor: &str,
        message: &str,
    ) -> Result<Option<ReadingId>, StoreError> {
        packed.find(&*self.reader()?, sensor, message)
    }

    fn flushed_id_exists(&self, id: ReadingId) -> Result<bool, StoreError> {
        Ok(id_index::chunk_of(&*self.reader()?, id)?.is_some())
    }

    /// Reads landed batches back into the memtable. Batches a flush already packed (a crash
    /// came between the flush's commit and the landing trim) are deleted, not reloaded.
    pub(super) fn reload_memtable(&self) -> Result<(), StoreError> {
        let flushed_through: i64 = self.writer()?.query_row(
            "SELECT landed_through FROM flush_state WHERE singleton = 1",
            [],
            |row| row.get(0),
        )?;
        let repaired =
            counters::repair_at_open(&mut *self.landing()?, &mut *self.writer()?, flushed_through)?;
        if repaired > 0 {
            tracing::info!(
                batches = repaired,
                "removed landed batches an interrupted flush had already stored"
            );
        }
        let mut loaded = counters::load(&*self.writer()?)?;
        let reader = self.landing_reader()?;
        let mut statement = reader
            .prepare("SELECT seq, received_at, body, counters FROM landing_batches ORDER BY seq")?;
        let mut rows = statement.query([])?;
        let mut memtable = self.memtable.write().map_err(poisoned)?;
        memtable.set_flushed_through(flushed_through);
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let received_at = Millis(row.get(1)?);
            let body = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
            let counted = row.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
            let readings = decode_batch(body, received_at)?;
            loaded.add_landed(seq, &readings, counted)?;
            memtable.insert_batch(
                seq,
                readings
                    .into_iter()
                    .map(|reading| {
                        let key = reading_key(&reading);
                        (reading, key)
                    })
                    .collect(),
            );
        }
        *self.counters.lock().map_err(poisoned)? = loaded;
        if memtable.len() > 0 {
            tracing::info!(
                rows = memtable.len(),
                "reloaded landed readings after restart"
            );
        }
        Ok(())
    }

    /// Fills the key filter with every dedup key stored, packed or landed.
    pub(super) fn reload_key_filter(&self) -> Result<(), StoreError> {
        let mut keys = self.keys.write().map_err(poisoned)?;
        let mut count = 0usize;
        {
            let reader = self.reader()?;
            let mut statement = reader.prepare("SELECT key FROM dedup_keys")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                keys.insert(row.get(0)?);
                count += 1;
            }
        }
        count += self
            .memtable
            .read()
            .map_err(poisoned)?
            .for_each_key(|sensor, message| keys.insert(key_of(sensor, message)));
        tracing::info!(keys = count, "loaded dedup keys");
        Ok(())
    }
}
