//! The storage ceiling: how fast SQLite alone appends to the server's acknowledgement table.
//!
//! This is the number the HTTP ingest benchmark should be read against. It writes the rows the
//! server writes on its acknowledgement path with the same durability (WAL,
//! `synchronous=FULL`), in-process and without HTTP, parsing, validation or dedup. Two layouts:
//!
//! - [`RawLayout::Batch`] (the default, what the server does today): one `landing_batches` row
//!   per transaction, its `body` and `counters` encoded by the store's own encoder
//!   ([`audrey_store::SqliteStore::encode_landing_row`]), the encoding timed with the insert as
//!   it is on the ack path.
//! - [`RawLayout::Row`] (the layout before the chunked one, kept for comparison): one `landing`
//!   row per reading with the values as JSON text.
//!
//! The tables are declared here; a copy that drifts from the server's is caught by comparing
//! the two numbers, which is the point of having both.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, ensure};
use rusqlite::{Connection, params};

use audrey_model::{
    LocationId, MessageId, MetricName, Millis, ReadingId, ReadingValues, SensorId, ValidReading,
};
use audrey_store::SqliteStore;

use crate::bench::report::{BenchReport, Tally};
use crate::bench::{bench_location_id, bench_sensor_id};
use crate::clock::wall_clock_ms;

/// Which acknowledgement-path table the raw bench fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawLayout {
    /// One binary `landing_batches` row per transaction (the current server).
    Batch,
    /// One `landing` row per reading, values as JSON (the old server).
    Row,
}

impl RawLayout {
    pub fn parse(text: &str) -> anyhow::Result<RawLayout> {
        match text {
            "batch" => Ok(RawLayout::Batch),
            "row" => Ok(RawLayout::Row),
            other => anyhow::bail!("unknown layout {other:?}: use batch or row"),
        }
    }
}

const DATABASE_FILE: &str = "raw-landing-bench.sqlite";

/// Must match the server's `landing_batches` table (landing.db migrations 2 and 3).
const CREATE_BATCHES: &str = "CREATE TABLE landing_batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
    received_at INTEGER NOT NULL, body BLOB NOT NULL, counters BLOB)";

const INSERT_BATCH: &str =
    "INSERT INTO landing_batches (received_at, body, counters) VALUES (?1, ?2, ?3)";

/// Must match the old server's `landing` table column for column.
const CREATE_LANDING: &str = "CREATE TABLE landing (seq INTEGER PRIMARY KEY, id BLOB NOT NULL, \
    sensor_id TEXT NOT NULL, location_id TEXT NOT NULL, read_at INTEGER NOT NULL, \
    received_at INTEGER NOT NULL, message_id TEXT, vals TEXT NOT NULL)";

const INSERT_LANDING: &str = "INSERT INTO landing \
    (id, sensor_id, location_id, read_at, received_at, message_id, vals) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// One row, fully built before the clock starts.
struct LandingRow {
    id: [u8; 16],
    sensor_id: String,
    location_id: String,
    read_at: i64,
    received_at: i64,
    message_id: String,
    vals: String,
}

/// Appends `rows` rows to a fresh database in `dir`, committing every `rows_per_transaction`
/// rows, and reports rows per second; each transaction's insert-and-commit time goes into the
/// latency columns. The database files are removed afterwards; `dir` must already exist.
pub fn bench_raw_sqlite(
    dir: &Path,
    rows: u64,
    sensors: usize,
    rows_per_transaction: usize,
    layout: RawLayout,
) -> anyhow::Result<BenchReport> {
    ensure!(rows > 0, "there must be at least one row to write");
    ensure!(sensors > 0, "at least one sensor is needed");
    ensure!(
        rows_per_transaction > 0,
        "a transaction must hold at least one row"
    );
    let path = dir.join(DATABASE_FILE);
    remove_database(&path)?;
    let result = run(&path, rows, sensors, rows_per_transaction, layout);
    // Leave no multi-gigabyte leftovers, whether or not the run worked.
    let cleanup = remove_database(&path);
    let report = result?;
    cleanup?;
    Ok(report)
}

fn run(
    path: &Path,
    rows: u64,
    sensors: usize,
    rows_per_transaction: usize,
    layout: RawLayout,
) -> anyhow::Result<BenchReport> {
    let connection =
        Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    let journal_mode: String =
        connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    ensure!(
        journal_mode.eq_ignore_ascii_case("wal"),
        "SQLite refused WAL mode ({journal_mode})"
    );
    connection.pragma_update(None, "synchronous", "FULL")?;
    match layout {
        RawLayout::Batch => insert_batches(connection, rows, sensors, rows_per_transaction),
        RawLayout::Row => insert_rows(connection, rows, sensors, rows_per_transaction),
    }
}

/// One `landing_batches` row per transaction, encoded inside the clock as the ack path does.
fn insert_batches(
    mut connection: Connection,
    rows: u64,
    sensors: usize,
    rows_per_transaction: usize,
) -> anyhow::Result<BenchReport> {
    connection.execute(CREATE_BATCHES, [])?;
    let readings = build_readings(rows, sensors)?;
    let received_at = wall_clock_ms();
    timed_transactions(
        &mut connection,
        &readings,
        rows_per_transaction,
        |transaction, chunk| {
            let (body, counters) = SqliteStore::encode_landing_row(chunk);
            transaction.prepare_cached(INSERT_BATCH)?.execute(params![
                received_at,
                body,
                counters
            ])?;
            Ok(())
        },
    )
}

