//! The PostgreSQL store: the same [`Store`](crate::Store) contract as the embedded SQLite
//! store, on a server shared by several Audrey processes or tools.
//!
//! Layout (versioned migrations in [`schema`]):
//! - `readings` is partitioned by RANGE on `read_at` into one partition per UTC day
//!   (`readings_YYYYMMDD`). Audrey creates partitions ahead (yesterday to seven days ahead, at
//!   open and in `maintain`) and on demand for the days a batch needs; which days exist is
//!   cached, so a normal append never issues DDL. Retention drops whole partitions.
//! - The primary key is `(id, read_at)` (a partitioned table's unique keys must contain the
//!   partition column). Because ids are unique, that key also makes a replayed append (same
//!   `assigned_ids`) a no-op even for readings without a message id.
//! - `reading_keys` is a plain table mapping the dedup key `(sensor_id, message_id)` to the
//!   reading id: a partitioned table cannot hold a unique key that lacks `read_at`.
//! - An append writes its readings with one binary `COPY` into `readings`. Assigned ids
//!   (`assigned_ids`, from the outage spool) are usually new, so they are copied straight in
//!   too; when the unique key refuses one (a replay of readings already stored), the
//!   transaction rolls back and the batch goes through a temporary staging table and
//!   `INSERT .. ON CONFLICT DO NOTHING`, so ids already stored are recognised. Every append
//!   is one transaction committed with `synchronous_commit` on: `Ok` means durable.
//!   Several appends run at once (`concurrent_appends` committers, one connection each);
//!   they share no row lock but the dedup keys they have in common (`append`).
//! - Per-sensor counters are appended as deltas by each append and folded into
//!   `sensor_counters` by maintenance; a read sums both (`counters`).
//! - Statistics and time buckets are computed by the server (`stats`) from hourly rollups
//!   that maintenance keeps (`rollups`) plus raw rows for dirty and partial hours; radius searches take a
//!   latitude/longitude box from SQL and decide with the shared haversine in Rust (`geo`), so
//!   both backends answer the same. Staged changes finish once by a conditional UPDATE.
//!
//! The trait is synchronous, so the store owns a small tokio runtime and blocks on it; its
//! callers are the committer thread and `spawn_blocking` threads, never async tasks.
//! Connection failures (refused, reset, pool timeout, administrator shutdown) are
//! [`StoreError::Unavailable`]; the outage spool keys off that variant. This module must never
//! know about HTTP, and must never keep acknowledged data only in memory.

mod append;
mod counters;
mod errors;
mod geo;
mod import;
mod partitions;
mod readings;
mod registry;
mod rollups;
mod schema;
mod staged;
mod stats;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use audrey_model::Sensor;

use crate::StoreError;

#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// How long a caller waits for a free connection (or a new one) before the store answers
    /// `Unavailable`.
    pub connect_timeout: Duration,
    pub quarantine_max_rows: usize,
    pub quarantine_max_age: Duration,
    /// How many appends may run at once, each on its own connection (the ingest pipeline
    /// starts this many committers). Appends of one batch take no lock another batch needs
    /// except the dedup keys they share, so they overlap their round trips and WAL flushes.
    pub concurrent_appends: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            quarantine_max_rows: 100_000,
            quarantine_max_age: Duration::from_secs(7 * 24 * 3600),
            concurrent_appends: 3,
        }
    }
}

pub struct PostgresStore {
    /// `Option` only so that `Drop` can shut the runtime down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    options: PostgresOptions,
    /// UTC day numbers (days since 1970-01-01) whose partition exists.
    partitions: RwLock<BTreeSet<i64>>,
    sensors: RwLock<crate::SensorCache>,
    last_upkeep: Mutex<Option<Instant>>,
    last_fold: Mutex<Option<Instant>>,
    last_rollup: Mutex<Option<Instant>>,
}

impl PostgresStore {
    /// Connects, applies migrations, creates the partitions around today and loads the
    /// sensor cache.
    pub fn open(url: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("audrey-postgres")
            .enable_all()
            .build()
            .map_err(|error| StoreError::Internal(format!("starting the runtime: {error}")))?;
        let pool = build_pool(url, &options)?;
        let store = PostgresStore {
            runtime: Some(runtime),
            pool,
            options,
            partitions: RwLock::new(BTreeSet::new()),
            sensors: RwLock::new(crate::SensorCache::default()),
            last_upkeep: Mutex::new(None),
            last_fold: Mutex::new(None),
            last_rollup: Mutex::new(None),
        };
        store.block_on(async {
            let mut client = store.client().await?;
            schema::migrate(&mut client).await
        })?;
        store.load_partitions()?;
        store.upkeep_if_due()?;
        store.reload_sensor_cache()?;
        Ok(store)
    }

