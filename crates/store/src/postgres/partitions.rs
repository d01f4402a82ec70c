//! Daily partitions of `readings`: naming, creating ahead and on demand, and retention by
//! dropping whole days.
//!
//! A partition covers one UTC day `[day * 86_400_000, (day + 1) * 86_400_000)` of `read_at`
//! and is named `readings_YYYYMMDD`. The set of days that exist is cached; only a day missing
//! from the cache costs DDL. Readings may be as old as 2000, so old days are created only when
//! a batch brings one, never in advance.

use std::time::{Duration, Instant};

use audrey_model::Millis;

use super::errors::from_pg;
use super::{PostgresStore, poisoned};
use crate::StoreError;

pub(crate) const DAY_MS: i64 = 86_400_000;
/// How often `maintain` creates partitions ahead and trims quarantine.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Days created ahead of today (and one behind, for clocks near midnight).
const DAYS_AHEAD: i64 = 7;

pub(crate) fn day_of(at: Millis) -> i64 {
    at.0.div_euclid(DAY_MS)
}

/// `(year, month, day)` of a day number (days since 1970-01-01), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm: shift to an era starting on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub(crate) fn partition_name(day: i64) -> String {
    let (year, month, day) = civil_from_days(day);
    format!("readings_{year:04}{month:02}{day:02}")
}

/// The day a partition name stands for, if it is one of ours.
fn day_of_partition(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("readings_")?;
    if digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let year: i64 = digits[0..4].parse().ok()?;
    let month: u32 = digits[4..6].parse().ok()?;
    let day: u32 = digits[6..8].parse().ok()?;
    // Invert by search around the estimate: names are rare and this runs at maintenance pace.
    let estimate = (year - 1970) * 365 + (year - 1969) / 4 + i64::from(month) * 30;
    (estimate - 40..estimate + 40)
        .find(|&candidate| civil_from_days(candidate) == (year, month, day))
}

impl PostgresStore {
    pub(super) fn load_partitions(&self) -> Result<(), StoreError> {
        let names: Vec<String> = self.block_on(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT child.relname::text FROM pg_inherits
                     JOIN pg_class child ON child.oid = pg_inherits.inhrelid
                     WHERE pg_inherits.inhparent = 'readings'::regclass",
                    &[],
                )
                .await
                .map_err(from_pg)?;
            Ok::<_, StoreError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        let mut known = self.partitions.write().map_err(poisoned)?;
        known.clear();
        known.extend(names.iter().filter_map(|name| day_of_partition(name)));
        Ok(())
    }

    /// Creates the partitions of these days that the cache does not know.
    pub(super) async fn ensure_days(
        &self,
        days: impl IntoIterator<Item = i64>,
    ) -> Result<(), StoreError> {
        let missing: Vec<i64> = {
            let known = self.partitions.read().map_err(poisoned)?;
            let mut missing: Vec<i64> = days
                .into_iter()
                .filter(|day| !known.contains(day))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        for day in missing {
            let name = partition_name(day);
            let statement = format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings
                 FOR VALUES FROM ({}) TO ({})",
                day * DAY_MS,
                (day + 1) * DAY_MS
            );
            if let Err(error) = client.batch_execute(&statement).await {
                // Another process may have created it a moment ago; believe the catalogue.
                let exists: bool = client
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                    .await
                    .map_err(from_pg)?
                    .get(0);
                if !exists {
                    return Err(from_pg(error));
                }
            }
            tracing::debug!(partition = %name, "created readings partition");
            self.partitions.write().map_err(poisoned)?.insert(day);
        }
        Ok(())
    }

