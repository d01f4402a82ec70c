//! Create, read, replace, patch and soft-delete, written once for every registry entity and
//! every transport. HTTP and gRPC handlers parse their input and call these.

mod entities;

use serde::Serialize;
use serde::de::DeserializeOwned;

use audrey_model::{ErrorCode, FieldError, Millis, merge_patch};
use audrey_store::{Store, StoreError};

use crate::ApiError;

/// What the generic operations need to know about a registry entity.
pub(crate) trait Entity: Serialize + Sized + Send + 'static {
    type Id: std::fmt::Display + Send + 'static;
    type Input: DeserializeOwned + Serialize + Send + 'static;
    const NAME: &'static str;

    fn parse_id(text: &str) -> Result<Self::Id, FieldError>;
    /// The id a create request names, or a generated one when the entity allows that.
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

pub(crate) fn parse_id<E: Entity>(text: &str) -> Result<E::Id, ApiError> {
    E::parse_id(text).map_err(|error| ApiError::invalid(format!("bad {} id", E::NAME), vec![error]))
}

fn invalid<E: Entity>(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid(format!("the {} is invalid", E::NAME), errors)
}

pub(crate) fn get<E: Entity>(store: &dyn Store, id: &E::Id) -> Result<E, ApiError> {
    E::load(store, id)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no {} has id {id}", E::NAME)))
}

/// Creates a new entity; a taken id is a conflict.
pub(crate) fn create<E: Entity>(store: &dyn Store, input: E::Input) -> Result<E, ApiError> {
    let id = E::id_for_create(&input).map_err(|error| invalid::<E>(vec![error]))?;
    let entity = E::build(input, id, Millis::now(), None).map_err(invalid::<E>)?;
    E::save(store, &entity, true)?;
    Ok(entity)
}

/// Creates or replaces; answers whether it created. Replacing keeps `created_at`.
pub(crate) fn put<E: Entity>(
    store: &dyn Store,
    id: E::Id,
    input: E::Input,
) -> Result<(bool, E), ApiError> {
    let existing = E::load(store, &id)?;
    let entity = E::build(
        input,
        id,
        Millis::now(),
        existing.map(|old| old.created_at()),
    )
    .map_err(invalid::<E>)?;
    Ok((E::save(store, &entity, false)?, entity))
}

/// Applies a JSON Merge Patch (RFC 7396) to the entity's writable fields.
pub(crate) fn patch<E: Entity>(
    store: &dyn Store,
    id: E::Id,
    changes: &serde_json::Value,
) -> Result<E, ApiError> {
    let existing = E::load(store, &id)?
        .filter(|entity| !entity.is_deleted())
        .ok_or_else(|| ApiError::not_found(format!("{} {id}", E::NAME)))?;
    let mut document = serde_json::to_value(existing.to_input())
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?;
    merge_patch(&mut document, changes);
    let input: E::Input = serde_path_to_error::deserialize(document)
        .map_err(|error| invalid::<E>(vec![FieldError::from_serde(error)]))?;
    let entity =
        E::build(input, id, Millis::now(), Some(existing.created_at())).map_err(invalid::<E>)?;
    E::save(store, &entity, false)?;
    Ok(entity)
}

pub(crate) fn delete<E: Entity>(store: &dyn Store, id: &E::Id) -> Result<(), ApiError> {
    Ok(E::remove(store, id, Millis::now())?)
}
