//! The acknowledgement path of the PostgreSQL store: dedup, binary COPY, quarantine and
//! counters in one transaction.
//!
//! Order inside the transaction: the batch's dedup keys are inserted into `reading_keys`
//! first (`ON CONFLICT DO NOTHING RETURNING`), which both detects keys stored earlier and
//! locks fresh ones against a concurrent writer; then the surviving readings are copied.
//!
//! Several appends run at once (one per committer, [`crate::Store::concurrent_appends`]).
//! The only rows two of them can both lock are dedup keys: a key inserted by a transaction
//! still in flight makes the second insert wait for its outcome, then count the reading as
//! a duplicate of it (committed) or store it (rolled back). Keys are inserted in
//! `(sensor_id, message_id)` order so two batches sharing keys cannot deadlock. Counters are
//! appended as deltas (`counters.rs`), never updated in place, so they lock nothing shared.
//! Statements are prepared once per connection and reused. BEGIN is sent in one flight with
//! the first statement and COMMIT with the counter deltas (tokio-postgres pipelines requests
//! sent before their answers are awaited), so a batch costs three round trips, not five.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::ClientWrapper;
use futures_util::SinkExt;
use futures_util::pin_mut;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use uuid::Uuid;

use audrey_model::{MessageId, Millis, ReadingId, SensorId, ValidReading};

use super::errors::from_pg;
use super::partitions::day_of;
use super::rollups::{MARK_AND_COUNT, hours_of};
use super::{PostgresStore, poisoned};
use crate::{AppendBatch, AppendOutcome, QuarantineEntry, StoreError};

const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
const READING_COLUMNS: &str = "id, sensor_id, location_id, read_at, received_at, message_id, vals";
const COPY_TYPES: [Type; 7] = [
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
];

/// What became of one reading of the batch.
#[derive(Clone, Copy)]
enum Slot {
    /// Index into the candidates still to write.
    Candidate(usize),
    /// Repeats the dedup key of this earlier candidate of the same batch.
    DuplicateOf(usize),
}

#[derive(Default)]
struct CounterDelta {
    accepted: i64,
    duplicate: i64,
    rejected: i64,
}

impl PostgresStore {
    pub(super) fn append_batch(
        &self,
        batch: AppendBatch,
        received_at: Millis,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        if let Some(ids) = &batch.assigned_ids
            && ids.len() != batch.readings.len()
        {
            return Err(StoreError::Internal(format!(
                "{} assigned ids for {} readings",
                ids.len(),
                batch.readings.len()
            )));
        }
        // Assigned ids are usually new (the outage spool mints them before its first attempt),
        // so the batch is copied straight in; only when the unique key refuses one of them (a
        // real replay of readings already stored) does it go through the staging table.
        let assigned = batch.assigned_ids.is_some();
        let mut replay = false;
        let ids: Vec<ReadingId> = (0..batch.readings.len())
            .map(|index| batch.id_for(index))
            .collect();
        let mut slots = Vec::with_capacity(ids.len());
        let mut candidates: Vec<(ReadingId, ValidReading)> = Vec::with_capacity(ids.len());
        let mut in_batch: HashMap<(SensorId, MessageId), usize> = HashMap::new();
        for (reading, id) in batch.readings.into_iter().zip(ids) {
            if let Some(message) = &reading.message_id {
                let key = (reading.sensor_id.clone(), message.clone());
                if let Some(earlier) = in_batch.get(&key) {
                    slots.push(Slot::DuplicateOf(*earlier));
                    continue;
                }
                in_batch.insert(key, candidates.len());
            }
            slots.push(Slot::Candidate(candidates.len()));
            candidates.push((id, reading));
        }
        let days: Vec<i64> = candidates
            .iter()
            .map(|(_, reading)| day_of(reading.read_at))
            .collect();
        let quarantine = &batch.quarantine;
        self.block_on(async {
            self.ensure_days(days.iter().copied()).await?;
            let mut open = OpenConnection(Some(self.client().await?));
            let mut partitions_reloaded = false;
            loop {
                let client = open.client();
                // BEGIN goes out in the same flight as the first statement (requests are
                // sent in the order they are first polled), COMMIT with the counter deltas:
                // two round trips fewer per batch than awaiting each one.
                let (began, written) = futures_util::join!(
                    client.batch_execute("BEGIN"),
                    write(
                        client,
                        &candidates,
                        &slots,
                        quarantine,
                        replay,
                        received_at,
                        self,
                    )
                );
                let result: Result<(), tokio_postgres::Error> = match (began, written) {
                    (Ok(()), Ok((outcomes, deltas))) => match commit_with(client, &deltas).await {
                        Ok(()) => return Ok(outcomes),
                        Err(error) => Err(error),
                    },
                    (Err(error), _) | (_, Err(error)) => Err(error),
                };
                let Err(error) = result else {
                    unreachable!("success returned above")
                };
                open.roll_back().await;
                match error.code() {
                    // Some assigned ids are stored already: replay through staging.
                    Some(&SqlState::UNIQUE_VIOLATION) if assigned && !replay => replay = true,
                    // A partition vanished under the cache (dropped by another process):
                    // learn the truth and try once more.
                    Some(&SqlState::CHECK_VIOLATION) if !partitions_reloaded => {
                        partitions_reloaded = true;
                        self.partitions.write().map_err(poisoned)?.clear();
                        self.ensure_days(days.iter().copied()).await?;
                    }
                    _ => return Err(from_pg(error)),
                }
                if open.0.is_none() {
                    open = OpenConnection(Some(self.client().await?));
                }
            }
        })
    }
}

