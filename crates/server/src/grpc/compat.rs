//! The package-less `SensorService` that existing Python clients speak, served unchanged.
//!
//! Invalid input is never a transport error here: `save_reading` answers `success=false`
//! with a readable message. Readings go through the same pipeline as every other transport;
//! each carries one value under the metric name `value`.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use audrey_ingest::{IncomingItem, ItemOutcome, Payload};
use audrey_model::{LocationId, Millis, RawReading, ReadAtInput, Reading, ReadingId, SensorId};
use audrey_proto::compat;
use audrey_store::{Order, ReadingQuery, Store};

use super::{blocking, principal};
use crate::auth::Scope;
use crate::{ApiError, AppState};

/// `get_readings(0)` answers every reading up to this many.
const MAX_ITEMS: usize = 100_000;
const METRIC: &str = "value";

pub struct CompatApi {
    pub(crate) state: AppState,
    /// False only on the separately configured, trusted-network compatibility port.
    pub(crate) authenticate: bool,
}

impl CompatApi {
    async fn authorise<T>(&self, request: &Request<T>, scope: Scope) -> Result<(), Status> {
        if self.authenticate {
            principal(&self.state, request).await?.require(scope)?;
        }
        Ok(())
    }
}

fn failure(message: impl Into<String>) -> compat::BaseOperationResult {
    compat::BaseOperationResult {
        success: false,
        error_message: message.into(),
    }
}

fn success() -> compat::BaseOperationResult {
    compat::BaseOperationResult {
        success: true,
        error_message: String::new(),
    }
}

/// ISO 8601 with or without an offset; without one the time is UTC.
fn parse_read_at(text: &str) -> Option<Millis> {
    let text = text.trim();
    if let Ok(stamp) = text.parse::<jiff::Timestamp>() {
        return Some(Millis(stamp.as_millisecond()));
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| text.replacen(' ', "T", 1).parse())
        .ok()?;
    let zoned = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    Some(Millis(zoned.timestamp().as_millisecond()))
}

/// Registry facts behind the trust flags, looked up once per sensor/location per answer.
#[derive(Default)]
struct Trust {
    sensors: HashMap<SensorId, Option<LocationId>>,
    locations: HashMap<LocationId, bool>,
}

impl Trust {
    fn message(
        &mut self,
        store: &dyn Store,
        reading: &Reading,
    ) -> Result<compat::SensorReadingMessage, ApiError> {
        let sensor_location = match self.sensors.get(&reading.sensor_id) {
            Some(known) => known.clone(),
            None => {
                let found = store
                    .sensor(&reading.sensor_id)?
                    .filter(|sensor| sensor.deleted_at.is_none())
                    .map(|sensor| sensor.location_id);
                self.sensors
                    .insert(reading.sensor_id.clone(), found.clone());
                found
            }
        };
        let location_known = match self.locations.get(&reading.location_id) {
            Some(known) => *known,
            None => {
                let known = store
                    .location(&reading.location_id)?
                    .is_some_and(|location| location.deleted_at.is_none());
                self.locations.insert(reading.location_id.clone(), known);
                known
            }
        };
        let trusted = sensor_location.is_some();
        let accurate = sensor_location.as_ref() == Some(&reading.location_id);
        let held = [trusted, location_known, accurate]
            .iter()
            .filter(|holds| **holds)
            .count();
        Ok(compat::SensorReadingMessage {
            id: reading.id.to_string(),
            sensor_id: reading.sensor_id.to_string(),
            reading_location_id: reading.location_id.to_string(),
            reading_value: reading
                .values
                .get(METRIC)
                .or_else(|| reading.values.0.first().map(|(_, v)| *v))
                .unwrap_or(0.0) as f32,
            trusted_reading: trusted,
            location_known,
            location_accurate: accurate,
            is_processed: false,
            read_at: reading.read_at.to_rfc3339(),
            updated_at: reading.received_at.to_rfc3339(),
            received_at: reading.received_at.to_rfc3339(),
            overall_integrity: held as f32 / 3.0,
        })
    }
}

