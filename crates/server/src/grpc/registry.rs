//! `audrey.v1.RegistryService`: the same operations as the HTTP registry routes.

use tonic::{Request, Response, Status};

use audrey_model::{FieldError, Location, Millis, Reason, Sensor};
use audrey_proto::v1;
use audrey_store::{LocationFilter, SensorFilter};

use super::{NEAR_FIELDS, blocking, convert, principal};
use crate::auth::Scope;
use crate::http::params::{Problems, circle_from};
use crate::import::{ImportError, import_locations};
use crate::registry;
use crate::{ApiError, AppState};

pub struct RegistryApi(pub(crate) AppState);

/// The most items one list answers (as over HTTP).
const MAX_LIST_LIMIT: usize = 10_000;

fn limit(requested: u32) -> usize {
    match requested {
        0 => 100,
        limit => (limit as usize).min(MAX_LIST_LIMIT),
    }
}

fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn missing(field: &str) -> Status {
    Status::invalid_argument(format!("{field} is required"))
}

impl RegistryApi {
    async fn authorise<T>(&self, request: &Request<T>, scope: Scope) -> Result<(), Status> {
        principal(&self.0, request).await?.require(scope)?;
        Ok(())
    }
}

#[tonic::async_trait]
impl v1::registry_service_server::RegistryService for RegistryApi {
    async fn get_location(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::Location>, Status> {
        self.authorise(&request, Scope::Read).await?;
        let id = registry::parse_id::<Location>(&request.into_inner().id)?;
        let found = blocking(&self.0, move |store| registry::get::<Location>(store, &id)).await?;
        Ok(Response::new(convert::location(&found)))
    }

    async fn list_locations(
        &self,
        request: Request<v1::ListLocationsRequest>,
    ) -> Result<Response<v1::ListLocationsResponse>, Status> {
        self.authorise(&request, Scope::Read).await?;
        let request = request.into_inner();
        let filter = LocationFilter {
            country: optional(request.country),
            city: optional(request.city),
            include_deleted: request.include_deleted,
            limit: limit(request.limit),
            after: optional(request.cursor),
        };
        let page = blocking(&self.0, move |store| Ok(store.locations(&filter)?)).await?;
        Ok(Response::new(v1::ListLocationsResponse {
            items: page.items.iter().map(convert::location).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn create_location(
        &self,
        request: Request<v1::PutLocationRequest>,
    ) -> Result<Response<v1::Location>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let input = convert::location_input(
            request
                .into_inner()
                .location
                .ok_or_else(|| missing("location"))?,
        );
        let created = blocking(&self.0, move |store| {
            registry::create::<Location>(store, input)
        })
        .await?;
        Ok(Response::new(convert::location(&created)))
    }

    async fn put_location(
        &self,
        request: Request<v1::PutLocationRequest>,
    ) -> Result<Response<v1::PutResponseLocation>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let message = request
            .into_inner()
            .location
            .ok_or_else(|| missing("location"))?;
        let id = registry::parse_id::<Location>(&message.id)?;
        let input = convert::location_input(message);
        let (created, location) = blocking(&self.0, move |store| {
            registry::put::<Location>(store, id, input)
        })
        .await?;
        Ok(Response::new(v1::PutResponseLocation {
            location: Some(convert::location(&location)),
            created,
        }))
    }

    async fn patch_location(
        &self,
        request: Request<v1::PatchLocationRequest>,
    ) -> Result<Response<v1::Location>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let request = request.into_inner();
        let message = request.location.ok_or_else(|| missing("location"))?;
        let id = registry::parse_id::<Location>(&message.id)?;
        let changes =
            convert::masked_patch(&convert::location_input(message), &request.update_mask)
                .map_err(|error| ApiError::invalid("the update mask is invalid", vec![error]))?;
        let location = blocking(&self.0, move |store| {
            registry::patch::<Location>(store, id, &changes)
        })
        .await?;
        Ok(Response::new(convert::location(&location)))
    }

    async fn delete_location(
        &self,
        request: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let id = registry::parse_id::<Location>(&request.into_inner().id)?;
        blocking(&self.0, move |store| {
            registry::delete::<Location>(store, &id)
        })
        .await?;
        Ok(Response::new(v1::DeleteResponse {}))
    }

    async fn locations_near(
        &self,
        request: Request<v1::LocationsNearRequest>,
    ) -> Result<Response<v1::LocationsNearResponse>, Status> {
        self.authorise(&request, Scope::Read).await?;
        let request = request.into_inner();
        // The same checks and messages as GET /api/v1/locations/near.
        let names = ["lat", "lon", "radius_km"];
        let numbers = [request.lat, request.lon, request.radius_km];
        let mut problems = Problems::default();
        let circle = problems.check_all(circle_from(names, numbers)).flatten();
        if circle.is_none() {
            for (name, _) in names.iter().zip(numbers).filter(|(_, n)| n.is_none()) {
                problems.check::<()>(Err(FieldError::new(
                    *name,
                    Reason::MissingField,
                    "is required",
                )));
            }
        }
        let limit = match request.limit as usize {
            0 => 100,
            limit if limit <= MAX_LIST_LIMIT => limit,
            limit => {
                problems.check::<()>(Err(FieldError::new(
                    "limit",
                    Reason::OutOfRange,
                    format!("must be a whole number from 1 to {MAX_LIST_LIMIT}, got {limit}"),
                )));
                0
            }
        };
        problems.finish("the request is invalid")?;
        let Some(circle) = circle else {
            return Err(ApiError::invalid("the request is invalid", Vec::new()).into());
        };
        let items = blocking(&self.0, move |store| {
            Ok(store.locations_near(&circle, limit)?)
        })
        .await?;
        Ok(Response::new(v1::LocationsNearResponse {
            items: items
                .iter()
                .map(|near| v1::NearLocation {
                    location: Some(convert::location(&near.location)),
                    distance_km: near.distance_km,
                })
                .collect(),
        }))
    }

    async fn import_locations(
        &self,
        request: Request<v1::ImportLocationsRequest>,
    ) -> Result<Response<v1::ImportLocationsResponse>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let csv = request.into_inner().csv;
        let report = blocking(&self.0, move |store| {
            import_locations(store, &csv, Millis::now(), |_| {}).map_err(|error| match error {
                ImportError::Unreadable(field) => {
                    ApiError::invalid("the file is not CSV", vec![field])
                }
                ImportError::Store(error) => error.into(),
            })
        })
        .await?;
        Ok(Response::new(convert::import_report(report)))
    }

    async fn get_sensor(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::Sensor>, Status> {
        self.authorise(&request, Scope::Read).await?;
        let id = registry::parse_id::<Sensor>(&request.into_inner().id)?;
        let found = blocking(&self.0, move |store| registry::get::<Sensor>(store, &id)).await?;
        Ok(Response::new(convert::sensor(&found)))
    }

    async fn list_sensors(
        &self,
        request: Request<v1::ListSensorsRequest>,
    ) -> Result<Response<v1::ListSensorsResponse>, Status> {
        self.authorise(&request, Scope::Read).await?;
        let request = request.into_inner();
        let near = circle_from(
            NEAR_FIELDS,
            [request.near_lat, request.near_lon, request.radius_km],
        )
        .map_err(|errors| ApiError::invalid("the request is invalid", errors))?;
        let filter = SensorFilter {
            location: optional(request.location_id),
            kind: optional(request.kind),
            near,
            include_deleted: request.include_deleted,
            limit: limit(request.limit),
            after: optional(request.cursor),
        };
        let page = blocking(&self.0, move |store| Ok(store.sensors(&filter)?)).await?;
        Ok(Response::new(v1::ListSensorsResponse {
            items: page.items.iter().map(convert::sensor).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn create_sensor(
        &self,
        request: Request<v1::PutSensorRequest>,
    ) -> Result<Response<v1::Sensor>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let message = request
            .into_inner()
            .sensor
            .ok_or_else(|| missing("sensor"))?;
        let input = convert::sensor_input(message)
            .map_err(|error| ApiError::invalid("the sensor is invalid", vec![error]))?;
        let created = blocking(&self.0, move |store| {
            registry::create::<Sensor>(store, input)
        })
        .await?;
        Ok(Response::new(convert::sensor(&created)))
    }

    async fn put_sensor(
        &self,
        request: Request<v1::PutSensorRequest>,
    ) -> Result<Response<v1::PutResponseSensor>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let message = request
            .into_inner()
            .sensor
            .ok_or_else(|| missing("sensor"))?;
        let id = registry::parse_id::<Sensor>(&message.id)?;
        let input = convert::sensor_input(message)
            .map_err(|error| ApiError::invalid("the sensor is invalid", vec![error]))?;
        let (created, sensor) = blocking(&self.0, move |store| {
            registry::put::<Sensor>(store, id, input)
        })
        .await?;
        Ok(Response::new(v1::PutResponseSensor {
            sensor: Some(convert::sensor(&sensor)),
            created,
        }))
    }

    async fn patch_sensor(
        &self,
        request: Request<v1::PatchSensorRequest>,
    ) -> Result<Response<v1::Sensor>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let request = request.into_inner();
        let message = request.sensor.ok_or_else(|| missing("sensor"))?;
        let id = registry::parse_id::<Sensor>(&message.id)?;
        let input = convert::sensor_input(message)
            .map_err(|error| ApiError::invalid("the sensor is invalid", vec![error]))?;
        let changes = convert::masked_patch(&input, &request.update_mask)
            .map_err(|error| ApiError::invalid("the update mask is invalid", vec![error]))?;
        let sensor = blocking(&self.0, move |store| {
            registry::patch::<Sensor>(store, id, &changes)
        })
        .await?;
        Ok(Response::new(convert::sensor(&sensor)))
    }

    async fn delete_sensor(
        &self,
        request: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        self.authorise(&request, Scope::Admin).await?;
        let id = registry::parse_id::<Sensor>(&request.into_inner().id)?;
        blocking(&self.0, move |store| registry::delete::<Sensor>(store, &id)).await?;
        Ok(Response::new(v1::DeleteResponse {}))
    }
}
