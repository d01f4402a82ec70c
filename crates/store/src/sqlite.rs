//! The embedded store: one SQLite database file in the data directory.
//!
//! Layout and durability (docs/architecture.md has the long form):
//! - The acknowledgement path appends to `landing`, a table with no secondary index, in one
//!   transaction per group commit. The database runs in WAL mode with `synchronous=FULL`, so
//!   `COMMIT` returns only after the WAL is fsynced: an acknowledged reading is on disk.
//! - Every landed row is mirrored in the [`memtable`](memtable::Memtable), which answers
//!   queries and dedup checks for rows not yet flushed.
//! - A flush moves the oldest landed rows into `readings` (indexed by id, by sensor and time,
//!   by location and time, by time, and by dedup key) sorted by sensor, and deletes them from
//!   `landing`, in one transaction. Large sorted batches touch each index page once per batch
//!   instead of once per commit, which is what keeps ingest fast with many interleaved sensors.
//! - On open, `landing` is read back into the memtable: a crash loses nothing that committed.

mod memtable;
mod readings;
mod registry;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rusqlite::Connection;

use audrey_model::Sensor;

use crate::StoreError;
use memtable::Memtable;

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// A flush starts when this many rows have landed...
    pub flush_rows: usize,
    /// ...or when the oldest landed row is this old.
    pub flush_age: Duration,
    /// The most rows one flush moves.
    pub flush_max_rows: usize,
    /// Landed rows above this make `append` flush before it commits (backpressure).
    pub memtable_max_rows: usize,
    pub quarantine_max_rows: usize,
    pub quarantine_max_age: Duration,
    pub reader_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            flush_rows: 50_000,
            flush_age: Duration::from_secs(2),
            flush_max_rows: 200_000,
            memtable_max_rows: 600_000,
            quarantine_max_rows: 100_000,
            quarantine_max_age: Duration::from_secs(7 * 24 * 3600),
            reader_connections: 4,
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    memtable: RwLock<Memtable>,
    sensors: RwLock<HashMap<Arc<str>, Arc<Sensor>>>,
    last_quarantine_trim: Mutex<std::time::Instant>,
}

pub(crate) const DATABASE_FILE: &str = "audrey.db";

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so a committed transaction survives power loss.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.pragma_update(None, "cache_size", -65_536)?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, applies migrations and reloads
    /// landed readings into memory.
    pub fn open(data_dir: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", data_dir.display()))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut writer = open_connection(&path)?;
        schema::migrate(&mut writer)?;
        let readers = (0..options.reader_connections.max(1))
            .map(|_| open_connection(&path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let store = SqliteStore {
            path,
            options,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            memtable: RwLock::new(Memtable::default()),
            sensors: RwLock::new(HashMap::new()),
            last_quarantine_trim: Mutex::new(std::time::Instant::now()),
        };
        store.reload_sensor_cache()?;
        store.reload_memtable()?;
        Ok(store)
    }

    /// Applies migrations without starting anything; answers the schema version.
    pub fn migrate_only(data_dir: &Path) -> Result<usize, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", data_dir.display()))
        })?;
        let mut connection = open_connection(&data_dir.join(DATABASE_FILE))?;
        schema::migrate(&mut connection)
    }

    pub fn schema_version() -> usize {
        schema::latest_version()
    }

    pub fn database_path(&self) -> &Path {
        &self.path
    }

    /// Rows landed but not yet flushed into the indexed layout.
    pub fn landed_rows(&self) -> usize {
        self.memtable
            .read()
            .map(|memtable| memtable.len())
            .unwrap_or(0)
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.writer
            .lock()
            .map_err(|_| StoreError::Internal("writer lock poisoned".into()))
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
            .map_err(|_| StoreError::Internal("reader lock poisoned".into()))
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
        let mut last_trim = self.last_quarantine_trim.lock().map_err(poisoned)?;
        if last_trim.elapsed() >= Duration::from_secs(60) {
            *last_trim = std::time::Instant::now();
            self.trim_quarantine(now)?;
        }
        Ok(())
    }

    fn ready(&self) -> Result<(), StoreError> {
        let writer = self.writer()?;
        writer.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }

    fn reading(
        &self,
        id: audrey_model::ReadingId,
    ) -> Result<Option<audrey_model::Reading>, StoreError> {
        self.get_reading(id)
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

    fn cached_sensor(&self, id: &str) -> Option<Arc<Sensor>> {
        self.cached(id)
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
}
