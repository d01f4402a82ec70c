//! `GET /api/v1/locations/near?lat=&lon=&radius_km=&limit=`: live locations within a radius,
//! nearest first, each with `distance_km` (haversine on a sphere of radius 6371.0088 km).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use audrey_store::NearLocation;

use super::params::{Problems, QueryParams};
use super::readings::{MAX_LIST_LIMIT, blocking};
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

/// The radius filter parameters that sensor and reading lists take.
pub(crate) const NEAR_PARAMETERS: [&str; 3] = ["near_lat", "near_lon", "radius_km"];

#[derive(Serialize)]
struct NearBody {
    items: Vec<NearLocation>,
    count: usize,
}

#[utoipa::path(get, path = "/api/v1/locations/near", tag = "locations",
    params(super::openapi::parameters::NearQuery),
    responses((status = 200, description = "Live locations within the radius, nearest first",
        body = super::openapi::schemas::NearList)))]
pub(crate) async fn near(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let names = ["lat", "lon", "radius_km"];
    let params = QueryParams::parse(query.as_deref(), &["lat", "lon", "radius_km", "limit"])?;
    let mut problems = Problems::default();
    let circle = problems.check_all(params.circle(names)).flatten();
    let limit = problems
        .check(params.limit(100, MAX_LIST_LIMIT))
        .unwrap_or(100);
    if circle.is_none() {
        for name in names.iter().filter(|name| params.text(name).is_none()) {
            problems.check::<()>(Err(audrey_model::FieldError::new(
                *name,
                audrey_model::Reason::MissingField,
                "is required",
            )));
        }
    }
    problems.finish("the query is invalid")?;
    let Some(circle) = circle else {
        return Err(ApiError::invalid("the query is invalid", Vec::new()));
    };
    let items = blocking(&state, move |store| {
        Ok(store.locations_near(&circle, limit)?)
    })
    .await?;
    Ok(Json(NearBody {
        count: items.len(),
        items,
    })
    .into_response())
}
