//! Liveness, readiness and Prometheus metrics; unauthenticated so probes and scrapers work.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::openapi::schemas;
use super::readings::blocking;
use crate::{ApiError, AppState};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = schemas::Health)))]
pub(crate) async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Ready when the store takes a write lock right now (or, during a database outage, while the
/// spool has room: then ready but degraded, with the spool's figures).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready (possibly degraded: spooling during a database outage)",
            body = schemas::Readiness),
        (status = 503, description = "Not ready", body = schemas::Readiness,
            example = json!({"status": "not_ready", "reason": "storage is unavailable; retry later"})),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match blocking(&state, |store| Ok((store.ready()?, store.degraded()))).await {
        Ok(((), None)) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Ok(((), Some(degraded))) => Json(serde_json::json!({
            "status": "ready",
            "degraded": degraded.reason,
            "details": degraded.details,
        }))
        .into_response(),
        Err(error) => {
            let body = serde_json::json!({"status": "not_ready", "reason": error.message});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String,
        example = "audrey_ingest_accepted_total 1440")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut text = String::with_capacity(4096);
    state.pipeline.metrics().render(&mut text);
    state.pipeline.store().render_metrics(&mut text);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
