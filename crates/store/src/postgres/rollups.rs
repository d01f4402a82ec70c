//! Hourly rollups: what statistics and hour/day buckets read instead of every raw reading.
//!
//! `reading_rollups` holds, per UTC hour, metric, sensor and location (the reading's own
//! location, so group-by-location and its city/country joins stay exact), the count, sum,
//! minimum, maximum, mean and `m2` (sum of squared deviations from the mean) of the values,
//! and the values themselves sorted ascending (`sorted`, packed big-endian doubles), so exact
//! percentiles need no raw rows either.
//!
//! Invariant, in every snapshot: an hour with no `rollup_dirty` row has rollup rows that
//! describe exactly its readings. It holds because
//! - every ingest transaction that stores readings appends, in the same transaction, one
//!   `rollup_dirty` row per hour it wrote into (one small row per hour per batch: a batch of
//!   1,000 readings usually touches one or two hours) — see [`MARK_AND_COUNT`];
//! - a rollup ([`PostgresStore::roll_up_hour`]) runs in one REPEATABLE READ transaction: it
//!   reads the hour's readings, replaces the hour's rollup rows, and deletes the markers it
//!   *sees*. A reading committed after its snapshot has a marker the rollup cannot see, so
//!   the marker stays and the hour stays dirty;
//! - retention drops an hour's rollups and markers in the transaction that drops its
//!   partition (`partitions.rs`).
//!
//! So a reader answers, in one REPEATABLE READ snapshot, whole clean hours from rollups and
//! dirty hours and the partial hours at the range's edges from raw rows (`stats.rs`): late
//! readings are exact from the moment they are acknowledged.
//!
//! The rollup work itself is kept off the ingest path and out of bursts: maintenance rolls up
//! an hour once its newest marker is [`SETTLE`] old (no write for a while), or, for an hour
//! that has ended, once its oldest is [`MAX_WAIT`] old (a past hour that late readings keep
//! trickling into still gets rolled up that often). The current hour under a steady load is
//! answered from raw rows until it ends. The readings are read with a binary COPY
//! and folded here in Rust — about a tenth of the cost of the same aggregation in SQL over
//! `json_each_text` (measured in docs/benchmarks.md). Markers of unsettled hours are
//! compacted to one row per hour on every pass, so the marker table stays small.

use std::collections::HashMap;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{IsolationLevel, Transaction};

use audrey_model::{Millis, ReadingValues};

use super::errors::from_pg;
use super::{PostgresStore, poisoned};
use crate::StoreError;
use crate::fold::Collector;

pub(super) const HOUR_MS: i64 = 3_600_000;

/// An hour is rolled up once no batch has written into it for this long...
const SETTLE: Duration = Duration::from_secs(10);
/// ...or, for an hour that has ended, once it has been dirty this long, whatever keeps
/// writing into it.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How often maintenance looks for hours to roll up.
const ROLLUP_INTERVAL: Duration = Duration::from_secs(5);
/// One maintenance pass stops starting new hours after this long (counter folds and
/// partition upkeep share the thread).
const PASS_BUDGET: Duration = Duration::from_secs(2);

/// An arbitrary constant naming the rollup lock among advisory locks: one process rolls up
/// at a time, so two never race to replace the same hour.
const ROLLUP_LOCK: i64 = 0x524f_4c4c_5550; // "ROLLUP"

/// The start of the UTC hour holding `millis` (floor, also before 1970).
pub(super) fn hour_of(millis: i64) -> i64 {
    millis.div_euclid(HOUR_MS) * HOUR_MS
}

/// The distinct hours of `read_ats`, ascending.
pub(super) fn hours_of(read_ats: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut hours: Vec<i64> = read_ats.map(hour_of).collect();
    hours.sort_unstable();
    hours.dedup();
    hours
}

/// Appended with every ingest COMMIT: the counter deltas and the dirty-hour markers in one
/// statement: $1-$4 the per-sensor deltas (sensor, accepted, duplicate, rejected), $5 the
/// hours, $6 the time of marking.
pub(super) const MARK_AND_COUNT: &str = "WITH marked AS (
        INSERT INTO rollup_dirty (hour, first_marked_at, marked_at)
        SELECT hour, $6, $6 FROM unnest($5::int8[]) AS hour)
     INSERT INTO sensor_counter_deltas (sensor_id, accepted, duplicate, rejected)
     SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[])";

/// Replaces the markers with one row per hour; atomic, so an hour never looks clean.
const COMPACT: &str = "WITH gone AS (DELETE FROM rollup_dirty RETURNING *)
     INSERT INTO rollup_dirty (hour, first_marked_at, marked_at)
     SELECT hour, MIN(first_marked_at), MAX(marked_at) FROM gone GROUP BY hour";

