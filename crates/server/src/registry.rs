//! Create, read, replace, patch, soft-delete, purge and staged changes, written once for every
//! registry entity and every transport. HTTP and gRPC handlers parse their input and call these.
//!
//! A write that carries a precondition (`If-Match`) is checked and applied while holding
//! [`REGISTRY_WRITES`], so no other registry write can slip in between the check and the save
//! (a lost update is answered 412, never silently overwritten).

mod entities;
pub(crate) mod staged;

use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

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
    fn purge(store: &dyn Store, id: &Self::Id) -> Result<(), StoreError>;
    fn is_deleted(&self) -> bool;
}

/// Serialises registry writes in this process: check-then-save must not interleave.
static REGISTRY_WRITES: Mutex<()> = Mutex::new(());

fn write_lock() -> MutexGuard<'static, ()> {
    // A panic while holding the guard cannot leave registry state half-written (the store's
    // own transactions guarantee that), so a poisoned lock is still safe to take.
    REGISTRY_WRITES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A strong version tag of a stored record: a hash of everything a client sees, which includes
/// `updated_at`, so any change to the record changes the tag.
pub(crate) fn version_tag<E: Serialize>(entity: &E) -> String {
    let bytes = serde_json::to_vec(entity).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// What a write expects of the current record (HTTP `If-Match`).
#[derive(Clone, Debug, Default)]
pub(crate) enum Precondition {
    #[default]
    None,
    /// `If-Match: *`: the record must exist (and not be deleted).
    Exists,
    /// The record's current version tag must be one of these.
    OneOf(Vec<String>),
}

impl Precondition {
    /// Whether the precondition holds for a record whose current version tag is `current`
    /// (`None`: no such record, or deleted).
    pub(crate) fn holds(&self, current: Option<&str>) -> bool {
        match (self, current) {
            (Precondition::None, _) => true,
            (Precondition::Exists, current) => current.is_some(),
            (Precondition::OneOf(_), None) => false,
            (Precondition::OneOf(tags), Some(tag)) => tags.iter().any(|wanted| wanted == tag),
        }
    }

    pub(crate) fn failed(what: &str) -> ApiError {
        ApiError::new(
            ErrorCode::PreconditionFailed,
            format!(
                "the {what} changed since you read it (If-Match does not match its ETag); \
                 read it again and retry"
            ),
        )
    }

    fn check<E: Entity>(&self, current: Option<&E>) -> Result<(), ApiError> {
        let tag = current
            .filter(|entity| !entity.is_deleted())
            .map(version_tag);
        if self.holds(tag.as_deref()) {
            Ok(())
        } else {
            Err(Precondition::failed(E::NAME))
        }
    }
}

/// Runs `work` holding the registry write lock, for registry-like writes outside the generic
/// entity operations (tokens).
pub(crate) fn with_write_lock<T>(work: impl FnOnce() -> T) -> T {
    let _guard = write_lock();
    work()
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

/// Like [`get`], but a soft-deleted record is not found unless `include_deleted`.
pub(crate) fn get_visible<E: Entity>(
    store: &dyn Store,
    id: &E::Id,
    include_deleted: bool,
) -> Result<E, ApiError> {
    let entity = get::<E>(store, id)?;
    if entity.is_deleted() && !include_deleted {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "{} {id} is deleted (ask with include_deleted=true)",
                E::NAME
            ),
        ));
    }
    Ok(entity)
}

/// Creates a new entity; a taken id is a conflict.
pub(crate) fn create<E: Entity>(store: &dyn Store, input: E::Input) -> Result<E, ApiError> {
    let entity = prepare_create::<E>(input)?;
    let _guard = write_lock();
    E::save(store, &entity, true)?;
    Ok(entity)
}

/// Validates a create request without saving it (also used to check a staged create).
pub(crate) fn prepare_create<E: Entity>(input: E::Input) -> Result<E, ApiError> {
    let id = E::id_for_create(&input).map_err(|error| invalid::<E>(vec![error]))?;
    E::build(input, id, Millis::now(), None).map_err(invalid::<E>)
}

/// Creates or replaces; answers whether it created. Replacing keeps `created_at`.
pub(crate) fn put<E: Entity>(
    store: &dyn Store,
    id: E::Id,
    input: E::Input,
) -> Result<(bool, E), ApiError> {
    put_if::<E>(store, id, input, &Precondition::None)
}

pub(crate) fn put_if<E: Entity>(
    store: &dyn Store,
    id: E::Id,
    input: E::Input,
    precondition: &Precondition,
) -> Result<(bool, E), ApiError> {
    let _guard = write_lock();
    let existing = E::load(store, &id)?;
    precondition.check(existing.as_ref())?;
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
    patch_if::<E>(store, id, changes, &Precondition::None)
}

pub(crate) fn patch_if<E: Entity>(
    store: &dyn Store,
    id: E::Id,
    changes: &serde_json::Value,
    precondition: &Precondition,
) -> Result<E, ApiError> {
    let _guard = write_lock();
    let existing = E::load(store, &id)?;
    precondition.check(existing.as_ref())?;
    let existing = existing
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
    delete_if::<E>(store, id, &Precondition::None)
}

/// Soft-deletes: the record stays, marked, and is hidden from reads that do not ask for it.
pub(crate) fn delete_if<E: Entity>(
    store: &dyn Store,
    id: &E::Id,
    precondition: &Precondition,
) -> Result<(), ApiError> {
    let _guard = write_lock();
    precondition.check(E::load(store, id)?.as_ref())?;
    Ok(E::remove(store, id, Millis::now())?)
}

/// Deletes the record for real, deleted or not. The caller checks the admin scope.
pub(crate) fn purge_if<E: Entity>(
    store: &dyn Store,
    id: &E::Id,
    precondition: &Precondition,
) -> Result<(), ApiError> {
    let _guard = write_lock();
    let existing = E::load(store, id)?;
    // A purge may remove a soft-deleted record, so compare against it as stored.
    if !precondition.holds(existing.as_ref().map(version_tag).as_deref()) {
        return Err(Precondition::failed(E::NAME));
    }
    Ok(E::purge(store, id)?)
}
