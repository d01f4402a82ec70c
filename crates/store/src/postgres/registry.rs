//! Locations, sensors and tokens in the PostgreSQL store, and the in-memory sensor cache the
//! ingest path validates against (loaded at open, refreshed on every registry write).

use std::sync::Arc;

use tokio_postgres::Row;

use audrey_model::{FieldError, Location, LocationId, Millis, Reason, Sensor, SensorId};

use super::errors::from_pg;
use super::geo::location_ids_in;
use super::{PostgresStore, poisoned};
use crate::{LocationFilter, Page, SensorFilter, StoreError, StoredToken};

pub(super) const LOCATION_COLUMNS: &str = "id, name, city, country, latitude, longitude, \
                                           altitude, timezone, iata, icao, created_at, \
                                           updated_at, deleted_at, attributes";
const SENSOR_COLUMNS: &str = "id, name, kind, location_id, metrics, expected_interval_seconds, \
                              created_at, updated_at, deleted_at";
const TOKEN_COLUMNS: &str = "id, hash, name, scopes, sensor_id, created_at, revoked_at";

/// Locks the row of `table` with this id, if there is one (`SELECT ... FOR UPDATE`), so a
/// concurrent writer cannot slip between a check and the write; answers whether it exists.
async fn lock_row(
    transaction: &tokio_postgres::Transaction<'_>,
    table: &'static str,
    id: &str,
) -> Result<bool, StoreError> {
    Ok(transaction
        .query_opt(
            &format!("SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(from_pg)?
        .is_some())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("stored registry row has a bad {what}"))
}

pub(super) fn location_from_row(row: &Row) -> Result<Location, StoreError> {
    let get = |error| from_pg(error);
    let id: &str = row.try_get(0).map_err(get)?;
    let attributes: &str = row.try_get(13).map_err(get)?;
    Ok(Location {
        id: LocationId::parse(id).map_err(|_| corrupt("location id"))?,
        name: row.try_get(1).map_err(get)?,
        city: row.try_get(2).map_err(get)?,
        country: row.try_get(3).map_err(get)?,
        latitude: row.try_get(4).map_err(get)?,
        longitude: row.try_get(5).map_err(get)?,
        altitude: row.try_get(6).map_err(get)?,
        timezone: row.try_get(7).map_err(get)?,
        iata: row.try_get(8).map_err(get)?,
        icao: row.try_get(9).map_err(get)?,
        created_at: Millis(row.try_get(10).map_err(get)?),
        updated_at: Millis(row.try_get(11).map_err(get)?),
        deleted_at: row.try_get::<_, Option<i64>>(12).map_err(get)?.map(Millis),
        attributes: serde_json::from_str(attributes).map_err(|_| corrupt("attributes"))?,
    })
}

/// A location's attributes as stored: JSON object text, keys in the map's order.
pub(super) fn attributes_json(location: &Location) -> Result<String, StoreError> {
    serde_json::to_string(&location.attributes)
        .map_err(|error| StoreError::Internal(format!("encoding attributes: {error}")))
}

fn sensor_from_row(row: &Row) -> Result<Sensor, StoreError> {
    let get = |error| from_pg(error);
    let id: &str = row.try_get(0).map_err(get)?;
    let location: &str = row.try_get(3).map_err(get)?;
    let metrics: &str = row.try_get(4).map_err(get)?;
    let interval: Option<i64> = row.try_get(5).map_err(get)?;
    Ok(Sensor {
        id: SensorId::parse(id).map_err(|_| corrupt("sensor id"))?,
        name: row.try_get(1).map_err(get)?,
        kind: row.try_get(2).map_err(get)?,
        location_id: LocationId::parse(location).map_err(|_| corrupt("location id"))?,
        metrics: serde_json::from_str(metrics).map_err(|_| corrupt("metrics"))?,
        expected_interval_seconds: interval
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("expected interval"))?,
        created_at: Millis(row.try_get(6).map_err(get)?),
        updated_at: Millis(row.try_get(7).map_err(get)?),
        deleted_at: row.try_get::<_, Option<i64>>(8).map_err(get)?.map(Millis),
    })
}

fn token_from_row(row: &Row) -> Result<StoredToken, StoreError> {
    let get = |error| from_pg(error);
    let scopes: &str = row.try_get(3).map_err(get)?;
    Ok(StoredToken {
        id: row.try_get(0).map_err(get)?,
        hash: row.try_get(1).map_err(get)?,
        name: row.try_get(2).map_err(get)?,
        scopes: scopes
            .split(',')
            .filter(|scope| !scope.is_empty())
            .map(str::to_string)
            .collect(),
        sensor_id: row.try_get(4).map_err(get)?,
        created_at: Millis(row.try_get(5).map_err(get)?),
        revoked_at: row.try_get::<_, Option<i64>>(6).map_err(get)?.map(Millis),
    })
}