/// Hours no batch has touched since `$1`, and hours that ended before `$1` but have been
/// dirty since `$2` (a past hour trickled into without pause). The current hour waits for
/// its end: rolling it up again every few minutes would re-read a growing hour.
const DUE: &str = "SELECT hour FROM rollup_dirty GROUP BY hour
     HAVING MAX(marked_at) <= $1 OR (MIN(first_marked_at) <= $2 AND hour + 3600000 <= $1)
     ORDER BY hour LIMIT 256";

impl PostgresStore {
    /// Rolls up settled dirty hours, at most once per [`ROLLUP_INTERVAL`] and for about
    /// [`PASS_BUDGET`].
    pub(super) fn roll_up_if_due(&self) -> Result<(), StoreError> {
        {
            let mut last = self.last_rollup.lock().map_err(poisoned)?;
            if last.is_some_and(|at| at.elapsed() < ROLLUP_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let (_, more) = self.roll_up(SETTLE, MAX_WAIT, Some(PASS_BUDGET))?;
        if more {
            // Out of budget with hours still due (a bulk load just ended): go on at the
            // next maintenance round instead of after a whole interval.
            *self.last_rollup.lock().map_err(poisoned)? = None;
        }
        Ok(())
    }

    /// Rolls up every dirty hour now, however recently written: for tests, benchmarks and
    /// operators who want whole-range statistics fast right after a bulk load. Answers how
    /// many hours were rolled up.
    pub fn roll_up_all(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let (done, _) = self.roll_up(Duration::ZERO, Duration::ZERO, None)?;
            if done == 0 {
                return Ok(total);
            }
            total += done;
        }
    }

    /// How many hours have readings not yet in their rollups (answered from raw rows).
    pub fn dirty_hours(&self) -> Result<i64, StoreError> {
        self.block_on(async {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT COUNT(DISTINCT hour) FROM rollup_dirty", &[])
                .await
                .map_err(from_pg)?;
            Ok(row.get(0))
        })
    }

    /// Rolls up the hours due under `settle` and `max_wait`, starting no new hour after
    /// `budget`. Answers how many were rolled up, and whether some due hours were left.
    fn roll_up(
        &self,
        settle: Duration,
        max_wait: Duration,
        budget: Option<Duration>,
    ) -> Result<(usize, bool), StoreError> {
        let started = Instant::now();
        let now = Millis::now().0;
        self.block_on(async {
            let mut client = self.client().await?;
            // Session-level, so it spans the per-hour transactions; released below.
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&ROLLUP_LOCK])
                .await
                .map_err(from_pg)?
                .get(0);
            if !locked {
                return Ok((0, false));
            }
            let settled_before = now - settle.as_millis() as i64;
            let waited_before = now - max_wait.as_millis() as i64;
            let deadline = budget.map(|budget| started + budget);
            let result = roll_up_due(&mut client, settled_before, waited_before, deadline).await;
            let unlocked = client
                .execute("SELECT pg_advisory_unlock($1)", &[&ROLLUP_LOCK])
                .await;
            let (done, more) = result?;
            unlocked.map_err(from_pg)?;
            if done > 0 {
                tracing::debug!(hours = done, more, "rolled up hours of readings");
            }
            Ok((done, more))
        })
    }
}

/// One pass over the due hours (see [`DUE`]), each in its own transaction, starting none
/// after `deadline`. Answers how many were rolled up and whether due hours were left.
async fn roll_up_due(
    client: &mut deadpool_postgres::Object,
    settled_before: i64,
    waited_before: i64,
    deadline: Option<Instant>,
) -> Result<(usize, bool), StoreError> {
    client.execute(COMPACT, &[]).await.map_err(from_pg)?;
    let hours: Vec<i64> = client
        .query(DUE, &[&settled_before, &waited_before])
        .await
        .map_err(from_pg)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut done = 0;
    for hour in hours {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok((done, true));
        }
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(from_pg)?;
        let rolled = match roll_up_hour(&transaction, hour).await {
            Ok(()) => transaction.commit().await.map_err(HourError::from),
            Err(error) => Err(error),
        };
        match rolled {
            Ok(()) => done += 1,
            // Another writer deleted what this one saw (a compaction elsewhere): the hour
            // stays dirty and is rolled up on a later pass.
            Err(HourError::Conflict) => {}
            Err(HourError::Store(error)) => return Err(error),
        }
    }
    Ok((done, false))
}

/// Why one hour was not rolled up.
enum HourError {
    /// A concurrent transaction changed what this one read; the hour stays dirty.
    Conflict,
    Store(StoreError),
}

