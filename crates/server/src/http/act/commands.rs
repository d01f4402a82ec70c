//! Commands to devices: create, list, get, cancel.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use audrey_act::CommandStatus;
use audrey_model::{FieldError, Reason};

use super::{engine_json, list_body, with_engine};
use crate::auth::{Principal, Scope};
use crate::http::openapi::parameters::CommandsQuery;
use crate::http::openapi::{act_schemas as schemas, schemas::ErrorBody};
use crate::http::params::{Problems, QueryParams, json_body, read_body, sensor_in_path};
use crate::{ApiError, AppState};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRequest {
    name: String,
    #[serde(default)]
    payload: serde_json::Value,
    /// Seconds the command may wait for delivery.
    ttl: u64,
}

#[utoipa::path(post, path = "/api/v1/sensors/{id}/commands", tag = "commands",
    params(("id" = String, Path, description = "The sensor's id", example = "th-0001")),
    request_body = schemas::CommandRequest,
    responses((status = 201, description = "The queued command", body = schemas::Command)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let sensor = sensor_in_path(&id)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let request: CommandRequest = json_body(&bytes)?;
    let command = with_engine(&state, move |engine| {
        Ok(engine.create_command(sensor.as_str(), &request.name, request.payload, request.ttl)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(command)).into_response())
}

async fn list_commands(
    state: AppState,
    sensor: Option<String>,
    query: Option<String>,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["status", "limit"])?;
    let mut problems = Problems::default();
    let limit = problems.check(params.limit(100, 10_000)).unwrap_or(100);
    let status = problems
        .check(params.typed("status", |text| {
            CommandStatus::parse(text).ok_or_else(|| {
                FieldError::new(
                    "status",
                    Reason::InvalidFormat,
                    "must be queued, sent, delivered, succeeded, failed, expired or cancelled",
                )
            })
        }))
        .flatten();
    problems.finish("the query string is invalid")?;
    let commands = with_engine(&state, move |engine| {
        Ok(engine.commands(sensor.as_deref(), status, limit)?)
    })
    .await?;
    Ok(list_body(commands, None).into_response())
}

#[utoipa::path(get, path = "/api/v1/sensors/{id}/commands", tag = "commands",
    params(("id" = String, Path, description = "The sensor's id", example = "th-0001"), CommandsQuery),
    responses((status = 200, description = "The sensor's commands, newest first", body = schemas::CommandList)))]
pub(crate) async fn list_for_sensor(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let sensor = sensor_in_path(&id)?;
    list_commands(state, Some(sensor.to_string()), query).await
}

#[utoipa::path(get, path = "/api/v1/commands", tag = "commands",
    params(CommandsQuery),
    responses((status = 200, description = "Commands to every sensor, newest first", body = schemas::CommandList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    list_commands(state, None, query).await
}

#[utoipa::path(get, path = "/api/v1/commands/{id}", tag = "commands",
    params(("id" = String, Path, description = "The command's id")),
    responses((status = 200, description = "The command", body = schemas::Command)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    engine_json(&state, move |engine| Ok(engine.command(&id)?)).await
}

#[utoipa::path(post, path = "/api/v1/commands/{id}/cancel", tag = "commands",
    params(("id" = String, Path, description = "The command's id")),
    responses(
        (status = 200, description = "The cancelled command", body = schemas::Command),
        (status = 409, description = "The command is already in the device's hands or finished", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    engine_json(&state, move |engine| Ok(engine.cancel_command(&id)?)).await
}
