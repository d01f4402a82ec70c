//! Statistics and time buckets in the SQLite store.
//!
//! Without percentiles, a chunk that lies wholly inside the time range is answered by its
//! summary row ([`super::summary`]); only the chunks that straddle the range's edges (at
//! most those of the hours of `from` and `to - 1`, by the hour rule) are decoded. Buckets
//! use summaries when their width is a whole number of hours (a chunk's readings then share
//! one bucket). Percentiles and narrower buckets decode every chunk in range.
//!
//! Decoding reads only the `read_at` column and the one metric's column of a chunk
//! ([`metric_column`]) and folds the values into a [`Collector`], so the definitions in
//! [`audrey_model::Summary`] hold exactly. The group key of a chunk is its sensor or location
//! (or that location's city or country), the same for all its readings. Each chunk is folded
//! on its own and the chunks are merged in chunk-number order whichever path they took, so
//! both paths give the same answer to the last bit.
//!
//! Readings still in the memtable are folded in too: the memtable is read first and the
//! chunks second (as for lists). A reading in both (a flush committed in between) is counted
//! once: chunks written by such a flush are the ones whose `flushed_through` is past the
//! memtable's at snapshot time, and only their ids are checked against the snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rusqlite::types::Value;

use audrey_model::{LocationId, Millis, Reading, ReadingId, SensorId};

use super::encoding::metric_column;
use super::flush::{CHUNK_SPAN_MS, span_start};
use super::summary::{Collector, collector_from_row};
use super::{SqliteStore, poisoned};
use crate::{AggregateQuery, Aggregation, Bucket, GroupBy, StatsGroup, StatsQuery, StoreError};

/// The chunks overlapping the filters, as SQL and parameters.
fn chunks_sql(
    columns: &str,
    sensor: Option<&SensorId>,
    location: Option<&LocationId>,
    from: Option<Millis>,
    to: Option<Millis>,
) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {columns} FROM chunks WHERE 1 = 1");
    let mut values = Vec::new();
    if let Some(sensor) = sensor {
        sql.push_str(" AND sensor_id = ?");
        values.push(Value::Text(sensor.to_string()));
    }
    if let Some(location) = location {
        sql.push_str(if sensor.is_some() {
            " AND +location_id = ?"
        } else {
            " AND location_id = ?"
        });
        values.push(Value::Text(location.to_string()));
    }
    if let Some(from) = from {
        // A chunk lies within one span: this bound is exact and uses the index.
        sql.push_str(" AND min_read_at >= ? AND max_read_at >= ?");
        values.push(Value::Integer(span_start(from.0)));
        values.push(Value::Integer(from.0));
    }
    if let Some(to) = to {
        sql.push_str(" AND min_read_at < ?");
        values.push(Value::Integer(to.0));
    }
    (sql, values)
}

/// Memtable readings matching the filters, their ids, and the landing seq below which
/// every reading had left the memtable when it was read.
struct Landed {
    rows: Vec<Arc<Reading>>,
    ids: HashSet<ReadingId>,
    flushed_through: i64,
}

/// Folds one chunk's values of the metric with `from <= read_at < to`, skipping readings
/// also counted from the memtable; calls `add(read_at, value)`.
fn fold_chunk(
    body: &[u8],
    metric: &str,
    chunk_flushed_through: i64,
    landed: &Landed,
    (from, to): (i64, i64),
    mut add: impl FnMut(i64, f64),
) -> Result<(), StoreError> {
    let check_ids = chunk_flushed_through > landed.flushed_through && !landed.ids.is_empty();
    let Some(column) = metric_column(body, metric, check_ids)? else {
        return Ok(());
    };
    for (index, value) in column.values {
        let read_at = column.read_at[index];
        if read_at < from || read_at >= to {
            continue;
        }
        if check_ids && landed.ids.contains(&column.ids[index]) {
            continue;
        }
        add(read_at, value);
    }
    Ok(())
}