    /// Partitions ahead of time and quarantine trimming, at most once a minute.
    pub(super) fn upkeep_if_due(&self) -> Result<(), StoreError> {
        {
            let mut last = self.last_upkeep.lock().map_err(poisoned)?;
            if last.is_some_and(|at| at.elapsed() < UPKEEP_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let now = Millis::now();
        let today = day_of(now);
        let oldest_kept = now.0 - self.options.quarantine_max_age.as_millis() as i64;
        let max_rows = self.options.quarantine_max_rows as i64;
        self.block_on(async {
            self.ensure_days(today - 1..=today + DAYS_AHEAD).await?;
            let client = self.client().await?;
            client
                .execute(
                    "DELETE FROM quarantine WHERE received_at < $1",
                    &[&oldest_kept],
                )
                .await
                .map_err(from_pg)?;
            client
                .execute(
                    "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - $1",
                    &[&max_rows],
                )
                .await
                .map_err(from_pg)?;
            Ok(())
        })
    }

    /// Drops every daily partition that ends at or before `older_than` (counting its rows
    /// first), then trims up to `max_rows` dedup keys of readings older than that. Answers
    /// how many readings and keys went; 0 means there is nothing left to do.
    pub(super) fn drop_old_partitions(
        &self,
        older_than: Millis,
        max_rows: usize,
    ) -> Result<u64, StoreError> {
        self.load_partitions()?;
        let doomed: Vec<i64> = self
            .partitions
            .read()
            .map_err(poisoned)?
            .iter()
            .copied()
            .filter(|day| (day + 1) * DAY_MS <= older_than.0)
            .collect();
        let cutoff = day_of(older_than) * DAY_MS;
        let max_rows = max_rows.max(1) as i64;
        self.block_on(async {
            let mut client = self.client().await?;
            let mut removed = 0u64;
            for day in doomed {
                let name = partition_name(day);
                let rows: i64 = client
                    .query_one(&format!("SELECT COUNT(*) FROM {name}"), &[])
                    .await
                    .map_err(from_pg)?
                    .get(0);
                // The day's rollups and dirty markers go in the same transaction, so no
                // snapshot sees rollups of readings that are gone (rollups.rs).
                let (start, end) = (day * DAY_MS, (day + 1) * DAY_MS);
                let transaction = client.transaction().await.map_err(from_pg)?;
                transaction
                    .batch_execute(&format!(
                        "DROP TABLE IF EXISTS {name};
                         DELETE FROM reading_rollups WHERE hour >= {start} AND hour < {end};
                         DELETE FROM rollup_dirty WHERE hour >= {start} AND hour < {end}"
                    ))
                    .await
                    .map_err(from_pg)?;
                transaction.commit().await.map_err(from_pg)?;
                self.partitions.write().map_err(poisoned)?.remove(&day);
                tracing::info!(partition = %name, rows, "retention dropped a readings partition");
                removed += rows as u64;
            }
            // The keys of dropped days, in bounded batches so no transaction grows large.
            let keys = client
                .execute(
                    "DELETE FROM reading_keys WHERE ctid IN (
                        SELECT ctid FROM reading_keys WHERE read_at < $1 LIMIT $2)",
                    &[&cutoff, &max_rows],
                )
                .await
                .map_err(from_pg)?;
            Ok(removed + keys)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_are_utc_calendar_days() {
        assert_eq!(partition_name(0), "readings_19700101");
        assert_eq!(partition_name(-1), "readings_19691231");
        assert_eq!(
            partition_name(day_of(Millis(946_684_800_000))),
            "readings_20000101"
        );
        assert_eq!(
            partition_name(day_of(Millis(951_782_400_000))),
            "readings_20000229"
        );
        assert_eq!(partition_name(20_414), "readings_20251122");
    }

    #[test]
    fn a_partition_name_maps_back_to_its_day() {
        for day in [-400, 0, 59, 10_957, 11_016, 20_414, 30_000] {
            assert_eq!(
                day_of_partition(&partition_name(day)),
                Some(day),
                "day {day}"
            );
        }
        assert_eq!(day_of_partition("readings_default"), None);
        assert_eq!(day_of_partition("readings_2025100"), None);
    }

    #[test]
    fn a_negative_millisecond_belongs_to_the_day_before_the_epoch() {
        assert_eq!(day_of(Millis(-1)), -1);
        assert_eq!(day_of(Millis(DAY_MS - 1)), 0);
        assert_eq!(day_of(Millis(DAY_MS)), 1);
    }
}
