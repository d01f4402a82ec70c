//! Reading query strings, paths and JSON bodies into typed values with field-level errors.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use audrey_model::{ErrorCode, FieldError, Millis, Reason};

use crate::ApiError;

/// Query parameters; every parameter must be one the route knows.
pub(crate) struct QueryParams(HashMap<String, String>);

impl QueryParams {
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<QueryParams, ApiError> {
        let mut params = HashMap::new();
        let mut errors = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key);
            let value = decode(value);
            if !known.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    &key,
                    Reason::UnknownField,
                    format!("unknown query parameter; known: {}", known.join(", ")),
                ));
                continue;
            }
            params.insert(key, value);
        }
        if errors.is_empty() {
            Ok(QueryParams(params))
        } else {
            Err(ApiError::invalid("the query string is invalid", errors))
        }
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    pub fn flag(&self, key: &str) -> Result<bool, FieldError> {
        match self.text(key) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(FieldError::new(
                key,
                Reason::InvalidFormat,
                format!("{other:?} is not true or false"),
            )),
        }
    }

    pub fn limit(&self, default: usize, max: usize) -> Result<usize, FieldError> {
        match self.text("limit") {
            None => Ok(default),
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
                _ => Err(FieldError::new(
                    "limit",
                    Reason::OutOfRange,
                    format!("must be a whole number from 1 to {max}, got {text:?}"),
                )),
            },
        }
    }

    pub fn number(&self, key: &str) -> Result<Option<f64>, FieldError> {
        self.typed(key, |text| {
            text.parse::<f64>()
                .ok()
                .filter(|number| number.is_finite())
                .ok_or_else(|| {
                    FieldError::new(
                        key,
                        Reason::InvalidType,
                        format!("{text:?} is not a number"),
                    )
                })
        })
    }

    /// A radius filter from three parameters (centre latitude, longitude, radius in km):
    /// all three or none. Errors name the parameters.
    pub fn circle(
        &self,
        names: [&str; 3],
    ) -> Result<Option<audrey_model::GeoCircle>, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut numbers = [None; 3];
        for (index, name) in names.iter().enumerate() {
            match self.number(name) {
                Ok(number) => numbers[index] = number,
                Err(error) => errors.push(error),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        circle_from(names, numbers)
    }

    pub fn instant(&self, key: &str) -> Result<Option<Millis>, FieldError> {
        self.text(key)
            .map(|text| Millis::parse_flexible(text, key))
            .transpose()
    }

    /// Parses an optional typed parameter with `parse`, giving errors the parameter's name.
    pub fn typed<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, FieldError>,
    ) -> Result<Option<T>, FieldError> {
        self.text(key)
            .map(|text| {
                parse(text).map_err(|error| FieldError {
                    path: key.to_string(),
                    ..error
                })
            })
            .transpose()
    }
}

/// A radius filter from its three numbers (centre latitude, longitude, radius in km): all
/// three or none. Errors name `names`. Shared by the HTTP query strings and gRPC messages.
pub(crate) fn circle_from(
    names: [&str; 3],
    numbers: [Option<f64>; 3],
) -> Result<Option<audrey_model::GeoCircle>, Vec<FieldError>> {
    match numbers {
        [None, None, None] => Ok(None),
        [Some(latitude), Some(longitude), Some(radius)] => {
            audrey_model::GeoCircle::new(latitude, longitude, radius, names).map(Some)
        }
        _ => Err(names
            .iter()
            .zip(numbers)
            .filter(|(_, number)| number.is_none())
            .map(|(name, _)| {
                FieldError::new(
                    *name,
                    Reason::MissingField,
                    format!("a radius filter needs all of {}", names.join(", ")),
                )
            })
            .collect()),
    }
}

/// Percent-decodes one query-string component (`+` is a space).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[index]) {
            (Some(byte), _) => {
                out.push(byte);
                index += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                index += 1;
            }
            (None, byte) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The paging and visibility parameters every registry list takes.
pub(crate) struct RegistryPaging {
    pub include_deleted: bool,
    pub limit: usize,
    pub after: Option<String>,
}

/// Parses a registry list's query string: its own `filters` plus `include_deleted`, `limit`
/// and `cursor`.
pub(crate) fn registry_list_params(
    raw: Option<&str>,
    filters: &[&str],
    max_limit: usize,
) -> Result<(QueryParams, RegistryPaging), ApiError> {
    let known: Vec<&str> = filters
        .iter()
        .copied()
        .chain(["include_deleted", "limit", "cursor"])
        .collect();
    let params = QueryParams::parse(raw, &known)?;
    let mut problems = Problems::default();
    let include_deleted = problems
        .check(params.flag("include_deleted"))
        .unwrap_or(false);
    let limit = problems.check(params.limit(100, max_limit)).unwrap_or(100);
    problems.finish("the query is invalid")?;
    let after = params.text("cursor").map(str::to_string);
    Ok((
        params,
        RegistryPaging {
            include_deleted,
            limit,
            after,
        },
    ))
}

/// A sensor id from a path segment, or 422 naming it.
pub(crate) fn sensor_in_path(id: &str) -> Result<audrey_model::SensorId, ApiError> {
    audrey_model::SensorId::parse(id)
        .map_err(|error| ApiError::invalid("bad sensor id", vec![error]))
}

/// Collects field errors; `finish` answers 422 when any were found.
#[derive(Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub fn check_all<T>(&mut self, result: Result<T, Vec<FieldError>>) -> Option<T> {
        result.map_err(|errors| self.0.extend(errors)).ok()
    }

    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|error| self.0.push(error)).ok()
    }

    pub fn finish(self, message: &str) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(message, self.0))
        }
    }
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// Parses a JSON body into `T`: 400 when it is not JSON, 422 naming the field otherwise.
pub(crate) fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::malformed("the body is not valid UTF-8"))?;
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| ApiError::malformed(format!("the body is not valid JSON: {error}")))?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        ApiError::invalid("the body is invalid", vec![FieldError::from_serde(error)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_and_plus_signs_are_decoded() {
        assert_eq!(
            decode("2024-05-01T12%3A00%3A00%2B02%3A00"),
            "2024-05-01T12:00:00+02:00"
        );
        assert_eq!(decode("a+b%"), "a b%");
    }

    #[test]
    fn an_unknown_query_parameter_is_refused_by_name() {
        let error = QueryParams::parse(Some("sensr=x"), &["sensor"])
            .err()
            .unwrap();
        assert_eq!(error.details[0].path, "sensr");
    }
}
