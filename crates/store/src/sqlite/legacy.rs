//! Conversion of the row-per-reading layout (schema version 4 and earlier) at open.
//!
//! `readings` rows (JSON `vals`) are packed into chunks in transactions of
//! [`CONVERT_ROWS`], each deleting the rows it packed, so an interrupted conversion resumes
//! where it stopped and never holds a reading in neither place (a reading in both is
//! packed once: ids already stored are skipped). `landing` rows become `landing_batches`
//! rows, one per received_at, in one transaction of `landing.db`; a landed row whose id is
//! already packed (a crash mid-flush under the old layout) is dropped instead. Empty old
//! tables are dropped.

use rusqlite::{Connection, Row, TransactionBehavior, params};

use audrey_model::{LocationId, MessageId, Millis, Reading, ReadingId, ReadingValues, SensorId};

use super::encoding::encode_batch;
use super::flush::write_chunks;
use crate::StoreError;

const CONVERT_ROWS: i64 = 100_000;
const LEGACY_COLUMNS: &str = "id, sensor_id, location_id, read_at, received_at, message_id, vals";

/// Whether `audrey.db` (or `landing.db`) has a table of this name.
pub(super) fn table_exists(connection: &Connection, table: &str) -> Result<bool, StoreError> {
    Ok(connection.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |row| row.get::<_, i64>(0),
    )? > 0)
}

fn legacy_reading(row: &Row<'_>, first: usize) -> rusqlite::Result<Reading> {
    let id: Vec<u8> = row.get(first)?;
    let sensor: String = row.get(first + 1)?;
    let location: String = row.get(first + 2)?;
    let message: Option<String> = row.get(first + 5)?;
    let values: String = row.get(first + 6)?;
    let corrupt = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            first,
            rusqlite::types::Type::Text,
            format!("legacy reading: {what}").into(),
        )
    };
    Ok(Reading {
        id: ReadingId(uuid::Uuid::from_slice(&id).map_err(|_| corrupt("reading id"))?),
        sensor_id: SensorId::parse(&sensor).map_err(|_| corrupt("sensor id"))?,
        location_id: LocationId::parse(&location).map_err(|_| corrupt("location id"))?,
        read_at: Millis(row.get(first + 3)?),
        received_at: Millis(row.get(first + 4)?),
        values: ReadingValues::from_json(&values).ok_or_else(|| corrupt("values"))?,
        message_id: message
            .map(|text| MessageId::parse(&text))
            .transpose()
            .map_err(|_| corrupt("message id"))?,
    })
}

/// Packs every row of the old `readings` table into chunks; answers how many it moved.
pub(super) fn convert_readings(main: &mut Connection) -> Result<usize, StoreError> {
    if !table_exists(main, "readings")? {
        return Ok(0);
    }
    let mut moved = 0;
    loop {
        let transaction = main.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (last_seq, rows) = {
            let mut select = transaction.prepare(&format!(
                "SELECT seq, {LEGACY_COLUMNS} FROM readings ORDER BY seq LIMIT ?1"
            ))?;
            let mut rows = select.query([CONVERT_ROWS])?;
            let mut readings = Vec::new();
            let mut last_seq = 0i64;
            while let Some(row) = rows.next()? {
                last_seq = row.get(0)?;
                readings.push(legacy_reading(row, 1)?);
            }
            (last_seq, readings)
        };
        if rows.is_empty() {
            transaction.execute_batch("DROP TABLE readings;")?;
            transaction.commit()?;
            if moved > 0 {
                tracing::info!(rows = moved, "converted stored readings into chunks");
            }
            return Ok(moved);
        }
        let references: Vec<&Reading> = rows.iter().collect();
        write_chunks(&transaction, &references, 0)?;
        transaction.execute("DELETE FROM readings WHERE seq <= ?1", [last_seq])?;
        transaction.commit()?;
        moved += rows.len();
        tracing::info!(rows = moved, "converting stored readings into chunks");
    }
}

/// Rewrites the old `landing` rows as binary batches; answers how many readings it kept.
pub(super) fn convert_landing(
    landing: &mut Connection,
    main: &Connection,
) -> Result<usize, StoreError> {
    if !table_exists(landing, "landing")? {
        return Ok(0);
    }
    let transaction = landing.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows = {
        let mut select = transaction.prepare(&format!(
            "SELECT {LEGACY_COLUMNS} FROM landing ORDER BY seq"
        ))?;
        let rows = select.query_map([], |row| legacy_reading(row, 0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut kept = Vec::with_capacity(rows.len());
    for reading in rows {
        if super::id_index::chunk_of(main, reading.id)?.is_none() {
            kept.push(reading);
        }
    }
    // One batch per group commit of the old layout: the rows of a commit share received_at.
    let mut start = 0;
    while start < kept.len() {
        let received_at = kept[start].received_at;
        let end = kept[start..]
            .iter()
            .position(|reading| reading.received_at != received_at)
            .map_or(kept.len(), |offset| start + offset);
        let batch: Vec<(ReadingId, audrey_model::ValidReading)> = kept[start..end]
            .iter()
            .map(|reading| {
                (
                    reading.id,
                    audrey_model::ValidReading {
                        sensor_id: reading.sensor_id.clone(),
                        location_id: reading.location_id.clone(),
                        read_at: reading.read_at,
                        values: reading.values.clone(),
                        message_id: reading.message_id.clone(),
                    },
                )
            })
            .collect();
        // No `counters`: these readings were counted when they landed; open converts such
        // rows (counters.rs, `repair_at_open`).
        transaction.execute(
            "INSERT INTO landing_batches (received_at, body) VALUES (?1, ?2)",
            params![
                received_at.0,
                encode_batch(batch.iter().map(|(id, reading)| (id, reading)))
            ],
        )?;
        start = end;
    }
    transaction.execute_batch("DROP TABLE landing;")?;
    transaction.commit()?;
    if !kept.is_empty() {
        tracing::info!(rows = kept.len(), "converted landed readings into batches");
    }
    Ok(kept.len())
}
