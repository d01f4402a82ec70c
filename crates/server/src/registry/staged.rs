//! Two-step registry changes: a create, replace, patch or delete is recorded now and applied
//! only when someone follows its confirmation link, once, before it expires.
//!
//! This module owns what a staged change holds and how it is applied; the store keeps it
//! (so it survives a restart) and the transport turns the link secret into a URL. It must
//! never change the registry while staging: nothing happens until the link is followed.

use std::sync::Mutex;
use std::time::Duration;

use audrey_model::{ErrorCode, FieldError, Location, Millis, Reason, Sensor};
use audrey_store::{StagedChange, StagedStatus, Store};

use super::{Entity, Precondition};
use crate::ApiError;
use crate::auth::{hash_token, random_text};

/// Confirmations run one at a time, so a link applied twice at once is applied once.
static CONFIRMATIONS: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StagedAction {
    Create,
    Replace,
    Patch,
    Delete,
}

impl StagedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            StagedAction::Create => "create",
            StagedAction::Replace => "replace",
            StagedAction::Patch => "patch",
            StagedAction::Delete => "delete",
        }
    }

    fn parse(text: &str) -> Option<StagedAction> {
        match text {
            "create" => Some(StagedAction::Create),
            "replace" => Some(StagedAction::Replace),
            "patch" => Some(StagedAction::Patch),
            "delete" => Some(StagedAction::Delete),
            _ => None,
        }
    }
}

/// A staged change as recorded, and the secret of its confirmation link (shown once).
pub(crate) struct Staged {
    pub change: StagedChange,
    pub secret: String,
}

fn internal(what: &str) -> ApiError {
    tracing::error!(what, "staged change cannot be applied");
    ApiError::new(ErrorCode::Internal, "internal error")
}

/// Checks the change as far as it can be checked now, and records it. `body` is the request
/// body for create, replace and patch.
pub(crate) fn stage<E: Entity>(
    store: &dyn Store,
    action: StagedAction,
    id: Option<E::Id>,
    body: Option<serde_json::Value>,
    ttl: Duration,
) -> Result<Staged, ApiError> {
    let mut body = body;
    let entity_id = match action {
        StagedAction::Create => {
            let document = body.clone().unwrap_or(serde_json::Value::Null);
            let input: E::Input = serde_path_to_error::deserialize(document).map_err(|error| {
                ApiError::invalid("the body is invalid", vec![FieldError::from_serde(error)])
            })?;
            let entity = super::prepare_create::<E>(input)?;
            let id = entity_id_of(&entity)?;
            if E::load(store, &E::parse_id(&id).map_err(|_| internal("id"))?)?.is_some() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("{} {id} already exists", E::NAME),
                ));
            }
            // A generated id is fixed now, so the link creates the record it announced.
            if let Some(object) = body.as_mut().and_then(|value| value.as_object_mut()) {
                object.insert("id".into(), serde_json::Value::String(id.clone()));
            }
            id
        }
        StagedAction::Replace => {
            let id = id.ok_or_else(|| internal("replace without id"))?;
            let document = body.clone().unwrap_or(serde_json::Value::Null);
            let input: E::Input = serde_path_to_error::deserialize(document).map_err(|error| {
                ApiError::invalid("the body is invalid", vec![FieldError::from_serde(error)])
            })?;
            let text = id.to_string();
            E::build(input, id, Millis::now(), None).map_err(|errors| {
                ApiError::invalid(format!("the {} is invalid", E::NAME), errors)
            })?;
            text
        }
        StagedAction::Patch | StagedAction::Delete => {
            let id = id.ok_or_else(|| internal("change without id"))?;
            super::get_visible::<E>(store, &id, false)?;
            if action == StagedAction::Patch
                && !body.as_ref().is_some_and(serde_json::Value::is_object)
            {
                return Err(ApiError::invalid(
                    "a merge patch must be a JSON object",
                    vec![FieldError::new(
                        "",
                        Reason::InvalidType,
                        "expected a JSON object",
                    )],
                ));
            }
            id.to_string()
        }
    };
    let now = Millis::now();
    let secret = format!("stg_{}", random_text(32));
    let change = StagedChange {
        id: format!("chg_{}", uuid::Uuid::now_v7().simple()),
        link_hash: hash_token(&secret),
        entity: E::NAME.to_string(),
        entity_id: Some(entity_id),
        action: action.as_str().to_string(),
        body: body.map(|value| value.to_string()),
        created_at: now,
        expires_at: Millis(now.0.saturating_add(ttl.as_millis() as i64)),
        status: StagedStatus::Pending,
        finished_at: None,
    };
    store.stage_change(&change)?;
    Ok(Staged { change, secret })
}

