//! `audrey.v1.DeviceService`: a device's long-lived session.

use std::pin::Pin;

use futures_util::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use audrey_proto::v1;
use audrey_proto::v1::{device_message, server_message};

use super::{acknowledge_batches, principal};
use crate::AppState;
use crate::auth::Scope;

pub struct DeviceApi(pub(crate) AppState);

#[tonic::async_trait]
impl v1::device_service_server::DeviceService for DeviceApi {
    type SessionStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<v1::ServerMessage, Status>> + Send>>;

    async fn session(
        &self,
        request: Request<Streaming<v1::DeviceMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let principal = principal(&self.0, &request).await?;
        principal.require(Scope::Write)?;
        let Some(sensor) = principal.sensor.clone() else {
            return Err(Status::permission_denied(
                "a device session needs a token bound to its sensor",
            ));
        };
        let batches = request.into_inner().filter_map(|message| async move {
            match message {
                Ok(v1::DeviceMessage {
                    message: Some(device_message::Message::Readings(batch)),
                }) => Some(Ok(batch)),
                // Unknown members from newer devices are skipped, not fatal.
                Ok(v1::DeviceMessage { message: None }) => None,
                Err(status) => Some(Err(status)),
            }
        });
        let acks = acknowledge_batches(self.0.clone(), principal, Box::pin(batches));
        let opened = v1::ServerMessage {
            message: Some(server_message::Message::Opened(v1::SessionOpened {
                sensor_id: sensor.to_string(),
            })),
        };
        let replies = futures_util::stream::once(async move { Ok(opened) }).chain(
            ReceiverStream::new(acks).map(|ack| {
                ack.map(|ack| v1::ServerMessage {
                    message: Some(server_message::Message::Ack(ack)),
                })
            }),
        );
        Ok(Response::new(Box::pin(replies)))
    }
}
