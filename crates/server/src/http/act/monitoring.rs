//! Events, the status log, sensor status and decommissioning, alerts, rules.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use audrey_act::{AlertFilter, AlertStatus, EventFilter, RuleInput};
use audrey_model::{FieldError, Reason};

use super::{engine_json, engine_list, list_body, with_engine};
use crate::auth::{Principal, Scope};
use crate::http::openapi::parameters::{AlertsQuery, EventsQuery, StatusLogQuery};
use crate::http::openapi::{act_schemas as schemas, schemas::ErrorBody};
use crate::http::params::{Problems, QueryParams, json_body, read_body, sensor_in_path};
use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(EventsQuery),
    responses((status = 200, description = "Events, by when they were recorded", body = schemas::EventList)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(query.as_deref(), &["type", "sensor", "cursor", "limit"])?;
    let mut problems = Problems::default();
    let limit = problems.check(params.limit(100, 1000)).unwrap_or(100);
    let after = problems
        .check(params.typed("cursor", |text| {
            text.parse::<i64>().map_err(|_| {
                FieldError::new(
                    "cursor",
                    Reason::InvalidFormat,
                    "is not a cursor this server gave out",
                )
            })
        }))
        .flatten();
    problems.finish("the query string is invalid")?;
    let filter = EventFilter {
        kind: params.text("type").map(str::to_string),
        sensor_id: params.text("sensor").map(str::to_string),
        after,
        limit,
    };
    let events = with_engine(&state, move |engine| Ok(engine.events(&filter)?)).await?;
    let next = (events.len() == limit)
        .then(|| events.last().map(|(seq, _)| seq.to_string()))
        .flatten();
    let items: Vec<_> = events.into_iter().map(|(_, event)| event).collect();
    Ok(list_body(items, next).into_response())
}

#[utoipa::path(get, path = "/api/v1/status-log", tag = "health",
    params(StatusLogQuery),
    responses((status = 200, description = "Status changes, newest first", body = schemas::StatusChangeList)))]
pub(crate) async fn status_log(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(query.as_deref(), &["sensor", "limit"])?;
    let limit = params
        .limit(100, 10_000)
        .map_err(|error| ApiError::invalid("the query string is invalid", vec![error]))?;
    let sensor = params.text("sensor").map(str::to_string);
    let log = with_engine(&state, move |engine| {
        Ok(engine.status_log(sensor.as_deref(), limit)?)
    })
    .await?;
    Ok(list_body(log, None).into_response())
}

#[utoipa::path(get, path = "/api/v1/sensors/{id}/status", tag = "health",
    params(("id" = String, Path, description = "The sensor's id", example = "th-0001")),
    responses((status = 200, description = "The sensor's status and its last 100 changes", body = schemas::SensorStatus)))]
pub(crate) async fn sensor_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let sensor = sensor_in_path(&id)?;
    let (status, log) = with_engine(&state, move |engine| {
        Ok((
            engine.status(sensor.as_str())?,
            engine.status_log(Some(sensor.as_str()), 100)?,
        ))
    })
    .await?;
    Ok(Json(serde_json::json!({ "sensor_id": id, "status": status, "log": log })).into_response())
}

async fn set_decommissioned(
    state: AppState,
    principal: Principal,
    id: String,
    to: bool,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let sensor = sensor_in_path(&id)?;
    let status = with_engine(&state, move |engine| {
        Ok(engine.set_decommissioned(sensor.as_str(), to)?)
    })
    .await?;
    Ok(Json(serde_json::json!({ "sensor_id": id, "status": status })).into_response())
}

#[utoipa::path(post, path = "/api/v1/sensors/{id}/decommission", tag = "health",
    params(("id" = String, Path, description = "The sensor's id", example = "th-0001")),
    responses((status = 200, description = "The sensor is decommissioned: no alerts, no offline status", body = schemas::CommissionStatus)))]
pub(crate) async fn decommission(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_decommissioned(state, principal, id, true).await
}

#[utoipa::path(delete, path = "/api/v1/sensors/{id}/decommission", tag = "health",
    params(("id" = String, Path, description = "The sensor's id", example = "th-0001")),
    responses((status = 200, description = "The sensor is back in service (online, or offline when silent)", body = schemas::CommissionStatus)))]
pub(crate) async fn recommission(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_decommissioned(state, principal, id, false).await
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(AlertsQuery),
    responses((status = 200, description = "Alerts, newest first", body = schemas::AlertList)))]
pub(crate) async fn alerts(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(query.as_deref(), &["status", "sensor", "rule", "limit"])?;
    let mut problems = Problems::default();
    let limit = problems.check(params.limit(100, 10_000)).unwrap_or(100);
    let status = problems
        .check(params.typed("status", |text| {
            AlertStatus::parse(text).ok_or_else(|| {
                FieldError::new(
                    "status",
                    Reason::InvalidFormat,
                    "must be active, acknowledged or cleared",
                )
            })
        }))
        .flatten();
    problems.finish("the query string is invalid")?;
    let filter = AlertFilter {
        status,
        sensor_id: params.text("sensor").map(str::to_string),
        rule_id: params.text("rule").map(str::to_string),
        limit,
    };
    engine_list(&state, move |engine| Ok(engine.alerts(&filter)?)).await
}

#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    responses((status = 200, description = "The alert", body = schemas::Alert)))]
pub(crate) async fn alert(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    engine_json(&state, move |engine| Ok(engine.alert(&id)?)).await
}

#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The acknowledged alert", body = schemas::Alert),
        (status = 409, description = "The alert is already cleared", body = ErrorBody)))]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    engine_json(&state, move |engine| Ok(engine.acknowledge_alert(&id)?)).await
}

#[utoipa::path(get, path = "/api/v1/rules", tag = "rules",
    responses((status = 200, description = "Every rule", body = schemas::RuleList)))]
pub(crate) async fn rules(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    engine_list(&state, |engine| Ok(engine.rules()?)).await
}

#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    responses((status = 200, description = "The rule", body = schemas::Rule)))]
pub(crate) async fn rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    engine_json(&state, move |engine| Ok(engine.rule(&id)?)).await
}

#[utoipa::path(post, path = "/api/v1/rules", tag = "rules",
    request_body = schemas::RuleInput,
    responses((status = 201, description = "The new rule, in force for the next reading", body = schemas::Rule)))]
pub(crate) async fn create_rule(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let input: RuleInput = json_body(&bytes)?;
    let rule = with_engine(&state, move |engine| Ok(engine.create_rule(input)?)).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    request_body = schemas::RuleInput,
    responses((status = 200, description = "The replaced rule", body = schemas::Rule)))]
pub(crate) async fn replace_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let input: RuleInput = json_body(&bytes)?;
    engine_json(&state, move |engine| Ok(engine.replace_rule(&id, input)?)).await
}

#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    with_engine(&state, move |engine| Ok(engine.delete_rule(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
