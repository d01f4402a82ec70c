//! Audrey's domain: locations, sensors, readings, their identifiers and every validation rule.
//!
//! This crate owns the meaning of the data. It parses untrusted input into typed values
//! ("parse, don't validate") and reports each problem with the field path and a reason code.
//! It must never do I/O, spawn tasks or know about HTTP, gRPC or SQL: transports and stores
//! depend on it, never the other way round.

mod error;
mod geo;
mod ids;
mod location;
mod location_csv;
mod reading;
mod sensor;
mod statistics;
mod time;

pub use error::{ErrorCode, FieldError, Reason};
pub use geo::{BoundingBox, EARTH_RADIUS_KM, GeoCircle, MAX_RADIUS_KM, distance_km};
pub use ids::{LocationId, MessageId, MetricName, ReadingId, SensorId};
pub use location::{Attributes, Location, LocationInput, LocationPatch, merge_patch};
pub use location_csv::{
    ImportKey, ImportRow, OPENFLIGHTS_COLUMNS, ParsedLocations, RowRejection, parse_locations_csv,
};
pub use reading::{
    RawMetricName, RawReading, RawValues, ReadAtInput, Reading, ReadingValues, ValidReading,
    parse_raw_reading, sensor_id_hint, validate_reading,
};
pub use sensor::{MetricSpec, Sensor, SensorInput};
pub use statistics::{
    Summary, mean_and_stddev, parse_percentiles, percentile_of_sorted, percentiles_by_selection,
};
pub use time::{EARLIEST_READ_AT, MAX_FUTURE_SKEW_MS, Millis};
