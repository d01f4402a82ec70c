//! Staged registry changes in `audrey.db`: written once, read by link hash, finished once.
//!
//! Single use is enforced here: `mark_staged_change` only moves a row out of `pending`, in one
//! conditional UPDATE, so two confirmations of the same link cannot both succeed.

use rusqlite::{OptionalExtension, Row, params};

use audrey_model::Millis;

use super::SqliteStore;
use crate::{StagedChange, StagedStatus, StoreError};

const STAGED_COLUMNS: &str =
    "id, link_hash, entity, entity_id, action, body, created_at, expires_at, status, finished_at";

fn staged_from_row(row: &Row<'_>) -> rusqlite::Result<StagedChange> {
    let status: String = row.get(8)?;
    Ok(StagedChange {
        id: row.get(0)?,
        link_hash: row.get(1)?,
        entity: row.get(2)?,
        entity_id: row.get(3)?,
        action: row.get(4)?,
        body: row.get(5)?,
        created_at: Millis(row.get(6)?),
        expires_at: Millis(row.get(7)?),
        status: StagedStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                8,
                rusqlite::types::Type::Text,
                "staged change status".into(),
            )
        })?,
        finished_at: row.get::<_, Option<i64>>(9)?.map(Millis),
    })
}

impl SqliteStore {
    pub(super) fn insert_staged_change(&self, change: &StagedChange) -> Result<(), StoreError> {
        let writer = self.writer()?;
        writer.execute(
            &format!(
                "INSERT INTO staged_changes ({STAGED_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                change.id,
                change.link_hash,
                change.entity,
                change.entity_id,
                change.action,
                change.body,
                change.created_at.0,
                change.expires_at.0,
                change.status.as_str(),
                change.finished_at.map(|at| at.0),
            ],
        )?;
        Ok(())
    }

    pub(super) fn list_staged_changes(
        &self,
        status: StagedStatus,
    ) -> Result<Vec<StagedChange>, StoreError> {
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {STAGED_COLUMNS} FROM staged_changes WHERE status = ?1 ORDER BY created_at, id"
        ))?;
        let rows = statement.query_map([status.as_str()], staged_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub(super) fn find_staged_change(
        &self,
        link_hash: &str,
    ) -> Result<Option<StagedChange>, StoreError> {
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {STAGED_COLUMNS} FROM staged_changes WHERE link_hash = ?1"
        ))?;
        Ok(statement
            .query_row([link_hash], staged_from_row)
            .optional()?)
    }

    pub(super) fn mark_staged_change(
        &self,
        id: &str,
        status: StagedStatus,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let writer = self.writer()?;
        let changed = writer.execute(
            "UPDATE staged_changes SET status = ?2, finished_at = ?3
             WHERE id = ?1 AND status = 'pending'",
            params![id, status.as_str(), at.0],
        )?;
        Ok(changed == 1)
    }
}
