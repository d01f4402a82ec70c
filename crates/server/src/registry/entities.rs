//! Locations and sensors as registry entities.

use audrey_model::{
    FieldError, Location, LocationId, LocationInput, Millis, Reason, Sensor, SensorId, SensorInput,
};
use audrey_store::{Store, StoreError};

use super::Entity;

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

    fn purge(store: &dyn Store, id: &LocationId) -> Result<(), StoreError> {
        store.purge_location(id)
    }

    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

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

    fn purge(store: &dyn Store, id: &SensorId) -> Result<(), StoreError> {
        store.purge_sensor(id)
    }

    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}
