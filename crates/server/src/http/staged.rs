//! `/api/v1/staged`: pending two-step changes, their confirmation links and cancelling.
//!
//! A link is `/api/v1/staged/confirm/{secret}`. GET on it shows what it would do and changes
//! nothing (link previewers and prefetchers follow GETs); POST on it applies the change, once.
//! Both need an admin token: the link is a second factor, not a credential.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use audrey_model::Millis;
use audrey_store::{Page, StagedChange};

use super::openapi::schemas;
use super::params::QueryParams;
use super::readings::{ListBody, blocking};
use crate::auth::{Principal, Scope};
use crate::registry::staged;
use crate::{ApiError, AppState};

/// Pending, unexpired staged changes, oldest first (admin).
#[utoipa::path(get, path = "/api/v1/staged", tag = "staged",
    responses((status = 200, description = "The pending changes", body = schemas::StagedChangeList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    QueryParams::parse(query.as_deref(), &[])?;
    let items = blocking(&state, |store| staged::pending(store, Millis::now())).await?;
    Ok(Json(ListBody::new(Page {
        items,
        next_cursor: None,
    }))
    .into_response())
}

/// Cancels a pending staged change (admin); its link then answers 410.
#[utoipa::path(delete, path = "/api/v1/staged/{id}", tag = "staged",
    params(("id" = String, Path, description = "The staged change's id")),
    responses((status = 204, description = "Cancelled")))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    QueryParams::parse(query.as_deref(), &[])?;
    blocking(&state, move |store| staged::cancel(store, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Shows the change behind a confirmation link without applying it (admin).
#[utoipa::path(get, path = "/api/v1/staged/confirm/{secret}", tag = "staged",
    params(("secret" = String, Path, description = "The secret part of the confirmation link")),
    responses(
        (status = 200, description = "The pending change", body = schemas::StagedChange),
        (status = 410, description = "The link was used, cancelled or has expired", body = schemas::ErrorBody),
    ))]
pub(crate) async fn preview(
    State(state): State<AppState>,
    principal: Principal,
    Path(secret): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    QueryParams::parse(query.as_deref(), &[])?;
    let change = blocking(&state, move |store| {
        staged::pending_by_secret(store, &secret, Millis::now())
    })
    .await?;
    Ok(Json(change).into_response())
}

#[derive(Serialize)]
struct Confirmed {
    staged: StagedChange,
    result: serde_json::Value,
}

/// Applies the change behind a confirmation link (admin); a link works once.
#[utoipa::path(post, path = "/api/v1/staged/confirm/{secret}", tag = "staged",
    params(("secret" = String, Path, description = "The secret part of the confirmation link")),
    responses(
        (status = 200, description = "Applied", body = schemas::ConfirmedChange),
        (status = 409, description = "The change no longer fits (it stays pending)", body = schemas::ErrorBody),
        (status = 410, description = "The link was used, cancelled or has expired", body = schemas::ErrorBody),
    ))]
pub(crate) async fn confirm(
    State(state): State<AppState>,
    principal: Principal,
    Path(secret): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    QueryParams::parse(query.as_deref(), &[])?;
    let (staged, result) = blocking(&state, move |store| staged::confirm(store, &secret)).await?;
    Ok(Json(Confirmed { staged, result }).into_response())
}