impl From<tokio_postgres::Error> for HourError {
    fn from(error: tokio_postgres::Error) -> HourError {
        if error.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) {
            HourError::Conflict
        } else {
            HourError::Store(from_pg(error))
        }
    }
}

/// The rollup rows of one hour: per (sensor, location), each metric's collector.
type HourFold = HashMap<Box<str>, HashMap<Box<str>, Vec<(Box<str>, Collector)>>>;

/// Recomputes `hour`'s rollup rows from its readings and deletes the markers this snapshot
/// sees, inside `transaction` (REPEATABLE READ; the caller commits).
async fn roll_up_hour(transaction: &Transaction<'_>, hour: i64) -> Result<(), HourError> {
    let end = hour + HOUR_MS;
    // COPY takes no parameters; both bounds are integers formatted here.
    let out = transaction
        .copy_out(&format!(
            "COPY (SELECT sensor_id, location_id, vals FROM readings
                   WHERE read_at >= {hour} AND read_at < {end}) TO STDOUT (FORMAT binary)"
        ))
        .await?;
    let rows = BinaryCopyOutStream::new(out, &[Type::TEXT, Type::TEXT, Type::TEXT]);
    let mut rows = pin!(rows);
    let mut fold: HourFold = HashMap::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        let sensor: &str = row.try_get(0)?;
        let location: &str = row.try_get(1)?;
        let text: &str = row.try_get(2)?;
        // Audrey wrote this text; a row it cannot read would be a corrupted store, and
        // leaving it out of the rollup would make statistics silently wrong.
        let values = ReadingValues::from_json(text).ok_or_else(|| {
            HourError::Store(StoreError::Internal(format!(
                "a stored reading of sensor {sensor} has unreadable values: {text:?}"
            )))
        })?;
        let locations = match fold.get_mut(sensor) {
            Some(locations) => locations,
            None => fold.entry(sensor.into()).or_default(),
        };
        let metrics = match locations.get_mut(location) {
            Some(metrics) => metrics,
            None => locations.entry(location.into()).or_default(),
        };
        for (metric, value) in values.0 {
            match metrics
                .iter_mut()
                .find(|(name, _)| **name == *metric.as_str())
            {
                Some((_, collector)) => collector.push(value),
                None => {
                    let mut collector = Collector::new(true);
                    collector.push(value);
                    metrics.push((metric.as_str().into(), collector));
                }
            }
        }
    }
    transaction
        .execute("DELETE FROM reading_rollups WHERE hour = $1", &[&hour])
        .await?;
    let sink = transaction
        .copy_in(
            "COPY reading_rollups (metric, hour, sensor_id, location_id, n, total, low, high,
                mean, m2, sorted) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::BYTEA,
        ],
    );
    let mut writer = pin!(writer);
    for (sensor, locations) in fold {
        for (location, metrics) in locations {
            for (metric, mut collector) in metrics {
                let sorted = pack(&collector.take_sorted_values());
                let count = collector.count as i64;
                writer
                    .as_mut()
                    .write(&[
                        &&*metric,
                        &hour,
                        &&*sensor,
                        &&*location,
                        &count,
                        &collector.sum,
                        &collector.min,
                        &collector.max,
                        &collector.mean,
                        &collector.squares,
                        &sorted.as_slice(),
                    ])
                    .await?;
            }
        }
    }
    writer.finish().await?;
    transaction
        .execute("DELETE FROM rollup_dirty WHERE hour = $1", &[&hour])
        .await?;
    Ok(())
}

/// Values as the `sorted` column stores them: big-endian doubles, 8 bytes each.
fn pack(values: &[f64]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_be_bytes())
        .collect()
}

/// The values of a `sorted` column; `None` if its length is not a whole number of doubles.
pub(super) fn unpack(bytes: &[u8]) -> Option<Vec<f64>> {
    let doubles = bytes.chunks_exact(8);
    if !doubles.remainder().is_empty() {
        return None;
    }
    Some(
        doubles
            .map(|double| f64::from_be_bytes(double.try_into().unwrap_or([0; 8])))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_values_read_back_bit_for_bit() {
        let values = [-0.0, 1.5, -1e300, f64::MIN_POSITIVE, 123_456.789, f64::MAX];
        assert_eq!(unpack(&pack(&values)).unwrap(), values);
        assert_eq!(pack(&[1.0]), 1.0f64.to_be_bytes());
        assert_eq!(unpack(&[0; 12]), None);
    }

    #[test]
    fn hours_are_floors_also_before_1970() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_MS - 1), 0);
        assert_eq!(hour_of(-1), -HOUR_MS);
        assert_eq!(
            hours_of([7_200_001, 5, 3_600_000, 10].into_iter()),
            [0, 3_600_000, 7_200_000]
        );
    }
}
