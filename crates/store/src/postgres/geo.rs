//! Radius searches in the PostgreSQL store, the same way as on SQLite: a latitude/longitude
//! box in SQL (the `locations_position` index) narrows the candidates, the exact great-circle
//! distance in Rust ([`audrey_model::distance_km`]) decides, so both backends agree to the
//! last bit. PostGIS is not needed. Must never decide "inside" in SQL.

use tokio_postgres::GenericClient;

use audrey_model::{GeoCircle, Location};

use super::PostgresStore;
use super::errors::from_pg;
use super::registry::{LOCATION_COLUMNS, location_from_row};
use crate::{NearLocation, StoreError};

/// Live locations inside the circle's bounding box (a superset of the circle).
async fn candidates(
    client: &impl GenericClient,
    circle: &GeoCircle,
) -> Result<Vec<Location>, StoreError> {
    let bounds = circle.bounding_box();
    // A box that wraps the antimeridian is two longitude ranges: west..180 and -180..east.
    let rows = client
        .query(
            &format!(
                "SELECT {LOCATION_COLUMNS} FROM locations
                 WHERE latitude BETWEEN $1::float8 AND $2::float8
                   AND (CASE WHEN $3::float8 <= $4::float8
                             THEN longitude BETWEEN $3::float8 AND $4::float8
                             ELSE longitude >= $3::float8 OR longitude <= $4::float8 END)
                   AND deleted_at IS NULL"
            ),
            &[&bounds.south, &bounds.north, &bounds.west, &bounds.east],
        )
        .await
        .map_err(from_pg)?;
    rows.iter().map(location_from_row).collect()
}

/// The ids of live locations inside the circle, for `location_id = ANY($n)` filters.
pub(super) async fn location_ids_in(
    client: &impl GenericClient,
    circle: &GeoCircle,
) -> Result<Vec<String>, StoreError> {
    Ok(candidates(client, circle)
        .await?
        .into_iter()
        .filter(|location| circle.contains(location.latitude, location.longitude))
        .map(|location| location.id.to_string())
        .collect())
}

impl PostgresStore {
    pub(super) fn near_locations(
        &self,
        circle: &GeoCircle,
        limit: usize,
    ) -> Result<Vec<NearLocation>, StoreError> {
        let found = self.block_on(async {
            let client = self.client().await?;
            candidates(&**client, circle).await
        })?;
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
