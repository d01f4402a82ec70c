//! `/api/v1/locations`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use audrey_store::LocationFilter;

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
        &["country", "city", "include_deleted", "limit", "cursor"],
    )?;
    let mut problems = Problems::default();
    let include_deleted = problems
        .check(params.flag("include_deleted"))
        .unwrap_or(false);
    let limit = problems
        .check(params.limit(100, MAX_LIST_LIMIT))
        .unwrap_or(100);
    problems.finish("the query is invalid")?;
    let filter = LocationFilter {
        country: params.text("country").map(str::to_string),
        city: params.text("city").map(str::to_string),
        include_deleted,
        limit,
        after: params.text("cursor").map(str::to_string),
    };
    let page = blocking(&state, move |store| Ok(store.locations(&filter)?)).await?;
    Ok(Json(ListBody::new(page)).into_response())
}
