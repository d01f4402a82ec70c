//! `/api/v1/sensors`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};

use audrey_model::SensorId;
use audrey_store::SensorFilter;

use super::params::{Problems, QueryParams};
use super::readings::{ListBody, MAX_LIST_LIMIT, blocking};
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(
        query.as_deref(),
        &["location", "kind", "include_deleted", "limit", "cursor"],
    )?;
    let mut problems = Problems::default();
    let include_deleted = problems
        .check(params.flag("include_deleted"))
        .unwrap_or(false);
    let limit = problems
        .check(params.limit(100, MAX_LIST_LIMIT))
        .unwrap_or(100);
    problems.finish("the query is invalid")?;
    let filter = SensorFilter {
        location: params.text("location").map(str::to_string),
        kind: params.text("kind").map(str::to_string),
        include_deleted,
        limit,
        after: params.text("cursor").map(str::to_string),
    };
    let page = blocking(&state, move |store| Ok(store.sensors(&filter)?)).await?;
    Ok(Json(ListBody::new(page)).into_response())
}

/// Accepted, duplicate and rejected readings of one sensor since it was registered.
pub(crate) async fn counters(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let sensor =
        SensorId::parse(&id).map_err(|error| ApiError::invalid("bad sensor id", vec![error]))?;
    let counters = blocking(&state, move |store| {
        crate::queries::sensor_counters(store, sensor)
    })
    .await?;
    Ok(Json(counters).into_response())
}
