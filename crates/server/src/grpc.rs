//! The gRPC API (tonic): the same pipeline, validation, dedup and auth as HTTP.
//!
//! Served on its own port with standard health checking (grpc.health.v1) and server
//! reflection, so generic tools can list and call the services. The compatibility
//! `SensorService` can also be served alone, without authentication, on a separate port.

mod act;
mod act_webhooks;
mod compat;
mod convert;
mod device;
mod ingest;
mod query;
mod query_encode;
mod registry;

use std::future::Future;

use tokio::sync::mpsc;
use tonic::{Request, Status};

use audrey_proto::compat::sensor_service_server::SensorServiceServer;
use audrey_proto::v1;
use audrey_proto::v1::act_service_server::ActServiceServer;
use audrey_proto::v1::device_service_server::DeviceServiceServer;
use audrey_proto::v1::ingest_service_server::IngestServiceServer;
use audrey_proto::v1::query_service_server::QueryServiceServer;
use audrey_proto::v1::registry_service_server::RegistryServiceServer;
use audrey_proto::v1::webhook_service_server::WebhookServiceServer;

use crate::auth::{Principal, authenticate};
use crate::{ApiError, AppState};

/// How many batches one stream may have submitted but not yet acknowledged. A client that
/// stops reading acks stops the server reading its batches, not the server buffering them.
const BATCHES_IN_FLIGHT: usize = 8;

/// The radius filter fields of list requests, named as over HTTP.
pub(crate) const NEAR_FIELDS: [&str; 3] = ["near_lat", "near_lon", "radius_km"];

/// The authenticated caller of a gRPC request, from its `authorization` metadata.
pub(crate) async fn principal<T>(
    state: &AppState,
    request: &Request<T>,
) -> Result<Principal, Status> {
    let header = match request
        .metadata()
        .get("authorization")
        .map(|value| value.to_str())
    {
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => {
            return Err(Status::unauthenticated(
                "the authorization metadata is not text",
            ));
        }
        None => None,
    };
    Ok(authenticate(state, header).await?)
}

/// Runs a blocking store call off the async threads, mapping errors to a gRPC status.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&dyn audrey_store::Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, Status> {
    Ok(crate::http::blocking(state, work).await?)
}

/// Submits each batch read from `inbound` and sends its ack, in order, as soon as it is
/// durable. At most [`BATCHES_IN_FLIGHT`] batches are pending; when the client does not read
/// acks the bounded output fills and no further batch is read.
pub(crate) fn acknowledge_batches<S>(
    state: AppState,
    principal: Principal,
    mut inbound: S,
) -> mpsc::Receiver<Result<v1::BatchAck, Status>>
where
    S: futures_util::Stream<Item = Result<v1::ReadingBatch, Status>> + Send + Unpin + 'static,
{
    use futures_util::StreamExt;
    let (acks, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
    tokio::spawn(async move {
        let mut pending = futures_util::stream::FuturesOrdered::new();
        let mut open = true;
        while open || !pending.is_empty() {
            tokio::select! {
                next = inbound.next(), if open && pending.len() < BATCHES_IN_FLIGHT => match next {
                    Some(Ok(batch)) => pending.push_back(ingest::submit_batch(state.clone(), principal.clone(), batch)),
                    // The client ended or cancelled: finish what was submitted, read no more.
                    Some(Err(_)) | None => open = false,
                },
                Some(done) = pending.next(), if !pending.is_empty() => {
                    let failed = done.is_err();
                    if acks.send(done).await.is_err() || failed {
                        // The client is gone or the stream ended with an error; batches already
                        // submitted still commit whole, each in its own transaction.
                        open = false;
                        if failed {
                            while pending.next().await.is_some() {}
                            return;
                        }
                    }
                }
            }
        }
    });
    receiver
}

/// Accepted connections with Nagle off: a gRPC answer is written as headers+data, then
/// trailers, and with Nagle on the trailers wait for the peer's delayed ACK (~40 ms).
fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Serves the Audrey gRPC services with health and reflection until `shutdown` resolves.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let limit = state.options.max_body_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<IngestServiceServer<ingest::IngestApi>>()
        .await;
    health
        .set_serving::<QueryServiceServer<query::QueryApi>>()
        .await;
    health
        .set_serving::<RegistryServiceServer<registry::RegistryApi>>()
        .await;
    health
        .set_serving::<DeviceServiceServer<device::DeviceApi>>()
        .await;
    health
        .set_serving::<SensorServiceServer<compat::CompatApi>>()
        .await;
    health.set_serving::<ActServiceServer<act::ActApi>>().await;
    health
        .set_serving::<WebhookServiceServer<act_webhooks::WebhookApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(audrey_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| tracing::error!(%error, "reflection could not start"))
        .ok();
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(
            IngestServiceServer::new(ingest::IngestApi(state.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(query_encode::QueryRoutes::new(query::QueryApi(
            state.clone(),
        )))
        .add_service(
            RegistryServiceServer::new(registry::RegistryApi(state.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            DeviceServiceServer::new(device::DeviceApi(state.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(ActServiceServer::new(act::ActApi(state.clone())))
        .add_service(WebhookServiceServer::new(act_webhooks::WebhookApi(
            state.clone(),
        )))
        .add_service(SensorServiceServer::new(compat::CompatApi {
            state,
            authenticate: true,
        }));
    router
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}

/// Serves only the compatibility `SensorService`, without authentication (trusted networks).
pub async fn serve_compat(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(SensorServiceServer::new(compat::CompatApi {
            state,
            authenticate: false,
        }))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}