/// Takes one more than `limit` rows and turns the surplus into a next-page cursor.
fn paginate<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        key(&items[limit - 1])
    });
    Page { items, next_cursor }
}

impl PostgresStore {
    pub(super) fn reload_sensor_cache(&self) -> Result<(), StoreError> {
        let rows = self.block_on(async {
            let client = self.client().await?;
            client
                .query(&format!("SELECT {SENSOR_COLUMNS} FROM sensors"), &[])
                .await
                .map_err(from_pg)
        })?;
        let sensors = rows
            .iter()
            .map(sensor_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut cache = self.sensors.write().map_err(poisoned)?;
        cache.clear();
        for sensor in sensors {
            cache.insert(Arc::from(sensor.id.as_str()), Arc::new(sensor));
        }
        Ok(())
    }

    pub(super) fn cached(&self, id: &str) -> Option<Arc<Sensor>> {
        self.sensors.read().ok()?.get(id).cloned()
    }

    pub(super) fn get_location(&self, id: &LocationId) -> Result<Option<Location>, StoreError> {
        let row = self.block_on(async {
            let client = self.client().await?;
            client
                .query_opt(
                    &format!("SELECT {LOCATION_COLUMNS} FROM locations WHERE id = $1"),
                    &[&id.as_str()],
                )
                .await
                .map_err(from_pg)
        })?;
        row.as_ref().map(location_from_row).transpose()
    }

    pub(super) fn list_locations(
        &self,
        filter: &LocationFilter,
    ) -> Result<Page<Location>, StoreError> {
        let limit = filter.limit.max(1);
        let after = filter.after.clone().unwrap_or_default();
        let fetch = limit as i64 + 1;
        let rows = self.block_on(async {
            let client = self.client().await?;
            client
                .query(
                    &format!(
                        "SELECT {LOCATION_COLUMNS} FROM locations
                         WHERE id > $1 AND ($2::text IS NULL OR country = $2)
                           AND ($3::text IS NULL OR city = $3)
                           AND ($4 OR deleted_at IS NULL)
                         ORDER BY id LIMIT $5"
                    ),
                    &[
                        &after,
                        &filter.country,
                        &filter.city,
                        &filter.include_deleted,
                        &fetch,
                    ],
                )
                .await
                .map_err(from_pg)
        })?;
        let items = rows
            .iter()
            .map(location_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, limit, |location| location.id.to_string()))
    }