/// The summaries of the metric for chunks wholly inside `[from, to)`, as SQL and
/// parameters. Columns: chunk, sensor_id, location_id, flushed_through, min_read_at, then
/// the summary (see [`collector_from_row`]).
fn summaries_sql(
    metric: &str,
    sensor: Option<&SensorId>,
    location: Option<&LocationId>,
    from: Option<Millis>,
    to: Option<Millis>,
) -> (String, Vec<Value>) {
    let mut sql = String::from(
        "SELECT chunk, sensor_id, location_id, flushed_through, min_read_at,
            count, min, max, sum, mean, m2
         FROM chunk_summaries WHERE metric = ?",
    );
    let mut values = vec![Value::Text(metric.to_string())];
    if let Some(sensor) = sensor {
        sql.push_str(" AND sensor_id = ?");
        values.push(Value::Text(sensor.to_string()));
    }
    if let Some(location) = location {
        sql.push_str(" AND location_id = ?");
        values.push(Value::Text(location.to_string()));
    }
    if let Some(from) = from {
        sql.push_str(" AND min_read_at >= ?");
        values.push(Value::Integer(from.0));
    }
    if let Some(to) = to {
        // The first bound lets the scan stop; the second is the one that matters.
        sql.push_str(" AND min_read_at < ? AND max_read_at < ?");
        values.push(Value::Integer(to.0));
        values.push(Value::Integer(to.0));
    }
    (sql, values)
}

/// The chunks that overlap `[from, to)` without lying wholly inside it, as SQL and
/// parameters; `None` when the range is unbounded (every chunk is inside). By the hour rule
/// such a chunk lies in the hour of `from` or in that of `to - 1`: two short index ranges.
fn edge_chunks_sql(
    columns: &str,
    sensor: Option<&SensorId>,
    location: Option<&LocationId>,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Option<(String, Vec<Value>)> {
    let mut edges = Vec::new();
    let mut bounds = Vec::new();
    if let Some(from) = from {
        edges.push("(min_read_at >= ? AND min_read_at < ? AND max_read_at >= ?)");
        bounds.extend([span_start(from.0), from.0, from.0]);
    }
    if let Some(to) = to {
        edges.push("(min_read_at >= ? AND min_read_at < ? AND max_read_at >= ?)");
        bounds.extend([span_start(to.0.saturating_sub(1)), to.0, to.0]);
    }
    if edges.is_empty() {
        return None;
    }
    let (mut sql, mut values) = chunks_sql(columns, sensor, location, None, None);
    sql.push_str(&format!(" AND ({})", edges.join(" OR ")));
    values.extend(bounds.into_iter().map(Value::Integer));
    Some((sql, values))
}

/// One chunk's contribution, folded on its own: `(chunk, group or bucket, values)`.
type Folded<K> = Vec<(i64, K, Collector)>;

/// What folding a chunk needs besides the chunk.
struct Fold<'a, F> {
    metric: &'a str,
    landed: &'a Landed,
    bounds: (i64, i64),
    keep_values: bool,
    /// The group of a chunk's values: `(sensor, location, read_at of one of them)`.
    key_of: F,
}

