//! Reading queries of the PostgreSQL store: by id, keyset-paged lists, quarantine and
//! counters. Order is always `(read_at, id)`; uuids compare bytewise in PostgreSQL as in
//! Rust, so cursors mean the same on both backends.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use audrey_model::{LocationId, MessageId, Millis, Reading, ReadingId, ReadingValues, SensorId};

use super::PostgresStore;
use super::errors::from_pg;
use super::geo::location_ids_in;
use crate::{Cursor, Order, Page, QuarantineEntry, QuarantineFilter, ReadingQuery, StoreError};

const READING_COLUMNS: &str = "id, sensor_id, location_id, read_at, received_at, message_id, vals";

fn reading_from_row(row: &Row) -> Result<Reading, StoreError> {
    let corrupt = |what: &str| StoreError::Internal(format!("stored reading has a bad {what}"));
    let id: Uuid = row.try_get(0).map_err(from_pg)?;
    let sensor: &str = row.try_get(1).map_err(from_pg)?;
    let location: &str = row.try_get(2).map_err(from_pg)?;
    let message: Option<&str> = row.try_get(5).map_err(from_pg)?;
    let values: &str = row.try_get(6).map_err(from_pg)?;
    Ok(Reading {
        id: ReadingId(id),
        sensor_id: SensorId::parse(sensor).map_err(|_| corrupt("sensor id"))?,
        location_id: LocationId::parse(location).map_err(|_| corrupt("location id"))?,
        read_at: Millis(row.try_get(3).map_err(from_pg)?),
        received_at: Millis(row.try_get(4).map_err(from_pg)?),
        values: ReadingValues::from_json(values).ok_or_else(|| corrupt("values"))?,
        message_id: message
            .map(MessageId::parse)
            .transpose()
            .map_err(|_| corrupt("message id"))?,
    })
}

type Parameters = Vec<Box<dyn ToSql + Sync + Send>>;

/// The SQL and parameters of one page (one row more than the limit, to know if more follow).
/// `near` is the ids of the live locations inside the query's circle, when it has one.
fn readings_sql(
    query: &ReadingQuery,
    fetch: usize,
    near: Option<Vec<String>>,
) -> (String, Parameters) {
    let mut sql = format!("SELECT {READING_COLUMNS} FROM readings WHERE true");
    let mut parameters: Parameters = Vec::new();
    let mut push = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync + Send>| {
        parameters.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", parameters.len())));
    };
    if let Some(locations) = near {
        push(&mut sql, " AND location_id = ANY(?)", Box::new(locations));
    }
    if let Some(sensor) = &query.sensor {
        push(
            &mut sql,
            " AND sensor_id = ?",
            Box::new(sensor.as_str().to_string()),
        );
    }
    if let Some(location) = &query.location {
        push(
            &mut sql,
            " AND location_id = ?",
            Box::new(location.as_str().to_string()),
        );
    }
    // A cursor narrows the read_at range itself, so partitions wholly before (or after) the
    // cursor are pruned and the index scan starts at the cursor, not at `from`.
    let (mut from, mut to) = (query.from, query.to);
    match (query.after, query.order) {
        (Some(cursor), Order::Oldest) => from = from.max(Some(cursor.read_at)),
        (Some(cursor), Order::Newest) => {
            let through_cursor = Millis(cursor.read_at.0.saturating_add(1));
            to = Some(to.map_or(through_cursor, |to| to.min(through_cursor)));
        }
        (None, _) => {}
    }
    if let Some(from) = from {
        push(&mut sql, " AND read_at >= ?", Box::new(from.0));
    }
    if let Some(to) = to {
        push(&mut sql, " AND read_at < ?", Box::new(to.0));
    }
    let (comparison, direction) = match query.order {
        Order::Newest => ("<", "DESC"),
        Order::Oldest => (">", "ASC"),
    };
    if let Some(cursor) = query.after {
        parameters.push(Box::new(cursor.read_at.0));
        parameters.push(Box::new(cursor.id.0));
        sql.push_str(&format!(
            " AND (read_at, id) {comparison} (${}, ${})",
            parameters.len() - 1,
            parameters.len()
        ));
    }
    parameters.push(Box::new(fetch as i64));
    sql.push_str(&format!(
        " ORDER BY read_at {direction}, id {direction} LIMIT ${}",
        parameters.len()
    ));
    (sql, parameters)
}

