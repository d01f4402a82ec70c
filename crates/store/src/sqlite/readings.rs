//! Reading queries of the SQLite store: by id, and lists merged from the memtable and the
//! chunks, plus quarantine and counters.
//!
//! A list walks the chunks that can hold matching readings in the query's order (by
//! `min_read_at` ascending for oldest first, by `max_read_at` descending for newest first),
//! decodes each, and keeps the best `limit + 1` readings in a bounded heap. Chunks of a
//! sensor overlap in time when data arrives out of order, so the walk stops only when the
//! next chunk cannot beat the worst reading kept: its `min_read_at` is past it (oldest
//! first) or its `max_read_at` before it (newest first). Memory stays bounded by the page.

use std::collections::{BinaryHeap, HashSet};

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use audrey_model::{LocationId, Millis, Reading, ReadingId, SensorId};

use super::encoding::decode_chunk;
use super::flush::{CHUNK_SPAN_MS, span_start};
use super::geo::location_ids_in;
use super::memtable::{is_after, sort_readings};
use super::{SqliteStore, poisoned};
use crate::{
    Cursor, Order, Page, QuarantineEntry, QuarantineFilter, ReadingQuery, SensorCounters,
    StoreError,
};

/// A reading ranked so that the heap's top is the worst one kept.
struct Ranked {
    key: (i128, u128),
    reading: Reading,
}

impl Ranked {
    fn new(reading: Reading, order: Order) -> Ranked {
        let (read_at, id) = (i128::from(reading.read_at.0), reading.id.0.as_u128());
        let key = match order {
            Order::Oldest => (read_at, id),
            Order::Newest => (-read_at, !id),
        };
        Ranked { key, reading }
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

pub(super) fn parse_chunk_owner(
    sensor: &str,
    location: &str,
) -> Result<(SensorId, LocationId), StoreError> {
    let corrupt = |what: &str| StoreError::Internal(format!("a chunk's {what} is corrupt"));
    Ok((
        SensorId::parse(sensor).map_err(|_| corrupt("sensor id"))?,
        LocationId::parse(location).map_err(|_| corrupt("location id"))?,
    ))
}

impl SqliteStore {
    pub(super) fn get_reading(&self, id: ReadingId) -> Result<Option<Reading>, StoreError> {
        if let Some(reading) = self.memtable.read().map_err(poisoned)?.get(id) {
            return Ok(Some(reading));
        }
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(
            "SELECT c.sensor_id, c.location_id, c.body FROM reading_ids i
             JOIN chunks c ON c.chunk = i.chunk WHERE i.id = ?1",
        )?;
        let mut rows = statement.query([id.as_bytes()])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let (sensor, location) = parse_chunk_owner(
            row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?,
            row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
        )?;
        let body = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        Ok(decode_chunk(body, &sensor, &location)?
            .into_iter()
            .find(|reading| reading.id == id))
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
        // Memtable first, chunks second: see the memtable module for why this never misses.
        let mut items = self
            .memtable
            .read()
            .map_err(poisoned)?
            .query(&probe, near.as_ref());
        items.extend(scan_chunks(&reader, &probe, near.as_ref())?);
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

/// The first `query.limit` readings in chunks that match the query, in its order.
fn scan_chunks(
    reader: &rusqlite::Connection,
    query: &ReadingQuery,
    near: Option<&HashSet<LocationId>>,
) -> Result<Vec<Reading>, StoreError> {
    let mut sql = String::from(
        "SELECT sensor_id, location_id, min_read_at, max_read_at, body FROM chunks WHERE 1 = 1",
    );
    let mut values: Vec<Value> = Vec::new();
    if let Some(locations) = near {
        let ids: Vec<&str> = locations.iter().map(LocationId::as_str).collect();
        // Unary plus: filter by the set, but walk a time index so the walk can stop early.
        sql.push_str(" AND +location_id IN (SELECT value FROM json_each(?))");
        values.push(Value::Text(
            serde_json::to_string(&ids).map_err(|error| StoreError::Internal(error.to_string()))?,
        ));
    }
    if let Some(sensor) = &query.sensor {
        sql.push_str(" AND sensor_id = ?");
        values.push(Value::Text(sensor.to_string()));
    }
    if let Some(location) = &query.location {
        // With a sensor given, its index is the narrower one.
        sql.push_str(if query.sensor.is_some() {
            " AND +location_id = ?"
        } else {
            " AND location_id = ?"
        });
        values.push(Value::Text(location.to_string()));
    }
    // A cursor narrows the time range itself, so each page starts where the last one ended.
    let (mut from, mut to) = (query.from, query.to);
    match (query.after, query.order) {
        (Some(cursor), Order::Oldest) => from = from.max(Some(cursor.read_at)),
        (Some(cursor), Order::Newest) => {
            let through_cursor = Millis(cursor.read_at.0.saturating_add(1));
            to = Some(to.map_or(through_cursor, |to| to.min(through_cursor)));
        }
        (None, _) => {}
    }
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Ok(Vec::new());
    }
    // A chunk lies within one span, so these bounds are exact for overlap and let the walk
    // start at the right place of either time index.
    if let Some(from) = from {
        sql.push_str(" AND max_read_at >= ? AND min_read_at >= ?");
        values.push(Value::Integer(from.0));
        values.push(Value::Integer(span_start(from.0)));
    }
    if let Some(to) = to {
        sql.push_str(" AND min_read_at < ? AND max_read_at < ?");
        values.push(Value::Integer(to.0));
        values.push(Value::Integer(
            span_start(to.0.saturating_sub(1)).saturating_add(CHUNK_SPAN_MS),
        ));
    }
    sql.push_str(match query.order {
        Order::Oldest => " ORDER BY min_read_at ASC",
        Order::Newest => " ORDER BY max_read_at DESC",
    });
    let lower = from.unwrap_or(Millis(i64::MIN));
    let upper = to.unwrap_or(Millis(i64::MAX));
    let want = query.limit.max(1);
    let mut kept: BinaryHeap<Ranked> = BinaryHeap::with_capacity(want + 1);
    let mut statement = reader.prepare_cached(&sql)?;
    let mut rows = statement.query(rusqlite::params_from_iter(values))?;
    while let Some(row) = rows.next()? {
        let (min_read_at, max_read_at): (i64, i64) = (row.get(2)?, row.get(3)?);
        if kept.len() >= want
            && let Some(worst) = kept.peek()
        {
            let worst_at = worst.reading.read_at.0;
            let beyond = match query.order {
                Order::Oldest => min_read_at > worst_at,
                Order::Newest => max_read_at < worst_at,
            };
            if beyond {
                break;
            }
        }
        let (sensor, location) = parse_chunk_owner(
            row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?,
            row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
        )?;
        let body = row.get_ref(4)?.as_blob().map_err(rusqlite::Error::from)?;
        for reading in decode_chunk(body, &sensor, &location)? {
            if reading.read_at < lower
                || reading.read_at >= upper
                || query
                    .after
                    .is_some_and(|cursor| !is_after(&reading, cursor, query.order))
            {
                continue;
            }
            let ranked = Ranked::new(reading, query.order);
            if kept.len() < want {
                kept.push(ranked);
            } else if kept.peek().is_some_and(|worst| ranked < *worst) {
                kept.pop();
                kept.push(ranked);
            }
        }
    }
    Ok(kept.into_iter().map(|ranked| ranked.reading).collect())
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
