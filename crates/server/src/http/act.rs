//! The act API over HTTP: events, the status log, alerts, rules, webhook subscriptions and
//! deliveries, commands, decommissioning. Every handler carries `#[utoipa::path]` and is
//! registered in `http/routes.rs` (router and OpenAPI document together); its wire shapes are
//! described in `openapi/act_schemas.rs`. Every handler parses its input, checks the scope,
//! and calls the act engine on a blocking thread.

pub(crate) mod commands;
pub(crate) mod monitoring;
pub(crate) mod webhooks;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use audrey_act::Engine;
use audrey_model::ErrorCode;

use crate::{ApiError, AppState};

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

/// Runs `work` with the act engine and answers its result as JSON (200).
pub(crate) async fn engine_json<T: serde::Serialize + Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Arc<Engine>) -> Result<T, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let answer = with_engine(state, work).await?;
    Ok(axum::Json(answer).into_response())
}

/// Runs `work` with the act engine and answers its items as one unpaged list.
pub(crate) async fn engine_list<T: serde::Serialize + Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Arc<Engine>) -> Result<Vec<T>, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let items = with_engine(state, work).await?;
    Ok(list_body(items, None).into_response())
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
