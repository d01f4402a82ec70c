//! The embedded store: two SQLite database files in the data directory.
//!
//! Layout and durability (docs/architecture.md has the long form):
//! - `landing.db` holds what the acknowledgement path writes: `landing_batches`, one row per
//!   group commit holding its accepted readings in a compact binary encoding
//!   ([`encoding`]) and its duplicate/rejected counts, plus quarantine, all in one transaction
//!   per group commit; per-sensor counters catch up in `audrey.db` when a flush packs the
//!   batches ([`counters`]).
//!   WAL mode with `synchronous=FULL`: `COMMIT` returns only after the WAL is fsynced, so an
//!   acknowledged reading is on disk.
//! - Every landed reading is mirrored in the [`memtable`](memtable::Memtable), which answers
//!   queries and dedup checks for readings not yet flushed, and its dedup key goes into the
//!   [`key filter`](key_filter::KeyFilter).
//! - `audrey.db` holds the registry, tokens and the readings, packed into `chunks`: one row
//!   per sensor, location and hour of `read_at` per flush, the readings sorted by
//!   `(read_at, id)` in columns (ids, times, message ids, one column per metric). Chunks are
//!   indexed by sensor, location and time (min and max `read_at`); [`id_index`] maps each
//!   reading id to its chunk (blocks of a flush's sorted ids: ids are UUIDv7) and `dedup_keys` maps a
//!   64-bit hash of each dedup key to its chunk, clustered by sensor ([`dedup`]).
//! - A flush packs the oldest landed batches from memory into chunks in one transaction on
//!   its own connection, which also records in `flush_state` the last landing seq it packed;
//!   then it forgets them from the memtable and deletes them from `landing_batches`.
//! - A crash between the flush's commit and the landing delete leaves batches in both files;
//!   on open, batches at or below the recorded seq are deleted instead of reloaded (seqs are
//!   AUTOINCREMENT, never reused), so nothing is lost or doubled.
//! - Stores of the row-per-reading layout are converted at open ([`legacy`]).

mod append;
mod counters;
mod dedup;
mod encoding;
mod flush;
mod geo;
mod id_index;
mod import;
mod key_filter;
mod legacy;
mod memtable;
mod readings;
mod registry;
mod scan;
mod schema;
mod staged;
mod stats;
mod summary;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rusqlite::Connection;

use audrey_model::Sensor;

use crate::StoreError;
use key_filter::KeyFilter;
use memtable::Memtable;

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// A flush starts when this many rows have landed...
    pub flush_rows: usize,
    /// ...or when the oldest landed row is this old...
    pub flush_age: Duration,
    /// ...or when at least `idle_flush_rows` have landed and nothing has landed for
    /// `idle_flush_after`: a store whose load stopped empties its memtable without waiting
    /// out the age.
    pub idle_flush_rows: usize,
    pub idle_flush_after: Duration,
    /// The most rows one flush moves.
    pub flush_max_rows: usize,
    /// Above this many landed rows `append` waits for the flush (backpressure)...
    pub memtable_max_rows: usize,
    /// ...and, if that was not enough, flushes this many rows itself.
    pub inline_flush_rows: usize,
    pub quarantine_max_rows: usize,
    pub quarantine_max_age: Duration,
    pub reader_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        // Flushes of 400,000-800,000 readings under sustained load, not 100,000-400,000: a
        // flush dirties about one leaf per sensor in each index clustered by sensor (dedup
        // keys, chunks and summaries by sensor), whatever its size, so larger flushes write
        // fewer pages per reading (docs/benchmarks.md, session 7). Larger still (800k-1.6M)
        // wrote no less.
        // The age is 8 s, not 2 s: at 25,000-30,000 unary readings a second over 10,000
        // sensors a 2 s flush packed ~6 readings per chunk, and its CPU (a whole core for
        // a third of each flush period, taken from the ack path on a 2-core machine) set the
        // p99. 8 s halved the flush's CPU per reading (session 10). The idle trigger keeps
        // what the 2 s age gave a store whose load stops: its memtable empties within a
        // second, so scans after a load read chunks, not the memtable's series.
        SqliteOptions {
            flush_rows: 400_000,
            flush_age: Duration::from_secs(8),
            idle_flush_rows: 10_000,
            idle_flush_after: Duration::from_millis(500),
            flush_max_rows: 800_000,
            memtable_max_rows: 2_000_000,
            inline_flush_rows: 100_000,
            quarantine_max_rows: 100_000,
            quarantine_max_age: Duration::from_secs(7 * 24 * 3600),
            reader_connections: 4,
        }
    }
}

