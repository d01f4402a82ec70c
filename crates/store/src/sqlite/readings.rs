//! The reading path of the SQLite store: append (the acknowledgement path), flush, queries,
//! quarantine and counters.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use audrey_model::{LocationId, MessageId, Millis, Reading, ReadingId, ReadingValues, SensorId};

use super::memtable::{is_after, sort_readings};
use super::{SqliteStore, poisoned};
use crate::{
    AppendBatch, AppendOutcome, Cursor, Order, Page, QuarantineEntry, QuarantineFilter,
    ReadingQuery, SensorCounters, StoreError,
};

const READING_COLUMNS: &str = "id, sensor_id, location_id, read_at, received_at, message_id, vals";
const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

fn reading_from_row(row: &Row<'_>) -> rusqlite::Result<Reading> {
    reading_at_column(row, 0)
}

/// Decodes the READING_COLUMNS that start at column `first`.
fn reading_at_column(row: &Row<'_>, first: usize) -> rusqlite::Result<Reading> {
    let id: Vec<u8> = row.get(first)?;
    let sensor: String = row.get(first + 1)?;
    let location: String = row.get(first + 2)?;
    let message: Option<String> = row.get(first + 5)?;
    let values: String = row.get(first + 6)?;
    let corrupt = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            first,
            rusqlite::types::Type::Text,
            what.to_string().into(),
        )
    };
    Ok(Reading {
        id: ReadingId(uuid::Uuid::from_slice(&id).map_err(|_| corrupt("reading id"))?),
        sensor_id: SensorId::parse(&sensor).map_err(|_| corrupt("sensor id"))?,
        location_id: LocationId::parse(&location).map_err(|_| corrupt("location id"))?,
        read_at: Millis(row.get(first + 3)?),
        received_at: Millis(row.get(first + 4)?),
        values: ReadingValues::from_json(&values).ok_or_else(|| corrupt("values"))?,
        message_id: message
            .map(|text| MessageId::parse(&text))
            .transpose()
            .map_err(|_| corrupt("message id"))?,
    })
}

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
        let mut writer = self.writer()?;
        let landed = self.memtable.read().map_err(poisoned)?.len();
        if landed >= self.options.memtable_max_rows {
            // Backpressure: the flush has fallen behind; catch up before taking more.
            self.flush_locked(&mut writer, self.options.flush_max_rows)?;
        }
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.readings.len());
        let mut staged = Vec::with_capacity(batch.readings.len());
        let mut counters: HashMap<SensorId, CounterDelta> = HashMap::new();
        {
            let memtable = self.memtable.read().map_err(poisoned)?;
            let mut insert = transaction.prepare_cached(
                "INSERT INTO landing (id, sensor_id, location_id, read_at, received_at, message_id, vals)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut lookup = transaction.prepare_cached(
                "SELECT id FROM readings WHERE sensor_id = ?1 AND message_id = ?2",
            )?;
            let mut in_batch: HashMap<(SensorId, MessageId), ReadingId> = HashMap::new();
            for reading in batch.readings {
                let counter = counters.entry(reading.sensor_id.clone()).or_default();
                if let Some(message) = &reading.message_id {
                    let key = (reading.sensor_id.clone(), message.clone());
                    let earlier = match in_batch.get(&key).copied() {
                        Some(id) => Some(id),
                        None => match memtable.duplicate_of(&key.0, &key.1) {
                            Some(id) => Some(id),
                            None => lookup
                                .query_row(params![key.0.as_str(), key.1.as_str()], |row| {
                                    row.get::<_, Vec<u8>>(0)
                                })
                                .optional()?
                                .and_then(|bytes| uuid::Uuid::from_slice(&bytes).ok())
                                .map(ReadingId),
                        },
                    };
                    if let Some(earlier) = earlier {
                        counter.duplicate += 1;
                        outcomes.push(AppendOutcome::Duplicate(earlier));
                        continue;
                    }
                    let id = ReadingId(uuid::Uuid::now_v7());
                    in_batch.insert(key, id);
                    staged.push((id, reading));
                } else {
                    staged.push((ReadingId(uuid::Uuid::now_v7()), reading));
                }
                counter.accepted += 1;
                let (id, reading) = staged.last().expect("just pushed");
                insert.execute(params![
                    id.as_bytes(),
                    reading.sensor_id.as_str(),
                    reading.location_id.as_str(),
                    reading.read_at.0,
                    received_at.0,
                    reading.message_id.as_ref().map(|message| message.as_str()),
                    reading.values.to_json(),
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
        // Committed and fsynced; now make the rows visible to queries and dedup.
        let mut memtable = self.memtable.write().map_err(poisoned)?;
        for (offset, (id, reading)) in staged.into_iter().enumerate() {
            memtable.insert(
                first_seq + offset as i64,
                reading.into_reading(id, received_at),
            );
        }
        Ok(outcomes)
    }

    /// Moves up to `max_rows` of the oldest landed rows into the indexed table.
    pub(super) fn flush_locked(
        &self,
        writer: &mut Connection,
        max_rows: usize,
    ) -> Result<usize, StoreError> {
        let Some(up_to) = self.memtable.read().map_err(poisoned)?.seq_after(max_rows) else {
            return Ok(0);
        };
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let moved = transaction.execute(
            &format!(
                "INSERT INTO readings ({READING_COLUMNS}) SELECT {READING_COLUMNS} FROM landing
                 WHERE seq <= ?1 ORDER BY sensor_id, read_at"
            ),
            [up_to],
        )?;
        transaction.execute("DELETE FROM landing WHERE seq <= ?1", [up_to])?;
        transaction.commit()?;
        self.memtable
            .write()
            .map_err(poisoned)?
            .remove_through(up_to);
        tracing::debug!(
            rows = moved,
            "flushed landed readings into the indexed layout"
        );
        Ok(moved)
    }

    pub(super) fn flush_if_due(&self, now: Millis) -> Result<usize, StoreError> {
        let due = {
            let memtable = self.memtable.read().map_err(poisoned)?;
            memtable.len() >= self.options.flush_rows
                || memtable.oldest_received().is_some_and(|oldest| {
                    now.0 - oldest.0 >= self.options.flush_age.as_millis() as i64
                })
        };
        if !due {
            return Ok(0);
        }
        let mut writer = self.writer()?;
        self.flush_locked(&mut writer, self.options.flush_max_rows)
    }

    /// Moves every landed row into the indexed table (used at shutdown and by tests).
    pub fn flush_all(&self) -> Result<usize, StoreError> {
        let mut writer = self.writer()?;
        let mut total = 0;
        loop {
            let moved = self.flush_locked(&mut writer, self.options.flush_max_rows)?;
            if moved == 0 {
                return Ok(total);
            }
            total += moved;
        }
    }

    pub(super) fn trim_quarantine(&self, now: Millis) -> Result<(), StoreError> {
        let writer = self.writer()?;
        let oldest_kept = now.0 - self.options.quarantine_max_age.as_millis() as i64;
        writer.execute(
            "DELETE FROM quarantine WHERE received_at < ?1",
            [oldest_kept],
        )?;
        writer.execute(
            "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?1",
            [self.options.quarantine_max_rows as i64],
        )?;
        Ok(())
    }

    pub(super) fn reload_memtable(&self) -> Result<(), StoreError> {
        let reader = self.reader()?;
        let mut statement = reader.prepare(&format!(
            "SELECT seq, {READING_COLUMNS} FROM landing ORDER BY seq"
        ))?;
        let mut rows = statement.query([])?;
        let mut memtable = self.memtable.write().map_err(poisoned)?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let reading = reading_at_column(row, 1)?;
            memtable.insert(seq, reading);
        }
        if memtable.len() > 0 {
            tracing::info!(
                rows = memtable.len(),
                "reloaded landed readings after restart"
            );
        }
        Ok(())
    }

    pub(super) fn get_reading(&self, id: ReadingId) -> Result<Option<Reading>, StoreError> {
        if let Some(reading) = self.memtable.read().map_err(poisoned)?.get(id) {
            return Ok(Some(reading));
        }
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {READING_COLUMNS} FROM readings WHERE id = ?1"
        ))?;
        Ok(statement
            .query_row([id.as_bytes()], reading_from_row)
            .optional()?)
    }

    pub(super) fn query_readings(&self, query: &ReadingQuery) -> Result<Page<Reading>, StoreError> {
        let limit = query.limit.max(1);
        let probe = ReadingQuery {
            limit: limit + 1,
            ..query.clone()
        };
        // Memtable first, table second: see the memtable module for why this never misses.
        let mut items = self.memtable.read().map_err(poisoned)?.query(&probe);
        let (sql, values) = readings_sql(&probe);
        {
            let reader = self.reader()?;
            let mut statement = reader.prepare_cached(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(values), reading_from_row)?;
            for row in rows {
                items.push(row?);
            }
        }
        sort_readings(&mut items, query.order);
        items.dedup_by_key(|reading| reading.id);
        debug_assert!(
            items
                .iter()
                .all(|reading| query
                    .after
                    .is_none_or(|c| is_after(reading, c, query.order)))
        );
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            let last = &items[limit - 1];
            Cursor {
                read_at: last.read_at,
                id: last.id,
            }
            .encode()
        });
        Ok(Page { items, next_cursor })
    }

    pub(super) fn list_quarantine(
        &self,
        filter: &QuarantineFilter,
    ) -> Result<Page<QuarantineEntry>, StoreError> {
        let limit = filter.limit.max(1);
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(
            "SELECT id, received_at, sensor_id, reason, path, message, payload FROM quarantine
             WHERE (?1 IS NULL OR sensor_id = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![
                filter.sensor,
                filter.before.unwrap_or(i64::MAX),
                limit as i64 + 1
            ],
            |row| {
                Ok(QuarantineEntry {
                    id: row.get(0)?,
                    received_at: Millis(row.get(1)?),
                    sensor_id: row.get(2)?,
                    reason: row.get(3)?,
                    path: row.get(4)?,
                    message: row.get(5)?,
                    payload: row.get(6)?,
                })
            },
        )?;
        let mut items = rows.collect::<Result<Vec<_>, _>>()?;
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items[limit - 1].id.to_string()
        });
        Ok(Page { items, next_cursor })
    }

    pub(super) fn sensor_counters(&self, sensor: &SensorId) -> Result<SensorCounters, StoreError> {
        let reader = self.reader()?;
        let counters = reader
            .query_row(
                "SELECT accepted, duplicate, rejected FROM sensor_counters WHERE sensor_id = ?1",
                [sensor.as_str()],
                |row| {
                    Ok(SensorCounters {
                        accepted: row.get::<_, i64>(0)? as u64,
                        duplicate: row.get::<_, i64>(1)? as u64,
                        rejected: row.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()?;
        Ok(counters.unwrap_or_default())
    }
}

fn readings_sql(query: &ReadingQuery) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {READING_COLUMNS} FROM readings WHERE 1 = 1");
    let mut values: Vec<Value> = Vec::new();
    if let Some(sensor) = &query.sensor {
        sql.push_str(" AND sensor_id = ?");
        values.push(Value::Text(sensor.to_string()));
    }
    if let Some(location) = &query.location {
        sql.push_str(" AND location_id = ?");
        values.push(Value::Text(location.to_string()));
    }
    if let Some(from) = query.from {
        sql.push_str(" AND read_at >= ?");
        values.push(Value::Integer(from.0));
    }
    if let Some(to) = query.to {
        sql.push_str(" AND read_at < ?");
        values.push(Value::Integer(to.0));
    }
    let (comparison, direction) = match query.order {
        Order::Newest => ("<", "DESC"),
        Order::Oldest => (">", "ASC"),
    };
    if let Some(cursor) = query.after {
        sql.push_str(&format!(" AND (read_at, id) {comparison} (?, ?)"));
        values.push(Value::Integer(cursor.read_at.0));
        values.push(Value::Blob(cursor.id.as_bytes().to_vec()));
    }
    sql.push_str(&format!(
        " ORDER BY read_at {direction}, id {direction} LIMIT ?"
    ));
    values.push(Value::Integer(query.limit as i64));
    (sql, values)
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
