//! `/api/v1/tokens`: create (the secret is answered once), list, revoke.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use audrey_model::{FieldError, Millis, Reason, SensorId};
use audrey_store::StoredToken;

use super::params::{json_body, read_body};
use super::readings::blocking;
use crate::auth::{Principal, Scope, create_token};
use crate::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    #[serde(default)]
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    sensor_id: Option<String>,
}

#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    record: StoredToken,
    /// The secret: shown now and never again.
    token: String,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let request: TokenRequest = json_body(&bytes)?;
    let mut errors = Vec::new();
    let scopes: Vec<Scope> = request
        .scopes
        .iter()
        .enumerate()
        .filter_map(|(index, text)| {
            Scope::parse(text).or_else(|| {
                errors.push(FieldError::new(
                    format!("scopes[{index}]"),
                    Reason::InvalidFormat,
                    format!("{text:?} is not one of admin, write, read"),
                ));
                None
            })
        })
        .collect();
    let sensor = request
        .sensor_id
        .as_deref()
        .map(SensorId::parse)
        .transpose()
        .map_err(|error| {
            errors.push(FieldError {
                path: "sensor_id".into(),
                ..error
            })
        })
        .ok()
        .flatten();
    if !errors.is_empty() {
        return Err(ApiError::invalid("the token request is invalid", errors));
    }
    let name = request.name;
    let (record, token) = blocking(&state, move |store| {
        Ok(create_token(store, &name, &scopes, sensor.as_ref())?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { record, token })).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let tokens = blocking(&state, |store| Ok(store.tokens()?)).await?;
    Ok(Json(serde_json::json!({ "count": tokens.len(), "is_empty": tokens.is_empty(), "items": tokens, "next_cursor": null }))
        .into_response())
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    blocking(&state, move |store| {
        Ok(store.revoke_token(&id, Millis::now())?)
    })
    .await?;
    state.tokens.invalidate();
    Ok(StatusCode::NO_CONTENT.into_response())
}
