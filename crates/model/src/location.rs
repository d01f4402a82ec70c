//! Places where sensors stand.

use serde::{Deserialize, Serialize};

use crate::{FieldError, LocationId, Millis, Reason};

const MAX_TEXT_LENGTH: usize = 256;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Location {
    pub id: LocationId,
    pub name: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    /// Metres above sea level.
    pub altitude: Option<f64>,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
    pub iata: Option<String>,
    pub icao: Option<String>,
    /// Facts Audrey does not model (an import's extra columns, say), kept as given.
    pub attributes: Attributes,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
}

/// The writable fields of a location, as a client sends them to create or replace one.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub altitude: Option<f64>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub iata: Option<String>,
    #[serde(default)]
    pub icao: Option<String>,
    #[serde(default)]
    pub attributes: Option<Attributes>,
}

/// Free-form facts about a location: a JSON object.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

const MAX_ATTRIBUTES: usize = 64;

/// A partial update is a JSON Merge Patch (RFC 7396) over [`LocationInput`]'s fields.
pub type LocationPatch = serde_json::Value;

pub(crate) fn check_text(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    required: bool,
) -> Option<String> {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        errors.push(FieldError::new(field, Reason::Empty, "must not be empty"));
        return None;
    }
    if trimmed.chars().count() > MAX_TEXT_LENGTH {
        errors.push(FieldError::new(
            field,
            Reason::TooLong,
            format!("must be at most {MAX_TEXT_LENGTH} characters"),
        ));
        return None;
    }
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

fn check_code(errors: &mut Vec<FieldError>, field: &str, value: Option<&str>, length: usize) {
    if let Some(code) = value.map(str::trim).filter(|code| !code.is_empty()) {
        let valid = code.len() == length
            && code.chars().all(|character| {
                character.is_ascii_uppercase() || (length == 4 && character.is_ascii_digit())
            });
        if !valid {
            errors.push(FieldError::new(
                field,
                Reason::InvalidFormat,
                format!("must be {length} upper-case letters, got {code:?}"),
            ));
        }
    }
}

impl LocationInput {
    /// Checks every field and builds the stored form. `created_at` is kept from an existing record.
    pub fn into_location(
        self,
        id: LocationId,
        now: Millis,
        created_at: Option<Millis>,
    ) -> Result<Location, Vec<FieldError>> {
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
        let name = check_text(&mut errors, "name", &self.name, true);
        let city = self
            .city
            .as_deref()
            .and_then(|text| check_text(&mut errors, "city", text, false));
        let country = self
            .country
            .as_deref()
            .and_then(|text| check_text(&mut errors, "country", text, false));
        if !(self.latitude.is_finite() && (-90.0..=90.0).contains(&self.latitude)) {
            errors.push(FieldError::new(
                "latitude",
                Reason::OutOfRange,
                format!("must be between -90 and 90, got {}", self.latitude),
            ));
        }
        if !(self.longitude.is_finite() && (-180.0..=180.0).contains(&self.longitude)) {
            errors.push(FieldError::new(
                "longitude",
                Reason::OutOfRange,
                format!("must be between -180 and 180, got {}", self.longitude),
            ));
        }
        if let Some(altitude) = self.altitude
            && !(altitude.is_finite() && (-12_000.0..=100_000.0).contains(&altitude))
        {
            errors.push(FieldError::new(
                "altitude",
                Reason::OutOfRange,
                format!("must be between -12000 and 100000 metres, got {altitude}"),
            ));
        }
        let timezone = self.timezone.unwrap_or_else(|| "UTC".to_string());
        if jiff::tz::TimeZone::get(&timezone).is_err() {
            errors.push(FieldError::new(
                "timezone",
                Reason::InvalidFormat,
                format!("{timezone:?} is not an IANA time zone name such as Europe/Berlin"),
            ));
        }
        if let Some(attributes) = &self.attributes
            && attributes.len() > MAX_ATTRIBUTES
        {
            errors.push(FieldError::new(
                "attributes",
                Reason::TooLong,
                format!(
                    "must have at most {MAX_ATTRIBUTES} entries, got {}",
                    attributes.len()
                ),
            ));
        }
        check_code(&mut errors, "iata", self.iata.as_deref(), 3);
        check_code(&mut errors, "icao", self.icao.as_deref(), 4);
        if !errors.is_empty() {
            return Err(errors);
        }
        let blank_to_none = |code: Option<String>| {
            code.map(|text| text.trim().to_string())
                .filter(|text| !text.is_empty())
        };
        Ok(Location {
            id,
            name: name.unwrap_or_default(),
            city,
            country,
            latitude: self.latitude,
            longitude: self.longitude,
            altitude: self.altitude,
            timezone,
            iata: blank_to_none(self.iata),
            icao: blank_to_none(self.icao),
            attributes: self.attributes.unwrap_or_default(),
            created_at: created_at.unwrap_or(now),
            updated_at: now,
            deleted_at: None,
        })
    }
}