/// Commits `items` in transactions of `rows_per_transaction`, each written by `write`, and
/// reports the rate and each transaction's latency (write and commit inside the clock).
fn timed_transactions<T>(
    connection: &mut Connection,
    items: &[T],
    rows_per_transaction: usize,
    mut write: impl FnMut(&rusqlite::Transaction<'_>, &[T]) -> anyhow::Result<()>,
) -> anyhow::Result<BenchReport> {
    let mut tally = Tally::new()?;
    let started = Instant::now();
    for chunk in items.chunks(rows_per_transaction) {
        let transaction_started = Instant::now();
        let transaction = connection.transaction()?;
        write(&transaction, chunk)?;
        transaction.commit()?;
        tally.record_latency(transaction_started.elapsed());
        tally.requests += 1;
        tally.readings += chunk.len() as u64;
    }
    let elapsed = started.elapsed();
    Ok(tally.into_report("raw-sqlite", 1, elapsed, None))
}

/// One `landing` row per reading (the layout before binary batches).
fn insert_rows(
    mut connection: Connection,
    rows: u64,
    sensors: usize,
    rows_per_transaction: usize,
) -> anyhow::Result<BenchReport> {
    connection.execute(CREATE_LANDING, [])?;
    let landing_rows = build_rows(rows, sensors);
    timed_transactions(
        &mut connection,
        &landing_rows,
        rows_per_transaction,
        |transaction, chunk| {
            let mut insert = transaction.prepare_cached(INSERT_LANDING)?;
            for row in chunk {
                insert.execute(params![
                    &row.id[..],
                    row.sensor_id,
                    row.location_id,
                    row.read_at,
                    row.received_at,
                    row.message_id,
                    row.vals,
                ])?;
            }
            Ok(())
        },
    )
}

/// The same readings as [`build_rows`], as the validated values the ack path encodes.
fn build_readings(rows: u64, sensors: usize) -> anyhow::Result<Vec<(ReadingId, ValidReading)>> {
    let invalid = |error: audrey_model::FieldError| anyhow::anyhow!("{error:?}");
    let sensor_ids = (0..sensors)
        .map(|index| SensorId::parse(&bench_sensor_id(index)).map_err(invalid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let location_ids = (0..sensors)
        .map(|index| LocationId::parse(&bench_location_id(index)).map_err(invalid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let humidity_name = MetricName::parse_interned("humidity").map_err(invalid)?;
    let temperature_name = MetricName::parse_interned("temperature").map_err(invalid)?;
    let now_ms = wall_clock_ms();
    (0..rows)
        .map(|index| {
            let sensor = (index % sensors as u64) as usize;
            let humidity = 30.0 + (index * 53 % 4000) as f64 / 100.0;
            let temperature = 15.0 + (index * 37 % 2000) as f64 / 100.0;
            let message = MessageId::parse(&format!("raw-{now_ms:x}-{index}")).map_err(invalid)?;
            Ok((
                ReadingId(uuid::Uuid::now_v7()),
                ValidReading {
                    sensor_id: sensor_ids[sensor].clone(),
                    location_id: location_ids[sensor].clone(),
                    read_at: Millis(now_ms - rows as i64 + index as i64),
                    values: ReadingValues(vec![
                        (humidity_name.clone(), humidity),
                        (temperature_name.clone(), temperature),
                    ]),
                    message_id: Some(message),
                },
            ))
        })
        .collect()
}

/// Rows shaped like the server's: a UUIDv7 id, sensors interleaved, read_at one millisecond
/// apart in the past, a message id and the values as sorted JSON text.
fn build_rows(rows: u64, sensors: usize) -> Vec<LandingRow> {
    let now_ms = wall_clock_ms();
    let sensor_ids: Vec<String> = (0..sensors).map(bench_sensor_id).collect();
    let location_ids: Vec<String> = (0..sensors).map(bench_location_id).collect();
    (0..rows)
        .map(|index| {
            let sensor = (index % sensors as u64) as usize;
            let humidity = 30.0 + (index * 53 % 4000) as f64 / 100.0;
            let temperature = 15.0 + (index * 37 % 2000) as f64 / 100.0;
            LandingRow {
                id: uuid::Uuid::now_v7().into_bytes(),
                sensor_id: sensor_ids[sensor].clone(),
                location_id: location_ids[sensor].clone(),
                read_at: now_ms - rows as i64 + index as i64,
                received_at: now_ms,
                message_id: format!("raw-{now_ms:x}-{index}"),
                vals: format!(r#"{{"humidity":{humidity:?},"temperature":{temperature:?}}}"#),
            }
        })
        .collect()
}

fn remove_database(path: &Path) -> anyhow::Result<()> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for file in [path.to_path_buf(), PathBuf::from(wal), PathBuf::from(shm)] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("removing {}", file.display()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_interleave_sensors_and_carry_sorted_json_values() {
        let rows = build_rows(5, 2);
        assert_eq!(rows[0].sensor_id, "bench-00000");
        assert_eq!(rows[1].sensor_id, "bench-00001");
        assert_eq!(rows[2].sensor_id, "bench-00000");
        let values: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&rows[3].vals).unwrap();
        let names: Vec<&String> = values.keys().collect();
        assert_eq!(names, ["humidity", "temperature"]);
        assert!(
            rows.windows(2)
                .all(|pair| pair[0].read_at < pair[1].read_at)
        );
        assert_ne!(rows[0].id, rows[1].id);
    }

    #[test]
    fn a_small_run_writes_every_row_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        for layout in [RawLayout::Batch, RawLayout::Row] {
            let report = bench_raw_sqlite(dir.path(), 250, 10, 100, layout).unwrap();
            assert_eq!(
                (report.readings, report.requests, report.errors),
                (250, 3, 0),
                "{layout:?}"
            );
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}
