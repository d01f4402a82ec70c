//! `/api/v1/locations`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use audrey_store::LocationFilter;

use super::params::registry_list_params;
use super::readings::{ListBody, MAX_LIST_LIMIT, blocking};
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

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
