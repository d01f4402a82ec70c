//! Ingest and reading queries.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

use std::sync::Arc;

use audrey_ingest::{IncomingItem, ItemOutcome, Payload};
use audrey_model::{
    ErrorCode, FieldError, LocationId, ReadingId, Reason, SensorId, parse_raw_reading,
};
use audrey_store::{Cursor, Order, QuarantineFilter, ReadingQuery, Store};

use super::openapi::parameters::{IngestQuery, QuarantineQuery, ReadingListQuery};
use super::openapi::schemas;
use super::params::{Problems, QueryParams, read_body, sensor_in_path};
use super::stats::check_range;
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

pub(crate) const MAX_LIST_LIMIT: usize = 10_000;

/// Runs a blocking store call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || work(&*store))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?
}

/// A list answer: `{"items", "count", "is_empty", "next_cursor"}`.
#[derive(Serialize)]
pub(crate) struct ListBody<T> {
    items: Vec<T>,
    count: usize,
    is_empty: bool,
    next_cursor: Option<String>,
}

impl<T> ListBody<T> {
    pub fn new(page: audrey_store::Page<T>) -> ListBody<T> {
        ListBody {
            count: page.items.len(),
            is_empty: page.items.is_empty(),
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

#[derive(Serialize)]
struct ItemResult {
    index: usize,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<ReadingId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ItemError>,
}

#[derive(Serialize)]
struct ItemError {
    path: String,
    reason: &'static str,
    message: String,
}

#[derive(Serialize)]
struct IngestBody {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    results: Vec<ItemResult>,
}

enum Shape {
    Single,
    Batch,
}

fn is_ndjson(headers: &HeaderMap) -> Result<bool, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    match essence.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(true),
        "application/json" | "" => Ok(false),
        other => Err(ApiError::malformed(format!(
            "unsupported content type {other:?}; send application/json or application/x-ndjson"
        ))),
    }
}

fn item(body: &Arc<str>, text: &str) -> IncomingItem {
    IncomingItem {
        parsed: parse_raw_reading(text),
        payload: Payload::part_of(body, text),
    }
}

/// Readings need three levels; anything far deeper is an attack or a mistake.
const MAX_NESTING: usize = 32;

/// True when JSON text nests arrays/objects deeper than `limit` (strings are skipped), so a
/// deep body is refused before any parser recurses into it.
fn exceeds_nesting(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Splits a body into items: one object, an array, or NDJSON lines.
fn split_items(
    headers: &HeaderMap,
    bytes: &[u8],
    max: usize,
) -> Result<(Vec<IncomingItem>, Shape), ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        ApiError::malformed(format!(
            "the body is not valid UTF-8 (at byte {})",
            error.valid_up_to()
        ))
    })?;
    // One shared copy of the body; each item's payload is a slice of it.
    let body: Arc<str> = Arc::from(text);
    let text: &str = &body;
    if exceeds_nesting(text, MAX_NESTING) {
        return Err(ApiError::malformed(format!(
            "the body nests deeper than {MAX_NESTING} levels"
        )));
    }
    let too_many = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {max} readings in one request"),
        )
    };
    if is_ndjson(headers)? {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        if lines.len() > max {
            return Err(too_many());
        }
        return Ok((
            lines.into_iter().map(|line| item(&body, line)).collect(),
            Shape::Batch,
        ));
    }
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(|error| {
                ApiError::malformed(format!("the body is not a valid JSON array: {error}"))
            })?;
            if raw.len() > max {
                return Err(too_many());
            }
            Ok((
                raw.into_iter()
                    .map(|value| item(&body, value.get()))
                    .collect(),
                Shape::Batch,
            ))
        }
        Some(b'{') => {
            let raw: &RawValue = serde_json::from_str(text).map_err(|error| {
                ApiError::malformed(format!("the body is not valid JSON: {error}"))
            })?;
            Ok((vec![item(&body, raw.get())], Shape::Single))
        }
        _ => Err(ApiError::malformed(
            "the body must be a JSON object, a JSON array of objects, or NDJSON (application/x-ndjson)",
        )),
    }
}

/// Ingests one reading (a JSON object), a batch (a JSON array) or NDJSON lines (write scope).
/// Each reading is accepted, a duplicate (same sensor and message_id as one stored before) or
/// rejected and kept in quarantine; a lone rejected reading is answered 422.
#[utoipa::path(post, path = "/api/v1/readings", tag = "readings", params(IngestQuery),
    request_body(description = "A reading, an array of readings, or NDJSON (one reading per line)",
        content((schemas::ReadingsBody = "application/json"),
            (String = "application/x-ndjson", example = json!("{\"sensor_id\": \"th-0001\", \"read_at\": 1777636800000, \"values\": {\"temperature\": 21.5}}\n")))),
    responses(
        (status = 200, description = "A batch: one result per reading, in order", body = schemas::IngestResult),
        (status = 201, description = "One reading, stored", body = schemas::IngestResult),
    ))]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let params = QueryParams::parse(query.as_deref(), &["atomic"])?;
    let atomic = params
        .flag("atomic")
        .map_err(|error| ApiError::invalid("bad query", vec![error]))?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let (items, shape) = split_items(&headers, &bytes, state.options.max_readings_per_request)?;
    drop(bytes);
    if items.is_empty() {
        return Err(ApiError::invalid(
            "the request holds no readings",
            vec![FieldError::new(
                "",
                Reason::Empty,
                "send at least one reading",
            )],
        ));
    }
    let outcomes = state
        .pipeline
        .submit(items, atomic, principal.sensor.as_ref())
        .await?;
    if let (Shape::Single, Some(ItemOutcome::Rejected(errors))) = (&shape, outcomes.first()) {
        return Err(ApiError::invalid(
            "the reading was rejected and kept in quarantine",
            errors.clone(),
        ));
    }
    let mut body = IngestBody {
        accepted: 0,
        duplicates: 0,
        rejected: 0,
        results: Vec::with_capacity(outcomes.len()),
    };
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let (status, id, errors) = match outcome {
            ItemOutcome::Accepted(id) => {
                body.accepted += 1;
                ("accepted", Some(id), Vec::new())
            }
            ItemOutcome::Duplicate(id) => {
                body.duplicates += 1;
                ("duplicate", Some(id), Vec::new())
            }
            ItemOutcome::Rejected(errors) => {
                body.rejected += 1;
                let errors = errors
                    .into_iter()
                    .map(|error| ItemError {
                        path: error.path,
                        reason: error.reason.as_str(),
                        message: error.message,
                    })
                    .collect();
                ("rejected", None, errors)
            }
        };
        body.results.push(ItemResult {
            index,
            status,
            id,
            errors,
        });
    }
    let status = match shape {
        Shape::Single if body.accepted == 1 => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(body)).into_response())
}

