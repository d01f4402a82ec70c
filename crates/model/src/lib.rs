//! Audrey's domain: locations, sensors, readings, their identifiers and every validation rule.
//!
//! This crate owns the meaning of the data. It parses untrusted input into typed values
//! ("parse, don't validate") and reports each problem with the field path and a reason code.
//! It must never do I/O, spawn tasks or know about HTTP, gRPC or SQL: transports and stores
//! depend on it, never the other way round.

mod error;
mod ids;
mod location;
mod reading;
mod sensor;
mod time;

pub use error::{ErrorCode, FieldError, Reason};
pub use ids::{LocationId, MessageId, MetricName, ReadingId, SensorId};
pub use location::{Location, LocationInput, LocationPatch, merge_patch};
pub use reading::{
    RawReading, ReadAtInput, Reading, ReadingValues, ValidReading, parse_raw_reading,
    sensor_id_hint, validate_reading,
};
pub use sensor::{MetricSpec, Sensor, SensorInput};
pub use time::{EARLIEST_READ_AT, MAX_FUTURE_SKEW_MS, Millis};
