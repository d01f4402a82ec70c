//! Webhook subscriptions, their deliveries and attempts, manual redelivery.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use audrey_act::SubscriptionInput;

use super::{engine_json, engine_list, list_body, with_engine};
use crate::auth::{Principal, Scope};
use crate::http::openapi::act_schemas as schemas;
use crate::http::openapi::parameters::LimitQuery;
use crate::http::params::{QueryParams, json_body, read_body};
use crate::{ApiError, AppState};

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks",
    request_body = schemas::SubscriptionInput,
    responses((status = 201, description = "The new subscription (its secret is not shown again)", body = schemas::Subscription)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let input: SubscriptionInput = json_body(&bytes)?;
    let created = with_engine(&state, move |engine| Ok(engine.create_subscription(input)?)).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "Every subscription", body = schemas::SubscriptionList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    engine_list(&state, |engine| Ok(engine.subscriptions()?)).await
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, description = "The subscription", body = schemas::Subscription)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    engine_json(&state, move |engine| Ok(engine.subscription(&id)?)).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    enabled: bool,
}

/// `{"enabled": true}` re-enables a disabled subscription (and resets its failure count).
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body = schemas::SubscriptionPatch,
    responses((status = 200, description = "The subscription", body = schemas::Subscription)))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let patch: Patch = json_body(&bytes)?;
    let subscription = with_engine(&state, move |engine| {
        Ok(engine.set_subscription_enabled(&id, patch.enabled)?)
    })
    .await?;
    Ok(Json(subscription).into_response())
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    with_engine(&state, move |engine| Ok(engine.delete_subscription(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id"), LimitQuery),
    responses((status = 200, description = "The subscription's deliveries, newest first", body = schemas::DeliveryList)))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let params = QueryParams::parse(query.as_deref(), &["limit"])?;
    let limit = params
        .limit(100, 10_000)
        .map_err(|error| ApiError::invalid("the query string is invalid", vec![error]))?;
    let deliveries = with_engine(&state, move |engine| {
        engine.subscription(&id)?;
        Ok(engine.deliveries(Some(&id), limit)?)
    })
    .await?;
    Ok(list_body(deliveries, None).into_response())
}

#[utoipa::path(get, path = "/api/v1/deliveries", tag = "webhooks",
    params(LimitQuery),
    responses((status = 200, description = "Deliveries to every subscription, newest first", body = schemas::DeliveryList)))]
pub(crate) async fn all_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let params = QueryParams::parse(query.as_deref(), &["limit"])?;
    let limit = params
        .limit(100, 10_000)
        .map_err(|error| ApiError::invalid("the query string is invalid", vec![error]))?;
    engine_list(&state, move |engine| Ok(engine.deliveries(None, limit)?)).await
}

#[utoipa::path(get, path = "/api/v1/deliveries/{id}/attempts", tag = "webhooks",
    params(("id" = String, Path, description = "The delivery's id")),
    responses((status = 200, description = "Every attempt to deliver it", body = schemas::AttemptList)))]
pub(crate) async fn attempts(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    engine_list(&state, move |engine| Ok(engine.delivery_attempts(&id)?)).await
}

#[utoipa::path(post, path = "/api/v1/deliveries/{id}/redeliver", tag = "webhooks",
    params(("id" = String, Path, description = "The delivery's id")),
    responses((status = 202, description = "The delivery, pending again and due now", body = schemas::Delivery)))]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let delivery = with_engine(&state, move |engine| Ok(engine.redeliver(&id)?)).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)).into_response())
}
