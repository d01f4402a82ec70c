//! Per-sensor counters (accepted, duplicate, rejected) without a write per sensor per commit.
//!
//! Durable state:
//!
//! > true counters = `sensor_counters` of `audrey.db` + Σ over the rows of `landing_batches`
//! > with a seq above `flush_state.landed_through` of (the readings in `body`, counted as
//! > accepted per sensor, and the duplicate and rejected counts in the row's `counters` blob).
//!
//! A group commit only inserts its landing row (one B-tree insert however many sensors it
//! touched; a commit of nothing but duplicates or rejections writes a row with an empty
//! body). A flush folds the counts of the batches it packs into `sensor_counters` in the same
//! `audrey.db` transaction that packs them and moves `landed_through` past them, so every
//! count is in exactly one of the two places at every commit, and a SIGKILL anywhere leaves
//! the sum right. The landing trim after it only deletes; a crash before the trim leaves rows
//! at or below `landed_through`, which open deletes without counting them again.
//!
//! The fold used to be part of the landing trim, in `landing.db`. There it held the landing
//! connection, and with it every acknowledgement, for 7-12 ms per flush when 10,000 sensors
//! shared one (an upsert per sensor); in `audrey.db` it only makes the flush longer. Stores
//! from before main migration 8 keep their counters in `landing.db`: open finishes their
//! fold there, then moves the table's rows into `audrey.db` once, with a flag in the same
//! transaction ([`repair_at_open`]).
//!
//! Rows written before landing migration 3 have a NULL `counters` column: their readings were
//! counted in `sensor_counters` when committed. Open converts them (subtracts their accepted
//! readings, sets an empty blob) in one transaction, so the sum above holds for every row.
//! Such rows only exist in stores that predate the move, so the conversion runs in
//! `landing.db`, before it.
//!
//! In memory, [`Counters`] holds every sensor's true counters (queries read only that) and the
//! duplicate and rejected deltas of the landed batches by seq, which the fold needs; the
//! accepted part of a fold comes from the flushed readings themselves.

use std::collections::VecDeque;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use audrey_model::{Millis, Reading, SensorId};

use super::encoding::{decode_batch, encode_counter_deltas, for_each_counter_delta};
use crate::{SensorCounters, StoreError};

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CounterDelta {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

impl CounterDelta {
    fn add(&mut self, other: CounterDelta) {
        self.accepted += other.accepted;
        self.duplicate += other.duplicate;
        self.rejected += other.rejected;
    }
}

/// The landing row's `counters` blob for one commit's deltas: duplicates and rejections only.
pub(crate) fn encode_commit_deltas(deltas: &FastMap<SensorId, CounterDelta>) -> Vec<u8> {
    let entries: Vec<(&str, u64, u64)> = deltas
        .iter()
        .filter(|(_, delta)| delta.duplicate > 0 || delta.rejected > 0)
        .map(|(sensor, delta)| (sensor.as_str(), delta.duplicate, delta.rejected))
        .collect();
    encode_counter_deltas(entries.into_iter())
}

/// A sensor's duplicates and rejections in one landed batch.
type Unfolded = (SensorId, u64, u64);

#[derive(Default)]
pub(crate) struct Counters {
    totals: FastMap<SensorId, CounterDelta>,
    /// `(landing seq, [(sensor, duplicate, rejected)])` of landed batches that have any.
    unfolded: VecDeque<(i64, Vec<Unfolded>)>,
}

impl Counters {
    pub fn get(&self, sensor: &SensorId) -> SensorCounters {
        let total = self.totals.get(sensor).copied().unwrap_or_default();
        SensorCounters {
            accepted: total.accepted,
            duplicate: total.duplicate,
            rejected: total.rejected,
        }
    }

    /// Counts one committed group commit (landing seq `seq`).
    pub fn add_commit(&mut self, seq: i64, deltas: FastMap<SensorId, CounterDelta>) {
        let mut unfolded = Vec::new();
        for (sensor, delta) in deltas {
            if delta.duplicate > 0 || delta.rejected > 0 {
                unfolded.push((sensor.clone(), delta.duplicate, delta.rejected));
            }
            self.totals.entry(sensor).or_default().add(delta);
        }
        if !unfolded.is_empty() {
            debug_assert!(self.unfolded.back().is_none_or(|(last, _)| *last < seq));
            self.unfolded.push_back((seq, unfolded));
        }
    }

    /// The duplicate and rejected deltas of landed batches with seq ≤ `up_to`.
    pub fn unfolded_through(&self, up_to: i64, into: &mut FastMap<SensorId, CounterDelta>) {
        for (_, entries) in self.unfolded.iter().take_while(|(seq, _)| *seq <= up_to) {
            for (sensor, duplicate, rejected) in entries {
                into.entry(sensor.clone()).or_default().add(CounterDelta {
                    accepted: 0,
                    duplicate: *duplicate,
                    rejected: *rejected,
                });
            }
        }
    }

    /// Forgets the deltas of batches with seq ≤ `up_to`: a flush folded them into
    /// `sensor_counters`.
    pub fn forget_through(&mut self, up_to: i64) {
        while self.unfolded.front().is_some_and(|(seq, _)| *seq <= up_to) {
            self.unfolded.pop_front();
        }
    }
}

/// Accepted readings per sensor of `readings`, added to `into`.
pub(crate) fn count_accepted<'r>(
    readings: impl IntoIterator<Item = &'r Reading>,
    into: &mut FastMap<SensorId, CounterDelta>,
) {
    for reading in readings {
        into.entry(reading.sensor_id.clone()).or_default().accepted += 1;
    }
}

