//! Error vocabulary shared by every layer: a closed set of codes that the server maps once to
//! HTTP statuses and gRPC codes, and field-level problems that name the offending path.

use serde::Serialize;

/// What kind of failure happened, independent of any transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be parsed at all (bad JSON, bad encoding).
    Malformed,
    /// Well-formed but breaks a rule; details say which field and why.
    Invalid,
    NotFound,
    MethodNotAllowed,
    Conflict,
    /// An `If-Match` precondition failed: the record changed since the client read it.
    PreconditionFailed,
    /// The thing existed but is gone for good (a used or expired confirmation link).
    Gone,
    PayloadTooLarge,
    Unauthenticated,
    PermissionDenied,
    /// Too much work queued; the client should retry after a delay.
    Overloaded,
    /// A dependency (the store) cannot serve right now.
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::Gone => "gone",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// Why one field was refused. The snake_case names are part of the public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    UnknownSensor,
    LocationMismatch,
    NonFiniteValue,
    OutOfRange,
    UndeclaredMetric,
    InFuture,
    TooOld,
    Empty,
    TooLong,
    UnknownField,
    MissingField,
    InvalidType,
    InvalidFormat,
    UnknownLocation,
    Malformed,
    /// A key given twice where it must be unique (an import file's id column, say).
    DuplicateKey,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownSensor => "unknown_sensor",
            Reason::LocationMismatch => "location_mismatch",
            Reason::NonFiniteValue => "non_finite_value",
            Reason::OutOfRange => "out_of_range",
            Reason::UndeclaredMetric => "undeclared_metric",
            Reason::InFuture => "in_future",
            Reason::TooOld => "too_old",
            Reason::Empty => "empty",
            Reason::TooLong => "too_long",
            Reason::UnknownField => "unknown_field",
            Reason::MissingField => "missing_field",
            Reason::InvalidType => "invalid_type",
            Reason::DuplicateKey => "duplicate_key",
            Reason::InvalidFormat => "invalid_format",
            Reason::UnknownLocation => "unknown_location",
            Reason::Malformed => "malformed",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        ALL_REASONS
            .iter()
            .copied()
            .find(|reason| reason.as_str() == text)
    }
}

const ALL_REASONS: [Reason; 15] = [
    Reason::UnknownSensor,
    Reason::LocationMismatch,
    Reason::NonFiniteValue,
    Reason::OutOfRange,
    Reason::UndeclaredMetric,
    Reason::InFuture,
    Reason::TooOld,
    Reason::Empty,
    Reason::TooLong,
    Reason::UnknownField,
    Reason::MissingField,
    Reason::InvalidType,
    Reason::InvalidFormat,
    Reason::UnknownLocation,
    Reason::Malformed,
];

/// One problem with one field: `path` is a dotted/indexed path such as `values.temperature`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub reason: Reason,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            reason,
            message: message.into(),
        }
    }

    /// The same error, its path placed under `prefix` (e.g. the index of a batch item).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() {
            prefix.to_string()
        } else if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }

    /// Turns a serde error (with the path where it happened) into a field error.
    pub fn from_serde(error: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = error.into_inner();
        let text = inner.to_string();
        let message = match text.find(" at line ") {
            Some(position) => text[..position].to_string(),
            None => text,
        };
        let reason = if message.starts_with("unknown field") {
            Reason::UnknownField
        } else if message.starts_with("missing field") {
            Reason::MissingField
        } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
            Reason::InvalidType
        } else if inner.is_syntax() || inner.is_eof() {
            Reason::Malformed
        } else {
            Reason::InvalidFormat
        };
        // serde names a missing or unknown field in the message, not in the path.
        let path = match (reason, field_in_backticks(&message)) {
            (Reason::MissingField | Reason::UnknownField, Some(field)) if path.is_empty() => {
                field.to_string()
            }
            (Reason::MissingField | Reason::UnknownField, Some(field)) => {
                if path.ends_with(field) {
                    path
                } else {
                    format!("{path}.{field}")
                }
            }
            _ => path,
        };
        FieldError {
            path,
            reason,
            message,
        }
    }
}

fn field_in_backticks(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(&message[start..end])
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}: {} ({})",
            self.path,
            self.message,
            self.reason.as_str()
        )
    }
}
