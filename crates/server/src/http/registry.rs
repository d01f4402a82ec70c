//! The HTTP face of the registry operations: parse, authorise, call, render.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use audrey_model::{FieldError, Reason};

use super::params::{json_body, read_body};
use super::readings::blocking;
use crate::auth::{Principal, Scope};
use crate::registry::{self, Entity};
use crate::{ApiError, AppState};

pub(crate) async fn get_one<E: Entity>(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id = registry::parse_id::<E>(&id)?;
    let entity = blocking(&state, move |store| registry::get::<E>(store, &id)).await?;
    Ok(Json(entity).into_response())
}

pub(crate) async fn create<E: Entity>(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let input: E::Input = json_body(&bytes)?;
    let entity = blocking(&state, move |store| registry::create::<E>(store, input)).await?;
    Ok((StatusCode::CREATED, Json(entity)).into_response())
}

pub(crate) async fn put<E: Entity>(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let id = registry::parse_id::<E>(&id)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let input: E::Input = json_body(&bytes)?;
    let (created, entity) =
        blocking(&state, move |store| registry::put::<E>(store, id, input)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entity)).into_response())
}

pub(crate) async fn patch<E: Entity>(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let id = registry::parse_id::<E>(&id)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let changes: serde_json::Value = json_body(&bytes)?;
    if !changes.is_object() {
        return Err(ApiError::invalid(
            "a merge patch must be a JSON object",
            vec![FieldError::new(
                "",
                Reason::InvalidType,
                "expected a JSON object",
            )],
        ));
    }
    let entity = blocking(&state, move |store| {
        registry::patch::<E>(store, id, &changes)
    })
    .await?;
    Ok(Json(entity).into_response())
}

pub(crate) async fn delete<E: Entity>(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let id = registry::parse_id::<E>(&id)?;
    blocking(&state, move |store| registry::delete::<E>(store, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
