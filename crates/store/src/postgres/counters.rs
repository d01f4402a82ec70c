//! Per-sensor accepted/duplicate/rejected counters, kept off the ingest transaction's
//! row-lock path.
//!
//! An ingest transaction only *appends* one `sensor_counter_deltas` row per sensor it touched
//! (with its COMMIT, `rollups::MARK_AND_COUNT`; no unique key, so two committers writing the
//! same sensor never wait on each other).
//! Maintenance folds the deltas into `sensor_counters` with one statement that deletes them
//! and adds their sums, so a delta is counted exactly once: either still as a delta or
//! already folded. A read is one statement too, summing the folded row and the deltas not
//! yet folded, so it sees a consistent snapshot of both and never misses or doubles a batch.

use std::time::{Duration, Instant};

use audrey_model::SensorId;

use super::errors::from_pg;
use super::{PostgresStore, poisoned};
use crate::{SensorCounters, StoreError};

/// How often maintenance folds counter deltas: often enough that reads sum few rows, rarely
/// enough to cost nothing measurable.
const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// Deleting and adding in one statement makes the fold atomic; two processes folding at once
/// cannot count a delta twice (the second one's DELETE skips rows the first removed), and
/// the counters are upserted in key order so two folds cannot deadlock.
const FOLD: &str = "WITH folded AS (DELETE FROM sensor_counter_deltas RETURNING *)
     INSERT INTO sensor_counters (sensor_id, accepted, duplicate, rejected)
     SELECT sensor_id, SUM(accepted), SUM(duplicate), SUM(rejected)
     FROM folded GROUP BY sensor_id ORDER BY sensor_id
     ON CONFLICT (sensor_id) DO UPDATE SET
        accepted = sensor_counters.accepted + EXCLUDED.accepted,
        duplicate = sensor_counters.duplicate + EXCLUDED.duplicate,
        rejected = sensor_counters.rejected + EXCLUDED.rejected";

const READ: &str = "SELECT
        COALESCE((SELECT accepted FROM sensor_counters WHERE sensor_id = $1), 0)
            + COALESCE(SUM(accepted), 0)::int8,
        COALESCE((SELECT duplicate FROM sensor_counters WHERE sensor_id = $1), 0)
            + COALESCE(SUM(duplicate), 0)::int8,
        COALESCE((SELECT rejected FROM sensor_counters WHERE sensor_id = $1), 0)
            + COALESCE(SUM(rejected), 0)::int8
     FROM sensor_counter_deltas WHERE sensor_id = $1";

impl PostgresStore {
    /// Folds counter deltas into `sensor_counters`, at most once per [`FOLD_INTERVAL`].
    pub(super) fn fold_counters_if_due(&self) -> Result<(), StoreError> {
        {
            let mut last = self.last_fold.lock().map_err(poisoned)?;
            if last.is_some_and(|at| at.elapsed() < FOLD_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        self.fold_counters()
    }

    /// Folds every counter delta into `sensor_counters` now.
    pub fn fold_counters(&self) -> Result<(), StoreError> {
        self.block_on(async {
            let client = self.client().await?;
            client.execute(FOLD, &[]).await.map_err(from_pg)?;
            Ok(())
        })
    }

    pub(super) fn sensor_counters(&self, sensor: &SensorId) -> Result<SensorCounters, StoreError> {
        let row = self.block_on(async {
            let client = self.client().await?;
            client
                .query_one(READ, &[&sensor.as_str()])
                .await
                .map_err(from_pg)
        })?;
        Ok(SensorCounters {
            accepted: row.get::<_, i64>(0) as u64,
            duplicate: row.get::<_, i64>(1) as u64,
            rejected: row.get::<_, i64>(2) as u64,
        })
    }
}
