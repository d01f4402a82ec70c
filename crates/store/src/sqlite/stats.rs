//! Statistics and time buckets in the SQLite store.
//!
//! SQL filters by time (and sensor or location) and extracts the metric with
//! `json_extract`; Rust folds the values into [`Collector`]s, so the definitions in
//! [`audrey_model::Summary`] hold exactly. Rows still in the memtable are folded in too: the
//! memtable is read first and the table second (as for lists), and a table row whose id was
//! in that memtable snapshot is skipped, so a flush running in between never counts a reading
//! twice. Read order does not matter: nothing here depends on `read_at` being in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rusqlite::types::Value;

use audrey_model::{
    LocationId, Millis, Reading, ReadingId, SensorId, Summary, percentile_of_sorted,
};

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

/// `json_extract` path of a metric; names are `[A-Za-z0-9._:-]`, safe inside quotes.
fn metric_path(metric: &str) -> String {
    format!("$.\"{metric}\"")
}

/// Time and key conditions shared by both queries, as SQL and parameters.
fn conditions(
    sensor: Option<&SensorId>,
    location: Option<&LocationId>,
    from: Option<Millis>,
    to: Option<Millis>,
) -> (String, Vec<Value>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    if let Some(sensor) = sensor {
        sql.push_str(" AND r.sensor_id = ?");
        values.push(Value::Text(sensor.to_string()));
    }
    if let Some(location) = location {
        sql.push_str(" AND r.location_id = ?");
        values.push(Value::Text(location.to_string()));
    }
    if let Some(from) = from {
        sql.push_str(" AND r.read_at >= ?");
        values.push(Value::Integer(from.0));
    }
    if let Some(to) = to {
        sql.push_str(" AND r.read_at < ?");
        values.push(Value::Integer(to.0));
    }
    (sql, values)
}

impl SqliteStore {
    /// Landed readings matching the filters, and their ids.
    fn memtable_snapshot(
        &self,
        sensor: Option<&SensorId>,
        location: Option<&LocationId>,
        from: Option<Millis>,
        to: Option<Millis>,
    ) -> Result<(Vec<Arc<Reading>>, HashSet<ReadingId>), StoreError> {
        let rows = self
            .memtable
            .read()
            .map_err(poisoned)?
            .scan(sensor, location, from, to);
        let ids = rows.iter().map(|reading| reading.id).collect();
        Ok((rows, ids))
    }

    pub(super) fn compute_stats(&self, query: &StatsQuery) -> Result<Vec<StatsGroup>, StoreError> {
        let (landed, landed_ids) = self.memtable_snapshot(None, None, query.from, query.to)?;
        let keep_values = !query.percentiles.is_empty();
        let mut groups: HashMap<Option<String>, Collector> = HashMap::new();
        let reader = self.reader()?;
        let place_of = |column: &str| -> Result<HashMap<String, Option<String>>, StoreError> {
            let mut statement = reader.prepare(&format!("SELECT id, {column} FROM locations"))?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let places = match (query.group_by, landed.is_empty()) {
            (_, true) | (GroupBy::Sensor | GroupBy::Location, _) => HashMap::new(),
            (GroupBy::City, false) => place_of("city")?,
            (GroupBy::Country, false) => place_of("country")?,
        };
        for reading in &landed {
            let Some(value) = reading.values.get(query.metric.as_str()) else {
                continue;
            };
            let key = match query.group_by {
                GroupBy::Sensor => Some(reading.sensor_id.to_string()),
                GroupBy::Location => Some(reading.location_id.to_string()),
                GroupBy::City | GroupBy::Country => {
                    places.get(reading.location_id.as_str()).cloned().flatten()
                }
            };
            groups
                .entry(key)
                .or_insert_with(|| Collector::new(keep_values))
                .push(value);
        }
        let (key_sql, join) = match query.group_by {
            GroupBy::Sensor => ("r.sensor_id", ""),
            GroupBy::Location => ("r.location_id", ""),
            GroupBy::City => ("l.city", " JOIN locations l ON l.id = r.location_id"),
            GroupBy::Country => ("l.country", " JOIN locations l ON l.id = r.location_id"),
        };
        let (where_sql, mut values) = conditions(None, None, query.from, query.to);
        values.insert(0, Value::Text(metric_path(query.metric.as_str())));
        let sql = format!(
            "SELECT r.id, {key_sql}, json_extract(r.vals, ?1) AS v FROM readings r{join}
             WHERE v IS NOT NULL{where_sql}"
        );
        let mut statement = reader.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        let mut current_key: Option<String> = None;
        while let Some(row) = rows.next()? {
            if !landed_ids.is_empty() && landed_ids.contains(&reading_id(row)?) {
                continue;
            }
            let key = row.get_ref(1)?;
            let key = match key {
                rusqlite::types::ValueRef::Text(text) => Some(text),
                _ => None,
            };
            // Rows mostly arrive grouped; reuse the last key's String to avoid allocating.
            if current_key.as_deref().map(str::as_bytes) != key {
                current_key = key.map(|text| String::from_utf8_lossy(text).into_owned());
            }
            let value: f64 = row.get(2)?;
            match groups.get_mut(&current_key) {
                Some(collector) => collector.push(value),
                None => {
                    let mut collector = Collector::new(keep_values);
                    collector.push(value);
                    groups.insert(current_key.clone(), collector);
                }
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
        let (landed, landed_ids) = self.memtable_snapshot(
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
        for reading in &landed {
            if let Some(value) = reading.values.get(query.metric.as_str()) {
                add(reading.read_at.0, value);
            }
        }
        let (where_sql, mut values) = conditions(
            query.sensor.as_ref(),
            query.location.as_ref(),
            query.from,
            query.to,
        );
        values.insert(0, Value::Text(metric_path(query.metric.as_str())));
        let sql = format!(
            "SELECT r.id, r.read_at, json_extract(r.vals, ?1) AS v FROM readings r
             WHERE v IS NOT NULL{where_sql}"
        );
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            if !landed_ids.is_empty() && landed_ids.contains(&reading_id(row)?) {
                continue;
            }
            add(row.get(1)?, row.get(2)?);
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

fn reading_id(row: &rusqlite::Row<'_>) -> Result<ReadingId, StoreError> {
    let bytes = row
        .get_ref(0)?
        .as_blob()
        .map_err(|_| StoreError::Internal("a stored reading id is not a blob".into()))?;
    uuid::Uuid::from_slice(bytes)
        .map(ReadingId)
        .map_err(|_| StoreError::Internal("a stored reading id is not a UUID".into()))
}
