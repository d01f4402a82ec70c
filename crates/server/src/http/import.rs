//! `POST /api/v1/locations/import`: a CSV file as the body (`text/csv`) or as the first file
//! of a `multipart/form-data` form. Admin scope, like every registry write.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use audrey_model::{ErrorCode, FieldError, Millis};

use super::params::read_body;
use super::readings::blocking;
use crate::auth::{Principal, Scope};
use crate::import::{ImportError, import_locations};
use crate::{ApiError, AppState};

#[utoipa::path(post, path = "/api/v1/locations/import", tag = "locations",
    request_body(description = "A CSV file (OpenFlights airports layout, or a header row naming the columns)",
        content((String = "text/csv", example = json!("1,\"Goroka Airport\",\"Goroka\",\"Papua New Guinea\",\"GKA\",\"AYGA\",-6.08,145.39,5282,10,\"U\",\"Pacific/Port_Moresby\",\"airport\",\"OurAirports\"\n")),
            (String = "multipart/form-data", example = json!("--boundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"airports.csv\"\r\nContent-Type: text/csv\r\n\r\n1,\"Goroka Airport\",\"Goroka\",\"Papua New Guinea\",\"GKA\",\"AYGA\",-6.08,145.39,5282,10,\"U\",\"Pacific/Port_Moresby\",\"airport\",\"OurAirports\"\r\n--boundary--\r\n")))),
    responses((status = 200, description = "What the import did, with every rejected row",
        body = super::openapi::schemas::ImportReport)))]
pub(crate) async fn import(
    State(state): State<AppState>,
    principal: Principal,
    request: Request,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("text/csv")
        .to_ascii_lowercase();
    let limit = state.options.max_body_bytes;
    let csv = if content_type.starts_with("multipart/form-data") {
        first_file(request, limit).await?
    } else if content_type.starts_with("text/csv")
        || content_type.starts_with("text/plain")
        || content_type.starts_with("application/octet-stream")
    {
        let (parts, body) = request.into_parts();
        read_body(&parts.headers, body, limit).await?
    } else {
        return Err(ApiError::invalid(
            "unsupported content type",
            vec![FieldError::new(
                "content-type",
                audrey_model::Reason::InvalidFormat,
                format!("{content_type:?}: send text/csv or a multipart/form-data file"),
            )],
        ));
    };
    let report = blocking(&state, move |store| {
        import_locations(store, &csv, Millis::now(), |_| {}).map_err(|error| match error {
            ImportError::Unreadable(field) => ApiError::invalid("the file is not CSV", vec![field]),
            ImportError::Store(error) => error.into(),
        })
    })
    .await?;
    Ok(Json(report).into_response())
}

async fn first_file(request: Request<Body>, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|error| ApiError::malformed(format!("not a multipart form: {error}")))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|error| ApiError::malformed(format!("the multipart form is broken: {error}")))?
    {
        if field.file_name().is_some() || field.name() == Some("file") {
            let bytes = field.bytes().await.map_err(|error| {
                ApiError::malformed(format!("the uploaded file could not be read: {error}"))
            })?;
            if bytes.len() > limit {
                return Err(too_large());
            }
            return Ok(bytes);
        }
    }
    Err(ApiError::invalid(
        "the form has no file",
        vec![FieldError::new(
            "file",
            audrey_model::Reason::MissingField,
            "send the CSV as a form field named file",
        )],
    ))
}
