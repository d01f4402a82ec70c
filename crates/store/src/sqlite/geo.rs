//! Radius searches in the SQLite store: a latitude/longitude box in SQL (the
//! `locations_position` index) narrows the candidates, the exact great-circle distance in Rust
//! ([`audrey_model::distance_km`]) decides.

use std::collections::HashSet;

use rusqlite::{Connection, params};

use audrey_model::{GeoCircle, Location, LocationId};

use super::SqliteStore;
use super::registry::{LOCATION_COLUMNS, location_from_row};
use crate::{NearLocation, StoreError};

/// Live locations inside the circle's bounding box (a superset of the circle).
fn candidates(connection: &Connection, circle: &GeoCircle) -> Result<Vec<Location>, StoreError> {
    let bounds = circle.bounding_box();
    // A box that wraps the antimeridian is two longitude ranges: west..180 and -180..east.
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {LOCATION_COLUMNS} FROM locations
         WHERE latitude BETWEEN ?1 AND ?2
           AND (CASE WHEN ?3 <= ?4 THEN longitude BETWEEN ?3 AND ?4
                     ELSE longitude >= ?3 OR longitude <= ?4 END)
           AND deleted_at IS NULL"
    ))?;
    let rows = statement.query_map(
        params![bounds.south, bounds.north, bounds.west, bounds.east],
        location_from_row,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The ids of live locations inside the circle.
pub(super) fn location_ids_in(
    connection: &Connection,
    circle: &GeoCircle,
) -> Result<HashSet<LocationId>, StoreError> {
    Ok(candidates(connection, circle)?
        .into_iter()
        .filter(|location| circle.contains(location.latitude, location.longitude))
        .map(|location| location.id)
        .collect())
}

/// The same ids as a JSON array, for `IN (SELECT value FROM json_each(?))`.
pub(super) fn location_ids_json(
    connection: &Connection,
    circle: &GeoCircle,
) -> Result<String, StoreError> {
    let ids: Vec<String> = location_ids_in(connection, circle)?
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    serde_json::to_string(&ids).map_err(|error| StoreError::Internal(error.to_string()))
}

impl SqliteStore {
    pub(super) fn near_locations(
        &self,
        circle: &GeoCircle,
        limit: usize,
    ) -> Result<Vec<NearLocation>, StoreError> {
        let found = candidates(&*self.reader()?, circle)?;
        let mut near: Vec<NearLocation> = found
            .into_iter()
            .filter_map(|location| {
                let distance_km = circle.distance_to(location.latitude, location.longitude);
                (distance_km <= circle.radius_km).then_some(NearLocation {
                    location,
                    distance_km,
                })
            })
            .collect();
        near.sort_by(|left, right| {
            left.distance_km
                .total_cmp(&right.distance_km)
                .then_with(|| left.location.id.cmp(&right.location.id))
        });
        near.truncate(limit);
        Ok(near)
    }
}
