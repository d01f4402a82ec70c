//! Hourly rollups of the readings: per `(sensor, hour, location, metric)` the count, sum,
//! minimum, maximum and `m2` (sum of squared deviations from the group's mean), kept exact
//! without touching a shared row on the acknowledgement path.
//!
//! An ingest transaction appends ONE `reading_rollup_deltas` row (parallel arrays, one
//! element per group the batch's stored readings fall in) beside its readings, so a delta
//! is durable exactly when its readings are: a late reading into an hour rolled up long ago
//! is counted the moment it is acknowledged. Maintenance merges deltas into
//! `reading_rollups` in one transaction that deletes the deltas it merged, so a reader
//! (one statement, one snapshot) sees every group either still as deltas or already merged,
//! never both and never neither. Merges are serialised by an advisory lock, so two processes
//! folding at once cannot lose an update. Statistics read rollups plus unmerged deltas for
//! whole hours, and raw rows only for the partial hours at the edges of a range (`stats`).
//!
//! Groups merge with Chan's formula: `m2 = m2a + m2b + d² · na · nb / n` with `d` the
//! difference of the two means, numerically stable where a sum of squares is not.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use audrey_model::{Millis, ValidReading};

use super::errors::from_pg;
use super::{PostgresStore, poisoned};
use crate::StoreError;

pub(crate) const HOUR_MS: i64 = 3_600_000;
/// How often maintenance merges deltas. A merge rewrites every group the deltas touched (with
/// many sensors, about one rollup row per sensor and metric), so merging less often costs
/// less per reading; queries read the unmerged deltas meanwhile.
const FOLD_INTERVAL: Duration = Duration::from_secs(5);
/// Delta rows (one per ingest transaction, up to a few thousand groups each) merged per fold
/// transaction: bounds the memory a fold holds.
const FOLD_BATCH: i64 = 100;
/// Fold transactions per maintenance pass at most, so a backlog cannot stall maintenance.
const FOLDS_PER_PASS: usize = 50;
/// An arbitrary constant naming the rollup merge among advisory locks ("ROLLUP").
const ROLLUP_LOCK: i64 = 0x524f_4c4c_5550;

pub(crate) fn hour_of(at: i64) -> i64 {
    at - at.rem_euclid(HOUR_MS)
}

/// One group's running summary.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Moments {
    pub n: i64,
    pub total: f64,
    pub low: f64,
    pub high: f64,
    pub m2: f64,
}

impl Moments {
    fn one(value: f64) -> Moments {
        Moments {
            n: 1,
            total: value,
            low: value,
            high: value,
            m2: 0.0,
        }
    }

    /// Chan et al.'s pairwise merge.
    pub(crate) fn merge(&mut self, other: &Moments) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let delta = other.total / nb - self.total / na;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.n += other.n;
        self.total += other.total;
        self.low = self.low.min(other.low);
        self.high = self.high.max(other.high);
    }

    /// Welford's update with one value.
    fn add(&mut self, value: f64) {
        let before = self.total / self.n as f64;
        self.n += 1;
        self.total += value;
        let after = self.total / self.n as f64;
        self.m2 += (value - before) * (value - after);
        self.low = self.low.min(value);
        self.high = self.high.max(value);
    }
}

/// The rollup delta of one batch, as the parallel arrays of one `reading_rollup_deltas` row.
#[derive(Default)]
pub(super) struct RollupDelta {
    sensors: Vec<String>,
    hours: Vec<i64>,
    locations: Vec<String>,
    metrics: Vec<String>,
    n: Vec<i64>,
    total: Vec<f64>,
    low: Vec<f64>,
    high: Vec<f64>,
    m2: Vec<f64>,
}

pub(super) const APPEND_ROLLUP_DELTA: &str = "INSERT INTO reading_rollup_deltas
     (sensors, hours, locations, metrics, n, total, low, high, m2)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

