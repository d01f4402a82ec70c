//! The one place where error codes become transport statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use audrey_ingest::IngestError;
use audrey_model::{ErrorCode, FieldError};
use audrey_store::StoreError;

/// An error as clients see it: a code, a readable message, and field details.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<FieldError>,
    pub retry_after_seconds: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: BodyInner<'a>,
}

#[derive(Serialize)]
struct BodyInner<'a> {
    code: &'static str,
    message: &'a str,
    details: Vec<Detail<'a>>,
}

#[derive(Serialize)]
struct Detail<'a> {
    path: &'a str,
    reason: &'static str,
    message: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after_seconds: None,
        }
    }

    pub fn invalid(message: impl Into<String>, details: Vec<FieldError>) -> ApiError {
        ApiError {
            details,
            ..ApiError::new(ErrorCode::Invalid, message)
        }
    }

    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Malformed, message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} was not found"))
    }

    pub fn http_status(&self) -> StatusCode {
        match self.code {
            ErrorCode::Malformed => StatusCode::BAD_REQUEST,
            ErrorCode::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorCode::Gone => StatusCode::GONE,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::Overloaded | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        let code = error.code();
        match error {
            StoreError::Invalid(details) => ApiError::invalid("the request is invalid", details),
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(message) => ApiError::new(code, message),
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                ApiError {
                    retry_after_seconds: Some(5),
                    ..ApiError::new(code, "storage is unavailable; retry later")
                }
            }
            StoreError::Outage(message) => ApiError {
                retry_after_seconds: Some(5),
                ..ApiError::new(code, message)
            },
            StoreError::Internal(detail) => {
                // Internal details go to the log, never to the client.
                tracing::error!(%detail, "store failure");
                ApiError::new(code, "internal error")
            }
        }
    }
}

impl From<audrey_act::ActError> for ApiError {
    fn from(error: audrey_act::ActError) -> ApiError {
        use audrey_act::ActError;
        let code = error.code();
        match error {
            ActError::Invalid(details) => ApiError::invalid("the request is invalid", details),
            ActError::NotFound(what) => ApiError::not_found(what),
            ActError::Conflict(message) => ApiError::new(code, message),
            ActError::Unavailable(detail) => {
                tracing::warn!(%detail, "act storage unavailable");
                ApiError {
                    retry_after_seconds: Some(5),
                    ..ApiError::new(code, "act storage is unavailable; retry later")
                }
            }
            ActError::Internal(detail) => {
                tracing::error!(%detail, "act failure");
                ApiError::new(code, "internal error")
            }
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> ApiError {
        let code = error.code();
        match error {
            IngestError::Overloaded { retry_after } => ApiError {
                retry_after_seconds: Some(retry_after.as_secs().max(1)),
                ..ApiError::new(
                    code,
                    "the server is overloaded; retry after the delay in Retry-After",
                )
            },
            IngestError::Unavailable(detail) => {
                tracing::warn!(%detail, "ingest could not commit");
                ApiError {
                    retry_after_seconds: Some(5),
                    ..ApiError::new(
                        code,
                        "storage is unavailable; nothing was stored, retry later",
                    )
                }
            }
            IngestError::AtomicRejected(items) => {
                let count = items.len();
                let details = items
                    .into_iter()
                    .flat_map(|(index, errors)| {
                        errors
                            .into_iter()
                            .map(move |error| error.under(&format!("[{index}]")))
                    })
                    .collect();
                ApiError::invalid(
                    format!("{count} reading(s) are invalid; with atomic=true nothing was stored"),
                    details,
                )
            }
            other => ApiError::new(code, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let body = Body {
            error: BodyInner {
                code: self.code.as_str(),
                message: &self.message,
                details: self
                    .details
                    .iter()
                    .map(|detail| Detail {
                        path: &detail.path,
                        reason: detail.reason.as_str(),
                        message: &detail.message,
                    })
                    .collect(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(value) = self
            .retry_after_seconds
            .and_then(|seconds| HeaderValue::from_str(&seconds.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.code == ErrorCode::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"audrey\""),
            );
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    /// The same codes as HTTP, mapped once: field problems travel as a `BadRequest` detail,
    /// a retry delay as `RetryInfo`.
    fn from(error: ApiError) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        let code = match error.code {
            ErrorCode::Malformed | ErrorCode::Invalid => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::MethodNotAllowed => tonic::Code::Unimplemented,
            ErrorCode::Conflict => tonic::Code::AlreadyExists,
            ErrorCode::PreconditionFailed => tonic::Code::FailedPrecondition,
            ErrorCode::Gone => tonic::Code::NotFound,
            ErrorCode::PayloadTooLarge | ErrorCode::Overloaded => tonic::Code::ResourceExhausted,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        };
        let mut details = ErrorDetails::new();
        for field in &error.details {
            details.add_bad_request_violation(
                field.path.clone(),
                format!("{}: {}", field.reason.as_str(), field.message),
            );
        }
        if let Some(seconds) = error.retry_after_seconds {
            details.set_retry_info(Some(std::time::Duration::from_secs(seconds)));
        }
        if error.details.is_empty() && error.retry_after_seconds.is_none() {
            tonic::Status::new(code, error.message)
        } else {
            tonic::Status::with_error_details(code, error.message, details)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audrey_model::Reason;
    use std::time::Duration;
    use tonic_types::StatusExt;

    #[test]
    fn overloaded_is_503_with_retry_after_and_resource_exhausted_with_retry_info() {
        let error = || {
            ApiError::from(IngestError::Overloaded {
                retry_after: Duration::from_secs(2),
            })
        };
        let response = error().into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let status = tonic::Status::from(error());
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status
                .get_details_retry_info()
                .and_then(|info| info.retry_delay),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn an_unavailable_store_is_503_and_unavailable_without_internal_detail() {
        let error = || {
            ApiError::from(StoreError::Unavailable(
                "disk I/O error at /secret/path".into(),
            ))
        };
        assert_eq!(
            error().into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let status = tonic::Status::from(error());
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            !status.message().contains("/secret/path"),
            "internal details stay in the log"
        );
    }

    #[test]
    fn field_problems_travel_as_bad_request_violations() {
        let error = ApiError::invalid(
            "bad",
            vec![FieldError::new("values.t", Reason::OutOfRange, "too hot")],
        );
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "values.t");
        assert_eq!(violations[0].description, "out_of_range: too hot");
    }

    #[test]
    fn every_code_has_one_http_status_and_one_grpc_code() {
        let pairs = [
            (
                ErrorCode::Malformed,
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
            ),
            (
                ErrorCode::Invalid,
                StatusCode::UNPROCESSABLE_ENTITY,
                tonic::Code::InvalidArgument,
            ),
            (
                ErrorCode::NotFound,
                StatusCode::NOT_FOUND,
                tonic::Code::NotFound,
            ),
            (
                ErrorCode::Conflict,
                StatusCode::CONFLICT,
                tonic::Code::AlreadyExists,
            ),
            (
                ErrorCode::Unauthenticated,
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
            ),
            (
                ErrorCode::PermissionDenied,
                StatusCode::FORBIDDEN,
                tonic::Code::PermissionDenied,
            ),
            (
                ErrorCode::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
                tonic::Code::Internal,
            ),
        ];
        for (code, http, grpc) in pairs {
            assert_eq!(ApiError::new(code, "x").http_status(), http, "{code:?}");
            assert_eq!(
                tonic::Status::from(ApiError::new(code, "x")).code(),
                grpc,
                "{code:?}"
            );
        }
    }
}
