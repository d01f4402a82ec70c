//! Locations, sensors and tokens in the SQLite store, and the in-memory sensor cache that
//! the ingest path validates against.

use std::sync::Arc;

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use audrey_model::{FieldError, Location, LocationId, Millis, Reason, Sensor, SensorId};

use super::geo::location_ids_json;
use super::{SqliteStore, poisoned};
use crate::{LocationFilter, Page, SensorFilter, StoreError, StoredToken};

pub(super) const LOCATION_COLUMNS: &str = "id, name, city, country, latitude, longitude, altitude, \
                                timezone, iata, icao, created_at, updated_at, deleted_at, attributes";
const SENSOR_COLUMNS: &str = "id, name, kind, location_id, metrics, expected_interval_seconds, created_at, updated_at, deleted_at";
const TOKEN_COLUMNS: &str = "id, hash, name, scopes, sensor_id, created_at, revoked_at";

fn corrupt(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        what.to_string().into(),
    )
}

pub(super) fn location_from_row(row: &Row<'_>) -> rusqlite::Result<Location> {
    let id: String = row.get(0)?;
    let attributes: String = row.get(13)?;
    Ok(Location {
        id: LocationId::parse(&id).map_err(|_| corrupt(0, "location id"))?,
        name: row.get(1)?,
        city: row.get(2)?,
        country: row.get(3)?,
        latitude: row.get(4)?,
        longitude: row.get(5)?,
        altitude: row.get(6)?,
        timezone: row.get(7)?,
        iata: row.get(8)?,
        icao: row.get(9)?,
        created_at: Millis(row.get(10)?),
        updated_at: Millis(row.get(11)?),
        deleted_at: row.get::<_, Option<i64>>(12)?.map(Millis),
        attributes: serde_json::from_str(&attributes).map_err(|_| corrupt(13, "attributes"))?,
    })
}

fn sensor_from_row(row: &Row<'_>) -> rusqlite::Result<Sensor> {
    let id: String = row.get(0)?;
    let location: String = row.get(3)?;
    let metrics: String = row.get(4)?;
    Ok(Sensor {
        id: SensorId::parse(&id).map_err(|_| corrupt(0, "sensor id"))?,
        name: row.get(1)?,
        kind: row.get(2)?,
        location_id: LocationId::parse(&location).map_err(|_| corrupt(3, "location id"))?,
        metrics: serde_json::from_str(&metrics).map_err(|_| corrupt(4, "metrics"))?,
        expected_interval_seconds: row.get(5)?,
        created_at: Millis(row.get(6)?),
        updated_at: Millis(row.get(7)?),
        deleted_at: row.get::<_, Option<i64>>(8)?.map(Millis),
    })
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<StoredToken> {
    let scopes: String = row.get(3)?;
    Ok(StoredToken {
        id: row.get(0)?,
        hash: row.get(1)?,
        name: row.get(2)?,
        scopes: scopes
            .split(',')
            .filter(|scope| !scope.is_empty())
            .map(str::to_string)
            .collect(),
        sensor_id: row.get(4)?,
        created_at: Millis(row.get(5)?),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(Millis),
    })
}

pub(super) fn attributes_json(location: &Location) -> Result<String, StoreError> {
    serde_json::to_string(&location.attributes)
        .map_err(|error| StoreError::Internal(error.to_string()))
}

/// Takes one more than `limit` rows and turns the surplus into a next-page cursor.
fn paginate<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        key(&items[limit - 1])
    });
    Page { items, next_cursor }
}