impl Location {
    /// The writable fields, as a client would send them; the base for a merge patch.
    pub fn to_input(&self) -> LocationInput {
        LocationInput {
            id: None,
            name: self.name.clone(),
            city: self.city.clone(),
            country: self.country.clone(),
            latitude: self.latitude,
            longitude: self.longitude,
            altitude: self.altitude,
            timezone: Some(self.timezone.clone()),
            iata: self.iata.clone(),
            icao: self.icao.clone(),
            attributes: Some(self.attributes.clone()),
        }
    }
}

/// Applies an RFC 7396 JSON Merge Patch to `target`.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match patch {
        serde_json::Value::Object(changes) => {
            if !target.is_object() {
                *target = serde_json::Value::Object(Default::default());
            }
            if let serde_json::Value::Object(fields) = target {
                for (key, change) in changes {
                    if change.is_null() {
                        fields.remove(key);
                    } else {
                        merge_patch(
                            fields.entry(key.clone()).or_insert(serde_json::Value::Null),
                            change,
                        );
                    }
                }
            }
        }
        replacement => *target = replacement.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LocationInput {
        LocationInput {
            name: "Hangar 1".into(),
            latitude: 52.5,
            longitude: 13.4,
            timezone: Some("Europe/Berlin".into()),
            ..Default::default()
        }
    }

    fn build(input: LocationInput) -> Result<Location, Vec<FieldError>> {
        input.into_location(LocationId::parse("hangar-1").unwrap(), Millis(0), None)
    }

    #[test]
    fn a_complete_location_is_accepted() {
        let location = build(input()).unwrap();
        assert_eq!(location.timezone, "Europe/Berlin");
    }

    #[test]
    fn latitude_beyond_90_is_rejected_naming_the_field() {
        let errors = build(LocationInput {
            latitude: 90.5,
            ..input()
        })
        .unwrap_err();
        assert_eq!(errors[0].path, "latitude");
        assert_eq!(errors[0].reason, Reason::OutOfRange);
    }

    #[test]
    fn an_unknown_time_zone_is_rejected() {
        let errors = build(LocationInput {
            timezone: Some("Mars/Olympus".into()),
            ..input()
        })
        .unwrap_err();
        assert_eq!(errors[0].path, "timezone");
    }

    #[test]
    fn an_empty_name_and_bad_codes_are_all_reported_together() {
        let errors = build(LocationInput {
            name: " ".into(),
            iata: Some("ab".into()),
            icao: Some("EDDB1".into()),
            ..input()
        })
        .unwrap_err();
        let paths: Vec<_> = errors.iter().map(|error| error.path.as_str()).collect();
        assert_eq!(paths, ["name", "iata", "icao"]);
    }

    #[test]
    fn a_merge_patch_replaces_given_fields_and_removes_nulls() {
        let mut target = serde_json::json!({"name": "a", "city": "b", "latitude": 1.0});
        merge_patch(&mut target, &serde_json::json!({"name": "c", "city": null}));
        assert_eq!(target, serde_json::json!({"name": "c", "latitude": 1.0}));
    }
}
