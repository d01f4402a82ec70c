//! `/api/v1/sensors`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};

use audrey_model::{FieldError, Millis, Reason, Sensor, SensorId, SensorInput};
use audrey_store::{SensorFilter, Store, StoreError};

use super::params::{Problems, QueryParams};
use super::readings::{ListBody, MAX_LIST_LIMIT, blocking};
use super::registry::Entity;
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

impl Entity for Sensor {
    type Id = SensorId;
    type Input = SensorInput;
    const NAME: &'static str = "sensor";

    fn parse_id(text: &str) -> Result<SensorId, FieldError> {
        SensorId::parse(text)
    }

    fn id_for_create(input: &SensorInput) -> Result<SensorId, FieldError> {
        match &input.id {
            Some(id) => SensorId::parse(id),
            None => Err(FieldError::new(
                "id",
                Reason::MissingField,
                "a sensor's id is its device serial; send it",
            )),
        }
    }

    fn build(
        input: SensorInput,
        id: SensorId,
        now: Millis,
        created_at: Option<Millis>,
    ) -> Result<Sensor, Vec<FieldError>> {
        input.into_sensor(id, now, created_at)
    }

    fn to_input(&self) -> SensorInput {
        Sensor::to_input(self)
    }

    fn created_at(&self) -> Millis {
        self.created_at
    }

    fn load(store: &dyn Store, id: &SensorId) -> Result<Option<Sensor>, StoreError> {
        store.sensor(id)
    }

    fn save(store: &dyn Store, entity: &Sensor, must_be_new: bool) -> Result<bool, StoreError> {
        store.put_sensor(entity, must_be_new)
    }

    fn remove(store: &dyn Store, id: &SensorId, at: Millis) -> Result<(), StoreError> {
        store.delete_sensor(id, at)
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
        &["location", "kind", "include_deleted", "limit", "cursor"],
    )?;
    let mut problems = Problems::default();
    let include_deleted = problems
        .check(params.flag("include_deleted"))
        .unwrap_or(false);
    let limit = problems
        .check(params.limit(100, MAX_LIST_LIMIT))
        .unwrap_or(100);
    problems.finish("the query is invalid")?;
    let filter = SensorFilter {
        location: params.text("location").map(str::to_string),
        kind: params.text("kind").map(str::to_string),
        include_deleted,
        limit,
        after: params.text("cursor").map(str::to_string),
    };
    let page = blocking(&state, move |store| Ok(store.sensors(&filter)?)).await?;
    Ok(Json(ListBody::new(page)).into_response())
}

/// Accepted, duplicate and rejected readings of one sensor since it was registered.
pub(crate) async fn counters(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let sensor =
        SensorId::parse(&id).map_err(|error| ApiError::invalid("bad sensor id", vec![error]))?;
    let counters = blocking(&state, move |store| {
        if store.sensor(&sensor)?.is_none() {
            return Err(ApiError::not_found(format!("sensor {sensor}")));
        }
        Ok(store.counters(&sensor)?)
    })
    .await?;
    Ok(Json(counters).into_response())
}
