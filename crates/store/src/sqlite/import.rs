//! Bulk upsert of imported locations: one transaction per call, one outcome per row.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use audrey_model::{ImportKey, ImportRow, Location};

use super::registry::{LOCATION_COLUMNS, attributes_json, location_from_row};
use super::{SqliteStore, poisoned};
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

impl SqliteStore {
    pub(super) fn upsert_location_rows(
        &self,
        rows: &[ImportRow],
    ) -> Result<Vec<UpsertOutcome>, StoreError> {
        let mut writer = self.writer.lock().map_err(poisoned)?;
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(rows.len());
        {
            // Live records first, then the lowest id: a code names one place.
            let mut by_id = transaction.prepare_cached(&format!(
                "SELECT {LOCATION_COLUMNS} FROM locations WHERE id = ?1"
            ))?;
            let mut by_icao = transaction.prepare_cached(&format!(
                "SELECT {LOCATION_COLUMNS} FROM locations WHERE icao = ?1
                 ORDER BY deleted_at IS NOT NULL, id LIMIT 1"
            ))?;
            let mut by_iata = transaction.prepare_cached(&format!(
                "SELECT {LOCATION_COLUMNS} FROM locations WHERE iata = ?1
                 ORDER BY deleted_at IS NOT NULL, id LIMIT 1"
            ))?;
            let mut write = transaction.prepare_cached(&format!(
                "INSERT INTO locations ({LOCATION_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL, ?13)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, city = ?3, country = ?4,
                    latitude = ?5, longitude = ?6, altitude = ?7, timezone = ?8, iata = ?9,
                    icao = ?10, updated_at = ?12, deleted_at = NULL, attributes = ?13"
            ))?;
            for row in rows {
                let mut stored = match &row.key {
                    ImportKey::Id(_) => None,
                    ImportKey::Icao(code) => by_icao
                        .query_row([code.as_str()], location_from_row)
                        .optional()?,
                    ImportKey::Iata(code) => by_iata
                        .query_row([code.as_str()], location_from_row)
                        .optional()?,
                };
                if stored.is_none() {
                    stored = by_id
                        .query_row([row.location.id.as_str()], location_from_row)
                        .optional()?;
                }
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
                write.execute(params![
                    id.as_str(),
                    location.name,
                    location.city,
                    location.country,
                    location.latitude,
                    location.longitude,
                    location.altitude,
                    location.timezone,
                    location.iata,
                    location.icao,
                    created_at.0,
                    location.updated_at.0,
                    attributes_json(location)?,
                ])?;
                outcomes.push(outcome);
            }
        }
        transaction.commit()?;
        Ok(outcomes)
    }
}
