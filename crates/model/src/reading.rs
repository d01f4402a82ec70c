//! Readings: what a device measured, when, and the rules a reading must pass to be stored.

use serde::{Deserialize, Serialize};

use crate::{
    EARLIEST_READ_AT, FieldError, LocationId, MAX_FUTURE_SKEW_MS, MessageId, MetricName, Millis,
    ReadingId, Reason, Sensor, SensorId,
};

const MAX_VALUES: usize = 64;

/// Named numbers, sorted by name. Serialized as a JSON object `{"temperature": 21.5}`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ReadingValues(pub Vec<(MetricName, f64)>);

impl ReadingValues {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(metric, _)| metric.as_str() == name)
            .map(|(_, value)| *value)
    }

    pub fn to_json(&self) -> String {
        let mut text = String::with_capacity(16 + self.0.len() * 24);
        self.write_json(&mut text);
        text
    }

    /// Appends the JSON object form to `out`, reusing its allocation.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        out.push('{');
        for (index, (name, value)) in self.0.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            // Metric names are [A-Za-z0-9._:-] only: nothing to escape.
            let _ = write!(out, "\"{}\":{}", name.as_str(), FiniteNumber(*value));
        }
        out.push('}');
    }

    /// Reads values back from the JSON text a store wrote with [`ReadingValues::to_json`].
    pub fn from_json(text: &str) -> Option<ReadingValues> {
        serde_json::from_str(text).ok()
    }
}

impl<'de> Deserialize<'de> for ReadingValues {
    /// Straight into sorted `(name, value)` pairs with interned names: reading stored values
    /// back is on every query's hot path.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ReadingValues;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("an object of metric names to numbers")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ReadingValues, A::Error> {
                let mut values = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let value: f64 = map.next_value()?;
                    let metric = MetricName::parse_interned(&name)
                        .map_err(|error| serde::de::Error::custom(error.message))?;
                    values.push((metric, value));
                }
                values.sort_by(|left: &(MetricName, f64), right| left.0.cmp(&right.0));
                Ok(ReadingValues(values))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Serialize for ReadingValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name.as_str(), value)?;
        }
        map.end()
    }
}

/// Writes a finite f64 so it reads back as the same number (shortest round-trip form).
struct FiniteNumber(f64);

impl std::fmt::Display for FiniteNumber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_finite() {
            write!(formatter, "{:?}", self.0)
        } else {
            formatter.write_str("null")
        }
    }
}

/// A stored reading.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reading {
    pub id: ReadingId,
    pub sensor_id: SensorId,
    pub location_id: LocationId,
    /// When the device measured it.
    pub read_at: Millis,
    /// When the server took it in; never taken from input.
    pub received_at: Millis,
    pub values: ReadingValues,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
}