pub struct SqliteStore {
    directory: PathBuf,
    options: SqliteOptions,
    /// `audrey.db`: flushes, registry and token writes.
    writer: Mutex<Connection>,
    /// `landing.db`: the acknowledgement path.
    landing: Mutex<Connection>,
    /// `landing.db` for reading quarantine and counters, and for checkpoints.
    landing_reader: Mutex<Connection>,
    /// `audrey.db` for queries.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    memtable: RwLock<Memtable>,
    keys: RwLock<KeyFilter>,
    /// Every sensor's counters, and what `landing.db` still has to fold (counters.rs).
    counters: Mutex<counters::Counters>,
    /// One flush at a time.
    flushing: Mutex<()>,
    sensors: RwLock<crate::SensorCache>,
    last_quarantine_trim: Mutex<std::time::Instant>,
    /// Moves (after the commit, before the memtable forgets) whenever a flush or retention
    /// changes the chunks: a paused list walk continues only within one generation.
    layout_generation: AtomicU64,
    saved_walks: Mutex<scan::SavedWalks>,
}

pub(crate) const DATABASE_FILE: &str = "audrey.db";
pub(crate) const LANDING_FILE: &str = "landing.db";

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so a committed transaction survives power loss.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.pragma_update(None, "cache_size", -131_072)?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    // After a checkpoint the WAL file is cut back to this size instead of keeping its peak.
    connection.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

