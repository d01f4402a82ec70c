//! `/api/v1/sensors`: the list, counters, and the single-record handlers declared by
//! `entity_handlers!`.

use axum::Json;
use axum::response::{IntoResponse, Response};

use audrey_model::Sensor;
use audrey_store::SensorFilter;

use super::geo::NEAR_PARAMETERS;
use super::openapi::parameters::{RegistryListQuery, SensorFilters};
use super::params::{Problems, registry_list_params, sensor_in_path};
use super::readings::{ListBody, MAX_LIST_LIMIT, blocking};
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

super::registry::entity_handlers!(
    entity = Sensor,
    name = "sensor",
    tag = "sensors",
    collection = "/api/v1/sensors",
    item = "/api/v1/sensors/{id}",
    staged_delete = "/api/v1/sensors/{id}/delete",
    record = Sensor,
    input = SensorInput,
);

/// Lists sensors by id; soft-deleted ones only with include_deleted=true.
#[utoipa::path(get, path = "/api/v1/sensors", tag = "sensors",
    params(SensorFilters, super::openapi::parameters::NearFilter, RegistryListQuery),
    responses((status = 200, description = "A page of sensors", body = schemas::SensorList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let (params, paging) = registry_list_params(
        query.as_deref(),
        &["location", "kind", "near_lat", "near_lon", "radius_km"],
        MAX_LIST_LIMIT,
    )?;
    let mut problems = Problems::default();
    let near = problems.check_all(params.circle(NEAR_PARAMETERS)).flatten();
    problems.finish("the query is invalid")?;
    let filter = SensorFilter {
        location: params.text("location").map(str::to_string),
        kind: params.text("kind").map(str::to_string),
        near,
        include_deleted: paging.include_deleted,
        limit: paging.limit,
        after: paging.after,
    };
    let page = blocking(&state, move |store| Ok(store.sensors(&filter)?)).await?;
    Ok(Json(ListBody::new(page)).into_response())
}

/// Accepted, duplicate and rejected readings of one sensor since it was registered.
#[utoipa::path(get, path = "/api/v1/sensors/{id}/counters", tag = "sensors",
    params(("id" = String, Path, description = "The sensor's id")),
    responses((status = 200, description = "The sensor's counters", body = schemas::SensorCounters)))]
pub(crate) async fn counters(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let sensor = sensor_in_path(&id)?;
    let counters = blocking(&state, move |store| {
        crate::queries::sensor_counters(store, sensor)
    })
    .await?;
    Ok(Json(counters).into_response())
}