/// A pooled connection used for a hand-made transaction (BEGIN and COMMIT pipelined with the
/// statements around them). A connection must never go back to the pool inside a
/// transaction: if ROLLBACK fails, or the append is abandoned half-way (a panic), the
/// connection is detached from the pool and closed instead.
struct OpenConnection(Option<deadpool_postgres::Object>);

impl OpenConnection {
    fn client(&self) -> &ClientWrapper {
        self.0
            .as_ref()
            .expect("a connection is held until roll_back discards it")
    }

    /// Ends a failed transaction; discards the connection when that fails too.
    async fn roll_back(&mut self) {
        let failed = match &self.0 {
            Some(client) => client.batch_execute("ROLLBACK").await.is_err(),
            None => false,
        };
        if failed && let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        // Still inside a transaction only when unwinding: do not hand it to the next caller.
        if std::thread::panicking()
            && let Some(client) = self.0.take()
        {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// The per-sensor counter deltas of one batch and the hours it wrote readings into (their
/// rollups are now out of date), appended just before COMMIT.
#[derive(Default)]
struct Deltas {
    sensors: Vec<String>,
    accepted: Vec<i64>,
    duplicate: Vec<i64>,
    rejected: Vec<i64>,
    hours: Vec<i64>,
}

/// Appends the counter deltas and dirty-hour markers and commits, both in one flight. If the insert fails, the
/// COMMIT that follows it ends the aborted transaction as a rollback, and the insert's error
/// is what the caller sees.
async fn commit_with(client: &ClientWrapper, deltas: &Deltas) -> Result<(), tokio_postgres::Error> {
    if deltas.sensors.is_empty() {
        return client.batch_execute("COMMIT").await;
    }
    // Prepared (cached) before the flight, so nothing is sent between the two requests.
    let append_deltas = client.prepare_cached(MARK_AND_COUNT).await?;
    let marked_at = Millis::now().0;
    let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &deltas.sensors,
        &deltas.accepted,
        &deltas.duplicate,
        &deltas.rejected,
        &deltas.hours,
        &marked_at,
    ];
    let (appended, committed) = futures_util::join!(
        client.execute(&append_deltas, &parameters),
        client.batch_execute("COMMIT")
    );
    appended?;
    committed
}

async fn write(
    transaction: &ClientWrapper,
    candidates: &[(ReadingId, ValidReading)],
    slots: &[Slot],
    quarantine: &[QuarantineEntry],
    replay: bool,
    received_at: Millis,
    store: &PostgresStore,
) -> Result<(Vec<AppendOutcome>, Deltas), tokio_postgres::Error> {
    // 1. Dedup keys stored before this batch.
    let mut stored_before: HashMap<usize, ReadingId> = HashMap::new();
    let mut keyed: Vec<usize> = (0..candidates.len())
        .filter(|&index| candidates[index].1.message_id.is_some())
        .collect();
    // Key order: concurrent batches lock shared keys in the same order (no deadlock).
    keyed.sort_unstable_by(|&a, &b| {
        let (a, b) = (&candidates[a].1, &candidates[b].1);
        (a.sensor_id.as_str(), message_of(a)).cmp(&(b.sensor_id.as_str(), message_of(b)))
    });
    if !keyed.is_empty() {
        let sensors: Vec<&str> = keyed
            .iter()
            .map(|&index| candidates[index].1.sensor_id.as_str())
            .collect();
        let messages: Vec<&str> = keyed
            .iter()
            .map(|&index| message_of(&candidates[index].1))
            .collect();
        let ids: Vec<Uuid> = keyed.iter().map(|&index| candidates[index].0.0).collect();
        let read_ats: Vec<i64> = keyed
            .iter()
            .map(|&index| candidates[index].1.read_at.0)
            .collect();
        let insert_keys = transaction
            .prepare_cached(
                "INSERT INTO reading_keys (sensor_id, message_id, id, read_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::int8[])
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .await?;
        let fresh: HashSet<Uuid> = transaction
            .query(&insert_keys, &[&sensors, &messages, &ids, &read_ats])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let stale: Vec<usize> = keyed
            .into_iter()
            .filter(|&index| !fresh.contains(&candidates[index].0.0))
            .collect();
        if !stale.is_empty() {
            let sensors: Vec<&str> = stale
                .iter()
                .map(|&index| candidates[index].1.sensor_id.as_str())
                .collect();
            let messages: Vec<&str> = stale
                .iter()
                .map(|&index| message_of(&candidates[index].1))
                .collect();
            let existing: HashMap<(String, String), Uuid> = transaction
                .query(
                    "SELECT k.sensor_id, k.message_id, k.id FROM reading_keys k
                     JOIN unnest($1::text[], $2::text[]) AS batch(sensor_id, message_id)
                       USING (sensor_id, message_id)",
                    &[&sensors, &messages],
                )
                .await?
                .iter()
                .map(|row| ((row.get(0), row.get(1)), row.get(2)))
                .collect();
            for index in stale {
                let reading = &candidates[index].1;
                let key = (
                    reading.sensor_id.as_str().to_string(),
                    message_of(reading).to_string(),
                );
                // Our insert waited for the transaction that stored the key, so it is visible
                // now; only a retention trim racing this batch could hide it.
                let earlier = existing.get(&key).copied().unwrap_or(candidates[index].0.0);
                stored_before.insert(index, ReadingId(earlier));
            }
        }
    }

    // 2. The readings themselves.
    let to_write: Vec<usize> = (0..candidates.len())
        .filter(|index| !stored_before.contains_key(index))
        .collect();
    let inserted: Option<HashSet<Uuid>> = if to_write.is_empty() {
        Some(HashSet::new())
    } else if replay {
        // Ids may already be stored: stage, then insert what is new.
        transaction
            .batch_execute(
                "CREATE TEMP TABLE IF NOT EXISTS readings_staging
                    (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
                 TRUNCATE readings_staging",
            )
            .await?;
        copy_rows(
            transaction,
            "readings_staging",
            candidates,
            &to_write,
            received_at,
        )
        .await?;
        Some(
            transaction
                .query(
                    &format!(
                        "INSERT INTO readings ({READING_COLUMNS})
                         SELECT {READING_COLUMNS} FROM readings_staging
                         ON CONFLICT DO NOTHING RETURNING id"
                    ),
                    &[],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect(),
        )
    } else {
        // Fresh time-ordered ids cannot collide: copy straight into the partitions.
        copy_rows(transaction, "readings", candidates, &to_write, received_at).await?;
        None
    };

    // 3. Outcomes, counters and the hours written into.
    let mut counters: HashMap<&str, CounterDelta> = HashMap::new();
    let mut outcomes = Vec::with_capacity(slots.len());
    let mut written_at = Vec::new();
    for slot in slots {
        let (outcome, sensor) = match *slot {
            Slot::DuplicateOf(index) => {
                let (id, reading) = &candidates[index];
                let earlier = stored_before.get(&index).copied().unwrap_or(*id);
                (
                    AppendOutcome::Duplicate(earlier),
                    reading.sensor_id.as_str(),
                )
            }
            Slot::Candidate(index) => {
                let (id, reading) = &candidates[index];
                let outcome = match stored_before.get(&index) {
                    Some(earlier) => AppendOutcome::Duplicate(*earlier),
                    None => match &inserted {
                        Some(inserted) if !inserted.contains(&id.0) => {
                            AppendOutcome::Duplicate(*id)
                        }
                        _ => AppendOutcome::Accepted(*id),
                    },
                };
                (outcome, reading.sensor_id.as_str())
            }
        };
        let delta = counters.entry(sensor).or_default();
        match outcome {
            AppendOutcome::Accepted(_) => {
                delta.accepted += 1;
                if let Slot::Candidate(index) = *slot {
                    written_at.push(candidates[index].1.read_at.0);
                }
            }
            AppendOutcome::Duplicate(_) => delta.duplicate += 1,
        }
        outcomes.push(outcome);
    }

    // 4. Quarantine, in the same transaction.
    if !quarantine.is_empty() {
        let received: Vec<i64> = vec![received_at.0; quarantine.len()];
        let sensors: Vec<Option<&str>> = quarantine
            .iter()
            .map(|entry| entry.sensor_id.as_deref())
            .collect();
        let reasons: Vec<&str> = quarantine
            .iter()
            .map(|entry| entry.reason.as_str())
            .collect();
        let paths: Vec<&str> = quarantine.iter().map(|entry| entry.path.as_str()).collect();
        let messages: Vec<&str> = quarantine
            .iter()
            .map(|entry| entry.message.as_str())
            .collect();
        let payloads: Vec<&str> = quarantine
            .iter()
            .map(|entry| truncate(&entry.payload, MAX_PAYLOAD_BYTES))
            .collect();
        let insert_quarantine = transaction
            .prepare_cached(
                "INSERT INTO quarantine (received_at, sensor_id, reason, path, message, payload)
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[],
                                      $5::text[], $6::text[])
                 ORDER BY 1",
            )
            .await?;
        transaction
            .execute(
                &insert_quarantine,
                &[&received, &sensors, &reasons, &paths, &messages, &payloads],
            )
            .await?;
        for entry in quarantine {
            if let Some(sensor) = entry.sensor_id.as_deref()
                && store.cached(sensor).is_some()
            {
                counters.entry(sensor).or_default().rejected += 1;
            }
        }
    }

    // 5. Counters, as deltas (appended with the COMMIT): nothing another committer holds is
    // locked.
    let mut deltas = Deltas {
        hours: hours_of(written_at.into_iter()),
        ..Deltas::default()
    };
    for (sensor, delta) in counters {
        deltas.sensors.push(sensor.to_string());
        deltas.accepted.push(delta.accepted);
        deltas.duplicate.push(delta.duplicate);
        deltas.rejected.push(delta.rejected);
    }
    Ok((outcomes, deltas))
}

/// Binary COPY of the chosen candidates into `table`.
///
/// The whole COPY stream is encoded here and handed to the connection as one message:
/// tokio-postgres's row writer sends a 4 KiB chunk at a time through a one-slot channel, so
/// every chunk was a hand-off between this thread and the connection task (dozens of context
/// switches per batch). The format is PostgreSQL's binary COPY (`COPY_TYPES` order).
async fn copy_rows(
    transaction: &ClientWrapper,
    table: &str,
    candidates: &[(ReadingId, ValidReading)],
    chosen: &[usize],
    received_at: Millis,
) -> Result<(), tokio_postgres::Error> {
    let statement = transaction
        .prepare_cached(&format!(
            "COPY {table} ({READING_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let sink = transaction.copy_in::<_, bytes::Bytes>(&statement).await?;
    pin_mut!(sink);
    let mut data: Vec<u8> = Vec::with_capacity(19 + chosen.len() * 160 + 2);
    data.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    data.extend_from_slice(&0i32.to_be_bytes()); // flags
    data.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    let mut values_json = String::with_capacity(128);
    for &index in chosen {
        let (id, reading) = &candidates[index];
        values_json.clear();
        reading.values.write_json(&mut values_json);
        data.extend_from_slice(&(COPY_TYPES.len() as i16).to_be_bytes());
        put_field(&mut data, Some(id.0.as_bytes()));
        put_field(&mut data, Some(reading.sensor_id.as_str().as_bytes()));
        put_field(&mut data, Some(reading.location_id.as_str().as_bytes()));
        put_field(&mut data, Some(&reading.read_at.0.to_be_bytes()));
        put_field(&mut data, Some(&received_at.0.to_be_bytes()));
        put_field(
            &mut data,
            reading
                .message_id
                .as_ref()
                .map(|message| message.as_str().as_bytes()),
        );
        put_field(&mut data, Some(values_json.as_bytes()));
    }
    data.extend_from_slice(&(-1i16).to_be_bytes()); // trailer
    sink.as_mut().send(bytes::Bytes::from(data)).await?;
    sink.finish().await?;
    Ok(())
}

/// One field of a binary COPY row: its length (-1 for NULL), then its bytes.
fn put_field(data: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => {
            data.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            data.extend_from_slice(bytes);
        }
        None => data.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn message_of(reading: &ValidReading) -> &str {
    reading
        .message_id
        .as_ref()
        .map(|message| message.as_str())
        .unwrap_or_default()
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
