//! Between protobuf messages and domain types. No rules here: validation is the model's.

use audrey_ingest::{IncomingItem, ItemOutcome, Payload};
use audrey_model::{
    FieldError, Location, LocationInput, MetricName, MetricSpec, RawReading, ReadAtInput, Reading,
    Reason, Sensor, SensorInput,
};
use audrey_proto::v1;

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// The JSON text quarantine keeps for a protobuf reading, written straight from borrowed
/// fields (no intermediate `serde_json::Value` tree). Keys in alphabetical order; an unset
/// location or message id is `""`, as protobuf sent it.
#[derive(serde::Serialize)]
struct QuarantineText<'a, V: serde::Serialize> {
    location_id: &'a str,
    message_id: &'a str,
    read_at: Option<ReadAtText<'a>>,
    sensor_id: &'a str,
    values: V,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum ReadAtText<'a> {
    Millis(i64),
    Text(&'a str),
}

impl<'a> ReadAtText<'a> {
    fn of(read_at: &'a ReadAtInput) -> ReadAtText<'a> {
        match read_at {
            ReadAtInput::EpochMillis(millis) => ReadAtText::Millis(*millis),
            ReadAtInput::Text(text) => ReadAtText::Text(text),
        }
    }
}

/// A reading's values as a JSON object with sorted keys, so the text is stable.
struct SortedValues<'a>(&'a std::collections::HashMap<String, f64>);

impl serde::Serialize for SortedValues<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&String, &f64)> = self.0.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serializer.collect_map(entries)
    }
}

