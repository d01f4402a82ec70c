//! `/api/v1/locations`: the list, and the single-record handlers declared by
//! `entity_handlers!`.

use axum::Json;
use axum::response::{IntoResponse, Response};

use audrey_model::Location;
use audrey_store::LocationFilter;

use super::openapi::parameters::{LocationFilters, RegistryListQuery};
use super::params::registry_list_params;
use super::readings::{ListBody, MAX_LIST_LIMIT, blocking};
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

super::registry::entity_handlers!(
    entity = Location,
    name = "location",
    tag = "locations",
    collection = "/api/v1/locations",
    item = "/api/v1/locations/{id}",
    staged_delete = "/api/v1/locations/{id}/delete",
    record = Location,
    input = LocationInput,
);

/// Lists locations by id; soft-deleted ones only with include_deleted=true.
#[utoipa::path(get, path = "/api/v1/locations", tag = "locations",
    params(LocationFilters, RegistryListQuery),
    responses((status = 200, description = "A page of locations", body = schemas::LocationList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let (params, paging) =
        registry_list_params(query.as_deref(), &["country", "city"], MAX_LIST_LIMIT)?;
    let filter = LocationFilter {
        country: params.text("country").map(str::to_string),
        city: params.text("city").map(str::to_string),
        include_deleted: paging.include_deleted,
        limit: paging.limit,
        after: paging.after,
    };
    let page = blocking(&state, move |store| Ok(store.locations(&filter)?)).await?;
    Ok(Json(ListBody::new(page)).into_response())
}
