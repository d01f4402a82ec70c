//! Shapes of the statistics and time-bucket queries, shared by every backend.
//!
//! The definitions (sample stddev, `percentile_cont`-style percentiles) live in
//! [`audrey_model::Summary`]; a backend may compute in SQL or in Rust but must answer the same.

use serde::Serialize;

use audrey_model::{FieldError, LocationId, MetricName, Millis, Reason, SensorId};

/// What `reading_stats` groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Sensor,
    Location,
    /// The reading's location's city; readings at locations without one form the `null` group.
    City,
    /// Likewise for country.
    Country,
}

impl GroupBy {
    pub fn parse(text: &str, field: &str) -> Result<GroupBy, FieldError> {
        match text {
            "sensor" => Ok(GroupBy::Sensor),
            "location" => Ok(GroupBy::Location),
            "city" => Ok(GroupBy::City),
            "country" => Ok(GroupBy::Country),
            other => Err(FieldError::new(
                field,
                Reason::InvalidFormat,
                format!("{other:?} is not one of sensor, location, city, country"),
            )),
        }
    }
}

/// Statistics of one metric over readings with `from <= read_at < to`, per group.
#[derive(Clone, Debug)]
pub struct StatsQuery {
    pub metric: MetricName,
    pub group_by: GroupBy,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    /// 0..=100; empty for none.
    pub percentiles: Vec<f64>,
}

/// One group's statistics. Groups with no value of the metric are absent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsGroup {
    /// The sensor id, location id, city or country; `None` for "no city/country".
    pub key: Option<String>,
    pub summary: audrey_model::Summary,
}

/// One function of a time bucket's values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Aggregation {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    /// Sample standard deviation.
    Stddev,
    /// Continuous percentile, 0..=100.
    Percentile(f64),
}

impl Aggregation {
    /// Parses `count`, `sum`, `avg`, `min`, `max`, `stddev` or `pNN` (`p50`, `p99.9`).
    pub fn parse(text: &str, field: &str) -> Result<Aggregation, FieldError> {
        let unknown = || {
            FieldError::new(
                field,
                Reason::InvalidFormat,
                format!(
                    "{text:?} is not one of count, sum, avg, min, max, stddev or pNN such as p50"
                ),
            )
        };
        Ok(match text {
            "count" => Aggregation::Count,
            "sum" => Aggregation::Sum,
            "avg" | "mean" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "stddev" => Aggregation::Stddev,
            other => {
                let number = other.strip_prefix('p').ok_or_else(unknown)?;
                let p: f64 = number.parse().map_err(|_| unknown())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(FieldError::new(
                        field,
                        Reason::OutOfRange,
                        format!("{text:?}: a percentile must be between p0 and p100"),
                    ));
                }
                Aggregation::Percentile(p)
            }
        })
    }

    /// The name a client used for it: `avg`, `p50`, ...
    pub fn name(&self) -> String {
        match self {
            Aggregation::Count => "count".into(),
            Aggregation::Sum => "sum".into(),
            Aggregation::Avg => "avg".into(),
            Aggregation::Min => "min".into(),
            Aggregation::Max => "max".into(),
            Aggregation::Stddev => "stddev".into(),
            Aggregation::Percentile(p) => format!("p{p}"),
        }
    }

    pub fn needs_sorted_values(aggregations: &[Aggregation]) -> bool {
        aggregations
            .iter()
            .any(|aggregation| matches!(aggregation, Aggregation::Percentile(_)))
    }
}

/// Buckets `[start, start + width)` aligned to the Unix epoch (so `1d` buckets are UTC days).
#[derive(Clone, Debug)]
pub struct AggregateQuery {
    /// `None`: every sensor.
    pub sensor: Option<SensorId>,
    pub location: Option<LocationId>,
    pub metric: MetricName,
    pub bucket_ms: i64,
    pub aggregations: Vec<Aggregation>,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
}

/// One non-empty time bucket; `values[i]` answers `aggregations[i]` (stddev is `None` for a
/// single value).
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub start: Millis,
    pub values: Vec<Option<f64>>,
}

/// Parses a bucket width: a whole number and a unit `s`, `m`, `h` or `d` (`1m`, `15m`, `1d`).
pub fn parse_bucket(text: &str, field: &str) -> Result<i64, FieldError> {
    let invalid = || {
        FieldError::new(
            field,
            Reason::InvalidFormat,
            format!("{text:?} is not a width such as 1m, 1h or 1d"),
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let count: i64 = if number.is_empty() {
        1
    } else {
        number.parse().map_err(|_| invalid())?
    };
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    if !(1..=366).contains(&count) {
        return Err(FieldError::new(
            field,
            Reason::OutOfRange,
            format!("{text:?}: the count must be from 1 to 366"),
        ));
    }
    Ok(count * unit_ms)
}

/// A location with its distance from the search centre.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NearLocation {
    #[serde(flatten)]
    pub location: audrey_model::Location,
    pub distance_km: f64,
}

/// What an import did with one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOutcome {
    Inserted,
    Updated,
    /// Every modelled field and attribute was already as given; nothing was written.
    Unchanged,
}