    pub(super) fn write_location(
        &self,
        location: &Location,
        must_be_new: bool,
    ) -> Result<bool, StoreError> {
        let attributes = attributes_json(location)?;
        self.block_on(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(from_pg)?;
            // Lock the row (if any) so a concurrent create cannot slip between check and write.
            let exists = lock_row(&transaction, "locations", location.id.as_str()).await?;
            if exists && must_be_new {
                return Err(StoreError::Conflict(format!(
                    "location {} already exists",
                    location.id
                )));
            }
            transaction
                .execute(
                    &format!(
                        "INSERT INTO locations ({LOCATION_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                         ON CONFLICT (id) DO UPDATE SET name = $2, city = $3, country = $4,
                            latitude = $5, longitude = $6, altitude = $7, timezone = $8,
                            iata = $9, icao = $10, updated_at = $12, deleted_at = $13,
                            attributes = $14"
                    ),
                    &[
                        &location.id.as_str(),
                        &location.name,
                        &location.city,
                        &location.country,
                        &location.latitude,
                        &location.longitude,
                        &location.altitude,
                        &location.timezone,
                        &location.iata,
                        &location.icao,
                        &location.created_at.0,
                        &location.updated_at.0,
                        &location.deleted_at.map(|at| at.0),
                        &attributes,
                    ],
                )
                .await
                .map_err(|error| conflict_means_exists(error, "location", location.id.as_str()))?;
            transaction.commit().await.map_err(from_pg)?;
            Ok(!exists)
        })
    }

    pub(super) fn soft_delete_location(
        &self,
        id: &LocationId,
        at: Millis,
    ) -> Result<(), StoreError> {
        self.block_on(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(from_pg)?;
            // Lock the location first so no sensor is attached to it while we count.
            lock_row(&transaction, "locations", id.as_str()).await?;
            let active_sensors: i64 = transaction
                .query_one(
                    "SELECT COUNT(*) FROM sensors WHERE location_id = $1 AND deleted_at IS NULL",
                    &[&id.as_str()],
                )
                .await
                .map_err(from_pg)?
                .get(0);
            if active_sensors > 0 {
                return Err(StoreError::Conflict(format!(
                    "location {id} still has {active_sensors} sensor(s); delete or move them first"
                )));
            }
            let changed = transaction
                .execute(
                    "UPDATE locations SET deleted_at = $2, updated_at = $2
                     WHERE id = $1 AND deleted_at IS NULL",
                    &[&id.as_str(), &at.0],
                )
                .await
                .map_err(from_pg)?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("location {id}")));
            }
            transaction.commit().await.map_err(from_pg)?;
            Ok(())
        })
    }

    pub(super) fn get_sensor(&self, id: &SensorId) -> Result<Option<Sensor>, StoreError> {
        let row = self.block_on(async {
            let client = self.client().await?;
            client
                .query_opt(
                    &format!("SELECT {SENSOR_COLUMNS} FROM sensors WHERE id = $1"),
                    &[&id.as_str()],
                )
                .await
                .map_err(from_pg)
        })?;
        row.as_ref().map(sensor_from_row).transpose()
    }

    pub(super) fn list_sensors(&self, filter: &SensorFilter) -> Result<Page<Sensor>, StoreError> {
        let limit = filter.limit.max(1);
        let after = filter.after.clone().unwrap_or_default();
        let fetch = limit as i64 + 1;
        let rows = self.block_on(async {
            let client = self.client().await?;
            // A radius filter becomes the set of live locations inside the circle.
            let near = match &filter.near {
                Some(circle) => Some(location_ids_in(&**client, circle).await?),
                None => None,
            };
            client
                .query(
                    &format!(
                        "SELECT {SENSOR_COLUMNS} FROM sensors
                         WHERE id > $1 AND ($2::text IS NULL OR location_id = $2)
                           AND ($3::text IS NULL OR kind = $3)
                           AND ($4 OR deleted_at IS NULL)
                           AND ($6::text[] IS NULL OR location_id = ANY($6))
                         ORDER BY id LIMIT $5"
                    ),
                    &[
                        &after,
                        &filter.location,
                        &filter.kind,
                        &filter.include_deleted,
                        &fetch,
                        &near,
                    ],
                )
                .await
                .map_err(from_pg)
        })?;
        let items = rows
            .iter()
            .map(sensor_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, limit, |sensor| sensor.id.to_string()))
    }

    pub(super) fn write_sensor(
        &self,
        sensor: &Sensor,
        must_be_new: bool,
    ) -> Result<bool, StoreError> {
        let metrics = serde_json::to_string(&sensor.metrics)
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        let interval = sensor.expected_interval_seconds.map(i64::from);
        let created = self.block_on(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(from_pg)?;
            // FOR SHARE: the location cannot be soft-deleted until this sensor is written.
            let location_active = transaction
                .query_opt(
                    "SELECT 1 FROM locations WHERE id = $1 AND deleted_at IS NULL FOR SHARE",
                    &[&sensor.location_id.as_str()],
                )
                .await
                .map_err(from_pg)?
                .is_some();
            if !location_active {
                return Err(StoreError::Invalid(vec![FieldError::new(
                    "location_id",
                    Reason::UnknownLocation,
                    format!("no location has id {:?}", sensor.location_id.as_str()),
                )]));
            }
            let exists = lock_row(&transaction, "sensors", sensor.id.as_str()).await?;
            if exists && must_be_new {
                return Err(StoreError::Conflict(format!(
                    "sensor {} already exists",
                    sensor.id
                )));
            }
            transaction
                .execute(
                    &format!(
                        "INSERT INTO sensors ({SENSOR_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (id) DO UPDATE SET name = $2, kind = $3, location_id = $4,
                            metrics = $5, expected_interval_seconds = $6, updated_at = $8,
                            deleted_at = $9"
                    ),
                    &[
                        &sensor.id.as_str(),
                        &sensor.name,
                        &sensor.kind,
                        &sensor.location_id.as_str(),
                        &metrics,
                        &interval,
                        &sensor.created_at.0,
                        &sensor.updated_at.0,
                        &sensor.deleted_at.map(|at| at.0),
                    ],
                )
                .await
                .map_err(|error| conflict_means_exists(error, "sensor", sensor.id.as_str()))?;
            transaction.commit().await.map_err(from_pg)?;
            Ok(!exists)
        })?;
        self.sensors
            .write()
            .map_err(poisoned)?
            .insert(Arc::from(sensor.id.as_str()), Arc::new(sensor.clone()));
        Ok(created)
    }

    pub(super) fn soft_delete_sensor(&self, id: &SensorId, at: Millis) -> Result<(), StoreError> {
        let changed = self.block_on(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE sensors SET deleted_at = $2, updated_at = $2
                     WHERE id = $1 AND deleted_at IS NULL",
                    &[&id.as_str(), &at.0],
                )
                .await
                .map_err(from_pg)
        })?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("sensor {id}")));
        }
        let mut cache = self.sensors.write().map_err(poisoned)?;
        if let Some(cached) = cache.get_mut(id.as_str()) {
            let mut deleted = (**cached).clone();
            deleted.deleted_at = Some(at);
            deleted.updated_at = at;
            *cached = Arc::new(deleted);
        }
        Ok(())
    }

    pub(super) fn insert_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        let scopes = token.scopes.join(",");
        self.block_on(async {
            let client = self.client().await?;
            client
                .execute(
                    &format!(
                        "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    ),
                    &[
                        &token.id,
                        &token.hash,
                        &token.name,
                        &scopes,
                        &token.sensor_id,
                        &token.created_at.0,
                        &token.revoked_at.map(|at| at.0),
                    ],
                )
                .await
                .map_err(from_pg)?;
            Ok(())
        })
    }

    pub(super) fn list_tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        let rows = self.block_on(async {
            let client = self.client().await?;
            client
                .query(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"),
                    &[],
                )
                .await
                .map_err(from_pg)
        })?;
        rows.iter().map(token_from_row).collect()
    }

    pub(super) fn find_token(&self, hash: &str) -> Result<Option<StoredToken>, StoreError> {
        let row = self.block_on(async {
            let client = self.client().await?;
            client
                .query_opt(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"),
                    &[&hash],
                )
                .await
                .map_err(from_pg)
        })?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub(super) fn mark_token_revoked(&self, id: &str, at: Millis) -> Result<(), StoreError> {
        let changed = self.block_on(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                    &[&id, &at.0],
                )
                .await
                .map_err(from_pg)
        })?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }
}

