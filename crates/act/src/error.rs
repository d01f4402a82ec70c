//! The act crate's error vocabulary; the server maps [`ActError::code`] to HTTP and gRPC once.

use audrey_model::{ErrorCode, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("invalid")]
    Invalid(Vec<FieldError>),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("act storage unavailable: {0}")]
    Unavailable(String),
    #[error("act failure: {0}")]
    Internal(String),
}

impl ActError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ActError::Invalid(_) => ErrorCode::Invalid,
            ActError::NotFound(_) => ErrorCode::NotFound,
            ActError::Conflict(_) => ErrorCode::Conflict,
            ActError::Unavailable(_) => ErrorCode::Unavailable,
            ActError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<rusqlite::Error> for ActError {
    fn from(error: rusqlite::Error) -> ActError {
        match error {
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                ActError::Unavailable(error.to_string())
            }
            other => ActError::Internal(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for ActError {
    fn from(error: serde_json::Error) -> ActError {
        ActError::Internal(format!("stored JSON: {error}"))
    }
}