impl RollupDelta {
    /// Summarises the readings a batch stored (never its duplicates).
    pub(super) fn of<'a>(stored: impl Iterator<Item = &'a ValidReading>) -> RollupDelta {
        let mut groups: HashMap<(&str, i64, &str, &str), Moments> = HashMap::new();
        for reading in stored {
            let hour = hour_of(reading.read_at.0);
            for (metric, value) in &reading.values.0 {
                let key = (
                    reading.sensor_id.as_str(),
                    hour,
                    reading.location_id.as_str(),
                    metric.as_str(),
                );
                groups
                    .entry(key)
                    .and_modify(|moments| moments.add(*value))
                    .or_insert_with(|| Moments::one(*value));
            }
        }
        let mut delta = RollupDelta::default();
        for ((sensor, hour, location, metric), moments) in groups {
            delta.push(sensor, hour, location, metric, &moments);
        }
        delta
    }

    fn push(&mut self, sensor: &str, hour: i64, location: &str, metric: &str, moments: &Moments) {
        self.sensors.push(sensor.to_string());
        self.hours.push(hour);
        self.locations.push(location.to_string());
        self.metrics.push(metric.to_string());
        self.n.push(moments.n);
        self.total.push(moments.total);
        self.low.push(moments.low);
        self.high.push(moments.high);
        self.m2.push(moments.m2);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    pub(super) fn parameters(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 9] {
        [
            &self.sensors,
            &self.hours,
            &self.locations,
            &self.metrics,
            &self.n,
            &self.total,
            &self.low,
            &self.high,
            &self.m2,
        ]
    }
}

type GroupKey = (String, i64, String, String);

/// Takes up to [`FOLD_BATCH`] delta rows, merges them into their rollups, deletes them; one
/// transaction. Answers how many delta rows it merged.
async fn fold_once(client: &mut deadpool_postgres::Object) -> Result<usize, StoreError> {
    let transaction = client.transaction().await.map_err(from_pg)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&ROLLUP_LOCK])
        .await
        .map_err(from_pg)?;
    let taken = transaction
        .query(
            "WITH taken AS (
                DELETE FROM reading_rollup_deltas WHERE id IN (
                    SELECT id FROM reading_rollup_deltas ORDER BY id LIMIT $1)
                RETURNING *)
             SELECT taken.id, d.* FROM taken,
                 unnest(taken.sensors, taken.hours, taken.locations, taken.metrics, taken.n,
                        taken.total, taken.low, taken.high, taken.m2)
                 AS d(sensor_id, hour, location_id, metric, n, total, low, high, m2)",
            &[&FOLD_BATCH],
        )
        .await
        .map_err(from_pg)?;
    if taken.is_empty() {
        transaction.commit().await.map_err(from_pg)?;
        return Ok(0);
    }
    let delta_rows: std::collections::HashSet<i64> = taken.iter().map(|row| row.get(0)).collect();
    let mut merged: HashMap<GroupKey, Moments> = HashMap::new();
    for row in &taken {
        let key: GroupKey = (row.get(1), row.get(2), row.get(3), row.get(4));
        let moments = Moments {
            n: row.get(5),
            total: row.get(6),
            low: row.get(7),
            high: row.get(8),
            m2: row.get(9),
        };
        merged
            .entry(key)
            .and_modify(|sum| sum.merge(&moments))
            .or_insert(moments);
    }
    // Key order: the upsert then touches rollup rows in one order every time.
    let mut keys: Vec<GroupKey> = merged.keys().cloned().collect();
    keys.sort_unstable();
    let sensors: Vec<&str> = keys.iter().map(|key| key.0.as_str()).collect();
    let hours: Vec<i64> = keys.iter().map(|key| key.1).collect();
    let locations: Vec<&str> = keys.iter().map(|key| key.2.as_str()).collect();
    let metrics: Vec<&str> = keys.iter().map(|key| key.3.as_str()).collect();
    let existing = transaction
        .query(
            "SELECT r.sensor_id, r.hour, r.location_id, r.metric, r.n, r.total, r.low, r.high,
                    r.m2
             FROM reading_rollups r
             JOIN unnest($1::text[], $2::int8[], $3::text[], $4::text[])
                  AS k(sensor_id, hour, location_id, metric)
               USING (sensor_id, hour, location_id, metric)",
            &[&sensors, &hours, &locations, &metrics],
        )
        .await
        .map_err(from_pg)?;
    for row in &existing {
        let key: GroupKey = (row.get(0), row.get(1), row.get(2), row.get(3));
        let mut old = Moments {
            n: row.get(4),
            total: row.get(5),
            low: row.get(6),
            high: row.get(7),
            m2: row.get(8),
        };
        if let Some(new) = merged.get_mut(&key) {
            old.merge(new);
            *new = old;
        }
    }
    let mut out = RollupDelta::default();
    for key in &keys {
        out.push(&key.0, key.1, &key.2, &key.3, &merged[key]);
    }
    transaction
        .execute(
            "INSERT INTO reading_rollups
                (sensor_id, hour, location_id, metric, n, total, low, high, m2)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[],
                                  $6::float8[], $7::float8[], $8::float8[], $9::float8[])
             ON CONFLICT (sensor_id, hour, location_id, metric) DO UPDATE SET
                n = EXCLUDED.n, total = EXCLUDED.total, low = EXCLUDED.low,
                high = EXCLUDED.high, m2 = EXCLUDED.m2",
            &out.parameters(),
        )
        .await
        .map_err(from_pg)?;
    transaction.commit().await.map_err(from_pg)?;
    Ok(delta_rows.len())
}

