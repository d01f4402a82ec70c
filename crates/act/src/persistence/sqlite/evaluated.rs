//! Which committed readings the engine has evaluated, for the replay after a crash.
//!
//! `evaluated_batches` holds one row per evaluated batch: its highest reading id and all its
//! ids packed as 16-byte big-endian UUIDs (one row, not one per reading, keeps the write per
//! batch small). The row is written in the same transaction as the batch's decisions, so a
//! batch is either recorded with everything it decided or not at all. Rows are forgotten once
//! their highest id is below any point a replay can start from. `replay_floor` is the id
//! minted when this act.db first served: readings stored before it are never replayed.

use rusqlite::{Connection, OptionalExtension, params};

use audrey_model::ReadingId;

use crate::ActError;

const ID_BYTES: usize = 16;

pub(super) fn record(connection: &Connection, ids: &[ReadingId]) -> Result<(), ActError> {
    let Some(highest) = ids.iter().max() else {
        return Ok(());
    };
    let mut packed = Vec::with_capacity(ids.len() * ID_BYTES);
    for id in ids {
        packed.extend_from_slice(id.as_bytes());
    }
    connection
        .prepare_cached("INSERT INTO evaluated_batches (highest_id, ids) VALUES (?1, ?2)")?
        .execute(params![highest.as_bytes().as_slice(), packed])?;
    Ok(())
}

pub(super) fn all(connection: &Connection) -> Result<Vec<ReadingId>, ActError> {
    let mut statement = connection.prepare_cached("SELECT ids FROM evaluated_batches")?;
    let mut rows = statement.query([])?;
    let mut ids = Vec::new();
    while let Some(row) = rows.next()? {
        let packed: Vec<u8> = row.get(0)?;
        if !packed.len().is_multiple_of(ID_BYTES) {
            return Err(ActError::Internal(
                "act.db: a recorded batch of evaluated ids is corrupt".into(),
            ));
        }
        ids.extend(packed.chunks_exact(ID_BYTES).map(|chunk| {
            let mut bytes = [0; ID_BYTES];
            bytes.copy_from_slice(chunk);
            ReadingId(uuid::Uuid::from_bytes(bytes))
        }));
    }
    Ok(ids)
}

pub(super) fn forget_before(connection: &Connection, below: ReadingId) -> Result<(), ActError> {
    connection
        .prepare_cached("DELETE FROM evaluated_batches WHERE highest_id < ?1")?
        .execute([below.as_bytes().as_slice()])?;
    Ok(())
}

pub(super) fn floor(connection: &Connection) -> Result<Option<ReadingId>, ActError> {
    let bytes: Option<Vec<u8>> = connection
        .query_row("SELECT id FROM replay_floor WHERE only = 1", [], |row| {
            row.get(0)
        })
        .optional()?;
    bytes
        .map(|bytes| {
            uuid::Uuid::from_slice(&bytes)
                .map(ReadingId)
                .map_err(|_| ActError::Internal("act.db: the replay floor is corrupt".into()))
        })
        .transpose()
}

pub(super) fn set_floor(connection: &Connection, id: ReadingId) -> Result<(), ActError> {
    connection.execute(
        "INSERT OR IGNORE INTO replay_floor (only, id) VALUES (1, ?1)",
        [id.as_bytes().as_slice()],
    )?;
    Ok(())
}
