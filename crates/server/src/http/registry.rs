//! The HTTP face of the registry operations, written once for every entity: parse, authorise,
//! call, render. The per-entity modules (`locations`, `sensors`) wrap these in handlers that
//! carry their OpenAPI description.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use audrey_model::{FieldError, Reason};
use audrey_store::StagedChange;

use super::conditional::{entity_response, if_match};
use super::params::{QueryParams, json_body, read_body};
use super::readings::blocking;
use crate::auth::{Principal, Scope};
use crate::registry::staged::{self, StagedAction};
use crate::registry::{self, Entity};
use crate::{ApiError, AppState};

/// The answer to a staged request: what was recorded and the link that applies it.
#[derive(Serialize)]
pub(crate) struct StagedBody {
    pub staged: StagedChange,
    pub confirm_url: String,
}

pub(crate) fn confirm_url(secret: &str) -> String {
    format!("/api/v1/staged/confirm/{secret}")
}

fn staged_response(staged: staged::Staged) -> Response {
    let url = confirm_url(&staged.secret);
    let location = HeaderValue::from_str(&url).ok();
    let mut response = (
        StatusCode::ACCEPTED,
        Json(StagedBody {
            staged: staged.change,
            confirm_url: url,
        }),
    )
        .into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn flag(params: &QueryParams, key: &str) -> Result<bool, ApiError> {
    params
        .flag(key)
        .map_err(|error| ApiError::invalid("the query string is invalid", vec![error]))
}

fn merge_patch_object(changes: &serde_json::Value) -> Result<(), ApiError> {
    if changes.is_object() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "a merge patch must be a JSON object",
            vec![FieldError::new(
                "",
                Reason::InvalidType,
                "expected a JSON object",
            )],
        ))
    }
}

pub(crate) async fn get_one<E: Entity>(
    state: AppState,
    principal: Principal,
    id: String,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(query.as_deref(), &["include_deleted"])?;
    let include_deleted = flag(&params, "include_deleted")?;
    let id = registry::parse_id::<E>(&id)?;
    let entity = blocking(&state, move |store| {
        registry::get_visible::<E>(store, &id, include_deleted)
    })
    .await?;
    entity_response(StatusCode::OK, &entity, Some(&headers))
}

pub(crate) async fn create<E: Entity>(
    state: AppState,
    principal: Principal,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let params = QueryParams::parse(query.as_deref(), &["stage"])?;
    let stage = flag(&params, "stage")?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let input: E::Input = json_body(&bytes)?;
    if stage {
        let ttl = state.options.staged_change_ttl;
        let document: serde_json::Value = json_body(&bytes)?;
        let staged = blocking(&state, move |store| {
            staged::stage::<E>(store, StagedAction::Create, None, Some(document), ttl)
        })
        .await?;
        return Ok(staged_response(staged));
    }
    let entity = blocking(&state, move |store| registry::create::<E>(store, input)).await?;
    entity_response(StatusCode::CREATED, &entity, None)
}