impl PostgresStore {
    pub(super) fn remove_location(&self, id: &LocationId) -> Result<(), StoreError> {
        self.block_on(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(from_pg)?;
            // Lock the location so no sensor is attached to it while we count.
            let exists = lock_row(&transaction, "locations", id.as_str()).await?;
            if !exists {
                return Err(StoreError::NotFound(format!("location {id}")));
            }
            let sensors: i64 = transaction
                .query_one(
                    "SELECT COUNT(*) FROM sensors WHERE location_id = $1",
                    &[&id.as_str()],
                )
                .await
                .map_err(from_pg)?
                .get(0);
            if sensors > 0 {
                return Err(StoreError::Conflict(format!(
                    "location {id} is still named by {sensors} sensor(s), deleted ones included; \
                     purge them first"
                )));
            }
            transaction
                .execute("DELETE FROM locations WHERE id = $1", &[&id.as_str()])
                .await
                .map_err(from_pg)?;
            transaction.commit().await.map_err(from_pg)?;
            Ok(())
        })
    }

    pub(super) fn remove_sensor(&self, id: &SensorId) -> Result<(), StoreError> {
        let changed = self.block_on(async {
            let client = self.client().await?;
            client
                .execute("DELETE FROM sensors WHERE id = $1", &[&id.as_str()])
                .await
                .map_err(from_pg)
        })?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("sensor {id}")));
        }
        self.sensors.write().map_err(poisoned)?.remove(id.as_str());
        Ok(())
    }

    pub(super) fn update_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        let scopes = token.scopes.join(",");
        let changed = self.block_on(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE tokens SET name = $2, scopes = $3, sensor_id = $4 WHERE id = $1",
                    &[&token.id, &token.name, &scopes, &token.sensor_id],
                )
                .await
                .map_err(from_pg)
        })?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("token {}", token.id)));
        }
        Ok(())
    }

    pub(super) fn remove_token(&self, id: &str) -> Result<(), StoreError> {
        let changed = self.block_on(async {
            let client = self.client().await?;
            client
                .execute("DELETE FROM tokens WHERE id = $1", &[&id])
                .await
                .map_err(from_pg)
        })?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }
}

/// Two creators racing past the existence check: the loser gets the same 409 as if it had
/// checked a moment later.
fn conflict_means_exists(error: tokio_postgres::Error, what: &str, id: &str) -> StoreError {
    match from_pg(error) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("{what} {id} already exists")),
        other => other,
    }
}
