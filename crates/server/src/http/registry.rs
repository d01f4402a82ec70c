//! Create, read, replace, patch and soft-delete, written once for every registry entity.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use audrey_model::{FieldError, Millis, Reason, merge_patch};
use audrey_store::{Store, StoreError};

use super::params::{json_body, read_body};
use super::readings::blocking;
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

/// What the generic handlers need to know about a registry entity.
pub(crate) trait Entity: Serialize + Sized + Send + 'static {
    type Id: std::fmt::Display + Send + 'static;
    type Input: DeserializeOwned + Serialize + Send + 'static;
    const NAME: &'static str;

    fn parse_id(text: &str) -> Result<Self::Id, FieldError>;
    /// The id a POST body names, or a generated one when the entity allows that.
    fn id_for_create(input: &Self::Input) -> Result<Self::Id, FieldError>;
    fn build(
        input: Self::Input,
        id: Self::Id,
        now: Millis,
        created_at: Option<Millis>,
    ) -> Result<Self, Vec<FieldError>>;
    fn to_input(&self) -> Self::Input;
    fn created_at(&self) -> Millis;
    fn load(store: &dyn Store, id: &Self::Id) -> Result<Option<Self>, StoreError>;
    fn save(store: &dyn Store, entity: &Self, must_be_new: bool) -> Result<bool, StoreError>;
    fn remove(store: &dyn Store, id: &Self::Id, at: Millis) -> Result<(), StoreError>;
    fn is_deleted(&self) -> bool;
}

fn parse_path_id<E: Entity>(text: &str) -> Result<E::Id, ApiError> {
    E::parse_id(text).map_err(|error| ApiError::invalid(format!("bad {} id", E::NAME), vec![error]))
}

fn invalid<E: Entity>(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid(format!("the {} is invalid", E::NAME), errors)
}

pub(crate) async fn get_one<E: Entity>(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id = parse_path_id::<E>(&id)?;
    let found = blocking(&state, move |store| {
        Ok(E::load(store, &id)?.map(|entity| (id, entity)))
    })
    .await?;
    match found {
        Some((_, entity)) => Ok(Json(entity).into_response()),
        None => Err(ApiError::new(
            audrey_model::ErrorCode::NotFound,
            format!("no {} has that id", E::NAME),
        )),
    }
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
    let id = E::id_for_create(&input).map_err(|error| invalid::<E>(vec![error]))?;
    let entity = E::build(input, id, Millis::now(), None).map_err(invalid::<E>)?;
    let entity = blocking(&state, move |store| {
        E::save(store, &entity, true)?;
        Ok(entity)
    })
    .await?;
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
    let id = parse_path_id::<E>(&id)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let input: E::Input = json_body(&bytes)?;
    let (created, entity) = blocking(&state, move |store| {
        let existing = E::load(store, &id)?;
        let entity = E::build(
            input,
            id,
            Millis::now(),
            existing.map(|old| old.created_at()),
        )
        .map_err(invalid::<E>)?;
        Ok((E::save(store, &entity, false)?, entity))
    })
    .await?;
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
    let id = parse_path_id::<E>(&id)?;
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
        let existing = E::load(store, &id)?
            .filter(|entity| !entity.is_deleted())
            .ok_or_else(|| ApiError::not_found(format!("{} {id}", E::NAME)))?;
        let mut document = serde_json::to_value(existing.to_input())
            .map_err(|_| ApiError::new(audrey_model::ErrorCode::Internal, "internal error"))?;
        merge_patch(&mut document, &changes);
        let input: E::Input = serde_path_to_error::deserialize(document)
            .map_err(|error| invalid::<E>(vec![FieldError::from_serde(error)]))?;
        let entity = E::build(input, id, Millis::now(), Some(existing.created_at()))
            .map_err(invalid::<E>)?;
        E::save(store, &entity, false)?;
        Ok(entity)
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
    let id = parse_path_id::<E>(&id)?;
    blocking(&state, move |store| {
        Ok(E::remove(store, &id, Millis::now())?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