#[tonic::async_trait]
impl compat::sensor_service_server::SensorService for CompatApi {
    async fn save_reading(
        &self,
        request: Request<compat::NewSensorReadingSaveRequest>,
    ) -> Result<Response<compat::NewSensorReadingSaveResponse>, Status> {
        self.authorise(&request, Scope::Write).await?;
        let request = request.into_inner();
        let answer = |reading_id: String, result| {
            Ok(Response::new(compat::NewSensorReadingSaveResponse {
                reading_id,
                result: Some(result),
            }))
        };
        let Some(read_at) = parse_read_at(&request.read_at) else {
            return answer(
                String::new(),
                failure(format!(
                    "read_at: {:?} is not an ISO 8601 date and time",
                    request.read_at
                )),
            );
        };
        let payload = format!(
            "{{\"sensor_id\":{:?},\"reading_location_id\":{:?},\"reading_value\":{},\"read_at\":{:?}}}",
            request.sensor_id, request.reading_location_id, request.reading_value, request.read_at
        );
        let location =
            (!request.reading_location_id.is_empty()).then_some(request.reading_location_id);
        let raw = RawReading::new(
            request.sensor_id,
            location,
            ReadAtInput::EpochMillis(read_at.0),
            [(METRIC.to_string(), f64::from(request.reading_value))],
            None,
        );
        let item = IncomingItem {
            parsed: Ok(raw),
            payload: Payload::whole(payload),
        };
        match self.state.pipeline.submit(vec![item], false, None).await {
            Ok(outcomes) => match outcomes.into_iter().next() {
                Some(ItemOutcome::Accepted(id) | ItemOutcome::Duplicate(id)) => {
                    answer(id.to_string(), success())
                }
                Some(ItemOutcome::Rejected(errors)) => {
                    let message = errors
                        .iter()
                        .map(|error| format!("{}: {}", error.path, error.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    answer(String::new(), failure(message))
                }
                None => answer(String::new(), failure("nothing was stored")),
            },
            Err(error) => answer(String::new(), failure(ApiError::from(error).message)),
        }
    }

    async fn get_readings(
        &self,
        request: Request<compat::RequestLimiter>,
    ) -> Result<Response<compat::SensorReadingFetchMultiItemResponse>, Status> {
        self.authorise(&request, Scope::Read).await?;
        let limit = request.into_inner().limit;
        let (order, wanted) = match limit {
            0 => (Order::Oldest, MAX_ITEMS),
            positive if positive > 0 => (
                Order::Oldest,
                (positive as u64).min(MAX_ITEMS as u64) as usize,
            ),
            negative => (
                Order::Newest,
                (negative.unsigned_abs()).min(MAX_ITEMS as u64) as usize,
            ),
        };
        let items = blocking(&self.state, move |store| {
            let mut trust = Trust::default();
            let mut items = Vec::new();
            let mut query = ReadingQuery {
                order,
                limit: wanted.min(10_000),
                ..Default::default()
            };
            loop {
                let page = store.readings(&query)?;
                for reading in &page.items {
                    items.push(trust.message(store, reading)?);
                }
                let next = page
                    .next_cursor
                    .as_deref()
                    .map(audrey_store::Cursor::decode);
                match next {
                    Some(Ok(cursor)) if items.len() < wanted => {
                        query.after = Some(cursor);
                        query.limit = (wanted - items.len()).min(10_000);
                    }
                    _ => return Ok(items),
                }
            }
        })
        .await?;
        Ok(Response::new(compat::SensorReadingFetchMultiItemResponse {
            item_count: items.len() as f64,
            items,
            result: Some(success()),
        }))
    }

    async fn get_reading(
        &self,
        request: Request<compat::SensorReadingFetchSingleItemRequest>,
    ) -> Result<Response<compat::SensorReadingFetchSingleItemResponse>, Status> {
        self.authorise(&request, Scope::Read).await?;
        let wanted = request.into_inner().reading_id;
        let absent = compat::BaseOperationResult {
            success: true,
            error_message: format!("no sensor reading found with id: '{wanted}'"),
        };
        let Ok(id) = ReadingId::parse(&wanted) else {
            return Ok(Response::new(
                compat::SensorReadingFetchSingleItemResponse {
                    item: None,
                    result: Some(absent),
                },
            ));
        };
        let item = blocking(&self.state, move |store| {
            store
                .reading(id)?
                .map(|reading| Trust::default().message(store, &reading))
                .transpose()
        })
        .await?;
        let result = if item.is_some() { success() } else { absent };
        Ok(Response::new(
            compat::SensorReadingFetchSingleItemResponse {
                item,
                result: Some(result),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_without_an_offset_is_utc() {
        assert_eq!(
            parse_read_at("2024-05-01T12:00:00"),
            parse_read_at("2024-05-01T12:00:00Z")
        );
        assert_eq!(
            parse_read_at("2024-05-01 12:00:00"),
            parse_read_at("2024-05-01T12:00:00+00:00")
        );
    }

    #[test]
    fn an_offset_is_honoured_and_garbage_is_refused() {
        assert_eq!(
            parse_read_at("2024-05-01T14:00:00+02:00"),
            parse_read_at("2024-05-01T12:00:00Z")
        );
        assert_eq!(parse_read_at("yesterday"), None);
    }
}
