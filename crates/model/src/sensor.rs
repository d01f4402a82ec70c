//! Devices that report readings, and the metrics they declare.

use serde::{Deserialize, Serialize};

use crate::location::check_text;
use crate::{FieldError, LocationId, MetricName, Millis, Reason, SensorId};

const MAX_METRICS: usize = 64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: MetricName,
    #[serde(default)]
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sensor {
    pub id: SensorId,
    pub name: String,
    pub kind: String,
    pub location_id: LocationId,
    /// When not empty, a reading may only carry these metrics, each within its range.
    pub metrics: Vec<MetricSpec>,
    pub expected_interval_seconds: Option<u32>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
}

impl Sensor {
    pub fn metric(&self, name: &str) -> Option<&MetricSpec> {
        self.metrics
            .iter()
            .find(|metric| metric.name.as_str() == name)
    }

    pub fn to_input(&self) -> SensorInput {
        SensorInput {
            id: None,
            name: self.name.clone(),
            kind: self.kind.clone(),
            location_id: self.location_id.to_string(),
            metrics: self.metrics.clone(),
            expected_interval_seconds: self.expected_interval_seconds,
        }
    }
}

/// The writable fields of a sensor.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SensorInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: String,
    pub kind: String,
    pub location_id: String,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub expected_interval_seconds: Option<u32>,
}

impl SensorInput {
    /// Checks every field; whether `location_id` exists is the registry's question, not ours.
    pub fn into_sensor(
        self,
        id: SensorId,
        now: Millis,
        created_at: Option<Millis>,
    ) -> Result<Sensor, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(given) = &self.id
            && given != id.as_str()
        {
            errors.push(FieldError::new(
                "id",
                Reason::InvalidFormat,
                format!(
                    "body id {given:?} does not match the path id {:?}",
                    id.as_str()
                ),
            ));
        }
        let name =
            check_text(&mut errors, "name", &self.name, false).unwrap_or_else(|| id.to_string());
        let kind = check_text(&mut errors, "kind", &self.kind, true).unwrap_or_default();
        let location_id = LocationId::parse(&self.location_id)
            .map_err(|error| errors.push(error))
            .ok();
        if self.metrics.len() > MAX_METRICS {
            errors.push(FieldError::new(
                "metrics",
                Reason::TooLong,
                format!("at most {MAX_METRICS} metrics"),
            ));
        }
        for (index, metric) in self.metrics.iter().enumerate() {
            let path = format!("metrics[{index}]");
            if self.metrics[..index]
                .iter()
                .any(|earlier| earlier.name == metric.name)
            {
                errors.push(FieldError::new(
                    format!("{path}.name"),
                    Reason::InvalidFormat,
                    format!("metric {} is declared twice", metric.name),
                ));
            }
            for (bound, value) in [("min", metric.min), ("max", metric.max)] {
                if value.is_some_and(|number| !number.is_finite()) {
                    errors.push(FieldError::new(
                        format!("{path}.{bound}"),
                        Reason::NonFiniteValue,
                        "must be a finite number",
                    ));
                }
            }
            if let (Some(min), Some(max)) = (metric.min, metric.max)
                && min > max
            {
                errors.push(FieldError::new(
                    format!("{path}.min"),
                    Reason::OutOfRange,
                    format!("min {min} is greater than max {max}"),
                ));
            }
        }
        if self.expected_interval_seconds == Some(0) {
            errors.push(FieldError::new(
                "expected_interval_seconds",
                Reason::OutOfRange,
                "must be at least 1 second",
            ));
        }
        match (errors.is_empty(), location_id) {
            (true, Some(location_id)) => Ok(Sensor {
                id,
                name,
                kind,
                location_id,
                metrics: self.metrics,
                expected_interval_seconds: self.expected_interval_seconds,
                created_at: created_at.unwrap_or(now),
                updated_at: now,
                deleted_at: None,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, min: Option<f64>, max: Option<f64>) -> MetricSpec {
        MetricSpec {
            name: MetricName::parse(name).unwrap(),
            unit: "C".into(),
            min,
            max,
        }
    }

    fn input() -> SensorInput {
        SensorInput {
            kind: "temperature".into(),
            location_id: "hangar-1".into(),
            metrics: vec![metric("temperature", Some(-40.0), Some(85.0))],
            ..Default::default()
        }
    }

    fn build(input: SensorInput) -> Result<Sensor, Vec<FieldError>> {
        input.into_sensor(SensorId::parse("dev-1").unwrap(), Millis(0), None)
    }

    #[test]
    fn a_sensor_without_a_name_is_named_after_its_id() {
        assert_eq!(build(input()).unwrap().name, "dev-1");
    }

    #[test]
    fn a_metric_whose_min_exceeds_its_max_is_rejected() {
        let errors = build(SensorInput {
            metrics: vec![metric("t", Some(5.0), Some(1.0))],
            ..input()
        })
        .unwrap_err();
        assert_eq!(errors[0].path, "metrics[0].min");
    }

    #[test]
    fn a_metric_declared_twice_is_rejected() {
        let errors = build(SensorInput {
            metrics: vec![metric("t", None, None), metric("t", None, None)],
            ..input()
        })
        .unwrap_err();
        assert_eq!(errors[0].path, "metrics[1].name");
    }

    #[test]
    fn a_bad_location_id_and_missing_kind_are_both_reported() {
        let errors = build(SensorInput {
            kind: "".into(),
            location_id: "a b".into(),
            ..input()
        })
        .unwrap_err();
        let paths: Vec<_> = errors.iter().map(|error| error.path.as_str()).collect();
        assert_eq!(paths, ["kind", "location_id"]);
    }
}
