//! Reading questions asked the same way by every transport.

use audrey_model::{Reading, SensorId};
use audrey_store::{ReadingQuery, SensorCounters, Store};

use crate::ApiError;

fn require_sensor(store: &dyn Store, sensor: &SensorId) -> Result<(), ApiError> {
    match store.sensor(sensor)? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("sensor {sensor}"))),
    }
}

/// The sensor's newest reading by `read_at` (the measurement time, not arrival).
pub(crate) fn latest_reading(store: &dyn Store, sensor: SensorId) -> Result<Reading, ApiError> {
    require_sensor(store, &sensor)?;
    let query = ReadingQuery {
        sensor: Some(sensor.clone()),
        limit: 1,
        ..Default::default()
    };
    let newest = store.readings(&query)?.items.into_iter().next();
    newest.ok_or_else(|| ApiError::not_found(format!("a reading of sensor {sensor}")))
}

pub(crate) fn sensor_counters(
    store: &dyn Store,
    sensor: SensorId,
) -> Result<SensorCounters, ApiError> {
    require_sensor(store, &sensor)?;
    Ok(store.counters(&sensor)?)
}
