//! The HTTP/JSON API under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.

mod act;
mod locations;
mod operations;
mod params;
mod readings;
mod registry;
mod sensors;
mod tokens;

use axum::Router;
use axum::routing::get;

use audrey_model::{ErrorCode, Location, Sensor};

pub(crate) use readings::blocking;

use crate::{ApiError, AppState};

pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/readings", get(readings::list).post(readings::ingest))
        .route("/readings/{id}", get(readings::get_one))
        .route("/quarantine", get(readings::quarantine))
        .route(
            "/locations",
            get(locations::list).post(registry::create::<Location>),
        )
        .route(
            "/locations/{id}",
            get(registry::get_one::<Location>)
                .put(registry::put::<Location>)
                .patch(registry::patch::<Location>)
                .delete(registry::delete::<Location>),
        )
        .route(
            "/sensors",
            get(sensors::list).post(registry::create::<Sensor>),
        )
        .route(
            "/sensors/{id}",
            get(registry::get_one::<Sensor>)
                .put(registry::put::<Sensor>)
                .patch(registry::patch::<Sensor>)
                .delete(registry::delete::<Sensor>),
        )
        .route("/sensors/{id}/latest", get(readings::latest))
        .route("/sensors/{id}/counters", get(sensors::counters))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke));
    let api = act::routes(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(operations::healthz))
        .route("/readyz", get(operations::readyz))
        .route("/metrics", get(operations::metrics))
        .fallback(not_found)
        // Bodies are read with our own limit so an oversize body gets our error shape.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this method is not allowed on this route",
    )
}