fn entity_id_of<E: Entity>(entity: &E) -> Result<String, ApiError> {
    serde_json::to_value(entity)
        .ok()
        .and_then(|value| {
            value
                .get("id")
                .and_then(|id| id.as_str())
                .map(str::to_string)
        })
        .ok_or_else(|| internal("entity without id"))
}

/// The pending change behind a link secret; 404 for an unknown link, 410 for a used,
/// cancelled or expired one.
pub(crate) fn pending_by_secret(
    store: &dyn Store,
    secret: &str,
    now: Millis,
) -> Result<StagedChange, ApiError> {
    let change = store
        .staged_change_by_link(&hash_token(secret))?
        .ok_or_else(|| ApiError::not_found("staged change for this link"))?;
    match change.status {
        StagedStatus::Applied => Err(ApiError::new(
            ErrorCode::Gone,
            "this confirmation link was already used",
        )),
        StagedStatus::Cancelled => Err(ApiError::new(
            ErrorCode::Gone,
            "this staged change was cancelled",
        )),
        StagedStatus::Pending if change.expires_at <= now => Err(ApiError::new(
            ErrorCode::Gone,
            "this confirmation link has expired; stage the change again",
        )),
        StagedStatus::Pending => Ok(change),
    }
}

/// Applies the change behind the link and marks it used; answers the applied change and the
/// resulting record (`null` after a delete). A change that fails to apply stays pending.
pub(crate) fn confirm(
    store: &dyn Store,
    secret: &str,
) -> Result<(StagedChange, serde_json::Value), ApiError> {
    let _one_at_a_time = CONFIRMATIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Millis::now();
    let mut change = pending_by_secret(store, secret, now)?;
    let result = match change.entity.as_str() {
        "location" => apply::<Location>(store, &change)?,
        "sensor" => apply::<Sensor>(store, &change)?,
        _ => return Err(internal("unknown entity")),
    };
    if !store.finish_staged_change(&change.id, StagedStatus::Applied, now)? {
        return Err(internal("staged change finished twice"));
    }
    change.status = StagedStatus::Applied;
    change.finished_at = Some(now);
    Ok((change, result))
}

fn apply<E: Entity>(
    store: &dyn Store,
    change: &StagedChange,
) -> Result<serde_json::Value, ApiError> {
    let action = StagedAction::parse(&change.action).ok_or_else(|| internal("action"))?;
    let id = change
        .entity_id
        .as_deref()
        .map(E::parse_id)
        .transpose()
        .map_err(|_| internal("id"))?;
    let body: Option<serde_json::Value> = change
        .body
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|_| internal("body"))?;
    let input = |body: Option<serde_json::Value>| -> Result<E::Input, ApiError> {
        serde_json::from_value(body.unwrap_or_default()).map_err(|_| internal("input"))
    };
    let entity = match (action, id) {
        (StagedAction::Create, _) => Some(super::create::<E>(store, input(body)?)?),
        (StagedAction::Replace, Some(id)) => {
            Some(super::put_if::<E>(store, id, input(body)?, &Precondition::None)?.1)
        }
        (StagedAction::Patch, Some(id)) => Some(super::patch_if::<E>(
            store,
            id,
            &body.unwrap_or_default(),
            &Precondition::None,
        )?),
        (StagedAction::Delete, Some(id)) => {
            super::delete_if::<E>(store, &id, &Precondition::None)?;
            None
        }
        _ => return Err(internal("change without id")),
    };
    serde_json::to_value(entity).map_err(|_| internal("render"))
}

/// Pending, unexpired changes, oldest first.
pub(crate) fn pending(store: &dyn Store, now: Millis) -> Result<Vec<StagedChange>, ApiError> {
    let mut changes = store.staged_changes(StagedStatus::Pending)?;
    changes.retain(|change| change.expires_at > now);
    Ok(changes)
}

pub(crate) fn cancel(store: &dyn Store, id: &str) -> Result<(), ApiError> {
    if store.finish_staged_change(id, StagedStatus::Cancelled, Millis::now())? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("pending staged change {id}")))
    }
}