impl<V: serde::Serialize> QuarantineText<'_, V> {
    fn to_json(&self) -> String {
        // Serialising borrowed strings and finite-or-not f64s cannot fail (non-finite
        // numbers are written as null, as serde_json does).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The quarantine text of a protobuf reading that parsed, written from the parsed form only
/// when the pipeline rejects it: the same text as the message's fields would give (its values
/// are already sorted by name).
fn quarantine_text(raw: &RawReading) -> String {
    QuarantineText {
        location_id: raw.location_id.as_deref().unwrap_or(""),
        message_id: raw.message_id.as_deref().unwrap_or(""),
        read_at: Some(ReadAtText::of(&raw.read_at)),
        sensor_id: &raw.sensor_id,
        values: &raw.values,
    }
    .to_json()
}

/// A protobuf reading as a pipeline item. Its quarantine text is written only if it is
/// rejected; every reading paid for it when it was built here for all of them.
pub(crate) fn incoming(input: v1::ReadingInput) -> IncomingItem {
    let read_at = match input.read_time {
        Some(v1::reading_input::ReadTime::ReadAtMs(millis)) => ReadAtInput::EpochMillis(millis),
        Some(v1::reading_input::ReadTime::ReadAt(text)) => ReadAtInput::Text(text),
        None => {
            let payload = QuarantineText {
                location_id: &input.location_id,
                message_id: &input.message_id,
                read_at: None,
                sensor_id: &input.sensor_id,
                values: SortedValues(&input.values),
            }
            .to_json();
            return IncomingItem {
                parsed: Err(FieldError::new(
                    "read_at",
                    Reason::MissingField,
                    "set read_at_ms or read_at",
                )),
                payload: Payload::whole(payload),
            };
        }
    };
    IncomingItem {
        parsed: Ok(RawReading::new(
            input.sensor_id,
            non_empty(input.location_id),
            read_at,
            input.values,
            non_empty(input.message_id),
        )),
        payload: Payload::written_from_reading(quarantine_text),
    }
}

pub(crate) fn reading(reading: &Reading) -> v1::Reading {
    v1::Reading {
        id: reading.id.to_string(),
        sensor_id: reading.sensor_id.to_string(),
        location_id: reading.location_id.to_string(),
        read_at_ms: reading.read_at.0,
        received_at_ms: reading.received_at.0,
        values: reading
            .values
            .0
            .iter()
            .map(|(name, value)| (name.to_string(), *value))
            .collect(),
        message_id: reading
            .message_id
            .as_ref()
            .map(|id| id.as_str().to_string())
            .unwrap_or_default(),
    }
}

pub(crate) fn violations(errors: Vec<FieldError>) -> Vec<v1::FieldViolation> {
    errors
        .into_iter()
        .map(|error| v1::FieldViolation {
            path: error.path,
            reason: error.reason.as_str().to_string(),
            message: error.message,
        })
        .collect()
}

pub(crate) fn result(outcome: ItemOutcome) -> v1::ReadingResult {
    use v1::reading_result::Status;
    match outcome {
        ItemOutcome::Accepted(id) => v1::ReadingResult {
            status: Status::Accepted as i32,
            id: id.to_string(),
            errors: Vec::new(),
        },
        ItemOutcome::Duplicate(id) => v1::ReadingResult {
            status: Status::Duplicate as i32,
            id: id.to_string(),
            errors: Vec::new(),
        },
        ItemOutcome::Rejected(errors) => v1::ReadingResult {
            status: Status::Rejected as i32,
            id: String::new(),
            errors: violations(errors),
        },
    }
}

pub(crate) fn batch_ack(batch_id: u64, outcomes: Vec<ItemOutcome>) -> v1::BatchAck {
    let mut ack = v1::BatchAck {
        batch_id,
        ..Default::default()
    };
    for outcome in outcomes {
        match &outcome {
            ItemOutcome::Accepted(_) => ack.accepted += 1,
            ItemOutcome::Duplicate(_) => ack.duplicates += 1,
            ItemOutcome::Rejected(_) => ack.rejected += 1,
        }
        ack.results.push(result(outcome));
    }
    ack
}

pub(crate) fn location(location: &Location) -> v1::Location {
    v1::Location {
        id: location.id.to_string(),
        name: location.name.clone(),
        city: location.city.clone(),
        country: location.country.clone(),
        latitude: location.latitude,
        longitude: location.longitude,
        altitude: location.altitude,
        timezone: location.timezone.clone(),
        iata: location.iata.clone(),
        icao: location.icao.clone(),
        created_at_ms: location.created_at.0,
        updated_at_ms: location.updated_at.0,
        deleted_at_ms: location.deleted_at.map(|at| at.0),
    }
}

pub(crate) fn location_input(message: v1::Location) -> LocationInput {
    LocationInput {
        id: non_empty(message.id),
        name: message.name,
        city: message.city,
        country: message.country,
        latitude: message.latitude,
        longitude: message.longitude,
        altitude: message.altitude,
        timezone: non_empty(message.timezone),
        iata: message.iata,
        icao: message.icao,
        // The protobuf message has no attributes field; a gRPC put leaves them empty.
        attributes: None,
    }
}

pub(crate) fn sensor(sensor: &Sensor) -> v1::Sensor {
    v1::Sensor {
        id: sensor.id.to_string(),
        name: sensor.name.clone(),
        kind: sensor.kind.clone(),
        location_id: sensor.location_id.to_string(),
        metrics: sensor
            .metrics
            .iter()
            .map(|metric| v1::Metric {
                name: metric.name.to_string(),
                unit: metric.unit.clone(),
                min: metric.min,
                max: metric.max,
            })
            .collect(),
        expected_interval_seconds: sensor.expected_interval_seconds,
        created_at_ms: sensor.created_at.0,
        updated_at_ms: sensor.updated_at.0,
        deleted_at_ms: sensor.deleted_at.map(|at| at.0),
    }
}

pub(crate) fn sensor_input(message: v1::Sensor) -> Result<SensorInput, FieldError> {
    let metrics = message
        .metrics
        .into_iter()
        .enumerate()
        .map(|(index, metric)| {
            let name = MetricName::parse(&metric.name).map_err(|error| FieldError {
                path: format!("metrics[{index}].name"),
                ..error
            })?;
            Ok(MetricSpec {
                name,
                unit: metric.unit,
                min: metric.min,
                max: metric.max,
            })
        })
        .collect::<Result<Vec<_>, FieldError>>()?;
    Ok(SensorInput {
        id: non_empty(message.id),
        name: message.name,
        kind: message.kind,
        location_id: message.location_id,
        metrics,
        expected_interval_seconds: message.expected_interval_seconds,
    })
}

/// The JSON fields of `input` named by `mask`, as a merge patch; a field the mask names but
/// the message leaves unset becomes null (removed).
pub(crate) fn masked_patch(
    input: &impl serde::Serialize,
    mask: &[String],
) -> Result<serde_json::Value, FieldError> {
    let full = serde_json::to_value(input)
        .map_err(|_| FieldError::new("", Reason::InvalidFormat, "cannot encode the message"))?;
    let mut patch = serde_json::Map::new();
    for (index, path) in mask.iter().enumerate() {
        if path == "id" || full.get(path).is_none() && !is_optional_field(path) {
            return Err(FieldError::new(
                format!("update_mask[{index}]"),
                Reason::UnknownField,
                format!("{path:?} is not a field that can be updated"),
            ));
        }
        patch.insert(
            path.clone(),
            full.get(path).cloned().unwrap_or(serde_json::Value::Null),
        );
    }
    Ok(serde_json::Value::Object(patch))
}

fn is_optional_field(path: &str) -> bool {
    matches!(
        path,
        "city"
            | "country"
            | "altitude"
            | "timezone"
            | "iata"
            | "icao"
            | "expected_interval_seconds"
    )
}

pub(crate) fn stats_group(group: audrey_store::StatsGroup) -> v1::StatsGroup {
    let summary = group.summary;
    v1::StatsGroup {
        key: group.key,
        count: summary.count,
        min: summary.min,
        max: summary.max,
        mean: summary.mean,
        stddev: summary.stddev,
        percentiles: summary
            .percentiles
            .into_iter()
            .map(|(p, value)| v1::Percentile { p, value })
            .collect(),
    }
}

pub(crate) fn import_report(report: crate::import::ImportReport) -> v1::ImportLocationsResponse {
    v1::ImportLocationsResponse {
        header: report.header,
        rows: report.rows,
        inserted: report.inserted,
        updated: report.updated,
        unchanged: report.unchanged,
        rejected: report.rejected,
        rejections: report
            .rejections
            .into_iter()
            .map(|rejection| v1::ImportRejection {
                row: rejection.row,
                line: rejection.line,
                column: rejection.column,
                reason: rejection.reason.to_string(),
                message: rejection.message,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarantined_text_of_a_grpc_reading_is_its_fields_as_json_with_sorted_keys() {
        let input = v1::ReadingInput {
            sensor_id: "dev-1".into(),
            location_id: String::new(),
            read_time: Some(v1::reading_input::ReadTime::ReadAt(
                "2024-01-01T00:00:00Z".into(),
            )),
            values: [("t".to_string(), 1.5), ("a".to_string(), -2.0)].into(),
            message_id: "m\"1".into(),
        };
        let item = incoming(input);
        let text = &*item.payload.text(item.parsed.as_ref().ok());
        assert_eq!(
            text,
            r#"{"location_id":"","message_id":"m\"1","read_at":"2024-01-01T00:00:00Z","sensor_id":"dev-1","values":{"a":-2.0,"t":1.5}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(parsed["values"]["t"], 1.5);
        let without_time = incoming(v1::ReadingInput {
            read_time: Some(v1::reading_input::ReadTime::ReadAtMs(7)),
            ..Default::default()
        });
        let text = without_time.payload.text(without_time.parsed.as_ref().ok());
        assert!(text.contains(r#""read_at":7"#));
        let missing = incoming(v1::ReadingInput::default());
        assert!(missing.payload.text(None).contains(r#""read_at":null"#));
        assert!(missing.parsed.is_err());
    }
}
