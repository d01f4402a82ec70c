//! Staged registry changes in PostgreSQL: written once, read by link hash, finished once.
//!
//! Single use is enforced here, as on SQLite: `mark_staged_change` only moves a row out of
//! `pending`, in one conditional UPDATE (row-locked by PostgreSQL), so two confirmations of the
//! same link cannot both succeed. Must never finish a change that is no longer pending.

use tokio_postgres::Row;

use audrey_model::Millis;

use super::PostgresStore;
use super::errors::from_pg;
use crate::{StagedChange, StagedStatus, StoreError};

const STAGED_COLUMNS: &str =
    "id, link_hash, entity, entity_id, action, body, created_at, expires_at, status, finished_at";

fn staged_from_row(row: &Row) -> Result<StagedChange, StoreError> {
    let get = |error| from_pg(error);
    let status: &str = row.try_get(8).map_err(get)?;
    Ok(StagedChange {
        id: row.try_get(0).map_err(get)?,
        link_hash: row.try_get(1).map_err(get)?,
        entity: row.try_get(2).map_err(get)?,
        entity_id: row.try_get(3).map_err(get)?,
        action: row.try_get(4).map_err(get)?,
        body: row.try_get(5).map_err(get)?,
        created_at: Millis(row.try_get(6).map_err(get)?),
        expires_at: Millis(row.try_get(7).map_err(get)?),
        status: StagedStatus::parse(status).ok_or_else(|| {
            StoreError::Internal("a stored staged change has a bad status".into())
        })?,
        finished_at: row.try_get::<_, Option<i64>>(9).map_err(get)?.map(Millis),
    })
}

impl PostgresStore {
    pub(super) fn insert_staged_change(&self, change: &StagedChange) -> Result<(), StoreError> {
        self.block_on(async {
            let client = self.client().await?;
            client
                .execute(
                    &format!(
                        "INSERT INTO staged_changes ({STAGED_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    ),
                    &[
                        &change.id,
                        &change.link_hash,
                        &change.entity,
                        &change.entity_id,
                        &change.action,
                        &change.body,
                        &change.created_at.0,
                        &change.expires_at.0,
                        &change.status.as_str(),
                        &change.finished_at.map(|at| at.0),
                    ],
                )
                .await
                .map_err(from_pg)?;
            Ok(())
        })
    }

    pub(super) fn list_staged_changes(
        &self,
        status: StagedStatus,
    ) -> Result<Vec<StagedChange>, StoreError> {
        let rows = self.block_on(async {
            let client = self.client().await?;
            client
                .query(
                    &format!(
                        "SELECT {STAGED_COLUMNS} FROM staged_changes WHERE status = $1
                         ORDER BY created_at, id"
                    ),
                    &[&status.as_str()],
                )
                .await
                .map_err(from_pg)
        })?;
        rows.iter().map(staged_from_row).collect()
    }

    pub(super) fn find_staged_change(
        &self,
        link_hash: &str,
    ) -> Result<Option<StagedChange>, StoreError> {
        let row = self.block_on(async {
            let client = self.client().await?;
            client
                .query_opt(
                    &format!("SELECT {STAGED_COLUMNS} FROM staged_changes WHERE link_hash = $1"),
                    &[&link_hash],
                )
                .await
                .map_err(from_pg)
        })?;
        row.as_ref().map(staged_from_row).transpose()
    }

    pub(super) fn mark_staged_change(
        &self,
        id: &str,
        status: StagedStatus,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let changed = self.block_on(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE staged_changes SET status = $2, finished_at = $3
                     WHERE id = $1 AND status = 'pending'",
                    &[&id, &status.as_str(), &at.0],
                )
                .await
                .map_err(from_pg)
        })?;
        Ok(changed == 1)
    }
}
