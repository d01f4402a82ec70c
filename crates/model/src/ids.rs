//! Typed identifiers. Each parses untrusted text once; past the edge code holds only these.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{FieldError, Reason};

const MAX_ID_LENGTH: usize = 128;
const MAX_METRIC_NAME_LENGTH: usize = 64;
const MAX_MESSAGE_ID_BYTES: usize = 128;

fn is_id_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | ':' | '-')
}

fn parse_identifier(text: &str, field: &str, max: usize) -> Result<Arc<str>, FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(field, Reason::Empty, "must not be empty"));
    }
    if text.len() > max {
        return Err(FieldError::new(
            field,
            Reason::TooLong,
            format!("must be at most {max} characters, got {}", text.len()),
        ));
    }
    if let Some(bad) = text.chars().find(|character| !is_id_character(*character)) {
        return Err(FieldError::new(
            field,
            Reason::InvalidFormat,
            format!("may only contain A-Z a-z 0-9 . _ : - (found {bad:?})"),
        ));
    }
    Ok(Arc::from(text))
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, FieldError> {
                parse_identifier(text, $field, $max).map($name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&text).map_err(|error| serde::de::Error::custom(error.message))
            }
        }
    };
}

string_id!(
    /// A sensor's id is the device serial: 1–128 characters of `[A-Za-z0-9._:-]`.
    SensorId,
    "sensor_id",
    MAX_ID_LENGTH
);
string_id!(
    /// A location's id, given by the operator or generated: same alphabet as sensor ids.
    LocationId,
    "location_id",
    MAX_ID_LENGTH
);
string_id!(
    /// A metric name such as `temperature`; same alphabet as ids, at most 64 characters.
    MetricName,
    "metric",
    MAX_METRIC_NAME_LENGTH
);

impl MetricName {
    /// Like [`MetricName::parse`], but reuses the allocation of a name this thread saw
    /// recently: a fleet sends the same few metric names millions of times.
    pub fn parse_interned(text: &str) -> Result<MetricName, FieldError> {
        const MAX_REMEMBERED: usize = 4096;
        thread_local! {
            // foldhash: this is looked up for every value of every reading.
            static SEEN: std::cell::RefCell<
                std::collections::HashMap<Box<str>, MetricName, foldhash::fast::RandomState>,
            > = std::cell::RefCell::new(std::collections::HashMap::default());
        }
        SEEN.with(|seen| {
            if let Some(known) = seen.borrow().get(text) {
                return Ok(known.clone());
            }
            let parsed = MetricName::parse(text)?;
            let mut seen = seen.borrow_mut();
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
            seen.insert(Box::from(text), parsed.clone());
            Ok(parsed)
        })
    }
}

/// The device's idempotency key: any non-empty text of at most 128 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Arc<str>);

impl MessageId {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        if text.is_empty() {
            return Err(FieldError::new(
                "message_id",
                Reason::Empty,
                "must not be empty",
            ));
        }
        if text.len() > MAX_MESSAGE_ID_BYTES {
            return Err(FieldError::new(
                "message_id",
                Reason::TooLong,
                format!(
                    "must be at most {MAX_MESSAGE_ID_BYTES} bytes, got {}",
                    text.len()
                ),
            ));
        }
        Ok(MessageId(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A reading's server-assigned id: a UUIDv7, so ids sort by the time they were assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReadingId(pub Uuid);

impl ReadingId {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        Uuid::parse_str(text)
            .map(ReadingId)
            .map_err(|_| FieldError::new("id", Reason::InvalidFormat, "is not a UUID"))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for ReadingId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_with_punctuation_is_a_valid_sensor_id() {
        assert_eq!(
            SensorId::parse("dev-01.a:b_c").unwrap().as_str(),
            "dev-01.a:b_c"
        );
    }

    #[test]
    fn an_empty_sensor_id_is_rejected() {
        assert_eq!(SensorId::parse("").unwrap_err().reason, Reason::Empty);
    }

    #[test]
    fn a_sensor_id_of_129_characters_is_rejected_and_128_is_accepted() {
        assert!(SensorId::parse(&"a".repeat(128)).is_ok());
        assert_eq!(
            SensorId::parse(&"a".repeat(129)).unwrap_err().reason,
            Reason::TooLong
        );
    }

    #[test]
    fn a_sensor_id_with_a_space_or_slash_is_rejected() {
        for bad in ["a b", "a/b", "é"] {
            assert_eq!(
                SensorId::parse(bad).unwrap_err().reason,
                Reason::InvalidFormat,
                "{bad}"
            );
        }
    }

    #[test]
    fn an_interned_metric_name_is_still_validated() {
        assert_eq!(
            MetricName::parse_interned("temperature").unwrap().as_str(),
            "temperature"
        );
        assert!(MetricName::parse_interned("temperature").is_ok());
        assert_eq!(
            MetricName::parse_interned("bad name").unwrap_err().reason,
            Reason::InvalidFormat
        );
    }

    #[test]
    fn a_message_id_longer_than_128_bytes_is_rejected() {
        assert!(MessageId::parse(&"x".repeat(128)).is_ok());
        // 43 three-byte characters = 129 bytes.
        assert_eq!(
            MessageId::parse(&"€".repeat(43)).unwrap_err().reason,
            Reason::TooLong
        );
    }
}
