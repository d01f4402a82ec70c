//! Evaluating, at start, the committed readings a crash kept from the engine.
//!
//! The committer hands a batch to the engine after its readings are durable; the engine
//! writes its decisions for the batch later, in one act.db transaction that also records the
//! batch's reading ids (see `persistence/sqlite/evaluated.rs`). A crash in between leaves
//! readings in the store that no rule, health or quality check has seen. Before taking live
//! input, [`Engine::replay_unevaluated`] asks the store for readings by id from a little
//! before the highest id recorded (the watermark) and evaluates those not recorded.
//!
//! Why a margin below the watermark: reading ids are UUIDv7 minted when the store appends,
//! before the commit. With parallel committers (PostgreSQL) a batch with lower ids can commit
//! and reach the engine after one with higher ids; if the crash falls between, the lower batch
//! sits below the watermark. Any such batch minted its ids at most one commit duration before
//! the watermark's batch, so starting `replay_margin` below it (the margin bounding a commit)
//! finds it. Readings in that window that *were* evaluated are recognised by their recorded
//! ids and skipped, so replay never decides anything twice. Records older than twice the
//! margin below the watermark are forgotten by the tick.

use std::collections::HashSet;

use audrey_ingest::CommittedBatch;
use audrey_model::ReadingId;

use super::Engine;
use crate::ActError;

/// Readings fetched from the store per replay step (large: SQLite answers each page by also
/// scanning its memtable, which may hold a few hundred thousand rows).
const REPLAY_PAGE: usize = 10_000;

/// The smallest id minted at `millis` since the epoch (UUIDv7 keeps them in its first 48 bits).
pub(crate) fn first_id_at(millis: i64) -> ReadingId {
    let millis = millis.clamp(0, (1 << 48) - 1) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    ReadingId(uuid::Uuid::from_bytes(bytes))
}

/// When `id` was minted, in milliseconds since the epoch.
pub(crate) fn minted_at(id: ReadingId) -> i64 {
    let bytes = id.as_bytes();
    let mut millis = [0u8; 8];
    millis[2..].copy_from_slice(&bytes[..6]);
    i64::from_be_bytes(millis)
}

impl Engine {
    /// Evaluates every committed reading this act.db has no record of evaluating, in id order,
    /// as ordinary steps (each recorded, so a crash during replay resumes where it stopped).
    /// Call it once, after [`Engine::open`] and before the pipeline starts. Answers how many
    /// readings it evaluated.
    pub fn replay_unevaluated(&self) -> Result<usize, ActError> {
        let floor = self.store.replay_floor()?;
        let evaluated: HashSet<ReadingId> = self.store.evaluated_readings()?.into_iter().collect();
        let margin = self.options.replay_margin.as_millis() as i64;
        let start = match (evaluated.iter().max(), floor) {
            (Some(watermark), floor) => {
                let below = first_id_at(minted_at(*watermark) - margin);
                Some(floor.map_or(below, |floor| floor.max(below)))
            }
            (None, floor) => floor,
        };
        let Some(mut after) = start else {
            return Ok(0);
        };
        if let Some(watermark) = evaluated.iter().max() {
            self.lock()?.high_water = Some(*watermark);
        }
        let mut replayed = 0;
        loop {
            let page = self
                .registry
                .readings_after_id(Some(after), REPLAY_PAGE)
                .map_err(|error| {
                    ActError::Unavailable(format!("reading committed readings to replay: {error}"))
                })?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.id;
            let readings: Vec<_> = page
                .into_iter()
                .filter(|reading| !evaluated.contains(&reading.id))
                .collect();
            if readings.is_empty() {
                continue;
            }
            replayed += readings.len();
            let batch = CommittedBatch {
                readings,
                rejections: Vec::new(),
            };
            self.evaluate_batch(&batch, false)?;
        }
        if replayed > 0 {
            tracing::warn!(
                readings = replayed,
                "evaluated committed readings a crash had kept from the act engine"
            );
        }
        Ok(replayed)
    }

    /// Sets the replay floor the first time this act.db is used: readings stored before it
    /// were never this engine's to evaluate.
    pub(crate) fn ensure_replay_floor(&self) -> Result<(), ActError> {
        if self.store.replay_floor()?.is_none() {
            self.store
                .set_replay_floor(ReadingId(uuid::Uuid::now_v7()))?;
        }
        Ok(())
    }

    /// Forgets evaluation records no replay can reach any more.
    pub(crate) fn forget_old_evaluations(&self) -> Result<(), ActError> {
        let Some(high_water) = self.lock()?.high_water else {
            return Ok(());
        };
        let margin = self.options.replay_margin.as_millis() as i64;
        self.store
            .forget_evaluated_before(first_id_at(minted_at(high_water) - 2 * margin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_a_millisecond_sorts_below_every_id_minted_in_it_and_after() {
        let id = ReadingId(uuid::Uuid::now_v7());
        let millis = minted_at(id);
        assert!(first_id_at(millis) < id);
        assert!(first_id_at(millis + 1) > id);
        assert_eq!(minted_at(first_id_at(millis)), millis);
    }
}
