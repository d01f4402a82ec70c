//! The PostgreSQL ceiling: one client writing the bench rows with a single binary `COPY` into
//! the readings table of Audrey's schema, and a fast COPY preload for query benchmarks.
//!
//! The rows are the ones the HTTP ingest benchmark sends (same sensors, locations, spacing
//! and values), written as the server stores them. The table's column list is declared here
//! rather than taken from the store crate on purpose, as for the SQLite ceiling: the load
//! generator must not link the server's internals; the schema itself comes from Audrey's own
//! migrations, run by the caller on the scratch database before this writes to it.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::bench::report::{BenchReport, Tally};
use crate::bench::{bench_location_id, bench_sensor_id};
use crate::clock::wall_clock_ms;

const COPY_READINGS: &str = "COPY readings (id, sensor_id, location_id, read_at, received_at, \
    message_id, vals) FROM STDIN (FORMAT binary)";
const COPY_TYPES: [Type; 7] = [
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
];
/// The HTTP ingest benchmark's readings end this long before the run.
const READ_AT_MARGIN_MS: i64 = 60_000;

/// A database created for one benchmark run and dropped by [`ScratchDatabase::drop_now`].
pub struct ScratchDatabase {
    admin_url: String,
    pub name: String,
    /// The URL of the scratch database itself.
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create(admin_url: &str, label: &str) -> anyhow::Result<ScratchDatabase> {
        let name = format!("audrey_bench_{label}_{}", std::process::id());
        execute(
            admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        execute(admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(ScratchDatabase {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
        })
    }

    pub async fn drop_now(self) -> anyhow::Result<()> {
        execute(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
    }
}

/// The same server URL pointing at another database.
fn with_database(url: &str, database: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = without_query.find("://").map_or(0, |at| at + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    format!("{base}/{database}{query}")
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {}", with_database(url, "…")))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("bench PostgreSQL connection ended: {error}");
        }
    });
    Ok(client)
}

async fn execute(url: &str, statement: &str) -> anyhow::Result<()> {
    connect(url)
        .await?
        .batch_execute(statement)
        .await
        .with_context(|| statement.to_string())
}

/// One reading as the server stores it.
struct Row {
    id: uuid::Uuid,
    sensor: String,
    location: String,
    read_at: i64,
    vals: String,
}

fn bench_row(index: u64, sensors: usize, read_at: i64) -> Row {
    let sensor_index = (index % sensors as u64) as usize;
    // The values of the HTTP benchmark, in the sorted-name JSON the store writes.
    let temperature = 15.0 + (index * 37 % 2000) as f64 / 100.0;
    let humidity = 30.0 + (index * 53 % 4000) as f64 / 100.0;
    Row {
        id: uuid::Uuid::now_v7(),
        sensor: bench_sensor_id(sensor_index),
        location: bench_location_id(sensor_index),
        read_at,
        vals: format!("{{\"humidity\":{humidity},\"temperature\":{temperature}}}"),
    }
}

async fn copy_rows(
    client: &mut tokio_postgres::Client,
    rows: &[Row],
    received_at: i64,
) -> anyhow::Result<()> {
    let transaction = client.transaction().await?;
    let sink = transaction.copy_in(COPY_READINGS).await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    let no_message: Option<&str> = None;
    for row in rows {
        let values: [&(dyn ToSql + Sync); 7] = [
            &row.id,
            &row.sensor,
            &row.location,
            &row.read_at,
            &received_at,
            &no_message,
            &row.vals,
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    transaction.commit().await?;
    Ok(())
}

/// Writes `rows` bench rows with one COPY in one transaction from one client; the clock covers
/// the COPY and the durable commit, not building the rows.
pub async fn bench_raw_postgres_copy(
    url: &str,
    rows: u64,
    sensors: usize,
) -> anyhow::Result<BenchReport> {
    ensure!(
        rows > 0 && sensors > 0,
        "rows and sensors must be at least 1"
    );
    let now = wall_clock_ms();
    let first_read_at = now - READ_AT_MARGIN_MS - rows as i64;
    let built: Vec<Row> = (0..rows)
        .map(|index| bench_row(index, sensors, first_read_at + index as i64))
        .collect();
    let mut client = connect(url).await?;
    let started = Instant::now();
    copy_rows(&mut client, &built, now).await?;
    let elapsed = started.elapsed();
    let mut tally = Tally::new()?;
    tally.requests = 1;
    tally.readings = rows;
    tally.record_latency(elapsed);
    Ok(tally.into_report("raw-postgres-copy", 1, elapsed, None))
}

/// Fills the readings table with `rows` bench rows spread evenly over the `days` days before
/// now, in transactions of a million rows, then analyzes it. The partitions for those days
/// must exist. Answers how long it took.
pub async fn preload_postgres_copy(
    url: &str,
    rows: u64,
    sensors: usize,
    days: u32,
) -> anyhow::Result<Duration> {
    ensure!(
        rows > 0 && sensors > 0 && days > 0,
        "rows, sensors and days must be at least 1"
    );
    const CHUNK: u64 = 1_000_000;
    let now = wall_clock_ms();
    let span = i64::from(days) * 86_400_000 - READ_AT_MARGIN_MS;
    let first_read_at = now - READ_AT_MARGIN_MS - span;
    let step = span / rows as i64;
    let mut client = connect(url).await?;
    let started = Instant::now();
    let mut done = 0;
    while done < rows {
        let end = (done + CHUNK).min(rows);
        let chunk: Vec<Row> = (done..end)
            .map(|index| bench_row(index, sensors, first_read_at + index as i64 * step.max(1)))
            .collect();
        copy_rows(&mut client, &chunk, now).await?;
        done = end;
        eprintln!("preloaded {done} of {rows} rows");
    }
    client.batch_execute("ANALYZE readings").await?;
    Ok(started.elapsed())
}
