//! Statistics and time buckets in the SQLite store.
//!
//! SQL picks the chunks that overlap the time range (and sensor or location); Rust decodes
//! only the `read_at` column and the one metric's column of each ([`metric_column`]) and
//! folds the values into [`Collector`]s, so the definitions in [`audrey_model::Summary`] hold
//! exactly. The group key of a chunk is its sensor or location (or that location's city or
//! country), the same for all its readings.
//!
//! Readings still in the memtable are folded in too: the memtable is read first and the
//! chunks second (as for lists). A reading in both (a flush committed in between) is counted
//! once: chunks written by such a flush are the ones whose `flushed_through` is past the
//! memtable's at snapshot time, and only their ids are checked against the snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rusqlite::types::Value;

use audrey_model::{
    LocationId, Millis, Reading, ReadingId, SensorId, Summary, percentile_of_sorted,
};

use super::encoding::metric_column;
use super::flush::span_start;
use super::{SqliteStore, poisoned};
use crate::{AggregateQuery, Aggregation, Bucket, GroupBy, StatsGroup, StatsQuery, StoreError};

/// Folds values one at a time; keeps them only when a percentile needs them.
struct Collector {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    mean: f64,
    squares: f64,
    values: Option<Vec<f64>>,
}

impl Collector {
    fn new(keep_values: bool) -> Collector {
        Collector {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            squares: 0.0,
            values: keep_values.then(Vec::new),
        }
    }

    fn push(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        // Welford: numerically stable with large offsets.
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.squares += delta * (value - self.mean);
        if let Some(values) = &mut self.values {
            values.push(value);
        }
    }

    fn stddev(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.squares / (self.count as f64 - 1.0)).sqrt())
    }

    fn sorted_values(&mut self) -> &[f64] {
        match &mut self.values {
            Some(values) => {
                values.sort_unstable_by(f64::total_cmp);
                values
            }
            None => &[],
        }
    }

    fn summary(mut self, percentiles: &[f64]) -> Summary {
        let stddev = self.stddev();
        let sorted = self.sorted_values();
        let percentiles = percentiles
            .iter()
            .map(|p| (*p, percentile_of_sorted(sorted, *p)))
            .collect();
        Summary {
            count: self.count,
            min: self.min,
            max: self.max,
            mean: self.mean,
            stddev,
            percentiles,
        }
    }

    fn answer(&mut self, aggregations: &[Aggregation]) -> Vec<Option<f64>> {
        let stddev = self.stddev();
        let (count, sum, mean, min, max) = (self.count, self.sum, self.mean, self.min, self.max);
        let sorted = self.sorted_values();
        aggregations
            .iter()
            .map(|aggregation| match aggregation {
                Aggregation::Count => Some(count as f64),
                Aggregation::Sum => Some(sum),
                Aggregation::Avg => Some(mean),
                Aggregation::Min => Some(min),
                Aggregation::Max => Some(max),
                Aggregation::Stddev => stddev,
                Aggregation::Percentile(p) => Some(percentile_of_sorted(sorted, *p)),
            })
            .collect()
    }
}

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
        let key_of = |sensor: &str, location: &str| match query.group_by {
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
                ))
                .or_insert_with(|| Collector::new(keep_values))
                .push(value);
        }
        let (sql, values) = chunks_sql(
            "sensor_id, location_id, flushed_through, body",
            None,
            None,
            query.from,
            query.to,
        );
        let bounds = (
            query.from.map_or(i64::MIN, |from| from.0),
            query.to.map_or(i64::MAX, |to| to.0),
        );
        let mut statement = reader.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        let mut chunk_values: Vec<f64> = Vec::new();
        while let Some(row) = rows.next()? {
            let sensor = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let location = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let body = row.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
            chunk_values.clear();
            fold_chunk(
                body,
                query.metric.as_str(),
                row.get(2)?,
                &landed,
                bounds,
                |_, value| chunk_values.push(value),
            )?;
            if chunk_values.is_empty() {
                continue;
            }
            // One group look-up per chunk: its readings share sensor and location.
            let collector = groups
                .entry(key_of(sensor, location))
                .or_insert_with(|| Collector::new(keep_values));
            for value in &chunk_values {
                collector.push(*value);
            }
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
        let mut add = |read_at: i64, value: f64| {
            buckets
                .entry(read_at.div_euclid(width) * width)
                .or_insert_with(|| Collector::new(keep_values))
                .push(value);
        };
        for reading in &landed.rows {
            if let Some(value) = reading.values.get(query.metric.as_str()) {
                add(reading.read_at.0, value);
            }
        }
        let (sql, values) = chunks_sql(
            "flushed_through, body",
            query.sensor.as_ref(),
            query.location.as_ref(),
            query.from,
            query.to,
        );
        let bounds = (
            query.from.map_or(i64::MIN, |from| from.0),
            query.to.map_or(i64::MAX, |to| to.0),
        );
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            let body = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            fold_chunk(
                body,
                query.metric.as_str(),
                row.get(0)?,
                &landed,
                bounds,
                &mut add,
            )?;
        }
        Ok(buckets
            .into_iter()
            .map(|(start, mut collector)| Bucket {
                start: Millis(start),
                values: collector.answer(&query.aggregations),
            })
            .collect())
    }
}
