//! Reading queries of the SQLite store: by id, lists merged from memory and the indexed
//! table, quarantine and counters.

use std::collections::HashSet;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, params};

use audrey_model::{LocationId, MessageId, Millis, Reading, ReadingId, ReadingValues, SensorId};

use super::geo::location_ids_in;
use super::memtable::{is_after, sort_readings};
use super::{SqliteStore, poisoned};
use crate::{
    Cursor, Order, Page, QuarantineEntry, QuarantineFilter, ReadingQuery, SensorCounters,
    StoreError,
};

pub(super) const READING_COLUMNS: &str =
    "id, sensor_id, location_id, read_at, received_at, message_id, vals";

pub(super) fn reading_from_row(row: &Row<'_>) -> rusqlite::Result<Reading> {
    reading_at_column(row, 0)
}

/// Decodes the READING_COLUMNS that start at column `first`.
pub(super) fn reading_at_column(row: &Row<'_>, first: usize) -> rusqlite::Result<Reading> {
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

impl SqliteStore {
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

    /// [`Self::get_reading`] when nothing has to be waited for: `None` when the memtable is
    /// being written or every reader connection is busy. A point read by primary key is a
    /// short B-tree walk, cheaper than handing the call to another thread.
    pub(super) fn get_reading_without_waiting(
        &self,
        id: ReadingId,
    ) -> Option<Result<Option<Reading>, StoreError>> {
        // Memory first, then the table, as in get_reading (a flush commits to the table
        // before it removes from memory, so a reading missing from one is in the other).
        match self.memtable.try_read() {
            Ok(memtable) => {
                if let Some(reading) = memtable.get(id) {
                    return Some(Ok(Some(reading)));
                }
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
            Err(std::sync::TryLockError::Poisoned(_)) => return Some(Err(poisoned(()))),
        }
        let reader = self.try_reader()?;
        let result = (|| {
            let mut statement = reader.prepare_cached(&format!(
                "SELECT {READING_COLUMNS} FROM readings WHERE id = ?1"
            ))?;
            Ok(statement
                .query_row([id.as_bytes()], reading_from_row)
                .optional()?)
        })();
        Some(result)
    }

    pub(super) fn query_readings(&self, query: &ReadingQuery) -> Result<Page<Reading>, StoreError> {
        let limit = query.limit.max(1);
        let probe = ReadingQuery {
            limit: limit + 1,
            ..query.clone()
        };
        let reader = self.reader()?;
        // A radius filter becomes the set of locations inside the circle.
        let near = match &query.near {
            Some(circle) => {
                let ids = location_ids_in(&reader, circle)?;
                if ids.is_empty() {
                    return Ok(Page {
                        items: Vec::new(),
                        next_cursor: None,
                    });
                }
                Some(ids)
            }
            None => None,
        };
        // Memtable first, table second: see the memtable module for why this never misses.
        let mut items = self
            .memtable
            .read()
            .map_err(poisoned)?
            .query(&probe, near.as_ref());
        let (sql, values) = readings_sql(&probe, near.as_ref())?;
        {
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
        let reader = self.landing_reader()?;
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
        let reader = self.landing_reader()?;
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

fn readings_sql(
    query: &ReadingQuery,
    near: Option<&HashSet<LocationId>>,
) -> Result<(String, Vec<Value>), StoreError> {
    let mut sql = format!("SELECT {READING_COLUMNS} FROM readings WHERE 1 = 1");
    let mut values: Vec<Value> = Vec::new();
    if let Some(locations) = near {
        let ids: Vec<&str> = locations.iter().map(LocationId::as_str).collect();
        sql.push_str(" AND location_id IN (SELECT value FROM json_each(?))");
        values.push(Value::Text(
            serde_json::to_string(&ids).map_err(|error| StoreError::Internal(error.to_string()))?,
        ));
    }
    if let Some(sensor) = &query.sensor {
        sql.push_str(" AND sensor_id = ?");
        values.push(Value::Text(sensor.to_string()));
    }
    if let Some(location) = &query.location {
        sql.push_str(" AND location_id = ?");
        values.push(Value::Text(location.to_string()));
    }
    // A cursor narrows the read_at range itself: given two lower (or upper) bounds on the
    // same column SQLite starts the index scan at one of them, and starting at `from` would
    // re-walk every earlier page on each later page.
    let (mut from, mut to) = (query.from, query.to);
    match (query.after, query.order) {
        (Some(cursor), Order::Oldest) => from = from.max(Some(cursor.read_at)),
        (Some(cursor), Order::Newest) => {
            let through_cursor = Millis(cursor.read_at.0.saturating_add(1));
            to = Some(to.map_or(through_cursor, |to| to.min(through_cursor)));
        }
        (None, _) => {}
    }
    if let Some(from) = from {
        sql.push_str(" AND read_at >= ?");
        values.push(Value::Integer(from.0));
    }
    if let Some(to) = to {
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
    Ok((sql, values))
}

pub(super) fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