    /// Applies migrations without opening the store; answers the schema version.
    pub fn migrate_only(url: &str) -> Result<usize, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| StoreError::Internal(format!("starting the runtime: {error}")))?;
        let pool = build_pool(url, &PostgresOptions::default())?;
        runtime.block_on(async {
            let mut client = pool.get().await.map_err(errors::from_pool)?;
            schema::migrate(&mut client).await
        })
    }

    pub fn schema_version() -> usize {
        schema::latest_version()
    }

    /// Creates the daily partitions covering `[from, to)` now, for tools that bulk-load
    /// readings around the store (benchmark preloads); appends never need it.
    pub fn prepare_partitions(
        &self,
        from: audrey_model::Millis,
        to: audrey_model::Millis,
    ) -> Result<(), StoreError> {
        let first = partitions::day_of(from);
        let last = partitions::day_of(audrey_model::Millis(to.0.saturating_sub(1)));
        self.block_on(self.ensure_days(first..=last))
    }

    /// Runs `future` on the store's runtime and waits for it. A thread that belongs to
    /// another tokio runtime (an async caller, or a `spawn_blocking` thread) may not block on
    /// a runtime, so there the wait happens on a short-lived scoped helper thread; the
    /// caller's thread is blocked either way, exactly as with the SQLite store. The committer
    /// and maintenance threads take the direct path.
    fn block_on<F>(&self, future: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let Some(runtime) = &self.runtime else {
            unreachable!("the runtime lives until drop")
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return runtime.block_on(future);
        }
        std::thread::scope(
            |scope| match scope.spawn(|| runtime.block_on(future)).join() {
                Ok(output) => output,
                Err(panic) => std::panic::resume_unwind(panic),
            },
        )
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(errors::from_pool)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; callers may drop the store inside async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn build_pool(url: &str, options: &PostgresOptions) -> Result<Pool, StoreError> {
    let config: tokio_postgres::Config = url.parse().map_err(|error| {
        StoreError::Internal(format!("the PostgreSQL URL is not valid: {error}"))
    })?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|error| StoreError::Internal(format!("building the connection pool: {error}")))
}

pub(crate) fn poisoned<T>(_: T) -> StoreError {
    StoreError::Internal("lock poisoned".into())
}

impl crate::Store for PostgresStore {
    fn append(
        &self,
        batch: crate::AppendBatch,
        received_at: audrey_model::Millis,
    ) -> Result<Vec<crate::AppendOutcome>, StoreError> {
        self.append_batch(batch, received_at)
    }

    fn concurrent_appends(&self) -> usize {
        // Never more than the pool can serve beside readers.
        self.options
            .concurrent_appends
            .clamp(1, self.options.pool_size.max(1))
    }

    fn maintain(&self) -> Result<(), StoreError> {
        self.upkeep_if_due()?;
        self.fold_counters_if_due()?;
        self.roll_up_if_due()
    }

    fn ready(&self) -> Result<(), StoreError> {
        self.block_on(async {
            let client = self.client().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(errors::from_pg)?;
            Ok(())
        })
    }

    fn retain(&self, older_than: audrey_model::Millis, max_rows: usize) -> Result<u64, StoreError> {
        self.drop_old_partitions(older_than, max_rows)
    }

    fn reading(
        &self,
        id: audrey_model::ReadingId,
    ) -> Result<Option<audrey_model::Reading>, StoreError> {
        self.get_reading(id)
    }

    fn readings_after_id(
        &self,
        after: Option<audrey_model::ReadingId>,
        limit: usize,
    ) -> Result<Vec<audrey_model::Reading>, StoreError> {
        self.list_readings_after_id(after, limit)
    }

    fn readings(
        &self,
        query: &crate::ReadingQuery,
    ) -> Result<crate::Page<audrey_model::Reading>, StoreError> {
        self.query_readings(query)
    }

    fn quarantine(
        &self,
        filter: &crate::QuarantineFilter,
    ) -> Result<crate::Page<crate::QuarantineEntry>, StoreError> {
        self.list_quarantine(filter)
    }