impl SqliteStore {
    pub(super) fn reload_sensor_cache(&self) -> Result<(), StoreError> {
        let reader = self.reader()?;
        let mut statement = reader.prepare(&format!("SELECT {SENSOR_COLUMNS} FROM sensors"))?;
        let sensors = statement
            .query_map([], sensor_from_row)?
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
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {LOCATION_COLUMNS} FROM locations WHERE id = ?1"
        ))?;
        Ok(statement
            .query_row([id.as_str()], location_from_row)
            .optional()?)
    }

    pub(super) fn list_locations(
        &self,
        filter: &LocationFilter,
    ) -> Result<Page<Location>, StoreError> {
        let limit = filter.limit.max(1);
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {LOCATION_COLUMNS} FROM locations
             WHERE id > ?1 AND (?2 IS NULL OR country = ?2) AND (?3 IS NULL OR city = ?3)
               AND (?4 OR deleted_at IS NULL)
             ORDER BY id LIMIT ?5"
        ))?;
        let rows = statement.query_map(
            params![
                filter.after.as_deref().unwrap_or(""),
                filter.country,
                filter.city,
                filter.include_deleted,
                limit as i64 + 1
            ],
            location_from_row,
        )?;
        let items = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, limit, |location| location.id.to_string()))
    }

    pub(super) fn write_location(
        &self,
        location: &Location,
        must_be_new: bool,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer()?;
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists = transaction
            .query_row(
                "SELECT 1 FROM locations WHERE id = ?1",
                [location.id.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists && must_be_new {
            return Err(StoreError::Conflict(format!(
                "location {} already exists",
                location.id
            )));
        }
        transaction.execute(
            &format!(
                "INSERT INTO locations ({LOCATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, city = ?3, country = ?4, latitude = ?5,
                    longitude = ?6, altitude = ?7, timezone = ?8, iata = ?9, icao = ?10,
                    updated_at = ?12, deleted_at = ?13, attributes = ?14"
            ),
            params![
                location.id.as_str(),
                location.name,
                location.city,
                location.country,
                location.latitude,
                location.longitude,
                location.altitude,
                location.timezone,
                location.iata,
                location.icao,
                location.created_at.0,
                location.updated_at.0,
                location.deleted_at.map(|at| at.0),
                attributes_json(location)?,
            ],
        )?;
        transaction.commit()?;
        Ok(!exists)
    }

    pub(super) fn soft_delete_location(
        &self,
        id: &LocationId,
        at: Millis,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer()?;
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let active_sensors: i64 = transaction.query_row(
            "SELECT COUNT(*) FROM sensors WHERE location_id = ?1 AND deleted_at IS NULL",
            [id.as_str()],
            |row| row.get(0),
        )?;
        if active_sensors > 0 {
            return Err(StoreError::Conflict(format!(
                "location {id} still has {active_sensors} sensor(s); delete or move them first"
            )));
        }
        let changed = transaction.execute(
            "UPDATE locations SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
            params![id.as_str(), at.0],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("location {id}")));
        }
        transaction.commit()?;
        Ok(())
    }

    pub(super) fn get_sensor(&self, id: &SensorId) -> Result<Option<Sensor>, StoreError> {
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {SENSOR_COLUMNS} FROM sensors WHERE id = ?1"
        ))?;
        Ok(statement
            .query_row([id.as_str()], sensor_from_row)
            .optional()?)
    }

    pub(super) fn list_sensors(&self, filter: &SensorFilter) -> Result<Page<Sensor>, StoreError> {
        let limit = filter.limit.max(1);
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {SENSOR_COLUMNS} FROM sensors
             WHERE id > ?1 AND (?2 IS NULL OR location_id = ?2) AND (?3 IS NULL OR kind = ?3)
               AND (?4 OR deleted_at IS NULL)
               AND (?6 IS NULL OR location_id IN (SELECT value FROM json_each(?6)))
             ORDER BY id LIMIT ?5"
        ))?;
        let near = match &filter.near {
            Some(circle) => Some(location_ids_json(&reader, circle)?),
            None => None,
        };
        let rows = statement.query_map(
            params![
                filter.after.as_deref().unwrap_or(""),
                filter.location,
                filter.kind,
                filter.include_deleted,
                limit as i64 + 1,
                near,
            ],
            sensor_from_row,
        )?;
        let items = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, limit, |sensor| sensor.id.to_string()))
    }

    pub(super) fn write_sensor(
        &self,
        sensor: &Sensor,
        must_be_new: bool,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer()?;
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let location_active = transaction
            .query_row(
                "SELECT 1 FROM locations WHERE id = ?1 AND deleted_at IS NULL",
                [sensor.location_id.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !location_active {
            return Err(StoreError::Invalid(vec![FieldError::new(
                "location_id",
                Reason::UnknownLocation,
                format!("no location has id {:?}", sensor.location_id.as_str()),
            )]));
        }
        let exists = transaction
            .query_row(
                "SELECT 1 FROM sensors WHERE id = ?1",
                [sensor.id.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists && must_be_new {
            return Err(StoreError::Conflict(format!(
                "sensor {} already exists",
                sensor.id
            )));
        }
        let metrics = serde_json::to_string(&sensor.metrics)
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        transaction.execute(
            &format!(
                "INSERT INTO sensors ({SENSOR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, kind = ?3, location_id = ?4, metrics = ?5,
                    expected_interval_seconds = ?6, updated_at = ?8, deleted_at = ?9"
            ),
            params![
                sensor.id.as_str(),
                sensor.name,
                sensor.kind,
                sensor.location_id.as_str(),
                metrics,
                sensor.expected_interval_seconds,
                sensor.created_at.0,
                sensor.updated_at.0,
                sensor.deleted_at.map(|at| at.0),
            ],
        )?;
        transaction.commit()?;
        self.sensors
            .write()
            .map_err(poisoned)?
            .insert(Arc::from(sensor.id.as_str()), Arc::new(sensor.clone()));
        Ok(!exists)
    }

    pub(super) fn soft_delete_sensor(&self, id: &SensorId, at: Millis) -> Result<(), StoreError> {
        let writer = self.writer()?;
        let changed = writer.execute(
            "UPDATE sensors SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
            params![id.as_str(), at.0],
        )?;
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
        let writer = self.writer()?;
        writer.execute(
            &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                token.id,
                token.hash,
                token.name,
                token.scopes.join(","),
                token.sensor_id,
                token.created_at.0,
                token.revoked_at.map(|at| at.0)
            ],
        )?;
        Ok(())
    }

    pub(super) fn list_tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
        ))?;
        let rows = statement.query_map([], token_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub(super) fn find_token(&self, hash: &str) -> Result<Option<StoredToken>, StoreError> {
        let reader = self.reader()?;
        let mut statement = reader.prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"
        ))?;
        Ok(statement.query_row([hash], token_from_row).optional()?)
    }

    pub(super) fn mark_token_revoked(&self, id: &str, at: Millis) -> Result<(), StoreError> {
        let writer = self.writer()?;
        let changed = writer.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, at.0],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    pub(super) fn remove_location(&self, id: &LocationId) -> Result<(), StoreError> {
        let mut writer = self.writer()?;
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let sensors: i64 = transaction.query_row(
            "SELECT COUNT(*) FROM sensors WHERE location_id = ?1",
            [id.as_str()],
            |row| row.get(0),
        )?;
        if sensors > 0 {
            return Err(StoreError::Conflict(format!(
                "location {id} is still named by {sensors} sensor(s), deleted ones included; \
                 purge them first"
            )));
        }
        let changed = transaction.execute("DELETE FROM locations WHERE id = ?1", [id.as_str()])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("location {id}")));
        }
        transaction.commit()?;
        Ok(())
    }

    pub(super) fn remove_sensor(&self, id: &SensorId) -> Result<(), StoreError> {
        let writer = self.writer()?;
        let changed = writer.execute("DELETE FROM sensors WHERE id = ?1", [id.as_str()])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("sensor {id}")));
        }
        self.sensors.write().map_err(poisoned)?.remove(id.as_str());
        Ok(())
    }

    pub(super) fn update_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        let writer = self.writer()?;
        let changed = writer.execute(
            "UPDATE tokens SET name = ?2, scopes = ?3, sensor_id = ?4 WHERE id = ?1",
            params![
                token.id,
                token.name,
                token.scopes.join(","),
                token.sensor_id
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("token {}", token.id)));
        }
        Ok(())
    }

    pub(super) fn remove_token(&self, id: &str) -> Result<(), StoreError> {
        let writer = self.writer()?;
        let changed = writer.execute("DELETE FROM tokens WHERE id = ?1", [id])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }
}