/// `read_at` as sent: RFC 3339 text or epoch milliseconds.
#[derive(Clone, Debug)]
pub enum ReadAtInput {
    EpochMillis(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for ReadAtInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ReadAtInput;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("RFC 3339 text or whole epoch milliseconds")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<ReadAtInput, E> {
                Ok(ReadAtInput::EpochMillis(value))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<ReadAtInput, E> {
                i64::try_from(value)
                    .map(ReadAtInput::EpochMillis)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ReadAtInput, E> {
                Ok(ReadAtInput::Text(value.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The sensor id of a reading that could not be parsed, when its JSON still names one; so
/// a quarantined reading can be traced to its device.
pub fn sensor_id_hint(json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct OnlySensor {
        sensor_id: String,
    }
    serde_json::from_str::<OnlySensor>(json)
        .ok()
        .map(|found| found.sensor_id)
}

/// A reading as a client sends it, before any rule is checked.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReading {
    pub sensor_id: String,
    #[serde(default)]
    pub location_id: Option<String>,
    pub read_at: ReadAtInput,
    pub values: RawValues,
    #[serde(default)]
    pub message_id: Option<String>,
}

impl RawReading {
    /// A transport that has no JSON (gRPC) builds the raw form directly.
    pub fn new(
        sensor_id: String,
        location_id: Option<String>,
        read_at: ReadAtInput,
        values: impl IntoIterator<Item = (String, f64)>,
        message_id: Option<String>,
    ) -> RawReading {
        RawReading {
            sensor_id,
            location_id,
            read_at,
            values: RawValues::from_pairs(
                values
                    .into_iter()
                    .map(|(name, value)| (RawMetricName::of(name.into()), value)),
            ),
            message_id,
        }
    }
}

/// A metric name as sent. A valid name is kept as the shared [`MetricName`] of that text (the
/// same few names arrive millions of times, so this costs no allocation); an invalid one keeps
/// its text, so validation can report it with its path.
#[derive(Clone, Debug, PartialEq)]
pub enum RawMetricName {
    Valid(MetricName),
    Invalid(String),
}

impl RawMetricName {
    fn of(text: std::borrow::Cow<'_, str>) -> RawMetricName {
        match MetricName::parse_interned(&text) {
            Ok(name) => RawMetricName::Valid(name),
            Err(_) => RawMetricName::Invalid(text.into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RawMetricName::Valid(name) => name.as_str(),
            RawMetricName::Invalid(text) => text,
        }
    }
}

/// A reading's values as sent, sorted by name; of a name sent twice the last value counts
/// (as a JSON object read into a map). Serialized as a JSON object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawValues(Vec<(RawMetricName, f64)>);

impl RawValues {
    fn from_pairs(pairs: impl Iterator<Item = (RawMetricName, f64)>) -> RawValues {
        let mut values: Vec<(RawMetricName, f64)> = pairs.collect();
        // Stable, so of equal names the last sent stays last; keep its value.
        values.sort_by(|left, right| left.0.as_str().cmp(right.0.as_str()));
        values.dedup_by(|later, earlier| {
            let same = later.0.as_str() == earlier.0.as_str();
            if same {
                earlier.1 = later.1;
            }
            same
        });
        RawValues(values)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RawMetricName, &f64)> {
        self.0.iter().map(|(name, value)| (name, value))
    }
}

impl<'de> Deserialize<'de> for RawValues {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawValues;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a map")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawValues, A::Error> {
                let mut values = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let value: f64 = map.next_value()?;
                    values.push((RawMetricName::of(name), value));
                }
                Ok(RawValues::from_pairs(values.into_iter()))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Serialize for RawValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name.as_str(), value)))
    }
}

/// A reading that passed every rule; the store assigns its id and received_at.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidReading {
    pub sensor_id: SensorId,
    pub location_id: LocationId,
    pub read_at: Millis,
    pub values: ReadingValues,
    pub message_id: Option<MessageId>,
}

impl ValidReading {
    pub fn into_reading(self, id: ReadingId, received_at: Millis) -> Reading {
        Reading {
            id,
            sensor_id: self.sensor_id,
            location_id: self.location_id,
            read_at: self.read_at,
            received_at,
            values: self.values,
            message_id: self.message_id,
        }
    }
}

/// Parses one reading's JSON; the error names the field where parsing stopped.
pub fn parse_raw_reading(json: &str) -> Result<RawReading, FieldError> {
    // The fast path parses directly; only a failure pays for tracking the field path.
    if let Ok(raw) = serde_json::from_str::<RawReading>(json) {
        return Ok(raw);
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let raw: RawReading =
        serde_path_to_error::deserialize(&mut deserializer).map_err(FieldError::from_serde)?;
    deserializer.end().map_err(|error| {
        FieldError::new(
            "",
            Reason::Malformed,
            format!("trailing characters after the reading: {error}"),
        )
    })?;
    Ok(raw)
}

/// Checks every rule; `sensor` is the registered sensor with that id, if any. All problems
/// are reported, not only the first.
pub fn validate_reading(
    raw: &RawReading,
    sensor: Option<&Sensor>,
    now: Millis,
) -> Result<ValidReading, Vec<FieldError>> {
    let mut errors = Vec::new();
    let sensor_id = match sensor {
        // The registered sensor's id is this very text and was checked when it was
        // registered: share it instead of allocating a copy for every reading.
        Some(known) if known.id.as_str() == raw.sensor_id => Some(known.id.clone()),
        _ => SensorId::parse(&raw.sensor_id)
            .map_err(|error| errors.push(error))
            .ok(),
    };
    let sensor = sensor.filter(|sensor| sensor.deleted_at.is_none());
    if sensor_id.is_some() && sensor.is_none() {
        errors.push(FieldError::new(
            "sensor_id",
            Reason::UnknownSensor,
            format!("no registered sensor has id {:?}", raw.sensor_id),
        ));
    }
    if let (Some(given), Some(sensor)) = (&raw.location_id, sensor) {
        match LocationId::parse(given) {
            Err(error) => errors.push(error),
            Ok(location) if location != sensor.location_id => errors.push(FieldError::new(
                "location_id",
                Reason::LocationMismatch,
                format!(
                    "sensor {} stands at {}, not at {given}",
                    sensor.id, sensor.location_id
                ),
            )),
            Ok(_) => {}
        }
    }
    let read_at = match &raw.read_at {
        ReadAtInput::EpochMillis(millis) => Millis::from_epoch_millis(*millis, "read_at"),
        ReadAtInput::Text(text) => Millis::parse_flexible(text, "read_at"),
    };
    match &read_at {
        Err(error) => errors.push(error.clone()),
        Ok(read_at) if *read_at < EARLIEST_READ_AT => errors.push(FieldError::new(
            "read_at",
            Reason::TooOld,
            format!("{read_at} is before 2000-01-01T00:00:00Z"),
        )),
        Ok(read_at) if read_at.0 > now.0 + MAX_FUTURE_SKEW_MS => errors.push(FieldError::new(
            "read_at",
            Reason::InFuture,
            format!("{read_at} is more than 5 minutes ahead of the server clock ({now})"),
        )),
        Ok(_) => {}
    }
    let values = check_values(raw, sensor, &mut errors);
    let message_id = raw
        .message_id
        .as_deref()
        .map(MessageId::parse)
        .transpose()
        .map_err(|error| errors.push(error))
        .ok()
        .flatten();
    match (errors.is_empty(), sensor_id, sensor, read_at) {
        (true, Some(sensor_id), Some(sensor), Ok(read_at)) => Ok(ValidReading {
            sensor_id,
            location_id: sensor.location_id.clone(),
            read_at,
            values,
            message_id,
        }),
        _ => Err(errors),
    }
}

fn check_values(
    raw: &RawReading,
    sensor: Option<&Sensor>,
    errors: &mut Vec<FieldError>,
) -> ReadingValues {
    if raw.values.is_empty() {
        errors.push(FieldError::new(
            "values",
            Reason::Empty,
            "at least one value is required",
        ));
    }
    if raw.values.len() > MAX_VALUES {
        errors.push(FieldError::new(
            "values",
            Reason::TooLong,
            format!("at most {MAX_VALUES} values, got {}", raw.values.len()),
        ));
    }
    let mut values = Vec::with_capacity(raw.values.len());
    for (sent, value) in raw.values.iter() {
        let name = sent.as_str();
        let path = || format!("values.{name}");
        let declared = sensor
            .and_then(|sensor| sensor.metric(name))
            .map(|spec| spec.name.clone());
        let metric = match (declared, sent) {
            (Some(declared), _) => declared,
            (None, RawMetricName::Valid(metric)) => metric.clone(),
            (None, RawMetricName::Invalid(text)) => match MetricName::parse(text) {
                Ok(metric) => metric,
                Err(error) => {
                    errors.push(FieldError {
                        path: path(),
                        ..error
                    });
                    continue;
                }
            },
        };
        if !value.is_finite() {
            errors.push(FieldError::new(
                path(),
                Reason::NonFiniteValue,
                "must be a finite number",
            ));
            continue;
        }
        if let Some(sensor) = sensor.filter(|sensor| !sensor.metrics.is_empty()) {
            match sensor.metric(name) {
                None => {
                    errors.push(FieldError::new(
                        path(),
                        Reason::UndeclaredMetric,
                        format!("sensor {} does not declare metric {name}", sensor.id),
                    ));
                    continue;
                }
                Some(spec) => {
                    let below = spec.min.is_some_and(|min| *value < min);
                    let above = spec.max.is_some_and(|max| *value > max);
                    if below || above {
                        let bound =
                            |bound: Option<f64>| bound.map_or("-".into(), |b| b.to_string());
                        errors.push(FieldError::new(
                            path(),
                            Reason::OutOfRange,
                            format!(
                                "{value} is outside the valid range [{}, {}]",
                                bound(spec.min),
                                bound(spec.max)
                            ),
                        ));
                        continue;
                    }
                }
            }
        }
        values.push((metric, *value));
    }
    ReadingValues(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricSpec;

    const NOW: Millis = Millis(1_750_000_000_000);

    fn sensor(metrics: Vec<MetricSpec>) -> Sensor {
        Sensor {
            id: SensorId::parse("dev-1").unwrap(),
            name: "dev".into(),
            kind: "climate".into(),
            location_id: LocationId::parse("hangar-1").unwrap(),
            metrics,
            expected_interval_seconds: None,
            created_at: Millis(0),
            updated_at: Millis(0),
            deleted_at: None,
        }
    }

    fn declared() -> Sensor {
        sensor(vec![MetricSpec {
            name: MetricName::parse("temperature").unwrap(),
            unit: "C".into(),
            min: Some(-40.0),
            max: Some(85.0),
        }])
    }

    fn raw(json: serde_json::Value) -> RawReading {
        parse_raw_reading(&json.to_string()).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({"sensor_id": "dev-1", "read_at": NOW.0 - 1000, "values": {"temperature": 21.5}})
    }

    fn with(field: &str, value: serde_json::Value) -> RawReading {
        let mut json = base();
        json[field] = value;
        raw(json)
    }

    fn reasons(result: Result<ValidReading, Vec<FieldError>>) -> Vec<(String, Reason)> {
        result
            .unwrap_err()
            .into_iter()
            .map(|error| (error.path, error.reason))
            .collect()
    }

    #[test]
    fn a_valid_reading_takes_the_sensors_location() {
        let valid = validate_reading(&raw(base()), Some(&declared()), NOW).unwrap();
        assert_eq!(valid.location_id.as_str(), "hangar-1");
        assert_eq!(valid.values.get("temperature"), Some(21.5));
    }

    #[test]
    fn a_reading_from_an_unknown_sensor_is_rejected() {
        assert_eq!(
            reasons(validate_reading(&raw(base()), None, NOW)),
            [("sensor_id".to_string(), Reason::UnknownSensor)]
        );
    }

    #[test]
    fn a_reading_from_a_deleted_sensor_is_rejected_as_unknown() {
        let mut deleted = declared();
        deleted.deleted_at = Some(Millis(1));
        assert_eq!(
            reasons(validate_reading(&raw(base()), Some(&deleted), NOW)),
            [("sensor_id".to_string(), Reason::UnknownSensor)]
        );
    }

    #[test]
    fn a_reading_naming_another_location_is_a_location_mismatch() {
        let reading = with("location_id", "hangar-2".into());
        assert_eq!(
            reasons(validate_reading(&reading, Some(&declared()), NOW)),
            [("location_id".to_string(), Reason::LocationMismatch)]
        );
    }

    #[test]
    fn a_reading_naming_its_own_location_is_accepted() {
        assert!(
            validate_reading(
                &with("location_id", "hangar-1".into()),
                Some(&declared()),
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn values_are_sorted_by_name_and_a_name_sent_twice_keeps_its_last_value() {
        let reading =
            parse_raw_reading(r#"{"sensor_id":"a","read_at":1,"values":{"t":1,"b":2,"t":3}}"#)
                .unwrap();
        let values: Vec<(&str, f64)> = reading
            .values
            .iter()
            .map(|(name, value)| (name.as_str(), *value))
            .collect();
        assert_eq!(values, [("b", 2.0), ("t", 3.0)]);
        assert_eq!(
            serde_json::to_string(&reading.values).unwrap(),
            r#"{"b":2.0,"t":3.0}"#
        );
    }

    #[test]
    fn an_invalid_metric_name_is_reported_with_its_path() {
        let reading = with(
            "values",
            serde_json::json!({"bad name": 1.0, "temperature": 2.0}),
        );
        assert_eq!(
            reasons(validate_reading(&reading, Some(&sensor(vec![])), NOW)),
            [("values.bad name".to_string(), Reason::InvalidFormat)]
        );
    }

    #[test]
    fn a_non_finite_value_is_rejected() {
        // JSON has no NaN; a transport building the raw form directly can send one.
        let reading = RawReading::new(
            "dev-1".into(),
            None,
            ReadAtInput::EpochMillis(NOW.0 - 1000),
            [("temperature".to_string(), f64::NAN)],
            None,
        );
        assert_eq!(
            reasons(validate_reading(&reading, Some(&sensor(vec![])), NOW)),
            [("values.temperature".to_string(), Reason::NonFiniteValue)]
        );
    }

    #[test]
    fn a_value_outside_its_metrics_range_is_rejected() {
        let reading = with("values", serde_json::json!({"temperature": 85.1}));
        assert_eq!(
            reasons(validate_reading(&reading, Some(&declared()), NOW)),
            [("values.temperature".to_string(), Reason::OutOfRange)]
        );
    }

    #[test]
    fn a_value_on_the_range_bound_is_accepted() {
        let reading = with("values", serde_json::json!({"temperature": -40.0}));
        assert!(validate_reading(&reading, Some(&declared()), NOW).is_ok());
    }

    #[test]
    fn an_undeclared_metric_is_rejected_when_the_sensor_declares_metrics() {
        let reading = with(
            "values",
            serde_json::json!({"temperature": 1.0, "humidity": 40.0}),
        );
        assert_eq!(
            reasons(validate_reading(&reading, Some(&declared()), NOW)),
            [("values.humidity".to_string(), Reason::UndeclaredMetric)]
        );
    }

    #[test]
    fn any_metric_is_accepted_when_the_sensor_declares_none() {
        let reading = with("values", serde_json::json!({"anything": 1.0}));
        assert!(validate_reading(&reading, Some(&sensor(vec![])), NOW).is_ok());
    }

    #[test]
    fn a_reading_from_the_future_is_rejected() {
        let reading = with("read_at", (NOW.0 + MAX_FUTURE_SKEW_MS + 1).into());
        assert_eq!(
            reasons(validate_reading(&reading, Some(&declared()), NOW)),
            [("read_at".to_string(), Reason::InFuture)]
        );
    }

    #[test]
    fn a_reading_four_minutes_ahead_is_accepted_as_clock_skew() {
        let reading = with("read_at", (NOW.0 + 4 * 60 * 1000).into());
        assert!(validate_reading(&reading, Some(&declared()), NOW).is_ok());
    }

    #[test]
    fn a_reading_before_the_year_2000_is_rejected() {
        let reading = with("read_at", "1999-12-31T23:59:59Z".into());
        assert_eq!(
            reasons(validate_reading(&reading, Some(&declared()), NOW)),
            [("read_at".to_string(), Reason::TooOld)]
        );
    }

    #[test]
    fn read_at_in_rfc3339_and_epoch_millis_mean_the_same_instant() {
        let text = validate_reading(
            &with("read_at", "2025-06-15T15:06:39Z".into()),
            Some(&declared()),
            NOW,
        );
        let millis = validate_reading(
            &with("read_at", 1_749_999_999_000i64.into()),
            Some(&declared()),
            NOW,
        );
        assert_eq!(text.unwrap().read_at, millis.unwrap().read_at);
    }

    #[test]
    fn an_unparseable_read_at_is_an_invalid_format() {
        assert_eq!(
            reasons(validate_reading(
                &with("read_at", "yesterday".into()),
                Some(&declared()),
                NOW
            )),
            [("read_at".to_string(), Reason::InvalidFormat)]
        );
    }

    #[test]
    fn empty_values_are_rejected() {
        assert_eq!(
            reasons(validate_reading(
                &with("values", serde_json::json!({})),
                Some(&declared()),
                NOW
            )),
            [("values".to_string(), Reason::Empty)]
        );
    }

    #[test]
    fn too_many_values_are_rejected_as_oversize() {
        let many: serde_json::Map<_, _> = (0..65)
            .map(|index| (format!("m{index}"), serde_json::json!(1.0)))
            .collect();
        let reading = with("values", serde_json::Value::Object(many));
        assert_eq!(
            reasons(validate_reading(&reading, Some(&sensor(vec![])), NOW)),
            [("values".to_string(), Reason::TooLong)]
        );
    }

    #[test]
    fn an_oversize_message_id_is_rejected() {
        let reading = with("message_id", "m".repeat(129).into());
        assert_eq!(
            reasons(validate_reading(&reading, Some(&declared()), NOW)),
            [("message_id".to_string(), Reason::TooLong)]
        );
    }

    #[test]
    fn an_oversize_sensor_id_is_rejected() {
        let reading = with("sensor_id", "s".repeat(129).into());
        assert_eq!(
            reasons(validate_reading(&reading, None, NOW)),
            [("sensor_id".to_string(), Reason::TooLong)]
        );
    }

    #[test]
    fn an_unknown_field_is_rejected_naming_it() {
        let error =
            parse_raw_reading(r#"{"sensor_id":"a","read_at":1,"values":{"t":1},"colour":"red"}"#)
                .unwrap_err();
        assert_eq!(
            (error.path.as_str(), error.reason),
            ("colour", Reason::UnknownField)
        );
    }

    #[test]
    fn a_read_at_of_the_wrong_type_is_an_invalid_type() {
        let error =
            parse_raw_reading(r#"{"sensor_id":"a","read_at":true,"values":{"t":1}}"#).unwrap_err();
        assert_eq!(
            (error.path.as_str(), error.reason),
            ("read_at", Reason::InvalidType)
        );
    }

    #[test]
    fn the_sensor_of_an_unparseable_reading_is_still_found() {
        assert_eq!(
            sensor_id_hint(r#"{"sensor_id":"dev-1","values":"x"}"#).as_deref(),
            Some("dev-1")
        );
        assert_eq!(sensor_id_hint("[1]"), None);
    }

    #[test]
    fn a_missing_field_is_reported_by_name() {
        let error = parse_raw_reading(r#"{"sensor_id":"a","values":{"t":1}}"#).unwrap_err();
        assert_eq!(
            (error.path.as_str(), error.reason),
            ("read_at", Reason::MissingField)
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_path() {
        let error = parse_raw_reading(r#"{"sensor_id":"a","read_at":1,"values":{"t":"warm"}}"#)
            .unwrap_err();
        assert_eq!(
            (error.path.as_str(), error.reason),
            ("values.t", Reason::InvalidType)
        );
    }

    #[test]
    fn every_problem_of_a_reading_is_reported_at_once() {
        let reading = raw(serde_json::json!({
            "sensor_id": "dev-1", "location_id": "elsewhere", "read_at": "1990-01-01T00:00:00Z",
            "values": {"temperature": 100.0}
        }));
        let paths: Vec<_> = reasons(validate_reading(&reading, Some(&declared()), NOW))
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(paths, ["location_id", "read_at", "values.temperature"]);
    }

    #[test]
    fn values_survive_the_round_trip_through_stored_json() {
        let values = validate_reading(&raw(base()), Some(&declared()), NOW)
            .unwrap()
            .values;
        assert_eq!(ReadingValues::from_json(&values.to_json()), Some(values));
    }
}