/// Reads one stored reading by its id.
#[utoipa::path(get, path = "/api/v1/readings/{id}", tag = "readings",
    params(("id" = String, Path, format = Uuid, description = "The reading's id")),
    responses((status = 200, description = "The reading", body = schemas::Reading)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id =
        ReadingId::parse(&id).map_err(|error| ApiError::invalid("bad reading id", vec![error]))?;
    let reading = blocking(&state, move |store| Ok(store.reading(id)?)).await?;
    match reading {
        Some(reading) => Ok(Json(reading).into_response()),
        None => Err(ApiError::not_found(format!("reading {id}"))),
    }
}

/// Lists readings ordered by measurement time (then id), filtered by sensor, location and time.
#[utoipa::path(get, path = "/api/v1/readings", tag = "readings",
    params(ReadingListQuery, super::openapi::parameters::NearFilter),
    responses((status = 200, description = "A page of readings", body = schemas::ReadingList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(
        query.as_deref(),
        &[
            "sensor",
            "location",
            "from",
            "to",
            "order",
            "limit",
            "cursor",
            "near_lat",
            "near_lon",
            "radius_km",
        ],
    )?;
    let mut problems = Problems::default();
    let near = problems
        .check_all(params.circle(super::geo::NEAR_PARAMETERS))
        .flatten();
    let sensor = problems
        .check(params.typed("sensor", SensorId::parse))
        .flatten();
    let location = problems
        .check(params.typed("location", LocationId::parse))
        .flatten();
    let from = problems.check(params.instant("from")).flatten();
    let to = problems.check(params.instant("to")).flatten();
    let order = problems
        .check(params.typed("order", |text| match text {
            "newest" => Ok(Order::Newest),
            "oldest" => Ok(Order::Oldest),
            other => Err(FieldError::new(
                "order",
                Reason::InvalidFormat,
                format!("{other:?} is not newest or oldest"),
            )),
        }))
        .flatten()
        .unwrap_or_default();
    let limit = problems
        .check(params.limit(100, MAX_LIST_LIMIT))
        .unwrap_or(100);
    let after = problems
        .check(params.typed("cursor", Cursor::decode))
        .flatten();
    check_range(from, to, &mut problems);
    problems.finish("the query is invalid")?;
    let query = ReadingQuery {
        sensor,
        location,
        from,
        to,
        order,
        limit,
        after,
        near,
    };
    let page = blocking(&state, move |store| Ok(store.readings(&query)?)).await?;
    Ok(Json(ListBody::new(page)).into_response())
}

/// The sensor's newest reading by measurement time (not arrival).
#[utoipa::path(get, path = "/api/v1/sensors/{id}/latest", tag = "readings",
    params(("id" = String, Path, description = "The sensor's id")),
    responses((status = 200, description = "The newest reading", body = schemas::Reading)))]
pub(crate) async fn latest(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let sensor = sensor_in_path(&id)?;
    let reading = blocking(&state, move |store| {
        crate::queries::latest_reading(store, sensor)
    })
    .await?;
    Ok(Json(reading).into_response())
}

/// Rejected readings with their raw payloads, newest first.
#[utoipa::path(get, path = "/api/v1/quarantine", tag = "readings", params(QuarantineQuery),
    responses((status = 200, description = "A page of quarantine entries", body = schemas::QuarantineList)))]
pub(crate) async fn quarantine(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(query.as_deref(), &["sensor", "limit", "cursor"])?;
    let mut problems = Problems::default();
    let limit = problems
        .check(params.limit(100, MAX_LIST_LIMIT))
        .unwrap_or(100);
    let before = problems
        .check(params.typed("cursor", |text| {
            text.parse::<i64>().map_err(|_| {
                FieldError::new(
                    "cursor",
                    Reason::InvalidFormat,
                    "is not a cursor this server issued",
                )
            })
        }))
        .flatten();
    problems.finish("the query is invalid")?;
    let filter = QuarantineFilter {
        sensor: params.text("sensor").map(str::to_string),
        limit,
        before,
    };
    let page = blocking(&state, move |store| Ok(store.quarantine(&filter)?)).await?;
    Ok(Json(ListBody::new(page)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings_only() {
        assert!(!exceeds_nesting(r#"[{"values": {"t": 1}}]"#, 3));
        assert!(exceeds_nesting(r#"[{"values": {"t": [1]}}]"#, 3));
        assert!(!exceeds_nesting(r#"{"a": "[[[[[[\"[[[["}"#, 1));
    }
}
