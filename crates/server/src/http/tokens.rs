//! `/api/v1/tokens`: create (the secret is answered once), list, read, revoke (the token's
//! soft delete) and purge.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use audrey_model::{ErrorCode, FieldError, Millis, Reason, SensorId};
use audrey_store::StoredToken;

use super::conditional::{entity_response, if_match};
use super::openapi::parameters::{DeleteQuery, RegistryListQuery, VisibilityQuery};
use super::openapi::schemas;
use super::params::{QueryParams, json_body, read_body, registry_list_params};
use super::readings::blocking;
use crate::auth::{Principal, Scope, check_token_request, create_token, create_token_with_id};
use crate::registry::{self, Precondition, version_tag};
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

/// Creates a token (admin); the secret is in this answer and never again.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = schemas::TokenRequest,
    responses((status = 201, description = "The new token with its secret", body = schemas::CreatedToken)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let (name, scopes, sensor) = parse_request(&bytes)?;
    let (record, token) = blocking(&state, move |store| {
        Ok(create_token(store, &name, &scopes, sensor.as_ref())?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { record, token })).into_response())
}

/// A token request body as typed values, or 422 naming every bad field.
fn parse_request(bytes: &[u8]) -> Result<(String, Vec<Scope>, Option<SensorId>), ApiError> {
    let request: TokenRequest = json_body(bytes)?;
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
    Ok((request.name, scopes, sensor))
}

/// Whether a token id can be chosen by a client: 1 to 64 of `[A-Za-z0-9_-]`.
fn token_id_in_path(id: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "bad token id",
            vec![FieldError::new(
                "id",
                Reason::InvalidFormat,
                "must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -",
            )],
        ))
    }
}

enum PutOutcome {
    Created(CreatedToken),
    Replaced(StoredToken),
}

/// Creates a token with this id (201, with its secret) or replaces the name, scopes and sensor
/// binding of the existing one (200; its secret stays). If-Match guards a replace.
#[utoipa::path(put, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id: 1 to 64 of A-Z, a-z, 0-9, _ and -"),
        ("If-Match" = Option<String>, Header, description = "The ETag you read; 412 if the record changed since")),
    request_body = schemas::TokenRequest,
    responses(
        (status = 200, description = "Replaced", body = schemas::Token,
            headers(("ETag" = String, description = "Strong version tag of the record"))),
        (status = 201, description = "Created, with its secret", body = schemas::CreatedToken),
        (status = 409, description = "A token cannot change itself", body = schemas::ErrorBody),
        (status = 412, description = "If-Match does not match the current ETag", body = schemas::ErrorBody),
    ))]
pub(crate) async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    QueryParams::parse(query.as_deref(), &[])?;
    token_id_in_path(&id)?;
    if id == principal.token_id {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "a token cannot change itself; use another admin token",
        ));
    }
    let precondition = if_match(&headers)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let (name, scopes, sensor) = parse_request(&bytes)?;
    let outcome = blocking(&state, move |store| {
        registry::with_write_lock(|| {
            let existing = store.tokens()?.into_iter().find(|token| token.id == id);
            let current = existing
                .as_ref()
                .filter(|token| token.revoked_at.is_none())
                .map(version_tag);
            if !precondition.holds(current.as_deref()) {
                return Err(Precondition::failed("token"));
            }
            match existing {
                Some(mut token) => {
                    check_token_request(store, &scopes, sensor.as_ref())?;
                    token.name = name;
                    token.scopes = scopes
                        .iter()
                        .map(|scope| scope.as_str().to_string())
                        .collect();
                    token.sensor_id = sensor.map(|sensor| sensor.to_string());
                    store.replace_token(&token)?;
                    Ok(PutOutcome::Replaced(token))
                }
                None => {
                    let (record, token) =
                        create_token_with_id(store, id, &name, &scopes, sensor.as_ref())?;
                    Ok(PutOutcome::Created(CreatedToken { record, token }))
                }
            }
        })
    })
    .await?;
    state.tokens.invalidate();
    match outcome {
        PutOutcome::Created(created) => Ok((StatusCode::CREATED, Json(created)).into_response()),
        PutOutcome::Replaced(token) => entity_response(StatusCode::OK, &token, None),
    }
}

/// Lists tokens (admin), oldest first; revoked ones only with include_deleted=true.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(RegistryListQuery),
    responses((status = 200, description = "The tokens", body = schemas::TokenList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let (_, paging) = registry_list_params(query.as_deref(), &[], MAX_TOKENS_PAGE)?;
    let tokens = blocking(&state, |store| Ok(store.tokens()?)).await?;
    let mut items: Vec<StoredToken> = tokens
        .into_iter()
        .filter(|token| paging.include_deleted || token.revoked_at.is_none())
        .filter(|token| {
            paging
                .after
                .as_ref()
                .is_none_or(|after| token_key(token) > *after)
        })
        .collect();
    let next_cursor = (items.len() > paging.limit).then(|| {
        items.truncate(paging.limit);
        items.last().map(token_key).unwrap_or_default()
    });
    Ok(Json(serde_json::json!({
        "count": items.len(), "is_empty": items.is_empty(), "items": items, "next_cursor": next_cursor
    }))
    .into_response())
}

const MAX_TOKENS_PAGE: usize = 10_000;

/// The list order (creation time, then id) as a cursor.
fn token_key(token: &StoredToken) -> String {
    format!("{:020}-{}", token.created_at.0, token.id)
}

fn find_token(tokens: Vec<StoredToken>, id: &str) -> Result<StoredToken, ApiError> {
    tokens
        .into_iter()
        .find(|token| token.id == id)
        .ok_or_else(|| ApiError::not_found(format!("token {id}")))
}

/// Reads one token's record (admin); a revoked one only with include_deleted=true.
#[utoipa::path(get, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id"), VisibilityQuery,
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) you hold; 304 when current")),
    responses(
        (status = 200, description = "The token", body = schemas::Token,
            headers(("ETag" = String, description = "Strong version tag of the record"))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
    ))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let params = QueryParams::parse(query.as_deref(), &["include_deleted"])?;
    let include_deleted = params
        .flag("include_deleted")
        .map_err(|error| ApiError::invalid("the query string is invalid", vec![error]))?;
    let token = blocking(&state, move |store| find_token(store.tokens()?, &id)).await?;
    if token.revoked_at.is_some() && !include_deleted {
        return Err(ApiError::not_found(format!(
            "token {} (revoked; ask with include_deleted=true)",
            token.id
        )));
    }
    entity_response(StatusCode::OK, &token, Some(&headers))
}

/// Revokes a token (admin) at once; purge=true deletes its record for real.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id"), DeleteQuery),
    responses(
        (status = 204, description = "Revoked (or purged)"),
        (status = 409, description = "A token cannot revoke itself", body = schemas::ErrorBody),
    ))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let params = QueryParams::parse(query.as_deref(), &["purge"])?;
    let purge = params
        .flag("purge")
        .map_err(|error| ApiError::invalid("the query string is invalid", vec![error]))?;
    if id == principal.token_id {
        // Revoking the token in hand would lock this caller out mid-session; most often it is
        // the only admin token. Another admin token may do it.
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "a token cannot revoke itself; use another admin token",
        ));
    }
    blocking(&state, move |store| {
        if purge {
            Ok(store.purge_token(&id)?)
        } else {
            Ok(store.revoke_token(&id, Millis::now())?)
        }
    })
    .await?;
    state.tokens.invalidate();
    Ok(StatusCode::NO_CONTENT.into_response())
}
