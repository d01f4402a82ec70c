//! `GrpcApp`: one running server per test with HTTP and gRPC listeners, and clients.

use std::sync::Arc;

use audrey_ingest::{IngestMetrics, IngestOptions, Pipeline};
use audrey_proto::v1;
use audrey_server::{AppState, HttpOptions, Listeners};
use audrey_store::{SqliteOptions, SqliteStore};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::Channel;

pub struct GrpcApp {
    pub grpc_url: String,
    /// The same server's HTTP API, to compare answers with.
    pub http_url: String,
    pub token: String,
    pub store: Arc<SqliteStore>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _data_dir: tempfile::TempDir,
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(pub Option<String>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

impl GrpcApp {
    pub async fn spawn() -> GrpcApp {
        let data_dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            flush_rows: 50,
            flush_max_rows: 40,
            ..Default::default()
        };
        let store = Arc::new(SqliteStore::open(data_dir.path(), options).unwrap());
        let token = audrey_server::bootstrap_admin_token(&*store, data_dir.path())
            .unwrap()
            .unwrap();
        let pipeline = Pipeline::start(
            store.clone(),
            IngestOptions::default(),
            Arc::new(IngestMetrics::default()),
        );
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_url = format!("http://{}", grpc.local_addr().unwrap());
        let http_url = format!("http://{}", http.local_addr().unwrap());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let listeners = Listeners {
            http,
            grpc: Some(grpc),
            compat: None,
        };
        let server = tokio::spawn(audrey_server::serve(
            listeners,
            AppState::new(pipeline, HttpOptions::default()),
            async {
                let _ = stopped.await;
            },
        ));
        GrpcApp {
            grpc_url,
            http_url,
            token,
            store,
            shutdown: Some(shutdown),
            server: Some(server),
            _data_dir: data_dir,
        }
    }

    pub async fn channel(&self) -> Channel {
        for _ in 0..50 {
            if let Ok(channel) = Channel::from_shared(self.grpc_url.clone())
                .unwrap()
                .connect()
                .await
            {
                return channel;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the gRPC server did not accept connections");
    }

    pub async fn ingest_as(
        &self,
        token: Option<&str>,
    ) -> v1::ingest_service_client::IngestServiceClient<Authed> {
        v1::ingest_service_client::IngestServiceClient::with_interceptor(
            self.channel().await,
            Bearer(token.map(str::to_string)),
        )
    }

    pub async fn ingest(&self) -> v1::ingest_service_client::IngestServiceClient<Authed> {
        self.ingest_as(Some(&self.token)).await
    }

    pub async fn query(&self) -> v1::query_service_client::QueryServiceClient<Authed> {
        v1::query_service_client::QueryServiceClient::with_interceptor(
            self.channel().await,
            Bearer(Some(self.token.clone())),
        )
    }

    pub async fn registry_as(
        &self,
        token: Option<&str>,
    ) -> v1::registry_service_client::RegistryServiceClient<Authed> {
        v1::registry_service_client::RegistryServiceClient::with_interceptor(
            self.channel().await,
            Bearer(token.map(str::to_string)),
        )
    }

    pub async fn registry(&self) -> v1::registry_service_client::RegistryServiceClient<Authed> {
        self.registry_as(Some(&self.token)).await
    }

    pub async fn query_as(
        &self,
        token: &str,
    ) -> v1::query_service_client::QueryServiceClient<Authed> {
        v1::query_service_client::QueryServiceClient::with_interceptor(
            self.channel().await,
            Bearer(Some(token.to_string())),
        )
    }

    /// `GET path` over HTTP with the admin token: the status and the JSON body.
    pub async fn http_get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.http_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn devices_as(
        &self,
        token: &str,
    ) -> v1::device_service_client::DeviceServiceClient<Authed> {
        v1::device_service_client::DeviceServiceClient::with_interceptor(
            self.channel().await,
            Bearer(Some(token.to_string())),
        )
    }

    /// Registers a location and a sensor (no declared metrics) over gRPC.
    pub async fn register(&self, sensor: &str, location: &str) {
        let mut registry = self.registry().await;
        let place = v1::Location {
            id: location.into(),
            name: format!("Site {location}"),
            latitude: 1.0,
            longitude: 2.0,
            ..Default::default()
        };
        registry
            .put_location(v1::PutLocationRequest {
                location: Some(place),
            })
            .await
            .unwrap();
        let device = v1::Sensor {
            id: sensor.into(),
            kind: "climate".into(),
            location_id: location.into(),
            ..Default::default()
        };
        registry
            .put_sensor(v1::PutSensorRequest {
                sensor: Some(device),
            })
            .await
            .unwrap();
    }

    pub fn sensor_token(&self, sensor: &str, scopes: &[audrey_server::Scope]) -> String {
        let id = audrey_model::SensorId::parse(sensor).unwrap();
        audrey_server::create_token(&*self.store, "device", scopes, Some(&id))
            .unwrap()
            .1
    }

    pub fn stored(&self) -> Vec<audrey_model::Reading> {
        let query = audrey_store::ReadingQuery {
            limit: 100_000,
            order: audrey_store::Order::Oldest,
            ..Default::default()
        };
        audrey_store::Store::readings(&*self.store, &query)
            .unwrap()
            .items
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn reading(sensor: &str, seconds_ago: i64, value: f64, message_id: &str) -> v1::ReadingInput {
    v1::ReadingInput {
        sensor_id: sensor.into(),
        read_time: Some(v1::reading_input::ReadTime::ReadAtMs(
            now_millis() - seconds_ago * 1000,
        )),
        values: [("temperature".to_string(), value)].into(),
        message_id: message_id.into(),
        ..Default::default()
    }
}

pub fn batch(batch_id: u64, sensor: &str, size: usize) -> v1::ReadingBatch {
    v1::ReadingBatch {
        batch_id,
        readings: (0..size)
            .map(|index| reading(sensor, 10, index as f64, &format!("b{batch_id}-{index}")))
            .collect(),
        atomic: false,
    }
}

/// The field paths and reasons of an INVALID_ARGUMENT status.
pub fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}