impl PostgresStore {
    pub(super) fn get_reading(&self, id: ReadingId) -> Result<Option<Reading>, StoreError> {
        self.block_on(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {READING_COLUMNS} FROM readings WHERE id = $1"
                ))
                .await
                .map_err(from_pg)?;
            let row = client
                .query_opt(&statement, &[&id.0])
                .await
                .map_err(from_pg)?;
            row.as_ref().map(reading_from_row).transpose()
        })
    }

    /// Walks the primary key `(id, read_at)` of every partition in id order (a merge of
    /// index range scans; the lower bound is a plain `id >` so the planner can use it).
    pub(super) fn list_readings_after_id(
        &self,
        after: Option<ReadingId>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        // The nil UUID sorts below every reading id, so "from the start" needs no other query.
        let after = after.map_or(Uuid::nil(), |after| after.0);
        let fetch = limit as i64;
        let rows = self.block_on(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {READING_COLUMNS} FROM readings WHERE id > $1 ORDER BY id LIMIT $2"
                ))
                .await
                .map_err(from_pg)?;
            client
                .query(&statement, &[&after, &fetch])
                .await
                .map_err(from_pg)
        })?;
        rows.iter().map(reading_from_row).collect()
    }

    pub(super) fn query_readings(&self, query: &ReadingQuery) -> Result<Page<Reading>, StoreError> {
        let limit = query.limit.max(1);
        let rows = self.block_on(async {
            let client = self.client().await?;
            // A radius filter becomes the set of live locations inside the circle.
            let near = match &query.near {
                Some(circle) => {
                    let ids = location_ids_in(&**client, circle).await?;
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    Some(ids)
                }
                None => None,
            };
            let (sql, parameters) = readings_sql(query, limit + 1, near);
            let statement = client.prepare_cached(&sql).await.map_err(from_pg)?;
            let borrowed: Vec<&(dyn ToSql + Sync)> = parameters
                .iter()
                .map(|value| &**value as &(dyn ToSql + Sync))
                .collect();
            client.query(&statement, &borrowed).await.map_err(from_pg)
        })?;
        let mut items = rows
            .iter()
            .map(reading_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            let last = &items[limit - 1];
            Cursor {
                read_at: last.read_at,
                id: last.id,
            }
            .encode()
        });
        Ok(Page { items, next_cursor })
    }

    pub(super) fn list_quarantine(
        &self,
        filter: &QuarantineFilter,
    ) -> Result<Page<QuarantineEntry>, StoreError> {
        let limit = filter.limit.max(1);
        let before = filter.before.unwrap_or(i64::MAX);
        let fetch = limit as i64 + 1;
        let rows = self.block_on(async {
            let client = self.client().await?;
            client
                .query(
                    "SELECT id, received_at, sensor_id, reason, path, message, payload
                     FROM quarantine
                     WHERE ($1::text IS NULL OR sensor_id = $1) AND id < $2
                     ORDER BY id DESC LIMIT $3",
                    &[&filter.sensor, &before, &fetch],
                )
                .await
                .map_err(from_pg)
        })?;
        let mut items = rows
            .iter()
            .map(|row| {
                Ok(QuarantineEntry {
                    id: row.try_get(0)?,
                    received_at: Millis(row.try_get(1)?),
                    sensor_id: row.try_get(2)?,
                    reason: row.try_get(3)?,
                    path: row.try_get(4)?,
                    message: row.try_get(5)?,
                    payload: row.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(from_pg)?;
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items[limit - 1].id.to_string()
        });
        Ok(Page { items, next_cursor })
    }
}