pub(crate) async fn put<E: Entity>(
    state: AppState,
    principal: Principal,
    id: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let params = QueryParams::parse(query.as_deref(), &["stage"])?;
    let stage = flag(&params, "stage")?;
    let precondition = if_match(&headers)?;
    let id = registry::parse_id::<E>(&id)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let input: E::Input = json_body(&bytes)?;
    if stage {
        let ttl = state.options.staged_change_ttl;
        let document: serde_json::Value = json_body(&bytes)?;
        let staged = blocking(&state, move |store| {
            staged::stage::<E>(store, StagedAction::Replace, Some(id), Some(document), ttl)
        })
        .await?;
        return Ok(staged_response(staged));
    }
    let (created, entity) = blocking(&state, move |store| {
        registry::put_if::<E>(store, id, input, &precondition)
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    entity_response(status, &entity, None)
}

pub(crate) async fn patch<E: Entity>(
    state: AppState,
    principal: Principal,
    id: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let params = QueryParams::parse(query.as_deref(), &["stage"])?;
    let stage = flag(&params, "stage")?;
    let precondition = if_match(&headers)?;
    let id = registry::parse_id::<E>(&id)?;
    let bytes = read_body(&headers, body, state.options.max_body_bytes).await?;
    let changes: serde_json::Value = json_body(&bytes)?;
    merge_patch_object(&changes)?;
    if stage {
        let ttl = state.options.staged_change_ttl;
        let staged = blocking(&state, move |store| {
            staged::stage::<E>(store, StagedAction::Patch, Some(id), Some(changes), ttl)
        })
        .await?;
        return Ok(staged_response(staged));
    }
    let entity = blocking(&state, move |store| {
        registry::patch_if::<E>(store, id, &changes, &precondition)
    })
    .await?;
    entity_response(StatusCode::OK, &entity, None)
}

/// Soft-deletes; with `purge=true` deletes for real (admin scope).
pub(crate) async fn delete<E: Entity>(
    state: AppState,
    principal: Principal,
    id: String,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let params = QueryParams::parse(query.as_deref(), &["purge"])?;
    let purge = flag(&params, "purge")?;
    let precondition = if_match(&headers)?;
    let id = registry::parse_id::<E>(&id)?;
    blocking(&state, move |store| {
        if purge {
            registry::purge_if::<E>(store, &id, &precondition)
        } else {
            registry::delete_if::<E>(store, &id, &precondition)
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET .../{id}/delete`: stages a delete and answers its confirmation link; nothing changes
/// until the link is followed.
pub(crate) async fn stage_delete<E: Entity>(
    state: AppState,
    principal: Principal,
    id: String,
    query: Option<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    QueryParams::parse(query.as_deref(), &[])?;
    let id = registry::parse_id::<E>(&id)?;
    let ttl = state.options.staged_change_ttl;
    let staged = blocking(&state, move |store| {
        staged::stage::<E>(store, StagedAction::Delete, Some(id), None, ttl)
    })
    .await?;
    Ok(staged_response(staged))
}

/// Declares the single-record handlers of one registry entity, each with its OpenAPI
/// description, around the generic functions above: get, create, put, patch, delete and the
/// staged delete. `routes.rs` registers them.
macro_rules! entity_handlers {
    (
        entity = $entity:ty,
        name = $name:literal,
        tag = $tag:literal,
        collection = $collection:literal,
        item = $item:literal,
        staged_delete = $staged_delete:literal,
        record = $record:ident,
        input = $input:ident $(,)?
    ) => {
        use axum::body::Body;
        use axum::extract::{Path, RawQuery, State};
        use axum::http::HeaderMap;

        use super::openapi::parameters::{DeleteQuery, StageQuery, VisibilityQuery};
        use super::openapi::schemas;

        #[doc = concat!("Reads one ", $name, ". Answers an ETag; with If-None-Match naming it, 304.")]
        #[utoipa::path(get, path = $item, tag = $tag,
            params(("id" = String, Path, description = concat!("The ", $name, "'s id")), VisibilityQuery,
                ("If-None-Match" = Option<String>, Header, description = "ETag(s) you hold; 304 when current")),
            responses(
                (status = 200, description = concat!("The ", $name), body = schemas::$record,
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
            super::registry::get_one::<$entity>(state, principal, id, query, headers).await
        }

        #[doc = concat!("Creates a ", $name, " (admin); an id already taken is 409. With stage=true, records the create and answers its confirmation link.")]
        #[utoipa::path(post, path = $collection, tag = $tag, params(StageQuery),
            request_body = schemas::$input,
            responses(
                (status = 201, description = concat!("The new ", $name), body = schemas::$record,
                    headers(("ETag" = String, description = "Strong version tag of the record"))),
                (status = 202, description = "Staged: nothing changed until the link is followed", body = schemas::Staged),
                (status = 409, description = "The id is taken", body = schemas::ErrorBody),
            ))]
        pub(crate) async fn create(
            State(state): State<AppState>,
            principal: Principal,
            RawQuery(query): RawQuery,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response, ApiError> {
            super::registry::create::<$entity>(state, principal, query, headers, body).await
        }

        #[doc = concat!("Creates (201) or replaces (200) the ", $name, " with this id (admin). If-Match guards a replace.")]
        #[utoipa::path(put, path = $item, tag = $tag,
            params(("id" = String, Path, description = concat!("The ", $name, "'s id")), StageQuery,
                ("If-Match" = Option<String>, Header, description = "The ETag you read; 412 if the record changed since")),
            request_body = schemas::$input,
            responses(
                (status = 200, description = "Replaced", body = schemas::$record,
                    headers(("ETag" = String, description = "Strong version tag of the record"))),
                (status = 201, description = "Created", body = schemas::$record,
                    headers(("ETag" = String, description = "Strong version tag of the record"))),
                (status = 202, description = "Staged: nothing changed until the link is followed", body = schemas::Staged),
                (status = 409, description = "The change conflicts with other records", body = schemas::ErrorBody),
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
            super::registry::put::<$entity>(state, principal, id, query, headers, body).await
        }

        #[doc = concat!("Applies a JSON Merge Patch (RFC 7396) to the ", $name, " (admin).")]
        #[utoipa::path(patch, path = $item, tag = $tag,
            params(("id" = String, Path, description = concat!("The ", $name, "'s id")), StageQuery,
                ("If-Match" = Option<String>, Header, description = "The ETag you read; 412 if the record changed since")),
            request_body(content = schemas::MergePatch, content_type = "application/json"),
            responses(
                (status = 200, description = "Patched", body = schemas::$record,
                    headers(("ETag" = String, description = "Strong version tag of the record"))),
                (status = 202, description = "Staged: nothing changed until the link is followed", body = schemas::Staged),
                (status = 409, description = "The change conflicts with other records", body = schemas::ErrorBody),
                (status = 412, description = "If-Match does not match the current ETag", body = schemas::ErrorBody),
            ))]
        pub(crate) async fn patch(
            State(state): State<AppState>,
            principal: Principal,
            Path(id): Path<String>,
            RawQuery(query): RawQuery,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response, ApiError> {
            super::registry::patch::<$entity>(state, principal, id, query, headers, body).await
        }

        #[doc = concat!("Soft-deletes the ", $name, " (admin); purge=true deletes it for real.")]
        #[utoipa::path(delete, path = $item, tag = $tag,
            params(("id" = String, Path, description = concat!("The ", $name, "'s id")), DeleteQuery,
                ("If-Match" = Option<String>, Header, description = "The ETag you read; 412 if the record changed since")),
            responses(
                (status = 204, description = "Deleted"),
                (status = 409, description = "Other records still refer to it", body = schemas::ErrorBody),
                (status = 412, description = "If-Match does not match the current ETag", body = schemas::ErrorBody),
            ))]
        pub(crate) async fn delete(
            State(state): State<AppState>,
            principal: Principal,
            Path(id): Path<String>,
            RawQuery(query): RawQuery,
            headers: HeaderMap,
        ) -> Result<Response, ApiError> {
            super::registry::delete::<$entity>(state, principal, id, query, headers).await
        }

        #[doc = concat!("Stages the deletion of the ", $name, " (admin) and answers its confirmation link; nothing changes until it is followed.")]
        #[utoipa::path(get, path = $staged_delete, tag = $tag,
            params(("id" = String, Path, description = concat!("The ", $name, "'s id"))),
            responses(
                (status = 202, description = "Staged", body = schemas::Staged,
                    headers(("Location" = String, description = "The confirmation link"))),
            ))]
        pub(crate) async fn stage_delete(
            State(state): State<AppState>,
            principal: Principal,
            Path(id): Path<String>,
            RawQuery(query): RawQuery,
        ) -> Result<Response, ApiError> {
            super::registry::stage_delete::<$entity>(state, principal, id, query).await
        }
    };
}

pub(crate) use entity_handlers;
