//! `/api/v1/locations`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use audrey_model::{FieldError, Location, LocationId, LocationInput, Millis};
use audrey_store::{LocationFilter, Store, StoreError};

use super::params::{Problems, QueryParams};
use super::readings::{ListBody, MAX_LIST_LIMIT, blocking};
use super::registry::Entity;
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

impl Entity for Location {
    type Id = LocationId;
    type Input = LocationInput;
    const NAME: &'static str = "location";

    fn parse_id(text: &str) -> Result<LocationId, FieldError> {
        LocationId::parse(text)
    }

    fn id_for_create(input: &LocationInput) -> Result<LocationId, FieldError> {
        match &input.id {
            Some(id) => LocationId::parse(id).map_err(|error| FieldError {
                path: "id".into(),
                ..error
            }),
            None => LocationId::parse(&format!("loc-{}", uuid::Uuid::now_v7().simple())),
        }
    }

    fn build(
        input: LocationInput,
        id: LocationId,
        now: Millis,
        created_at: Option<Millis>,
    ) -> Result<Location, Vec<FieldError>> {
        input.into_location(id, now, created_at)
    }

    fn to_input(&self) -> LocationInput {
        Location::to_input(self)
    }

    fn created_at(&self) -> Millis {
        self.created_at
    }

    fn load(store: &dyn Store, id: &LocationId) -> Result<Option<Location>, StoreError> {
        store.location(id)
    }

    fn save(store: &dyn Store, entity: &Location, must_be_new: bool) -> Result<bool, StoreError> {
        store.put_location(entity, must_be_new)
    }

    fn remove(store: &dyn Store, id: &LocationId, at: Millis) -> Result<(), StoreError> {
        store.delete_location(id, at)
    }

    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(
        query.as_deref(),
        &["country", "city", "include_deleted", "limit", "cursor"],
    )?;
    let mut problems = Problems::default();
    let include_deleted = problems
        .check(params.flag("include_deleted"))
        .unwrap_or(false);
    let limit = problems
        .check(params.limit(100, MAX_LIST_LIMIT))
        .unwrap_or(100);
    problems.finish("the query is invalid")?;
    let filter = LocationFilter {
        country: params.text("country").map(str::to_string),
        city: params.text("city").map(str::to_string),
        include_deleted,
        limit,
        after: params.text("cursor").map(str::to_string),
    };
    let page = blocking(&state, move |store| Ok(store.locations(&filter)?)).await?;
    Ok(Json(ListBody::new(page)).into_response())
}