impl<K, F: Fn(&str, &str, i64) -> K> Fold<'_, F> {
    /// Folds one chunk body's values in range into its own collector.
    fn body(
        &self,
        chunk: i64,
        (sensor, location): (&str, &str),
        chunk_flushed_through: i64,
        body: &[u8],
        folded: &mut Folded<K>,
    ) -> Result<(), StoreError> {
        let mut collector = Collector::new(self.keep_values);
        let mut some_read_at = None;
        fold_chunk(
            body,
            self.metric,
            chunk_flushed_through,
            self.landed,
            self.bounds,
            |read_at, value| {
                some_read_at.get_or_insert(read_at);
                collector.push(value);
            },
        )?;
        if let Some(read_at) = some_read_at {
            folded.push((chunk, (self.key_of)(sensor, location, read_at), collector));
        }
        Ok(())
    }

    /// Decodes the chunks `sql` selects (columns: chunk, sensor_id, location_id,
    /// flushed_through, body).
    fn decoded(
        &self,
        reader: &rusqlite::Connection,
        (sql, values): (String, Vec<Value>),
        folded: &mut Folded<K>,
    ) -> Result<(), StoreError> {
        let mut statement = reader.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            let owner = (
                row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
                row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?,
            );
            let body = row.get_ref(4)?.as_blob().map_err(rusqlite::Error::from)?;
            self.body(row.get(0)?, owner, row.get(3)?, body, folded)?;
        }
        Ok(())
    }

    /// Reads the summaries `sql` selects ([`summaries_sql`]). A chunk written by a flush
    /// that committed after the memtable snapshot may repeat landed readings: it is decoded
    /// instead, checking ids.
    fn summarised(
        &self,
        reader: &rusqlite::Connection,
        (sql, values): (String, Vec<Value>),
        folded: &mut Folded<K>,
    ) -> Result<(), StoreError> {
        let mut statement = reader.prepare_cached(&sql)?;
        let mut body_of = reader.prepare_cached("SELECT body FROM chunks WHERE chunk = ?1")?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            let chunk: i64 = row.get(0)?;
            let owner = (
                row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
                row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?,
            );
            let chunk_flushed_through: i64 = row.get(3)?;
            if chunk_flushed_through > self.landed.flushed_through && !self.landed.ids.is_empty() {
                let body: Vec<u8> = body_of.query_row([chunk], |row| row.get(0))?;
                self.body(chunk, owner, chunk_flushed_through, &body, folded)?;
                continue;
            }
            let key = (self.key_of)(owner.0, owner.1, row.get(4)?);
            folded.push((chunk, key, collector_from_row(row, 5)?));
        }
        Ok(())
    }
}

impl SqliteStore {
    fn memtable_snapshot(
        &self,
        sensor: Option<&SensorId>,
        location: Option<&LocationId>,
        from: Option<Millis>,
        to: Option<Millis>,
    ) -> Result<Landed, StoreError> {
        let memtable = self.memtable.read().map_err(poisoned)?;
        let rows = memtable.scan(sensor, location, from, to);
        let ids = rows.iter().map(|reading| reading.id).collect();
        Ok(Landed {
            rows,
            ids,
            flushed_through: memtable.flushed_through(),
        })
    }