impl PostgresStore {
    /// Merges rollup deltas, at most once per [`FOLD_INTERVAL`].
    pub(super) fn fold_rollups_if_due(&self) -> Result<(), StoreError> {
        {
            let mut last = self.last_rollup_fold.lock().map_err(poisoned)?;
            if last.is_some_and(|at| at.elapsed() < FOLD_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        self.fold_rollups()
    }

    /// Merges waiting rollup deltas into the rollups now (a bounded number of transactions;
    /// what is left waits for the next pass and is still counted by every query).
    pub fn fold_rollups(&self) -> Result<(), StoreError> {
        self.block_on(async {
            let mut client = self.client().await?;
            for _ in 0..FOLDS_PER_PASS {
                if fold_once(&mut client).await? < FOLD_BATCH as usize {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Forgets the rollups of hours before `cutoff` (retention dropped their readings):
    /// merges every delta first, under the merge lock, so none of those hours survives as
    /// a delta either.
    pub(super) async fn drop_rollups_before(&self, cutoff: Millis) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        while fold_once(&mut client).await? >= FOLD_BATCH as usize {}
        let transaction = client.transaction().await.map_err(from_pg)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&ROLLUP_LOCK])
            .await
            .map_err(from_pg)?;
        transaction
            .execute("DELETE FROM reading_rollups WHERE hour < $1", &[&cutoff.0])
            .await
            .map_err(from_pg)?;
        transaction.commit().await.map_err(from_pg)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[f64]) -> Moments {
        let mut moments = Moments::one(values[0]);
        for value in &values[1..] {
            moments.add(*value);
        }
        moments
    }

    #[test]
    fn merged_moments_equal_the_moments_of_all_values() {
        let values: Vec<f64> = (0..97)
            .map(|i| 1.0e6 + ((i * 7919) % 1000) as f64 * 0.37)
            .collect();
        let whole = of(&values);
        let mut parts = of(&values[..10]);
        parts.merge(&of(&values[10..50]));
        parts.merge(&of(&values[50..]));
        assert_eq!(
            (parts.n, parts.low, parts.high),
            (whole.n, whole.low, whole.high)
        );
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let m2: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        assert!((parts.m2 - m2).abs() <= 1e-9 * m2, "{} vs {m2}", parts.m2);
        assert!((whole.m2 - m2).abs() <= 1e-9 * m2, "{} vs {m2}", whole.m2);
    }

    #[test]
    fn hours_start_on_the_hour_even_before_1970() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_MS - 1), 0);
        assert_eq!(hour_of(-1), -HOUR_MS);
        assert_eq!(hour_of(5 * HOUR_MS + 7), 5 * HOUR_MS);
    }
}
