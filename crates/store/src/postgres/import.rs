//! Bulk upsert of imported locations in PostgreSQL: one transaction per call, one outcome per
//! row, matched exactly as on SQLite (see [`crate::Store::upsert_locations`]).

use audrey_model::{ImportKey, ImportRow, Location};

use super::PostgresStore;
use super::errors::from_pg;
use super::registry::{LOCATION_COLUMNS, attributes_json, location_from_row};
use crate::{StoreError, UpsertOutcome};

/// True when every field a client can set is already as `wanted` and the record is live.
fn same_content(stored: &Location, wanted: &Location) -> bool {
    stored.deleted_at.is_none()
        && stored.name == wanted.name
        && stored.city == wanted.city
        && stored.country == wanted.country
        && stored.latitude == wanted.latitude
        && stored.longitude == wanted.longitude
        && stored.altitude == wanted.altitude
        && stored.timezone == wanted.timezone
        && stored.iata == wanted.iata
        && stored.icao == wanted.icao
        && stored.attributes == wanted.attributes
}

impl PostgresStore {
    pub(super) fn upsert_location_rows(
        &self,
        rows: &[ImportRow],
    ) -> Result<Vec<UpsertOutcome>, StoreError> {
        self.block_on(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(from_pg)?;
            // Live records first, then the lowest id: a code names one place.
            let by_id = transaction
                .prepare(&format!(
                    "SELECT {LOCATION_COLUMNS} FROM locations WHERE id = $1 FOR UPDATE"
                ))
                .await
                .map_err(from_pg)?;
            let by_code = |column: &str| {
                format!(
                    "SELECT {LOCATION_COLUMNS} FROM locations WHERE {column} = $1
                     ORDER BY deleted_at IS NOT NULL, id LIMIT 1 FOR UPDATE"
                )
            };
            let by_icao = transaction
                .prepare(&by_code("icao"))
                .await
                .map_err(from_pg)?;
            let by_iata = transaction
                .prepare(&by_code("iata"))
                .await
                .map_err(from_pg)?;
            let write = transaction
                .prepare(&format!(
                    "INSERT INTO locations ({LOCATION_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, $13)
                     ON CONFLICT (id) DO UPDATE SET name = $2, city = $3, country = $4,
                        latitude = $5, longitude = $6, altitude = $7, timezone = $8, iata = $9,
                        icao = $10, updated_at = $12, deleted_at = NULL, attributes = $13"
                ))
                .await
                .map_err(from_pg)?;
            let mut outcomes = Vec::with_capacity(rows.len());
            for row in rows {
                let found = match &row.key {
                    ImportKey::Id(_) => None,
                    ImportKey::Icao(code) => transaction
                        .query_opt(&by_icao, &[&code.as_str()])
                        .await
                        .map_err(from_pg)?,
                    ImportKey::Iata(code) => transaction
                        .query_opt(&by_iata, &[&code.as_str()])
                        .await
                        .map_err(from_pg)?,
                };
                let found = match found {
                    Some(found) => Some(found),
                    None => transaction
                        .query_opt(&by_id, &[&row.location.id.as_str()])
                        .await
                        .map_err(from_pg)?,
                };
                let stored = found.as_ref().map(location_from_row).transpose()?;
                let (id, created_at, outcome) = match &stored {
                    Some(stored) if same_content(stored, &row.location) => {
                        outcomes.push(UpsertOutcome::Unchanged);
                        continue;
                    }
                    Some(stored) => (&stored.id, stored.created_at, UpsertOutcome::Updated),
                    None => (
                        &row.location.id,
                        row.location.created_at,
                        UpsertOutcome::Inserted,
                    ),
                };
                let location = &row.location;
                transaction
                    .execute(
                        &write,
                        &[
                            &id.as_str(),
                            &location.name,
                            &location.city,
                            &location.country,
                            &location.latitude,
                            &location.longitude,
                            &location.altitude,
                            &location.timezone,
                            &location.iata,
                            &location.icao,
                            &created_at.0,
                            &location.updated_at.0,
                            &attributes_json(location)?,
                        ],
                    )
                    .await
                    .map_err(from_pg)?;
                outcomes.push(outcome);
            }
            transaction.commit().await.map_err(from_pg)?;
            Ok(outcomes)
        })
    }
}