fn create_directory(directory: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(directory).map_err(|error| {
        StoreError::Unavailable(format!("cannot create {}: {error}", directory.display()))
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, applies migrations and reloads
    /// landed readings into memory.
    pub fn open(data_dir: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        create_directory(data_dir)?;
        let main_path = data_dir.join(DATABASE_FILE);
        let landing_path = data_dir.join(LANDING_FILE);
        let mut writer = open_connection(&main_path)?;
        schema::migrate(&mut writer, schema::MAIN)?;
        let mut landing = open_connection(&landing_path)?;
        schema::migrate(&mut landing, schema::LANDING)?;
        legacy::convert_readings(&mut writer)?;
        legacy::convert_landing(&mut landing, &writer)?;
        dedup::convert_reading_keys(&mut writer)?;
        summary::backfill(&mut writer)?;
        // Checkpoints of landing.db run on the maintenance thread, not on the ack path.
        landing.pragma_update(None, "wal_autocheckpoint", 0)?;
        let readers = (0..options.reader_connections.max(1))
            .map(|_| open_connection(&main_path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let memtable = Memtable::with_capacity(options.memtable_max_rows);
        let store = SqliteStore {
            directory: data_dir.to_path_buf(),
            options,
            writer: Mutex::new(writer),
            landing: Mutex::new(landing),
            landing_reader: Mutex::new(open_connection(&landing_path)?),
            readers,
            next_reader: AtomicUsize::new(0),
            memtable: RwLock::new(memtable),
            keys: RwLock::new(KeyFilter::default()),
            counters: Mutex::new(counters::Counters::default()),
            flushing: Mutex::new(()),
            sensors: RwLock::new(crate::SensorCache::default()),
            last_quarantine_trim: Mutex::new(std::time::Instant::now()),
            layout_generation: AtomicU64::new(0),
            saved_walks: Mutex::new(scan::SavedWalks::default()),
        };
        store.reload_sensor_cache()?;
        store.reload_memtable()?;
        store.reload_key_filter()?;
        Ok(store)
    }

    /// Applies migrations without starting anything; answers the schema version.
    pub fn migrate_only(data_dir: &Path) -> Result<usize, StoreError> {
        create_directory(data_dir)?;
        let mut main_connection = open_connection(&data_dir.join(DATABASE_FILE))?;
        let main = schema::migrate(&mut main_connection, schema::MAIN)?;
        let mut landing_connection = open_connection(&data_dir.join(LANDING_FILE))?;
        let landing = schema::migrate(&mut landing_connection, schema::LANDING)?;
        legacy::convert_readings(&mut main_connection)?;
        legacy::convert_landing(&mut landing_connection, &main_connection)?;
        dedup::convert_reading_keys(&mut main_connection)?;
        summary::backfill(&mut main_connection)?;
        Ok(main + landing)
    }

    pub fn schema_version() -> usize {
        schema::latest_version()
    }

    /// The `body` and `counters` of the `landing_batches` row the acknowledgement path writes
    /// for a group commit that accepted `readings` (no duplicates, no rejections), encoded
    /// exactly as it does. Only for `audrey bench raw-sqlite`, which measures SQLite's ceiling
    /// for these rows.
    pub fn encode_landing_row(
        readings: &[(audrey_model::ReadingId, audrey_model::ValidReading)],
    ) -> (Vec<u8>, Vec<u8>) {
        (
            encoding::encode_batch(readings.iter().map(|(id, reading)| (id, reading))),
            counters::encode_commit_deltas(&counters::FastMap::default()),
        )
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Readings landed but not yet packed into chunks.
    pub fn landed_rows(&self) -> usize {
        self.memtable
            .read()
            .map(|memtable| memtable.len())
            .unwrap_or(0)
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.writer.lock().map_err(poisoned)
    }

    fn landing(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.landing.lock().map_err(poisoned)
    }

    fn landing_reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.landing_reader.lock().map_err(poisoned)
    }

    /// A reader connection that is free now, or `None` when every one is busy.
    fn try_reader(&self) -> Option<MutexGuard<'_, Connection>> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        (0..self.readers.len()).find_map(|offset| {
            self.readers[(start + offset) % self.readers.len()]
                .try_lock()
                .ok()
        })
    }

    fn reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        // Try each reader once without waiting, then wait on one.
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.readers.len() {
            let index = (start + offset) % self.readers.len();
            if let Ok(guard) = self.readers[index].try_lock() {
                return Ok(guard);
            }
        }
        self.readers[start % self.readers.len()]
            .lock()
            .map_err(poisoned)
    }
}

pub(crate) fn poisoned<T>(_: T) -> StoreError {
    StoreError::Internal("lock poisoned".into())
}

impl crate::Store for SqliteStore {
    fn append(
        &self,
        batch: crate::AppendBatch,
        received_at: audrey_model::Millis,
    ) -> Result<Vec<crate::AppendOutcome>, StoreError> {
        self.append_batch(batch, received_at)
    }

    fn maintain(&self) -> Result<(), StoreError> {
        let now = audrey_model::Millis::now();
        self.flush_if_due(now)?;
        self.checkpoint_landing()?;
        let mut last_trim = self.last_quarantine_trim.lock().map_err(poisoned)?;
        if last_trim.elapsed() >= Duration::from_secs(60) {
            *last_trim = std::time::Instant::now();
            self.trim_quarantine(now)?;
        }
        Ok(())
    }

    fn ready(&self) -> Result<(), StoreError> {
        self.landing()?
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        self.writer()?.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }

    fn retain(&self, older_than: audrey_model::Millis, max_rows: usize) -> Result<u64, StoreError> {
        self.delete_read_before(older_than, max_rows)
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

    fn reading_without_waiting(
        &self,
        id: audrey_model::ReadingId,
    ) -> Option<Result<Option<audrey_model::Reading>, StoreError>> {
        self.get_reading_without_waiting(id)
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