    fn counters(
        &self,
        sensor: &audrey_model::SensorId,
    ) -> Result<crate::SensorCounters, StoreError> {
        self.sensor_counters(sensor)
    }

    fn location(
        &self,
        id: &audrey_model::LocationId,
    ) -> Result<Option<audrey_model::Location>, StoreError> {
        self.get_location(id)
    }

    fn locations(
        &self,
        filter: &crate::LocationFilter,
    ) -> Result<crate::Page<audrey_model::Location>, StoreError> {
        self.list_locations(filter)
    }

    fn put_location(
        &self,
        location: &audrey_model::Location,
        must_be_new: bool,
    ) -> Result<bool, StoreError> {
        self.write_location(location, must_be_new)
    }

    fn delete_location(
        &self,
        id: &audrey_model::LocationId,
        at: audrey_model::Millis,
    ) -> Result<(), StoreError> {
        self.soft_delete_location(id, at)
    }

    fn purge_location(&self, id: &audrey_model::LocationId) -> Result<(), StoreError> {
        self.remove_location(id)
    }

    fn upsert_locations(
        &self,
        rows: &[audrey_model::ImportRow],
    ) -> Result<Vec<crate::UpsertOutcome>, StoreError> {
        self.upsert_location_rows(rows)
    }

    fn locations_near(
        &self,
        circle: &audrey_model::GeoCircle,
        limit: usize,
    ) -> Result<Vec<crate::NearLocation>, StoreError> {
        self.near_locations(circle, limit)
    }

    fn reading_stats(
        &self,
        query: &crate::StatsQuery,
    ) -> Result<Vec<crate::StatsGroup>, StoreError> {
        self.compute_stats(query)
    }

    fn aggregate_readings(
        &self,
        query: &crate::AggregateQuery,
    ) -> Result<Vec<crate::Bucket>, StoreError> {
        self.compute_buckets(query)
    }

    fn sensor(&self, id: &audrey_model::SensorId) -> Result<Option<Sensor>, StoreError> {
        self.get_sensor(id)
    }

    fn sensors(&self, filter: &crate::SensorFilter) -> Result<crate::Page<Sensor>, StoreError> {
        self.list_sensors(filter)
    }

    fn put_sensor(&self, sensor: &Sensor, must_be_new: bool) -> Result<bool, StoreError> {
        self.write_sensor(sensor, must_be_new)
    }

    fn delete_sensor(
        &self,
        id: &audrey_model::SensorId,
        at: audrey_model::Millis,
    ) -> Result<(), StoreError> {
        self.soft_delete_sensor(id, at)
    }

    fn purge_sensor(&self, id: &audrey_model::SensorId) -> Result<(), StoreError> {
        self.remove_sensor(id)
    }

    fn cached_sensor(&self, id: &str) -> Option<Arc<Sensor>> {
        self.cached(id)
    }

    fn visit_cached_sensors(&self, ids: &[&str], visit: &mut dyn FnMut(usize, Option<&Sensor>)) {
        crate::visit_cache(&self.sensors, ids, visit);
    }

    fn put_token(&self, token: &crate::StoredToken) -> Result<(), StoreError> {
        self.insert_token(token)
    }

    fn tokens(&self) -> Result<Vec<crate::StoredToken>, StoreError> {
        self.list_tokens()
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<crate::StoredToken>, StoreError> {
        self.find_token(hash)
    }

    fn revoke_token(&self, id: &str, at: audrey_model::Millis) -> Result<(), StoreError> {
        self.mark_token_revoked(id, at)
    }

    fn replace_token(&self, token: &crate::StoredToken) -> Result<(), StoreError> {
        self.update_token(token)
    }

    fn purge_token(&self, id: &str) -> Result<(), StoreError> {
        self.remove_token(id)
    }

    fn stage_change(&self, change: &crate::StagedChange) -> Result<(), StoreError> {
        self.insert_staged_change(change)
    }

    fn staged_changes(
        &self,
        status: crate::StagedStatus,
    ) -> Result<Vec<crate::StagedChange>, StoreError> {
        self.list_staged_changes(status)
    }

    fn staged_change_by_link(
        &self,
        link_hash: &str,
    ) -> Result<Option<crate::StagedChange>, StoreError> {
        self.find_staged_change(link_hash)
    }

    fn finish_staged_change(
        &self,
        id: &str,
        status: crate::StagedStatus,
        at: audrey_model::Millis,
    ) -> Result<bool, StoreError> {
        self.mark_staged_change(id, status, at)
    }
}
