//! Reading queries of the SQLite store: by id, and lists merged from the memtable and the
//! chunks (the walk over chunks is in scan.rs), plus quarantine and counters.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};

use audrey_model::{LocationId, Millis, Reading, ReadingId, SensorId};

use super::encoding::{decode_chunk, decode_one};
use super::geo::location_ids_in;
use super::memtable::{is_after, sort_readings};
use super::scan::walk_chunks;
use super::{SqliteStore, id_index, poisoned};
use crate::{
    Cursor, Page, QuarantineEntry, QuarantineFilter, ReadingQuery, SensorCounters, StoreError,
};

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

/// A flushed reading by id: its chunk through the id index, decoding only that reading.
fn chunk_reading(reader: &Connection, id: ReadingId) -> Result<Option<Reading>, StoreError> {
    let Some(chunk) = id_index::chunk_of(reader, id)? else {
        return Ok(None);
    };
    let mut statement = reader
        .prepare_cached("SELECT sensor_id, location_id, body FROM chunks WHERE chunk = ?1")?;
    let mut rows = statement.query([chunk])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let (sensor, location) = parse_chunk_owner(
        row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?,
        row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
    )?;
    let body = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
    decode_one(body, &sensor, &location, id)
}

impl SqliteStore {
    pub(super) fn get_reading(&self, id: ReadingId) -> Result<Option<Reading>, StoreError> {
        if let Some(reading) = self.memtable.read().map_err(poisoned)?.get(id) {
            return Ok(Some(reading));
        }
        let reader = self.reader()?;
        chunk_reading(&reader, id)
    }

    /// Memtable and chunks merged in id order: the chunk side walks the id index (ids are
    /// UUIDv7, so it is in commit order up to a commit's duration) and decodes each chunk it
    /// meets once.
    pub(super) fn list_readings_after_id(
        &self,
        after: Option<ReadingId>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let mut items: Vec<Reading> = self
            .memtable
            .read()
            .map_err(poisoned)?
            .ids_after(after)
            .into_iter()
            .map(|reading| (*reading).clone())
            .collect();
        let reader = self.reader()?;
        let wanted = id_index::after(&reader, after, limit)?;
        let mut chunk_body = reader
            .prepare_cached("SELECT sensor_id, location_id, body FROM chunks WHERE chunk = ?1")?;
        let mut decoded: HashMap<i64, HashMap<ReadingId, Reading>> = HashMap::new();
        for (id, chunk) in wanted {
            let readings = match decoded.entry(chunk) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    let readings = chunk_body
                        .query_row([chunk], |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, Vec<u8>>(2)?,
                            ))
                        })
                        .optional()?
                        .map(|(sensor, location, body)| {
                            let (sensor, location) = parse_chunk_owner(&sensor, &location)?;
                            decode_chunk(&body, &sensor, &location)
                        })
                        .transpose()?
                        .unwrap_or_default();
                    entry.insert(
                        readings
                            .into_iter()
                            .map(|reading| (reading.id, reading))
                            .collect(),
                    )
                }
            };
            if let Some(reading) = readings.remove(&id) {
                items.push(reading);
            }
        }
        items.sort_unstable_by_key(|reading| reading.id);
        items.dedup_by_key(|reading| reading.id);
        items.truncate(limit);
        Ok(items)
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
        Some(chunk_reading(&reader, id))
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
        // Read after the memtable: a flush that changes the chunks after this point moved
        // readings this memtable snapshot still holds (see scan.rs).
        let generation = self.layout_generation.load(Ordering::Acquire);
        let mut walked = walk_chunks(
            &reader,
            &probe,
            near.as_ref(),
            probe.limit,
            generation,
            &self.saved_walks,
        )?;
        // Only readings of the walk go back into its merge: one copy each. With nothing in
        // the memtable (a scan of flushed data) the walk's readings are the page, in order.
        let from_chunks: Option<HashSet<ReadingId>> = if items.is_empty() {
            items = std::mem::take(&mut walked.readings);
            None
        } else {
            let ids = walked.readings.iter().map(|reading| reading.id).collect();
            items.append(&mut walked.readings);
            sort_readings(&mut items, query.order);
            items.dedup_by_key(|reading| reading.id);
            Some(ids)
        };
        debug_assert!(
            items
                .iter()
                .all(|reading| query
                    .after
                    .is_none_or(|c| is_after(reading, c, query.order)))
        );
        let next_cursor = if items.len() > limit {
            let mut rest = items.split_off(limit);
            if let Some(from_chunks) = &from_chunks {
                rest.retain(|reading| from_chunks.contains(&reading.id));
            }
            let last = &items[limit - 1];
            let cursor = Cursor {
                read_at: last.read_at,
                id: last.id,
            };
            walked.pause(
                cursor,
                rest,
                &mut *self.saved_walks.lock().map_err(poisoned)?,
            );
            Some(cursor.encode())
        } else {
            None
        };
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
        Ok(self.counters.lock().map_err(poisoned)?.get(sensor))
    }
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
