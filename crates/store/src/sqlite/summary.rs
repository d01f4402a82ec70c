//! Per-chunk, per-metric summaries: what statistics and hour/day buckets without
//! percentiles read instead of decoding a chunk's values.
//!
//! For every chunk and every metric present in it, `chunk_summaries` holds one row: the
//! chunk's owner and time bounds (copied, so a summary scan never touches `chunks`), and
//! `count`, `min`, `max`, `sum`, `mean` and `m2` (the sum of squared deviations from the
//! mean) of the metric's values. They are folded by [`Collector::push`] over the values in
//! the chunk's own order, `(read_at, id)` — exactly what the decode path folds for a chunk —
//! and written in the transaction that writes the chunk: at flush, at the conversion of the
//! row-per-reading layout, and when retention rewrites a chunk it cuts through. Chunks
//! written before summaries existed get them at open ([`backfill`]).
//!
//! Invariant: a chunk has a summary row for metric `m` exactly when some reading in it has
//! `m`, and that row describes all of the chunk's values of `m`.
//!
//! Answers are merged per chunk in chunk-number order on both paths (summaries and decoded
//! values), with Chan's parallel update for mean and `m2`; the same chunk folded by either
//! path gives the same bits, so an answer does not depend on which path a chunk took.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use audrey_model::Reading;

use super::encoding::decode_chunk;
use super::readings::parse_chunk_owner;
use crate::StoreError;
pub(crate) use crate::fold::Collector;

/// How many chunks one backfill transaction summarises.
const BACKFILL_CHUNKS: i64 = 2_000;

/// Reads a summary row back into a [`Collector`] (see [`crate::fold`]).
pub(crate) fn collector_from_row(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<Collector> {
    Ok(Collector::from_parts(
        row.get::<_, i64>(first)? as u64,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
        row.get(first + 5)?,
        None,
    ))
}

/// The owner and bounds of a chunk, as its summary rows repeat them.
pub(crate) struct ChunkOwner<'a> {
    pub chunk: i64,
    pub sensor_id: &'a str,
    pub location_id: &'a str,
    pub flushed_through: i64,
}

/// Writes the summary rows of a chunk that has none (a new chunk, or one whose rows
/// [`forget_summaries`] removed) from `readings`, the chunk's readings in `(read_at, id)`
/// order.
pub(crate) fn write_summaries(
    transaction: &Transaction<'_>,
    owner: &ChunkOwner<'_>,
    readings: &[&Reading],
) -> Result<(), StoreError> {
    debug_assert!(!readings.is_empty());
    let mut metrics: BTreeMap<&str, Collector> = BTreeMap::new();
    for reading in readings {
        for (metric, value) in &reading.values.0 {
            metrics
                .entry(metric.as_str())
                .or_insert_with(|| Collector::new(false))
                .push(*value);
        }
    }
    let mut insert = transaction.prepare_cached(
        "INSERT INTO chunk_summaries (metric, min_read_at, chunk, max_read_at, sensor_id,
            location_id, flushed_through, count, min, max, sum, mean, m2)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let (first, last) = (
        readings[0].read_at.0,
        readings[readings.len() - 1].read_at.0,
    );
    for (metric, collector) in metrics {
        insert.execute(params![
            metric,
            first,
            owner.chunk,
            last,
            owner.sensor_id,
            owner.location_id,
            owner.flushed_through,
            collector.count as i64,
            collector.min,
            collector.max,
            collector.sum,
            collector.mean,
            collector.squares,
        ])?;
    }
    Ok(())
}

/// Removes a chunk's summary rows (it is deleted or about to be rewritten).
pub(crate) fn forget_summaries(
    transaction: &Transaction<'_>,
    chunk: i64,
) -> Result<(), StoreError> {
    transaction
        .prepare_cached("DELETE FROM chunk_summaries WHERE chunk = ?1")?
        .execute([chunk])?;
    Ok(())
}

/// Summarises the chunks that existed when the summaries' migration ran, a batch per
/// transaction (an interrupted backfill resumes where it stopped); then forgets the task.
pub(crate) fn backfill(main: &mut Connection) -> Result<usize, StoreError> {
    let mut summarised = 0;
    loop {
        let transaction = main.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let task: Option<(i64, i64)> = transaction
            .query_row(
                "SELECT done_through, last_chunk FROM summary_backfill WHERE singleton = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map(Some)
            .or_else(|error| match error {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })?;
        let Some((done_through, last_chunk)) = task else {
            return Ok(summarised);
        };
        let chunks: Vec<(i64, String, String, i64, Vec<u8>)> = {
            let mut select = transaction.prepare(
                "SELECT chunk, sensor_id, location_id, flushed_through, body FROM chunks
                 WHERE chunk > ?1 AND chunk <= ?2 ORDER BY chunk LIMIT ?3",
            )?;
            let rows =
                select.query_map(params![done_through, last_chunk, BACKFILL_CHUNKS], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })?;
            rows.collect::<Result<_, _>>()?
        };
        let Some(last_done) = chunks.last().map(|chunk| chunk.0) else {
            transaction.execute("DELETE FROM summary_backfill", [])?;
            transaction.commit()?;
            if summarised > 0 {
                tracing::info!(chunks = summarised, "summarised stored chunks");
            }
            return Ok(summarised);
        };
        for (chunk, sensor, location, flushed_through, body) in &chunks {
            let (sensor_id, location_id) = parse_chunk_owner(sensor, location)?;
            let readings = decode_chunk(body, &sensor_id, &location_id)?;
            let readings: Vec<&Reading> = readings.iter().collect();
            write_summaries(
                &transaction,
                &ChunkOwner {
                    chunk: *chunk,
                    sensor_id: sensor,
                    location_id: location,
                    flushed_through: *flushed_through,
                },
                &readings,
            )?;
        }
        transaction.execute("UPDATE summary_backfill SET done_through = ?1", [last_done])?;
        transaction.commit()?;
        summarised += chunks.len();
    }
}
