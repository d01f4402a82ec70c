//! The act API over HTTP: events, the status log, alerts, rules, webhook subscriptions and
//! deliveries, commands, decommissioning. Plain axum routes added by [`routes`]; every handler
//! parses its input, checks the scope, and calls the act engine on a blocking thread.

mod commands;
mod monitoring;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use audrey_act::Engine;
use audrey_model::ErrorCode;

use crate::{ApiError, AppState};

pub(crate) fn routes(api: Router<AppState>) -> Router<AppState> {
    api.route("/events", get(monitoring::events))
        .route("/status-log", get(monitoring::status_log))
        .route("/sensors/{id}/status", get(monitoring::sensor_status))
        .route(
            "/sensors/{id}/decommission",
            post(monitoring::decommission).delete(monitoring::recommission),
        )
        .route("/alerts", get(monitoring::alerts))
        .route("/alerts/{id}", get(monitoring::alert))
        .route("/alerts/{id}/acknowledge", post(monitoring::acknowledge))
        .route(
            "/rules",
            get(monitoring::rules).post(monitoring::create_rule),
        )
        .route(
            "/rules/{id}",
            get(monitoring::rule)
                .put(monitoring::replace_rule)
                .delete(monitoring::delete_rule),
        )
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/webhooks/{id}",
            get(webhooks::get_one)
                .patch(webhooks::patch)
                .delete(webhooks::delete),
        )
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/deliveries", get(webhooks::all_deliveries))
        .route("/deliveries/{id}/attempts", get(webhooks::attempts))
        .route("/deliveries/{id}/redeliver", post(webhooks::redeliver))
        .route(
            "/sensors/{id}/commands",
            get(commands::list_for_sensor).post(commands::create),
        )
        .route("/commands", get(commands::list))
        .route("/commands/{id}", get(commands::get_one))
        .route("/commands/{id}/cancel", post(commands::cancel))
}

/// Runs `work` with the act engine on a blocking thread.
pub(crate) async fn with_engine<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Arc<Engine>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = state.act.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "acting on data (rules, alerts, webhooks, commands) is not enabled on this server",
        )
    })?;
    tokio::task::spawn_blocking(move || work(&engine))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?
}

/// A list answer in the shape every list route uses.
pub(crate) fn list_body<T: serde::Serialize>(
    items: Vec<T>,
    next_cursor: Option<String>,
) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "count": items.len(),
        "is_empty": items.is_empty(),
        "items": items,
        "next_cursor": next_cursor,
    }))
}