/// Adds `deltas` to `sensor_counters`, in sensor order so each B-tree page is visited once: a
/// flush's counts in its own `audrey.db` transaction, or at open the fold and move of a store
/// from before main migration 8.
pub(crate) fn fold(
    transaction: &Transaction<'_>,
    deltas: &FastMap<SensorId, CounterDelta>,
) -> Result<(), StoreError> {
    let mut upsert = transaction.prepare_cached(
        "INSERT INTO sensor_counters (sensor_id, accepted, duplicate, rejected)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(sensor_id) DO UPDATE SET accepted = accepted + ?2,
            duplicate = duplicate + ?3, rejected = rejected + ?4",
    )?;
    for (sensor, delta) in sorted(deltas) {
        upsert.execute(params![
            sensor.as_str(),
            delta.accepted as i64,
            delta.duplicate as i64,
            delta.rejected as i64
        ])?;
    }
    Ok(())
}

/// Takes back accepted readings counted at commit (rows landed before migration 3). Never
/// below zero: a counter that was never written (a hand-made or damaged store) stays absent.
fn take_back_accepted(
    transaction: &Transaction<'_>,
    deltas: &FastMap<SensorId, CounterDelta>,
) -> Result<(), StoreError> {
    let mut update = transaction.prepare_cached(
        "UPDATE sensor_counters SET accepted = MAX(accepted - ?2, 0) WHERE sensor_id = ?1",
    )?;
    for (sensor, delta) in sorted(deltas) {
        update.execute(params![sensor.as_str(), delta.accepted as i64])?;
    }
    Ok(())
}

fn sorted(deltas: &FastMap<SensorId, CounterDelta>) -> Vec<(&SensorId, &CounterDelta)> {
    let mut sorted: Vec<_> = deltas.iter().collect();
    sorted.sort_unstable_by(|left, right| left.0.cmp(right.0));
    sorted
}

/// Deletes the landing batches with seq ≤ `up_to`, which a flush packed and counted.
pub(crate) fn trim(landing: &Connection, up_to: i64) -> Result<usize, StoreError> {
    Ok(landing.execute("DELETE FROM landing_batches WHERE seq <= ?1", [up_to])?)
}

/// Adds the duplicate and rejected counts of a landing row's `counters` blob to `into`.
fn add_blob(counters: &[u8], into: &mut FastMap<SensorId, CounterDelta>) -> Result<(), StoreError> {
    let mut bad_sensor = false;
    for_each_counter_delta(
        counters,
        |sensor, duplicate, rejected| match SensorId::parse(sensor) {
            Ok(sensor) => into.entry(sensor).or_default().add(CounterDelta {
                accepted: 0,
                duplicate,
                rejected,
            }),
            Err(_) => bad_sensor = true,
        },
    )?;
    if bad_sensor {
        return Err(StoreError::Internal(
            "landed counters name a corrupt sensor id".into(),
        ));
    }
    Ok(())
}

