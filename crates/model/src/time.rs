//! Instants as milliseconds since the Unix epoch, parsed from RFC 3339 text or epoch millis.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{FieldError, Reason};

/// 2000-01-01T00:00:00Z: nothing measured before it is believable.
pub const EARLIEST_READ_AT: Millis = Millis(946_684_800_000);
/// How far ahead of the server clock a device clock may run.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Millis {
        Millis(jiff::Timestamp::now().as_millisecond())
    }

    /// Parses RFC 3339 text (`2024-05-01T12:00:00Z`, `...+02:00`).
    pub fn parse_rfc3339(text: &str, field: &str) -> Result<Millis, FieldError> {
        text.parse::<jiff::Timestamp>()
            .map(|stamp| Millis(stamp.as_millisecond()))
            .map_err(|_| {
                FieldError::new(
                    field,
                    Reason::InvalidFormat,
                    format!("{text:?} is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z"),
                )
            })
    }

    /// Parses either RFC 3339 text or a whole number of epoch milliseconds given as text.
    pub fn parse_flexible(text: &str, field: &str) -> Result<Millis, FieldError> {
        match text.parse::<i64>() {
            Ok(millis) => Millis::from_epoch_millis(millis, field),
            Err(_) => Millis::parse_rfc3339(text, field),
        }
    }

    pub fn from_epoch_millis(millis: i64, field: &str) -> Result<Millis, FieldError> {
        jiff::Timestamp::from_millisecond(millis)
            .map(|_| Millis(millis))
            .map_err(|_| {
                FieldError::new(field, Reason::OutOfRange, "epoch milliseconds out of range")
            })
    }

    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(stamp) => format!("{stamp:.3}"),
            Err(_) => self.0.to_string(),
        }
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_an_offset_is_converted_to_utc() {
        let parsed = Millis::parse_rfc3339("2024-05-01T14:00:00+02:00", "read_at").unwrap();
        assert_eq!(parsed.to_rfc3339(), "2024-05-01T12:00:00.000Z");
    }

    #[test]
    fn epoch_millis_given_as_text_are_accepted() {
        assert_eq!(
            Millis::parse_flexible("1714564800000", "t").unwrap(),
            Millis(1714564800000)
        );
    }

    #[test]
    fn a_date_without_time_is_rejected_with_the_field_name() {
        let error = Millis::parse_flexible("2024-05-01", "from").unwrap_err();
        assert_eq!(
            (error.path.as_str(), error.reason),
            ("from", Reason::InvalidFormat)
        );
    }
}