    pub(super) fn compute_stats(&self, query: &StatsQuery) -> Result<Vec<StatsGroup>, StoreError> {
        let landed = self.memtable_snapshot(None, None, query.from, query.to)?;
        let keep_values = !query.percentiles.is_empty();
        let mut groups: HashMap<Option<String>, Collector> = HashMap::new();
        let reader = self.reader()?;
        let place_of = |column: &str| -> Result<HashMap<String, Option<String>>, StoreError> {
            let mut statement = reader.prepare(&format!("SELECT id, {column} FROM locations"))?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let places = match query.group_by {
            GroupBy::Sensor | GroupBy::Location => HashMap::new(),
            GroupBy::City => place_of("city")?,
            GroupBy::Country => place_of("country")?,
        };
        let key_of = |sensor: &str, location: &str, _read_at: i64| match query.group_by {
            GroupBy::Sensor => Some(sensor.to_string()),
            GroupBy::Location => Some(location.to_string()),
            GroupBy::City | GroupBy::Country => places.get(location).cloned().flatten(),
        };
        for reading in &landed.rows {
            let Some(value) = reading.values.get(query.metric.as_str()) else {
                continue;
            };
            groups
                .entry(key_of(
                    reading.sensor_id.as_str(),
                    reading.location_id.as_str(),
                    reading.read_at.0,
                ))
                .or_insert_with(|| Collector::new(keep_values))
                .push(value);
        }
        let fold = Fold {
            metric: query.metric.as_str(),
            landed: &landed,
            bounds: bounds(query.from, query.to),
            keep_values,
            key_of,
        };
        let columns = "chunk, sensor_id, location_id, flushed_through, body";
        let mut folded = Vec::new();
        if keep_values {
            let chunks = chunks_sql(columns, None, None, query.from, query.to);
            fold.decoded(&reader, chunks, &mut folded)?;
        } else {
            let summaries = summaries_sql(fold.metric, None, None, query.from, query.to);
            fold.summarised(&reader, summaries, &mut folded)?;
            if let Some(edges) = edge_chunks_sql(columns, None, None, query.from, query.to) {
                fold.decoded(&reader, edges, &mut folded)?;
            }
        }
        folded.sort_unstable_by_key(|(chunk, _, _)| *chunk);
        for (_, key, collector) in folded {
            groups
                .entry(key)
                .or_insert_with(|| Collector::new(keep_values))
                .merge(collector);
        }
        let mut answer: Vec<StatsGroup> = groups
            .into_iter()
            .map(|(key, collector)| StatsGroup {
                key,
                summary: collector.summary(&query.percentiles),
            })
            .collect();
        answer.sort_by(|left, right| left.key.cmp(&right.key));
        Ok(answer)
    }

    pub(super) fn compute_buckets(
        &self,
        query: &AggregateQuery,
    ) -> Result<Vec<Bucket>, StoreError> {
        let width = query.bucket_ms.max(1);
        let landed = self.memtable_snapshot(
            query.sensor.as_ref(),
            query.location.as_ref(),
            query.from,
            query.to,
        )?;
        let keep_values = Aggregation::needs_sorted_values(&query.aggregations);
        let mut buckets: BTreeMap<i64, Collector> = BTreeMap::new();
        let bucket_of = |read_at: i64| read_at.div_euclid(width) * width;
        for reading in &landed.rows {
            if let Some(value) = reading.values.get(query.metric.as_str()) {
                buckets
                    .entry(bucket_of(reading.read_at.0))
                    .or_insert_with(|| Collector::new(keep_values))
                    .push(value);
            }
        }
        let (sensor, location) = (query.sensor.as_ref(), query.location.as_ref());
        let columns = "chunk, sensor_id, location_id, flushed_through, body";
        let reader = self.reader()?;
        let fold = Fold {
            metric: query.metric.as_str(),
            landed: &landed,
            bounds: bounds(query.from, query.to),
            keep_values,
            key_of: |_: &str, _: &str, read_at: i64| bucket_of(read_at),
        };
        let mut folded = Vec::new();
        if width % CHUNK_SPAN_MS == 0 {
            // Buckets of whole hours: all of a chunk's readings fall into one bucket, so a
            // chunk is folded on its own, from its summary where no percentile is asked for.
            if keep_values {
                let chunks = chunks_sql(columns, sensor, location, query.from, query.to);
                fold.decoded(&reader, chunks, &mut folded)?;
            } else {
                let summaries = summaries_sql(fold.metric, sensor, location, query.from, query.to);
                fold.summarised(&reader, summaries, &mut folded)?;
                if let Some(edges) =
                    edge_chunks_sql(columns, sensor, location, query.from, query.to)
                {
                    fold.decoded(&reader, edges, &mut folded)?;
                }
            }
        } else {
            // Narrower buckets split chunks: fold value by value.
            let (sql, values) = chunks_sql(columns, sensor, location, query.from, query.to);
            let mut statement = reader.prepare_cached(&sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(values))?;
            while let Some(row) = rows.next()? {
                let body = row.get_ref(4)?.as_blob().map_err(rusqlite::Error::from)?;
                fold_chunk(
                    body,
                    fold.metric,
                    row.get(3)?,
                    &landed,
                    fold.bounds,
                    |read_at, value| {
                        buckets
                            .entry(bucket_of(read_at))
                            .or_insert_with(|| Collector::new(keep_values))
                            .push(value);
                    },
                )?;
            }
        }
        folded.sort_unstable_by_key(|(chunk, _, _)| *chunk);
        for (_, start, collector) in folded {
            buckets
                .entry(start)
                .or_insert_with(|| Collector::new(keep_values))
                .merge(collector);
        }
        Ok(crate::fold::buckets(buckets, &query.aggregations))
    }
}

/// A query's time range as `read_at` bounds, `[from, to)`.
fn bounds(from: Option<Millis>, to: Option<Millis>) -> (i64, i64) {
    (
        from.map_or(i64::MIN, |from| from.0),
        to.map_or(i64::MAX, |to| to.0),
    )
}