/// At open, before anything is reloaded: deletes the batches a flush already packed and
/// counted (`seq <= flushed_through`: a crash came between the flush's commit and the trim).
/// A store whose counters are still in `landing.db` first has them brought up to date there
/// and moved into `audrey.db` (the module's doc). Answers how many batches were deleted.
pub(crate) fn repair_at_open(
    landing: &mut Connection,
    main: &mut Connection,
    flushed_through: i64,
) -> Result<usize, StoreError> {
    let moved: bool =
        main.query_row("SELECT EXISTS (SELECT 1 FROM counters_moved)", [], |row| {
            row.get(0)
        })?;
    let mut repaired = 0;
    if !moved {
        repaired += fold_in_landing(landing, flushed_through)?;
        let transaction = main.transaction_with_behavior(TransactionBehavior::Immediate)?;
        fold(&transaction, &read_table(landing)?)?;
        transaction.execute("INSERT INTO counters_moved (singleton) VALUES (1)", [])?;
        transaction.commit()?;
    }
    // The moved copy goes only after `audrey.db` has it: a crash before this line leaves the
    // flag set, and the next open clears the copy without counting it again.
    let transaction = landing.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute("DELETE FROM sensor_counters", [])?;
    repaired += trim(&transaction, flushed_through)?;
    transaction.commit()?;
    Ok(repaired)
}

/// The fold of a store from before main migration 8, in `landing.db`: converts rows landed
/// before landing migration 3 (counted at commit) to the current rule, then folds and deletes
/// the batches a flush already packed. Answers how many batches were folded.
fn fold_in_landing(landing: &mut Connection, flushed_through: i64) -> Result<usize, StoreError> {
    let transaction = landing.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut counted_at_commit = FastMap::default();
    {
        let mut select = transaction.prepare(
            "SELECT received_at, body FROM landing_batches WHERE counters IS NULL ORDER BY seq",
        )?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let received_at = Millis(row.get(0)?);
            let body = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            count_accepted(
                decode_batch(body, received_at)?.iter(),
                &mut counted_at_commit,
            );
        }
    }
    if !counted_at_commit.is_empty() {
        take_back_accepted(&transaction, &counted_at_commit)?;
    }
    transaction.execute(
        "UPDATE landing_batches SET counters = ?1 WHERE counters IS NULL",
        [encode_counter_deltas(std::iter::empty())],
    )?;
    let mut packed = FastMap::default();
    {
        let mut select = transaction.prepare(
            "SELECT received_at, body, counters FROM landing_batches WHERE seq <= ?1 ORDER BY seq",
        )?;
        let mut rows = select.query([flushed_through])?;
        while let Some(row) = rows.next()? {
            let received_at = Millis(row.get(0)?);
            let body = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            let counters = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
            count_accepted(decode_batch(body, received_at)?.iter(), &mut packed);
            add_blob(counters, &mut packed)?;
        }
    }
    fold(&transaction, &packed)?;
    let folded = trim(&transaction, flushed_through)?;
    transaction.commit()?;
    Ok(folded)
}

/// Loads `sensor_counters` of `audrey.db` into memory; the landed rows are added as they are
/// reloaded ([`Counters::add_landed`]).
pub(crate) fn load(main: &Connection) -> Result<Counters, StoreError> {
    Ok(Counters {
        totals: read_table(main)?,
        ..Counters::default()
    })
}

/// Every row of a database's `sensor_counters`.
fn read_table(database: &Connection) -> Result<FastMap<SensorId, CounterDelta>, StoreError> {
    let mut totals = FastMap::default();
    let mut select =
        database.prepare("SELECT sensor_id, accepted, duplicate, rejected FROM sensor_counters")?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let sensor = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        let sensor = SensorId::parse(sensor)
            .map_err(|_| StoreError::Internal("a counter's sensor id is corrupt".into()))?;
        totals.insert(
            sensor,
            CounterDelta {
                accepted: row.get::<_, i64>(1)?.max(0) as u64,
                duplicate: row.get::<_, i64>(2)?.max(0) as u64,
                rejected: row.get::<_, i64>(3)?.max(0) as u64,
            },
        );
    }
    Ok(totals)
}

impl Counters {
    /// Adds one reloaded landing row: its readings (already decoded) and its counters blob.
    pub fn add_landed(
        &mut self,
        seq: i64,
        readings: &[Reading],
        counters: &[u8],
    ) -> Result<(), StoreError> {
        let mut deltas = FastMap::default();
        count_accepted(readings, &mut deltas);
        add_blob(counters, &mut deltas)?;
        self.add_commit(seq, deltas);
        Ok(())
    }
}
